//! Fabric identities: the endorser's signing identity loaded from an MSP folder, the organisations
//! whose members may send proposals (mspid → root and intermediate CAs), and the validation of a
//! proposal's creator (SerializedIdentity → X.509 chain to the org's root, validity period,
//! ECDSA P-256 signature with low-S as Fabric requires).
//!
//! Everything here is plain data and functions; the only IO is reading an MSP folder
//! ([`msp`]), kept apart from the checks.
pub mod ecdsa;
pub mod msp;
pub mod trust;

use p256::ecdsa::{SigningKey, VerifyingKey};
use p256::pkcs8::DecodePrivateKey;
use prost::Message;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::proto::msp::SerializedIdentity;

pub use ecdsa::SignatureError;
pub use msp::{MspError, load_organization, load_signing_identity};
pub use trust::{Creator, CreatorError, Organization, TrustStore};

/// A certificate or key that cannot serve as a Fabric identity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("not a PEM X.509 certificate: {0}")]
    Certificate(String),
    #[error("not a PEM ECDSA P-256 private key (PKCS#8 or SEC1)")]
    PrivateKey,
    #[error("the certificate's public key is not an ECDSA P-256 key: {0}")]
    UnsupportedKey(String),
    #[error("the private key does not belong to the certificate")]
    KeyMismatch,
    #[error("an MSP id must not be empty")]
    EmptyMspId,
}

/// Parses a single PEM certificate into its DER bytes, checking that it is X.509.
pub fn certificate_der_from_pem(pem: &[u8]) -> Result<Vec<u8>, IdentityError> {
    let (_, parsed) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    if parsed.label != "CERTIFICATE" {
        return Err(IdentityError::Certificate(format!(
            "PEM label is {:?}",
            parsed.label
        )));
    }
    X509Certificate::from_der(&parsed.contents)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    Ok(parsed.contents)
}

/// PEM text of a DER certificate, as Go's `pem.EncodeToMemory` writes it (64-column base64):
/// the form Fabric puts into `SerializedIdentity.id_bytes`.
pub fn certificate_pem(der: &[u8]) -> String {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in encoded.as_bytes().chunks(64) {
        // base64 output is ASCII.
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// The ECDSA P-256 public key of a DER certificate.
pub fn certificate_p256_key(cert_der: &[u8]) -> Result<VerifyingKey, IdentityError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| IdentityError::Certificate(e.to_string()))?;
    let spki = cert.public_key();
    VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data).map_err(|_| {
        IdentityError::UnsupportedKey(format!("algorithm {}", spki.algorithm.algorithm))
    })
}

/// Parses a PEM private key: PKCS#8 (`PRIVATE KEY`, what cryptogen and fabric-ca write) or
/// SEC1 (`EC PRIVATE KEY`).
pub fn parse_private_key_pem(pem: &str) -> Result<SigningKey, IdentityError> {
    if let Ok(key) = SigningKey::from_pkcs8_pem(pem) {
        return Ok(key);
    }
    p256::SecretKey::from_sec1_pem(pem)
        .map(SigningKey::from)
        .map_err(|_| IdentityError::PrivateKey)
}

/// Fabric's `SerializedIdentity{mspid, id_bytes = certificate PEM}` bytes.
pub fn serialize_identity(mspid: &str, cert_pem: &[u8]) -> Vec<u8> {
    SerializedIdentity {
        mspid: mspid.to_string(),
        id_bytes: cert_pem.to_vec(),
    }
    .encode_to_vec()
}

/// The endorser's identity: an MSP id, an X.509 certificate and its P-256 private key.
#[derive(Clone)]
pub struct SigningIdentity {
    mspid: String,
    cert_pem: Vec<u8>,
    cert_der: Vec<u8>,
    signer: ecdsa::EcdsaSigner,
    serialized: Vec<u8>,
}

impl std::fmt::Debug for SigningIdentity {
    // Never print the private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("mspid", &self.mspid)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// Builds an identity from PEM texts, checking that the key belongs to the certificate.
    pub fn from_pem(mspid: &str, cert_pem: &[u8], key_pem: &str) -> Result<Self, IdentityError> {
        let key = parse_private_key_pem(key_pem)?;
        Self::new(mspid, cert_pem, key)
    }

    /// Builds an identity from a PEM certificate and a key, checking that they belong together.
    pub fn new(mspid: &str, cert_pem: &[u8], key: SigningKey) -> Result<Self, IdentityError> {
        if mspid.is_empty() {
            return Err(IdentityError::EmptyMspId);
        }
        let cert_der = certificate_der_from_pem(cert_pem)?;
        if certificate_p256_key(&cert_der)? != *key.verifying_key() {
            return Err(IdentityError::KeyMismatch);
        }
        Ok(Self {
            mspid: mspid.to_string(),
            serialized: serialize_identity(mspid, cert_pem),
            cert_pem: cert_pem.to_vec(),
            cert_der,
            signer: ecdsa::EcdsaSigner::new(key),
        })
    }

    pub fn mspid(&self) -> &str {
        &self.mspid
    }

    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The `SerializedIdentity` bytes: what goes into `Endorsement.endorser` or a creator field.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        self.signer.verifying_key()
    }

    /// Low-S DER ECDSA-SHA256 signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.signer.sign(message)
    }

    /// Low-S DER ECDSA-SHA256 signature over the concatenation of `parts`, without copying them.
    pub fn sign_parts(&self, parts: &[&[u8]]) -> Vec<u8> {
        self.signer.sign_parts(parts)
    }
}
