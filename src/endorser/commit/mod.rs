//! The embedded single-node commit path behind the gateway's Submit and CommitStatus:
//! assembling and checking endorsed transactions (`transaction`), the durable per-channel block
//! log (`blocklog`) starting with each channel's config block (`genesis`), the committer that orders, validates, logs and applies them
//! (`committer`), and the duplicate-tx-id check endorsements make against it (`replay`).
pub mod blocklog;
pub mod committer;
pub mod genesis;
pub mod replay;
pub mod signature_policy;
pub mod transaction;

pub use blocklog::{BlockLogError, ChannelLog};
pub use committer::{
    CommitError, CommitStats, CommittedBlock, CommittedTx, Committer, CommitterConfig,
    DEFAULT_GROUP_WINDOW, MAX_BLOCK_TXS, MAX_PENDING, SubmitError, TxStatus,
};
pub use replay::LedgerReplayCheck;
pub use transaction::{
    BuildError, EndorsementPolicy, EnvelopeError, RequiredOrgs, build_transaction,
};
