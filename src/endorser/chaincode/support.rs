//! The `protos.ChaincodeSupport/Register` gRPC service: one task per chaincode stream drives the
//! pure handler (`handler`), serves its state requests from the transaction simulator and reports
//! registrations to the `RegistrationGate`.
//!
//! The peer never sends KEEPALIVE: the Node shim 2.5.x exits on message types it does not expect
//! from the peer, KEEPALIVE included. KEEPALIVEs from chaincodes are accepted and ignored.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use prost::Message;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::endorser::chaincode::handle::{
    ChaincodeHandle, DEFAULT_EXECUTE_TIMEOUT, ExecuteRequest, TxCtx, failure_to_error,
    refusal_to_error,
};
use crate::endorser::chaincode::handler::{
    Handler, Input, Output, StateRequest, TxKey, TxKind, reply_error, reply_response,
};
use crate::endorser::chaincode::registration::{
    ChaincodeResolver, RegisterRequest, RegistrationGate, RegistrationTicket,
};
use crate::endorser::ledger::{Paging, SimulationError, TxSimulator};
use crate::proto::protos::chaincode_message::Type;
use crate::proto::protos::chaincode_support_server::{ChaincodeSupport, ChaincodeSupportServer};
use crate::proto::protos::{ChaincodeMessage, StateMetadata, StateMetadataResult};

/// Settings of the ChaincodeSupport service.
#[derive(Debug, Clone)]
pub struct SupportConfig {
    /// How long a transaction may run before it fails with a timeout (Fabric: 30 s).
    pub execute_timeout: Duration,
    /// Largest message a chaincode may send (Fabric: 100 MiB, as for proposals). A larger one
    /// fails its transaction only; the stream itself takes up to twice this, so only a message
    /// beyond that closes it (Fabric's peer closes the stream at the limit itself).
    pub max_message_bytes: usize,
}

/// The chaincode stream's message limit: what a proposal may carry (the client port's limit).
pub const DEFAULT_MAX_CHAINCODE_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

impl Default for SupportConfig {
    fn default() -> Self {
        Self {
            execute_timeout: DEFAULT_EXECUTE_TIMEOUT,
            max_message_bytes: DEFAULT_MAX_CHAINCODE_MESSAGE_BYTES,
        }
    }
}

impl SupportConfig {
    /// What the transport takes before the stream itself fails: twice the message limit, so a
    /// message somewhat over the limit reaches the handler and fails only its transaction.
    pub fn transport_limit(&self) -> usize {
        self.max_message_bytes.saturating_mul(2)
    }
}

/// The ChaincodeSupport service.
#[derive(Clone)]
pub struct ChaincodeSupportService {
    gate: Arc<dyn RegistrationGate>,
    resolver: Arc<dyn ChaincodeResolver>,
    config: SupportConfig,
    shutdown: Option<watch::Receiver<bool>>,
}

async fn shutdown_signal(rx: &mut Option<watch::Receiver<bool>>) {
    if let Some(rx) = rx
        && rx.wait_for(|down| *down).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

impl ChaincodeSupportService {
    pub fn new(
        gate: Arc<dyn RegistrationGate>,
        resolver: Arc<dyn ChaincodeResolver>,
        config: SupportConfig,
    ) -> Self {
        Self {
            gate,
            resolver,
            config,
            shutdown: None,
        }
    }

    /// Ends every stream (failing their transactions) once `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    pub fn into_server(self) -> ChaincodeSupportServer<Self> {
        let limit = self.config.transport_limit();
        ChaincodeSupportServer::new(self)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// What a stream's transport takes (see [`SupportConfig::transport_limit`]); a dialled
    /// stream's client applies the same.
    pub fn transport_limit(&self) -> usize {
        self.config.transport_limit()
    }

    /// The gate REGISTERs on this service's streams go through.
    pub fn gate(&self) -> Arc<dyn RegistrationGate> {
        self.gate.clone()
    }

    /// Serves a stream the endorser opened itself (chaincode-as-a-service: the endorser dialled
    /// the chaincode's server): the same handler, the peer side of the protocol, only the
    /// transport's roles are reversed. `gate` decides this stream's REGISTER; `identity` is what
    /// it hands the gate as the stream's client certificate; `out` carries the messages to the
    /// chaincode. The stream ends when `inbound` ends, `out`'s receiver is dropped or `stop` turns
    /// true (the task then reports the chaincode gone as for any stream).
    pub fn serve_dialed<S>(
        &self,
        inbound: S,
        out: mpsc::Sender<Result<ChaincodeMessage, Status>>,
        gate: Arc<dyn RegistrationGate>,
        identity: Option<Vec<u8>>,
        stop: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()>
    where
        S: futures::Stream<Item = Result<ChaincodeMessage, Status>> + Unpin + Send + 'static,
    {
        let stream = StreamTask {
            gate,
            resolver: self.resolver.clone(),
            config: self.config.clone(),
            client_cert: identity,
            out,
            ticket: None,
            gone_reported: false,
        };
        tokio::spawn(stream.run(inbound, Some(stop)))
    }
}

#[tonic::async_trait]
impl ChaincodeSupport for ChaincodeSupportService {
    type RegisterStream = ReceiverStream<Result<ChaincodeMessage, Status>>;

    async fn register(
        &self,
        request: Request<Streaming<ChaincodeMessage>>,
    ) -> Result<Response<Self::RegisterStream>, Status> {
        let client_cert = request
            .peer_certs()
            .and_then(|certs| certs.first().map(|c| c.to_vec()));
        let inbound = request.into_inner();
        let (out_tx, out_rx) = mpsc::channel(128);
        let stream = StreamTask {
            gate: self.gate.clone(),
            resolver: self.resolver.clone(),
            config: self.config.clone(),
            client_cert,
            out: out_tx,
            ticket: None,
            gone_reported: false,
        };
        tokio::spawn(stream.run(inbound, self.shutdown.clone()));
        Ok(Response::new(ReceiverStream::new(out_rx)))
    }
}

struct StreamTask {
    gate: Arc<dyn RegistrationGate>,
    resolver: Arc<dyn ChaincodeResolver>,
    config: SupportConfig,
    client_cert: Option<Vec<u8>>,
    out: mpsc::Sender<Result<ChaincodeMessage, Status>>,
    ticket: Option<RegistrationTicket>,
    /// `RegistrationGate::gone` was called for `ticket`.
    gone_reported: bool,
}

impl StreamTask {
    async fn run<S>(mut self, mut inbound: S, mut shutdown: Option<watch::Receiver<bool>>)
    where
        S: futures::Stream<Item = Result<ChaincodeMessage, Status>> + Unpin,
    {
        let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Input<TxCtx>>();
        let mut handler = Handler::<TxCtx>::new().with_message_limit(self.config.max_message_bytes);
        let out = self.out.clone();
        loop {
            let input = tokio::select! {
                msg = inbound.next() => match msg {
                    Some(Ok(m)) => Input::FromChaincode(m),
                    Some(Err(status)) => {
                        tracing::debug!(%status, "chaincode stream error");
                        Input::StreamClosed
                    }
                    None => Input::StreamClosed,
                },
                Some(cmd) = cmd_rx.recv() => cmd,
                () = shutdown_signal(&mut shutdown) => Input::StreamClosed,
                _ = out.closed() => Input::StreamClosed,
            };
            if self.process(&mut handler, input, &cmd_tx).await {
                break;
            }
        }
        self.report_gone();
    }

    /// Tells the gate the chaincode is gone, once. Called before the stream's in-flight
    /// transactions are failed, so a caller that sees `ChaincodeGone` and asks the launcher again
    /// gets a relaunch rather than the dead handle.
    fn report_gone(&mut self) {
        if self.gone_reported {
            return;
        }
        if let Some(ticket) = &self.ticket {
            self.gone_reported = true;
            tracing::info!(chaincode = %ticket.chaincode_id, "chaincode stream ended");
            self.gate.gone(ticket);
        }
    }

    /// Feeds `first` and every input it causes; true when the stream must end.
    async fn process(
        &mut self,
        handler: &mut Handler<TxCtx>,
        first: Input<TxCtx>,
        cmd_tx: &mpsc::UnboundedSender<Input<TxCtx>>,
    ) -> bool {
        let mut queue = VecDeque::from([first]);
        let mut close = false;
        while let Some(input) = queue.pop_front() {
            let outputs = handler.handle(input);
            if outputs
                .iter()
                .any(|output| matches!(output, Output::Close { .. }))
            {
                self.report_gone();
            }
            for output in outputs {
                match output {
                    Output::Send(msg) => {
                        if self.out.send(Ok(msg)).await.is_err() {
                            queue.push_back(Input::StreamClosed);
                        }
                    }
                    Output::Authorize { chaincode_id } => {
                        let decision = self.gate.authorize(&RegisterRequest {
                            chaincode_id: &chaincode_id,
                            client_cert_der: self.client_cert.as_deref(),
                        });
                        let decision = match decision {
                            Ok(ticket) => {
                                self.ticket = Some(ticket);
                                Ok(())
                            }
                            Err(refusal) => {
                                tracing::warn!(chaincode = %chaincode_id, %refusal, "REGISTER refused");
                                Err(refusal)
                            }
                        };
                        queue.push_back(Input::Authorized(decision));
                    }
                    Output::Ready { chaincode_id } => {
                        if let Some(ticket) = &self.ticket {
                            tracing::info!(chaincode = %chaincode_id, "chaincode registered and ready");
                            let handle = ChaincodeHandle::new(
                                &chaincode_id,
                                cmd_tx.clone(),
                                self.config.execute_timeout,
                            );
                            self.gate.ready(ticket, handle);
                        }
                    }
                    Output::State {
                        key,
                        ctx,
                        namespace,
                        request,
                    } => match request {
                        StateRequest::Invoke {
                            target,
                            channel,
                            input,
                        } => {
                            let resolver = self.resolver.clone();
                            let cmd_tx = cmd_tx.clone();
                            tokio::spawn(async move {
                                let message =
                                    invoke(resolver, &key, &ctx, target, channel, input).await;
                                let _ = cmd_tx.send(Input::Reply { key, message });
                            });
                        }
                        other => {
                            let message = serve_state(&ctx.simulator, &namespace, &key, other);
                            queue.push_back(Input::Reply { key, message });
                        }
                    },
                    Output::Finished { ctx, result, .. } => {
                        let id = self.chaincode_id();
                        ctx.finish(result.map_err(|f| failure_to_error(&id, f)));
                    }
                    Output::Refused { ctx, reason } => {
                        let id = self.chaincode_id();
                        ctx.finish(Err(refusal_to_error(&id, reason)));
                    }
                    Output::Warn(text) => {
                        tracing::warn!(chaincode = %self.chaincode_id(), "{text}")
                    }
                    Output::Close { reason } => {
                        tracing::debug!(chaincode = %self.chaincode_id(), %reason, "closing chaincode stream");
                        close = true;
                    }
                }
            }
        }
        close
    }

    fn chaincode_id(&self) -> String {
        self.ticket
            .as_ref()
            .map(|t| t.chaincode_id.clone())
            .unwrap_or_default()
    }
}

/// Serves one state request against the transaction's simulation: RESPONSE or ERROR.
pub fn serve_state(
    sim: &TxSimulator,
    namespace: &str,
    key: &TxKey,
    request: StateRequest,
) -> ChaincodeMessage {
    let result: Result<Vec<u8>, SimulationError> = match request {
        StateRequest::GetState { key } => sim
            .get_state(namespace, &key)
            .map(|v| v.unwrap_or_default()),
        StateRequest::PutState { key, value } => {
            sim.put_state(namespace, &key, value).map(|()| Vec::new())
        }
        StateRequest::DelState { key } => sim.del_state(namespace, &key).map(|()| Vec::new()),
        StateRequest::GetStateByRange { start, end, page } => {
            let paging = match page {
                Some(m) if m.page_size <= 0 => Err(SimulationError::InvalidPageSize(m.page_size)),
                Some(m) => Ok(Some(Paging {
                    page_size: m.page_size as usize,
                    bookmark: m.bookmark,
                })),
                None => Ok(None),
            };
            paging
                .and_then(|p| sim.range_query(namespace, &start, &end, p))
                .map(|r| r.encode_to_vec())
        }
        StateRequest::QueryNext { id } => sim.query_next(&id).map(|r| r.encode_to_vec()),
        StateRequest::QueryClose { id } => sim.query_close(&id).map(|r| r.encode_to_vec()),
        StateRequest::GetHistoryForKey { key } => sim
            .history_query(namespace, &key)
            .map(|r| r.encode_to_vec()),
        StateRequest::GetStateMetadata { key } => {
            sim.get_state_metadata(namespace, &key).map(|m| {
                StateMetadataResult {
                    entries: m
                        .into_iter()
                        .map(|(metakey, value)| StateMetadata { metakey, value })
                        .collect(),
                }
                .encode_to_vec()
            })
        }
        StateRequest::PutStateMetadata { key, name, value } => sim
            .put_state_metadata(namespace, &key, &name, value)
            .map(|()| Vec::new()),
        StateRequest::GetPrivateData { collection, key } => sim
            .get_private_data(namespace, &collection, &key)
            .map(|v| v.unwrap_or_default()),
        StateRequest::PutPrivateData {
            collection,
            key,
            value,
        } => sim
            .write_private_data(namespace, &collection, &key, Some(value), false)
            .map(|()| Vec::new()),
        StateRequest::DelPrivateData {
            collection,
            key,
            purge,
        } => sim
            .write_private_data(namespace, &collection, &key, None, purge)
            .map(|()| Vec::new()),
        StateRequest::GetPrivateDataHash { collection, key } => {
            sim.get_private_data_hash(namespace, &collection, &key)
        }
        StateRequest::GetPrivateDataByRange {
            collection,
            start,
            end,
        } => sim
            .private_range_query(namespace, &collection, &start, &end)
            .map(|r| r.encode_to_vec()),
        StateRequest::Invoke { .. } => {
            return reply_error(key, "INVOKE_CHAINCODE is served asynchronously");
        }
    };
    match result {
        Ok(payload) => reply_response(key, payload),
        Err(e) => reply_error(key, &e.to_string()),
    }
}

/// INVOKE_CHAINCODE: runs `target` in the caller's simulation (same channel) or in a separate,
/// discarded one (other channel); the RESPONSE payload is the callee's COMPLETED message, as the
/// shim expects.
async fn invoke(
    resolver: Arc<dyn ChaincodeResolver>,
    key: &TxKey,
    ctx: &TxCtx,
    target: String,
    channel: Option<String>,
    input: crate::proto::protos::ChaincodeInput,
) -> ChaincodeMessage {
    let channel = channel.unwrap_or_else(|| key.channel_id.clone());
    // Same channel: the callee shares the caller's simulation. Another channel: a throw-away
    // simulation there, so the callee can read but its writes never reach a read/write set.
    let simulator = if channel == key.channel_id {
        ctx.simulator.clone()
    } else {
        ctx.simulator.on_channel(&channel)
    };
    let handle = match resolver.resolve(&channel, &target).await {
        Ok(h) => h,
        Err(e) => return reply_error(key, &e),
    };
    let request = ExecuteRequest {
        channel_id: channel,
        txid: key.txid.clone(),
        kind: TxKind::Transaction,
        chaincode_name: target,
        input,
        proposal: ctx.proposal.clone(),
        simulator,
    };
    match handle.execute_nested(request).await {
        Ok(done) => {
            let completed = ChaincodeMessage {
                r#type: Type::Completed as i32,
                payload: done.response.encode_to_vec(),
                txid: key.txid.clone(),
                channel_id: key.channel_id.clone(),
                ..Default::default()
            };
            reply_response(key, completed.encode_to_vec())
        }
        Err(e) => reply_error(key, &e.to_string()),
    }
}
