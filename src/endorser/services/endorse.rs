//! The `protos.Endorser/ProcessProposal` service: validate → simulate → endorse.
//!
//! [`process_proposal`] is the whole pipeline as one small async function over a
//! [`ChaincodeRunner`] (how a defined chaincode is found, launched and executed) so it is tested
//! without a chaincode process; [`EndorserService`] is the thin tonic adapter. Every failure
//! becomes a `ProposalResponse` (status 500 and a message), never a gRPC error or a panic, so a
//! bad proposal does not stop the next one from being served.
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use prost::Message;

use crate::endorser::chaincode::gate::LaunchingResolver;
use crate::endorser::chaincode::handle::{ExecuteError, ExecuteOutcome, ExecuteRequest};
use crate::endorser::chaincode::handler::TxKind;
use crate::endorser::identity::SigningIdentity;
use crate::endorser::ledger::{CollectionLookup, PrivateAccess, TxSimulator, WorldState};
use crate::endorser::lifecycle::{
    Caller, InvocationError, LIFECYCLE_NAME, Lifecycle, SYSCC_VERSION, check_invocation,
};
use crate::endorser::proposal::build;
use crate::endorser::proposal::endorse::ERROR_THRESHOLD;
use crate::endorser::proposal::{
    ProposalValidator, ReplayCache, SimulationOutcome, ValidatedProposal, proposal_response,
    rejection_response, system_error_response,
};
use crate::proto::protos::endorser_server::{Endorser, EndorserServer};
use crate::proto::protos::{ChaincodeId, ProposalResponse, SignedProposal};

/// Why a proposal's chaincode could not be run to completion.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunError {
    /// No definition for the name on the channel, or its package could not be started.
    #[error("{0}")]
    Unavailable(String),
    /// The chaincode was reached but the transaction did not complete.
    #[error("{0}")]
    Execute(#[from] ExecuteError),
    /// The invocation breaks the definition's rules (init required, or not required).
    #[error("invalid invocation: {0}")]
    Invalid(#[from] InvocationError),
}

/// Finds the chaincode defined as `name` on `channel`, makes sure it runs, and executes a
/// transaction on it.
pub trait ChaincodeRunner: Send + Sync {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>>;
}

impl ChaincodeRunner for LaunchingResolver {
    fn run<'a>(
        &'a self,
        request: ExecuteRequest,
    ) -> BoxFuture<'a, Result<(ChaincodeId, ExecuteOutcome), RunError>> {
        Box::pin(async move {
            let definition = self
                .definition(&request.channel_id, &request.chaincode_name)
                .map_err(RunError::Unavailable)?;
            // Before launching: a refused invocation should not start a chaincode.
            check_invocation(&definition, request.input.is_init, &request.simulator)?;
            let handle = self
                .launch(&request.channel_id, &definition)
                .await
                .map_err(RunError::Unavailable)?;
            let chaincode_id = ChaincodeId {
                name: definition.name,
                version: definition.version,
                ..ChaincodeId::default()
            };
            let outcome = match handle.execute(request).await {
                Err(ExecuteError::Timeout(after)) => {
                    let restarted = self.launcher.restart_unresponsive(
                        &definition.package_id,
                        |current| current.same_stream(&handle),
                        format!("a transaction got no answer within {after:?}"),
                    );
                    return Err(RunError::Execute(if restarted {
                        ExecuteError::TimedOutRestarted(after)
                    } else {
                        ExecuteError::Timeout(after)
                    }));
                }
                other => other?,
            };
            Ok((chaincode_id, outcome))
        })
    }
}

/// What the pipeline needs besides the proposal.
pub struct EndorserContext {
    pub validator: ProposalValidator,
    pub replay: Arc<dyn ReplayCache>,
    pub endorser: SigningIdentity,
    pub world: WorldState,
    pub runner: Arc<dyn ChaincodeRunner>,
    /// The `_lifecycle` system chaincode; without it proposals to `_lifecycle` are refused.
    pub lifecycle: Option<Arc<Lifecycle>>,
}

/// Runs the proposal's chaincode in a fresh simulation and collects what it produced.
pub async fn simulate(
    proposal: &ValidatedProposal,
    world: &WorldState,
    runner: &dyn ChaincodeRunner,
    collection_orgs: &Arc<BTreeSet<String>>,
    explicit_collections: Option<Arc<dyn CollectionLookup>>,
) -> Result<SimulationOutcome, String> {
    let simulator = TxSimulator::with_private_access(
        world.clone(),
        proposal.channel_id(),
        proposal.tx_id(),
        PrivateAccess {
            orgs: collection_orgs.clone(),
            creator_mspid: proposal.creator.mspid().to_string(),
            is_init: proposal.is_init(),
            explicit: explicit_collections.map(|l| (proposal.channel_id().to_string(), l)),
        },
    );
    let mut input = proposal.input.clone();
    // Fabric hands the chaincode the transient map through the stream's proposal; the shim reads
    // it from the SignedProposal, so nothing is merged into the input here.
    input.is_init = proposal.is_init();
    let request = ExecuteRequest {
        channel_id: proposal.channel_id().to_string(),
        txid: proposal.tx_id().to_string(),
        kind: if proposal.is_init() {
            TxKind::Init
        } else {
            TxKind::Transaction
        },
        chaincode_name: proposal.chaincode_name().to_string(),
        input,
        proposal: Some(proposal.signed_proposal.clone()),
        simulator: simulator.clone(),
    };
    let (chaincode_id, outcome) = runner
        .run(request)
        .await
        .map_err(|err| format!("error executing chaincode: {err}"))?;
    // A failed transaction's simulation is aborted and its writes dropped: nothing to collect.
    let results = if outcome.response.status >= ERROR_THRESHOLD || simulator.is_aborted() {
        Vec::new()
    } else {
        let collect = |err| format!("error collecting the simulation results: {err}");
        // Private writes wait in the transient store for the transaction's block (Fabric's
        // endorser does the same); only their hashes are in the endorsed results.
        if let Some(private) = simulator.private_results().map_err(collect)? {
            // A database write that may wait for a block commit: off the async threads.
            let (world, tx_id) = (world.clone(), proposal.tx_id().to_string());
            tokio::task::spawn_blocking(move || world.put_transient(&tx_id, &private))
                .await
                .map_err(|err| err.to_string())
                .and_then(|stored| stored.map_err(|err| err.to_string()))
                .map_err(|err| format!("error keeping the private data: {err}"))?;
        }
        simulator.results().map_err(collect)?.encode_to_vec()
    };
    Ok(SimulationOutcome {
        chaincode_id,
        response: outcome.response,
        results,
        event: outcome.event,
    })
}

/// Runs a `_lifecycle` proposal: the system chaincode answers directly and nothing is simulated,
/// so the endorsed read/write set is empty. Installing unpacks files: off the async threads.
pub async fn invoke_lifecycle(
    proposal: &ValidatedProposal,
    lifecycle: Option<&Arc<Lifecycle>>,
) -> Result<SimulationOutcome, String> {
    let lifecycle = lifecycle
        .cloned()
        .ok_or_else(|| format!("chaincode {LIFECYCLE_NAME} is not available on this endorser"))?;
    let caller = Caller::from(proposal.creator.as_ref());
    let channel = proposal.channel_id().to_string();
    let args = proposal.args().to_vec();
    let response = tokio::task::spawn_blocking(move || lifecycle.invoke(&caller, &channel, &args))
        .await
        .map_err(|err| format!("the {LIFECYCLE_NAME} invocation failed: {err}"))?;
    Ok(SimulationOutcome {
        chaincode_id: ChaincodeId {
            name: LIFECYCLE_NAME.to_string(),
            version: SYSCC_VERSION.to_string(),
            ..ChaincodeId::default()
        },
        response,
        results: Vec::new(),
        event: None,
    })
}

/// A proposal that passed validation and was simulated: the endorser's response (endorsed or a
/// chaincode failure) beside the proposal it answers, for the Gateway to assemble a transaction.
#[derive(Debug, Clone)]
pub struct Endorsed {
    pub proposal: ValidatedProposal,
    pub response: ProposalResponse,
}

/// Validates, simulates and endorses one SignedProposal. `Err` is the response for a proposal
/// refused before its chaincode ran (invalid, replayed, or a system failure).
pub async fn endorse(
    context: &EndorserContext,
    signed: SignedProposal,
    now: SystemTime,
) -> Result<Endorsed, ProposalResponse> {
    let (proposal, outcome) = execute(context, signed, now, context.replay.as_ref()).await?;
    let response = proposal_response(
        &proposal,
        &outcome,
        &context.endorser,
        build::timestamp(now),
    );
    Ok(Endorsed { proposal, response })
}

/// Validates and simulates one SignedProposal without endorsing it: what the Gateway's Evaluate
/// needs, whose client gets only the chaincode's response. Skipping the endorsement saves an
/// ECDSA signature (about 13% of an evaluate's endorser CPU at N = 128); a client cannot tell the
/// difference.
/// `replay` is the duplicate check (the Gateway's Evaluate records nothing). `Err` is the response
/// for a proposal refused before or while its chaincode ran.
pub async fn execute(
    context: &EndorserContext,
    signed: SignedProposal,
    now: SystemTime,
    replay: &dyn ReplayCache,
) -> Result<(ValidatedProposal, SimulationOutcome), ProposalResponse> {
    let proposal = match context.validator.validate(signed, now, replay) {
        Ok(proposal) => proposal,
        Err(error) => {
            tracing::info!(%error, "proposal rejected");
            return Err(rejection_response(&error));
        }
    };
    let outcome = if proposal.chaincode_name() == LIFECYCLE_NAME {
        invoke_lifecycle(&proposal, context.lifecycle.as_ref()).await
    } else {
        let explicit = context
            .lifecycle
            .as_ref()
            .map(|l| l.definitions() as Arc<dyn CollectionLookup>);
        simulate(
            &proposal,
            &context.world,
            context.runner.as_ref(),
            context.validator.msp_ids(),
            explicit,
        )
        .await
    };
    match outcome {
        Ok(outcome) => Ok((proposal, outcome)),
        Err(message) => {
            tracing::info!(tx_id = proposal.tx_id(), %message, "simulation failed");
            Err(system_error_response(message))
        }
    }
}

/// The endorser's answer to one SignedProposal.
pub async fn process_proposal(
    context: &EndorserContext,
    signed: SignedProposal,
    now: SystemTime,
) -> ProposalResponse {
    match endorse(context, signed, now).await {
        Ok(endorsed) => endorsed.response,
        Err(refused) => refused,
    }
}

/// Connections accepted on `listener` with Nagle's algorithm off, for `serve_with_incoming`.
/// tonic applies its `tcp_nodelay` only to listeners it binds itself; without it a response
/// written in several small segments waits for the client's delayed ACK, about 40 ms per call.
pub fn incoming_no_delay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        let stream = accepted?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
}

/// The tonic `Endorser` service over an [`EndorserContext`].
#[derive(Clone)]
pub struct EndorserService {
    context: Arc<EndorserContext>,
}

impl EndorserService {
    pub fn new(context: EndorserContext) -> Self {
        Self::shared(Arc::new(context))
    }

    /// A service over a context the Gateway shares.
    pub fn shared(context: Arc<EndorserContext>) -> Self {
        Self { context }
    }

    pub fn context(&self) -> Arc<EndorserContext> {
        self.context.clone()
    }

    /// The tonic server. Its decoding limit is the validator's proposal limit: tonic's own default
    /// (4 MiB) would otherwise refuse proposals the validator accepts, and a message over the
    /// limit is refused (`OUT_OF_RANGE`) before it is buffered and decoded.
    pub fn into_server(self) -> EndorserServer<Self> {
        let limit = self.context.validator.max_proposal_bytes();
        EndorserServer::new(self).max_decoding_message_size(limit)
    }
}

#[tonic::async_trait]
impl Endorser for EndorserService {
    async fn process_proposal(
        &self,
        request: tonic::Request<SignedProposal>,
    ) -> Result<tonic::Response<ProposalResponse>, tonic::Status> {
        let response =
            process_proposal(&self.context, request.into_inner(), SystemTime::now()).await;
        Ok(tonic::Response::new(response))
    }
}
