//! The ChaincodeSupport service against the real contract-API chaincode started by hand in
//! plaintext with a DevModeGate: the execute timeout. Everything else the real chaincodes do is
//! covered through the launcher and the process runtime in tests/stream_e2e.rs.
mod support;

use std::sync::Arc;
use std::time::Duration;

use chaincode_operator::endorser::chaincode::handle::{ChaincodeHandle, ExecuteError};
use chaincode_operator::endorser::chaincode::handler::TxKind;
use chaincode_operator::endorser::chaincode::registration::DevModeGate;
use chaincode_operator::endorser::chaincode::support::{ChaincodeSupportService, SupportConfig};
use chaincode_operator::endorser::ledger::{TxSimulator, WorldState};
use support::tx::{CHANNEL, request, run};
use tokio::process::Command;

/// The contract chaincode started by hand (as a developer would in dev mode) against a
/// ChaincodeSupport service with `config`, registered as `name`; its world state; the chaincode
/// process (killed on drop).
async fn contract_started_by_hand(
    name: &str,
    config: SupportConfig,
) -> (
    tempfile::TempDir,
    WorldState,
    ChaincodeHandle,
    tokio::process::Child,
) {
    let contract_dir = support::installed_e2e_dir("chaincodes/contract");
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("state.redb")).unwrap();
    let gate = Arc::new(DevModeGate::new());
    let service = ChaincodeSupportService::new(gate.clone(), gate.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service.into_server())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let chaincode = Command::new("node")
        .args(["node_modules/fabric-shim/cli.js", "start", "--peer.address"])
        .arg(format!("127.0.0.1:{port}"))
        .current_dir(&contract_dir)
        .env("CORE_CHAINCODE_ID_NAME", format!("{name}:1.0"))
        .env("CORE_PEER_TLS_ENABLED", "false")
        .env("CORE_CHAINCODE_LOGGING_LEVEL", "warning")
        .kill_on_drop(true)
        .spawn()
        .expect("spawn node chaincode");
    let cc = gate
        .wait_ready(name, Duration::from_secs(60))
        .await
        .unwrap_or_else(|| panic!("chaincode {name} registers"));
    (dir, world, cc, chaincode)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_timeout_fails_the_transaction_and_leaves_no_writes() {
    let (_dir, world, cc, _chaincode) = contract_started_by_hand(
        "slowcc",
        SupportConfig {
            execute_timeout: Duration::from_millis(1500),
            ..SupportConfig::default()
        },
    )
    .await;

    // That transaction fails, its write is dropped, the next one works.
    let sim = TxSimulator::new(world.clone(), CHANNEL, "slow-1");
    let res = cc
        .execute(request(
            &sim,
            "slowcc",
            TxKind::Transaction,
            &["sleep", "4000"],
        ))
        .await;
    assert!(matches!(res, Err(ExecuteError::Timeout(_))), "{res:?}");
    assert!(sim.results().is_err());
    let ok = run(
        &world,
        &cc,
        "slowcc",
        TxKind::Transaction,
        &["put", "a", "b"],
    )
    .await;
    assert_eq!(ok.outcome.response.status, 200);
    assert_eq!(
        world.get(CHANNEL, "slowcc", "a").unwrap().unwrap().value,
        b"b"
    );
}

/// The chaincode stream takes messages up to the configured limit (not tonic's 4 MiB default), and
/// a larger one fails only its own transaction: the real shim's putState rejects with the peer's
/// reason, the contract reports it, and the next transaction runs on the same stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_the_limit_fails_its_transaction_not_the_stream() {
    let limit = 8 * 1024 * 1024;
    let (_dir, world, cc, _chaincode) = contract_started_by_hand(
        "bigcc",
        SupportConfig {
            max_message_bytes: limit,
            ..SupportConfig::default()
        },
    )
    .await;

    // 4,100 KiB: over tonic's default, within the limit.
    let size = (4100 * 1024).to_string();
    let ok = run(
        &world,
        &cc,
        "bigcc",
        TxKind::Transaction,
        &["putSized", "four-mib", &size],
    )
    .await;
    assert_eq!(ok.outcome.response.status, 200);
    assert_eq!(ok.kv("bigcc").writes[0].value.len(), 4100 * 1024);

    let over = (limit + 1024).to_string();
    let sim = TxSimulator::new(world.clone(), CHANNEL, "big-over");
    let res = cc
        .execute(request(
            &sim,
            "bigcc",
            TxKind::Transaction,
            &["putSized", "too-big", &over],
        ))
        .await;
    let failure = match res {
        Err(ExecuteError::Chaincode(message)) => message,
        Ok(outcome) if outcome.response.status >= 400 => outcome.response.message,
        other => panic!("expected the transaction to fail, got {other:?}"),
    };
    assert!(
        failure.contains("PUT_STATE message of") && failure.contains("exceeds the peer's limit"),
        "{failure}"
    );
    assert!(cc.is_connected(), "the stream survived");
    let next = run(
        &world,
        &cc,
        "bigcc",
        TxKind::Transaction,
        &["put", "a", "b"],
    )
    .await;
    assert_eq!(next.outcome.response.status, 200);
}
