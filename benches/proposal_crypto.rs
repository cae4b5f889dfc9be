//! The endorser's per-proposal crypto path without any chaincode work: validate a signed
//! proposal (decode, tx id, creator from the cache, ECDSA verify, replay) and endorse it
//! (encode, ECDSA sign), beside the machine's raw ECDSA P-256 sign+verify rate measured in the
//! same run. Single thread, so wall time is CPU time. Prints its figures; asserts nothing.
//!
//! Run: `cargo bench --bench proposal_crypto`
#[path = "../tests/proposal_support/mod.rs"]
mod proposal_support;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use chaincode_operator::endorser::identity::ecdsa;
use chaincode_operator::endorser::proposal::{
    BoundedReplayCache, SimulationOutcome, proposal_response,
};
use chaincode_operator::proto::protos::{ChaincodeId, Response, SignedProposal};
use p256::ecdsa::SigningKey;
use proposal_support::*;
use prost::Message;

const PROPOSALS: usize = 4000;

fn per_op(elapsed: Duration, ops: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / ops as f64
}

fn main() {
    let org = dev_org();
    let proposals: Vec<Vec<u8>> = (0..PROPOSALS)
        .map(|i| {
            let key = format!("asset{i}");
            good(&org.user, &[b"put", key.as_bytes(), b"blue"]).encode_to_vec()
        })
        .collect();
    let size = proposals[0].len();

    // Reference: raw sign + verify of a message the size of a proposal.
    let key = ecdsa::EcdsaSigner::new(SigningKey::from_slice(&[42; 32]).expect("fixed test key"));
    let public_key = ecdsa::public_key_bytes(key.verifying_key());
    let message = SignedProposal::decode(proposals[0].as_slice())
        .expect("own encoding")
        .proposal_bytes;
    let reference = || {
        let start = Instant::now();
        for _ in 0..PROPOSALS {
            let signature = key.sign(black_box(&message));
            ecdsa::verify_parts(&public_key, &[&message], &signature).expect("own signature");
        }
        per_op(start.elapsed(), PROPOSALS)
    };
    // Measured before and after the endorser path; the machine is shared, so both are shown.
    let crypto_before_us = reference();
    // The same with pure-Rust p256 arithmetic, for comparison.
    let pure = SigningKey::from_slice(&[42; 32]).expect("fixed test key");
    let start = Instant::now();
    for _ in 0..PROPOSALS / 4 {
        use p256::ecdsa::signature::{Signer, Verifier};
        let signature: p256::ecdsa::Signature = pure.sign(black_box(&message));
        pure.verifying_key()
            .verify(&message, &signature)
            .expect("own signature");
    }
    let pure_us = per_op(start.elapsed(), PROPOSALS / 4);

    let validator = validator(&org);
    let replay = BoundedReplayCache::new(PROPOSALS * 2);
    let now = SystemTime::now();
    // Warm the creator cache the way a steady client does.
    validator
        .validate(good(&org.user, &[b"warm"]), now, &replay)
        .expect("warm-up proposal");

    let outcome = SimulationOutcome {
        chaincode_id: ChaincodeId {
            name: "basic".into(),
            version: "1.0".into(),
            ..ChaincodeId::default()
        },
        response: Response {
            status: 200,
            message: String::new(),
            payload: Vec::new(),
        },
        results: vec![0; 120],
        event: None,
    };
    let mut validate_time = Duration::ZERO;
    let mut endorse_time = Duration::ZERO;
    for bytes in &proposals {
        let start = Instant::now();
        let validated = validator
            .validate_bytes(black_box(bytes), now, &replay)
            .expect("valid proposal");
        let middle = Instant::now();
        let response = proposal_response(
            &validated,
            &outcome,
            &org.endorser,
            prost_types::Timestamp::default(),
        );
        black_box(response.encode_to_vec());
        endorse_time += middle.elapsed();
        validate_time += middle - start;
    }
    let crypto_after_us = reference();
    let crypto_us = (crypto_before_us + crypto_after_us) / 2.0;
    let validate_us = per_op(validate_time, PROPOSALS);
    let endorse_us = per_op(endorse_time, PROPOSALS);
    let total_us = validate_us + endorse_us;

    // Uncached creator: what the first proposal of each new identity costs.
    let fresh = (0..200)
        .map(|_| {
            let store = chaincode_operator::endorser::identity::TrustStore::new([
                chaincode_operator::endorser::identity::load_organization(
                    MSPID,
                    &org.crypto.paths.user.dir,
                )
                .expect("dev org"),
            ]);
            let start = Instant::now();
            store
                .validate_creator(org.user.serialized(), now)
                .expect("dev user");
            start.elapsed()
        })
        .sum::<Duration>();
    let chain_us = per_op(fresh, 200);

    println!("proposal_crypto: {PROPOSALS} proposals of {size} bytes, one thread");
    println!(
        "  reference ECDSA P-256 sign+verify : {crypto_us:8.1} us/op  ({:.0} ops/s; {crypto_before_us:.1} before, {crypto_after_us:.1} after)",
        1e6 / crypto_us
    );
    println!(
        "  pure-Rust p256 sign+verify        : {pure_us:8.1} us/op  (not used; for comparison)"
    );
    println!("  validate (creator cached)         : {validate_us:8.1} us/proposal");
    println!("  endorse (payload + sign)          : {endorse_us:8.1} us/proposal");
    println!(
        "  validate + endorse                : {total_us:8.1} us/proposal  ({:.0} /s)",
        1e6 / total_us
    );
    println!(
        "  share of the crypto limit         : {:8.0} %  (reference / validate+endorse)",
        100.0 * crypto_us / total_us
    );
    println!("  creator chain validation, uncached: {chain_us:8.1} us (once per new identity)");
}
