//! The transaction simulator: serves a transaction's state access from committed world state and
//! records what it read and wrote, without changing the store. Shared (cheap clone) so that a
//! chaincode called through INVOKE_CHAINCODE simulates in the same read/write set.
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;

use super::private::{Access, CollectionError, PrivateAccess};
use super::rwset::{PrivateWrite, RwSetBuilder, range_query_info, sha256};
use super::store::{StoreError, WorldState};
use crate::proto::kvrwset::Version;
use crate::proto::protos::{QueryResponse, QueryResponseMetadata, QueryResultBytes};
use crate::proto::queryresult::Kv;
use crate::proto::rwset::{TxPvtReadWriteSet, TxReadWriteSet};

/// Results per QueryResponse before the chaincode must ask QUERY_STATE_NEXT (Fabric's default).
pub const DEFAULT_QUERY_BATCH: usize = 100;

/// Why a state request was refused; the message goes back to the chaincode in an ERROR.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("transaction {0} was aborted; its simulation accepts no more requests")]
    Aborted(String),
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("query iterator {0} not found")]
    UnknownQuery(String),
    #[error("invalid page size {0}: must be positive")]
    InvalidPageSize(i32),
    #[error(transparent)]
    Collection(#[from] CollectionError),
    #[error(
        "transaction {0}: queries on private data are supported only in a read-only transaction"
    )]
    PrivateQueryWithWrites(String),
}

/// Paging of a range query (from the chaincode's QueryMetadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub page_size: usize,
    pub bookmark: String,
}

enum Cursor {
    Range(RangeCursor),
    Buffered(VecDeque<Vec<u8>>),
}

struct RangeCursor {
    namespace: String,
    /// A range over a private collection (its reads are not recorded: Fabric allows such queries
    /// only in read-only transactions).
    collection: Option<String>,
    start: String,
    next_start: String,
    end: String,
    remaining_in_page: Option<usize>,
    fetched: usize,
    reads: Vec<(String, Version)>,
}

#[derive(Default)]
struct SimState {
    rwset: RwSetBuilder,
    cursors: HashMap<String, Cursor>,
    next_cursor: u64,
    aborted: bool,
    private_query_done: bool,
}

/// A transaction's simulation on one channel.
#[derive(Clone)]
pub struct TxSimulator {
    inner: Arc<Inner>,
}

struct Inner {
    world: WorldState,
    channel: String,
    tx_id: String,
    batch: usize,
    private: Option<PrivateAccess>,
    state: Mutex<SimState>,
}

fn check_key(key: &str) -> Result<(), SimulationError> {
    if key.is_empty() {
        return Err(SimulationError::InvalidKey("key must not be empty"));
    }
    Ok(())
}

impl TxSimulator {
    pub fn new(world: WorldState, channel: &str, tx_id: &str) -> Self {
        Self::with_batch_size(world, channel, tx_id, DEFAULT_QUERY_BATCH)
    }

    /// Like `new` with another number of results per QueryResponse (at least 1).
    pub fn with_batch_size(world: WorldState, channel: &str, tx_id: &str, batch: usize) -> Self {
        Self::build(world, channel, tx_id, batch, None)
    }

    /// A simulation that may use private data collections as `access` allows (without it every
    /// private-data request is refused).
    pub fn with_private_access(
        world: WorldState,
        channel: &str,
        tx_id: &str,
        access: PrivateAccess,
    ) -> Self {
        Self::build(world, channel, tx_id, DEFAULT_QUERY_BATCH, Some(access))
    }

    fn build(
        world: WorldState,
        channel: &str,
        tx_id: &str,
        batch: usize,
        private: Option<PrivateAccess>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                world,
                channel: channel.to_string(),
                tx_id: tx_id.to_string(),
                batch: batch.max(1),
                private,
                state: Mutex::new(SimState::default()),
            }),
        }
    }

    /// A separate simulation of the same transaction on another channel (cross-channel
    /// INVOKE_CHAINCODE: Fabric lets such calls read, and drops what they write).
    pub fn on_channel(&self, channel: &str) -> TxSimulator {
        Self::build(
            self.inner.world.clone(),
            channel,
            &self.inner.tx_id,
            self.inner.batch,
            self.inner.private.clone(),
        )
    }

    fn check_private(
        &self,
        ns: &str,
        collection: &str,
        access: Option<Access>,
    ) -> Result<(), SimulationError> {
        let rules = self
            .inner
            .private
            .as_ref()
            .ok_or(CollectionError::Unavailable)?;
        Ok(rules.check(ns, collection, access)?)
    }

    /// Fabric refuses writes after a private-data query and such queries after writes.
    fn check_write_allowed(&self, s: &SimState) -> Result<(), SimulationError> {
        if s.private_query_done {
            return Err(SimulationError::PrivateQueryWithWrites(
                self.inner.tx_id.clone(),
            ));
        }
        Ok(())
    }

    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    pub fn tx_id(&self) -> &str {
        &self.inner.tx_id
    }

    fn state(&self) -> Result<MutexGuard<'_, SimState>, SimulationError> {
        // A poisoned lock only means another request panicked mid-update: treat it as aborted.
        let guard = self
            .inner
            .state
            .lock()
            .map_err(|_| SimulationError::Aborted(self.inner.tx_id.clone()))?;
        if guard.aborted {
            return Err(SimulationError::Aborted(self.inner.tx_id.clone()));
        }
        Ok(guard)
    }

    /// Marks the transaction failed: its writes are dropped and `results` refuses to give them out.
    pub fn abort(&self) {
        if let Ok(mut s) = self.inner.state.lock() {
            s.aborted = true;
            s.rwset = RwSetBuilder::default();
            s.cursors.clear();
        }
    }

    pub fn is_aborted(&self) -> bool {
        self.inner.state.lock().map(|s| s.aborted).unwrap_or(true)
    }

    /// GET_STATE: the committed value (Fabric simulations do not read their own writes).
    pub fn get_state(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, SimulationError> {
        check_key(key)?;
        let mut s = self.state()?;
        let committed = self.inner.world.get(&self.inner.channel, ns, key)?;
        s.rwset
            .add_read(ns, key, committed.as_ref().map(|v| v.version));
        Ok(committed.map(|v| v.value))
    }

    pub fn put_state(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<(), SimulationError> {
        check_key(key)?;
        let mut s = self.state()?;
        self.check_write_allowed(&s)?;
        s.rwset.add_write(ns, key, Some(value));
        Ok(())
    }

    pub fn del_state(&self, ns: &str, key: &str) -> Result<(), SimulationError> {
        check_key(key)?;
        let mut s = self.state()?;
        self.check_write_allowed(&s)?;
        s.rwset.add_write(ns, key, None);
        Ok(())
    }

    /// GET_STATE on a collection: the committed private value; the read is recorded as a hashed
    /// read (key hash + version) so MVCC applies at commit.
    pub fn get_private_data(
        &self,
        ns: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, SimulationError> {
        check_key(key)?;
        self.check_private(ns, collection, Some(Access::Read))?;
        let mut s = self.state()?;
        let committed = self
            .inner
            .world
            .get_private(&self.inner.channel, ns, collection, key)?;
        s.rwset
            .collection(ns, collection)
            .hashed_reads
            .entry(sha256(key.as_bytes()))
            .or_insert(committed.as_ref().map(|(_, version)| *version));
        Ok(committed.map(|(value, _)| value))
    }

    /// GET_PRIVATE_DATA_HASH: the committed SHA-256 of the value (empty if absent). Hashes are
    /// public, so membership is not required; the read is recorded like a private read.
    pub fn get_private_data_hash(
        &self,
        ns: &str,
        collection: &str,
        key: &str,
    ) -> Result<Vec<u8>, SimulationError> {
        check_key(key)?;
        self.check_private(ns, collection, None)?;
        let mut s = self.state()?;
        let committed =
            self.inner
                .world
                .get_private_hash(&self.inner.channel, ns, collection, key)?;
        s.rwset
            .collection(ns, collection)
            .hashed_reads
            .entry(sha256(key.as_bytes()))
            .or_insert(committed.as_ref().map(|h| h.version));
        Ok(committed.map(|h| h.value_hash).unwrap_or_default())
    }

    /// PUT_STATE / DEL_STATE / PURGE_PRIVATE_DATA on a collection (`value` `None` = delete).
    pub fn write_private_data(
        &self,
        ns: &str,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
        purge: bool,
    ) -> Result<(), SimulationError> {
        check_key(key)?;
        self.check_private(ns, collection, Some(Access::Write))?;
        let mut s = self.state()?;
        self.check_write_allowed(&s)?;
        s.rwset
            .collection(ns, collection)
            .writes
            .insert(key.to_string(), PrivateWrite { value, purge });
        Ok(())
    }

    /// GET_STATE_BY_RANGE on a collection: like [`Self::range_query`] over the committed private
    /// values. As in Fabric, only a read-only transaction may query private data.
    pub fn private_range_query(
        &self,
        ns: &str,
        collection: &str,
        start: &str,
        end: &str,
    ) -> Result<QueryResponse, SimulationError> {
        self.check_private(ns, collection, Some(Access::Read))?;
        let mut s = self.state()?;
        if !s.rwset.is_read_only() {
            return Err(SimulationError::PrivateQueryWithWrites(
                self.inner.tx_id.clone(),
            ));
        }
        s.private_query_done = true;
        s.next_cursor += 1;
        let id = format!("{}-{}", self.inner.tx_id, s.next_cursor);
        s.cursors.insert(
            id.clone(),
            Cursor::Range(RangeCursor {
                namespace: ns.to_string(),
                collection: Some(collection.to_string()),
                start: start.to_string(),
                next_start: start.to_string(),
                end: end.to_string(),
                remaining_in_page: None,
                fetched: 0,
                reads: Vec::new(),
            }),
        );
        self.next_batch(&mut s, &id)
    }

    /// GET_STATE_METADATA: pending metadata of this transaction, else the committed metadata.
    pub fn get_state_metadata(
        &self,
        ns: &str,
        key: &str,
    ) -> Result<BTreeMap<String, Vec<u8>>, SimulationError> {
        check_key(key)?;
        let s = self.state()?;
        if let Some(pending) = s.rwset.get(ns).and_then(|n| n.metadata_writes.get(key)) {
            return Ok(pending.clone());
        }
        drop(s);
        Ok(self
            .inner
            .world
            .get(&self.inner.channel, ns, key)?
            .map(|v| v.metadata)
            .unwrap_or_default())
    }

    /// PUT_STATE_METADATA: sets one metadata entry, keeping the key's other entries.
    pub fn put_state_metadata(
        &self,
        ns: &str,
        key: &str,
        name: &str,
        value: Vec<u8>,
    ) -> Result<(), SimulationError> {
        let mut entries = self.get_state_metadata(ns, key)?;
        entries.insert(name.to_string(), value);
        let mut s = self.state()?;
        self.check_write_allowed(&s)?;
        s.rwset
            .namespace(ns)
            .metadata_writes
            .insert(key.to_string(), entries);
        Ok(())
    }

    /// GET_STATE_BY_RANGE: opens an iterator over `[start, end)` and returns its first batch.
    pub fn range_query(
        &self,
        ns: &str,
        start: &str,
        end: &str,
        paging: Option<Paging>,
    ) -> Result<QueryResponse, SimulationError> {
        let mut s = self.state()?;
        let (first, remaining) = match &paging {
            Some(p) if p.page_size == 0 => return Err(SimulationError::InvalidPageSize(0)),
            Some(p) if !p.bookmark.is_empty() => (p.bookmark.clone(), Some(p.page_size)),
            Some(p) => (start.to_string(), Some(p.page_size)),
            None => (start.to_string(), None),
        };
        s.next_cursor += 1;
        let id = format!("{}-{}", self.inner.tx_id, s.next_cursor);
        s.cursors.insert(
            id.clone(),
            Cursor::Range(RangeCursor {
                namespace: ns.to_string(),
                collection: None,
                // The key the scan really began at (the bookmark for later pages).
                start: first.clone(),
                next_start: first,
                end: end.to_string(),
                remaining_in_page: remaining,
                fetched: 0,
                reads: Vec::new(),
            }),
        );
        self.next_batch(&mut s, &id)
    }

    /// GET_HISTORY_FOR_KEY: committed writes of `key`, newest first, as an iterator.
    pub fn history_query(&self, ns: &str, key: &str) -> Result<QueryResponse, SimulationError> {
        check_key(key)?;
        let mut s = self.state()?;
        let items = self
            .inner
            .world
            .history(&self.inner.channel, ns, key)?
            .into_iter()
            .map(|m| m.encode_to_vec())
            .collect();
        s.next_cursor += 1;
        let id = format!("{}-{}", self.inner.tx_id, s.next_cursor);
        s.cursors.insert(id.clone(), Cursor::Buffered(items));
        self.next_batch(&mut s, &id)
    }

    /// QUERY_STATE_NEXT.
    pub fn query_next(&self, id: &str) -> Result<QueryResponse, SimulationError> {
        let mut s = self.state()?;
        if !s.cursors.contains_key(id) {
            return Err(SimulationError::UnknownQuery(id.to_string()));
        }
        self.next_batch(&mut s, id)
    }

    /// QUERY_STATE_CLOSE: closing an unknown or finished iterator is fine.
    pub fn query_close(&self, id: &str) -> Result<QueryResponse, SimulationError> {
        self.state()?.cursors.remove(id);
        Ok(QueryResponse {
            results: Vec::new(),
            has_more: false,
            id: id.to_string(),
            metadata: Vec::new(),
        })
    }

    fn next_batch(&self, s: &mut SimState, id: &str) -> Result<QueryResponse, SimulationError> {
        let batch = self.inner.batch;
        let Some(cursor) = s.cursors.get_mut(id) else {
            return Err(SimulationError::UnknownQuery(id.to_string()));
        };
        let mut response = QueryResponse {
            results: Vec::new(),
            has_more: false,
            id: id.to_string(),
            metadata: Vec::new(),
        };
        let mut finished_range = None;
        match cursor {
            Cursor::Buffered(items) => {
                let n = batch.min(items.len());
                response.results = items
                    .drain(..n)
                    .map(|b| QueryResultBytes { result_bytes: b })
                    .collect();
                response.has_more = !items.is_empty();
            }
            Cursor::Range(c) => {
                let want = c.remaining_in_page.map_or(batch, |r| r.min(batch));
                let mut rows = match &c.collection {
                    None => self.inner.world.range(
                        &self.inner.channel,
                        &c.namespace,
                        &c.next_start,
                        &c.end,
                        want + 1,
                    )?,
                    Some(collection) => self.inner.world.private_range(
                        &self.inner.channel,
                        &c.namespace,
                        collection,
                        &c.next_start,
                        &c.end,
                        want + 1,
                    )?,
                };
                let store_has_more = rows.len() > want;
                let next_key = if store_has_more {
                    rows.pop().map(|(k, _)| k)
                } else {
                    None
                };
                c.fetched += rows.len();
                if let Some(r) = c.remaining_in_page.as_mut() {
                    *r -= rows.len();
                }
                for (key, value) in rows {
                    c.reads.push((key.clone(), value.version));
                    response.results.push(QueryResultBytes {
                        result_bytes: Kv {
                            namespace: c.namespace.clone(),
                            key,
                            value: value.value,
                        }
                        .encode_to_vec(),
                    });
                }
                let page_full = c.remaining_in_page == Some(0);
                response.has_more = store_has_more && !page_full;
                if let Some(next) = &next_key {
                    c.next_start = next.clone();
                }
                if !response.has_more {
                    if c.remaining_in_page.is_some() {
                        response.metadata = QueryResponseMetadata {
                            fetched_records_count: i32::try_from(c.fetched).unwrap_or(i32::MAX),
                            bookmark: next_key.clone().unwrap_or_default(),
                        }
                        .encode_to_vec();
                    }
                    let info = range_query_info(
                        &c.start,
                        &c.end,
                        !store_has_more,
                        std::mem::take(&mut c.reads),
                    );
                    if c.collection.is_none() {
                        finished_range = Some((c.namespace.clone(), info));
                    }
                }
            }
        }
        if !response.has_more {
            s.cursors.remove(id);
        }
        if let Some((ns, info)) = finished_range {
            s.rwset.namespace(&ns).range_queries.push(info);
        }
        Ok(response)
    }

    /// The read/write set so far; refused once the transaction was aborted.
    pub fn results(&self) -> Result<TxReadWriteSet, SimulationError> {
        Ok(self.state()?.rwset.build())
    }

    /// The private write set (clear values), `None` when nothing private was written; refused
    /// once the transaction was aborted.
    pub fn private_results(&self) -> Result<Option<TxPvtReadWriteSet>, SimulationError> {
        Ok(self.state()?.rwset.build_private())
    }

    /// Whether this simulation wrote anything.
    pub fn has_writes(&self) -> Result<bool, SimulationError> {
        Ok(!self.state()?.rwset.is_read_only())
    }
}
