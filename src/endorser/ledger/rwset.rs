//! Builds a transaction's read/write set (Fabric's `TxReadWriteSet` of `KVRWSet`s) from what a
//! simulation read and wrote. Pure data: no store access.
use std::collections::BTreeMap;

use prost::Message;

use crate::proto::kvrwset::{
    KvMetadataEntry, KvMetadataWrite, KvRead, KvWrite, KvrwSet, QueryReads, RangeQueryInfo,
    Version, range_query_info::ReadsInfo,
};
use crate::proto::rwset::{NsReadWriteSet, TxReadWriteSet, tx_read_write_set::DataModel};

/// Reads and writes of one namespace (chaincode). Maps keep Fabric's key order in the output.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NamespaceRwSet {
    /// First read of each key: `None` = the key did not exist.
    pub reads: BTreeMap<String, Option<Version>>,
    /// Last write of each key: `None` = delete.
    pub writes: BTreeMap<String, Option<Vec<u8>>>,
    /// Full metadata to store for a key after this transaction.
    pub metadata_writes: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    pub range_queries: Vec<RangeQueryInfo>,
}

/// Read/write sets of every namespace a simulation touched.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct RwSetBuilder {
    namespaces: BTreeMap<String, NamespaceRwSet>,
}

impl RwSetBuilder {
    pub fn namespace(&mut self, ns: &str) -> &mut NamespaceRwSet {
        self.namespaces.entry(ns.to_string()).or_default()
    }

    pub fn get(&self, ns: &str) -> Option<&NamespaceRwSet> {
        self.namespaces.get(ns)
    }

    /// Records a read unless the key was already read (Fabric keeps the first version seen).
    pub fn add_read(&mut self, ns: &str, key: &str, version: Option<Version>) {
        self.namespace(ns)
            .reads
            .entry(key.to_string())
            .or_insert(version);
    }

    pub fn add_write(&mut self, ns: &str, key: &str, value: Option<Vec<u8>>) {
        self.namespace(ns).writes.insert(key.to_string(), value);
    }

    /// The pending write of a key in this simulation, if any (`Some(None)` = pending delete).
    pub fn pending_write(&self, ns: &str, key: &str) -> Option<&Option<Vec<u8>>> {
        self.namespaces.get(ns).and_then(|n| n.writes.get(key))
    }

    /// True when no namespace has writes or metadata writes.
    pub fn is_read_only(&self) -> bool {
        self.namespaces
            .values()
            .all(|n| n.writes.is_empty() && n.metadata_writes.is_empty())
    }

    /// The `TxReadWriteSet` as Fabric encodes it: namespaces and keys sorted.
    pub fn build(&self) -> TxReadWriteSet {
        TxReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_rwset: self
                .namespaces
                .iter()
                .map(|(ns, set)| NsReadWriteSet {
                    namespace: ns.clone(),
                    rwset: set.to_kvrwset().encode_to_vec(),
                    collection_hashed_rwset: Vec::new(),
                })
                .collect(),
        }
    }
}

impl NamespaceRwSet {
    pub fn to_kvrwset(&self) -> KvrwSet {
        KvrwSet {
            reads: self
                .reads
                .iter()
                .map(|(k, v)| KvRead {
                    key: k.clone(),
                    version: *v,
                })
                .collect(),
            range_queries_info: self.range_queries.clone(),
            writes: self
                .writes
                .iter()
                .map(|(k, v)| KvWrite {
                    key: k.clone(),
                    is_delete: v.is_none(),
                    value: v.clone().unwrap_or_default(),
                })
                .collect(),
            metadata_writes: self
                .metadata_writes
                .iter()
                .map(|(k, entries)| KvMetadataWrite {
                    key: k.clone(),
                    entries: entries
                        .iter()
                        .map(|(name, value)| KvMetadataEntry {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

/// A range query's record for phantom-read detection.
pub fn range_query_info(
    start: &str,
    end: &str,
    exhausted: bool,
    reads: Vec<(String, Version)>,
) -> RangeQueryInfo {
    RangeQueryInfo {
        start_key: start.to_string(),
        end_key: end.to_string(),
        itr_exhausted: exhausted,
        reads_info: Some(ReadsInfo::RawReads(QueryReads {
            kv_reads: reads
                .into_iter()
                .map(|(key, v)| KvRead {
                    key,
                    version: Some(v),
                })
                .collect(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(b: u64, t: u64) -> Version {
        Version {
            block_num: b,
            tx_num: t,
        }
    }

    #[test]
    fn first_read_wins_and_last_write_wins() {
        let mut b = RwSetBuilder::default();
        b.add_read("cc", "k", Some(v(1, 0)));
        b.add_read("cc", "k", Some(v(2, 0)));
        b.add_write("cc", "k", Some(b"a".to_vec()));
        b.add_write("cc", "k", None);
        let set = b.build();
        let kv = KvrwSet::decode(set.ns_rwset[0].rwset.as_slice()).unwrap();
        assert_eq!(kv.reads[0].version, Some(v(1, 0)));
        assert_eq!(kv.writes.len(), 1);
        assert!(kv.writes[0].is_delete);
        assert!(kv.writes[0].value.is_empty());
    }

    #[test]
    fn namespaces_and_keys_come_out_sorted() {
        let mut b = RwSetBuilder::default();
        b.add_write("zeta", "b", Some(vec![1]));
        b.add_write("alpha", "z", Some(vec![2]));
        b.add_write("alpha", "a", Some(vec![3]));
        let set = b.build();
        let names: Vec<_> = set.ns_rwset.iter().map(|n| n.namespace.as_str()).collect();
        assert_eq!(names, ["alpha", "zeta"]);
        let kv = KvrwSet::decode(set.ns_rwset[0].rwset.as_slice()).unwrap();
        let keys: Vec<_> = kv.writes.iter().map(|w| w.key.as_str()).collect();
        assert_eq!(keys, ["a", "z"]);
    }

    #[test]
    fn read_of_missing_key_has_no_version() {
        let mut b = RwSetBuilder::default();
        b.add_read("cc", "nope", None);
        assert!(b.is_read_only());
        let kv = KvrwSet::decode(b.build().ns_rwset[0].rwset.as_slice()).unwrap();
        assert_eq!(kv.reads[0].version, None);
    }
}
