//! `ChaincodeHandle`: executes transactions on a registered chaincode's stream. Cheap to clone; the
//! stream task behind it owns the handler state machine.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::endorser::chaincode::handler::{
    Completion, Input, StartRefused, TxFailure, TxKey, TxKind, TxStart,
};
use crate::endorser::ledger::TxSimulator;
use crate::proto::protos::{ChaincodeInput, SignedProposal};

/// Fabric's default execute timeout.
pub const DEFAULT_EXECUTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Chaincode responses with a status at or above this are errors (the shim's ERRORTHRESHOLD).
pub const ERROR_THRESHOLD: i32 = 400;

/// One transaction to run on a chaincode.
#[derive(Clone)]
pub struct ExecuteRequest {
    pub channel_id: String,
    pub txid: String,
    pub kind: TxKind,
    /// The chaincode's name on the channel: rwset namespace and event chaincode_id.
    pub chaincode_name: String,
    pub input: ChaincodeInput,
    /// The client's signed proposal; the contract API needs it to know the caller.
    pub proposal: Option<SignedProposal>,
    /// The simulation to run in; shared with chaincodes this one invokes.
    pub simulator: TxSimulator,
}

/// A finished transaction: the chaincode's response and its event (chaincode_id and tx_id filled).
pub type ExecuteOutcome = Completion;

/// Why a transaction did not complete.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExecuteError {
    #[error("chaincode {0} is not ready")]
    NotReady(String),
    #[error("transaction {txid} is already running on channel {channel_id}")]
    Duplicate { channel_id: String, txid: String },
    #[error("transaction timed out after {0:?} waiting for the chaincode")]
    Timeout(Duration),
    #[error(
        "transaction timed out after {0:?} waiting for the chaincode; it is presumed stuck and was \
         stopped, and the next invoke starts it again"
    )]
    TimedOutRestarted(Duration),
    #[error("chaincode {0} stream closed before the transaction completed")]
    ChaincodeGone(String),
    #[error("chaincode returned an error: {0}")]
    Chaincode(String),
    #[error("chaincode protocol error: {0}")]
    Protocol(String),
    #[error("transaction cancelled: {0}")]
    Cancelled(String),
}

pub(crate) struct TxContext {
    pub simulator: TxSimulator,
    /// The proposal, passed on to chaincodes this transaction invokes.
    pub proposal: Option<SignedProposal>,
    done: Mutex<Option<oneshot::Sender<Result<Completion, ExecuteError>>>>,
}

pub(crate) type TxCtx = Arc<TxContext>;

impl TxContext {
    /// Delivers the transaction's result to the waiting `execute` (once).
    pub fn finish(&self, result: Result<Completion, ExecuteError>) {
        if let Some(tx) = self.done.lock().ok().and_then(|mut d| d.take()) {
            let _ = tx.send(result);
        }
    }
}

pub(crate) fn failure_to_error(chaincode_id: &str, f: TxFailure) -> ExecuteError {
    match f {
        TxFailure::Chaincode(m) => ExecuteError::Chaincode(m),
        TxFailure::Protocol(m) => ExecuteError::Protocol(m),
        TxFailure::Cancelled(m) => ExecuteError::Cancelled(m),
        TxFailure::StreamClosed => ExecuteError::ChaincodeGone(chaincode_id.to_string()),
    }
}

pub(crate) fn refusal_to_error(chaincode_id: &str, r: StartRefused) -> ExecuteError {
    match r {
        StartRefused::NotReady => ExecuteError::NotReady(chaincode_id.to_string()),
        StartRefused::Closed => ExecuteError::ChaincodeGone(chaincode_id.to_string()),
        StartRefused::Duplicate(k) => ExecuteError::Duplicate {
            channel_id: k.channel_id,
            txid: k.txid,
        },
    }
}

/// Executes transactions on one registered chaincode stream.
#[derive(Clone)]
pub struct ChaincodeHandle {
    chaincode_id: Arc<str>,
    commands: mpsc::UnboundedSender<Input<TxCtx>>,
    execute_timeout: Duration,
}

impl ChaincodeHandle {
    /// Whether both handles reach the same chaincode stream (the same instance).
    pub fn same_stream(&self, other: &ChaincodeHandle) -> bool {
        self.commands.same_channel(&other.commands)
    }
}

impl std::fmt::Debug for ChaincodeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeHandle")
            .field("chaincode_id", &self.chaincode_id)
            .finish()
    }
}

impl ChaincodeHandle {
    pub(crate) fn new(
        chaincode_id: &str,
        commands: mpsc::UnboundedSender<Input<TxCtx>>,
        execute_timeout: Duration,
    ) -> Self {
        Self {
            chaincode_id: chaincode_id.into(),
            commands,
            execute_timeout,
        }
    }

    /// The package id the chaincode registered with.
    pub fn chaincode_id(&self) -> &str {
        &self.chaincode_id
    }

    /// False once the chaincode's stream has ended.
    pub fn is_connected(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Runs a transaction. When it fails, times out or answers with status >= 400, its simulation is
    /// aborted so none of its writes can be committed.
    pub async fn execute(&self, request: ExecuteRequest) -> Result<ExecuteOutcome, ExecuteError> {
        let simulator = request.simulator.clone();
        let result = self.execute_nested(request).await;
        match &result {
            Ok(done) if done.response.status < ERROR_THRESHOLD => {}
            _ => simulator.abort(),
        }
        result
    }

    /// Runs a transaction inside another one (INVOKE_CHAINCODE): the caller decides what a failure
    /// means for the shared simulation.
    pub(crate) async fn execute_nested(
        &self,
        request: ExecuteRequest,
    ) -> Result<ExecuteOutcome, ExecuteError> {
        let (done_tx, done_rx) = oneshot::channel();
        let key = TxKey {
            channel_id: request.channel_id,
            txid: request.txid,
        };
        let ctx = Arc::new(TxContext {
            simulator: request.simulator,
            proposal: request.proposal.clone(),
            done: Mutex::new(Some(done_tx)),
        });
        let start = TxStart {
            key: key.clone(),
            kind: request.kind,
            chaincode_name: request.chaincode_name,
            input: request.input,
            proposal: request.proposal,
            ctx,
        };
        let gone = || ExecuteError::ChaincodeGone(self.chaincode_id.to_string());
        self.commands
            .send(Input::Start(start))
            .map_err(|_| gone())?;
        match tokio::time::timeout(self.execute_timeout, done_rx).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(gone()),
            Err(_) => {
                let _ = self.commands.send(Input::Cancel {
                    key,
                    reason: format!("execute timeout of {:?} expired", self.execute_timeout),
                });
                Err(ExecuteError::Timeout(self.execute_timeout))
            }
        }
    }
}
