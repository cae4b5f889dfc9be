//! Every state transition of the handler, including each protocol error.
use super::*;
use crate::proto::protos::{ChaincodeEvent, QueryMetadata, Response};

type H = Handler<u32>;

fn msg(kind: Type, txid: &str, payload: Vec<u8>) -> ChaincodeMessage {
    ChaincodeMessage {
        r#type: kind as i32,
        payload,
        txid: txid.into(),
        channel_id: if txid.is_empty() {
            String::new()
        } else {
            "ch".into()
        },
        ..Default::default()
    }
}

fn register(name: &str) -> ChaincodeMessage {
    msg(
        Type::Register,
        "",
        ChaincodeId {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

fn key(txid: &str) -> TxKey {
    TxKey {
        channel_id: "ch".into(),
        txid: txid.into(),
    }
}

fn start(txid: &str, ctx: u32) -> Input<u32> {
    Input::Start(TxStart {
        key: key(txid),
        kind: TxKind::Transaction,
        chaincode_name: "mycc".into(),
        input: ChaincodeInput {
            args: vec![b"fn".to_vec()],
            ..Default::default()
        },
        proposal: Some(SignedProposal::default()),
        ctx,
    })
}

fn sent(outputs: &[Output<u32>]) -> Vec<(Type, String)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send(m) => Some((
                Type::try_from(m.r#type).unwrap(),
                String::from_utf8_lossy(&m.payload).into_owned(),
            )),
            _ => None,
        })
        .collect()
}

fn closes(outputs: &[Output<u32>]) -> bool {
    outputs.iter().any(|o| matches!(o, Output::Close { .. }))
}

fn ready_handler() -> H {
    let mut h = H::new();
    h.handle(Input::FromChaincode(register("mycc:1.0")));
    h.handle(Input::Authorized(Ok(())));
    h
}

#[test]
fn register_asks_the_gate_then_registered_and_ready_are_sent() {
    let mut h = H::new();
    assert_eq!(h.state(), &HandlerState::Created);
    let out = h.handle(Input::FromChaincode(register("mycc:1.0")));
    assert!(matches!(&out[..], [Output::Authorize { chaincode_id }] if chaincode_id == "mycc:1.0"));
    assert_eq!(
        h.state(),
        &HandlerState::Authorizing {
            chaincode_id: "mycc:1.0".into()
        }
    );
    let out = h.handle(Input::Authorized(Ok(())));
    let kinds: Vec<Type> = sent(&out).into_iter().map(|(t, _)| t).collect();
    assert_eq!(kinds, [Type::Registered, Type::Ready]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Ready { chaincode_id } if chaincode_id == "mycc:1.0"))
    );
    assert_eq!(
        h.state(),
        &HandlerState::Ready {
            chaincode_id: "mycc:1.0".into()
        }
    );
}

#[test]
fn refused_registration_sends_the_reason_and_closes() {
    let mut h = H::new();
    h.handle(Input::FromChaincode(register("mycc:1.0")));
    let out = h.handle(Input::Authorized(Err("no launch expects mycc:1.0".into())));
    assert_eq!(
        sent(&out),
        [(Type::Error, "no launch expects mycc:1.0".to_string())]
    );
    assert!(closes(&out));
    assert_eq!(h.state(), &HandlerState::Closed);
}

#[test]
fn first_message_other_than_register_is_a_protocol_error() {
    for kind in [
        Type::Completed,
        Type::GetState,
        Type::Keepalive,
        Type::Undefined,
    ] {
        let mut h = H::new();
        let out = h.handle(Input::FromChaincode(msg(kind, "t", Vec::new())));
        let s = sent(&out);
        assert_eq!(s[0].0, Type::Error);
        assert!(s[0].1.contains("expected REGISTER"), "{}", s[0].1);
        assert!(closes(&out));
        assert_eq!(h.state(), &HandlerState::Closed);
    }
}

#[test]
fn register_with_bad_or_empty_payload_is_a_protocol_error() {
    let mut h = H::new();
    let out = h.handle(Input::FromChaincode(msg(
        Type::Register,
        "",
        vec![0xff, 0xff],
    )));
    assert!(sent(&out)[0].1.contains("not a ChaincodeID"));
    assert!(closes(&out));
    let mut h = H::new();
    let out = h.handle(Input::FromChaincode(register("")));
    assert!(sent(&out)[0].1.contains("empty chaincode name"));
    assert!(closes(&out));
}

#[test]
fn messages_while_authorizing_are_protocol_errors() {
    let mut h = H::new();
    h.handle(Input::FromChaincode(register("mycc:1.0")));
    let out = h.handle(Input::FromChaincode(msg(Type::GetState, "t", Vec::new())));
    assert!(sent(&out)[0].1.contains("before READY"));
    assert!(closes(&out));
    assert_eq!(h.state(), &HandlerState::Closed);
}

#[test]
fn second_register_is_a_protocol_error_that_fails_in_flight_transactions() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let out = h.handle(Input::FromChaincode(register("mycc:1.0")));
    assert!(out.iter().any(|o| matches!(
        o,
        Output::Finished {
            ctx: 1,
            result: Err(TxFailure::Protocol(_)),
            ..
        }
    )));
    assert!(closes(&out));
}

#[test]
fn start_before_ready_or_after_close_is_refused() {
    let mut h = H::new();
    let out = h.handle(start("t1", 7));
    assert!(matches!(
        &out[..],
        [Output::Refused {
            ctx: 7,
            reason: StartRefused::NotReady
        }]
    ));
    let mut h = ready_handler();
    h.handle(Input::StreamClosed);
    let out = h.handle(start("t1", 8));
    assert!(matches!(
        &out[..],
        [Output::Refused {
            ctx: 8,
            reason: StartRefused::Closed
        }]
    ));
}

#[test]
fn transaction_message_carries_txid_channel_input_and_proposal() {
    let mut h = ready_handler();
    let out = h.handle(start("t1", 1));
    let Output::Send(m) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(m.r#type, Type::Transaction as i32);
    assert_eq!((m.txid.as_str(), m.channel_id.as_str()), ("t1", "ch"));
    assert!(m.proposal.is_some());
    assert_eq!(
        ChaincodeInput::decode(m.payload.as_slice()).unwrap().args,
        [b"fn".to_vec()]
    );
    assert_eq!(h.in_flight(), 1);
}

#[test]
fn duplicate_in_flight_transaction_is_refused_but_other_channel_is_not() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let out = h.handle(start("t1", 2));
    assert!(
        matches!(&out[..], [Output::Refused { ctx: 2, reason: StartRefused::Duplicate(k) }] if k == &key("t1"))
    );
    let out = h.handle(Input::Start(TxStart {
        key: TxKey {
            channel_id: "other".into(),
            txid: "t1".into(),
        },
        kind: TxKind::Init,
        chaincode_name: "mycc".into(),
        input: ChaincodeInput::default(),
        proposal: None,
        ctx: 3,
    }));
    assert_eq!(sent(&out)[0].0, Type::Init);
    assert_eq!(h.in_flight(), 2);
}

#[test]
fn completed_finishes_the_transaction_and_fills_event_ids() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let mut done = msg(
        Type::Completed,
        "t1",
        Response {
            status: 200,
            message: String::new(),
            payload: b"ok".to_vec(),
        }
        .encode_to_vec(),
    );
    done.chaincode_event = Some(ChaincodeEvent {
        event_name: "E".into(),
        payload: b"p".to_vec(),
        ..Default::default()
    });
    let out = h.handle(Input::FromChaincode(done));
    let [
        Output::Finished {
            ctx: 1,
            result: Ok(c),
            ..
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(c.response.payload, b"ok");
    let ev = c.event.as_ref().unwrap();
    assert_eq!(
        (ev.chaincode_id.as_str(), ev.tx_id.as_str()),
        ("mycc", "t1")
    );
    assert_eq!(h.in_flight(), 0);
    // The txid can be used again once finished.
    assert_eq!(sent(&h.handle(start("t1", 2)))[0].0, Type::Transaction);
}

#[test]
fn malformed_completed_is_a_transaction_protocol_failure() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let out = h.handle(Input::FromChaincode(msg(Type::Completed, "t1", vec![0xff])));
    assert!(matches!(
        &out[..],
        [Output::Finished {
            result: Err(TxFailure::Protocol(_)),
            ..
        }]
    ));
}

#[test]
fn error_from_chaincode_fails_only_that_transaction() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    h.handle(start("t2", 2));
    let out = h.handle(Input::FromChaincode(msg(
        Type::Error,
        "t1",
        b"boom".to_vec(),
    )));
    assert!(
        matches!(&out[..], [Output::Finished { ctx: 1, result: Err(TxFailure::Chaincode(m)), .. }] if m == "boom")
    );
    assert_eq!(h.in_flight(), 1);
}

#[test]
fn state_requests_route_by_channel_and_txid() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    h.handle(start("t2", 2));
    let get = GetState {
        key: "k".into(),
        collection: String::new(),
    };
    let out = h.handle(Input::FromChaincode(msg(
        Type::GetState,
        "t2",
        get.encode_to_vec(),
    )));
    let [
        Output::State {
            key: k,
            ctx,
            namespace,
            request,
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!((k, *ctx, namespace.as_str()), (&key("t2"), 2, "mycc"));
    assert_eq!(request, &StateRequest::GetState { key: "k".into() });
    // Replies reach the chaincode only while the transaction is in flight.
    let reply = reply_response(&key("t2"), b"v".to_vec());
    assert_eq!(
        sent(&h.handle(Input::Reply {
            key: key("t2"),
            message: reply.clone()
        }))[0]
            .0,
        Type::Response
    );
    h.handle(Input::Cancel {
        key: key("t2"),
        reason: "timeout".into(),
    });
    assert!(
        sent(&h.handle(Input::Reply {
            key: key("t2"),
            message: reply
        }))
        .is_empty()
    );
}

#[test]
fn state_request_for_unknown_transaction_gets_an_error() {
    let mut h = ready_handler();
    let out = h.handle(Input::FromChaincode(msg(
        Type::PutState,
        "nope",
        Vec::new(),
    )));
    let s = sent(&out);
    assert_eq!(s[0].0, Type::Error);
    assert!(s[0].1.contains("no transaction nope"));
    assert_eq!(
        h.state(),
        &HandlerState::Ready {
            chaincode_id: "mycc:1.0".into()
        }
    );
}

#[test]
fn unsupported_requests_get_clear_errors_and_keep_the_stream() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let rich = GetQueryResult {
        query: "{}".into(),
        ..Default::default()
    };
    let out = h.handle(Input::FromChaincode(msg(
        Type::GetQueryResult,
        "t1",
        rich.encode_to_vec(),
    )));
    assert_eq!(
        sent(&out),
        [(Type::Error, RICH_QUERY_UNSUPPORTED.to_string())]
    );
    let private_metadata = GetStateMetadata {
        key: "k".into(),
        collection: "secret".into(),
    };
    let out = h.handle(Input::FromChaincode(msg(
        Type::GetStateMetadata,
        "t1",
        private_metadata.encode_to_vec(),
    )));
    assert!(sent(&out)[0].1.contains("private data collections"));
    for kind in [
        Type::WriteBatchState,
        Type::GetStateMultiple,
        Type::Ready,
        Type::Undefined,
    ] {
        let out = h.handle(Input::FromChaincode(msg(kind, "t1", Vec::new())));
        assert_eq!(sent(&out)[0].0, Type::Error, "{kind:?}");
        assert!(!closes(&out));
    }
    let mut unknown = msg(Type::GetState, "t1", Vec::new());
    unknown.r#type = 99;
    assert!(
        sent(&h.handle(Input::FromChaincode(unknown)))[0]
            .1
            .contains("UNKNOWN")
    );
    assert_eq!(h.in_flight(), 1);
}

#[test]
fn malformed_state_payload_gets_an_error() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let out = h.handle(Input::FromChaincode(msg(
        Type::PutState,
        "t1",
        vec![0xff, 0x01],
    )));
    assert!(sent(&out)[0].1.contains("malformed PUT_STATE"));
}

#[test]
fn keepalive_is_accepted_silently() {
    let mut h = ready_handler();
    assert!(
        h.handle(Input::FromChaincode(msg(Type::Keepalive, "", Vec::new())))
            .is_empty()
    );
}

#[test]
fn cancel_fails_the_transaction_once() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    let out = h.handle(Input::Cancel {
        key: key("t1"),
        reason: "execute timeout".into(),
    });
    assert!(matches!(
        &out[..],
        [Output::Finished {
            ctx: 1,
            result: Err(TxFailure::Cancelled(_)),
            ..
        }]
    ));
    assert!(
        h.handle(Input::Cancel {
            key: key("t1"),
            reason: "again".into()
        })
        .is_empty()
    );
    // A late COMPLETED for the cancelled transaction changes nothing.
    let late = h.handle(Input::FromChaincode(msg(Type::Completed, "t1", Vec::new())));
    assert!(matches!(&late[..], [Output::Warn(_)]));
}

#[test]
fn stream_close_fails_every_in_flight_transaction() {
    let mut h = ready_handler();
    h.handle(start("t1", 1));
    h.handle(start("t2", 2));
    let out = h.handle(Input::StreamClosed);
    let failed = out
        .iter()
        .filter(|o| {
            matches!(
                o,
                Output::Finished {
                    result: Err(TxFailure::StreamClosed),
                    ..
                }
            )
        })
        .count();
    assert_eq!(failed, 2);
    assert!(closes(&out));
    assert_eq!(h.state(), &HandlerState::Closed);
    assert!(h.handle(Input::FromChaincode(register("x"))).is_empty());
}

#[test]
fn decodes_range_paging_history_metadata_and_invoke() {
    let range = GetStateByRange {
        start_key: "a".into(),
        end_key: "b".into(),
        collection: String::new(),
        metadata: QueryMetadata {
            page_size: 5,
            bookmark: "a3".into(),
        }
        .encode_to_vec(),
    };
    assert_eq!(
        decode_state_request(Some(Type::GetStateByRange), &range.encode_to_vec()).unwrap(),
        StateRequest::GetStateByRange {
            start: "a".into(),
            end: "b".into(),
            page: Some(QueryMetadata {
                page_size: 5,
                bookmark: "a3".into()
            })
        }
    );
    let spec = ChaincodeSpec {
        chaincode_id: Some(ChaincodeId {
            name: "other/ch2".into(),
            ..Default::default()
        }),
        input: Some(ChaincodeInput::default()),
        ..Default::default()
    };
    assert_eq!(
        decode_state_request(Some(Type::InvokeChaincode), &spec.encode_to_vec()).unwrap(),
        StateRequest::Invoke {
            target: "other".into(),
            channel: Some("ch2".into()),
            input: ChaincodeInput::default()
        }
    );
    let meta = PutStateMetadata {
        key: "k".into(),
        collection: String::new(),
        metadata: None,
    };
    assert!(decode_state_request(Some(Type::PutStateMetadata), &meta.encode_to_vec()).is_err());
}

#[test]
fn an_oversized_message_fails_only_its_transaction() {
    let mut h = H::new().with_message_limit(1024);
    h.handle(Input::FromChaincode(register("mycc:1.0")));
    h.handle(Input::Authorized(Ok(())));
    h.handle(start("t1", 1));
    h.handle(start("t2", 2));
    let put = PutState {
        key: "big".into(),
        value: vec![7; 2000],
        collection: String::new(),
    };
    let out = h.handle(Input::FromChaincode(msg(
        Type::PutState,
        "t1",
        put.encode_to_vec(),
    )));
    let replies = sent(&out);
    assert_eq!(replies.len(), 1, "{replies:?}");
    assert_eq!(replies[0].0, Type::Error);
    assert!(
        replies[0].1.starts_with("PUT_STATE message of ")
            && replies[0]
                .1
                .ends_with("exceeds the peer's limit of 1024 bytes"),
        "{}",
        replies[0].1
    );
    assert!(!closes(&out));
    assert_eq!(h.in_flight(), 2, "the chaincode may still complete t1");

    let big_response = Response {
        status: 200,
        payload: vec![1; 2000],
        ..Default::default()
    };
    let out = h.handle(Input::FromChaincode(msg(
        Type::Completed,
        "t2",
        big_response.encode_to_vec(),
    )));
    assert!(
        matches!(&out[..], [Output::Finished { ctx: 2, result: Err(TxFailure::Protocol(m)), .. }] if m.starts_with("COMPLETED message of "))
    );
    // A message within the limit is handled as always.
    let out = h.handle(Input::FromChaincode(msg(
        Type::GetState,
        "t1",
        GetState {
            key: "k".into(),
            collection: String::new(),
        }
        .encode_to_vec(),
    )));
    assert!(matches!(&out[..], [Output::State { .. }]), "{out:?}");
}

#[test]
fn private_data_requests_decode_with_their_collection() {
    let get = GetState {
        key: "k".into(),
        collection: "c".into(),
    }
    .encode_to_vec();
    assert_eq!(
        decode_state_request(Some(Type::GetState), &get),
        Ok(StateRequest::GetPrivateData {
            collection: "c".into(),
            key: "k".into()
        })
    );
    assert_eq!(
        decode_state_request(Some(Type::GetPrivateDataHash), &get),
        Ok(StateRequest::GetPrivateDataHash {
            collection: "c".into(),
            key: "k".into()
        })
    );
    let put = PutState {
        key: "k".into(),
        value: b"v".to_vec(),
        collection: "c".into(),
    }
    .encode_to_vec();
    assert_eq!(
        decode_state_request(Some(Type::PutState), &put),
        Ok(StateRequest::PutPrivateData {
            collection: "c".into(),
            key: "k".into(),
            value: b"v".to_vec()
        })
    );
    let del = DelState {
        key: "k".into(),
        collection: "c".into(),
    }
    .encode_to_vec();
    assert_eq!(
        decode_state_request(Some(Type::DelState), &del),
        Ok(StateRequest::DelPrivateData {
            collection: "c".into(),
            key: "k".into(),
            purge: false
        })
    );
    assert_eq!(
        decode_state_request(Some(Type::PurgePrivateData), &del),
        Ok(StateRequest::DelPrivateData {
            collection: "c".into(),
            key: "k".into(),
            purge: true
        })
    );
    let range = GetStateByRange {
        start_key: "a".into(),
        end_key: "z".into(),
        collection: "c".into(),
        metadata: Vec::new(),
    }
    .encode_to_vec();
    assert_eq!(
        decode_state_request(Some(Type::GetStateByRange), &range),
        Ok(StateRequest::GetPrivateDataByRange {
            collection: "c".into(),
            start: "a".into(),
            end: "z".into()
        })
    );
    // Without a collection the hash and purge requests make no sense; garbage is an error too.
    let public = GetState {
        key: "k".into(),
        collection: String::new(),
    }
    .encode_to_vec();
    assert!(decode_state_request(Some(Type::GetPrivateDataHash), &public).is_err());
    assert!(decode_state_request(Some(Type::PurgePrivateData), &public).is_err());
    assert!(decode_state_request(Some(Type::PutState), &[0xff, 0xff, 0xff]).is_err());
}
