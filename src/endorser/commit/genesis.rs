//! Block 0 of a channel: its config block, as every Fabric channel starts with one.
//!
//! The block holds one `CONFIG` envelope whose data is a `common.ConfigEnvelope`: the channel
//! group with the hashing values and capabilities, and an `Application` group with one group per
//! trusted organisation (its MSP: root, intermediate and TLS root certificates) and Fabric's
//! default policies (`configtxgen`'s sample profile: `Readers`/`Writers` ANY, `Admins` and
//! `Endorsement` MAJORITY at the channel and application level; per org `Readers`, `Writers`,
//! `Endorsement` = a member of the org, `Admins` = an admin of the org). There is no orderer, so
//! the block has no `Orderer` group, no orderer signatures and no `last_update`, like the
//! orderer-made genesis blocks fabric-common's `BlockDecoder` reads. Metadata: `LAST_CONFIG` =
//! 0 (as in every block) and `TRANSACTIONS_FILTER` = one VALID byte.
use std::collections::HashMap;
use std::time::SystemTime;

use prost::Message;
use sha2::{Digest, Sha256};

use super::blocklog::new_block;
use crate::endorser::identity::{Organization, certificate_pem};
use crate::endorser::proposal::build::timestamp;
use crate::proto::common::Block;
use crate::proto::common::{
    BlockDataHashingStructure, Capabilities, Capability, ChannelHeader, Config, ConfigEnvelope,
    ConfigGroup, ConfigPolicy, ConfigValue, Envelope, HashingAlgorithm, Header, HeaderType,
    ImplicitMetaPolicy, Payload, Policy, SignatureHeader, SignaturePolicy, SignaturePolicyEnvelope,
    implicit_meta_policy, policy, signature_policy,
};
use crate::proto::msp::{
    FabricCryptoConfig, FabricMspConfig, MspConfig, MspPrincipal, MspRole, msp_principal, msp_role,
};
use crate::proto::protos::TxValidationCode;

const ADMINS: &str = "Admins";

fn value(message: &impl Message) -> ConfigValue {
    ConfigValue {
        version: 0,
        value: message.encode_to_vec(),
        mod_policy: ADMINS.into(),
    }
}

fn implicit_meta(sub_policy: &str, rule: implicit_meta_policy::Rule) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: policy::PolicyType::ImplicitMeta as i32,
            value: ImplicitMetaPolicy {
                sub_policy: sub_policy.into(),
                rule: rule as i32,
            }
            .encode_to_vec(),
        }),
        mod_policy: ADMINS.into(),
    }
}

/// `OR('<mspid>.<role>')`.
fn signed_by_role(mspid: &str, role: msp_role::MspRoleType) -> ConfigPolicy {
    let principal = MspPrincipal {
        principal_classification: msp_principal::Classification::Role as i32,
        principal: MspRole {
            msp_identifier: mspid.into(),
            role: role as i32,
        }
        .encode_to_vec(),
    };
    let envelope = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(SignaturePolicy {
            r#type: Some(signature_policy::Type::NOutOf(signature_policy::NOutOf {
                n: 1,
                rules: vec![SignaturePolicy {
                    r#type: Some(signature_policy::Type::SignedBy(0)),
                }],
            })),
        }),
        identities: vec![principal],
    };
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: policy::PolicyType::Signature as i32,
            value: envelope.encode_to_vec(),
        }),
        mod_policy: ADMINS.into(),
    }
}

fn capabilities(name: &str) -> ConfigValue {
    value(&Capabilities {
        capabilities: HashMap::from([(name.to_string(), Capability {})]),
    })
}

fn pems(ders: &[Vec<u8>]) -> Vec<Vec<u8>> {
    ders.iter()
        .map(|der| certificate_pem(der).into_bytes())
        .collect()
}

fn org_group(org: &Organization) -> ConfigGroup {
    let mspid = org.mspid();
    let msp = MspConfig {
        // 0 = FABRIC (X.509).
        r#type: 0,
        config: FabricMspConfig {
            name: mspid.into(),
            root_certs: pems(org.roots()),
            intermediate_certs: pems(org.intermediates()),
            tls_root_certs: pems(org.tls_roots()),
            crypto_config: Some(FabricCryptoConfig {
                signature_hash_family: "SHA2".into(),
                identity_identifier_hash_function: "SHA256".into(),
            }),
            ..FabricMspConfig::default()
        }
        .encode_to_vec(),
    };
    use msp_role::MspRoleType::{Admin, Member};
    ConfigGroup {
        version: 0,
        groups: HashMap::new(),
        values: HashMap::from([("MSP".to_string(), value(&msp))]),
        policies: HashMap::from([
            ("Readers".to_string(), signed_by_role(mspid, Member)),
            ("Writers".to_string(), signed_by_role(mspid, Member)),
            ("Admins".to_string(), signed_by_role(mspid, Admin)),
            ("Endorsement".to_string(), signed_by_role(mspid, Member)),
        ]),
        mod_policy: ADMINS.into(),
    }
}

/// The channel's configuration: the channel group with an `Application` group of `orgs`.
pub fn channel_config<'a>(orgs: impl IntoIterator<Item = &'a Organization>) -> Config {
    use implicit_meta_policy::Rule::{Any, Majority};
    let standard = |extra: &[(&str, ConfigPolicy)]| {
        let mut policies = HashMap::from([
            ("Readers".to_string(), implicit_meta("Readers", Any)),
            ("Writers".to_string(), implicit_meta("Writers", Any)),
            ("Admins".to_string(), implicit_meta("Admins", Majority)),
        ]);
        for (name, policy) in extra {
            policies.insert(name.to_string(), policy.clone());
        }
        policies
    };
    let application = ConfigGroup {
        version: 0,
        groups: orgs
            .into_iter()
            .map(|org| (org.mspid().to_string(), org_group(org)))
            .collect(),
        values: HashMap::from([("Capabilities".to_string(), capabilities("V2_0"))]),
        policies: standard(&[
            ("Endorsement", implicit_meta("Endorsement", Majority)),
            (
                "LifecycleEndorsement",
                implicit_meta("Endorsement", Majority),
            ),
        ]),
        mod_policy: ADMINS.into(),
    };
    Config {
        sequence: 0,
        channel_group: Some(ConfigGroup {
            version: 0,
            groups: HashMap::from([("Application".to_string(), application)]),
            values: HashMap::from([
                (
                    "HashingAlgorithm".to_string(),
                    value(&HashingAlgorithm {
                        name: "SHA256".into(),
                    }),
                ),
                (
                    "BlockDataHashingStructure".to_string(),
                    value(&BlockDataHashingStructure { width: u32::MAX }),
                ),
                ("Capabilities".to_string(), capabilities("V2_0")),
            ]),
            policies: standard(&[]),
            mod_policy: ADMINS.into(),
        }),
    }
}

/// Block 0 of `channel`: the config block for `orgs`, made at `at`; `nonce` makes its tx id
/// (`hex(sha256(nonce))`, no creator: nobody signs a genesis block here, as with configtxgen's).
pub fn config_block<'a>(
    channel: &str,
    orgs: impl IntoIterator<Item = &'a Organization>,
    at: SystemTime,
    nonce: &[u8],
) -> Block {
    let channel_header = ChannelHeader {
        r#type: HeaderType::Config as i32,
        version: 0,
        timestamp: Some(timestamp(at)),
        channel_id: channel.into(),
        tx_id: hex::encode(Sha256::digest(nonce)),
        epoch: 0,
        extension: Vec::new(),
        tls_cert_hash: Vec::new(),
    };
    let signature_header = SignatureHeader {
        creator: Vec::new(),
        nonce: nonce.to_vec(),
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec(),
            signature_header: signature_header.encode_to_vec(),
        }),
        data: ConfigEnvelope {
            config: Some(channel_config(orgs)),
            last_update: None,
        }
        .encode_to_vec(),
    };
    let envelope = Envelope {
        payload: payload.encode_to_vec(),
        signature: Vec::new(),
    };
    // new_block's metadata already names block 0 as the last config block.
    new_block(
        0,
        Vec::new(),
        vec![envelope.encode_to_vec()],
        &[TxValidationCode::Valid],
    )
}

/// The header type of a logged envelope (`None` when it does not decode that far).
pub fn envelope_type(envelope: &[u8]) -> Option<i32> {
    let envelope = Envelope::decode(envelope).ok()?;
    let payload = Payload::decode(envelope.payload.as_slice()).ok()?;
    let header = payload.header?;
    Some(
        ChannelHeader::decode(header.channel_header.as_slice())
            .ok()?
            .r#type,
    )
}

/// Whether `block` is a config block: exactly one envelope, of type `CONFIG`.
pub fn is_config_block(block: &Block) -> bool {
    match block.data.as_ref().map(|d| d.data.as_slice()) {
        Some([only]) => envelope_type(only) == Some(HeaderType::Config as i32),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::commit::blocklog::block_data_hash;
    use crate::proto::common::{BlockMetadataIndex, LastConfig, Metadata};

    fn org() -> Organization {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        Organization::new("Org1MSP", vec![cert.der().to_vec()], vec![], vec![]).unwrap()
    }

    #[test]
    fn block_zero_is_a_config_block_with_the_orgs_msp() {
        let org = org();
        let block = config_block("mychannel", [&org], SystemTime::now(), &[7; 24]);
        let header = block.header.as_ref().unwrap();
        assert_eq!(header.number, 0);
        assert!(header.previous_hash.is_empty());
        assert_eq!(
            header.data_hash,
            block_data_hash(block.data.as_ref().unwrap())
        );
        assert!(is_config_block(&block));
        let envelope = Envelope::decode(block.data.as_ref().unwrap().data[0].as_slice()).unwrap();
        let payload = Payload::decode(envelope.payload.as_slice()).unwrap();
        let config = ConfigEnvelope::decode(payload.data.as_slice())
            .unwrap()
            .config
            .unwrap();
        let application = &config.channel_group.as_ref().unwrap().groups["Application"];
        let msp = MspConfig::decode(application.groups["Org1MSP"].values["MSP"].value.as_slice())
            .unwrap();
        let fabric = FabricMspConfig::decode(msp.config.as_slice()).unwrap();
        assert_eq!(fabric.name, "Org1MSP");
        assert_eq!(fabric.root_certs, pems(org.roots()));
        let metadata = &block.metadata.as_ref().unwrap().metadata;
        assert_eq!(
            metadata[BlockMetadataIndex::TransactionsFilter as usize],
            [0]
        );
        assert_eq!(
            LastConfig::decode(
                Metadata::decode(metadata[BlockMetadataIndex::LastConfig as usize].as_slice())
                    .unwrap()
                    .value
                    .as_slice()
            )
            .unwrap()
            .index,
            0
        );
    }

    #[test]
    fn transaction_blocks_are_not_config_blocks() {
        let block = new_block(0, Vec::new(), vec![b"garbage".to_vec()], &[]);
        assert!(!is_config_block(&block));
        assert!(!is_config_block(&new_block(0, Vec::new(), vec![], &[])));
    }
}
