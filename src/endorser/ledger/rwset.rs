//! Builds a transaction's read/write set (Fabric's `TxReadWriteSet` of `KVRWSet`s) from what a
//! simulation read and wrote. Pure data: no store access.
//!
//! Private data (collections) follows Fabric's `rwsetutil`: the public set carries, per
//! namespace, one `CollectionHashedReadWriteSet` per collection (SHA-256 of each key and value,
//! and of the collection's private `KVRWSet` bytes); the clear writes go into a separate
//! `TxPvtReadWriteSet` that never enters a block.
use std::collections::BTreeMap;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::proto::kvrwset::{
    HashedRwSet, KvMetadataEntry, KvMetadataWrite, KvRead, KvReadHash, KvWrite, KvWriteHash,
    KvrwSet, QueryReads, RangeQueryInfo, Version, range_query_info::ReadsInfo,
};
use crate::proto::rwset::{
    CollectionHashedReadWriteSet, CollectionPvtReadWriteSet, NsPvtReadWriteSet, NsReadWriteSet,
    TxPvtReadWriteSet, TxReadWriteSet, tx_read_write_set::DataModel,
};

/// SHA-256, the hash Fabric uses for private keys, values and collection write sets.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    Sha256::digest(bytes).to_vec()
}

/// A private write: `None` = delete; `purge` also removes the key's hash (PURGE_PRIVATE_DATA).
#[derive(Debug, Clone, PartialEq)]
pub struct PrivateWrite {
    pub value: Option<Vec<u8>>,
    pub purge: bool,
}

/// Reads and writes of one collection of a namespace.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CollectionRwSet {
    /// First read of each key hash: `None` = the key did not exist.
    pub hashed_reads: BTreeMap<Vec<u8>, Option<Version>>,
    /// Last write of each key (in clear; only its hashes reach the public set).
    pub writes: BTreeMap<String, PrivateWrite>,
}

impl CollectionRwSet {
    /// The private `KVRWSet` (writes only, as in Fabric), or `None` without writes.
    fn private_kvrwset(&self) -> Option<KvrwSet> {
        if self.writes.is_empty() {
            return None;
        }
        Some(KvrwSet {
            writes: self
                .writes
                .iter()
                .map(|(k, w)| KvWrite {
                    key: k.clone(),
                    is_delete: w.value.is_none(),
                    value: w.value.clone().unwrap_or_default(),
                })
                .collect(),
            ..KvrwSet::default()
        })
    }

    fn hashed(&self) -> HashedRwSet {
        let mut writes: Vec<KvWriteHash> = self
            .writes
            .iter()
            .map(|(k, w)| KvWriteHash {
                key_hash: sha256(k.as_bytes()),
                is_delete: w.value.is_none(),
                value_hash: w.value.as_deref().map(sha256).unwrap_or_default(),
                is_purge: w.purge,
            })
            .collect();
        // Fabric sorts hashed entries by key hash.
        writes.sort_by(|a, b| a.key_hash.cmp(&b.key_hash));
        HashedRwSet {
            hashed_reads: self
                .hashed_reads
                .iter()
                .map(|(h, v)| KvReadHash {
                    key_hash: h.clone(),
                    version: *v,
                })
                .collect(),
            hashed_writes: writes,
            metadata_writes: Vec::new(),
        }
    }
}

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
    /// Private data, by collection name.
    pub collections: BTreeMap<String, CollectionRwSet>,
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

    /// The reads and writes of one collection of a namespace.
    pub fn collection(&mut self, ns: &str, collection: &str) -> &mut CollectionRwSet {
        self.namespace(ns)
            .collections
            .entry(collection.to_string())
            .or_default()
    }

    /// True when no namespace has writes, metadata writes or private writes.
    pub fn is_read_only(&self) -> bool {
        self.namespaces.values().all(|n| {
            n.writes.is_empty()
                && n.metadata_writes.is_empty()
                && n.collections.values().all(|c| c.writes.is_empty())
        })
    }

    /// The public `TxReadWriteSet` as Fabric encodes it: namespaces, keys and collections sorted;
    /// private data only as hashes.
    pub fn build(&self) -> TxReadWriteSet {
        TxReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_rwset: self
                .namespaces
                .iter()
                .map(|(ns, set)| NsReadWriteSet {
                    namespace: ns.clone(),
                    rwset: set.to_kvrwset().encode_to_vec(),
                    collection_hashed_rwset: set
                        .collections
                        .iter()
                        .map(|(name, coll)| CollectionHashedReadWriteSet {
                            collection_name: name.clone(),
                            hashed_rwset: coll.hashed().encode_to_vec(),
                            pvt_rwset_hash: coll
                                .private_kvrwset()
                                .map(|kv| sha256(&kv.encode_to_vec()))
                                .unwrap_or_default(),
                        })
                        .collect(),
                })
                .collect(),
        }
    }

    /// The private write set (collections with writes only), or `None` when nothing private was
    /// written. Its collection `rwset` bytes hash to the public set's `pvt_rwset_hash`.
    pub fn build_private(&self) -> Option<TxPvtReadWriteSet> {
        let ns_pvt_rwset: Vec<NsPvtReadWriteSet> = self
            .namespaces
            .iter()
            .filter_map(|(ns, set)| {
                let collections: Vec<CollectionPvtReadWriteSet> = set
                    .collections
                    .iter()
                    .filter_map(|(name, coll)| {
                        coll.private_kvrwset().map(|kv| CollectionPvtReadWriteSet {
                            collection_name: name.clone(),
                            rwset: kv.encode_to_vec(),
                        })
                    })
                    .collect();
                (!collections.is_empty()).then(|| NsPvtReadWriteSet {
                    namespace: ns.clone(),
                    collection_pvt_rwset: collections,
                })
            })
            .collect();
        (!ns_pvt_rwset.is_empty()).then_some(TxPvtReadWriteSet {
            data_model: DataModel::Kv as i32,
            ns_pvt_rwset,
        })
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
    fn private_writes_reach_the_public_set_only_as_hashes() {
        let mut b = RwSetBuilder::default();
        b.add_write("cc", "public", Some(b"p".to_vec()));
        let coll = b.collection("cc", "_implicit_org_Org1MSP");
        coll.hashed_reads.insert(sha256(b"r"), Some(v(1, 0)));
        coll.writes.insert(
            "secret-key".into(),
            PrivateWrite {
                value: Some(b"secret-value".to_vec()),
                purge: false,
            },
        );
        coll.writes.insert(
            "gone".into(),
            PrivateWrite {
                value: None,
                purge: true,
            },
        );
        let public = b.build();
        let bytes = public.encode_to_vec();
        for clear in [&b"secret-key"[..], b"secret-value"] {
            assert!(!bytes.windows(clear.len()).any(|w| w == clear));
        }
        let ns = &public.ns_rwset[0];
        let hashed_coll = &ns.collection_hashed_rwset[0];
        assert_eq!(hashed_coll.collection_name, "_implicit_org_Org1MSP");
        let hashed = HashedRwSet::decode(hashed_coll.hashed_rwset.as_slice()).unwrap();
        assert_eq!(hashed.hashed_reads[0].key_hash, sha256(b"r"));
        assert_eq!(hashed.hashed_reads[0].version, Some(v(1, 0)));
        let write = hashed
            .hashed_writes
            .iter()
            .find(|w| w.key_hash == sha256(b"secret-key"))
            .unwrap();
        assert_eq!(write.value_hash, sha256(b"secret-value"));
        assert!(!write.is_delete && !write.is_purge);
        let purge = hashed
            .hashed_writes
            .iter()
            .find(|w| w.key_hash == sha256(b"gone"))
            .unwrap();
        assert!(purge.is_delete && purge.is_purge && purge.value_hash.is_empty());
        let keys: Vec<_> = hashed.hashed_writes.iter().map(|w| &w.key_hash).collect();
        assert!(keys.windows(2).all(|p| p[0] <= p[1]), "sorted by key hash");

        let private = b.build_private().unwrap();
        let pvt_coll = &private.ns_pvt_rwset[0].collection_pvt_rwset[0];
        assert_eq!(sha256(&pvt_coll.rwset), hashed_coll.pvt_rwset_hash);
        let kv = KvrwSet::decode(pvt_coll.rwset.as_slice()).unwrap();
        assert!(kv.reads.is_empty());
        assert_eq!(kv.writes.len(), 2);
    }

    #[test]
    fn private_reads_only_leave_no_private_set() {
        let mut b = RwSetBuilder::default();
        b.collection("cc", "c")
            .hashed_reads
            .insert(sha256(b"k"), None);
        assert!(b.is_read_only());
        assert_eq!(b.build_private(), None);
        let coll = &b.build().ns_rwset[0].collection_hashed_rwset[0];
        assert!(coll.pvt_rwset_hash.is_empty());
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
