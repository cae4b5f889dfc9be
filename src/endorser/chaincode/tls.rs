//! TLS for the chaincode stream: one CA per endorser process, a fresh client certificate for every
//! launch, and a server certificate for the endorser's chaincode listener, all ECDSA P-256.
//!
//! Fabric's registration check is reproduced by hashing: a REGISTER is only accepted when the
//! SHA-256 of the client certificate the chaincode presented equals the hash of the certificate
//! issued for that launch (see [`cert_hash`] and the launcher).
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest, Sha256};

/// SHA-256 of a certificate's DER bytes: what a launch remembers about the certificate it issued.
pub type CertHash = [u8; 32];

/// Hashes a DER certificate the way the registration check compares them.
pub fn cert_hash(der: &[u8]) -> CertHash {
    Sha256::digest(der).into()
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("invalid server name {name:?} for the chaincode listener certificate: {reason}")]
    ServerName { name: String, reason: String },
    #[error("building the rustls server configuration failed: {0}")]
    Rustls(String),
}

/// A certificate and its private key, both PEM, plus the DER and hash of the certificate.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub hash: CertHash,
}

impl std::fmt::Debug for IssuedCert {
    // Never print private keys into logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("hash", &hex::encode(self.hash))
            .finish_non_exhaustive()
    }
}

/// The per-process certificate authority for the chaincode stream.
pub struct ChaincodeCa {
    issuer: Issuer<'static, KeyPair>,
    root_pem: String,
    root_der: Vec<u8>,
}

impl std::fmt::Debug for ChaincodeCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChaincodeCa")
            .field("root_hash", &hex::encode(cert_hash(&self.root_der)))
            .finish_non_exhaustive()
    }
}

/// The CA lives as long as the endorser process; a restart makes a new one.
const CA_VALIDITY: time::Duration = time::Duration::days(3650);
/// A client certificate is checked once, at REGISTER; an established stream outlives it anyway.
const LEAF_VALIDITY: time::Duration = time::Duration::days(365);
/// Tolerates clocks that disagree a little between endorser and chaincode hosts.
const CLOCK_SKEW: time::Duration = time::Duration::hours(1);

fn set_validity(params: &mut CertificateParams, validity: time::Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + validity;
}

fn new_key() -> Result<KeyPair, TlsError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

impl ChaincodeCa {
    /// Generates a fresh CA (new key, self-signed root); `common_name` identifies the endorser.
    pub fn generate(common_name: &str) -> Result<Self, TlsError> {
        let key = new_key()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "chaincode-operator");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        set_validity(&mut params, CA_VALIDITY);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let root = params.self_signed(&key)?;
        Ok(Self {
            root_pem: root.pem(),
            root_der: root.der().to_vec(),
            issuer: Issuer::new(params, key),
        })
    }

    /// The root certificate, PEM: what the chaincode trusts for the peer (`peer.crt`).
    pub fn root_pem(&self) -> &str {
        &self.root_pem
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    /// A fresh client certificate for one launch of `chaincode_id` (new key every time).
    pub fn issue_client(&self, chaincode_id: &str) -> Result<IssuedCert, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, chaincode_id);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params)
    }

    /// The certificate the endorser's chaincode listener presents. `names` are DNS names or IP
    /// addresses the chaincode dials (the host part of `--peer.address`).
    pub fn issue_server(&self, names: &[String]) -> Result<IssuedCert, TlsError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            let san = match name.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => {
                    SanType::DnsName(name.clone().try_into().map_err(|e: rcgen::Error| {
                        TlsError::ServerName {
                            name: name.clone(),
                            reason: e.to_string(),
                        }
                    })?)
                }
            };
            params.subject_alt_names.push(san);
        }
        let common_name = names.first().map_or("chaincode-listener", String::as_str);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params)
    }

    /// The listener certificate for chaincode dialling `peer_address` (HOST:PORT): names the host
    /// plus `localhost` and `127.0.0.1`, so local chaincode can dial either.
    pub fn issue_listener(&self, peer_address: &str) -> Result<IssuedCert, TlsError> {
        self.issue_server(&listener_names(peer_address))
    }

    fn issue(&self, mut params: CertificateParams) -> Result<IssuedCert, TlsError> {
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, LEAF_VALIDITY);
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_der = cert.der().to_vec();
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            hash: cert_hash(&cert_der),
            cert_der,
        })
    }

    /// tonic server TLS for the chaincode listener: presents `server`, requires a client
    /// certificate signed by this CA.
    pub fn tonic_server_tls(&self, server: &IssuedCert) -> tonic::transport::ServerTlsConfig {
        tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(
                &server.cert_pem,
                &server.key_pem,
            ))
            .client_ca_root(tonic::transport::Certificate::from_pem(&self.root_pem))
    }

    /// The same policy as a rustls server configuration, for listeners not built on tonic.
    pub fn rustls_server_config(
        &self,
        server: &IssuedCert,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.root_der.clone()))
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots.into(),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let key_der = key_der_from_pem(&server.key_pem)?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![CertificateDer::from(server.cert_der.clone())], key_der)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        // gRPC runs over HTTP/2.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The host of HOST:PORT or `[v6]:PORT` (the whole text when it has no numeric port).
pub fn address_host(address: &str) -> &str {
    let host = match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => address,
    };
    host.trim_start_matches('[').trim_end_matches(']')
}

/// The names a listener certificate for `peer_address` (HOST:PORT, `[v6]:PORT`) must carry.
pub fn listener_names(peer_address: &str) -> Vec<String> {
    let host = address_host(peer_address);
    let mut names = Vec::new();
    for name in [host, "localhost", "127.0.0.1"] {
        if !name.is_empty() && !names.iter().any(|n: &String| n == name) {
            names.push(name.to_string());
        }
    }
    names
}

fn key_der_from_pem(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let key = KeyPair::from_pem(pem)?;
    Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        key.serialize_der(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::*;

    /// Runs the same client-certificate verification the listener's rustls config performs.
    fn client_verifier_accepts(ca: &ChaincodeCa, leaf_der: &[u8]) -> bool {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.root_der().to_vec()))
            .unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .unwrap();
        verifier
            .verify_client_cert(
                &CertificateDer::from(leaf_der.to_vec()),
                &[],
                rustls::pki_types::UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn client_certs_are_fresh_per_launch_and_signed_by_the_ca() {
        let ca = ChaincodeCa::generate("endorser test").unwrap();
        let first = ca.issue_client("mycc:1.0").unwrap();
        let second = ca.issue_client("mycc:1.0").unwrap();
        assert_ne!(first.hash, second.hash);
        assert_ne!(first.key_pem, second.key_pem);
        assert_eq!(first.hash, cert_hash(&first.cert_der));

        let (_, root) = X509Certificate::from_der(ca.root_der()).unwrap();
        let (_, leaf) = X509Certificate::from_der(&first.cert_der).unwrap();
        assert_eq!(leaf.issuer(), root.subject());
        assert!(client_verifier_accepts(&ca, &first.cert_der));
        assert!(root.is_ca());
        let eku = leaf.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let cn = leaf.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "mycc:1.0");
        let now = ::time::OffsetDateTime::now_utc().unix_timestamp();
        let leaf_validity = leaf.validity();
        assert!(leaf_validity.not_before.timestamp() < now);
        let leaf_days = (leaf_validity.not_after.timestamp() - now) / 86_400;
        assert!((364..=365).contains(&leaf_days), "{leaf_days}");
        let root_days = (root.validity().not_after.timestamp() - now) / 86_400;
        assert!((3649..=3650).contains(&root_days), "{root_days}");
    }

    #[test]
    fn server_cert_names_the_listener_hosts() {
        let ca = ChaincodeCa::generate("endorser test").unwrap();
        let server = ca
            .issue_server(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        let (_, leaf) = X509Certificate::from_der(&server.cert_der).unwrap();
        let san = leaf.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            vec!["localhost".to_string(), "[127, 0, 0, 1]".into()]
        );
        assert!(ca.rustls_server_config(&server).is_ok());
    }

    #[test]
    fn listener_names_come_from_the_peer_address() {
        assert_eq!(
            listener_names("peer0.org1.example.com:7052"),
            ["peer0.org1.example.com", "localhost", "127.0.0.1"]
        );
        assert_eq!(listener_names("127.0.0.1:7052"), ["127.0.0.1", "localhost"]);
        assert_eq!(
            listener_names("[::1]:7052"),
            ["::1", "localhost", "127.0.0.1"]
        );
        assert_eq!(
            listener_names("endorser"),
            ["endorser", "localhost", "127.0.0.1"]
        );
        let ca = ChaincodeCa::generate("t").unwrap();
        assert!(ca.issue_listener("[::1]:7052").is_ok());
    }

    #[test]
    fn another_ca_does_not_verify_our_leaves() {
        let ours = ChaincodeCa::generate("a").unwrap();
        let theirs = ChaincodeCa::generate("a").unwrap();
        let leaf = theirs.issue_client("mycc:1.0").unwrap();
        assert!(!client_verifier_accepts(&ours, &leaf.cert_der));
        assert!(client_verifier_accepts(&theirs, &leaf.cert_der));
    }
}
