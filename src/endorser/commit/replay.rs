//! Duplicate transaction ids as Fabric's endorser sees them: a proposal whose tx id is already
//! in a block on its channel is refused (this survives restarts, the block log being durable),
//! and, for endorsements, so is one seen recently (a replay caught before it was committed).
use crate::endorser::proposal::{BoundedReplayCache, ReplayCache};

use super::Committer;

/// The committed-tx-id check, optionally with a cache of recent endorsements.
pub struct LedgerReplayCheck {
    committer: Committer,
    recent: Option<BoundedReplayCache>,
}

impl LedgerReplayCheck {
    /// For endorsements: refuses committed tx ids and the `capacity` most recent proposals.
    pub fn endorsing(committer: Committer, capacity: usize) -> Self {
        Self {
            committer,
            recent: Some(BoundedReplayCache::new(capacity)),
        }
    }

    /// For evaluations, which change nothing: refuses committed tx ids only and remembers none,
    /// so a client may evaluate a proposal and then endorse the same one.
    pub fn evaluating(committer: Committer) -> Self {
        Self {
            committer,
            recent: None,
        }
    }
}

impl ReplayCache for LedgerReplayCheck {
    fn record(&self, channel: &str, tx_id: &str) -> bool {
        if self.committer.status(channel, tx_id).is_some() {
            return false;
        }
        self.recent
            .as_ref()
            .is_none_or(|recent| recent.record(channel, tx_id))
    }
}
