//! The embedded single-node commit path: an orderer and a committing peer in one.
//!
//! [`Committer::submit`] takes a signed transaction envelope. Envelopes that do not decode or
//! whose creator did not sign them are refused (like an orderer's Broadcast) and leave no trace.
//! Every other envelope is committed in a block, in this order, per channel and one block at a
//! time:
//!
//! 1. decide each transaction's validation code: structure and proposal hash, duplicate tx id,
//!    endorsement policy, then MVCC against the world state (the store's own validation, which
//!    sees the writes of earlier valid transactions of the same block), applying the valid write
//!    sets in one redb write transaction that is not committed yet;
//! 2. append the block (envelopes + codes) to the channel's block log and fsync it;
//! 3. commit the redb transaction: readers see the block's writes from now on;
//! 4. answer the submitters and wake waiters and subscribers (each transaction's status is in the
//!    world state's tx index, written in the block's redb transaction).
//!
//! A crash between 2 and 3 leaves the log one block ahead of the state; [`Committer::open`] (and
//! the next commit) re-applies such blocks from the log with their recorded codes. The state can
//! never be ahead of the log; if it is (the log was removed or cut), opening fails with a clear
//! error instead of guessing.
//!
//! Group commit: submits on a channel queue (at most [`MAX_PENDING`]); the first submit on an idle
//! channel starts its leader, which commits at once on a blocking thread, and while a block is
//! being committed the next one collects everything that queues meanwhile. On a busy channel (the
//! leader's last block held more than one transaction) the next block may wait a short window for
//! the clients just answered to submit again (`Inner::cut`). One fsync per block, up to
//! [`MAX_BLOCK_TXS`] transactions each.
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use prost::Message;
use tokio::sync::{Notify, broadcast, oneshot};

use super::blocklog::{BlockLogError, ChannelLog, new_block, transactions_filter};
use super::genesis::{config_block, is_config_block};
use super::transaction::{
    EndorsedAction, EndorsementPolicy, EnvelopeError, EnvelopeHeader, accept_envelope,
    decode_envelope, unpack_action,
};
use crate::endorser::identity::TrustStore;
use crate::endorser::ledger::{CommitTx, StoreError, WorldState};
use crate::proto::common::{Block, Envelope};
use crate::proto::protos::{ChaincodeEvent, TxValidationCode};
use crate::proto::rwset::TxReadWriteSet;

/// File name suffix of a channel's block log inside the committer's directory.
const LOG_SUFFIX: &str = ".blocks";
/// Most transactions cut into one block; more waiting submits go into the next one (the stock
/// orderer's default MaxMessageCount).
pub const MAX_BLOCK_TXS: usize = 500;
/// Most submits waiting on one channel; more are refused with [`SubmitError::Busy`] instead of
/// queueing without bound. Four full blocks: a client waits for its answer before submitting
/// again, so only more clients in flight than four blocks hold (a backlog the disk cannot keep up
/// with) reach it.
pub const MAX_PENDING: usize = 4 * MAX_BLOCK_TXS;
/// Longest group-commit window by default: bounds the latency it can add. The window is at most
/// half the last block's append + fsync (`WINDOW_DIVISOR`); fsyncs took 0.3-3.5 ms on the 2-core
/// VM of `benches/endorser_submit.rs`, so the cap only binds on slower disks.
pub const DEFAULT_GROUP_WINDOW: Duration = Duration::from_millis(2);
/// The window is at most 1/WINDOW_DIVISOR of the last block's append + fsync: it is worth waiting
/// when the disk, not the CPU, sets the pace. Measured with the bench (2026-12-06, 0.3 ms
/// fsyncs): a quarter of the whole commit time instead cost a third of N = 8's rate, half the
/// fsync time left N = 8 within noise and raised N = 128's by 30%.
const WINDOW_DIVISOR: u32 = 2;
/// Shorter windows are not waited: on a fast disk (fsync under 0.5 ms) the CPU sets the pace, and
/// waking a sleeping leader on a busy 2-core machine took longer than that (the bench lost half of
/// N = 8's rate with 0.1 ms windows at 0.19 ms fsyncs).
const MIN_WINDOW: Duration = Duration::from_micros(250);
/// Committed blocks buffered for slow subscribers before they start missing blocks.
const SUBSCRIBER_BUFFER: usize = 1024;
/// Blocks read from the log at a time when indexing or re-applying it.
const READ_CHUNK: u64 = 256;
/// Fabric's longest channel name.
const MAX_CHANNEL_NAME: usize = 249;

/// Where a committed transaction ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxStatus {
    pub block_number: u64,
    pub code: TxValidationCode,
}

/// One transaction of a committed block.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedTx {
    pub tx_id: String,
    pub code: TxValidationCode,
    /// `ChaincodeAction.events` of a VALID transaction (none for an invalid one).
    pub chaincode_events: Vec<ChaincodeEvent>,
}

/// A block as committed on a channel.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedBlock {
    pub channel: String,
    pub number: u64,
    pub txs: Vec<CommittedTx>,
}

/// The commit path could not do its work; nothing that was acknowledged is lost.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("commit directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] BlockLogError),
    #[error("world state: {0}")]
    Store(#[from] StoreError),
    #[error(
        "channel {channel}: the world state holds {state_height} blocks but the block log only \
         {log_height}; the log was removed or cut, restore it (or start from an empty world state)"
    )]
    StateAheadOfLog {
        channel: String,
        state_height: u64,
        log_height: u64,
    },
    #[error(
        "channel {channel}: block 0 of {path} is a transaction block, not the channel's config \
         block; this block log was written by an older version, whose block numbers do not match \
         a Fabric network's. Move the data directory away and start again (for `chaincode-operator \
         dev`: delete .chaincode-dev/data; the crypto is kept)"
    )]
    NoConfigBlock { channel: String, path: PathBuf },
    #[error("channel {channel}: cannot make its config block: {reason}")]
    Genesis { channel: String, reason: String },
    #[error("channel {channel} block {number}: {reason}")]
    Inconsistent {
        channel: String,
        number: u64,
        reason: String,
    },
    #[error(
        "block {number} of channel {channel} is in the block log but could not be applied to the \
         world state yet ({source}); it is applied on the next commit or restart"
    )]
    NotApplied {
        channel: String,
        number: u64,
        source: StoreError,
    },
    #[error("the commit task stopped: {0}")]
    Task(String),
}

/// Why a submitted transaction has no status.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SubmitError {
    /// Refused before ordering: nothing was appended.
    #[error(transparent)]
    Refused(#[from] EnvelopeError),
    /// The block holding the transaction could not be made durable or applied.
    #[error("the transaction was not committed: {0}")]
    Commit(Arc<CommitError>),
    /// Too many submits wait on the channel already; nothing was queued, try again later.
    #[error(
        "channel {channel}: {limit} transactions are already waiting to be committed; try again later"
    )]
    Busy { channel: String, limit: usize },
}

impl From<CommitError> for SubmitError {
    fn from(error: CommitError) -> Self {
        SubmitError::Commit(Arc::new(error))
    }
}

/// What the committer enforces besides the trust store.
#[derive(Debug, Clone)]
pub struct CommitterConfig {
    pub policy: EndorsementPolicy,
    /// Channels that accept transactions; `None` accepts any valid channel name.
    pub channels: Option<HashSet<String>>,
    /// Longest a block on a busy channel waits for more submits (the group-commit window, also
    /// bounded by half the last block's append + fsync time); zero cuts each block with what
    /// queued during the previous one.
    pub group_window: Duration,
}

impl Default for CommitterConfig {
    fn default() -> Self {
        CommitterConfig {
            policy: EndorsementPolicy::default(),
            channels: None,
            group_window: DEFAULT_GROUP_WINDOW,
        }
    }
}

/// What the commit path did since it was opened, over all channels (also exported as metrics,
/// see [`Committer::register_metrics`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Transaction blocks committed: one block log fsync each.
    pub blocks: u64,
    /// Transactions in those blocks.
    pub transactions: u64,
    /// Group-commit windows waited, whether or not more submits came in them.
    pub windows: u64,
}

/// The commit path's counters.
struct Metrics {
    blocks: Counter,
    transactions: Counter,
    windows: Counter,
    block_transactions: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            blocks: Counter::default(),
            transactions: Counter::default(),
            windows: Counter::default(),
            // 1, 2, 4 .. 512: up to MAX_BLOCK_TXS.
            block_transactions: Histogram::new(
                prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 10),
            ),
        }
    }
}

/// Fabric's channel name rule (`[a-z][a-z0-9.-]*`, at most 249 characters); it also keeps the
/// name safe as a file name.
pub fn is_valid_channel_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_CHANNEL_NAME
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

/// Where a queued submit's result arrives.
type Answer = oneshot::Receiver<Result<TxStatus, SubmitError>>;
/// A submit's result, not sent yet.
type Answered = (
    oneshot::Sender<Result<TxStatus, SubmitError>>,
    Result<TxStatus, SubmitError>,
);

/// Sends each result to its submitter; one that went away is ignored, its transaction stands.
fn send_answers(answers: Vec<Answered>) {
    for (reply, result) in answers {
        let _ = reply.send(result);
    }
}

/// An accepted transaction waiting for its block.
struct Pending {
    header: EnvelopeHeader,
    envelope: Vec<u8>,
    /// The structural checks: the action, or the code that makes the transaction invalid.
    action: Result<EndorsedAction, TxValidationCode>,
    endorsed: bool,
    reply: oneshot::Sender<Result<TxStatus, SubmitError>>,
}

/// A channel's waiting submits.
#[derive(Default)]
struct Queue {
    txs: Vec<Pending>,
    /// A thread is committing this channel's queue; it takes what is queued before it stops.
    leader: bool,
}

struct Channel {
    name: String,
    log: Mutex<ChannelLog>,
    pending: Mutex<Queue>,
    /// Signalled on every queued submit, for a leader waiting in the group-commit window.
    arrived: Condvar,
}

/// Hands the leadership back if a leader unwinds, so the channel's queue is not stranded.
struct Leadership<'a>(&'a Channel);

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.pending).leader = false;
        }
    }
}

struct Inner {
    dir: PathBuf,
    world: WorldState,
    trust: Arc<TrustStore>,
    config: CommitterConfig,
    channels: Mutex<HashMap<String, Arc<Channel>>>,
    blocks: broadcast::Sender<Arc<CommittedBlock>>,
    committed: Notify,
    metrics: Metrics,
}

/// The commit path: cheap to clone, shared by the gateway's handlers.
#[derive(Clone)]
pub struct Committer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

/// Locks a mutex, going on after a panic elsewhere: every critical section here leaves the
/// data consistent (the log's own state is only advanced after a durable append).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Committer {
    /// Opens the block logs in `dir` (created if missing) over `world`, with the default
    /// [`CommitterConfig`] (any channel, at least one trusted org endorses).
    pub fn open(
        dir: &Path,
        world: WorldState,
        trust: Arc<TrustStore>,
    ) -> Result<Committer, CommitError> {
        Self::open_with(dir, world, trust, CommitterConfig::default())
    }

    /// Opens the block logs in `dir`: cuts torn tails, rebuilds the tx-id index, re-applies
    /// blocks the world state is missing, and refuses a world state that is ahead of its log.
    pub fn open_with(
        dir: &Path,
        world: WorldState,
        trust: Arc<TrustStore>,
        config: CommitterConfig,
    ) -> Result<Committer, CommitError> {
        let io = |source| CommitError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let inner = Inner {
            dir: dir.to_path_buf(),
            world,
            trust,
            config,
            channels: Mutex::default(),
            blocks: broadcast::channel(SUBSCRIBER_BUFFER).0,
            committed: Notify::new(),
            metrics: Metrics::default(),
        };
        let mut logged = HashSet::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let name = entry.map_err(io)?.file_name();
            let Some(channel) = name.to_str().and_then(|n| n.strip_suffix(LOG_SUFFIX)) else {
                continue;
            };
            if !is_valid_channel_name(channel) {
                continue;
            }
            let channel = inner.open_channel(channel)?;
            let log = lock(&channel.log);
            inner.fill_tx_index(&channel.name, &log)?;
            inner.catch_up(&channel.name, &log)?;
            drop(log);
            logged.insert(channel.name.clone());
        }
        for channel in inner.world.channels()? {
            let state_height = inner.world.height(&channel)?;
            if !logged.contains(&channel) && state_height > 0 {
                return Err(CommitError::StateAheadOfLog {
                    channel,
                    state_height,
                    log_height: 0,
                });
            }
        }
        Ok(Committer {
            inner: Arc::new(inner),
        })
    }

    /// Orders, validates and commits one transaction envelope; resolves once its block is durable
    /// and applied, with the transaction's validation code. A refused envelope changes nothing.
    pub async fn submit(&self, envelope: Envelope) -> Result<TxStatus, SubmitError> {
        let inner = &self.inner;
        // The checks (two signature verifications) run here, on the async thread, as an
        // endorsement's do; only a channel's leader (file IO, fsync, redb) takes a blocking
        // thread. With the checks on blocking threads too, the pool grew to ~85 threads under
        // load, each keeping its own allocator cache: memory grew by 1.23x in an hour.
        let (pending, answer) = inner.check(envelope, SystemTime::now())?;
        let channel = match inner.open_channel_if_open(pending.header.channel_id()) {
            Some(channel) => channel,
            None => {
                let opener = inner.clone();
                let name = pending.header.channel_id().to_string();
                tokio::task::spawn_blocking(move || opener.open_channel(&name))
                    .await
                    .map_err(|e| CommitError::Task(e.to_string()))??
            }
        };
        if inner.enqueue(&channel, vec![pending])? {
            let leader = inner.clone();
            // Not awaited, so this submit is answered with its own block, not when the leader
            // runs out of work; the commit runs to its end even if this future is dropped.
            drop(tokio::task::spawn_blocking(move || {
                let last = leader.lead(&channel);
                drop((leader, channel));
                send_answers(last);
            }));
        }
        answer
            .await
            .map_err(|_| CommitError::Task("the commit ended without an answer".into()))?
    }

    /// [`Self::submit`] for several envelopes queued together in this order (as an orderer's
    /// Broadcast stream delivers them): queued on an idle channel, up to [`MAX_BLOCK_TXS`] are
    /// cut into one block. One answer per envelope, in order.
    pub async fn submit_all(&self, envelopes: Vec<Envelope>) -> Vec<Result<TxStatus, SubmitError>> {
        let inner = self.inner.clone();
        let now = SystemTime::now();
        let count = envelopes.len();
        let answers =
            match tokio::task::spawn_blocking(move || inner.enqueue_all_and_commit(envelopes, now))
                .await
            {
                Ok(answers) => answers,
                Err(e) => {
                    let error = SubmitError::from(CommitError::Task(e.to_string()));
                    return vec![Err(error); count];
                }
            };
        let mut results = Vec::with_capacity(count);
        for answer in answers {
            results.push(match answer {
                Ok(reply) => reply.await.unwrap_or_else(|_| {
                    Err(CommitError::Task("the commit ended without an answer".into()).into())
                }),
                Err(refused) => Err(refused),
            });
        }
        results
    }

    /// What the commit path did since it was opened.
    pub fn stats(&self) -> CommitStats {
        let metrics = &self.inner.metrics;
        CommitStats {
            blocks: metrics.blocks.get(),
            transactions: metrics.transactions.get(),
            windows: metrics.windows.get(),
        }
    }

    /// Registers the commit path's metrics: blocks, transactions, windows waited and the
    /// transactions per block.
    pub fn register_metrics(&self, registry: &mut Registry) {
        let metrics = &self.inner.metrics;
        registry.register(
            "commit_blocks",
            "Transaction blocks committed (one block log fsync each)",
            metrics.blocks.clone(),
        );
        registry.register(
            "commit_transactions",
            "Transactions committed in blocks",
            metrics.transactions.clone(),
        );
        registry.register(
            "commit_group_windows",
            "Group-commit windows waited for more submits before cutting a block",
            metrics.windows.clone(),
        );
        registry.register(
            "commit_block_transactions",
            "Transactions per committed block",
            metrics.block_transactions.clone(),
        );
    }

    /// The status of `tx_id` on `channel`, once its block is committed.
    pub fn status(&self, channel: &str, tx_id: &str) -> Option<TxStatus> {
        self.inner.status(channel, tx_id)
    }

    /// Resolves with the status of `tx_id` on `channel` once it is committed (at once if it
    /// already is). The caller bounds the wait.
    pub async fn wait_status(&self, channel: &str, tx_id: &str) -> TxStatus {
        loop {
            let notified = self.inner.committed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a commit in between is not missed.
            notified.as_mut().enable();
            if let Some(status) = self.status(channel, tx_id) {
                return status;
            }
            notified.await;
        }
    }

    /// Every block committed from now on, on every channel.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<CommittedBlock>> {
        self.inner.blocks.subscribe()
    }

    /// The committed blocks of `channel` from number `start` on, read from the block log (empty
    /// for a channel without blocks). Reads files without blocking commits; call it from a
    /// blocking context (`spawn_blocking`) when many blocks may be read.
    pub fn blocks_from(
        &self,
        channel: &str,
        start: u64,
    ) -> Result<Vec<Arc<CommittedBlock>>, CommitError> {
        self.raw_blocks_from(channel, start)?
            .iter()
            .map(|block| {
                let (number, txs) = decode_logged(channel, block)?;
                Ok(Arc::new(committed_block(channel, number, &txs)))
            })
            .collect()
    }

    /// The Fabric `common.Block`s of `channel` from number `start` on, as logged.
    pub fn raw_blocks_from(&self, channel: &str, start: u64) -> Result<Vec<Block>, CommitError> {
        let Some(channel) = lock(&self.inner.channels).get(channel).cloned() else {
            return Ok(Vec::new());
        };
        // Only locate the blocks under the lock; commits go on while they are read.
        let range = lock(&channel.log).range(start, u64::MAX);
        Ok(range.read()?)
    }

    /// Up to `limit` `common.Block`s of `channel` from number `start` on, as logged (empty for
    /// a channel without a log). Reads files; call it from a blocking context.
    pub fn raw_blocks_range(
        &self,
        channel: &str,
        start: u64,
        limit: u64,
    ) -> Result<Vec<Block>, CommitError> {
        let Some(channel) = lock(&self.inner.channels).get(channel).cloned() else {
            return Ok(Vec::new());
        };
        let range = lock(&channel.log).range(start, limit);
        Ok(range.read()?)
    }

    /// Creates `channel`'s block log with its config block (block 0) if it has none yet, so
    /// the channel exists before its first transaction. Reads and writes files.
    pub fn create_channel(&self, channel: &str) -> Result<(), CommitError> {
        if !self.inner.is_served(channel) {
            return Err(CommitError::Genesis {
                channel: channel.to_string(),
                reason: "not a valid or served channel name".into(),
            });
        }
        let channel = self.inner.open_channel(channel)?;
        let log = lock(&channel.log);
        self.inner.catch_up(&channel.name, &log)
    }

    /// Number of blocks committed on `channel`.
    pub fn height(&self, channel: &str) -> u64 {
        lock(&self.inner.channels)
            .get(channel)
            .map(|c| lock(&c.log).height())
            .unwrap_or(0)
    }
}

/// One transaction of a logged block: its header, its recorded code and, when VALID, its action.
struct LoggedTx {
    header: EnvelopeHeader,
    code: TxValidationCode,
    action: Option<EndorsedAction>,
}

/// Decodes a logged block's transactions (they were all checked when accepted).
fn decode_logged(channel: &str, block: &Block) -> Result<(u64, Vec<LoggedTx>), CommitError> {
    let number = block.header.as_ref().map(|h| h.number).unwrap_or_default();
    let corrupt = |reason: String| CommitError::Inconsistent {
        channel: channel.to_string(),
        number,
        reason,
    };
    if is_config_block(block) {
        // The channel's configuration: no chaincode transaction, nothing to apply or index.
        return Ok((number, Vec::new()));
    }
    let data = block
        .data
        .as_ref()
        .map(|d| d.data.as_slice())
        .unwrap_or(&[]);
    let codes = transactions_filter(block);
    if codes.len() != data.len() {
        return Err(corrupt(format!(
            "{} validation codes for {} transactions",
            codes.len(),
            data.len()
        )));
    }
    let mut txs = Vec::with_capacity(data.len());
    for (index, (bytes, code)) in data.iter().zip(codes).enumerate() {
        let header = Envelope::decode(bytes.as_slice())
            .map_err(|e| e.to_string())
            .and_then(|envelope| decode_envelope(&envelope).map_err(|e| e.to_string()))
            .map_err(|reason| corrupt(format!("transaction {index}: {reason}")))?;
        let action = if code == TxValidationCode::Valid {
            Some(unpack_action(&header).map_err(|code| {
                corrupt(format!(
                    "VALID transaction {index} does not unpack ({code:?})"
                ))
            })?)
        } else {
            None
        };
        txs.push(LoggedTx {
            header,
            code,
            action,
        });
    }
    Ok((number, txs))
}

/// What subscribers see of a block.
fn committed_block(channel: &str, number: u64, txs: &[LoggedTx]) -> CommittedBlock {
    CommittedBlock {
        channel: channel.to_string(),
        number,
        txs: txs
            .iter()
            .map(|tx| CommittedTx {
                tx_id: tx.header.tx_id().to_string(),
                code: tx.code,
                chaincode_events: tx
                    .action
                    .as_ref()
                    .and_then(|action| action.event.clone())
                    .into_iter()
                    .collect(),
            })
            .collect(),
    }
}

impl Inner {
    /// From the world state's tx index, written in each block's own transaction.
    fn status(&self, channel: &str, tx_id: &str) -> Option<TxStatus> {
        match self.world.tx_status(channel, tx_id) {
            Ok(found) => found.map(|(block_number, code)| TxStatus { block_number, code }),
            Err(error) => {
                tracing::warn!(channel, tx_id, %error, "reading the tx index failed");
                None
            }
        }
    }

    fn is_served(&self, channel: &str) -> bool {
        is_valid_channel_name(channel)
            && self
                .config
                .channels
                .as_ref()
                .is_none_or(|served| served.contains(channel))
    }

    /// The channel's log if it is open already (no file IO).
    fn open_channel_if_open(&self, name: &str) -> Option<Arc<Channel>> {
        lock(&self.channels).get(name).cloned()
    }

    /// The channel's open log, opening (or creating) it on first use.
    fn open_channel(&self, name: &str) -> Result<Arc<Channel>, CommitError> {
        let mut channels = lock(&self.channels);
        if let Some(channel) = channels.get(name) {
            return Ok(channel.clone());
        }
        let (log, recovery) = ChannelLog::open(&self.dir.join(format!("{name}{LOG_SUFFIX}")))?;
        if recovery.truncated_bytes > 0 {
            tracing::warn!(
                channel = name,
                bytes = recovery.truncated_bytes,
                height = log.height(),
                "cut an incomplete block off the end of the block log"
            );
        }
        let state_height = self.world.height(name)?;
        if state_height > log.height() {
            return Err(CommitError::StateAheadOfLog {
                channel: name.to_string(),
                state_height,
                log_height: log.height(),
            });
        }
        let mut log = log;
        self.ensure_config_block(name, &mut log)?;
        let channel = Arc::new(Channel {
            name: name.to_string(),
            log: Mutex::new(log),
            pending: Mutex::default(),
            arrived: Condvar::new(),
        });
        channels.insert(name.to_string(), channel.clone());
        Ok(channel)
    }

    /// Block 0 must be the channel's config block: appended to an empty log (the world state
    /// applies it, as an empty block, on the catch-up that follows), checked in an existing one.
    fn ensure_config_block(&self, name: &str, log: &mut ChannelLog) -> Result<(), CommitError> {
        if log.height() == 0 {
            let nonce =
                crate::endorser::proposal::build::nonce().map_err(|_| CommitError::Genesis {
                    channel: name.to_string(),
                    reason: "no random nonce available".into(),
                })?;
            let block = config_block(name, self.trust.organizations(), SystemTime::now(), &nonce);
            log.append(&block)?;
            tracing::info!(channel = name, "created the channel with its config block");
            return Ok(());
        }
        let first = log.read_range(0, 1)?;
        if !first.first().is_some_and(is_config_block) {
            return Err(CommitError::NoConfigBlock {
                channel: name.to_string(),
                path: log.path().to_path_buf(),
            });
        }
        Ok(())
    }

    /// Fills the tx index from the log for a ledger written before the index existed (once, at
    /// open: every block committed since indexes its own transactions).
    fn fill_tx_index(&self, channel: &str, log: &ChannelLog) -> Result<(), CommitError> {
        let state_height = self.world.height(channel)?.min(log.height());
        let mut indexed = self.world.tx_indexed_height(channel)?;
        if indexed < state_height {
            tracing::info!(
                channel,
                from = indexed,
                to = state_height,
                "indexing the logged transactions"
            );
        }
        while indexed < state_height {
            let blocks = log.read_range(indexed, READ_CHUNK.min(state_height - indexed))?;
            if blocks.is_empty() {
                break;
            }
            let mut entries = Vec::with_capacity(blocks.len());
            for block in &blocks {
                let (number, txs) = decode_logged(channel, block)?;
                entries.push((
                    number,
                    txs.iter().map(|tx| tx.header.tx_id().to_string()).collect(),
                    txs.iter().map(|tx| tx.code).collect(),
                ));
            }
            self.world.index_logged_blocks(channel, &entries)?;
            indexed += blocks.len() as u64;
        }
        Ok(())
    }

    /// Re-applies the blocks the world state does not have yet, with their recorded codes
    /// (which indexes their transactions too).
    fn catch_up(&self, channel: &str, log: &ChannelLog) -> Result<(), CommitError> {
        let state_height = self.world.height(channel)?;
        if state_height > log.height() {
            return Err(CommitError::StateAheadOfLog {
                channel: channel.to_string(),
                state_height,
                log_height: log.height(),
            });
        }
        let mut next = state_height;
        let mut replayed = false;
        while next < log.height() {
            let blocks = log.read_range(next, READ_CHUNK)?;
            next += blocks.len() as u64;
            if blocks.is_empty() {
                break;
            }
            for block in blocks {
                self.catch_up_block(channel, &block, state_height, &mut replayed)?;
            }
        }
        if replayed {
            self.committed.notify_waiters();
        }
        Ok(())
    }

    /// Re-applies one logged block the world state does not have yet.
    fn catch_up_block(
        &self,
        channel: &str,
        block: &Block,
        state_height: u64,
        replayed: &mut bool,
    ) -> Result<(), CommitError> {
        let (number, txs) = decode_logged(channel, block)?;
        if number >= state_height {
            let empty = TxReadWriteSet::default();
            let commit_txs: Vec<CommitTx<'_>> = txs
                .iter()
                .map(|tx| CommitTx {
                    tx_id: tx.header.tx_id(),
                    timestamp: tx.header.timestamp(),
                    rwset: tx.action.as_ref().map_or(&empty, |action| &action.rwset),
                })
                .collect();
            let recorded: Vec<TxValidationCode> = txs.iter().map(|tx| tx.code).collect();
            let applied = self
                .world
                .commit_block_prechecked(channel, &commit_txs, &recorded)?;
            if applied.block_num != number || applied.validation != recorded {
                return Err(CommitError::Inconsistent {
                    channel: channel.to_string(),
                    number,
                    reason: format!(
                        "re-applying the logged block gave block {} with codes {:?}, the log records {:?}",
                        applied.block_num, applied.validation, recorded
                    ),
                });
            }
            if number > 0 {
                tracing::info!(channel, block = number, "re-applied a logged block");
            }
            *replayed = true;
        }
        let committed = committed_block(channel, number, &txs);
        if number >= state_height {
            // Ignored when nobody listens.
            let _ = self.blocks.send(Arc::new(committed));
        }
        Ok(())
    }

    /// The checks before ordering (a refusal leaves no trace) and the structural ones.
    fn check(&self, envelope: Envelope, now: SystemTime) -> Result<(Pending, Answer), SubmitError> {
        let header = accept_envelope(&envelope, &self.trust, |c| self.is_served(c), now)?;
        let action = unpack_action(&header);
        let collections = self.world.collection_lookup();
        let endorsed = action.as_ref().is_ok_and(|action| {
            self.config.policy.is_satisfied_with_collections(
                action,
                &self.trust,
                now,
                header.channel_id(),
                collections.as_deref(),
            )
        });
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            header,
            envelope: envelope.encode_to_vec(),
            action,
            endorsed,
            reply,
        };
        Ok((pending, answer))
    }

    /// Queues `txs` together on `channel` (all or, over [`MAX_PENDING`], none). True when the
    /// caller became the channel's leader and must [`Inner::lead`]; else the leader takes these
    /// before it stops.
    fn enqueue(&self, channel: &Channel, txs: Vec<Pending>) -> Result<bool, SubmitError> {
        let lead = {
            let mut queue = lock(&channel.pending);
            if queue.txs.len() + txs.len() > MAX_PENDING {
                return Err(SubmitError::Busy {
                    channel: channel.name.clone(),
                    limit: MAX_PENDING,
                });
            }
            queue.txs.extend(txs);
            !std::mem::replace(&mut queue.leader, true)
        };
        channel.arrived.notify_one();
        Ok(lead)
    }

    /// [`Committer::submit_all`] on a blocking thread (a batch's checks would hold an async
    /// thread for milliseconds): checks each envelope, then queues them, leading where it must.
    fn enqueue_all_and_commit(
        &self,
        envelopes: Vec<Envelope>,
        now: SystemTime,
    ) -> Vec<Result<Answer, SubmitError>> {
        let mut answers = Vec::with_capacity(envelopes.len());
        // Accepted runs of envelopes on the same channel, with their answers' places.
        let mut runs: Vec<(Arc<Channel>, Vec<Pending>, Vec<usize>)> = Vec::new();
        for envelope in envelopes {
            let accepted = self.check(envelope, now).and_then(|(pending, answer)| {
                let channel = self.open_channel(pending.header.channel_id())?;
                Ok((channel, pending, answer))
            });
            match accepted {
                Ok((channel, pending, answer)) => {
                    let index = answers.len();
                    answers.push(Ok(answer));
                    match runs.last_mut() {
                        Some((last, txs, places)) if last.name == channel.name => {
                            txs.push(pending);
                            places.push(index);
                        }
                        _ => runs.push((channel, vec![pending], vec![index])),
                    }
                }
                Err(refused) => answers.push(Err(refused)),
            }
        }
        for (channel, txs, places) in runs {
            match self.enqueue(&channel, txs) {
                // submit_all waits for this thread before its answers, so these can go now.
                Ok(true) => send_answers(self.lead(&channel)),
                Ok(false) => {}
                Err(busy) => {
                    for index in places {
                        answers[index] = Err(busy.clone());
                    }
                }
            }
        }
        answers
    }

    /// Commits the channel's queue, one block per batch, until it is empty; then hands the
    /// leadership back (under the queue's lock, so no submit is left without a leader).
    ///
    /// Returns the answers of the last block unsent when the leadership ended right after it:
    /// the caller sends them once it no longer holds the committer, so a submit answered on an
    /// idle channel finds the committer closable (a restart can reopen the ledger at once).
    fn lead(&self, channel: &Channel) -> Vec<Answered> {
        let _leadership = Leadership(channel);
        let mut log = lock(&channel.log);
        let mut last = None;
        while let Some((batch, windowed)) = self.cut(channel, last) {
            let size = batch.len();
            let mut append = Duration::ZERO;
            let answers: Vec<Answered> =
                match self.commit_batch(channel, &mut log, &batch, &mut append) {
                    Ok(statuses) => {
                        self.record(&channel.name, &statuses, windowed);
                        batch
                            .into_iter()
                            .zip(statuses)
                            .map(|(pending, status)| (pending.reply, Ok(status)))
                            .collect()
                    }
                    Err(error) => {
                        tracing::error!(channel = %channel.name, %error, "commit failed");
                        let error = Arc::new(error);
                        batch
                            .into_iter()
                            .map(|p| (p.reply, Err(SubmitError::Commit(error.clone()))))
                            .collect()
                    }
                };
            last = Some((size, append));
            if self.end_if_idle(channel, last) {
                return answers;
            }
            send_answers(answers);
        }
        Vec::new()
    }

    /// Hands the leadership back when nothing is queued and the next cut would not wait for more.
    fn end_if_idle(&self, channel: &Channel, last: Option<(usize, Duration)>) -> bool {
        let mut queue = lock(&channel.pending);
        let idle = queue.txs.is_empty() && self.window(last).is_none();
        if idle {
            queue.leader = false;
        }
        idle
    }

    /// How many transactions the next cut waits for, and for how long at most, after a block of
    /// `last` (size, append + fsync time); None when it does not wait.
    fn window(&self, last: Option<(usize, Duration)>) -> Option<(usize, Duration)> {
        let (size, fsync) = last?;
        let target = size.min(MAX_BLOCK_TXS);
        let window = (fsync / WINDOW_DIVISOR).min(self.config.group_window);
        (target > 1 && window >= MIN_WINDOW).then_some((target, window))
    }

    /// Takes the next block's transactions, or gives up the leadership when none are queued.
    ///
    /// `last` is the size and append + fsync time of the block this leader committed just before.
    /// When it held more than one transaction the channel is busy: its clients were just answered
    /// and many submit again at once, so the cut waits until as many are queued as the last block
    /// held, for at most half its fsync time (capped by the configured window). The first block of
    /// a leader (an idle channel, or N = 1) never waits.
    fn cut(
        &self,
        channel: &Channel,
        last: Option<(usize, Duration)>,
    ) -> Option<(Vec<Pending>, bool)> {
        let mut queue = lock(&channel.pending);
        let mut windowed = false;
        if let Some((target, window)) = self.window(last)
            && queue.txs.len() < target
        {
            // Counted even when nothing comes: every wait is latency added.
            windowed = true;
            self.metrics.windows.inc();
            let deadline = Instant::now() + window;
            while queue.txs.len() < target {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                queue = channel
                    .arrived
                    .wait_timeout(queue, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
        }
        if queue.txs.is_empty() {
            queue.leader = false;
            return None;
        }
        let take = queue.txs.len().min(MAX_BLOCK_TXS);
        Some((queue.txs.drain(..take).collect(), windowed))
    }

    /// Counts a committed block and logs its size.
    fn record(&self, channel: &str, statuses: &[TxStatus], windowed: bool) {
        let metrics = &self.metrics;
        metrics.blocks.inc();
        metrics.transactions.inc_by(statuses.len() as u64);
        metrics.block_transactions.observe(statuses.len() as f64);
        tracing::debug!(
            channel,
            block = statuses.first().map(|s| s.block_number),
            transactions = statuses.len(),
            windowed,
            "committed a block"
        );
    }

    /// Decides the codes of `batch`, appends it as the next block and applies it.
    fn commit_batch(
        &self,
        channel: &Channel,
        log: &mut ChannelLog,
        batch: &[Pending],
        append: &mut Duration,
    ) -> Result<Vec<TxStatus>, CommitError> {
        let name = channel.name.as_str();
        // An earlier append failed (disk full or read-only): try again now rather than refuse
        // every submit until a restart.
        if log.is_poisoned() {
            log.recover()?;
            tracing::info!(channel = name, "block log recovered after a failed append");
        }
        // A block logged but not applied (a failed apply earlier) goes first.
        self.catch_up(name, log)?;
        let number = log.height();
        let empty = TxReadWriteSet::default();
        let mut seen = HashSet::new();
        let mut prechecked = Vec::with_capacity(batch.len());
        let mut txs = Vec::with_capacity(batch.len());
        for pending in batch {
            let tx_id = pending.header.tx_id();
            let duplicate = !seen.insert(tx_id) || self.status(name, tx_id).is_some();
            // Fabric's order: structure, duplicate id, endorsement policy, then MVCC.
            let code = match &pending.action {
                Err(code) => *code,
                Ok(_) if duplicate => TxValidationCode::DuplicateTxid,
                Ok(_) if !pending.endorsed => TxValidationCode::EndorsementPolicyFailure,
                Ok(_) => TxValidationCode::Valid,
            };
            prechecked.push(code);
            txs.push(CommitTx {
                tx_id,
                timestamp: pending.header.timestamp(),
                rwset: match &pending.action {
                    Ok(action) if code == TxValidationCode::Valid => &action.rwset,
                    _ => &empty,
                },
            });
        }
        let prepared = self.world.prepare_block(name, &txs, &prechecked)?;
        let decided = prepared.block().clone();
        if decided.block_num != number {
            return Err(CommitError::Inconsistent {
                channel: name.to_string(),
                number,
                reason: format!("the world state expects block {}", decided.block_num),
            });
        }
        let block = new_block(
            number,
            log.last_hash().to_vec(),
            batch.iter().map(|p| p.envelope.clone()).collect(),
            &decided.validation,
        );
        // Durable before anyone sees the writes: a failed append drops (aborts) `prepared`.
        let appending = Instant::now();
        log.append(&block)?;
        *append = appending.elapsed();
        prepared
            .commit()
            .map_err(|source| CommitError::NotApplied {
                channel: name.to_string(),
                number,
                source,
            })?;
        let committed = CommittedBlock {
            channel: name.to_string(),
            number,
            txs: batch
                .iter()
                .zip(&decided.validation)
                .map(|(pending, code)| CommittedTx {
                    tx_id: pending.header.tx_id().to_string(),
                    code: *code,
                    chaincode_events: match &pending.action {
                        Ok(action) if *code == TxValidationCode::Valid => {
                            action.event.iter().cloned().collect()
                        }
                        _ => Vec::new(),
                    },
                })
                .collect(),
        };
        let _ = self.blocks.send(Arc::new(committed));
        self.committed.notify_waiters();
        Ok(decided
            .validation
            .iter()
            .map(|code| TxStatus {
                block_number: number,
                code: *code,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_follow_fabric_and_are_safe_file_names() {
        for good in ["mychannel", "a", "ch-1.test"] {
            assert!(is_valid_channel_name(good), "{good}");
        }
        for bad in [
            "",
            "MyChannel",
            "1ch",
            "../etc",
            "a/b",
            "ch\0",
            &"a".repeat(250),
        ] {
            assert!(!is_valid_channel_name(bad), "{bad:?}");
        }
    }
}
