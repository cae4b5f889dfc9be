//! What several benches share: their environment knobs and latency percentiles.
#![allow(dead_code)]
use std::time::Duration;

/// A `BENCH_*` switch: set, and neither empty nor `0`.
pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v != "0" && !v.is_empty())
}

/// A numeric `BENCH_*` setting; None when unset or not a number.
pub fn env_usize(name: &str) -> Option<usize> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The `p` percentile (0..=1) of ascending, non-empty `sorted`, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}
