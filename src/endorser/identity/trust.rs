//! Trusted organisations and the validation of a proposal's creator.
//!
//! A creator is a `SerializedIdentity{mspid, id_bytes = X.509 PEM}`. It is accepted when its
//! mspid names a trusted organisation, its certificate is an end-entity ECDSA P-256 certificate
//! that chains (issuer name and signature, through the org's intermediates) to one of the org's
//! root CAs, and every certificate of that chain is within its validity period at the given time.
//! Chain validation is the expensive part, so successful chains are remembered in a bounded
//! cache keyed by the creator bytes; the validity period is rechecked on every use.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use p256::ecdsa::VerifyingKey;
use prost::Message;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::ecdsa::{self, SignatureError};
use super::{IdentityError, certificate_der_from_pem, certificate_p256_key};
use crate::proto::msp::SerializedIdentity;

/// Longest chain walked from a creator to a root (creator, intermediates..., root).
const MAX_CHAIN_LENGTH: usize = 8;
/// Distinct validated creators remembered; a client normally reuses one identity.
const CREATOR_CACHE_CAPACITY: usize = 4096;

/// Why an organisation's CA certificates were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrganizationError {
    #[error("organisation {mspid}: no root CA certificate")]
    NoRoots { mspid: String },
    #[error("organisation {mspid}: {reason}")]
    Certificate { mspid: String, reason: String },
    #[error("organisation {mspid}: {subject} is not a CA certificate (basicConstraints CA:TRUE)")]
    NotCa { mspid: String, subject: String },
    #[error("an MSP id must not be empty")]
    EmptyMspId,
}

/// Why a creator was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CreatorError {
    #[error("the creator is not a valid SerializedIdentity: {0}")]
    Malformed(String),
    #[error("the creator's organisation {0:?} is not trusted by this endorser")]
    UnknownOrganization(String),
    #[error("the creator's certificate (org {mspid}) is not a valid X.509 certificate: {reason}")]
    BadCertificate { mspid: String, reason: String },
    #[error(
        "the creator's certificate {subject} (org {mspid}) is a CA certificate, not an identity"
    )]
    CaCertificate { mspid: String, subject: String },
    #[error("the creator's certificate {subject} (org {mspid}): {reason}")]
    UnsupportedKey {
        mspid: String,
        subject: String,
        reason: String,
    },
    #[error(
        "the creator's certificate {subject} does not chain to a root CA of organisation {mspid}: {reason}"
    )]
    Untrusted {
        mspid: String,
        subject: String,
        reason: String,
    },
    #[error("the creator's certificate {subject} (org {mspid}) has expired (valid until {until})")]
    Expired {
        mspid: String,
        subject: String,
        until: String,
    },
    #[error(
        "the creator's certificate {subject} (org {mspid}) is not valid yet (valid from {from})"
    )]
    NotYetValid {
        mspid: String,
        subject: String,
        from: String,
    },
}

/// An organisation whose members may send proposals: its MSP id and its CA certificates (DER).
#[derive(Debug, Clone)]
pub struct Organization {
    mspid: String,
    roots: Vec<Vec<u8>>,
    intermediates: Vec<Vec<u8>>,
    tls_roots: Vec<Vec<u8>>,
}

fn parse_ca(mspid: &str, der: &[u8]) -> Result<(), OrganizationError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| OrganizationError::Certificate {
        mspid: mspid.to_string(),
        reason: e.to_string(),
    })?;
    if !cert.is_ca() {
        return Err(OrganizationError::NotCa {
            mspid: mspid.to_string(),
            subject: cert.subject().to_string(),
        });
    }
    Ok(())
}

impl Organization {
    /// An organisation from DER CA certificates; every one must be a CA certificate.
    pub fn new(
        mspid: &str,
        roots: Vec<Vec<u8>>,
        intermediates: Vec<Vec<u8>>,
        tls_roots: Vec<Vec<u8>>,
    ) -> Result<Self, OrganizationError> {
        if mspid.is_empty() {
            return Err(OrganizationError::EmptyMspId);
        }
        if roots.is_empty() {
            return Err(OrganizationError::NoRoots {
                mspid: mspid.to_string(),
            });
        }
        for der in roots.iter().chain(&intermediates).chain(&tls_roots) {
            parse_ca(mspid, der)?;
        }
        Ok(Self {
            mspid: mspid.to_string(),
            roots,
            intermediates,
            tls_roots,
        })
    }

    /// An organisation from PEM root and intermediate certificates (one certificate per PEM text).
    pub fn from_pems(
        mspid: &str,
        roots: &[&[u8]],
        intermediates: &[&[u8]],
    ) -> Result<Self, OrganizationError> {
        let to_der = |pems: &[&[u8]]| -> Result<Vec<Vec<u8>>, OrganizationError> {
            pems.iter()
                .map(|pem| {
                    certificate_der_from_pem(pem).map_err(|e| OrganizationError::Certificate {
                        mspid: mspid.to_string(),
                        reason: e.to_string(),
                    })
                })
                .collect()
        };
        Self::new(mspid, to_der(roots)?, to_der(intermediates)?, Vec::new())
    }

    pub fn mspid(&self) -> &str {
        &self.mspid
    }

    /// Root CA certificates (DER) that creators must chain to.
    pub fn roots(&self) -> &[Vec<u8>] {
        &self.roots
    }

    pub fn intermediates(&self) -> &[Vec<u8>] {
        &self.intermediates
    }

    /// TLS root CA certificates (DER) from the MSP's `tlscacerts/`, for TLS client authentication.
    pub fn tls_roots(&self) -> &[Vec<u8>] {
        &self.tls_roots
    }
}

/// A creator whose certificate chains to a trusted organisation.
#[derive(Debug, Clone)]
pub struct Creator {
    mspid: String,
    subject: String,
    organizational_units: Vec<String>,
    cert_der: Vec<u8>,
    key: VerifyingKey,
    /// `key` as uncompressed SEC1 bytes, the form the verifier takes.
    key_bytes: Vec<u8>,
    /// The chain's common validity window, Unix seconds, and its human form.
    valid_from: i64,
    valid_until: i64,
    valid_from_text: String,
    valid_until_text: String,
}

impl Creator {
    pub fn mspid(&self) -> &str {
        &self.mspid
    }

    /// The certificate's subject distinguished name, e.g. `CN=User1@org1.example.com, OU=client`.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The subject's OU values; with Fabric NodeOUs they carry the role (`client`, `admin`, `peer`).
    pub fn organizational_units(&self) -> &[String] {
        &self.organizational_units
    }

    /// Whether the subject carries the Fabric NodeOU `admin`.
    pub fn is_admin(&self) -> bool {
        self.organizational_units.iter().any(|ou| ou == "admin")
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies the creator's DER ECDSA-SHA256 signature over `message` (low-S only).
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> Result<(), SignatureError> {
        ecdsa::verify_parts(&self.key_bytes, &[message], der_signature)
    }

    /// Verifies a signature over the concatenation of `parts` (e.g. an endorsement's
    /// `payload || endorser`) without copying them.
    pub fn verify_parts(
        &self,
        parts: &[&[u8]],
        der_signature: &[u8],
    ) -> Result<(), SignatureError> {
        ecdsa::verify_parts(&self.key_bytes, parts, der_signature)
    }

    fn check_validity(&self, at: SystemTime) -> Result<(), CreatorError> {
        let now = unix_seconds(at);
        if now < self.valid_from {
            return Err(CreatorError::NotYetValid {
                mspid: self.mspid.clone(),
                subject: self.subject.clone(),
                from: self.valid_from_text.clone(),
            });
        }
        if now > self.valid_until {
            return Err(CreatorError::Expired {
                mspid: self.mspid.clone(),
                subject: self.subject.clone(),
                until: self.valid_until_text.clone(),
            });
        }
        Ok(())
    }
}

fn unix_seconds(at: SystemTime) -> i64 {
    match at.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// Validated creators, first in first out.
#[derive(Default)]
struct CreatorCache {
    entries: HashMap<Vec<u8>, Arc<Creator>>,
    order: VecDeque<Vec<u8>>,
}

impl CreatorCache {
    fn get(&self, creator: &[u8]) -> Option<Arc<Creator>> {
        self.entries.get(creator).cloned()
    }

    fn insert(&mut self, creator: &[u8], validated: Arc<Creator>) {
        if self.entries.contains_key(creator) {
            return;
        }
        if self.order.len() >= CREATOR_CACHE_CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.entries.remove(&oldest);
        }
        self.order.push_back(creator.to_vec());
        self.entries.insert(creator.to_vec(), validated);
    }
}

/// The organisations this endorser trusts, by MSP id.
#[derive(Default)]
pub struct TrustStore {
    organizations: HashMap<String, Organization>,
    cache: Mutex<CreatorCache>,
}

impl std::fmt::Debug for TrustStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut mspids: Vec<&String> = self.organizations.keys().collect();
        mspids.sort();
        f.debug_struct("TrustStore")
            .field("organizations", &mspids)
            .finish_non_exhaustive()
    }
}

impl TrustStore {
    pub fn new(organizations: impl IntoIterator<Item = Organization>) -> Self {
        Self {
            organizations: organizations
                .into_iter()
                .map(|org| (org.mspid.clone(), org))
                .collect(),
            cache: Mutex::default(),
        }
    }

    pub fn organization(&self, mspid: &str) -> Option<&Organization> {
        self.organizations.get(mspid)
    }

    /// The trusted organisations, ordered by MSP id.
    pub fn organizations(&self) -> Vec<&Organization> {
        let mut orgs: Vec<&Organization> = self.organizations.values().collect();
        orgs.sort_by(|a, b| a.mspid.cmp(&b.mspid));
        orgs
    }

    /// Number of trusted organisations.
    pub fn organization_count(&self) -> usize {
        self.organizations.len()
    }

    /// Validates serialized creator bytes at time `at`; see the module documentation.
    pub fn validate_creator(
        &self,
        creator: &[u8],
        at: SystemTime,
    ) -> Result<Arc<Creator>, CreatorError> {
        let cached = self.cache.lock().ok().and_then(|cache| cache.get(creator));
        let validated = match cached {
            Some(validated) => validated,
            None => {
                let validated = Arc::new(self.validate_chain(creator)?);
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(creator, validated.clone());
                }
                validated
            }
        };
        validated.check_validity(at)?;
        Ok(validated)
    }

    fn validate_chain(&self, creator: &[u8]) -> Result<Creator, CreatorError> {
        let identity = SerializedIdentity::decode(creator)
            .map_err(|e| CreatorError::Malformed(e.to_string()))?;
        let mspid = identity.mspid;
        let org = self
            .organizations
            .get(&mspid)
            .ok_or_else(|| CreatorError::UnknownOrganization(mspid.clone()))?;
        let bad_cert = |reason: String| CreatorError::BadCertificate {
            mspid: mspid.clone(),
            reason,
        };
        let cert_der =
            certificate_der_from_pem(&identity.id_bytes).map_err(|e| bad_cert(e.to_string()))?;
        let (_, leaf) =
            X509Certificate::from_der(&cert_der).map_err(|e| bad_cert(e.to_string()))?;
        let subject = leaf.subject().to_string();
        if leaf.is_ca() {
            return Err(CreatorError::CaCertificate { mspid, subject });
        }
        let key = certificate_p256_key(&cert_der).map_err(|e| CreatorError::UnsupportedKey {
            mspid: mspid.clone(),
            subject: subject.clone(),
            reason: match e {
                IdentityError::UnsupportedKey(reason) => {
                    format!("only ECDSA P-256 creators are supported ({reason})")
                }
                other => other.to_string(),
            },
        })?;
        let window = chain_window(org, &leaf).map_err(|reason| CreatorError::Untrusted {
            mspid: mspid.clone(),
            subject: subject.clone(),
            reason,
        })?;
        Ok(Creator {
            organizational_units: leaf
                .subject()
                .iter_organizational_unit()
                .filter_map(|ou| ou.as_str().ok().map(str::to_string))
                .collect(),
            mspid,
            subject,
            cert_der,
            key_bytes: ecdsa::public_key_bytes(&key),
            key,
            valid_from: window.from,
            valid_until: window.until,
            valid_from_text: window.from_text,
            valid_until_text: window.until_text,
        })
    }
}

/// The intersection of the validity periods of a chain's certificates.
struct Window {
    from: i64,
    until: i64,
    from_text: String,
    until_text: String,
}

impl Window {
    fn of(cert: &X509Certificate<'_>) -> Self {
        let validity = cert.validity();
        Self {
            from: validity.not_before.timestamp(),
            until: validity.not_after.timestamp(),
            from_text: validity.not_before.to_string(),
            until_text: validity.not_after.to_string(),
        }
    }

    fn narrow(&mut self, cert: &X509Certificate<'_>) {
        let other = Self::of(cert);
        if other.from > self.from {
            self.from = other.from;
            self.from_text = other.from_text;
        }
        if other.until < self.until {
            self.until = other.until;
            self.until_text = other.until_text;
        }
    }
}

/// CA certificates were checked when the organisation was built, so none is skipped here.
fn parse_all(ders: &[Vec<u8>]) -> Vec<X509Certificate<'_>> {
    ders.iter()
        .filter_map(|der| X509Certificate::from_der(der).ok().map(|(_, cert)| cert))
        .collect()
}

/// Walks from `leaf` to one of the org's roots, matching issuer names and verifying each
/// signature with the issuer's key. Returns the chain's validity window, or why it failed.
fn chain_window(org: &Organization, leaf: &X509Certificate<'_>) -> Result<Window, String> {
    let roots = parse_all(&org.roots);
    let intermediates = parse_all(&org.intermediates);
    let mut window = Window::of(leaf);
    let mut current = leaf.clone();
    for _ in 0..MAX_CHAIN_LENGTH {
        let signed_by = |issuer: &&X509Certificate<'_>| {
            issuer.subject().as_raw() == current.issuer().as_raw()
                && current.verify_signature(Some(issuer.public_key())).is_ok()
        };
        if let Some(root) = roots.iter().find(signed_by) {
            window.narrow(root);
            return Ok(window);
        }
        match intermediates.iter().find(signed_by) {
            Some(intermediate) => {
                window.narrow(intermediate);
                current = intermediate.clone();
            }
            None => {
                return Err(format!(
                    "no CA certificate of the organisation named {} signed {}",
                    current.issuer(),
                    current.subject()
                ));
            }
        }
    }
    Err(format!(
        "the chain is longer than {MAX_CHAIN_LENGTH} certificates"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endorser::identity::serialize_identity;
    use crate::endorser::node::devcrypto::{DevCa, LeafSpec};

    #[test]
    fn the_creator_cache_forgets_the_oldest_beyond_capacity() {
        let ca = DevCa::generate("ca.example.com", "example.com").unwrap();
        let org = Organization::from_pems("Org1MSP", &[ca.cert_pem().as_bytes()], &[]).unwrap();
        let store = TrustStore::new([org]);
        let user = ca
            .issue(&LeafSpec::identity("User1@example.com", "client"))
            .unwrap();
        let creator = serialize_identity("Org1MSP", user.cert_pem.as_bytes());
        let validated = store.validate_creator(&creator, SystemTime::now()).unwrap();
        let mut cache = CreatorCache::default();
        for i in 0..CREATOR_CACHE_CAPACITY + 1 {
            cache.insert(&i.to_le_bytes(), validated.clone());
        }
        assert_eq!(cache.entries.len(), CREATOR_CACHE_CAPACITY);
        assert!(cache.get(&0usize.to_le_bytes()).is_none());
        assert!(cache.get(&CREATOR_CACHE_CAPACITY.to_le_bytes()).is_some());
        // The store remembered the validated creator.
        assert!(store.cache.lock().unwrap().get(&creator).is_some());
    }
}
