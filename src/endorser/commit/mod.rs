//! The embedded single-node commit path behind the gateway's Submit and CommitStatus:
//! assembling and checking endorsed transactions (`transaction`), the durable per-channel block
//! log (`blocklog`) and the committer that orders, validates, logs and applies them
//! (`committer`).
pub mod blocklog;
pub mod committer;
pub mod transaction;

pub use blocklog::{BlockLogError, ChannelLog};
pub use committer::{
    CommitError, CommittedBlock, CommittedTx, Committer, CommitterConfig, SubmitError, TxStatus,
};
pub use transaction::{
    BuildError, EndorsementPolicy, EnvelopeError, RequiredOrgs, build_transaction,
};
