//! The peer's `protos.Deliver` service: `Deliver` (full blocks), `DeliverFiltered` (filtered
//! blocks) and `DeliverWithPrivateData` (blocks with their private data), served from the
//! committer's per-channel block log, following Fabric's `common/deliver` and
//! `core/peer/deliverevents.go`.
//!
//! A client sends signed `Envelope`s whose payload has a `DELIVER_SEEK_INFO` channel header and a
//! `SeekInfo` as data. Per envelope, in Fabric's order: the envelope must decode (else
//! `BAD_REQUEST`), the channel must exist (`NOT_FOUND`), the creator must be a channel reader
//! (a trusted identity now) that signed the payload (`FORBIDDEN`), and the `SeekInfo` must make
//! sense (`BAD_REQUEST`). Blocks are then read from the log in bounded batches, then followed as
//! they are committed (the committer's broadcast is only a wake-up: the log is the one source,
//! so a stream that falls behind misses nothing and sees no block twice), until the stop block
//! (`SUCCESS`; the client may then send the next envelope on the same stream). Any other status
//! ends the stream; so does the node shutting down (`SERVICE_UNAVAILABLE`, without waiting on a
//! client that does not read).
//!
//! [`parse_request`], [`resolve_seek`] and [`filtered_block`] are the pure core; the statuses
//! become `DeliverResponse`s only in the service.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use prost::Message;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::endorser::commit::Committer;
use crate::endorser::commit::blocklog::transactions_filter;
use crate::endorser::identity::TrustStore;
use crate::endorser::ledger::WorldState;
use crate::endorser::ledger::private::readable_private_data;
use crate::proto::common::{
    Block, ChannelHeader, Envelope, HeaderType, Payload, SignatureHeader, Status as FabricStatus,
};
use crate::proto::orderer::seek_info::{SeekBehavior, SeekContentType};
use crate::proto::orderer::seek_position::Type as Seek;
use crate::proto::orderer::{SeekInfo, SeekPosition};
use crate::proto::protos::deliver_server::{Deliver, DeliverServer};
use crate::proto::protos::{
    BlockAndPrivateData, ChaincodeAction, ChaincodeActionPayload, ChaincodeEvent, DeliverResponse,
    FilteredBlock, FilteredChaincodeAction, FilteredTransaction, FilteredTransactionActions,
    ProposalResponsePayload, Transaction, TxValidationCode, deliver_response, filtered_transaction,
};
use crate::proto::rwset::TxPvtReadWriteSet;

/// How far a request's timestamp may be from the node's clock (Fabric's default `TimeWindow`).
pub const TIME_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Blocks read from the log at a time (bounded memory however long the log is).
const READ_BATCH: u64 = 64;

/// A request the service answers with a status instead of blocks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("not found: {0}")]
    NotFound(String),
}

impl Refusal {
    /// The `common.Status` Fabric answers with.
    pub fn status(&self) -> FabricStatus {
        match self {
            Refusal::BadRequest(_) => FabricStatus::BadRequest,
            Refusal::Forbidden(_) => FabricStatus::Forbidden,
            Refusal::NotFound(_) => FabricStatus::NotFound,
        }
    }
}

/// A checked Deliver request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverRequest {
    pub channel: String,
    pub seek: SeekInfo,
    /// The requester's organisation (which private data it may receive).
    pub mspid: String,
}

fn bad(what: &str, err: impl std::fmt::Display) -> Refusal {
    Refusal::BadRequest(format!("{what}: {err}"))
}

/// Checks a Deliver envelope (see the module documentation). `channel_exists` says whether
/// this node has the channel.
pub fn parse_request(
    envelope: &Envelope,
    trust: &TrustStore,
    channel_exists: impl Fn(&str) -> bool,
    now: SystemTime,
) -> Result<DeliverRequest, Refusal> {
    let payload = Payload::decode(envelope.payload.as_slice())
        .map_err(|e| bad("malformed envelope payload", e))?;
    let header = payload
        .header
        .as_ref()
        .ok_or_else(|| Refusal::BadRequest("the envelope payload has no header".into()))?;
    let channel_header = ChannelHeader::decode(header.channel_header.as_slice())
        .map_err(|e| bad("malformed channel header", e))?;
    if channel_header.r#type != HeaderType::DeliverSeekInfo as i32 {
        return Err(Refusal::BadRequest(format!(
            "channel header type is {}, expected DELIVER_SEEK_INFO ({})",
            channel_header.r#type,
            HeaderType::DeliverSeekInfo as i32
        )));
    }
    let at = channel_header
        .timestamp
        .as_ref()
        .ok_or_else(|| Refusal::BadRequest("the channel header has no timestamp".into()))?;
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(at.seconds).unwrap_or(0))
        + Duration::from_nanos(u64::try_from(at.nanos).unwrap_or(0));
    let skew = now
        .duration_since(at)
        .unwrap_or_else(|future| future.duration());
    if skew > TIME_WINDOW {
        return Err(Refusal::BadRequest(format!(
            "the request's timestamp is {}s away from the peer's clock, more than the allowed {}s",
            skew.as_secs(),
            TIME_WINDOW.as_secs()
        )));
    }
    let signature_header = SignatureHeader::decode(header.signature_header.as_slice())
        .map_err(|e| bad("malformed signature header", e))?;
    let channel = channel_header.channel_id;
    if !channel_exists(&channel) {
        return Err(Refusal::NotFound(format!("channel '{channel}' not found")));
    }
    let creator = trust
        .validate_creator(&signature_header.creator, now)
        .map_err(|e| {
            Refusal::Forbidden(format!("the creator is not a reader of '{channel}': {e}"))
        })?;
    creator
        .verify(&envelope.payload, &envelope.signature)
        .map_err(|e| Refusal::Forbidden(format!("the envelope signature is not valid: {e}")))?;
    let seek =
        SeekInfo::decode(payload.data.as_slice()).map_err(|e| bad("malformed SeekInfo", e))?;
    Ok(DeliverRequest {
        channel,
        seek,
        mspid: creator.mspid().to_string(),
    })
}

/// The blocks a `SeekInfo` asks for, resolved against the channel's height.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeekPlan {
    pub start: u64,
    /// The last block to send; `u64::MAX` follows the channel forever.
    pub stop: u64,
    /// FAIL_IF_NOT_READY: answer NOT_FOUND instead of waiting for a block not yet committed.
    pub fail_if_not_ready: bool,
    /// HEADER_WITH_SIG: blocks without their data.
    pub headers_only: bool,
}

fn position(position: Option<&SeekPosition>, which: &str) -> Result<Seek, Refusal> {
    position
        .and_then(|p| p.r#type)
        .ok_or_else(|| Refusal::BadRequest(format!("the seek info has no {which} position")))
}

/// Fabric's seek resolution: oldest = 0, newest = height - 1, next commit = height,
/// specified = that number (NOT_FOUND beyond the height: Fabric's ledger has no iterator
/// there); the stop is the start for `oldest`, the newest block now for `newest`, and a
/// specified stop before the start is a BAD_REQUEST.
pub fn resolve_seek(seek: &SeekInfo, height: u64) -> Result<SeekPlan, Refusal> {
    let start_position = position(seek.start.as_ref(), "start")?;
    let stop_position = position(seek.stop.as_ref(), "stop")?;
    let newest = height.saturating_sub(1);
    let start = match &start_position {
        Seek::Oldest(_) => 0,
        Seek::Newest(_) => newest,
        Seek::NextCommit(_) => height,
        Seek::Specified(specified) if specified.number > height => {
            return Err(Refusal::NotFound(format!(
                "block {} is beyond the channel's height {height}",
                specified.number
            )));
        }
        Seek::Specified(specified) => specified.number,
    };
    let stop = match &stop_position {
        Seek::Oldest(_) => start,
        Seek::Newest(_) => newest.max(start),
        Seek::NextCommit(_) => height.max(start),
        Seek::Specified(specified) => specified.number,
    };
    if stop < start {
        return Err(Refusal::BadRequest(format!(
            "the stop block {stop} is before the start block {start}"
        )));
    }
    let behavior = SeekBehavior::try_from(seek.behavior)
        .map_err(|_| Refusal::BadRequest(format!("unknown seek behavior {}", seek.behavior)))?;
    let content = SeekContentType::try_from(seek.content_type).map_err(|_| {
        Refusal::BadRequest(format!("unknown seek content type {}", seek.content_type))
    })?;
    let plan = SeekPlan {
        start,
        stop,
        fail_if_not_ready: behavior == SeekBehavior::FailIfNotReady,
        headers_only: content == SeekContentType::HeaderWithSig,
    };
    if plan.fail_if_not_ready && start >= height {
        return Err(Refusal::NotFound(format!(
            "block {start} is not committed yet (height {height}) and the request does not wait"
        )));
    }
    Ok(plan)
}

/// The chaincode events of an endorser transaction's actions, without payloads. Parts that do
/// not decode (possible only in transactions the committer marked invalid) are skipped.
fn filtered_actions(data: &[u8], tx_id: &str) -> FilteredTransactionActions {
    let mut chaincode_actions = Vec::new();
    let actions = Transaction::decode(data)
        .map(|tx| tx.actions)
        .unwrap_or_default();
    for action in actions {
        let event = ChaincodeActionPayload::decode(action.payload.as_slice())
            .ok()
            .and_then(|payload| payload.action)
            .and_then(|endorsed| {
                ProposalResponsePayload::decode(endorsed.proposal_response_payload.as_slice()).ok()
            })
            .and_then(|prp| ChaincodeAction::decode(prp.extension.as_slice()).ok())
            .and_then(|action| ChaincodeEvent::decode(action.events.as_slice()).ok());
        if let Some(event) = event.filter(|e| !e.chaincode_id.is_empty()) {
            chaincode_actions.push(FilteredChaincodeAction {
                chaincode_event: Some(ChaincodeEvent {
                    chaincode_id: event.chaincode_id,
                    tx_id: if event.tx_id.is_empty() {
                        tx_id.to_string()
                    } else {
                        event.tx_id
                    },
                    event_name: event.event_name,
                    payload: Vec::new(),
                }),
            });
        }
    }
    FilteredTransactionActions { chaincode_actions }
}

/// Fabric's filtered block: per transaction its id, header type and validation code, and for
/// endorser transactions their chaincode events without payloads.
pub fn filtered_block(channel: &str, block: &Block) -> FilteredBlock {
    let codes = transactions_filter(block);
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or(&[]);
    let filtered_transactions = data
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let payload = Envelope::decode(bytes.as_slice())
                .ok()
                .and_then(|envelope| Payload::decode(envelope.payload.as_slice()).ok());
            let header = payload
                .as_ref()
                .and_then(|p| p.header.as_ref())
                .and_then(|h| ChannelHeader::decode(h.channel_header.as_slice()).ok())
                .unwrap_or_default();
            let code = codes
                .get(index)
                .copied()
                .unwrap_or(TxValidationCode::InvalidOtherReason);
            let data = (header.r#type == HeaderType::EndorserTransaction as i32).then(|| {
                let bytes = payload.as_ref().map(|p| p.data.as_slice()).unwrap_or(&[]);
                filtered_transaction::Data::TransactionActions(filtered_actions(
                    bytes,
                    &header.tx_id,
                ))
            });
            FilteredTransaction {
                txid: header.tx_id,
                r#type: header.r#type,
                tx_validation_code: code as i32,
                data,
            }
        })
        .collect();
    FilteredBlock {
        channel_id: channel.to_string(),
        number: block.header.as_ref().map(|h| h.number).unwrap_or_default(),
        filtered_transactions,
    }
}

/// What a Deliver RPC streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    Blocks,
    Filtered,
    WithPrivateData,
}

/// The response carrying `block` for `content` (`private`: the block's private data the
/// requester may see, by transaction index; only sent with `WithPrivateData`).
pub fn block_response(
    content: Content,
    channel: &str,
    mut block: Block,
    plan: &SeekPlan,
    private: HashMap<u64, TxPvtReadWriteSet>,
) -> DeliverResponse {
    use deliver_response::Type;
    let r#type = match content {
        Content::Filtered => Type::FilteredBlock(filtered_block(channel, &block)),
        Content::Blocks | Content::WithPrivateData => {
            if plan.headers_only {
                block.data = None;
            }
            if content == Content::Blocks {
                Type::Block(block)
            } else {
                Type::BlockAndPrivateData(BlockAndPrivateData {
                    block: Some(block),
                    private_data_map: private,
                })
            }
        }
    };
    DeliverResponse {
        r#type: Some(r#type),
    }
}

fn status_response(status: FabricStatus) -> DeliverResponse {
    DeliverResponse {
        r#type: Some(deliver_response::Type::Status(status as i32)),
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DeliverResponse, Status>> + Send>>;
type Sender = mpsc::Sender<Result<DeliverResponse, Status>>;

/// The Deliver service over a [`Committer`]'s block logs.
#[derive(Clone)]
pub struct DeliverService {
    committer: Committer,
    trust: Arc<TrustStore>,
    /// Where DeliverWithPrivateData finds committed private data; none: an empty map.
    private: Option<WorldState>,
    shutdown: watch::Receiver<bool>,
    buffer: usize,
}

/// How one request ended.
enum Outcome {
    /// The stop block was sent, or the request was refused: send this status.
    Status(FabricStatus),
    /// The client went away or the node is shutting down: end the stream.
    End,
}

impl DeliverService {
    pub fn new(committer: Committer, trust: Arc<TrustStore>) -> Self {
        Self {
            committer,
            trust,
            private: None,
            shutdown: watch::channel(false).1,
            buffer: 16,
        }
    }

    /// DeliverWithPrivateData sends the private data committed in `world`.
    pub fn with_private_data(mut self, world: WorldState) -> Self {
        self.private = Some(world);
        self
    }

    /// The private data of `block_num` that `mspid` may receive (read off the async threads).
    async fn private_data(
        &self,
        channel: &str,
        block_num: u64,
        mspid: &str,
    ) -> Result<HashMap<u64, TxPvtReadWriteSet>, String> {
        let Some(world) = self.private.clone() else {
            return Ok(HashMap::new());
        };
        let height = self.committer.height(channel);
        let (channel, mspid) = (channel.to_string(), mspid.to_string());
        tokio::task::spawn_blocking(move || {
            let lookup = world.collection_lookup();
            let sets = world
                .block_private_data(&channel, block_num)
                .map_err(|e| e.to_string())?;
            Ok(sets
                .into_iter()
                .map(|(tx, set)| {
                    let readable = readable_private_data(
                        &set,
                        &mspid,
                        &channel,
                        lookup.as_deref(),
                        block_num,
                        height,
                    );
                    (tx, readable)
                })
                .filter(|(_, set)| !set.ns_pvt_rwset.is_empty())
                .collect())
        })
        .await
        .map_err(|e| e.to_string())?
    }

    /// Streams end when `shutdown` becomes true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn into_server(self) -> DeliverServer<Self> {
        DeliverServer::new(self)
    }

    fn serve(&self, requests: Streaming<Envelope>, content: Content) -> ResponseStream {
        let (tx, rx) = mpsc::channel(self.buffer);
        tokio::spawn(self.clone().run(requests, content, tx));
        Box::pin(ReceiverStream::new(rx))
    }

    /// Answers the stream's envelopes one after the other until one is not a SUCCESS.
    async fn run(self, mut requests: Streaming<Envelope>, content: Content, tx: Sender) {
        let mut shutdown = self.shutdown.clone();
        loop {
            let envelope = tokio::select! {
                next = requests.next() => next,
                _ = stopped(&mut shutdown) => {
                    let _ = tx.try_send(Ok(status_response(FabricStatus::ServiceUnavailable)));
                    return;
                }
            };
            let envelope = match envelope {
                Some(Ok(envelope)) => envelope,
                // The client closed its side (or broke the stream): nothing more to answer.
                Some(Err(_)) | None => return,
            };
            let status = match self.answer(&envelope, content, &tx, &mut shutdown).await {
                Outcome::Status(status) => status,
                Outcome::End => return,
            };
            if !send(&tx, status_response(status), &mut shutdown).await
                || status != FabricStatus::Success
            {
                return;
            }
        }
    }

    async fn answer(
        &self,
        envelope: &Envelope,
        content: Content,
        tx: &Sender,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Outcome {
        // Subscribed before the height is read, so no commit after it goes unnoticed.
        let mut live = self.committer.subscribe();
        let request = match parse_request(
            envelope,
            &self.trust,
            |channel| self.committer.height(channel) > 0,
            SystemTime::now(),
        ) {
            Ok(request) => request,
            Err(refusal) => {
                tracing::debug!(%refusal, "deliver request refused");
                return Outcome::Status(refusal.status());
            }
        };
        let channel = request.channel;
        let plan = match resolve_seek(&request.seek, self.committer.height(&channel)) {
            Ok(plan) => plan,
            Err(refusal) => {
                tracing::debug!(%refusal, %channel, "deliver request refused");
                return Outcome::Status(refusal.status());
            }
        };
        let mut next = plan.start;
        loop {
            let height = self.committer.height(&channel);
            if next < height {
                let limit = READ_BATCH
                    .min(height - next)
                    .min((plan.stop - next).saturating_add(1));
                let reader = self.committer.clone();
                let name = channel.clone();
                let read = tokio::task::spawn_blocking(move || {
                    reader.raw_blocks_range(&name, next, limit)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|blocks| blocks.map_err(|e| e.to_string()));
                let blocks = match read {
                    Ok(blocks) if !blocks.is_empty() => blocks,
                    Ok(_) => {
                        tracing::error!(%channel, next, "the block log returned no blocks below its height");
                        return Outcome::Status(FabricStatus::InternalServerError);
                    }
                    Err(error) => {
                        tracing::error!(%channel, %error, "reading the block log for Deliver");
                        return Outcome::Status(FabricStatus::InternalServerError);
                    }
                };
                for block in blocks {
                    let number = block.header.as_ref().map(|h| h.number);
                    if number != Some(next) {
                        tracing::error!(%channel, next, ?number, "the block log is out of sequence");
                        return Outcome::Status(FabricStatus::InternalServerError);
                    }
                    let private = if content == Content::WithPrivateData && !plan.headers_only {
                        match self.private_data(&channel, next, &request.mspid).await {
                            Ok(private) => private,
                            Err(error) => {
                                tracing::error!(%channel, %error, "reading private data for Deliver");
                                return Outcome::Status(FabricStatus::InternalServerError);
                            }
                        }
                    } else {
                        HashMap::new()
                    };
                    let response = block_response(content, &channel, block, &plan, private);
                    if !send(tx, response, shutdown).await {
                        return Outcome::End;
                    }
                    if next == plan.stop {
                        return Outcome::Status(FabricStatus::Success);
                    }
                    next += 1;
                }
                continue;
            }
            if plan.fail_if_not_ready {
                return Outcome::Status(FabricStatus::NotFound);
            }
            // Caught up: wait for the next commit (any channel; the height says if it is ours).
            tokio::select! {
                _ = tx.closed() => return Outcome::End,
                _ = stopped(shutdown) => {
                    let _ = tx.try_send(Ok(status_response(FabricStatus::ServiceUnavailable)));
                    return Outcome::End;
                }
                received = live.recv() => match received {
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return Outcome::End,
                },
            }
        }
    }
}

/// Sends `response` unless the client is gone or the node shuts down first (then it says so if
/// there is room, never waiting on a client that does not read); false when the stream is over.
async fn send(
    tx: &Sender,
    response: DeliverResponse,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        sent = tx.send(Ok(response)) => sent.is_ok(),
        _ = stopped(shutdown) => {
            let _ = tx.try_send(Ok(status_response(FabricStatus::ServiceUnavailable)));
            false
        }
    }
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[tonic::async_trait]
impl Deliver for DeliverService {
    type DeliverStream = ResponseStream;
    type DeliverFilteredStream = ResponseStream;
    type DeliverWithPrivateDataStream = ResponseStream;

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<ResponseStream>, Status> {
        Ok(Response::new(
            self.serve(request.into_inner(), Content::Blocks),
        ))
    }

    async fn deliver_filtered(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<ResponseStream>, Status> {
        Ok(Response::new(
            self.serve(request.into_inner(), Content::Filtered),
        ))
    }

    async fn deliver_with_private_data(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<ResponseStream>, Status> {
        Ok(Response::new(
            self.serve(request.into_inner(), Content::WithPrivateData),
        ))
    }
}

/// A Deliver request as clients make it: `seek` for `channel`, signed by `signer` at `at`.
pub fn seek_envelope(
    signer: &crate::endorser::identity::SigningIdentity,
    channel: &str,
    seek: SeekInfo,
    at: SystemTime,
) -> Envelope {
    let nonce = crate::endorser::proposal::build::nonce().unwrap_or_default();
    let channel_header = ChannelHeader {
        r#type: HeaderType::DeliverSeekInfo as i32,
        timestamp: Some(crate::endorser::proposal::build::timestamp(at)),
        channel_id: channel.to_string(),
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(crate::proto::common::Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: SignatureHeader {
                creator: signer.serialized().to_vec(),
                nonce: nonce.to_vec(),
            }
            .encode_to_vec(),
        }),
        data: seek.encode_to_vec(),
    }
    .encode_to_vec();
    Envelope {
        signature: signer.sign(&payload),
        payload,
    }
}

/// A `SeekInfo` from `start` to `stop` (`u64::MAX`: follow forever).
pub fn seek_info(start: Seek, stop: u64, behavior: SeekBehavior) -> SeekInfo {
    use crate::proto::orderer::SeekSpecified;
    SeekInfo {
        start: Some(SeekPosition {
            r#type: Some(start),
        }),
        stop: Some(SeekPosition {
            r#type: Some(Seek::Specified(SeekSpecified { number: stop })),
        }),
        behavior: behavior as i32,
        ..SeekInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::commit::blocklog::new_block;
    use crate::endorser::identity::{Organization, SigningIdentity};
    use crate::endorser::node::devcrypto::{DevCa, LeafSpec};
    use crate::proto::orderer::{SeekNewest, SeekNextCommit, SeekOldest, SeekSpecified};
    use crate::proto::protos::TransactionAction;

    fn org(name: &str) -> (TrustStore, SigningIdentity) {
        let ca = DevCa::generate(&format!("ca.{name}"), name).unwrap();
        let leaf = ca.issue(&LeafSpec::identity("User1", "client")).unwrap();
        let signer =
            SigningIdentity::from_pem(name, leaf.cert_pem.as_bytes(), &leaf.key_pem).unwrap();
        let org = Organization::from_pems(name, &[ca.cert_pem().as_bytes()], &[]).unwrap();
        (TrustStore::new([org]), signer)
    }

    fn specified(number: u64) -> Seek {
        Seek::Specified(SeekSpecified { number })
    }

    fn plan(start: Seek, stop: Seek, height: u64) -> Result<SeekPlan, Refusal> {
        let seek = SeekInfo {
            start: Some(SeekPosition {
                r#type: Some(start),
            }),
            stop: Some(SeekPosition { r#type: Some(stop) }),
            ..SeekInfo::default()
        };
        resolve_seek(&seek, height)
    }

    #[test]
    fn seek_positions_resolve_like_fabric() {
        let p = plan(Seek::Oldest(SeekOldest {}), specified(u64::MAX), 5).unwrap();
        assert_eq!((p.start, p.stop, p.fail_if_not_ready), (0, u64::MAX, false));
        let p = plan(Seek::Newest(SeekNewest {}), Seek::Newest(SeekNewest {}), 5).unwrap();
        assert_eq!((p.start, p.stop), (4, 4));
        let p = plan(Seek::NextCommit(SeekNextCommit {}), specified(u64::MAX), 5).unwrap();
        assert_eq!(p.start, 5);
        let p = plan(specified(2), Seek::Oldest(SeekOldest {}), 5).unwrap();
        assert_eq!((p.start, p.stop), (2, 2));
        let p = plan(specified(1), Seek::Newest(SeekNewest {}), 5).unwrap();
        assert_eq!((p.start, p.stop), (1, 4));
        // The next block may be waited for; one further is not found.
        assert_eq!(plan(specified(5), specified(9), 5).unwrap().start, 5);
        assert!(matches!(
            plan(specified(6), specified(9), 5),
            Err(Refusal::NotFound(_))
        ));
        assert!(matches!(
            plan(specified(3), specified(2), 5),
            Err(Refusal::BadRequest(_))
        ));
        assert!(matches!(
            resolve_seek(&SeekInfo::default(), 5),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn fail_if_not_ready_refuses_a_start_at_or_beyond_the_height() {
        let seek = |start| seek_info(start, u64::MAX, SeekBehavior::FailIfNotReady);
        assert!(
            resolve_seek(&seek(specified(4)), 5)
                .unwrap()
                .fail_if_not_ready
        );
        for start in [specified(5), Seek::NextCommit(SeekNextCommit {})] {
            assert_eq!(
                resolve_seek(&seek(start), 5).map_err(|r| r.status()),
                Err(FabricStatus::NotFound)
            );
        }
        let mut unknown = seek(specified(0));
        unknown.behavior = 7;
        assert!(matches!(
            resolve_seek(&unknown, 5),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn a_signed_request_from_a_trusted_reader_is_accepted() {
        let (trust, signer) = org("Org1MSP");
        let seek = seek_info(specified(1), 3, SeekBehavior::BlockUntilReady);
        let envelope = seek_envelope(&signer, "mychannel", seek, SystemTime::now());
        let request =
            parse_request(&envelope, &trust, |c| c == "mychannel", SystemTime::now()).unwrap();
        assert_eq!(request.channel, "mychannel");
        assert_eq!(request.seek, seek);
    }

    #[test]
    fn bad_envelopes_get_fabric_statuses() {
        let (trust, signer) = org("Org1MSP");
        let (_, stranger) = org("Org1MSP");
        let now = SystemTime::now();
        let seek = seek_info(specified(0), 0, SeekBehavior::BlockUntilReady);
        let status = |envelope: &Envelope| {
            parse_request(envelope, &trust, |c| c == "mychannel", now)
                .map(|_| ())
                .map_err(|r| r.status())
        };
        let good = seek_envelope(&signer, "mychannel", seek, now);
        assert_eq!(status(&good), Ok(()));
        let garbage = Envelope {
            payload: vec![0xff; 9],
            signature: Vec::new(),
        };
        assert_eq!(status(&garbage), Err(FabricStatus::BadRequest));
        let unsigned = Envelope {
            signature: Vec::new(),
            ..good.clone()
        };
        assert_eq!(status(&unsigned), Err(FabricStatus::Forbidden));
        let mut tampered = good.clone();
        let last = tampered.payload.len() - 1;
        tampered.payload[last] ^= 1;
        assert_eq!(status(&tampered), Err(FabricStatus::Forbidden));
        // Same MSP id, another CA: not a member.
        let untrusted = seek_envelope(&stranger, "mychannel", seek, now);
        assert_eq!(status(&untrusted), Err(FabricStatus::Forbidden));
        let unknown = seek_envelope(&signer, "otherchannel", seek, now);
        assert_eq!(status(&unknown), Err(FabricStatus::NotFound));
        let stale = seek_envelope(&signer, "mychannel", seek, now - 2 * TIME_WINDOW);
        assert_eq!(status(&stale), Err(FabricStatus::BadRequest));
    }

    fn endorser_tx(tx_id: &str, event: Option<ChaincodeEvent>) -> Vec<u8> {
        let action = ChaincodeAction {
            events: event.map(|e| e.encode_to_vec()).unwrap_or_default(),
            ..ChaincodeAction::default()
        };
        let prp = ProposalResponsePayload {
            proposal_hash: vec![1],
            extension: action.encode_to_vec(),
        };
        let cap = ChaincodeActionPayload {
            chaincode_proposal_payload: Vec::new(),
            action: Some(crate::proto::protos::ChaincodeEndorsedAction {
                proposal_response_payload: prp.encode_to_vec(),
                endorsements: Vec::new(),
            }),
        };
        let tx = Transaction {
            actions: vec![TransactionAction {
                header: Vec::new(),
                payload: cap.encode_to_vec(),
            }],
        };
        let header = ChannelHeader {
            r#type: HeaderType::EndorserTransaction as i32,
            channel_id: "mychannel".into(),
            tx_id: tx_id.into(),
            ..ChannelHeader::default()
        };
        Envelope {
            payload: Payload {
                header: Some(crate::proto::common::Header {
                    channel_header: header.encode_to_vec(),
                    signature_header: Vec::new(),
                }),
                data: tx.encode_to_vec(),
            }
            .encode_to_vec(),
            signature: vec![1],
        }
        .encode_to_vec()
    }

    #[test]
    fn filtered_blocks_carry_ids_codes_and_events_without_payloads() {
        let event = ChaincodeEvent {
            chaincode_id: "basic".into(),
            tx_id: "t1".into(),
            event_name: "created".into(),
            payload: b"secret".to_vec(),
        };
        let block = new_block(
            3,
            vec![9; 32],
            vec![
                endorser_tx("t1", Some(event)),
                endorser_tx("t2", None),
                b"not an envelope".to_vec(),
            ],
            &[
                TxValidationCode::Valid,
                TxValidationCode::MvccReadConflict,
                TxValidationCode::InvalidEndorserTransaction,
            ],
        );
        let filtered = filtered_block("mychannel", &block);
        assert_eq!(
            (filtered.channel_id.as_str(), filtered.number),
            ("mychannel", 3)
        );
        let txs = &filtered.filtered_transactions;
        assert_eq!(txs.len(), 3);
        assert_eq!(txs[0].txid, "t1");
        assert_eq!(txs[0].r#type, HeaderType::EndorserTransaction as i32);
        assert_eq!(txs[0].tx_validation_code, TxValidationCode::Valid as i32);
        let Some(filtered_transaction::Data::TransactionActions(actions)) = &txs[0].data else {
            panic!("no actions: {:?}", txs[0]);
        };
        let event = actions.chaincode_actions[0]
            .chaincode_event
            .as_ref()
            .unwrap();
        assert_eq!(
            (event.chaincode_id.as_str(), event.event_name.as_str()),
            ("basic", "created")
        );
        assert!(event.payload.is_empty());
        assert_eq!(
            txs[1].tx_validation_code,
            TxValidationCode::MvccReadConflict as i32
        );
        assert!(
            matches!(&txs[1].data, Some(filtered_transaction::Data::TransactionActions(a)) if a.chaincode_actions.is_empty())
        );
        // An envelope that does not decode still has its place and code.
        assert_eq!(
            txs[2].tx_validation_code,
            TxValidationCode::InvalidEndorserTransaction as i32
        );
        assert!(txs[2].data.is_none());
    }

    #[test]
    fn headers_only_requests_get_blocks_without_data() {
        let block = new_block(
            0,
            Vec::new(),
            vec![b"x".to_vec()],
            &[TxValidationCode::Valid],
        );
        let mut plan = plan(specified(0), specified(0), 1).unwrap();
        plan.headers_only = true;
        let response = block_response(
            Content::Blocks,
            "mychannel",
            block.clone(),
            &plan,
            HashMap::new(),
        );
        let Some(deliver_response::Type::Block(sent)) = response.r#type else {
            panic!("not a block");
        };
        assert_eq!(sent.header, block.header);
        assert!(sent.data.is_none());
        let response = block_response(
            Content::WithPrivateData,
            "mychannel",
            block,
            &plan,
            HashMap::new(),
        );
        let Some(deliver_response::Type::BlockAndPrivateData(sent)) = response.r#type else {
            panic!("not a block and private data");
        };
        assert!(sent.private_data_map.is_empty());
    }
}
