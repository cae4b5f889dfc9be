//! World state, history and the transaction simulator over a real redb file.
use chaincode_operator::endorser::ledger::{CommitTx, Paging, TxSimulator, WorldState};
use chaincode_operator::proto::kvrwset::KvrwSet;
use chaincode_operator::proto::protos::{QueryResponse, QueryResponseMetadata, TxValidationCode};
use chaincode_operator::proto::queryresult::Kv;
use chaincode_operator::proto::rwset::TxReadWriteSet;
use prost::Message;

const CH: &str = "ch";

fn commit(world: &WorldState, sim: &TxSimulator) -> u64 {
    let set = sim.results().unwrap();
    world
        .commit_block(
            CH,
            &[CommitTx {
                tx_id: sim.tx_id(),
                timestamp: prost_types::Timestamp::default(),
                rwset: &set,
            }],
        )
        .unwrap()
        .block_num
}

fn kv(set: &TxReadWriteSet, ns: &str) -> KvrwSet {
    let n = set.ns_rwset.iter().find(|n| n.namespace == ns).unwrap();
    KvrwSet::decode(n.rwset.as_slice()).unwrap()
}

fn keys(r: &QueryResponse) -> Vec<String> {
    r.results
        .iter()
        .map(|b| Kv::decode(b.result_bytes.as_slice()).unwrap().key)
        .collect()
}

fn open() -> (tempfile::TempDir, WorldState) {
    let dir = tempfile::tempdir().unwrap();
    let world = WorldState::open(&dir.path().join("s.redb")).unwrap();
    (dir, world)
}

#[test]
fn committed_writes_get_block_versions_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let world = WorldState::open(&path).unwrap();
        let sim = TxSimulator::new(world.clone(), CH, "t1");
        sim.put_state("cc", "a", b"1".to_vec()).unwrap();
        assert_eq!(commit(&world, &sim), 0);
        let sim = TxSimulator::new(world.clone(), CH, "t2");
        sim.put_state("cc", "a", b"2".to_vec()).unwrap();
        assert_eq!(commit(&world, &sim), 1);
    }
    let world = WorldState::open(&path).unwrap();
    let v = world.get(CH, "cc", "a").unwrap().unwrap();
    assert_eq!((v.value.as_slice(), v.version.block_num), (&b"2"[..], 1));
    assert_eq!(world.height(CH).unwrap(), 2);
    // Same key in another namespace or channel is another key.
    assert!(world.get(CH, "cc2", "a").unwrap().is_none());
    assert!(world.get("other", "cc", "a").unwrap().is_none());
}

#[test]
fn simulation_reads_committed_state_and_records_versions() {
    let (_d, world) = open();
    let sim = TxSimulator::new(world.clone(), CH, "t1");
    sim.put_state("cc", "a", b"1".to_vec()).unwrap();
    commit(&world, &sim);
    let sim = TxSimulator::new(world.clone(), CH, "t2");
    assert_eq!(sim.get_state("cc", "a").unwrap().unwrap(), b"1");
    assert_eq!(sim.get_state("cc", "missing").unwrap(), None);
    sim.put_state("cc", "a", b"2".to_vec()).unwrap();
    // Fabric simulations do not read their own writes.
    assert_eq!(sim.get_state("cc", "a").unwrap().unwrap(), b"1");
    let set = kv(&sim.results().unwrap(), "cc");
    assert_eq!(set.reads.len(), 2);
    assert_eq!(set.reads[0].version.unwrap().block_num, 0);
    assert_eq!(set.reads[1].version, None);
    assert_eq!(set.writes[0].value, b"2");
    assert!(sim.put_state("cc", "", b"x".to_vec()).is_err());
}

#[test]
fn aborted_simulation_gives_out_no_writes() {
    let (_d, world) = open();
    let sim = TxSimulator::new(world.clone(), CH, "t1");
    sim.put_state("cc", "a", b"1".to_vec()).unwrap();
    sim.abort();
    assert!(sim.results().is_err());
    assert!(sim.put_state("cc", "b", b"1".to_vec()).is_err());
    assert!(world.get(CH, "cc", "a").unwrap().is_none());
}

#[test]
fn range_query_batches_and_pages_with_bookmarks() {
    let (_d, world) = open();
    let sim = TxSimulator::new(world.clone(), CH, "load");
    for i in 0..25 {
        sim.put_state("cc", &format!("k{i:02}"), vec![i]).unwrap();
    }
    sim.put_state("cc", "z", vec![0]).unwrap();
    commit(&world, &sim);

    let sim = TxSimulator::with_batch_size(world.clone(), CH, "q", 10);
    let first = sim.range_query("cc", "k", "l", None).unwrap();
    assert_eq!(keys(&first).len(), 10);
    assert!(first.has_more);
    let second = sim.query_next(&first.id).unwrap();
    assert_eq!(keys(&second)[0], "k10");
    let third = sim.query_next(&first.id).unwrap();
    assert_eq!(keys(&third).len(), 5);
    assert!(!third.has_more);
    assert!(
        sim.query_next(&first.id).is_err(),
        "exhausted iterator is closed"
    );
    assert!(!sim.query_close(&first.id).unwrap().has_more);

    let page = sim
        .range_query(
            "cc",
            "k",
            "l",
            Some(Paging {
                page_size: 12,
                bookmark: String::new(),
            }),
        )
        .unwrap();
    assert_eq!(keys(&page).len(), 10);
    let rest = sim.query_next(&page.id).unwrap();
    assert_eq!(keys(&rest), ["k10", "k11"]);
    let meta = QueryResponseMetadata::decode(rest.metadata.as_slice()).unwrap();
    assert_eq!(
        (meta.fetched_records_count, meta.bookmark.as_str()),
        (12, "k12")
    );
    let last = sim
        .range_query(
            "cc",
            "k",
            "l",
            Some(Paging {
                page_size: 12,
                bookmark: "k24".into(),
            }),
        )
        .unwrap();
    assert_eq!(keys(&last), ["k24"]);
    let meta = QueryResponseMetadata::decode(last.metadata.as_slice()).unwrap();
    assert_eq!(
        (meta.fetched_records_count, meta.bookmark.as_str()),
        (1, "")
    );

    // Open-ended range reaches the end of the namespace only.
    let all = sim.range_query("cc", "", "", None).unwrap();
    assert!(all.has_more);
    let set = kv(&sim.results().unwrap(), "cc");
    assert!(
        set.range_queries_info
            .iter()
            .any(|r| r.itr_exhausted && r.start_key == "k")
    );
}

#[test]
fn history_is_newest_first_with_deletes() {
    let (_d, world) = open();
    for (tx, value) in [("t1", Some("a")), ("t2", None), ("t3", Some("c"))] {
        let sim = TxSimulator::new(world.clone(), CH, tx);
        match value {
            Some(v) => sim.put_state("cc", "key", v.as_bytes().to_vec()).unwrap(),
            None => sim.del_state("cc", "key").unwrap(),
        }
        commit(&world, &sim);
    }
    // A key sharing the prefix must not leak into the history.
    let sim = TxSimulator::new(world.clone(), CH, "t4");
    sim.put_state("cc", "key2", b"x".to_vec()).unwrap();
    commit(&world, &sim);
    let h = world.history(CH, "cc", "key").unwrap();
    let ids: Vec<_> = h.iter().map(|m| m.tx_id.as_str()).collect();
    assert_eq!(ids, ["t3", "t2", "t1"]);
    assert!(h[1].is_delete);
    assert_eq!(h[2].value, b"a");
}

#[test]
fn state_metadata_is_merged_and_kept_across_value_writes() {
    let (_d, world) = open();
    let sim = TxSimulator::new(world.clone(), CH, "t1");
    sim.put_state("cc", "k", b"v".to_vec()).unwrap();
    commit(&world, &sim);
    let sim = TxSimulator::new(world.clone(), CH, "t2");
    sim.put_state_metadata("cc", "k", "VALIDATION_PARAMETER", b"policy".to_vec())
        .unwrap();
    sim.put_state_metadata("cc", "k", "other", b"x".to_vec())
        .unwrap();
    assert_eq!(sim.get_state_metadata("cc", "k").unwrap().len(), 2);
    commit(&world, &sim);
    let sim = TxSimulator::new(world.clone(), CH, "t3");
    sim.put_state("cc", "k", b"v2".to_vec()).unwrap();
    commit(&world, &sim);
    let v = world.get(CH, "cc", "k").unwrap().unwrap();
    assert_eq!(v.value, b"v2");
    assert_eq!(v.metadata.get("VALIDATION_PARAMETER").unwrap(), b"policy");
}

fn commit_all(world: &WorldState, sims: &[&TxSimulator]) -> Vec<TxValidationCode> {
    let sets: Vec<_> = sims.iter().map(|s| s.results().unwrap()).collect();
    let txs: Vec<_> = sims
        .iter()
        .zip(&sets)
        .map(|(s, set)| CommitTx {
            tx_id: s.tx_id(),
            timestamp: prost_types::Timestamp::default(),
            rwset: set,
        })
        .collect();
    world.commit_block(CH, &txs).unwrap().validation
}

#[test]
fn stale_reads_are_mvcc_conflicts_and_change_nothing() {
    let (_d, world) = open();
    let seed = TxSimulator::new(world.clone(), CH, "seed");
    seed.put_state("cc", "balance", b"10".to_vec()).unwrap();
    commit(&world, &seed);
    // Two transactions simulated against the same state, committed in one block.
    let a = TxSimulator::new(world.clone(), CH, "a");
    let b = TxSimulator::new(world.clone(), CH, "b");
    for (sim, value) in [(&a, "5"), (&b, "7")] {
        sim.get_state("cc", "balance").unwrap();
        sim.put_state("cc", "balance", value.as_bytes().to_vec())
            .unwrap();
    }
    assert_eq!(
        commit_all(&world, &[&a, &b]),
        [TxValidationCode::Valid, TxValidationCode::MvccReadConflict]
    );
    assert_eq!(world.get(CH, "cc", "balance").unwrap().unwrap().value, b"5");
    assert_eq!(world.history(CH, "cc", "balance").unwrap().len(), 2);
    // A read of a missing key conflicts once the key appears.
    let c = TxSimulator::new(world.clone(), CH, "c");
    c.get_state("cc", "new").unwrap();
    c.put_state("cc", "other", b"x".to_vec()).unwrap();
    let d = TxSimulator::new(world.clone(), CH, "d");
    d.put_state("cc", "new", b"y".to_vec()).unwrap();
    assert_eq!(
        commit_all(&world, &[&d, &c]),
        [TxValidationCode::Valid, TxValidationCode::MvccReadConflict]
    );
    assert!(world.get(CH, "cc", "other").unwrap().is_none());
}

#[test]
fn inserts_into_a_read_range_are_phantom_conflicts() {
    let (_d, world) = open();
    let seed = TxSimulator::new(world.clone(), CH, "seed");
    seed.put_state("cc", "a1", b"1".to_vec()).unwrap();
    seed.put_state("cc", "a3", b"3".to_vec()).unwrap();
    commit(&world, &seed);
    let reader = TxSimulator::new(world.clone(), CH, "reader");
    assert_eq!(
        keys(&reader.range_query("cc", "a", "b", None).unwrap()),
        ["a1", "a3"]
    );
    reader.put_state("cc", "sum", b"4".to_vec()).unwrap();
    let inserter = TxSimulator::new(world.clone(), CH, "inserter");
    inserter.put_state("cc", "a2", b"2".to_vec()).unwrap();
    assert_eq!(
        commit_all(&world, &[&inserter, &reader]),
        [
            TxValidationCode::Valid,
            TxValidationCode::PhantomReadConflict
        ]
    );
    assert!(world.get(CH, "cc", "sum").unwrap().is_none());
    // Unchanged range: valid.
    let again = TxSimulator::new(world.clone(), CH, "again");
    again.range_query("cc", "a", "b", None).unwrap();
    again.put_state("cc", "sum", b"6".to_vec()).unwrap();
    assert_eq!(commit_all(&world, &[&again]), [TxValidationCode::Valid]);
}

mod private_data {
    use super::*;
    use chaincode_operator::endorser::ledger::PrivateAccess;
    use chaincode_operator::endorser::ledger::rwset::sha256;
    use std::sync::Arc;

    const ORG1: &str = "_implicit_org_Org1MSP";

    fn sim(world: &WorldState, tx: &str, mspid: &str) -> TxSimulator {
        TxSimulator::with_private_access(
            world.clone(),
            CH,
            tx,
            PrivateAccess {
                orgs: Arc::new(["Org1MSP".to_string(), "Org2MSP".to_string()].into()),
                creator_mspid: mspid.to_string(),
                is_init: false,
                explicit: None,
            },
        )
    }

    /// What the endorser and the committer do: private writes go to the transient store, the
    /// public set (hashes only) into the block.
    fn endorse_and_commit(world: &WorldState, sims: &[&TxSimulator]) -> Vec<TxValidationCode> {
        let sets: Vec<_> = sims
            .iter()
            .map(|sim| {
                if let Some(private) = sim.private_results().unwrap() {
                    world.put_transient(sim.tx_id(), &private).unwrap();
                }
                sim.results().unwrap()
            })
            .collect();
        let txs: Vec<_> = sims
            .iter()
            .zip(&sets)
            .map(|(sim, rwset)| CommitTx {
                tx_id: sim.tx_id(),
                timestamp: prost_types::Timestamp::default(),
                rwset,
            })
            .collect();
        world.commit_block(CH, &txs).unwrap().validation
    }

    #[test]
    fn private_writes_commit_through_the_transient_store_and_read_back() {
        let (_dir, world) = open();
        let put = sim(&world, "p1", "Org1MSP");
        put.write_private_data("cc", ORG1, "k1", Some(b"secret".to_vec()), false)
            .unwrap();
        put.write_private_data("cc", ORG1, "k2", Some(b"other".to_vec()), false)
            .unwrap();
        // Simulations do not read their own writes.
        assert_eq!(put.get_private_data("cc", ORG1, "k1").unwrap(), None);
        let public = put.results().unwrap().encode_to_vec();
        assert!(!public.windows(6).any(|w| w == b"secret"));
        assert_eq!(
            endorse_and_commit(&world, &[&put]),
            [TxValidationCode::Valid]
        );
        assert_eq!(world.transient_len().unwrap(), 0, "dropped at commit");

        let read = sim(&world, "r1", "Org1MSP");
        assert_eq!(
            read.get_private_data("cc", ORG1, "k1").unwrap(),
            Some(b"secret".to_vec())
        );
        assert_eq!(
            read.get_private_data_hash("cc", ORG1, "k1").unwrap(),
            sha256(b"secret")
        );
        assert_eq!(
            keys(&read.private_range_query("cc", ORG1, "", "").unwrap()),
            ["k1", "k2"]
        );
        // A private query makes the transaction read-only.
        assert!(read.put_state("cc", "x", b"1".to_vec()).is_err());
        // The collection is not visible in the public namespace.
        assert_eq!(world.get(CH, "cc", "k1").unwrap(), None);

        // Another org may see the hash, not the value, and may not write.
        let other = sim(&world, "o1", "Org2MSP");
        let refused = other.get_private_data("cc", ORG1, "k1").unwrap_err();
        assert!(refused.to_string().contains("read access"), "{refused}");
        assert!(other.private_range_query("cc", ORG1, "", "").is_err());
        assert!(
            other
                .write_private_data("cc", ORG1, "k1", Some(b"x".to_vec()), false)
                .is_err()
        );
        assert_eq!(
            other.get_private_data_hash("cc", ORG1, "k1").unwrap(),
            sha256(b"secret")
        );
        assert!(
            other
                .get_private_data("cc", "_implicit_org_Org3MSP", "k")
                .is_err()
        );

        let del = sim(&world, "d1", "Org1MSP");
        del.write_private_data("cc", ORG1, "k1", None, false)
            .unwrap();
        del.write_private_data("cc", ORG1, "k2", None, true)
            .unwrap();
        assert_eq!(
            endorse_and_commit(&world, &[&del]),
            [TxValidationCode::Valid]
        );
        let after = sim(&world, "r2", "Org1MSP");
        assert_eq!(after.get_private_data("cc", ORG1, "k1").unwrap(), None);
        assert!(
            after
                .get_private_data_hash("cc", ORG1, "k2")
                .unwrap()
                .is_empty()
        );
        assert!(keys(&after.private_range_query("cc", ORG1, "", "").unwrap()).is_empty());
    }

    #[test]
    fn private_reads_are_checked_for_conflicts_at_commit() {
        let (_dir, world) = open();
        let seed = sim(&world, "s", "Org1MSP");
        seed.write_private_data("cc", ORG1, "k", Some(b"0".to_vec()), false)
            .unwrap();
        endorse_and_commit(&world, &[&seed]);
        // Both read k at the same version and write it: the second loses.
        let a = sim(&world, "a", "Org1MSP");
        let b = sim(&world, "b", "Org1MSP");
        for (s, v) in [(&a, b"1"), (&b, b"2")] {
            s.get_private_data("cc", ORG1, "k").unwrap();
            s.write_private_data("cc", ORG1, "k", Some(v.to_vec()), false)
                .unwrap();
        }
        assert_eq!(
            endorse_and_commit(&world, &[&a, &b]),
            [TxValidationCode::Valid, TxValidationCode::MvccReadConflict]
        );
        let read = sim(&world, "r", "Org1MSP");
        assert_eq!(
            read.get_private_data("cc", ORG1, "k").unwrap(),
            Some(b"1".to_vec())
        );
        // A hash read conflicts the same way.
        let h = sim(&world, "h", "Org2MSP");
        h.get_private_data_hash("cc", ORG1, "k").unwrap();
        h.put_state("cc", "pub", b"x".to_vec()).unwrap();
        let w = sim(&world, "w", "Org1MSP");
        w.write_private_data("cc", ORG1, "k", Some(b"3".to_vec()), false)
            .unwrap();
        assert_eq!(
            endorse_and_commit(&world, &[&w, &h]),
            [TxValidationCode::Valid, TxValidationCode::MvccReadConflict]
        );
    }

    #[test]
    fn a_hash_committed_without_its_private_data_does_not_serve_a_stale_value() {
        let (_dir, world) = open();
        let seed = sim(&world, "s", "Org1MSP");
        seed.write_private_data("cc", ORG1, "k", Some(b"old".to_vec()), false)
            .unwrap();
        endorse_and_commit(&world, &[&seed]);
        // The private writes of this one are lost before commit (e.g. a restart).
        let lost = sim(&world, "lost", "Org1MSP");
        lost.write_private_data("cc", ORG1, "k", Some(b"new".to_vec()), false)
            .unwrap();
        let set = lost.results().unwrap();
        let committed = world
            .commit_block(
                CH,
                &[CommitTx {
                    tx_id: "lost",
                    timestamp: prost_types::Timestamp::default(),
                    rwset: &set,
                }],
            )
            .unwrap();
        assert_eq!(committed.validation, [TxValidationCode::Valid]);
        let read = sim(&world, "r", "Org1MSP");
        assert_eq!(
            read.get_private_data_hash("cc", ORG1, "k").unwrap(),
            sha256(b"new")
        );
        let err = read.get_private_data("cc", ORG1, "k").unwrap_err();
        assert!(err.to_string().contains("not available"), "{err}");
        assert!(keys(&read.private_range_query("cc", ORG1, "", "").unwrap()).is_empty());
    }

    #[test]
    fn without_private_access_or_in_init_private_data_is_refused() {
        let (_dir, world) = open();
        let plain = TxSimulator::new(world.clone(), CH, "t");
        assert!(plain.get_private_data("cc", ORG1, "k").is_err());
        let init = TxSimulator::with_private_access(
            world,
            CH,
            "i",
            PrivateAccess {
                orgs: Arc::new(["Org1MSP".to_string()].into()),
                creator_mspid: "Org1MSP".into(),
                is_init: true,
                explicit: None,
            },
        );
        let err = init
            .write_private_data("cc", ORG1, "k", Some(b"v".to_vec()), false)
            .unwrap_err();
        assert!(err.to_string().contains("Init"), "{err}");
    }

    struct ShortLived;

    impl chaincode_operator::endorser::ledger::CollectionLookup for ShortLived {
        fn collections(
            &self,
            _channel: &str,
            _namespace: &str,
        ) -> Result<Vec<chaincode_operator::endorser::ledger::CollectionDefinition>, String>
        {
            Ok(vec![
                chaincode_operator::endorser::ledger::CollectionDefinition {
                    name: "shortLived".into(),
                    members: ["Org1MSP".to_string()].into(),
                    member_only_read: true,
                    member_only_write: true,
                    block_to_live: 2,
                    endorsement_policy: None,
                },
            ])
        }
    }

    fn explicit_sim(world: &WorldState, tx: &str) -> TxSimulator {
        TxSimulator::with_private_access(
            world.clone(),
            CH,
            tx,
            PrivateAccess {
                orgs: Arc::new(["Org1MSP".to_string()].into()),
                creator_mspid: "Org1MSP".into(),
                is_init: false,
                explicit: Some((CH.to_string(), Arc::new(ShortLived))),
            },
        )
    }

    #[test]
    fn private_data_is_purged_after_its_block_to_live_unless_rewritten() {
        let (_dir, world) = open();
        world.set_collection_lookup(Arc::new(ShortLived));
        let put = explicit_sim(&world, "p");
        put.write_private_data("cc", "shortLived", "a", Some(b"1".to_vec()), false)
            .unwrap();
        put.write_private_data("cc", "shortLived", "b", Some(b"1".to_vec()), false)
            .unwrap();
        endorse_and_commit(&world, &[&put]); // block 0
        let rewrite = explicit_sim(&world, "r");
        rewrite
            .write_private_data("cc", "shortLived", "b", Some(b"2".to_vec()), false)
            .unwrap();
        endorse_and_commit(&world, &[&rewrite]); // block 1: b lives until block 3
        endorse_and_commit(&world, &[]); // block 2: a (block 0 + 2) is still there
        let read = explicit_sim(&world, "x");
        assert_eq!(
            read.get_private_data("cc", "shortLived", "a").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(world.block_private_data(CH, 0).unwrap().len(), 1);
        endorse_and_commit(&world, &[]); // block 3: a is gone, with its hash
        assert!(
            world.block_private_data(CH, 0).unwrap().is_empty(),
            "block 0's write set is erased too"
        );
        assert_eq!(world.block_private_data(CH, 1).unwrap().len(), 1);
        let read = explicit_sim(&world, "y");
        assert_eq!(
            read.get_private_data("cc", "shortLived", "a").unwrap(),
            None
        );
        assert!(
            read.get_private_data_hash("cc", "shortLived", "a")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            read.get_private_data("cc", "shortLived", "b").unwrap(),
            Some(b"2".to_vec()),
            "rewritten in block 1: its first expiry does not remove it"
        );
        endorse_and_commit(&world, &[]); // block 4: b is gone too
        let read = explicit_sim(&world, "z");
        assert_eq!(
            read.get_private_data("cc", "shortLived", "b").unwrap(),
            None
        );
    }

    #[test]
    fn the_transient_store_survives_a_restart_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let (endorsed, public) = {
            let world = WorldState::open_with_transient_capacity(&path, 2).unwrap();
            let mut sets = Vec::new();
            for tx in ["t1", "t2", "t3"] {
                let s = sim(&world, tx, "Org1MSP");
                s.write_private_data("cc", ORG1, tx, Some(tx.as_bytes().to_vec()), false)
                    .unwrap();
                world
                    .put_transient(tx, &s.private_results().unwrap().unwrap())
                    .unwrap();
                sets.push((tx, s.results().unwrap()));
            }
            assert_eq!(world.transient_len().unwrap(), 2, "the oldest went first");
            (sets.pop().unwrap(), sets.remove(0))
        };
        // Endorsed before the restart, committed after it: the clear value is still there.
        let world = WorldState::open_with_transient_capacity(&path, 2).unwrap();
        let txs = [
            CommitTx {
                tx_id: endorsed.0,
                timestamp: prost_types::Timestamp::default(),
                rwset: &endorsed.1,
            },
            CommitTx {
                tx_id: public.0,
                timestamp: prost_types::Timestamp::default(),
                rwset: &public.1,
            },
        ];
        world.commit_block(CH, &txs).unwrap();
        let read = sim(&world, "r", "Org1MSP");
        assert_eq!(
            read.get_private_data("cc", ORG1, "t3").unwrap(),
            Some(b"t3".to_vec())
        );
        // t1 was dropped from the bounded store: only its hash was committed.
        assert!(read.get_private_data("cc", ORG1, "t1").is_err());
        assert_eq!(world.transient_len().unwrap(), 1, "t2 still waits");
    }
}
