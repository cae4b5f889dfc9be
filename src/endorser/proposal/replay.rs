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
///
/// An entry is 20 bytes (a channel number and the first 16 bytes of the id) kept twice: in a set
/// allocated at twice the capacity and in the eviction queue. A full cache of 100 000 ids holds
/// about 7.5 MB, all of it allocated at the start.
#[derive(Debug)]
pub struct BoundedReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

/// `(channel number, the first 16 bytes of the tx id)`. Tx ids are SHA-256 digests, so two
/// different ids share those 128 bits only by chance (about 2^-128 a pair), and blocking a
/// genuine proposal would take a second preimage of its id's first 128 bits.
type Entry = (u32, [u8; 16]);

#[derive(Debug)]
struct Seen {
    /// Channel names by number; channels are few and never forgotten.
    channels: Vec<Box<str>>,
    set: HashSet<Entry>,
    order: VecDeque<Entry>,
}

impl Seen {
    fn channel_number(&mut self, channel: &str) -> u32 {
        let found = self.channels.iter().position(|c| **c == *channel);
        let index = found.unwrap_or_else(|| {
            self.channels.push(channel.into());
            self.channels.len() - 1
        });
        u32::try_from(index).unwrap_or(u32::MAX)
    }
}

/// The 16 bytes a tx id stands for: a Fabric tx id is the hex of a SHA-256 digest, so those are
/// the first half of its bytes; any other text is hashed first.
fn id_bytes(tx_id: &str) -> [u8; 16] {
    let mut bytes = [0u8; 32];
    let digest = if tx_id.len() == 64
        && hex::decode_to_slice(tx_id, &mut bytes).is_ok()
        // Upper- and lower-case hex decode alike, but they are different tx ids.
        && !tx_id.bytes().any(|b| b.is_ascii_uppercase())
    {
        bytes
    } else {
        use sha2::Digest;
        sha2::Sha256::new()
            .chain_update(b"tx id text:")
            .chain_update(tx_id.as_bytes())
            .finalize()
            .into()
    };
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&digest[..16]);
    prefix
}

impl BoundedReplayCache {
    /// A cache of at least one entry.
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        // Allocated once, so the cache never reallocates (and copies) its tables under load. The
        // set gets twice the room: evictions leave tombstones, and a hash table at most half
        // full clears them in place, where a fuller one doubles (as this one did after minutes of
        // churn at full capacity, 4.9 → 9.7 MB with both tables live during the copy).
        let seen = Seen {
            channels: Vec::new(),
            set: HashSet::with_capacity(capacity.saturating_mul(2)),
            order: VecDeque::with_capacity(capacity),
        };
        Self {
            capacity,
            seen: Mutex::new(seen),
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
    /// 100 000 tx ids: about 7.5 MB, minutes of traffic at thousands of proposals a second.
    fn default() -> Self {
        Self::new(100_000)
    }
}

impl ReplayCache for BoundedReplayCache {
    fn record(&self, channel: &str, tx_id: &str) -> bool {
        let id = id_bytes(tx_id);
        // A poisoned lock means a panic elsewhere while holding it; the data is still a set.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (seen.channel_number(channel), id);
        // One lookup for the check and the insertion: the set is megabytes, each probe a miss.
        if !seen.set.insert(key) {
            return false;
        }
        if seen.order.len() >= self.capacity
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.set.remove(&oldest);
        }
        seen.order.push_back(key);
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

    #[test]
    fn a_full_cache_keeps_its_tables_however_long_it_churns() {
        let cache = BoundedReplayCache::new(1000);
        // A set's capacity is its entries plus the room left before it must rehash: tombstones
        // lower it, a rehash in place brings it back, and only a reallocation raises it.
        let sizes = |cache: &BoundedReplayCache| {
            let seen = cache.seen.lock().unwrap();
            (seen.set.capacity(), seen.order.capacity())
        };
        let (set_at_start, queue_at_start) = sizes(&cache);
        let id = |i: u32| {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(i.to_le_bytes()))
        };
        for i in 0..50_000 {
            assert!(cache.record("ch", &id(i)));
            let (set, queue) = sizes(&cache);
            assert!(set <= set_at_start, "the set grew to {set} after {i} ids");
            assert_eq!(queue, queue_at_start);
        }
        assert_eq!(cache.len(), 1000);
        // Still a replay cache after all that churn: the last 1000 are refused.
        assert!(!cache.record("ch", &id(49_999)));
        assert!(!cache.record("ch", &id(49_000)));
        assert!(cache.record("ch", &id(48_999)));
    }

    #[test]
    fn real_tx_ids_and_other_text_are_told_apart() {
        let cache = BoundedReplayCache::new(10);
        let id = "a3f1".repeat(16);
        assert!(cache.record("ch", &id));
        assert!(!cache.record("ch", &id));
        // The same hex digits in upper case are another tx id, as is any prefix of it.
        assert!(cache.record("ch", &id.to_uppercase()));
        assert!(!cache.record("ch", &id.to_uppercase()));
        assert!(cache.record("ch", &id[..63]));
        assert!(cache.record("ch", &format!("{id}0")));
        assert!(cache.record("other", &id));
    }
}
