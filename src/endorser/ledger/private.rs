//! Private data collections: which collections a chaincode has, who may read and write them, and
//! which of a block's private data an organisation may receive. (The transient store, which keeps
//! a transaction's private writes between endorsement and commit, is part of the `store`.)
//!
//! Implicit org collections, `_implicit_org_<MSPID>` for every organisation the node trusts, need
//! no configuration (as in Fabric); explicit ones come from the chaincode's definition.
use std::collections::BTreeSet;
use std::sync::Arc;

use crate::proto::common::SignaturePolicyEnvelope;
use crate::proto::rwset::TxPvtReadWriteSet;

/// Fabric's prefix of implicit org collection names.
pub const IMPLICIT_COLLECTION_PREFIX: &str = "_implicit_org_";
/// Private write sets kept in the transient store for transactions not committed yet (Fabric
/// bounds its transient store by blocks, `transientstoreMaxBlockRetention`; one node bounds it by
/// count).
pub const DEFAULT_TRANSIENT_CAPACITY: usize = 10_000;

/// The implicit collection of an organisation.
pub fn implicit_collection_name(mspid: &str) -> String {
    format!("{IMPLICIT_COLLECTION_PREFIX}{mspid}")
}

/// Read or write, for the collection's member-only rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
}

/// Why a private-data request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CollectionError {
    #[error("collection {collection:?} is not defined for chaincode {namespace:?}")]
    Unknown {
        namespace: String,
        collection: String,
    },
    #[error(
        "tx creator does not have {access} access permission on privatedata in chaincodeName:{namespace} collectionName: {collection}"
    )]
    NotMember {
        namespace: String,
        collection: String,
        access: &'static str,
    },
    #[error("private data APIs are not allowed in chaincode Init()")]
    InInit,
    #[error("private data is not available in this simulation")]
    Unavailable,
    #[error("the chaincode definition's collections: {0}")]
    BadDefinition(String),
}

/// An explicit collection's rules, from its `CollectionConfig`.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionDefinition {
    pub name: String,
    /// Organisations named by the member-orgs policy.
    pub members: BTreeSet<String>,
    pub member_only_read: bool,
    pub member_only_write: bool,
    pub block_to_live: u64,
    /// The collection's own endorsement policy for its writes (`None`: the chaincode's).
    pub endorsement_policy: Option<SignaturePolicyEnvelope>,
}

/// Where a simulation finds a chaincode's explicit collections (its committed definition).
pub trait CollectionLookup: Send + Sync {
    /// The explicit collections of `namespace` on `channel`; a definition whose collections do
    /// not decode is an error the chaincode sees.
    fn collections(
        &self,
        channel: &str,
        namespace: &str,
    ) -> Result<Vec<CollectionDefinition>, String>;
}

/// What a transaction's simulation may do with private data: the collections that exist (the
/// trusted organisations' implicit ones, and the chaincode's explicit ones) and who is asking.
#[derive(Clone)]
pub struct PrivateAccess {
    /// MSP ids of the organisations that have an implicit collection.
    pub orgs: Arc<BTreeSet<String>>,
    /// The proposal creator's MSP id.
    pub creator_mspid: String,
    /// Fabric refuses private data in Init.
    pub is_init: bool,
    /// The channel and the explicit collections of its chaincodes; `None` = implicit only.
    pub explicit: Option<(String, Arc<dyn CollectionLookup>)>,
}

impl std::fmt::Debug for PrivateAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateAccess")
            .field("orgs", &self.orgs)
            .field("creator_mspid", &self.creator_mspid)
            .field("is_init", &self.is_init)
            .field("explicit", &self.explicit.as_ref().map(|(ch, _)| ch))
            .finish()
    }
}

impl PrivateAccess {
    /// Checks that `collection` exists for `namespace` and, for `access`, that the creator may
    /// use it. Decision: implicit collections are member-only for reads and writes here. In
    /// Fabric another org's peer simply does not hold an org's implicit data; one node stands in
    /// for every org's peer, so it keeps each org's data to that org's members.
    pub fn check(
        &self,
        namespace: &str,
        collection: &str,
        access: Option<Access>,
    ) -> Result<(), CollectionError> {
        if self.is_init {
            return Err(CollectionError::InInit);
        }
        let unknown = || CollectionError::Unknown {
            namespace: namespace.to_string(),
            collection: collection.to_string(),
        };
        let refused = |access: Access| CollectionError::NotMember {
            namespace: namespace.to_string(),
            collection: collection.to_string(),
            access: match access {
                Access::Read => "read",
                Access::Write => "write",
            },
        };
        if let Some(mspid) = collection.strip_prefix(IMPLICIT_COLLECTION_PREFIX) {
            if !self.orgs.contains(mspid) {
                return Err(unknown());
            }
            return match access {
                Some(access) if mspid != self.creator_mspid => Err(refused(access)),
                _ => Ok(()),
            };
        }
        let (channel, lookup) = self.explicit.as_ref().ok_or_else(unknown)?;
        let definition = lookup
            .collections(channel, namespace)
            .map_err(CollectionError::BadDefinition)?
            .into_iter()
            .find(|c| c.name == collection)
            .ok_or_else(unknown)?;
        let member = definition.members.contains(&self.creator_mspid);
        match access {
            Some(Access::Read) if definition.member_only_read && !member => {
                Err(refused(Access::Read))
            }
            Some(Access::Write) if definition.member_only_write && !member => {
                Err(refused(Access::Write))
            }
            _ => Ok(()),
        }
    }
}

/// The part of a committed private write set that an organisation may receive: its own implicit
/// collection and the explicit collections whose member-orgs policy names it, unless their
/// BlockToLive has passed by `height` (the channel's height now).
pub fn readable_private_data(
    set: &TxPvtReadWriteSet,
    mspid: &str,
    channel: &str,
    lookup: Option<&dyn CollectionLookup>,
    block_num: u64,
    height: u64,
) -> TxPvtReadWriteSet {
    let own_implicit = implicit_collection_name(mspid);
    let mut out = TxPvtReadWriteSet {
        data_model: set.data_model,
        ns_pvt_rwset: Vec::new(),
    };
    for ns in &set.ns_pvt_rwset {
        let explicit = lookup
            .and_then(|l| l.collections(channel, &ns.namespace).ok())
            .unwrap_or_default();
        let collections: Vec<_> = ns
            .collection_pvt_rwset
            .iter()
            .filter(|c| {
                if c.collection_name.starts_with(IMPLICIT_COLLECTION_PREFIX) {
                    return c.collection_name == own_implicit;
                }
                explicit.iter().any(|d| {
                    d.name == c.collection_name
                        && d.members.contains(mspid)
                        && (d.block_to_live == 0
                            || block_num.saturating_add(d.block_to_live).saturating_add(1)
                                > height.saturating_sub(1))
                })
            })
            .cloned()
            .collect();
        if !collections.is_empty() {
            out.ns_pvt_rwset
                .push(crate::proto::rwset::NsPvtReadWriteSet {
                    namespace: ns.namespace.clone(),
                    collection_pvt_rwset: collections,
                });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Explicit;

    impl CollectionLookup for Explicit {
        fn collections(
            &self,
            _channel: &str,
            namespace: &str,
        ) -> Result<Vec<CollectionDefinition>, String> {
            let shared = |name: &str, read, write| CollectionDefinition {
                name: name.to_string(),
                members: ["Org1MSP".to_string()].into(),
                member_only_read: read,
                member_only_write: write,
                block_to_live: 0,
                endorsement_policy: None,
            };
            match namespace {
                "cc" => Ok(vec![
                    shared("strict", true, true),
                    shared("open", false, false),
                ]),
                _ => Err("broken".into()),
            }
        }
    }

    fn access(creator: &str) -> PrivateAccess {
        PrivateAccess {
            orgs: Arc::new(["Org1MSP".to_string(), "Org2MSP".to_string()].into()),
            creator_mspid: creator.to_string(),
            is_init: false,
            explicit: Some(("ch".into(), Arc::new(Explicit))),
        }
    }

    #[test]
    fn explicit_collections_follow_member_only_read_and_write() {
        let (member, other) = (access("Org1MSP"), access("Org2MSP"));
        for a in [Access::Read, Access::Write] {
            assert_eq!(member.check("cc", "strict", Some(a)), Ok(()));
            assert!(other.check("cc", "strict", Some(a)).is_err());
            // Not member-only: anyone may.
            assert_eq!(other.check("cc", "open", Some(a)), Ok(()));
        }
        assert!(matches!(
            member.check("cc", "missing", None),
            Err(CollectionError::Unknown { .. })
        ));
        assert!(matches!(
            member.check("other", "strict", None),
            Err(CollectionError::BadDefinition(_))
        ));
        let implicit_only = PrivateAccess {
            explicit: None,
            ..access("Org1MSP")
        };
        assert!(implicit_only.check("cc", "strict", None).is_err());
    }

    #[test]
    fn implicit_collections_exist_for_trusted_orgs_and_admit_only_members() {
        let org1 = implicit_collection_name("Org1MSP");
        assert_eq!(org1, "_implicit_org_Org1MSP");
        let a = access("Org1MSP");
        assert_eq!(a.check("cc", &org1, Some(Access::Read)), Ok(()));
        assert_eq!(a.check("cc", &org1, Some(Access::Write)), Ok(()));
        let other = access("Org2MSP");
        assert!(matches!(
            other.check("cc", &org1, Some(Access::Read)),
            Err(CollectionError::NotMember { access: "read", .. })
        ));
        assert!(matches!(
            other.check("cc", &org1, Some(Access::Write)),
            Err(CollectionError::NotMember {
                access: "write",
                ..
            })
        ));
        // The hash is public: anyone may ask for it.
        assert_eq!(other.check("cc", &org1, None), Ok(()));
        for unknown in [
            "_implicit_org_Org3MSP",
            "_implicit_org_",
            "collectionMarbles",
        ] {
            assert!(matches!(
                a.check("cc", unknown, None),
                Err(CollectionError::Unknown { .. })
            ));
        }
        let init = PrivateAccess {
            is_init: true,
            ..access("Org1MSP")
        };
        assert!(matches!(
            init.check("cc", &org1, None),
            Err(CollectionError::InInit)
        ));
    }

    #[test]
    fn deliver_hands_out_only_the_collections_an_org_belongs_to() {
        use crate::proto::rwset::{CollectionPvtReadWriteSet, NsPvtReadWriteSet};
        let coll = |name: &str| CollectionPvtReadWriteSet {
            collection_name: name.to_string(),
            rwset: vec![1],
        };
        let set = TxPvtReadWriteSet {
            data_model: 0,
            ns_pvt_rwset: vec![NsPvtReadWriteSet {
                namespace: "cc".into(),
                collection_pvt_rwset: vec![
                    coll("_implicit_org_Org1MSP"),
                    coll("_implicit_org_Org2MSP"),
                    coll("strict"),
                ],
            }],
        };
        let names = |set: &TxPvtReadWriteSet| -> Vec<String> {
            set.ns_pvt_rwset
                .iter()
                .flat_map(|ns| &ns.collection_pvt_rwset)
                .map(|c| c.collection_name.clone())
                .collect()
        };
        let lookup = Explicit;
        let org1 = readable_private_data(&set, "Org1MSP", "ch", Some(&lookup), 1, 2);
        assert_eq!(names(&org1), ["_implicit_org_Org1MSP", "strict"]);
        let org2 = readable_private_data(&set, "Org2MSP", "ch", Some(&lookup), 1, 2);
        assert_eq!(names(&org2), ["_implicit_org_Org2MSP"]);
        assert!(
            readable_private_data(&set, "Org3MSP", "ch", None, 1, 2)
                .ns_pvt_rwset
                .is_empty()
        );
    }
}
