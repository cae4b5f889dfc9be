//! The chaincode stream handler as a pure state machine: messages and commands in, messages to send
//! and effects out. No IO here; `support.rs` runs it on a tonic stream.
//!
//! States: `Created` (waiting for REGISTER) → `Authorizing` (the registration gate decides) →
//! `Established` (REGISTERED sent) → `Ready` (READY sent; transactions run) → `Closed`.
use std::collections::HashMap;

use prost::Message;

use crate::proto::protos::{
    ChaincodeEvent, ChaincodeId, ChaincodeInput, ChaincodeMessage, ChaincodeSpec, DelState,
    GetHistoryForKey, GetQueryResult, GetState, GetStateByRange, GetStateMetadata, PutState,
    PutStateMetadata, QueryMetadata, QueryStateClose, QueryStateNext, Response, SignedProposal,
    chaincode_message::Type,
};

#[cfg(test)]
mod tests;

/// A transaction is addressed by (channel id, transaction id) on a stream.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub channel_id: String,
    pub txid: String,
}

/// Where the handler is in the registration protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandlerState {
    Created,
    Authorizing { chaincode_id: String },
    Established { chaincode_id: String },
    Ready { chaincode_id: String },
    Closed,
}

/// INIT (legacy instantiate / `--isInit`) or TRANSACTION.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxKind {
    Init,
    Transaction,
}

/// A transaction to start on this stream. `ctx` is the caller's per-transaction context, handed
/// back with every effect of this transaction.
#[derive(Debug, Clone)]
pub struct TxStart<C> {
    pub key: TxKey,
    pub kind: TxKind,
    /// Chaincode name on the channel (the rwset namespace and the event's chaincode_id).
    pub chaincode_name: String,
    pub input: ChaincodeInput,
    pub proposal: Option<SignedProposal>,
    pub ctx: C,
}

/// A state request from the chaincode, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum StateRequest {
    GetState {
        key: String,
    },
    PutState {
        key: String,
        value: Vec<u8>,
    },
    DelState {
        key: String,
    },
    GetStateByRange {
        start: String,
        end: String,
        page: Option<QueryMetadata>,
    },
    QueryNext {
        id: String,
    },
    QueryClose {
        id: String,
    },
    GetHistoryForKey {
        key: String,
    },
    GetStateMetadata {
        key: String,
    },
    PutStateMetadata {
        key: String,
        name: String,
        value: Vec<u8>,
    },
    /// GET_STATE on a private data collection.
    GetPrivateData {
        collection: String,
        key: String,
    },
    /// PUT_STATE on a collection.
    PutPrivateData {
        collection: String,
        key: String,
        value: Vec<u8>,
    },
    /// DEL_STATE on a collection, or PURGE_PRIVATE_DATA (`purge`).
    DelPrivateData {
        collection: String,
        key: String,
        purge: bool,
    },
    GetPrivateDataHash {
        collection: String,
        key: String,
    },
    /// GET_STATE_BY_RANGE on a collection.
    GetPrivateDataByRange {
        collection: String,
        start: String,
        end: String,
    },
    /// INVOKE_CHAINCODE: `target` is the chaincode name, `channel` its channel if given ("cc/ch").
    Invoke {
        target: String,
        channel: Option<String>,
        input: ChaincodeInput,
    },
}

/// How a transaction ended, as seen by the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum TxFailure {
    /// The chaincode sent ERROR.
    Chaincode(String),
    /// The chaincode broke the protocol for this transaction (e.g. a COMPLETED that does not decode).
    Protocol(String),
    /// `cancel` was called (the execute timeout fired).
    Cancelled(String),
    /// The stream ended while the transaction was running.
    StreamClosed,
}

/// Why a `start` was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartRefused {
    NotReady,
    Closed,
    Duplicate(TxKey),
}

/// A COMPLETED transaction: the chaincode's response and event (ids filled in by the peer side).
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    pub response: Response,
    pub event: Option<ChaincodeEvent>,
}

/// What the handler asks its driver to do.
#[derive(Debug)]
pub enum Output<C> {
    /// Send this message to the chaincode.
    Send(ChaincodeMessage),
    /// Ask the registration gate about `chaincode_id`; answer with `Input::Authorized`.
    Authorize { chaincode_id: String },
    /// The chaincode is ready for transactions.
    Ready { chaincode_id: String },
    /// Serve a state request; answer with `Input::Reply` (RESPONSE or ERROR built by `reply_*`).
    State {
        key: TxKey,
        ctx: C,
        namespace: String,
        request: StateRequest,
    },
    /// A transaction finished (or failed); `ctx` leaves the handler.
    Finished {
        key: TxKey,
        ctx: C,
        result: Result<Completion, TxFailure>,
    },
    /// A `start` was refused; `ctx` goes back to the caller.
    Refused { ctx: C, reason: StartRefused },
    /// Something worth logging that changes nothing.
    Warn(String),
    /// End the stream.
    Close { reason: String },
}

/// What the handler is fed.
#[derive(Debug)]
pub enum Input<C> {
    FromChaincode(ChaincodeMessage),
    Authorized(Result<(), String>),
    Start(TxStart<C>),
    /// Reply to a `State` effect; dropped if the transaction is no longer in flight.
    Reply {
        key: TxKey,
        message: ChaincodeMessage,
    },
    Cancel {
        key: TxKey,
        reason: String,
    },
    StreamClosed,
}

struct InFlight<C> {
    chaincode_name: String,
    ctx: C,
}

/// The per-stream state machine.
pub struct Handler<C> {
    state: HandlerState,
    in_flight: HashMap<TxKey, InFlight<C>>,
    /// Largest message a ready chaincode may send; a larger one fails its transaction only.
    max_message_bytes: usize,
}

impl<C: Clone> Default for Handler<C> {
    fn default() -> Self {
        Self::new()
    }
}

fn message(kind: Type, key: Option<&TxKey>, payload: Vec<u8>) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: key.map(|k| k.txid.clone()).unwrap_or_default(),
        channel_id: key.map(|k| k.channel_id.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// RESPONSE to a state request.
pub fn reply_response(key: &TxKey, payload: Vec<u8>) -> ChaincodeMessage {
    message(Type::Response, Some(key), payload)
}

/// ERROR to a state request; the shim turns the payload into the rejected promise's message.
pub fn reply_error(key: &TxKey, text: &str) -> ChaincodeMessage {
    message(Type::Error, Some(key), text.as_bytes().to_vec())
}

fn type_name(raw: i32) -> String {
    Type::try_from(raw)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("unknown type {raw}"))
}

impl<C: Clone> Handler<C> {
    pub fn new() -> Self {
        Self {
            state: HandlerState::Created,
            in_flight: HashMap::new(),
            max_message_bytes: usize::MAX,
        }
    }

    /// Fails the transaction of any message over `limit` bytes (encoded) instead of handling it.
    pub fn with_message_limit(mut self, limit: usize) -> Self {
        self.max_message_bytes = limit;
        self
    }

    pub fn state(&self) -> &HandlerState {
        &self.state
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Feeds one input; returns what to do, in order.
    pub fn handle(&mut self, input: Input<C>) -> Vec<Output<C>> {
        match input {
            Input::FromChaincode(msg) => self.on_message(msg),
            Input::Authorized(decision) => self.on_authorized(decision),
            Input::Start(start) => self.on_start(start),
            Input::Reply { key, message } => {
                if self.in_flight.contains_key(&key) {
                    vec![Output::Send(message)]
                } else {
                    vec![Output::Warn(format!(
                        "dropping reply for finished transaction {}/{}",
                        key.channel_id, key.txid
                    ))]
                }
            }
            Input::Cancel { key, reason } => match self.in_flight.remove(&key) {
                Some(f) => vec![Output::Finished {
                    key,
                    ctx: f.ctx,
                    result: Err(TxFailure::Cancelled(reason)),
                }],
                None => Vec::new(),
            },
            Input::StreamClosed => self.close_all(TxFailure::StreamClosed, None),
        }
    }

    fn protocol_error(&mut self, text: String) -> Vec<Output<C>> {
        let mut out = vec![Output::Send(message(
            Type::Error,
            None,
            text.as_bytes().to_vec(),
        ))];
        out.extend(self.close_all(TxFailure::Protocol(text.clone()), Some(text)));
        out
    }

    fn close_all(&mut self, failure: TxFailure, reason: Option<String>) -> Vec<Output<C>> {
        let was_open = self.state != HandlerState::Closed;
        self.state = HandlerState::Closed;
        let mut out: Vec<Output<C>> = self
            .in_flight
            .drain()
            .map(|(key, f)| Output::Finished {
                key,
                ctx: f.ctx,
                result: Err(failure.clone()),
            })
            .collect();
        if was_open {
            out.push(Output::Close {
                reason: reason.unwrap_or_else(|| "stream closed".to_string()),
            });
        }
        out
    }

    fn on_authorized(&mut self, decision: Result<(), String>) -> Vec<Output<C>> {
        let HandlerState::Authorizing { chaincode_id } = &self.state else {
            return vec![Output::Warn(
                "authorization result outside Authorizing".into(),
            )];
        };
        let chaincode_id = chaincode_id.clone();
        match decision {
            Err(refusal) => {
                let mut out = vec![Output::Send(message(
                    Type::Error,
                    None,
                    refusal.as_bytes().to_vec(),
                ))];
                out.extend(self.close_all(
                    TxFailure::StreamClosed,
                    Some(format!("registration of {chaincode_id} refused: {refusal}")),
                ));
                out
            }
            Ok(()) => {
                self.state = HandlerState::Established {
                    chaincode_id: chaincode_id.clone(),
                };
                let mut out = vec![Output::Send(message(Type::Registered, None, Vec::new()))];
                out.extend(self.become_ready());
                out
            }
        }
    }

    fn become_ready(&mut self) -> Vec<Output<C>> {
        let HandlerState::Established { chaincode_id } = &self.state else {
            return Vec::new();
        };
        let chaincode_id = chaincode_id.clone();
        self.state = HandlerState::Ready {
            chaincode_id: chaincode_id.clone(),
        };
        vec![
            Output::Send(message(Type::Ready, None, Vec::new())),
            Output::Ready { chaincode_id },
        ]
    }

    fn on_start(&mut self, start: TxStart<C>) -> Vec<Output<C>> {
        let refuse = |ctx, reason| vec![Output::Refused { ctx, reason }];
        match self.state {
            HandlerState::Ready { .. } => {}
            HandlerState::Closed => return refuse(start.ctx, StartRefused::Closed),
            _ => return refuse(start.ctx, StartRefused::NotReady),
        }
        if self.in_flight.contains_key(&start.key) {
            return refuse(start.ctx, StartRefused::Duplicate(start.key));
        }
        let kind = match start.kind {
            TxKind::Init => Type::Init,
            TxKind::Transaction => Type::Transaction,
        };
        let mut msg = message(kind, Some(&start.key), start.input.encode_to_vec());
        msg.proposal = start.proposal;
        self.in_flight.insert(
            start.key,
            InFlight {
                chaincode_name: start.chaincode_name,
                ctx: start.ctx,
            },
        );
        vec![Output::Send(msg)]
    }

    fn on_message(&mut self, msg: ChaincodeMessage) -> Vec<Output<C>> {
        let kind = Type::try_from(msg.r#type).ok();
        match &self.state {
            HandlerState::Created => match kind {
                Some(Type::Register) => match ChaincodeId::decode(msg.payload.as_slice()) {
                    Ok(id) if !id.name.is_empty() => {
                        self.state = HandlerState::Authorizing {
                            chaincode_id: id.name.clone(),
                        };
                        vec![Output::Authorize {
                            chaincode_id: id.name,
                        }]
                    }
                    Ok(_) => self.protocol_error("REGISTER carries an empty chaincode name".into()),
                    Err(e) => {
                        self.protocol_error(format!("REGISTER payload is not a ChaincodeID: {e}"))
                    }
                },
                _ => self.protocol_error(format!(
                    "expected REGISTER as the first message, got {}",
                    type_name(msg.r#type)
                )),
            },
            HandlerState::Authorizing { .. } | HandlerState::Established { .. } => {
                self.protocol_error(format!("received {} before READY", type_name(msg.r#type)))
            }
            HandlerState::Closed => Vec::new(),
            HandlerState::Ready { .. } => self.on_ready_message(kind, msg),
        }
    }

    fn on_ready_message(&mut self, kind: Option<Type>, msg: ChaincodeMessage) -> Vec<Output<C>> {
        let key = TxKey {
            channel_id: msg.channel_id.clone(),
            txid: msg.txid.clone(),
        };
        let size = msg.encoded_len();
        if size > self.max_message_bytes {
            return self.on_oversized(kind, key, size, msg.r#type);
        }
        match kind {
            Some(Type::Keepalive) => Vec::new(),
            Some(Type::Register) => self.protocol_error("REGISTER received twice".into()),
            Some(Type::Completed) => self.on_completed(key, msg),
            Some(Type::Error) => match self.in_flight.remove(&key) {
                Some(f) => vec![Output::Finished {
                    key,
                    ctx: f.ctx,
                    result: Err(TxFailure::Chaincode(
                        String::from_utf8_lossy(&msg.payload).into_owned(),
                    )),
                }],
                None => vec![Output::Warn(format!(
                    "ERROR for unknown transaction {}/{}",
                    key.channel_id, key.txid
                ))],
            },
            _ => {
                let Some(flight) = self.in_flight.get(&key) else {
                    return vec![Output::Send(reply_error(
                        &key,
                        &format!(
                            "no transaction {} in flight on channel {:?} for {}",
                            key.txid,
                            key.channel_id,
                            type_name(msg.r#type)
                        ),
                    ))];
                };
                match decode_state_request(kind, &msg.payload) {
                    Ok(request) => vec![Output::State {
                        ctx: flight.ctx.clone(),
                        namespace: flight.chaincode_name.clone(),
                        key,
                        request,
                    }],
                    Err(text) => vec![Output::Send(reply_error(&key, &text))],
                }
            }
        }
    }

    /// A message over the limit fails its own transaction and nothing else: a state request gets
    /// ERROR (the shim's call rejects with the text, so the chaincode can report it), a COMPLETED
    /// or ERROR ends the transaction with the text. The stream and other transactions go on.
    fn on_oversized(
        &mut self,
        kind: Option<Type>,
        key: TxKey,
        size: usize,
        raw_type: i32,
    ) -> Vec<Output<C>> {
        let text = format!(
            "{} message of {size} bytes exceeds the peer's limit of {} bytes",
            type_name(raw_type),
            self.max_message_bytes
        );
        match kind {
            Some(Type::Completed) | Some(Type::Error) => match self.in_flight.remove(&key) {
                Some(flight) => vec![Output::Finished {
                    key,
                    ctx: flight.ctx,
                    result: Err(TxFailure::Protocol(text)),
                }],
                None => vec![Output::Warn(format!(
                    "{text} (transaction {}/{} is not in flight)",
                    key.channel_id, key.txid
                ))],
            },
            _ => vec![Output::Send(reply_error(&key, &text))],
        }
    }

    fn on_completed(&mut self, key: TxKey, msg: ChaincodeMessage) -> Vec<Output<C>> {
        let Some(flight) = self.in_flight.remove(&key) else {
            return vec![Output::Warn(format!(
                "COMPLETED for unknown transaction {}/{}",
                key.channel_id, key.txid
            ))];
        };
        let result = match Response::decode(msg.payload.as_slice()) {
            Ok(response) => Ok(Completion {
                response,
                event: msg.chaincode_event.map(|mut e| {
                    e.chaincode_id = flight.chaincode_name.clone();
                    e.tx_id = key.txid.clone();
                    e
                }),
            }),
            Err(e) => Err(TxFailure::Protocol(format!(
                "COMPLETED payload is not a Response: {e}"
            ))),
        };
        vec![Output::Finished {
            key,
            ctx: flight.ctx,
            result,
        }]
    }
}

const PRIVATE_DATA: &str = "not supported on private data collections by this peer";
/// Answer to GET_QUERY_RESULT: the world state is a key/value store, not CouchDB.
pub const RICH_QUERY_UNSUPPORTED: &str = "rich queries are not supported by this state database";

fn decode<M: Message + Default>(payload: &[u8], what: &str) -> Result<M, String> {
    M::decode(payload).map_err(|e| format!("malformed {what} payload: {e}"))
}

fn no_collection(what: &str, collection: &str) -> Result<(), String> {
    if collection.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{what} is {PRIVATE_DATA} (collection {collection:?})"
        ))
    }
}

/// Decodes a state request, or says (for the chaincode's ERROR) why it cannot be served.
pub fn decode_state_request(kind: Option<Type>, payload: &[u8]) -> Result<StateRequest, String> {
    match kind {
        Some(Type::GetState) => {
            let m: GetState = decode(payload, "GET_STATE")?;
            if m.collection.is_empty() {
                Ok(StateRequest::GetState { key: m.key })
            } else {
                Ok(StateRequest::GetPrivateData {
                    collection: m.collection,
                    key: m.key,
                })
            }
        }
        Some(Type::PutState) => {
            let m: PutState = decode(payload, "PUT_STATE")?;
            if m.collection.is_empty() {
                Ok(StateRequest::PutState {
                    key: m.key,
                    value: m.value,
                })
            } else {
                Ok(StateRequest::PutPrivateData {
                    collection: m.collection,
                    key: m.key,
                    value: m.value,
                })
            }
        }
        Some(Type::DelState) => {
            let m: DelState = decode(payload, "DEL_STATE")?;
            if m.collection.is_empty() {
                Ok(StateRequest::DelState { key: m.key })
            } else {
                Ok(StateRequest::DelPrivateData {
                    collection: m.collection,
                    key: m.key,
                    purge: false,
                })
            }
        }
        Some(Type::PurgePrivateData) => {
            let m: DelState = decode(payload, "PURGE_PRIVATE_DATA")?;
            if m.collection.is_empty() {
                return Err("PURGE_PRIVATE_DATA without a collection".into());
            }
            Ok(StateRequest::DelPrivateData {
                collection: m.collection,
                key: m.key,
                purge: true,
            })
        }
        Some(Type::GetPrivateDataHash) => {
            let m: GetState = decode(payload, "GET_PRIVATE_DATA_HASH")?;
            if m.collection.is_empty() {
                return Err("GET_PRIVATE_DATA_HASH without a collection".into());
            }
            Ok(StateRequest::GetPrivateDataHash {
                collection: m.collection,
                key: m.key,
            })
        }
        Some(Type::GetStateByRange) => {
            let m: GetStateByRange = decode(payload, "GET_STATE_BY_RANGE")?;
            if !m.collection.is_empty() {
                if !m.metadata.is_empty() {
                    // Fabric has no paginated queries on private data either.
                    return Err(format!(
                        "paginated range queries are {PRIVATE_DATA} (collection {:?})",
                        m.collection
                    ));
                }
                return Ok(StateRequest::GetPrivateDataByRange {
                    collection: m.collection,
                    start: m.start_key,
                    end: m.end_key,
                });
            }
            let page = if m.metadata.is_empty() {
                None
            } else {
                Some(decode::<QueryMetadata>(&m.metadata, "QueryMetadata")?)
            };
            Ok(StateRequest::GetStateByRange {
                start: m.start_key,
                end: m.end_key,
                page,
            })
        }
        Some(Type::QueryStateNext) => {
            let m: QueryStateNext = decode(payload, "QUERY_STATE_NEXT")?;
            Ok(StateRequest::QueryNext { id: m.id })
        }
        Some(Type::QueryStateClose) => {
            let m: QueryStateClose = decode(payload, "QUERY_STATE_CLOSE")?;
            Ok(StateRequest::QueryClose { id: m.id })
        }
        Some(Type::GetHistoryForKey) => {
            let m: GetHistoryForKey = decode(payload, "GET_HISTORY_FOR_KEY")?;
            Ok(StateRequest::GetHistoryForKey { key: m.key })
        }
        Some(Type::GetStateMetadata) => {
            let m: GetStateMetadata = decode(payload, "GET_STATE_METADATA")?;
            no_collection("state metadata", &m.collection)?;
            Ok(StateRequest::GetStateMetadata { key: m.key })
        }
        Some(Type::PutStateMetadata) => {
            let m: PutStateMetadata = decode(payload, "PUT_STATE_METADATA")?;
            no_collection("state metadata", &m.collection)?;
            let meta = m
                .metadata
                .ok_or_else(|| "PUT_STATE_METADATA without metadata".to_string())?;
            Ok(StateRequest::PutStateMetadata {
                key: m.key,
                name: meta.metakey,
                value: meta.value,
            })
        }
        Some(Type::GetQueryResult) => {
            let _: GetQueryResult = decode(payload, "GET_QUERY_RESULT")?;
            Err(RICH_QUERY_UNSUPPORTED.to_string())
        }
        Some(Type::InvokeChaincode) => {
            let spec: ChaincodeSpec = decode(payload, "INVOKE_CHAINCODE")?;
            let name = spec.chaincode_id.map(|id| id.name).unwrap_or_default();
            let (target, channel) = match name.split_once('/') {
                Some((cc, ch)) => (
                    cc.to_string(),
                    Some(ch.to_string()).filter(|c| !c.is_empty()),
                ),
                None => (name, None),
            };
            if target.is_empty() {
                return Err("INVOKE_CHAINCODE without a chaincode name".into());
            }
            Ok(StateRequest::Invoke {
                target,
                channel,
                input: spec.input.unwrap_or_default(),
            })
        }
        other => Err(format!(
            "the peer cannot handle message type {} from a ready chaincode",
            other.map_or("UNKNOWN".to_string(), |t| t.as_str_name().to_string())
        )),
    }
}
