//! Persistent world state and key history in redb, keyed by (channel, namespace, key), with the
//! MVCC version (block, tx) of the transaction that last wrote each key.
//!
//! Private data lives in the same database, so a block's private writes commit atomically with its
//! public state: `private` (the clear values, keyed by channel, namespace, collection and key)
//! and `hashed` (SHA-256 of each key → version and value hash, what every peer of a channel
//! holds; MVCC of private reads and GET_PRIVATE_DATA_HASH use it). A private value counts only
//! while its version equals the hashed one: a write whose clear value never reached this node
//! leaves the old value behind, stale.
//!
//! Keys are length-prefixed (`u16 channel len, channel, u16 namespace len, namespace, key`) because
//! Fabric keys may contain any byte, including the `\0` that starts composite keys.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::private::{CollectionLookup, DEFAULT_TRANSIENT_CAPACITY};
use super::rwset::sha256;
use crate::proto::kvrwset::range_query_info::ReadsInfo;
use crate::proto::kvrwset::{HashedRwSet, KvMetadataEntry, KvrwSet, RangeQueryInfo, Version};
use crate::proto::protos::TxValidationCode;
use crate::proto::queryresult::KeyModification;
use crate::proto::rwset::{
    CollectionPvtReadWriteSet, NsPvtReadWriteSet, TxPvtReadWriteSet, TxReadWriteSet,
};

const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
const PRIVATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("private");
const HASHED: TableDefinition<&[u8], &[u8]> = TableDefinition::new("hashed");
/// BlockToLive bookkeeping: (channel, block at which it expires, namespace, collection, key hash)
/// → version written, clear key.
const EXPIRY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("private_expiry");
/// The private write sets committed with each transaction: (channel, block, tx) →
/// TxPvtReadWriteSet, for Deliver with private data.
const BY_TX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("private_by_tx");
/// The transient store: tx id → insertion number, endorsed TxPvtReadWriteSet.
const TRANSIENT: TableDefinition<&str, &[u8]> = TableDefinition::new("transient");
/// Insertion number → tx id, to drop the oldest entries beyond the bound.
const TRANSIENT_ORDER: TableDefinition<u64, &str> = TableDefinition::new("transient_order");
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
const HEIGHTS: TableDefinition<&str, u64> = TableDefinition::new("heights");
/// Every committed transaction: (channel, 0, tx id) → (block number, validation code). The first
/// transaction with an id keeps it (later ones are duplicates). On disk, not in memory: the
/// index grows with the ledger.
const TX_INDEX: TableDefinition<&[u8], (u64, i32)> = TableDefinition::new("tx_index");
/// Per channel, the blocks whose transactions are in TX_INDEX (below the height for ledgers
/// written before the index existed, until the committer fills it from the block log).
const TX_INDEXED: TableDefinition<&str, u64> = TableDefinition::new("tx_indexed");

/// Errors of the world-state store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("world-state database: {0}")]
    Database(#[from] redb::Error),
    #[error("corrupt world-state record: {0}")]
    Corrupt(&'static str),
    #[error("invalid read/write set: {0}")]
    InvalidRwSet(String),
    #[error("channel, namespace or key too long for the store: {0} bytes")]
    NameTooLong(usize),
    #[error(
        "private data for key {0:?} is not available on this node (only its hash was committed)"
    )]
    MissingPrivateData(String),
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Database(e.into()) }
    })*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// A committed value with its version and state metadata (e.g. key-level endorsement policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    pub value: Vec<u8>,
    pub version: Version,
    pub metadata: BTreeMap<String, Vec<u8>>,
}

/// A committed block: its number on the channel and each transaction's validation result, in
/// order. Only VALID transactions changed the world state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedBlock {
    pub block_num: u64,
    pub validation: Vec<TxValidationCode>,
}

/// One transaction to apply in a block: its id, its time and its read/write set.
#[derive(Debug, Clone)]
pub struct CommitTx<'a> {
    pub tx_id: &'a str,
    pub timestamp: prost_types::Timestamp,
    pub rwset: &'a TxReadWriteSet,
}

/// A private key's committed hash: the version and SHA-256 of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashedValue {
    pub version: Version,
    pub value_hash: Vec<u8>,
}

/// The world-state database: cheap to clone, shared by all simulators and the committer. It also
/// holds the transient store through which endorsed private writes reach the commit.
#[derive(Clone)]
pub struct WorldState {
    db: Arc<Database>,
    transient_capacity: usize,
    /// Explicit collections' BlockToLive come from here (none set: private data never expires).
    collections: Arc<std::sync::RwLock<Option<Arc<dyn CollectionLookup>>>>,
}

fn collection_prefix(
    channel: &str,
    namespace: &str,
    collection: &str,
) -> Result<Vec<u8>, StoreError> {
    let mut out = prefix(channel, namespace)?;
    let len =
        u16::try_from(collection.len()).map_err(|_| StoreError::NameTooLong(collection.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(collection.as_bytes());
    Ok(out)
}

fn collection_key(
    channel: &str,
    namespace: &str,
    collection: &str,
    key: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut out = collection_prefix(channel, namespace, collection)?;
    out.extend_from_slice(key);
    Ok(out)
}

fn encode_hashed(h: &HashedValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + h.value_hash.len());
    out.extend_from_slice(&h.version.block_num.to_be_bytes());
    out.extend_from_slice(&h.version.tx_num.to_be_bytes());
    out.extend_from_slice(&h.value_hash);
    out
}

fn decode_hashed(bytes: &[u8]) -> Result<HashedValue, StoreError> {
    Ok(HashedValue {
        version: Version {
            block_num: u64::from_be_bytes(take::<8>(bytes, 0)?),
            tx_num: u64::from_be_bytes(take::<8>(bytes, 8)?),
        },
        value_hash: bytes[16..].to_vec(),
    })
}

fn prefix(channel: &str, namespace: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(4 + channel.len() + namespace.len());
    for part in [channel, namespace] {
        let len = u16::try_from(part.len()).map_err(|_| StoreError::NameTooLong(part.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    Ok(out)
}

fn state_key(channel: &str, namespace: &str, key: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = prefix(channel, namespace)?;
    out.extend_from_slice(key.as_bytes());
    Ok(out)
}

/// History keys carry the key's length so that the entries of "a" never mix with those of "ab".
fn history_prefix(channel: &str, namespace: &str, key: &str) -> Result<Vec<u8>, StoreError> {
    let mut out = prefix(channel, namespace)?;
    let len = u32::try_from(key.len()).map_err(|_| StoreError::NameTooLong(key.len()))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(key.as_bytes());
    Ok(out)
}

fn encode_value(v: &VersionedValue) -> Vec<u8> {
    let meta = crate::proto::protos::StateMetadataResult {
        entries: v
            .metadata
            .iter()
            .map(|(k, val)| crate::proto::protos::StateMetadata {
                metakey: k.clone(),
                value: val.clone(),
            })
            .collect(),
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(20 + meta.len() + v.value.len());
    out.extend_from_slice(&v.version.block_num.to_be_bytes());
    out.extend_from_slice(&v.version.tx_num.to_be_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(&v.value);
    out
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], StoreError> {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(StoreError::Corrupt("truncated value"))
}

fn decode_value(bytes: &[u8]) -> Result<VersionedValue, StoreError> {
    let block_num = u64::from_be_bytes(take::<8>(bytes, 0)?);
    let tx_num = u64::from_be_bytes(take::<8>(bytes, 8)?);
    let meta_len = u32::from_be_bytes(take::<4>(bytes, 16)?) as usize;
    let meta = bytes
        .get(20..20 + meta_len)
        .ok_or(StoreError::Corrupt("truncated metadata"))?;
    let meta = crate::proto::protos::StateMetadataResult::decode(meta)
        .map_err(|_| StoreError::Corrupt("metadata"))?;
    Ok(VersionedValue {
        value: bytes[20 + meta_len..].to_vec(),
        version: Version { block_num, tx_num },
        metadata: meta
            .entries
            .into_iter()
            .map(|e| (e.metakey, e.value))
            .collect(),
    })
}

/// redb's page cache. Its default (1 GiB) lets the process grow with the ledger until the whole
/// file is cached (RSS rose with every committed transaction under load); reads beyond this are
/// served by the kernel's page cache, which the kernel can reclaim. 8 MiB is goleveldb's default
/// block cache, which the stock peer's state database runs with. At 32 MiB the cache was half
/// the heap after 15 min of submits and filled slowly, so RSS kept rising for half an hour
/// (versus_fabric's soak).
pub const DEFAULT_PAGE_CACHE_BYTES: usize = 8 * 1024 * 1024;

impl WorldState {
    /// Opens (or creates) the database file at `path`, with the default page cache.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_cache(path, DEFAULT_PAGE_CACHE_BYTES)
    }

    /// Opens (or creates) the database file at `path`, caching up to `cache_bytes` of its pages.
    pub fn open_with_cache(path: &Path, cache_bytes: usize) -> Result<Self, StoreError> {
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(path)?;
        let tx = db.begin_write()?;
        tx.open_table(STATE)?;
        tx.open_table(HISTORY)?;
        tx.open_table(HEIGHTS)?;
        tx.open_table(TX_INDEX)?;
        tx.open_table(TX_INDEXED)?;
        tx.open_table(PRIVATE)?;
        tx.open_table(HASHED)?;
        tx.open_table(EXPIRY)?;
        tx.open_table(BY_TX)?;
        tx.open_table(TRANSIENT)?;
        tx.open_table(TRANSIENT_ORDER)?;
        tx.commit()?;
        Ok(Self {
            db: Arc::new(db),
            transient_capacity: DEFAULT_TRANSIENT_CAPACITY,
            collections: Arc::default(),
        })
    }

    /// Where commits find explicit collections' BlockToLive (the chaincode definitions).
    pub fn set_collection_lookup(&self, lookup: Arc<dyn CollectionLookup>) {
        if let Ok(mut slot) = self.collections.write() {
            *slot = Some(lookup);
        }
    }

    /// The explicit collections commits use, if set.
    pub fn collection_lookup(&self) -> Option<Arc<dyn CollectionLookup>> {
        self.collections.read().ok().and_then(|l| l.clone())
    }

    /// The private write sets committed in block `block_num` of `channel`, by transaction index.
    pub fn block_private_data(
        &self,
        channel: &str,
        block_num: u64,
    ) -> Result<BTreeMap<u64, TxPvtReadWriteSet>, StoreError> {
        let mut lower = expiry_prefix(channel)?;
        lower.extend_from_slice(&block_num.to_be_bytes());
        let read = self.db.begin_read()?;
        let table = read.open_table(BY_TX)?;
        let mut out = BTreeMap::new();
        for entry in table.range(lower.as_slice()..)? {
            let (k, v) = entry?;
            let Some(tx) = k.value().strip_prefix(lower.as_slice()) else {
                break;
            };
            let tx = u64::from_be_bytes(take::<8>(tx, 0)?);
            let set = TxPvtReadWriteSet::decode(v.value())
                .map_err(|_| StoreError::Corrupt("private write set"))?;
            out.insert(tx, set);
        }
        Ok(out)
    }

    /// Like `open`, keeping at most `capacity` (at least 1) endorsed private write sets waiting
    /// for their block.
    pub fn open_with_transient_capacity(path: &Path, capacity: usize) -> Result<Self, StoreError> {
        let mut world = Self::open(path)?;
        world.transient_capacity = capacity.max(1);
        Ok(world)
    }

    /// Keeps the private writes of an endorsed transaction until its block commits (Fabric's
    /// transient store; a later endorsement of the same tx id replaces them). In the ledger
    /// database, so a restart between endorsement and commit loses nothing; bounded by count,
    /// the oldest going first.
    pub fn put_transient(&self, tx_id: &str, set: &TxPvtReadWriteSet) -> Result<(), StoreError> {
        let write = self.db.begin_write()?;
        {
            let mut sets = write.open_table(TRANSIENT)?;
            let mut order = write.open_table(TRANSIENT_ORDER)?;
            let next = order.last()?.map_or(0, |(k, _)| k.value() + 1);
            let previous = match sets.get(tx_id)? {
                Some(old) => Some(u64::from_be_bytes(take::<8>(old.value(), 0)?)),
                None => None,
            };
            if let Some(previous) = previous {
                order.remove(previous)?;
            }
            let mut value = next.to_be_bytes().to_vec();
            value.extend_from_slice(&set.encode_to_vec());
            sets.insert(tx_id, value.as_slice())?;
            order.insert(next, tx_id)?;
            while order.len()? > self.transient_capacity as u64 {
                let oldest = match order.pop_first()? {
                    Some((_, id)) => id.value().to_string(),
                    None => break,
                };
                sets.remove(oldest.as_str())?;
            }
        }
        write.commit()?;
        Ok(())
    }

    /// Private write sets waiting in the transient store.
    pub fn transient_len(&self) -> Result<u64, StoreError> {
        let read = self.db.begin_read()?;
        Ok(read.open_table(TRANSIENT)?.len()?)
    }

    /// The committed hash of a private key, if any.
    pub fn get_private_hash(
        &self,
        channel: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<HashedValue>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(HASHED)?;
        let hkey = collection_key(channel, namespace, collection, &sha256(key.as_bytes()))?;
        match table.get(hkey.as_slice())? {
            Some(v) => Ok(Some(decode_hashed(v.value())?)),
            None => Ok(None),
        }
    }

    /// The committed private value of a key: `Ok(None)` when the key does not exist,
    /// `Err(MissingPrivateData)` when its hash is committed but its value is not on this node.
    pub fn get_private(
        &self,
        channel: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<(Vec<u8>, Version)>, StoreError> {
        let read = self.db.begin_read()?;
        let hashed = read.open_table(HASHED)?;
        let hkey = collection_key(channel, namespace, collection, &sha256(key.as_bytes()))?;
        let Some(hash) = hashed.get(hkey.as_slice())? else {
            return Ok(None);
        };
        let hash = decode_hashed(hash.value())?;
        let private = read.open_table(PRIVATE)?;
        let pkey = collection_key(channel, namespace, collection, key.as_bytes())?;
        match private.get(pkey.as_slice())? {
            Some(v) => {
                let value = decode_value(v.value())?;
                if value.version == hash.version {
                    return Ok(Some((value.value, value.version)));
                }
                Err(StoreError::MissingPrivateData(key.to_string()))
            }
            None => Err(StoreError::MissingPrivateData(key.to_string())),
        }
    }

    /// Up to `limit` committed private keys of a collection in `[start, end)` (empty `end` = to
    /// the end), in key order, with their versions; stale values are skipped.
    pub fn private_range(
        &self,
        channel: &str,
        namespace: &str,
        collection: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, StoreError> {
        let coll_prefix = collection_prefix(channel, namespace, collection)?;
        let lower = collection_key(channel, namespace, collection, start.as_bytes())?;
        let read = self.db.begin_read()?;
        let private = read.open_table(PRIVATE)?;
        let hashed = read.open_table(HASHED)?;
        let mut out = Vec::new();
        for entry in private.range(lower.as_slice()..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let Some(key) = k.value().strip_prefix(coll_prefix.as_slice()) else {
                break;
            };
            if !end.is_empty() && key >= end.as_bytes() {
                break;
            }
            let value = decode_value(v.value())?;
            let hkey = collection_key(channel, namespace, collection, &sha256(key))?;
            let current = match hashed.get(hkey.as_slice())? {
                Some(h) => decode_hashed(h.value())?.version == value.version,
                None => false,
            };
            if current {
                let key =
                    String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt("key"))?;
                out.push((key, value));
            }
        }
        Ok(out)
    }

    /// The committed value of a key, if any.
    pub fn get(
        &self,
        channel: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Option<VersionedValue>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(STATE)?;
        match table.get(state_key(channel, namespace, key)?.as_slice())? {
            Some(v) => Ok(Some(decode_value(v.value())?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` committed keys in `[start, end)` (empty `end` = to the end of the namespace),
    /// in key order.
    pub fn range(
        &self,
        channel: &str,
        namespace: &str,
        start: &str,
        end: &str,
        limit: usize,
    ) -> Result<Vec<(String, VersionedValue)>, StoreError> {
        let ns_prefix = prefix(channel, namespace)?;
        let lower = state_key(channel, namespace, start)?;
        let read = self.db.begin_read()?;
        let table = read.open_table(STATE)?;
        let mut out = Vec::new();
        for entry in table.range(lower.as_slice()..)? {
            if out.len() >= limit {
                break;
            }
            let (k, v) = entry?;
            let full = k.value();
            let Some(key) = full.strip_prefix(ns_prefix.as_slice()) else {
                break;
            };
            if !end.is_empty() && key >= end.as_bytes() {
                break;
            }
            let key = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt("key"))?;
            out.push((key, decode_value(v.value())?));
        }
        Ok(out)
    }

    /// Every committed write of a key, newest first (Fabric 2.x order).
    pub fn history(
        &self,
        channel: &str,
        namespace: &str,
        key: &str,
    ) -> Result<Vec<KeyModification>, StoreError> {
        let lower = history_prefix(channel, namespace, key)?;
        let read = self.db.begin_read()?;
        let table = read.open_table(HISTORY)?;
        let mut out = Vec::new();
        for entry in table.range(lower.as_slice()..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(&lower) {
                break;
            }
            out.push(
                KeyModification::decode(v.value())
                    .map_err(|_| StoreError::Corrupt("history entry"))?,
            );
        }
        out.reverse();
        Ok(out)
    }

    /// Channels with at least one committed block.
    pub fn channels(&self) -> Result<Vec<String>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(HEIGHTS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (channel, _) = entry?;
            out.push(channel.value().to_string());
        }
        Ok(out)
    }

    /// Where transaction `tx_id` was committed on `channel`: its block and validation code (the
    /// first transaction with that id).
    pub fn tx_status(
        &self,
        channel: &str,
        tx_id: &str,
    ) -> Result<Option<(u64, TxValidationCode)>, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(TX_INDEX)?;
        Ok(table
            .get(tx_index_key(channel, tx_id).as_slice())?
            .map(|v| {
                let (block, code) = v.value();
                (
                    block,
                    TxValidationCode::try_from(code)
                        .unwrap_or(TxValidationCode::InvalidOtherReason),
                )
            }))
    }

    /// The number of `channel`'s first blocks whose transactions are in the tx index.
    pub fn tx_indexed_height(&self, channel: &str) -> Result<u64, StoreError> {
        self.channel_count(TX_INDEXED, channel)
    }

    /// Adds logged blocks to the tx index of a ledger written before it existed: `blocks` are
    /// (number, tx ids, codes) in order, starting at [`Self::tx_indexed_height`].
    pub fn index_logged_blocks(
        &self,
        channel: &str,
        blocks: &[(u64, Vec<String>, Vec<TxValidationCode>)],
    ) -> Result<(), StoreError> {
        let write = self.db.begin_write()?;
        for (number, ids, codes) in blocks {
            let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
            index_txs(&write, channel, *number, &ids, codes)?;
        }
        write.commit()?;
        Ok(())
    }

    /// Number of blocks committed on `channel` so far (the next block number).
    pub fn height(&self, channel: &str) -> Result<u64, StoreError> {
        self.channel_count(HEIGHTS, channel)
    }

    /// A per-channel block count (0 for a channel not seen yet).
    fn channel_count(
        &self,
        table: TableDefinition<&str, u64>,
        channel: &str,
    ) -> Result<u64, StoreError> {
        let read = self.db.begin_read()?;
        let table = read.open_table(table)?;
        Ok(table.get(channel)?.map(|v| v.value()).unwrap_or(0))
    }

    /// Validates and applies `txs` as one new block on `channel`, atomically. A transaction whose
    /// reads or range queries no longer match the state (MVCC_READ_CONFLICT / PHANTOM_READ_CONFLICT)
    /// or whose rwset does not decode (BAD_RWSET) changes nothing. Valid writes get version
    /// (block, tx index), deletes remove the key, every write is appended to the key's history.
    pub fn commit_block(
        &self,
        channel: &str,
        txs: &[CommitTx<'_>],
    ) -> Result<CommittedBlock, StoreError> {
        let prechecked = vec![TxValidationCode::Valid; txs.len()];
        self.commit_block_prechecked(channel, txs, &prechecked)
    }

    /// [`Self::commit_block`] for transactions some of which were already found invalid by an
    /// earlier check (`prechecked[i]` other than VALID, e.g. ENDORSEMENT_POLICY_FAILURE): those
    /// keep their code, take their place (tx number) in the block and change nothing.
    pub fn commit_block_prechecked(
        &self,
        channel: &str,
        txs: &[CommitTx<'_>],
        prechecked: &[TxValidationCode],
    ) -> Result<CommittedBlock, StoreError> {
        let write = self.db.begin_write()?;
        let block = run_block(&write, channel, txs, prechecked, self)?;
        write.commit()?;
        Ok(block)
    }

    /// [`Self::commit_block_prechecked`] in two steps: validates and applies `txs` as the next
    /// block on `channel` in a write transaction that stays open (other writers wait) until
    /// [`PreparedBlock::commit`]; dropping it changes nothing. The committer logs the block in
    /// between, so the block is run once instead of twice (a dry run, then the commit).
    pub fn prepare_block(
        &self,
        channel: &str,
        txs: &[CommitTx<'_>],
        prechecked: &[TxValidationCode],
    ) -> Result<PreparedBlock, StoreError> {
        let write = self.db.begin_write()?;
        let block = run_block(&write, channel, txs, prechecked, self)?;
        Ok(PreparedBlock { write, block })
    }

    /// The codes [`Self::commit_block_prechecked`] would give `txs` as the next block on
    /// `channel`, without changing anything: the same validation (later transactions see the
    /// writes of earlier valid ones) in a write transaction that is then aborted.
    pub fn validate_block(
        &self,
        channel: &str,
        txs: &[CommitTx<'_>],
        prechecked: &[TxValidationCode],
    ) -> Result<CommittedBlock, StoreError> {
        let write = self.db.begin_write()?;
        let block = run_block(&write, channel, txs, prechecked, self)?;
        write.abort()?;
        Ok(block)
    }
}

/// A block validated and applied in a write transaction not committed yet.
pub struct PreparedBlock {
    write: redb::WriteTransaction,
    block: CommittedBlock,
}

impl PreparedBlock {
    /// The block number and the codes the commit gives.
    pub fn block(&self) -> &CommittedBlock {
        &self.block
    }

    /// Commits the block's writes; readers see them from now on.
    pub fn commit(self) -> Result<CommittedBlock, StoreError> {
        self.write.commit()?;
        Ok(self.block)
    }
}

/// Validates `txs` and applies the valid ones inside `write`, and advances the channel's height.
fn run_block(
    write: &redb::WriteTransaction,
    channel: &str,
    txs: &[CommitTx<'_>],
    prechecked: &[TxValidationCode],
    world: &WorldState,
) -> Result<CommittedBlock, StoreError> {
    if prechecked.len() != txs.len() {
        return Err(StoreError::InvalidRwSet(format!(
            "{} pre-checked codes for {} transactions",
            prechecked.len(),
            txs.len()
        )));
    }
    let mut heights = write.open_table(HEIGHTS)?;
    let block_num = heights.get(channel)?.map(|v| v.value()).unwrap_or(0);
    let mut state = write.open_table(STATE)?;
    let mut history = write.open_table(HISTORY)?;
    let mut private = PrivateTables {
        private: write.open_table(PRIVATE)?,
        hashed: write.open_table(HASHED)?,
        expiry: write.open_table(EXPIRY)?,
        by_tx: write.open_table(BY_TX)?,
    };
    // Private data whose BlockToLive has passed goes before this block sees the state.
    purge_expired(&mut private, channel, block_num)?;
    let lookup = world.collection_lookup();
    let mut transient = write.open_table(TRANSIENT)?;
    let mut transient_order = write.open_table(TRANSIENT_ORDER)?;
    let mut validation = Vec::with_capacity(txs.len());
    for (tx_num, (tx, precheck)) in txs.iter().zip(prechecked).enumerate() {
        if *precheck != TxValidationCode::Valid {
            validation.push(*precheck);
            continue;
        }
        let version = Version {
            block_num,
            tx_num: tx_num as u64,
        };
        let mut sets = Vec::with_capacity(tx.rwset.ns_rwset.len());
        for ns in &tx.rwset.ns_rwset {
            match KvrwSet::decode(ns.rwset.as_slice()) {
                Ok(kv) => sets.push((ns.namespace.as_str(), kv)),
                Err(_) => break,
            }
        }
        let hashed_sets = decode_hashed_sets(tx.rwset);
        let code = match &hashed_sets {
            Some(_) if sets.len() == tx.rwset.ns_rwset.len() => {
                // Earlier transactions of this block are already applied in `state`.
                match validate_reads(&state, channel, &sets)? {
                    TxValidationCode::Valid => validate_hashed_reads(
                        &private.hashed,
                        channel,
                        hashed_sets.as_deref().unwrap_or_default(),
                    )?,
                    other => other,
                }
            }
            _ => TxValidationCode::BadRwset,
        };
        if code == TxValidationCode::Valid {
            let hashed_sets = hashed_sets.unwrap_or_default();
            if !hashed_sets.is_empty() {
                let clear = match transient.get(tx.tx_id)? {
                    Some(v) => Some(
                        TxPvtReadWriteSet::decode(v.value().get(8..).unwrap_or_default())
                            .map_err(|_| StoreError::Corrupt("transient private write set"))?,
                    ),
                    None => None,
                };
                apply_private(
                    &mut private,
                    channel,
                    &hashed_sets,
                    clear.as_ref(),
                    &version,
                    lookup.as_deref(),
                )?;
            }
            for (namespace, kv) in &sets {
                apply_ns(
                    &mut state,
                    &mut history,
                    channel,
                    namespace,
                    kv,
                    &version,
                    tx,
                )?;
            }
        }
        validation.push(code);
    }
    // Committed (valid or not): their private writes leave the transient store with the block.
    for tx in txs {
        let seq = match transient.remove(tx.tx_id)? {
            Some(v) => Some(u64::from_be_bytes(take::<8>(v.value(), 0)?)),
            None => None,
        };
        if let Some(seq) = seq {
            transient_order.remove(seq)?;
        }
    }
    heights.insert(channel, block_num + 1)?;
    let ids: Vec<&str> = txs.iter().map(|tx| tx.tx_id).collect();
    index_txs(write, channel, block_num, &ids, &validation)?;
    Ok(CommittedBlock {
        block_num,
        validation,
    })
}

fn tx_index_key(channel: &str, tx_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(channel.len() + 1 + tx_id.len());
    key.extend_from_slice(channel.as_bytes());
    key.push(0);
    key.extend_from_slice(tx_id.as_bytes());
    key
}

/// Records block `block_num`'s transactions in the tx index (an id already there keeps its
/// entry) and marks the block indexed when it is the next one.
fn index_txs(
    write: &redb::WriteTransaction,
    channel: &str,
    block_num: u64,
    tx_ids: &[&str],
    codes: &[TxValidationCode],
) -> Result<(), StoreError> {
    let mut index = write.open_table(TX_INDEX)?;
    for (tx_id, code) in tx_ids.iter().zip(codes) {
        let key = tx_index_key(channel, tx_id);
        if index.get(key.as_slice())?.is_none() {
            index.insert(key.as_slice(), (block_num, *code as i32))?;
        }
    }
    let mut indexed = write.open_table(TX_INDEXED)?;
    let next = indexed.get(channel)?.map(|v| v.value()).unwrap_or(0);
    if next == block_num {
        indexed.insert(channel, block_num + 1)?;
    }
    Ok(())
}

/// The private-data tables of a block's write transaction.
struct PrivateTables<'t> {
    private: redb::Table<'t, &'static [u8], &'static [u8]>,
    hashed: redb::Table<'t, &'static [u8], &'static [u8]>,
    expiry: redb::Table<'t, &'static [u8], &'static [u8]>,
    by_tx: redb::Table<'t, &'static [u8], &'static [u8]>,
}

fn expiry_prefix(channel: &str) -> Result<Vec<u8>, StoreError> {
    let len = u16::try_from(channel.len()).map_err(|_| StoreError::NameTooLong(channel.len()))?;
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(channel.as_bytes());
    Ok(out)
}

/// Removes private values and hashes whose BlockToLive ends before `block_num`, unless the key
/// was written again since (Fabric's purge manager does the same).
fn purge_expired(
    tables: &mut PrivateTables<'_>,
    channel: &str,
    block_num: u64,
) -> Result<(), StoreError> {
    let prefix = expiry_prefix(channel)?;
    let mut upper = prefix.clone();
    upper.extend_from_slice(&block_num.saturating_add(1).to_be_bytes());
    let mut due = Vec::new();
    for entry in tables.expiry.range(prefix.as_slice()..upper.as_slice())? {
        let (k, v) = entry?;
        due.push((k.value().to_vec(), v.value().to_vec()));
    }
    for (key, value) in due {
        tables.expiry.remove(key.as_slice())?;
        // key: channel prefix, expiry block (8), u16 namespace, namespace, u16 collection,
        // collection, then EXPIRING_KEY + key hash or EXPIRING_WRITE_SET + tx number;
        // value: version (16), clear key.
        let rest = key
            .get(prefix.len() + 8..)
            .ok_or(StoreError::Corrupt("expiry key"))?;
        let (namespace, rest) = split_name(rest)?;
        let (collection, rest) = split_name(rest)?;
        let written = decode_hashed(&value)?.version;
        let key_hash = match rest.split_first() {
            Some((&EXPIRING_KEY, key_hash)) => key_hash,
            Some((&EXPIRING_WRITE_SET, _)) => {
                erase_kept_write_set(tables, channel, namespace, collection, &written)?;
                continue;
            }
            _ => return Err(StoreError::Corrupt("expiry key")),
        };
        let hkey = collection_key(channel, namespace, collection, key_hash)?;
        let current = match tables.hashed.get(hkey.as_slice())? {
            Some(h) => Some(decode_hashed(h.value())?.version),
            None => None,
        };
        if current != Some(written) {
            continue;
        }
        tables.hashed.remove(hkey.as_slice())?;
        let clear_key = value.get(16..).unwrap_or_default();
        if !clear_key.is_empty() {
            let pkey = collection_key(channel, namespace, collection, clear_key)?;
            tables.private.remove(pkey.as_slice())?;
        }
    }
    Ok(())
}

fn split_name(bytes: &[u8]) -> Result<(&str, &[u8]), StoreError> {
    let len = u16::from_be_bytes(take::<2>(bytes, 0)?) as usize;
    let name = bytes
        .get(2..2 + len)
        .and_then(|n| std::str::from_utf8(n).ok())
        .ok_or(StoreError::Corrupt("expiry entry"))?;
    Ok((name, &bytes[2 + len..]))
}

/// What expires: one key's value and hash, or a transaction's whole write set of a collection
/// kept for Deliver.
enum Expiring<'a> {
    Key {
        key_hash: &'a [u8],
        clear_key: &'a [u8],
    },
    WriteSet,
}

/// Expiry-key tags after the collection name.
const EXPIRING_KEY: u8 = 0;
const EXPIRING_WRITE_SET: u8 = 1;

/// Records that a private write expires after `block_to_live` blocks.
fn schedule_expiry(
    tables: &mut PrivateTables<'_>,
    channel: &str,
    (namespace, collection): (&str, &str),
    what: Expiring<'_>,
    version: &Version,
    block_to_live: u64,
) -> Result<(), StoreError> {
    // Fabric: written in block N with BlockToLive b, gone from block N + b + 1 on.
    let expires = version
        .block_num
        .saturating_add(block_to_live)
        .saturating_add(1);
    let mut key = expiry_prefix(channel)?;
    key.extend_from_slice(&expires.to_be_bytes());
    key.extend_from_slice(&collection_prefix("", namespace, collection)?[2..]);
    let mut value = encode_hashed(&HashedValue {
        version: *version,
        value_hash: Vec::new(),
    });
    match what {
        Expiring::Key {
            key_hash,
            clear_key,
        } => {
            key.push(EXPIRING_KEY);
            key.extend_from_slice(key_hash);
            value.extend_from_slice(clear_key);
        }
        Expiring::WriteSet => {
            key.push(EXPIRING_WRITE_SET);
            key.extend_from_slice(&version.tx_num.to_be_bytes());
        }
    }
    tables.expiry.insert(key.as_slice(), value.as_slice())?;
    Ok(())
}

/// Erases a collection's write set from the write sets kept for Deliver of the transaction at
/// `version`.
fn erase_kept_write_set(
    tables: &mut PrivateTables<'_>,
    channel: &str,
    namespace: &str,
    collection: &str,
    version: &Version,
) -> Result<(), StoreError> {
    let mut key = expiry_prefix(channel)?;
    key.extend_from_slice(&version.block_num.to_be_bytes());
    key.extend_from_slice(&version.tx_num.to_be_bytes());
    let Some(bytes) = tables
        .by_tx
        .get(key.as_slice())?
        .map(|v| v.value().to_vec())
    else {
        return Ok(());
    };
    let mut set = TxPvtReadWriteSet::decode(bytes.as_slice())
        .map_err(|_| StoreError::Corrupt("private write set"))?;
    for ns in set
        .ns_pvt_rwset
        .iter_mut()
        .filter(|ns| ns.namespace == namespace)
    {
        ns.collection_pvt_rwset
            .retain(|c| c.collection_name != collection);
    }
    set.ns_pvt_rwset
        .retain(|ns| !ns.collection_pvt_rwset.is_empty());
    if set.ns_pvt_rwset.is_empty() {
        tables.by_tx.remove(key.as_slice())?;
    } else {
        tables
            .by_tx
            .insert(key.as_slice(), set.encode_to_vec().as_slice())?;
    }
    Ok(())
}

/// One collection's hashed reads and writes in a transaction: (namespace, collection, set, hash
/// of its private write set).
type HashedSet<'a> = (&'a str, &'a str, HashedRwSet, &'a [u8]);

/// The collection hashed sets of a transaction, or `None` when one does not decode (BAD_RWSET).
fn decode_hashed_sets(rwset: &TxReadWriteSet) -> Option<Vec<HashedSet<'_>>> {
    let mut out = Vec::new();
    for ns in &rwset.ns_rwset {
        for coll in &ns.collection_hashed_rwset {
            let set = HashedRwSet::decode(coll.hashed_rwset.as_slice()).ok()?;
            out.push((
                ns.namespace.as_str(),
                coll.collection_name.as_str(),
                set,
                coll.pvt_rwset_hash.as_slice(),
            ));
        }
    }
    Some(out)
}

fn validate_hashed_reads(
    hashed: &redb::Table<&[u8], &[u8]>,
    channel: &str,
    sets: &[HashedSet<'_>],
) -> Result<TxValidationCode, StoreError> {
    for (namespace, collection, set, _) in sets {
        for read in &set.hashed_reads {
            let hkey = collection_key(channel, namespace, collection, &read.key_hash)?;
            let committed = match hashed.get(hkey.as_slice())? {
                Some(v) => Some(decode_hashed(v.value())?.version),
                None => None,
            };
            if committed != read.version {
                return Ok(TxValidationCode::MvccReadConflict);
            }
        }
    }
    Ok(TxValidationCode::Valid)
}

/// The clear write set of one collection from the transaction's private data, if it is there and
/// matches the hash the endorsers signed.
fn clear_writes(
    clear: Option<&TxPvtReadWriteSet>,
    namespace: &str,
    collection: &str,
    expected_hash: &[u8],
) -> Option<KvrwSet> {
    let coll = clear?
        .ns_pvt_rwset
        .iter()
        .filter(|ns| ns.namespace == namespace)
        .flat_map(|ns| &ns.collection_pvt_rwset)
        .find(|c| c.collection_name == collection)?;
    if sha256(&coll.rwset) != expected_hash {
        return None;
    }
    KvrwSet::decode(coll.rwset.as_slice()).ok()
}

/// Applies a valid transaction's hashed writes, and its clear private writes where this node has
/// them (from the transient store; without them only the hashes change).
fn apply_private(
    tables: &mut PrivateTables<'_>,
    channel: &str,
    sets: &[HashedSet<'_>],
    clear: Option<&TxPvtReadWriteSet>,
    version: &Version,
    lookup: Option<&dyn CollectionLookup>,
) -> Result<(), StoreError> {
    let mut committed = TxPvtReadWriteSet::default();
    for (namespace, collection, set, pvt_hash) in sets {
        // A definition that does not decode was refused at endorsement; treat it as no expiry.
        let block_to_live = lookup
            .and_then(|l| l.collections(channel, namespace).ok())
            .and_then(|defs| defs.into_iter().find(|d| d.name == *collection))
            .map_or(0, |d| d.block_to_live);
        let clear_kv = if pvt_hash.is_empty() {
            None
        } else {
            clear_writes(clear, namespace, collection, pvt_hash)
        };
        // Key hash → clear key, to purge the clear value when it expires.
        let clear_keys: std::collections::HashMap<Vec<u8>, &[u8]> = match &clear_kv {
            Some(kv) if block_to_live > 0 => kv
                .writes
                .iter()
                .map(|cw| (sha256(cw.key.as_bytes()), cw.key.as_bytes()))
                .collect(),
            _ => std::collections::HashMap::new(),
        };
        for w in &set.hashed_writes {
            let hkey = collection_key(channel, namespace, collection, &w.key_hash)?;
            if w.is_delete || w.is_purge {
                tables.hashed.remove(hkey.as_slice())?;
            } else {
                let record = HashedValue {
                    version: *version,
                    value_hash: w.value_hash.clone(),
                };
                tables
                    .hashed
                    .insert(hkey.as_slice(), encode_hashed(&record).as_slice())?;
                if block_to_live > 0 {
                    let clear_key = clear_keys
                        .get(w.key_hash.as_slice())
                        .copied()
                        .unwrap_or_default();
                    schedule_expiry(
                        tables,
                        channel,
                        (namespace, collection),
                        Expiring::Key {
                            key_hash: &w.key_hash,
                            clear_key,
                        },
                        version,
                        block_to_live,
                    )?;
                }
            }
        }
        if pvt_hash.is_empty() {
            continue;
        }
        let Some(kv) = clear_kv else {
            tracing::warn!(
                channel,
                namespace,
                collection,
                "private data of a committed transaction is not on this node; only its hashes were committed"
            );
            continue;
        };
        if block_to_live > 0 {
            schedule_expiry(
                tables,
                channel,
                (namespace, collection),
                Expiring::WriteSet,
                version,
                block_to_live,
            )?;
        }
        let rwset = kv.encode_to_vec();
        match committed
            .ns_pvt_rwset
            .iter_mut()
            .find(|ns| ns.namespace == *namespace)
        {
            Some(ns) => ns.collection_pvt_rwset.push(CollectionPvtReadWriteSet {
                collection_name: collection.to_string(),
                rwset,
            }),
            None => committed.ns_pvt_rwset.push(NsPvtReadWriteSet {
                namespace: namespace.to_string(),
                collection_pvt_rwset: vec![CollectionPvtReadWriteSet {
                    collection_name: collection.to_string(),
                    rwset,
                }],
            }),
        }
        for w in &kv.writes {
            let pkey = collection_key(channel, namespace, collection, w.key.as_bytes())?;
            if w.is_delete {
                tables.private.remove(pkey.as_slice())?;
            } else {
                let record = VersionedValue {
                    value: w.value.clone(),
                    version: *version,
                    metadata: BTreeMap::new(),
                };
                tables
                    .private
                    .insert(pkey.as_slice(), encode_value(&record).as_slice())?;
            }
        }
    }
    if !committed.ns_pvt_rwset.is_empty() {
        let mut key = expiry_prefix(channel)?;
        key.extend_from_slice(&version.block_num.to_be_bytes());
        key.extend_from_slice(&version.tx_num.to_be_bytes());
        tables
            .by_tx
            .insert(key.as_slice(), committed.encode_to_vec().as_slice())?;
    }
    Ok(())
}

fn committed_version(
    state: &redb::Table<&[u8], &[u8]>,
    channel: &str,
    namespace: &str,
    key: &str,
) -> Result<Option<Version>, StoreError> {
    match state.get(state_key(channel, namespace, key)?.as_slice())? {
        Some(v) => Ok(Some(decode_value(v.value())?.version)),
        None => Ok(None),
    }
}

fn validate_reads(
    state: &redb::Table<&[u8], &[u8]>,
    channel: &str,
    sets: &[(&str, KvrwSet)],
) -> Result<TxValidationCode, StoreError> {
    for (namespace, kv) in sets {
        for read in &kv.reads {
            if committed_version(state, channel, namespace, &read.key)? != read.version {
                return Ok(TxValidationCode::MvccReadConflict);
            }
        }
        for range in &kv.range_queries_info {
            if !range_still_matches(state, channel, namespace, range)? {
                return Ok(TxValidationCode::PhantomReadConflict);
            }
        }
    }
    Ok(TxValidationCode::Valid)
}

/// Re-runs a range query: the same keys with the same versions must come back (all of
/// `[start, end)` when the iterator was exhausted, else the first keys that were read).
fn range_still_matches(
    state: &redb::Table<&[u8], &[u8]>,
    channel: &str,
    namespace: &str,
    range: &RangeQueryInfo,
) -> Result<bool, StoreError> {
    let Some(ReadsInfo::RawReads(reads)) = &range.reads_info else {
        // Merkle summaries are not produced here; treat them as unverifiable.
        return Ok(false);
    };
    let ns_prefix = prefix(channel, namespace)?;
    let lower = state_key(channel, namespace, &range.start_key)?;
    let mut expected = reads.kv_reads.iter();
    for (seen, entry) in state.range(lower.as_slice()..)?.enumerate() {
        let (k, v) = entry?;
        let Some(key) = k.value().strip_prefix(ns_prefix.as_slice()) else {
            break;
        };
        if !range.end_key.is_empty() && key >= range.end_key.as_bytes() {
            break;
        }
        if !range.itr_exhausted && seen == reads.kv_reads.len() {
            break;
        }
        let Some(read) = expected.next() else {
            return Ok(false);
        };
        let version = decode_value(v.value())?.version;
        if read.key.as_bytes() != key || read.version != Some(version) {
            return Ok(false);
        }
    }
    Ok(expected.next().is_none())
}

fn apply_ns(
    state: &mut redb::Table<&[u8], &[u8]>,
    history: &mut redb::Table<&[u8], &[u8]>,
    channel: &str,
    namespace: &str,
    kv: &KvrwSet,
    version: &Version,
    tx: &CommitTx<'_>,
) -> Result<(), StoreError> {
    for w in &kv.writes {
        let key = state_key(channel, namespace, &w.key)?;
        if w.is_delete {
            state.remove(key.as_slice())?;
        } else {
            // A value write keeps the key's existing metadata (Fabric does the same).
            let metadata = match state.get(key.as_slice())? {
                Some(old) => decode_value(old.value())?.metadata,
                None => BTreeMap::new(),
            };
            let record = VersionedValue {
                value: w.value.clone(),
                version: *version,
                metadata,
            };
            state.insert(key.as_slice(), encode_value(&record).as_slice())?;
        }
        let mut hkey = history_prefix(channel, namespace, &w.key)?;
        hkey.extend_from_slice(&version.block_num.to_be_bytes());
        hkey.extend_from_slice(&version.tx_num.to_be_bytes());
        let modification = KeyModification {
            tx_id: tx.tx_id.to_string(),
            value: if w.is_delete {
                Vec::new()
            } else {
                w.value.clone()
            },
            timestamp: Some(tx.timestamp),
            is_delete: w.is_delete,
        };
        history.insert(hkey.as_slice(), modification.encode_to_vec().as_slice())?;
    }
    for m in &kv.metadata_writes {
        let key = state_key(channel, namespace, &m.key)?;
        let existing = match state.get(key.as_slice())? {
            Some(old) => Some(decode_value(old.value())?),
            None => None,
        };
        // Metadata on a key that does not exist (or was deleted in this tx) is dropped, as in Fabric.
        if let Some(mut record) = existing {
            record.metadata = metadata_map(&m.entries);
            record.version = *version;
            state.insert(key.as_slice(), encode_value(&record).as_slice())?;
        }
    }
    Ok(())
}

fn metadata_map(entries: &[KvMetadataEntry]) -> BTreeMap<String, Vec<u8>> {
    entries
        .iter()
        .map(|e| (e.name.clone(), e.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::kvrwset::{KvRead, KvWrite};
    use crate::proto::rwset::NsReadWriteSet;

    /// A transaction on namespace `cc` that read `read` (absent) and writes `write`.
    /// One transaction per write set, all with tx id "tx" (the store itself does not check ids).
    fn same_id_txs(sets: &[TxReadWriteSet]) -> Vec<CommitTx<'_>> {
        sets.iter()
            .map(|rwset| CommitTx {
                tx_id: "tx",
                timestamp: prost_types::Timestamp::default(),
                rwset,
            })
            .collect()
    }

    fn rwset(read: &str, write: &str) -> TxReadWriteSet {
        let kv = KvrwSet {
            reads: vec![KvRead {
                key: read.into(),
                version: None,
            }],
            writes: vec![KvWrite {
                key: write.into(),
                is_delete: false,
                value: b"v".to_vec(),
            }],
            ..KvrwSet::default()
        };
        TxReadWriteSet {
            data_model: 0,
            ns_rwset: vec![NsReadWriteSet {
                namespace: "cc".into(),
                rwset: kv.encode_to_vec(),
                collection_hashed_rwset: Vec::new(),
            }],
        }
    }

    #[test]
    fn validating_a_block_decides_what_committing_it_does_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let world = WorldState::open(&dir.path().join("db")).unwrap();
        // tx0 writes k; tx1 read k as absent (conflict with tx0 in the same block); tx2 was
        // found invalid before (its writes must not land); tx3 is independent.
        let sets = [
            rwset("a", "k"),
            rwset("k", "x"),
            rwset("b", "y"),
            rwset("c", "z"),
        ];
        let txs = same_id_txs(&sets);
        let prechecked = [
            TxValidationCode::Valid,
            TxValidationCode::Valid,
            TxValidationCode::EndorsementPolicyFailure,
            TxValidationCode::Valid,
        ];
        let expected = vec![
            TxValidationCode::Valid,
            TxValidationCode::MvccReadConflict,
            TxValidationCode::EndorsementPolicyFailure,
            TxValidationCode::Valid,
        ];
        let decided = world.validate_block("ch", &txs, &prechecked).unwrap();
        assert_eq!(decided.validation, expected);
        assert_eq!(world.height("ch").unwrap(), 0);
        assert_eq!(world.get("ch", "cc", "k").unwrap(), None);

        let applied = world
            .commit_block_prechecked("ch", &txs, &prechecked)
            .unwrap();
        assert_eq!(applied, decided);
        assert_eq!(world.height("ch").unwrap(), 1);
        assert!(world.get("ch", "cc", "k").unwrap().is_some());
        assert_eq!(world.get("ch", "cc", "x").unwrap(), None);
        assert_eq!(world.get("ch", "cc", "y").unwrap(), None);
        let z = world.get("ch", "cc", "z").unwrap().unwrap();
        assert_eq!(
            z.version,
            Version {
                block_num: 0,
                tx_num: 3
            }
        );
    }

    #[test]
    fn a_prepared_block_is_seen_only_once_committed_and_dropping_it_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let world = WorldState::open(&dir.path().join("db")).unwrap();
        let sets = [rwset("a", "k"), rwset("k", "x")];
        let txs = same_id_txs(&sets);
        let prechecked = [TxValidationCode::Valid; 2];
        let expected = vec![TxValidationCode::Valid, TxValidationCode::MvccReadConflict];

        // The committer's failed append: the block is dropped, nothing was written.
        let prepared = world.prepare_block("ch", &txs, &prechecked).unwrap();
        assert_eq!(prepared.block().validation, expected);
        assert_eq!(world.get("ch", "cc", "k").unwrap(), None);
        drop(prepared);
        assert_eq!(world.height("ch").unwrap(), 0);
        assert_eq!(world.get("ch", "cc", "k").unwrap(), None);

        let prepared = world.prepare_block("ch", &txs, &prechecked).unwrap();
        // Readers do not see the writes before the commit (the block's fsync happens here).
        assert_eq!(world.get("ch", "cc", "k").unwrap(), None);
        let committed = prepared.commit().unwrap();
        assert_eq!((committed.block_num, committed.validation), (0, expected));
        assert_eq!(world.height("ch").unwrap(), 1);
        assert!(world.get("ch", "cc", "k").unwrap().is_some());
        assert_eq!(world.get("ch", "cc", "x").unwrap(), None);
    }

    #[test]
    fn the_tx_index_keeps_each_ids_first_status_survives_a_reopen_and_takes_logged_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let world = WorldState::open(&path).unwrap();
        let sets = [rwset("a", "k"), rwset("k", "x")];
        let txs = same_id_txs(&sets);
        let codes = [TxValidationCode::Valid, TxValidationCode::DuplicateTxid];
        world.commit_block_prechecked("ch", &txs, &codes).unwrap();
        assert_eq!(
            world.tx_status("ch", "tx").unwrap(),
            Some((0, TxValidationCode::Valid)),
            "the first transaction with the id keeps it"
        );
        assert_eq!(world.tx_status("other", "tx").unwrap(), None);
        assert_eq!(world.tx_status("ch", "unknown").unwrap(), None);
        assert_eq!(world.tx_indexed_height("ch").unwrap(), 1);

        // A ledger from before the index: its logged blocks are indexed in order.
        let logged = vec![
            (0, vec!["x".to_string()], vec![TxValidationCode::Valid]),
            (
                1,
                vec!["y".to_string(), "x".to_string()],
                vec![
                    TxValidationCode::MvccReadConflict,
                    TxValidationCode::DuplicateTxid,
                ],
            ),
        ];
        world.index_logged_blocks("old", &logged).unwrap();
        drop(world);
        let world = WorldState::open(&path).unwrap();
        assert_eq!(world.tx_indexed_height("old").unwrap(), 2);
        assert_eq!(
            world.tx_status("old", "x").unwrap(),
            Some((0, TxValidationCode::Valid))
        );
        assert_eq!(
            world.tx_status("old", "y").unwrap(),
            Some((1, TxValidationCode::MvccReadConflict))
        );
        assert_eq!(
            world.tx_status("ch", "tx").unwrap(),
            Some((0, TxValidationCode::Valid))
        );
    }
}
