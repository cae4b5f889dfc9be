//! The ChaincodeSupport tonic adapter over a real gRPC stream, with a scripted chaincode client:
//! registration, refusal by the gate, protocol errors and stream end.
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaincode_operator::endorser::chaincode::handle::{
    ChaincodeHandle, ExecuteError, ExecuteRequest,
};
use chaincode_operator::endorser::chaincode::handler::TxKind;
use chaincode_operator::endorser::chaincode::registration::{
    RegisterRequest, RegistrationGate, RegistrationTicket, StaticResolver,
};
use chaincode_operator::endorser::chaincode::support::{ChaincodeSupportService, SupportConfig};
use chaincode_operator::endorser::chaincode::tls::ChaincodeCa;
use chaincode_operator::endorser::ledger::{TxSimulator, WorldState};
use chaincode_operator::proto::protos::chaincode_message::Type;
use chaincode_operator::proto::protos::chaincode_support_client::ChaincodeSupportClient;
use chaincode_operator::proto::protos::{
    ChaincodeId, ChaincodeInput, ChaincodeMessage, GetState, PutState, Response,
};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

/// Accepts only `allowed`; records every call.
#[derive(Default)]
struct RecordingGate {
    allowed: String,
    events: Mutex<Vec<String>>,
    handle: Mutex<Option<ChaincodeHandle>>,
    /// Time `gone` takes before it records, to expose callers racing ahead of it.
    gone_delay: Duration,
    /// The client certificate DER each REGISTER came with.
    client_certs: Mutex<Vec<Option<Vec<u8>>>>,
}

impl RegistrationGate for RecordingGate {
    fn authorize(&self, req: &RegisterRequest<'_>) -> Result<RegistrationTicket, String> {
        self.events
            .lock()
            .unwrap()
            .push(format!("authorize {}", req.chaincode_id));
        self.client_certs
            .lock()
            .unwrap()
            .push(req.client_cert_der.map(<[u8]>::to_vec));
        if req.chaincode_id == self.allowed {
            Ok(RegistrationTicket {
                chaincode_id: req.chaincode_id.into(),
                launch_id: 9,
            })
        } else {
            Err(format!("no launch is waiting for {}", req.chaincode_id))
        }
    }
    fn ready(&self, t: &RegistrationTicket, handle: ChaincodeHandle) {
        self.events
            .lock()
            .unwrap()
            .push(format!("ready {} {}", t.chaincode_id, t.launch_id));
        *self.handle.lock().unwrap() = Some(handle);
    }
    fn gone(&self, t: &RegistrationTicket) {
        std::thread::sleep(self.gone_delay);
        self.events
            .lock()
            .unwrap()
            .push(format!("gone {} {}", t.chaincode_id, t.launch_id));
    }
}

async fn serve(gate: Arc<RecordingGate>) -> String {
    serve_with(gate, None).await
}

/// Serves on loopback; with `tls`, mutual TLS requiring a client certificate from that CA.
async fn serve_with(gate: Arc<RecordingGate>, tls: Option<&ChaincodeCa>) -> String {
    let service = ChaincodeSupportService::new(
        gate,
        Arc::new(StaticResolver::default()),
        SupportConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let mut server = tonic::transport::Server::builder();
    if let Some(ca) = tls {
        let cert = ca.issue_listener(&addr["http://".len()..]).unwrap();
        server = server.tls_config(ca.tonic_server_tls(&cert)).unwrap();
    }
    tokio::spawn(
        server
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

fn m(kind: Type, txid: &str, payload: Vec<u8>) -> ChaincodeMessage {
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
    m(
        Type::Register,
        "",
        ChaincodeId {
            name: name.into(),
            ..Default::default()
        }
        .encode_to_vec(),
    )
}

struct Client {
    tx: mpsc::Sender<ChaincodeMessage>,
    rx: tonic::Streaming<ChaincodeMessage>,
}

impl Client {
    async fn connect(addr: &str) -> Self {
        let mut client = ChaincodeSupportClient::connect(addr.to_string())
            .await
            .unwrap();
        let (tx, out) = mpsc::channel(16);
        let rx = client
            .register(ReceiverStream::new(out))
            .await
            .unwrap()
            .into_inner();
        Self { tx, rx }
    }
    async fn send(&self, msg: ChaincodeMessage) {
        self.tx.send(msg).await.unwrap();
    }
    async fn recv(&mut self) -> Option<ChaincodeMessage> {
        tokio::time::timeout(Duration::from_secs(10), self.rx.next())
            .await
            .expect("peer answers")
            .and_then(Result::ok)
    }
}

fn kind(msg: &ChaincodeMessage) -> Type {
    Type::try_from(msg.r#type).unwrap()
}

#[tokio::test]
async fn register_ready_transaction_and_gone() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        ..Default::default()
    });
    let addr = serve(gate.clone()).await;
    let mut cc = Client::connect(&addr).await;
    cc.send(register("cc:1")).await;
    assert_eq!(kind(&cc.recv().await.unwrap()), Type::Registered);
    assert_eq!(kind(&cc.recv().await.unwrap()), Type::Ready);
    assert_eq!(
        *gate.client_certs.lock().unwrap(),
        [None],
        "plaintext: no certificate"
    );
    let handle = gate
        .handle
        .lock()
        .unwrap()
        .clone()
        .expect("gate got the handle");

    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("s.redb")).unwrap();
    world_seed(&world);
    let sim = TxSimulator::new(world.clone(), "ch", "t1");
    let req = ExecuteRequest {
        channel_id: "ch".into(),
        txid: "t1".into(),
        kind: TxKind::Transaction,
        chaincode_name: "cc".into(),
        input: ChaincodeInput {
            args: vec![b"fn".to_vec()],
            ..Default::default()
        },
        proposal: None,
        simulator: sim.clone(),
    };
    let exec = tokio::spawn(async move { handle.execute(req).await });

    // The scripted chaincode: GET, PUT, then COMPLETED.
    let tx = cc.recv().await.unwrap();
    assert_eq!((kind(&tx), tx.txid.as_str()), (Type::Transaction, "t1"));
    cc.send(m(
        Type::GetState,
        "t1",
        GetState {
            key: "seed".into(),
            collection: String::new(),
        }
        .encode_to_vec(),
    ))
    .await;
    let got = cc.recv().await.unwrap();
    assert_eq!(
        (kind(&got), got.payload.as_slice()),
        (Type::Response, &b"planted"[..])
    );
    cc.send(m(
        Type::PutState,
        "t1",
        PutState {
            key: "k".into(),
            value: b"v".to_vec(),
            collection: String::new(),
        }
        .encode_to_vec(),
    ))
    .await;
    assert_eq!(kind(&cc.recv().await.unwrap()), Type::Response);
    cc.send(m(Type::Keepalive, "", Vec::new())).await;
    let done = Response {
        status: 200,
        message: String::new(),
        payload: b"fine".to_vec(),
    };
    cc.send(m(Type::Completed, "t1", done.encode_to_vec()))
        .await;
    let outcome = exec.await.unwrap().unwrap();
    assert_eq!(outcome.response.payload, b"fine");
    assert!(sim.has_writes().unwrap());

    drop(cc);
    for _ in 0..100 {
        if gate
            .events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e == "gone cc:1 9")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        *gate.events.lock().unwrap(),
        ["authorize cc:1", "ready cc:1 9", "gone cc:1 9"]
    );
}

fn world_seed(world: &WorldState) {
    let sim = TxSimulator::new(world.clone(), "ch", "seed");
    sim.put_state("cc", "seed", b"planted".to_vec()).unwrap();
    let set = sim.results().unwrap();
    world
        .commit_block(
            "ch",
            &[chaincode_operator::endorser::ledger::CommitTx {
                tx_id: "seed",
                timestamp: Default::default(),
                rwset: &set,
            }],
        )
        .unwrap();
}

#[tokio::test]
async fn refused_register_gets_error_and_stream_ends() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        ..Default::default()
    });
    let addr = serve(gate.clone()).await;
    let mut cc = Client::connect(&addr).await;
    cc.send(register("intruder:1")).await;
    let err = cc.recv().await.unwrap();
    assert_eq!(kind(&err), Type::Error);
    assert_eq!(err.payload, b"no launch is waiting for intruder:1");
    assert!(cc.recv().await.is_none(), "stream closed after refusal");
    assert_eq!(*gate.events.lock().unwrap(), ["authorize intruder:1"]);
}

#[tokio::test]
async fn message_before_register_is_a_protocol_error() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        ..Default::default()
    });
    let addr = serve(gate.clone()).await;
    let mut cc = Client::connect(&addr).await;
    cc.send(m(Type::GetState, "t1", Vec::new())).await;
    let err = cc.recv().await.unwrap();
    assert_eq!(kind(&err), Type::Error);
    assert!(String::from_utf8_lossy(&err.payload).contains("expected REGISTER"));
    assert!(cc.recv().await.is_none());
    assert!(gate.events.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaincode_crash_mid_transaction_fails_it_and_aborts_the_simulation() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        gone_delay: Duration::from_millis(100),
        ..Default::default()
    });
    let addr = serve(gate.clone()).await;
    let mut cc = Client::connect(&addr).await;
    cc.send(register("cc:1")).await;
    cc.recv().await;
    cc.recv().await;
    let handle = gate.handle.lock().unwrap().clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("s.redb")).unwrap();
    let sim = TxSimulator::new(world, "ch", "t1");
    let req = ExecuteRequest {
        channel_id: "ch".into(),
        txid: "t1".into(),
        kind: TxKind::Transaction,
        chaincode_name: "cc".into(),
        input: ChaincodeInput::default(),
        proposal: None,
        simulator: sim.clone(),
    };
    // The caller runs on its own thread and runtime, so it wakes the moment its transaction fails,
    // whatever the stream task does next.
    let exec = std::thread::spawn({
        let handle = handle.clone();
        move || {
            tokio::runtime::Runtime::new()
                .unwrap()
                .block_on(handle.execute(req))
        }
    });
    cc.recv().await.unwrap();
    cc.send(m(
        Type::PutState,
        "t1",
        PutState {
            key: "k".into(),
            value: b"v".to_vec(),
            collection: String::new(),
        }
        .encode_to_vec(),
    ))
    .await;
    cc.recv().await.unwrap();
    drop(cc);
    let res = tokio::task::spawn_blocking(move || exec.join().unwrap())
        .await
        .unwrap();
    assert_eq!(res, Err(ExecuteError::ChaincodeGone("cc:1".into())));
    // The gate already knows: a caller retrying on this error gets a relaunch, not the dead handle.
    assert_eq!(
        gate.events.lock().unwrap().last().map(String::as_str),
        Some("gone cc:1 9")
    );
    assert!(sim.results().is_err());
}

#[tokio::test]
async fn shutdown_ends_streams_and_fails_their_transactions() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        ..Default::default()
    });
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let service = ChaincodeSupportService::new(
        gate.clone(),
        Arc::new(StaticResolver::default()),
        SupportConfig::default(),
    )
    .with_shutdown(shutdown);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut cc = Client::connect(&addr).await;
    cc.send(register("cc:1")).await;
    cc.recv().await;
    cc.recv().await;
    let handle = gate.handle.lock().unwrap().clone().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("s.redb")).unwrap();
    let sim = TxSimulator::new(world, "ch", "t1");
    let req = ExecuteRequest {
        channel_id: "ch".into(),
        txid: "t1".into(),
        kind: TxKind::Transaction,
        chaincode_name: "cc".into(),
        input: ChaincodeInput::default(),
        proposal: None,
        simulator: sim,
    };
    let exec = tokio::spawn(async move { handle.execute(req).await });
    cc.recv().await.unwrap();
    stop.send(true).unwrap();
    assert_eq!(
        exec.await.unwrap(),
        Err(ExecuteError::ChaincodeGone("cc:1".into()))
    );
    assert!(cc.recv().await.is_none(), "stream ended by shutdown");
    assert!(
        gate.events
            .lock()
            .unwrap()
            .iter()
            .any(|e| e == "gone cc:1 9")
    );
}

#[tokio::test]
async fn over_mutual_tls_the_gate_gets_the_presented_client_certificate() {
    let gate = Arc::new(RecordingGate {
        allowed: "cc:1".into(),
        ..Default::default()
    });
    let ca = ChaincodeCa::generate("test CA").unwrap();
    let addr = serve_with(gate.clone(), Some(&ca)).await;
    let client_cert = ca.issue_client("cc:1").unwrap();
    let channel = tonic::transport::Channel::from_shared(addr.replace("http://", "https://"))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(ca.root_pem()))
                .identity(tonic::transport::Identity::from_pem(
                    &client_cert.cert_pem,
                    &client_cert.key_pem,
                ))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let (tx, out) = mpsc::channel(16);
    let mut rx = ChaincodeSupportClient::new(channel)
        .register(ReceiverStream::new(out))
        .await
        .unwrap()
        .into_inner();
    tx.send(register("cc:1")).await.unwrap();
    let reply = rx.next().await.unwrap().unwrap();
    assert_eq!(kind(&reply), Type::Registered);
    assert_eq!(
        *gate.client_certs.lock().unwrap(),
        [Some(client_cert.cert_der.clone())]
    );
}
