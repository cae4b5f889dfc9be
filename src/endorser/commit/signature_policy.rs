//! Evaluates Fabric signature policies (`SignaturePolicyEnvelope`: N-out-of over MSP role
//! principals) against the identities that endorsed a transaction. Used for collection-level
//! endorsement policies. Like Fabric's `cauthdsl`, each identity satisfies at most one principal,
//! and a sub-policy that fails gives back the identities it tried.
use prost::Message;

use crate::proto::common::{SignaturePolicy, SignaturePolicyEnvelope, signature_policy};
use crate::proto::msp::{MspRole, msp_principal, msp_role};

/// A counted endorser: its organisation and NodeOU roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    pub mspid: String,
    pub organizational_units: Vec<String>,
}

impl Signer {
    fn has_role(&self, role: msp_role::MspRoleType) -> bool {
        let ou = |name: &str| self.organizational_units.iter().any(|o| o == name);
        match role {
            msp_role::MspRoleType::Member => true,
            msp_role::MspRoleType::Admin => ou("admin"),
            msp_role::MspRoleType::Client => ou("client"),
            msp_role::MspRoleType::Peer => ou("peer"),
            msp_role::MspRoleType::Orderer => ou("orderer"),
        }
    }
}

/// Whether `signers` satisfy `policy`. Principals other than MSP roles never match.
pub fn is_satisfied(policy: &SignaturePolicyEnvelope, signers: &[Signer]) -> bool {
    let Some(rule) = &policy.rule else {
        return false;
    };
    let mut used = vec![false; signers.len()];
    evaluate(rule, policy, signers, &mut used)
}

fn evaluate(
    rule: &SignaturePolicy,
    policy: &SignaturePolicyEnvelope,
    signers: &[Signer],
    used: &mut [bool],
) -> bool {
    match &rule.r#type {
        Some(signature_policy::Type::SignedBy(index)) => {
            let Some(principal) = usize::try_from(*index)
                .ok()
                .and_then(|i| policy.identities.get(i))
            else {
                return false;
            };
            if principal.principal_classification != msp_principal::Classification::Role as i32 {
                return false;
            }
            let Ok(role) = MspRole::decode(principal.principal.as_slice()) else {
                return false;
            };
            let Ok(role_type) = msp_role::MspRoleType::try_from(role.role) else {
                return false;
            };
            for (signer, taken) in signers.iter().zip(used.iter_mut()) {
                if !*taken && signer.mspid == role.msp_identifier && signer.has_role(role_type) {
                    *taken = true;
                    return true;
                }
            }
            false
        }
        Some(signature_policy::Type::NOutOf(n_out_of)) => {
            let mut satisfied = 0;
            for sub in &n_out_of.rules {
                let mut attempt = used.to_vec();
                if evaluate(sub, policy, signers, &mut attempt) {
                    used.copy_from_slice(&attempt);
                    satisfied += 1;
                }
            }
            satisfied >= n_out_of.n
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::lifecycle::collections::signature_policy_from_str;

    fn signer(mspid: &str, ou: &str) -> Signer {
        Signer {
            mspid: mspid.into(),
            organizational_units: vec![ou.into()],
        }
    }

    #[test]
    fn policies_are_evaluated_like_fabrics_cauthdsl() {
        let org1_peer = signer("Org1MSP", "peer");
        let org2_peer = signer("Org2MSP", "peer");
        let cases = [
            ("OR('Org1MSP.member')", vec![org1_peer.clone()], true),
            ("OR('Org2MSP.member')", vec![org1_peer.clone()], false),
            ("OR('Org1MSP.peer')", vec![org1_peer.clone()], true),
            ("OR('Org1MSP.admin')", vec![org1_peer.clone()], false),
            (
                "AND('Org1MSP.member', 'Org2MSP.member')",
                vec![org1_peer.clone()],
                false,
            ),
            (
                "AND('Org1MSP.member', 'Org2MSP.member')",
                vec![org1_peer.clone(), org2_peer.clone()],
                true,
            ),
            // One identity cannot stand for two principals.
            (
                "AND('Org1MSP.member', 'Org1MSP.peer')",
                vec![org1_peer.clone()],
                false,
            ),
            (
                "OutOf(1, 'Org3MSP.member', 'Org2MSP.member')",
                vec![org2_peer.clone()],
                true,
            ),
            ("OR('Org1MSP.member')", vec![], false),
        ];
        for (text, signers, expected) in cases {
            let policy = signature_policy_from_str(text).unwrap();
            assert_eq!(is_satisfied(&policy, &signers), expected, "{text}");
        }
        assert!(!is_satisfied(
            &SignaturePolicyEnvelope::default(),
            &[org1_peer]
        ));
    }
}
