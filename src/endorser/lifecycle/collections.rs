//! Explicit private data collections: Fabric's collections-config JSON (what `peer lifecycle
//! chaincode approveformyorg --collections-config FILE` reads) into the `CollectionConfig`s a
//! chaincode definition carries, and back out into the rules the simulator enforces.
use std::collections::BTreeSet;

use prost::Message;
use serde::Deserialize;

use super::Definitions;
use crate::endorser::ledger::private::{CollectionDefinition, CollectionLookup};
use crate::proto::common::{SignaturePolicy, SignaturePolicyEnvelope, signature_policy};
use crate::proto::msp::{MspPrincipal, MspRole, msp_principal, msp_role};
use crate::proto::protos::{
    ApplicationPolicy, CollectionConfig, CollectionPolicyConfig, StaticCollectionConfig,
    application_policy, collection_config, collection_policy_config,
};

/// One entry of Fabric's collections-config JSON.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectionJson {
    pub name: String,
    pub policy: String,
    #[serde(default)]
    pub required_peer_count: i32,
    #[serde(default)]
    pub max_peer_count: i32,
    #[serde(default)]
    pub block_to_live: u64,
    #[serde(default)]
    pub member_only_read: bool,
    #[serde(default)]
    pub member_only_write: bool,
    #[serde(default)]
    pub endorsement_policy: Option<EndorsementPolicyJson>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EndorsementPolicyJson {
    #[serde(default)]
    pub signature_policy: Option<String>,
    #[serde(default)]
    pub channel_config_policy: Option<String>,
}

/// Parses a collections-config JSON array into encoded `CollectionConfig`s (the definition's
/// collection package), checking names and policies as Fabric's CLI and lifecycle do.
pub fn parse_collections_json(json: &str) -> Result<Vec<Vec<u8>>, String> {
    let entries: Vec<CollectionJson> =
        serde_json::from_str(json).map_err(|e| format!("invalid collections config: {e}"))?;
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        if !valid_collection_name(&entry.name) {
            return Err(format!(
                "invalid collection name {:?}: letters, digits and - only, starting with a letter or digit",
                entry.name
            ));
        }
        if !names.insert(entry.name.clone()) {
            return Err(format!("collection {:?} is defined twice", entry.name));
        }
        let member_policy = signature_policy_from_str(&entry.policy)
            .map_err(|e| format!("collection {}: policy {:?}: {e}", entry.name, entry.policy))?;
        let endorsement_policy = match &entry.endorsement_policy {
            None => None,
            Some(EndorsementPolicyJson {
                signature_policy: Some(p),
                channel_config_policy: None,
            }) => Some(application_policy::Type::SignaturePolicy(
                signature_policy_from_str(p).map_err(|e| {
                    format!("collection {}: endorsement policy {p:?}: {e}", entry.name)
                })?,
            )),
            Some(EndorsementPolicyJson {
                signature_policy: None,
                channel_config_policy: Some(p),
            }) => Some(application_policy::Type::ChannelConfigPolicyReference(
                p.clone(),
            )),
            Some(_) => {
                return Err(format!(
                    "collection {}: endorsementPolicy needs exactly one of signaturePolicy and channelConfigPolicy",
                    entry.name
                ));
            }
        };
        if entry.max_peer_count < entry.required_peer_count || entry.required_peer_count < 0 {
            return Err(format!(
                "collection {}: maxPeerCount {} must be at least requiredPeerCount {} (>= 0)",
                entry.name, entry.max_peer_count, entry.required_peer_count
            ));
        }
        let config = CollectionConfig {
            payload: Some(collection_config::Payload::StaticCollectionConfig(
                StaticCollectionConfig {
                    name: entry.name,
                    member_orgs_policy: Some(CollectionPolicyConfig {
                        payload: Some(collection_policy_config::Payload::SignaturePolicy(
                            member_policy,
                        )),
                    }),
                    required_peer_count: entry.required_peer_count,
                    maximum_peer_count: entry.max_peer_count,
                    block_to_live: entry.block_to_live,
                    member_only_read: entry.member_only_read,
                    member_only_write: entry.member_only_write,
                    endorsement_policy: endorsement_policy
                        .map(|t| ApplicationPolicy { r#type: Some(t) }),
                },
            )),
        };
        out.push(config.encode_to_vec());
    }
    Ok(out)
}

/// Fabric's collection name rule (`^[A-Za-z0-9][A-Za-z0-9\-]*$`); names starting with `_` are
/// reserved for implicit collections.
fn valid_collection_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The rules of one encoded `CollectionConfig` from a definition.
pub fn collection_definition(config: &[u8]) -> Result<CollectionDefinition, String> {
    let config = CollectionConfig::decode(config)
        .map_err(|e| format!("collection config does not decode: {e}"))?;
    let Some(collection_config::Payload::StaticCollectionConfig(c)) = config.payload else {
        return Err("collection config without a static collection".into());
    };
    let members = match c.member_orgs_policy.and_then(|p| p.payload) {
        Some(collection_policy_config::Payload::SignaturePolicy(envelope)) => {
            member_orgs(&envelope)
        }
        None => BTreeSet::new(),
    };
    // A channel config policy reference means the chaincode's own policy applies here.
    let endorsement_policy = match c.endorsement_policy.and_then(|p| p.r#type) {
        Some(application_policy::Type::SignaturePolicy(policy)) => Some(policy),
        Some(application_policy::Type::ChannelConfigPolicyReference(_)) | None => None,
    };
    Ok(CollectionDefinition {
        name: c.name,
        members,
        member_only_read: c.member_only_read,
        member_only_write: c.member_only_write,
        block_to_live: c.block_to_live,
        endorsement_policy,
    })
}

impl CollectionLookup for Definitions {
    fn collections(
        &self,
        channel: &str,
        namespace: &str,
    ) -> Result<Vec<CollectionDefinition>, String> {
        self.get(channel, namespace)
            .map(|d| d.collections)
            .unwrap_or_default()
            .iter()
            .map(|config| collection_definition(config))
            .collect()
    }
}

/// The organisations a member-orgs policy names (its ROLE principals' MSP ids).
fn member_orgs(envelope: &SignaturePolicyEnvelope) -> BTreeSet<String> {
    envelope
        .identities
        .iter()
        .filter(|p| p.principal_classification == msp_principal::Classification::Role as i32)
        .filter_map(|p| MspRole::decode(p.principal.as_slice()).ok())
        .map(|role| role.msp_identifier)
        .collect()
}

/// Fabric's signature policy language: `OR(...)`, `AND(...)`, `OutOf(n, ...)` over principals
/// `'MSPID.role'` (member, admin, client, peer, orderer).
pub fn signature_policy_from_str(text: &str) -> Result<SignaturePolicyEnvelope, String> {
    let mut parser = PolicyParser {
        text: text.as_bytes(),
        at: 0,
        identities: Vec::new(),
    };
    let rule = parser.expression()?;
    parser.skip_spaces();
    if parser.at != parser.text.len() {
        return Err(format!("unexpected text at offset {}", parser.at));
    }
    Ok(SignaturePolicyEnvelope {
        version: 0,
        rule: Some(rule),
        identities: parser.identities,
    })
}

struct PolicyParser<'a> {
    text: &'a [u8],
    at: usize,
    identities: Vec<MspPrincipal>,
}

impl PolicyParser<'_> {
    fn skip_spaces(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_spaces();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at offset {}", byte as char, self.at))
        }
    }

    fn word(&mut self) -> String {
        self.skip_spaces();
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric())
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn expression(&mut self) -> Result<SignaturePolicy, String> {
        self.skip_spaces();
        if matches!(self.text.get(self.at), Some(b'\'' | b'"')) {
            return self.principal();
        }
        let op = self.word();
        self.expect(b'(')?;
        let n = match op.to_ascii_lowercase().as_str() {
            "or" => None,
            "and" => Some(None),
            "outof" => {
                let n = self.word();
                let n: i32 = n
                    .parse()
                    .map_err(|_| format!("OutOf needs a number, got {n:?}"))?;
                self.expect(b',')?;
                Some(Some(n))
            }
            other => return Err(format!("unknown operator {other:?}")),
        };
        let mut rules = vec![self.expression()?];
        loop {
            self.skip_spaces();
            match self.text.get(self.at) {
                Some(b',') => {
                    self.at += 1;
                    rules.push(self.expression()?);
                }
                Some(b')') => {
                    self.at += 1;
                    break;
                }
                _ => return Err(format!("expected ',' or ')' at offset {}", self.at)),
            }
        }
        let count = i32::try_from(rules.len()).unwrap_or(i32::MAX);
        let n = match n {
            None => 1,
            Some(None) => count,
            Some(Some(n)) if (1..=count).contains(&n) => n,
            Some(Some(n)) => return Err(format!("OutOf({n}, ...) with {count} rules")),
        };
        Ok(SignaturePolicy {
            r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                n,
                rules,
            })),
        })
    }

    fn principal(&mut self) -> Result<SignaturePolicy, String> {
        let quote = self.text[self.at];
        self.at += 1;
        let start = self.at;
        while self.text.get(self.at).is_some_and(|c| *c != quote) {
            self.at += 1;
        }
        let body = String::from_utf8_lossy(&self.text[start..self.at]).into_owned();
        self.expect(quote)?;
        let (mspid, role) = body
            .rsplit_once('.')
            .ok_or_else(|| format!("principal {body:?} is not 'MSPID.role'"))?;
        let role = match role {
            "member" => msp_role::MspRoleType::Member,
            "admin" => msp_role::MspRoleType::Admin,
            "client" => msp_role::MspRoleType::Client,
            "peer" => msp_role::MspRoleType::Peer,
            "orderer" => msp_role::MspRoleType::Orderer,
            other => return Err(format!("unknown role {other:?} in {body:?}")),
        };
        if mspid.is_empty() {
            return Err(format!("principal {body:?} has no MSP id"));
        }
        let principal = MspPrincipal {
            principal_classification: msp_principal::Classification::Role as i32,
            principal: MspRole {
                msp_identifier: mspid.to_string(),
                role: role as i32,
            }
            .encode_to_vec(),
        };
        let index = match self.identities.iter().position(|p| *p == principal) {
            Some(i) => i,
            None => {
                self.identities.push(principal);
                self.identities.len() - 1
            }
        };
        Ok(SignaturePolicy {
            r#type: Some(signature_policy::Type::SignedBy(
                i32::try_from(index).unwrap_or(i32::MAX),
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"[
      {"name": "assetCollection", "policy": "OR('Org1MSP.member', 'Org2MSP.member')",
       "requiredPeerCount": 0, "maxPeerCount": 1, "blockToLive": 1000000,
       "memberOnlyRead": true, "memberOnlyWrite": true},
      {"name": "Org1MSPPrivateCollection", "policy": "OR('Org1MSP.member')",
       "requiredPeerCount": 0, "maxPeerCount": 1, "blockToLive": 3,
       "memberOnlyRead": true, "memberOnlyWrite": false,
       "endorsementPolicy": {"signaturePolicy": "OR('Org1MSP.member')"}}
    ]"#;

    #[test]
    fn fabric_samples_collections_config_round_trips_into_rules() {
        let configs = parse_collections_json(SAMPLE).unwrap();
        assert_eq!(configs.len(), 2);
        let asset = collection_definition(&configs[0]).unwrap();
        assert_eq!(asset.name, "assetCollection");
        assert_eq!(
            asset.members,
            ["Org1MSP".to_string(), "Org2MSP".to_string()].into()
        );
        assert!(asset.member_only_read && asset.member_only_write);
        assert_eq!(asset.block_to_live, 1_000_000);
        let org1 = collection_definition(&configs[1]).unwrap();
        assert_eq!(org1.members, ["Org1MSP".to_string()].into());
        assert!(org1.member_only_read && !org1.member_only_write);
        assert!(org1.endorsement_policy.is_some() && asset.endorsement_policy.is_none());
        let decoded = CollectionConfig::decode(configs[1].as_slice()).unwrap();
        let Some(collection_config::Payload::StaticCollectionConfig(c)) = decoded.payload else {
            panic!("static config");
        };
        assert!(c.endorsement_policy.is_some());
    }

    #[test]
    fn policies_parse_like_fabrics_policydsl() {
        let p = signature_policy_from_str("AND('A.member', OR('B.peer', 'A.member'))").unwrap();
        assert_eq!(p.identities.len(), 2, "principals are deduplicated");
        let Some(signature_policy::Type::NOutOf(top)) = p.rule.unwrap().r#type else {
            panic!("n out of")
        };
        assert_eq!((top.n, top.rules.len()), (2, 2));
        let p = signature_policy_from_str("OutOf(2, 'A.member', 'B.member', 'C.member')").unwrap();
        let Some(signature_policy::Type::NOutOf(top)) = p.rule.unwrap().r#type else {
            panic!("n out of")
        };
        assert_eq!(top.n, 2);
        for bad in [
            "",
            "OR(",
            "OR('A.member'",
            "XOR('A.member')",
            "OR('A.boss')",
            "OR('member')",
            "OutOf(4, 'A.member')",
            "OR('A.member') trailing",
        ] {
            assert!(signature_policy_from_str(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_collection_configs_are_refused_with_the_reason() {
        for (json, why) in [
            ("{", "invalid collections config"),
            (
                r#"[{"name": "_x", "policy": "OR('A.member')"}]"#,
                "invalid collection name",
            ),
            (
                r#"[{"name": "a", "policy": "OR('A.member')"}, {"name": "a", "policy": "OR('A.member')"}]"#,
                "defined twice",
            ),
            (r#"[{"name": "a", "policy": "OR(A)"}]"#, "policy"),
            (
                r#"[{"name": "a", "policy": "OR('A.member')", "requiredPeerCount": 2, "maxPeerCount": 1}]"#,
                "maxPeerCount",
            ),
            (
                r#"[{"name": "a", "policy": "OR('A.member')", "unknown": 1}]"#,
                "unknown field",
            ),
        ] {
            let err = parse_collections_json(json).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
        }
        assert!(collection_definition(b"\xff\xff").is_err());
    }
}
