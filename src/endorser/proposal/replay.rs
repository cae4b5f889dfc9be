//! Refusing replayed transaction ids.
//!
//! A tx id is `hex(sha256(nonce || creator))` and the whole proposal is signed, so a replay is
//! the same signed proposal sent again. The validator records a tx id only after every other
//! check passed, so a forged copy cannot block the genuine proposal.
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Remembers tx ids seen per channel. Implementations are shared between concurrent requests.
pub trait ReplayCache: Send + Sync {
    /// Records `(channel, tx_id)`; returns false when it was already recorded.
    fn record(&self, channel: &str, tx_id: &str) -> bool;
}

/// The most recent `capacity` tx ids, first in first out. Older ones are forgotten: the
/// ledger's committed-tx-id check covers those for transactions that reached a block.
#[derive(Debug)]
pub struct BoundedReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    set: HashSet<(String, String)>,
    order: VecDeque<(String, String)>,
}

impl BoundedReplayCache {
    /// A cache of at least one entry.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            seen: Mutex::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.seen.lock().map_or(0, |seen| seen.order.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for BoundedReplayCache {
    /// 100 000 tx ids: about 15 MB, minutes of traffic at thousands of proposals a second.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl ReplayCache for BoundedReplayCache {
    fn record(&self, channel: &str, tx_id: &str) -> bool {
        // A poisoned lock means a panic elsewhere while holding it; the data is still a set.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (channel.to_string(), tx_id.to_string());
        if seen.set.contains(&key) {
            return false;
        }
        if seen.order.len() >= self.capacity
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.set.remove(&oldest);
        }
        seen.order.push_back(key.clone());
        seen.set.insert(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tx_id_is_fresh_once_per_channel() {
        let cache = BoundedReplayCache::new(10);
        assert!(cache.record("mychannel", "tx1"));
        assert!(!cache.record("mychannel", "tx1"));
        assert!(cache.record("otherchannel", "tx1"));
        assert!(cache.record("mychannel", "tx2"));
        assert_eq!(cache.len(), 3);
    }

    #[test]
    fn the_oldest_entries_are_forgotten_beyond_capacity() {
        let cache = BoundedReplayCache::new(3);
        for tx in ["a", "b", "c", "d"] {
            assert!(cache.record("ch", tx));
        }
        assert_eq!(cache.len(), 3);
        assert!(!cache.record("ch", "d"));
        assert!(!cache.record("ch", "b"));
        // "a" was evicted to make room for "d".
        assert!(cache.record("ch", "a"));
    }
}
