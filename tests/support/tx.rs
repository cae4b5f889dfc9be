//! Running one transaction on a chaincode handle and committing its write set, as the tests and the
//! benchmark do it.
use std::sync::atomic::{AtomicU64, Ordering};

use chaincode_operator::endorser::chaincode::handle::{
    ChaincodeHandle, ExecuteOutcome, ExecuteRequest,
};
use chaincode_operator::endorser::chaincode::handler::TxKind;
use chaincode_operator::endorser::ledger::{CommitTx, TxSimulator, WorldState};
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::protos::{ChaincodeInput, TxValidationCode};
use chaincode_operator::proto::rwset::TxReadWriteSet;
use prost::Message;
use serde_json::Value;

pub const CHANNEL: &str = "mychannel";
static TX_COUNTER: AtomicU64 = AtomicU64::new(1);

/// A transaction id unique within the test binary.
pub fn next_txid() -> String {
    format!("tx{:04}", TX_COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// The request for `args` on chaincode `name`, in `sim`'s channel and transaction.
pub fn request(sim: &TxSimulator, name: &str, kind: TxKind, args: &[&str]) -> ExecuteRequest {
    ExecuteRequest {
        channel_id: sim.channel().to_string(),
        txid: sim.tx_id().to_string(),
        kind,
        chaincode_name: name.into(),
        input: ChaincodeInput {
            args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
            ..Default::default()
        },
        proposal: Some(super::signed_proposal(sim.channel(), sim.tx_id(), args)),
        simulator: sim.clone(),
    }
}

/// A finished transaction with its read/write set (None when the simulation was aborted).
pub struct Done {
    pub txid: String,
    pub outcome: ExecuteOutcome,
    pub rwset: Option<TxReadWriteSet>,
}

impl Done {
    pub fn payload(&self) -> String {
        String::from_utf8(self.outcome.response.payload.clone()).expect("UTF-8 payload")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.payload())
            .unwrap_or_else(|e| panic!("{e}: {:?}", self.outcome.response))
    }

    /// The KVRWSet of namespace `ns`.
    pub fn kv(&self, ns: &str) -> KvrwSet {
        let set = self
            .rwset
            .as_ref()
            .expect("rwset of a successful transaction");
        let ns = set
            .ns_rwset
            .iter()
            .find(|n| n.namespace == ns)
            .unwrap_or_else(|| panic!("namespace {ns} in rwset"));
        KvrwSet::decode(ns.rwset.as_slice()).expect("KVRWSet decodes")
    }
}

/// Executes one transaction on `CHANNEL` and commits its write set as a block when it succeeded.
pub async fn run(
    world: &WorldState,
    h: &ChaincodeHandle,
    name: &str,
    kind: TxKind,
    args: &[&str],
) -> Done {
    let txid = next_txid();
    let sim = TxSimulator::new(world.clone(), CHANNEL, &txid);
    let outcome = h
        .execute(request(&sim, name, kind, args))
        .await
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let rwset = sim.results().ok();
    if let Some(set) = &rwset {
        let block = world
            .commit_block(
                CHANNEL,
                &[CommitTx {
                    tx_id: &txid,
                    timestamp: prost_types::Timestamp::default(),
                    rwset: set,
                }],
            )
            .expect("commit block");
        assert_eq!(block.validation, [TxValidationCode::Valid], "{args:?}");
    }
    Done {
        txid,
        outcome,
        rwset,
    }
}
