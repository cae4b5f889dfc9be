//! The `gateway.Gateway` service that `@hyperledger/fabric-gateway` clients talk to: Evaluate and
//! Endorse run the endorser's own pipeline ([`endorse`]), Submit hands the client-signed
//! transaction to the embedded [`Committer`], CommitStatus and ChaincodeEvents read what it
//! committed.
//!
//! Failures are gRPC errors the way Fabric's gateway reports them: a status code, a message, and
//! `gateway.ErrorDetail`s (address, mspid, message) in the status details, which the client
//! libraries surface as `GatewayError.details`.
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Request, Response, Status};

use crate::endorser::commit::LedgerReplayCheck;
use crate::endorser::commit::{CommittedBlock, Committer, SubmitError, build_transaction};
use crate::endorser::proposal::endorse::ERROR_THRESHOLD;
use crate::endorser::services::endorse::{Endorsed, EndorserContext, endorse, execute};
use crate::proto::common::Envelope;
use crate::proto::gateway::gateway_server::{Gateway, GatewayServer};
use crate::proto::gateway::{
    ChaincodeEventsRequest, ChaincodeEventsResponse, CommitStatusRequest, CommitStatusResponse,
    EndorseRequest, EndorseResponse, ErrorDetail, EvaluateRequest, EvaluateResponse,
    SignedChaincodeEventsRequest, SignedCommitStatusRequest, SubmitRequest, SubmitResponse,
};
use crate::proto::orderer::seek_position::Type as Seek;
use crate::proto::protos::{ProposalResponse, Response as ChaincodeResponse, SignedProposal};

/// `google.rpc.Status`, the payload of the `grpc-status-details-bin` trailer.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// Settings of the gateway that are not the endorser's.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Reported as the endorser's address in error details.
    pub address: String,
    /// How long CommitStatus waits for a transaction that has not been committed yet.
    pub commit_status_timeout: Duration,
    /// Events buffered per ChaincodeEvents stream before the sender waits for the client.
    pub events_buffer: usize,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            address: String::new(),
            commit_status_timeout: Duration::from_secs(300),
            events_buffer: 64,
        }
    }
}

#[derive(Clone)]
pub struct GatewayService {
    endorser: Arc<EndorserContext>,
    committer: Committer,
    config: Arc<GatewayConfig>,
    /// Evaluate's duplicate check: committed tx ids only, nothing recorded.
    evaluate_replay: Arc<LedgerReplayCheck>,
    /// Becomes true when the node stops: open event streams and waits end so the server can.
    shutdown: watch::Receiver<bool>,
}

impl GatewayService {
    pub fn new(
        endorser: Arc<EndorserContext>,
        committer: Committer,
        config: GatewayConfig,
    ) -> Self {
        Self {
            evaluate_replay: Arc::new(LedgerReplayCheck::evaluating(committer.clone())),
            endorser,
            committer,
            config: Arc::new(config),
            shutdown: watch::channel(false).1,
        }
    }

    /// Ends ChaincodeEvents streams and CommitStatus waits when `shutdown` becomes true; a
    /// graceful server shutdown waits for them otherwise.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn into_server(self) -> GatewayServer<Self> {
        GatewayServer::new(self)
    }

    fn detail(&self, message: impl Into<String>) -> ErrorDetail {
        ErrorDetail {
            address: self.config.address.clone(),
            msp_id: self.endorser.endorser.mspid().to_string(),
            message: message.into(),
        }
    }

    fn error(&self, code: Code, message: &str, detail: impl Into<String>) -> Status {
        status_with_details(code, message, &[self.detail(detail)])
    }

    /// Runs the proposal without endorsing it: Evaluate's client gets the chaincode's response
    /// alone. Failures as in [`Self::endorse_or_fail`].
    async fn execute_or_fail(
        &self,
        signed: Option<SignedProposal>,
    ) -> Result<ChaincodeResponse, Status> {
        let (code, message) = (Code::Unknown, "evaluate call to endorser returned error");
        let signed = required_proposal(signed)?;
        let replay = self.evaluate_replay.as_ref();
        match execute(&self.endorser, signed, SystemTime::now(), replay).await {
            Ok((_, outcome)) => match failure(Some(&outcome.response)) {
                None => Ok(outcome.response),
                Some(reason) => Err(self.failed(code, message, reason)),
            },
            Err(refused) => Err(self.failed(code, message, refusal(&refused))),
        }
    }

    /// Runs the proposal through the endorser; a refusal or a chaincode failure (status >= 400)
    /// becomes the gRPC error the client sees, with the endorser's message as the detail.
    async fn endorse_or_fail(&self, signed: Option<SignedProposal>) -> Result<Endorsed, Status> {
        let (code, message) = (Code::Aborted, "failed to endorse transaction");
        let signed = required_proposal(signed)?;
        match endorse(&self.endorser, signed, SystemTime::now()).await {
            Ok(endorsed) => match failure(endorsed.response.response.as_ref()) {
                None => Ok(endorsed),
                Some(reason) => Err(self.failed(code, message, reason)),
            },
            Err(refused) => Err(self.failed(code, message, refusal(&refused))),
        }
    }

    /// `code` with "`message`: `reason`", and the reason as the error's detail.
    fn failed(&self, code: Code, message: &str, reason: String) -> Status {
        self.error(code, &format!("{message}: {reason}"), reason)
    }

    fn verify_signed_request(
        &self,
        request: &[u8],
        identity: &[u8],
        signature: &[u8],
    ) -> Result<(), Status> {
        let creator = self
            .endorser
            .validator
            .trust()
            .validate_creator(identity, SystemTime::now())
            .map_err(|err| Status::permission_denied(format!("untrusted identity: {err}")))?;
        creator
            .verify(request, signature)
            .map_err(|err| Status::permission_denied(format!("invalid signature: {err}")))
    }
}

fn required_proposal(signed: Option<SignedProposal>) -> Result<SignedProposal, Status> {
    signed.ok_or_else(|| {
        Status::invalid_argument("a proposed transaction (SignedProposal) is required")
    })
}

/// Why the endorser refused a proposal before or while its chaincode ran.
fn refusal(refused: &ProposalResponse) -> String {
    failure(refused.response.as_ref())
        .unwrap_or_else(|| "the endorser refused the proposal".to_string())
}

/// Why a chaincode response is not a successful endorsement, in the words Fabric's gateway uses.
fn failure(response: Option<&ChaincodeResponse>) -> Option<String> {
    let (status, message) = response
        .map(|r| (r.status, r.message.as_str()))
        .unwrap_or((0, "no response"));
    if !(200..ERROR_THRESHOLD).contains(&status) {
        Some(format!("chaincode response {status}, {message}"))
    } else {
        None
    }
}

fn status_with_details(code: Code, message: &str, details: &[ErrorDetail]) -> Status {
    let rpc = RpcStatus {
        code: code as i32,
        message: message.to_string(),
        details: details
            .iter()
            .map(|detail| prost_types::Any {
                type_url: "type.googleapis.com/gateway.ErrorDetail".to_string(),
                value: detail.encode_to_vec(),
            })
            .collect(),
    };
    Status::with_details(code, message, rpc.encode_to_vec().into())
}

/// The `gateway.ErrorDetail`s a Gateway error carries (what clients show as its details); empty
/// when the status has none or they do not decode.
pub fn error_details(status: &Status) -> Vec<ErrorDetail> {
    RpcStatus::decode(status.details())
        .map(|rpc| {
            rpc.details
                .iter()
                .filter_map(|any| ErrorDetail::decode(any.value.as_slice()).ok())
                .collect()
        })
        .unwrap_or_default()
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ChaincodeEventsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Gateway for GatewayService {
    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let request = request.into_inner();
        let result = self.execute_or_fail(request.proposed_transaction).await?;
        Ok(Response::new(EvaluateResponse {
            result: Some(result),
        }))
    }

    async fn endorse(
        &self,
        request: Request<EndorseRequest>,
    ) -> Result<Response<EndorseResponse>, Status> {
        let request = request.into_inner();
        let endorsed = self.endorse_or_fail(request.proposed_transaction).await?;
        let payload = build_transaction(&endorsed.proposal.proposal, &[endorsed.response])
            .map_err(|err| {
                self.failed(
                    Code::Aborted,
                    "failed to assemble transaction",
                    err.to_string(),
                )
            })?;
        Ok(Response::new(EndorseResponse {
            prepared_transaction: Some(Envelope {
                payload: payload.encode_to_vec(),
                signature: Vec::new(),
            }),
        }))
    }

    async fn submit(
        &self,
        request: Request<SubmitRequest>,
    ) -> Result<Response<SubmitResponse>, Status> {
        let request = request.into_inner();
        let envelope = request.prepared_transaction.ok_or_else(|| {
            Status::invalid_argument("a prepared transaction (signed Envelope) is required")
        })?;
        if envelope.signature.is_empty() {
            return Err(Status::invalid_argument(
                "the prepared transaction is not signed",
            ));
        }
        match self.committer.submit(envelope).await {
            Ok(status) => {
                tracing::debug!(tx_id = %request.transaction_id, code = ?status.code, block = status.block_number, "transaction committed");
                Ok(Response::new(SubmitResponse {}))
            }
            // A full queue is transient: UNAVAILABLE tells clients to retry.
            Err(err @ SubmitError::Busy { .. }) => Err(self.failed(
                Code::Unavailable,
                "received unsuccessful response from orderer",
                err.to_string(),
            )),
            Err(err) => Err(self.failed(
                Code::Aborted,
                "received unsuccessful response from orderer",
                err.to_string(),
            )),
        }
    }

    async fn commit_status(
        &self,
        request: Request<SignedCommitStatusRequest>,
    ) -> Result<Response<CommitStatusResponse>, Status> {
        let signed = request.into_inner();
        let request = CommitStatusRequest::decode(signed.request.as_slice()).map_err(|err| {
            Status::invalid_argument(format!("malformed CommitStatusRequest: {err}"))
        })?;
        self.verify_signed_request(&signed.request, &request.identity, &signed.signature)?;
        let wait = self
            .committer
            .wait_status(&request.channel_id, &request.transaction_id);
        let mut shutdown = self.shutdown.clone();
        let status = tokio::select! {
            waited = tokio::time::timeout(self.config.commit_status_timeout, wait) => waited.map_err(|_| {
                Status::deadline_exceeded(format!(
                    "transaction {} was not committed on channel {} within {:?}",
                    request.transaction_id, request.channel_id, self.config.commit_status_timeout
                ))
            })?,
            _ = stopped(&mut shutdown) => {
                return Err(Status::unavailable("the endorser is shutting down"));
            }
        };
        Ok(Response::new(CommitStatusResponse {
            result: status.code as i32,
            block_number: status.block_number,
        }))
    }

    type ChaincodeEventsStream = EventStream;

    async fn chaincode_events(
        &self,
        request: Request<SignedChaincodeEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let signed = request.into_inner();
        let request = ChaincodeEventsRequest::decode(signed.request.as_slice()).map_err(|err| {
            Status::invalid_argument(format!("malformed ChaincodeEventsRequest: {err}"))
        })?;
        self.verify_signed_request(&signed.request, &request.identity, &signed.signature)?;
        let height = self.committer.height(&request.channel_id);
        let start = match request.start_position.and_then(|p| p.r#type) {
            Some(Seek::Specified(specified)) => specified.number,
            Some(Seek::Oldest(_)) => 0,
            Some(Seek::Newest(_)) => height.saturating_sub(1),
            Some(Seek::NextCommit(_)) | None => height,
        };
        // Subscribe before reading the log so no block falls between the two.
        let live = self.committer.subscribe();
        let (tx, rx) = mpsc::channel(self.config.events_buffer.max(1));
        let filter = EventFilter {
            channel: request.channel_id,
            chaincode: request.chaincode_id,
            after_transaction_id: (!request.after_transaction_id.is_empty())
                .then_some(request.after_transaction_id),
            next_block: start,
        };
        tokio::spawn(stream_events(
            self.committer.clone(),
            filter,
            live,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(
            Box::pin(ReceiverStream::new(rx)) as EventStream
        ))
    }
}

/// What one ChaincodeEvents stream still wants.
struct EventFilter {
    channel: String,
    chaincode: String,
    /// Events up to and including this transaction are skipped (a client resuming after it).
    after_transaction_id: Option<String>,
    next_block: u64,
}

impl EventFilter {
    /// The matching events of `block`, if it is the next block the stream is owed.
    fn take(&mut self, block: &CommittedBlock) -> Option<ChaincodeEventsResponse> {
        if block.channel != self.channel || block.number < self.next_block {
            return None;
        }
        self.next_block = block.number + 1;
        let mut events = Vec::new();
        for tx in &block.txs {
            if let Some(after) = &self.after_transaction_id {
                if tx.tx_id == *after {
                    self.after_transaction_id = None;
                }
                continue;
            }
            events.extend(
                tx.chaincode_events
                    .iter()
                    .filter(|event| event.chaincode_id == self.chaincode)
                    .cloned(),
            );
        }
        // The resume point only applies to the block it is in.
        self.after_transaction_id = None;
        (!events.is_empty()).then_some(ChaincodeEventsResponse {
            events,
            block_number: block.number,
        })
    }
}

/// Resolves once the node is stopping; never when nobody can stop it (no sender).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

type EventSender = mpsc::Sender<Result<ChaincodeEventsResponse, Status>>;

/// Sends what the log holds from the start block, then follows new commits, until the client
/// goes away. A stream that falls behind the broadcast re-reads the missed blocks from the log.
async fn stream_events(
    committer: Committer,
    mut filter: EventFilter,
    mut live: broadcast::Receiver<Arc<CommittedBlock>>,
    tx: EventSender,
    mut shutdown: watch::Receiver<bool>,
) {
    if !catch_up(&committer, &mut filter, &tx).await {
        return;
    }
    loop {
        tokio::select! {
            _ = tx.closed() => return,
            _ = stopped(&mut shutdown) => {
                // Never wait on a client that is not reading: the shutdown must not block.
                let _ = tx.try_send(Err(Status::unavailable("the endorser is shutting down")));
                return;
            }
            received = live.recv() => match received {
                Ok(block) => {
                    if let Some(response) = filter.take(&block)
                        && tx.send(Ok(response)).await.is_err()
                    {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if !catch_up(&committer, &mut filter, &tx).await {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}

/// Sends the matching events of every logged block from the filter's next block; false when the
/// stream is over (client gone or the log unreadable, which the client is told).
async fn catch_up(committer: &Committer, filter: &mut EventFilter, tx: &EventSender) -> bool {
    let (reader, channel, start) = (committer.clone(), filter.channel.clone(), filter.next_block);
    // The log is read from files: off the async threads.
    let read = tokio::task::spawn_blocking(move || reader.blocks_from(&channel, start))
        .await
        .map_err(|err| err.to_string())
        .and_then(|blocks| blocks.map_err(|err| err.to_string()));
    let blocks = match read {
        Ok(blocks) => blocks,
        Err(err) => {
            let error = Status::internal(format!("reading the block log: {err}"));
            let _ = tx.send(Err(error)).await;
            return false;
        }
    };
    for block in blocks {
        if let Some(response) = filter.take(&block)
            && tx.send(Ok(response)).await.is_err()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::commit::CommittedTx;
    use crate::proto::protos::{ChaincodeEvent, TxValidationCode};

    fn block(number: u64, txs: &[(&str, &str)]) -> CommittedBlock {
        CommittedBlock {
            channel: "mychannel".into(),
            number,
            txs: txs
                .iter()
                .map(|(tx_id, chaincode)| CommittedTx {
                    tx_id: tx_id.to_string(),
                    code: TxValidationCode::Valid,
                    chaincode_events: vec![ChaincodeEvent {
                        chaincode_id: chaincode.to_string(),
                        tx_id: tx_id.to_string(),
                        event_name: format!("ev-{tx_id}"),
                        payload: Vec::new(),
                    }],
                })
                .collect(),
        }
    }

    fn filter(after: Option<&str>, next_block: u64) -> EventFilter {
        EventFilter {
            channel: "mychannel".into(),
            chaincode: "basic".into(),
            after_transaction_id: after.map(str::to_string),
            next_block,
        }
    }

    fn names(response: Option<ChaincodeEventsResponse>) -> Vec<String> {
        response
            .map(|r| r.events.into_iter().map(|e| e.event_name).collect())
            .unwrap_or_default()
    }

    #[test]
    fn events_of_other_chaincodes_channels_and_earlier_blocks_are_not_sent() {
        let mut f = filter(None, 3);
        assert!(f.take(&block(2, &[("t1", "basic")])).is_none());
        let got = f.take(&block(3, &[("t2", "basic"), ("t3", "other")]));
        assert_eq!(got.as_ref().map(|r| r.block_number), Some(3));
        assert_eq!(names(got), ["ev-t2"]);
        // A block seen twice (log catch-up, then the broadcast) is sent once.
        assert!(f.take(&block(3, &[("t2", "basic")])).is_none());
        let mut other_channel = block(4, &[("t4", "basic")]);
        other_channel.channel = "otherchannel".into();
        assert!(f.take(&other_channel).is_none());
    }

    #[test]
    fn resuming_after_a_transaction_skips_it_and_everything_before_it_in_its_block() {
        let mut f = filter(Some("t2"), 5);
        let got = f.take(&block(
            5,
            &[("t1", "basic"), ("t2", "basic"), ("t3", "basic")],
        ));
        assert_eq!(names(got), ["ev-t3"]);
        assert_eq!(names(f.take(&block(6, &[("t4", "basic")]))), ["ev-t4"]);
    }

    #[test]
    fn error_details_carry_the_gateway_error_detail_message() {
        let status = status_with_details(
            Code::Aborted,
            "failed",
            &[ErrorDetail {
                address: "127.0.0.1:7051".into(),
                msp_id: "Org1MSP".into(),
                message: "chaincode response 500, boom".into(),
            }],
        );
        let rpc = RpcStatus::decode(status.details()).unwrap();
        assert_eq!(rpc.code, Code::Aborted as i32);
        assert_eq!(
            rpc.details[0].type_url,
            "type.googleapis.com/gateway.ErrorDetail"
        );
        let detail = ErrorDetail::decode(rpc.details[0].value.as_slice()).unwrap();
        assert_eq!(detail.message, "chaincode response 500, boom");
    }
}
