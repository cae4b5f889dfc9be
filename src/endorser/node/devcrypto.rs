//! Development crypto: an organisation with an identity CA, a TLS CA, the endorser's identity,
//! an admin and a user, written in Fabric's MSP folder layout (loadable by
//! [`crate::endorser::identity::msp`] and by Fabric's own tools), plus the TLS server
//! certificate of the endorser's client-facing listener. All keys are ECDSA P-256.
//!
//! Layout under the chosen directory (paths are fixed; see [`DevCryptoPaths`]):
//!
//! ```text
//! ca/ca.pem  ca/ca_sk                      identity CA (root of the MSP)
//! tlsca/tlsca.pem  tlsca/tlsca_sk          TLS CA
//! endorser/msp/{signcerts,keystore,cacerts,tlscacerts}/  config.yaml (NodeOUs)
//! endorser/tls/{server.crt,server.key,ca.crt}
//! users/Admin/msp/...   OU=admin
//! users/User1/msp/...   OU=client
//! ```
//!
//! Private keys are written with mode 0600.
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use time::{Duration, OffsetDateTime};

/// Certificates stay valid this long; a dev setup outlives many endorser restarts.
const VALIDITY: Duration = Duration::days(3650);
/// Tolerates clocks that disagree a little.
const CLOCK_SKEW: Duration = Duration::hours(1);

#[derive(Debug, thiserror::Error)]
pub enum DevCryptoError {
    #[error("generating a certificate failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{name:?} is not a valid DNS name or IP address for the TLS certificate: {reason}")]
    HostName { name: String, reason: String },
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct DevCryptoSpec {
    /// MSP id of the organisation, e.g. `Org1MSP`.
    pub mspid: String,
    /// Domain of the organisation, e.g. `org1.example.com`: names the CAs and identities.
    pub domain: String,
    /// DNS names or IP addresses of the endorser's client-facing listener (TLS SANs).
    pub tls_hosts: Vec<String>,
}

impl Default for DevCryptoSpec {
    fn default() -> Self {
        Self {
            mspid: "Org1MSP".to_string(),
            domain: "org1.example.com".to_string(),
            tls_hosts: vec!["localhost".to_string(), "127.0.0.1".to_string()],
        }
    }
}

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertAndKey {
    // Never print private keys.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertAndKey").finish_non_exhaustive()
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeafUsage {
    /// An MSP identity (signs proposals or endorsements).
    Signing,
    /// A TLS server (and client) certificate.
    Tls,
}

/// A leaf certificate to issue.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub common_name: String,
    /// Fabric NodeOU role: `client`, `admin`, `peer` or `orderer`.
    pub organizational_unit: Option<String>,
    pub usage: LeafUsage,
    /// DNS names or IP addresses (TLS certificates).
    pub hosts: Vec<String>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl LeafSpec {
    /// An MSP identity valid from an hour ago for ten years.
    pub fn identity(common_name: &str, organizational_unit: &str) -> Self {
        let now = OffsetDateTime::now_utc();
        Self {
            common_name: common_name.to_string(),
            organizational_unit: Some(organizational_unit.to_string()),
            usage: LeafUsage::Signing,
            hosts: Vec::new(),
            not_before: now - CLOCK_SKEW,
            not_after: now + VALIDITY,
        }
    }
}

/// A certificate authority that issues development certificates.
pub struct DevCa {
    issuer: Issuer<'static, KeyPair>,
    own: CertAndKey,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn new_key() -> Result<KeyPair, DevCryptoError> {
    Ok(KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?)
}

/// Subject and CA extensions shared by root and intermediate CAs.
fn ca_params(common_name: &str, organization: &str) -> Result<CertificateParams, DevCryptoError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, organization);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

impl DevCa {
    /// A self-signed root CA named `common_name` in organisation `organization`.
    pub fn new(
        common_name: &str,
        organization: &str,
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<Self, DevCryptoError> {
        let key = new_key()?;
        let mut params = ca_params(common_name, organization)?;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            own: CertAndKey {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    /// A root CA valid from an hour ago for ten years.
    pub fn generate(common_name: &str, organization: &str) -> Result<Self, DevCryptoError> {
        let now = OffsetDateTime::now_utc();
        Self::new(common_name, organization, now - CLOCK_SKEW, now + VALIDITY)
    }

    /// A CA from its certificate and private key, both PEM (e.g. `ca/ca.pem` and `ca/ca_sk` of
    /// a generated organisation), to issue more certificates under an existing root.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, DevCryptoError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            own: CertAndKey {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
            issuer,
        })
    }

    /// An intermediate CA signed by this CA.
    pub fn intermediate(
        &self,
        common_name: &str,
        organization: &str,
    ) -> Result<Self, DevCryptoError> {
        let now = OffsetDateTime::now_utc();
        let key = new_key()?;
        let mut params = ca_params(common_name, organization)?;
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + VALIDITY;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Self {
            own: CertAndKey {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            },
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA's own certificate and key.
    pub fn cert_and_key(&self) -> &CertAndKey {
        &self.own
    }

    pub fn cert_pem(&self) -> &str {
        &self.own.cert_pem
    }

    /// Issues a leaf certificate with a fresh key.
    pub fn issue(&self, leaf: &LeafSpec) -> Result<CertAndKey, DevCryptoError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, leaf.common_name.as_str());
        if let Some(ou) = &leaf.organizational_unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, ou.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.not_before = leaf.not_before;
        params.not_after = leaf.not_after;
        match leaf.usage {
            LeafUsage::Signing => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            }
            LeafUsage::Tls => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
            }
        }
        for host in &leaf.hosts {
            params.subject_alt_names.push(san(host)?);
        }
        let key = new_key()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(CertAndKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn san(host: &str) -> Result<SanType, DevCryptoError> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => Ok(SanType::IpAddress(ip)),
        Err(_) => Ok(SanType::DnsName(host.to_string().try_into().map_err(
            |e: rcgen::Error| DevCryptoError::HostName {
                name: host.to_string(),
                reason: e.to_string(),
            },
        )?)),
    }
}

/// Where one MSP folder's files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MspPaths {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl MspPaths {
    fn under(dir: PathBuf) -> Self {
        Self {
            cert: dir.join("signcerts").join("cert.pem"),
            key: dir.join("keystore").join("priv_sk"),
            dir,
        }
    }
}

/// The fixed paths of a generated development organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCryptoPaths {
    pub root: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub tls_ca_cert: PathBuf,
    pub tls_ca_key: PathBuf,
    pub endorser: MspPaths,
    pub admin: MspPaths,
    pub user: MspPaths,
    pub tls_server_cert: PathBuf,
    pub tls_server_key: PathBuf,
}

impl DevCryptoPaths {
    pub fn new(root: &Path) -> Self {
        let tls = root.join("endorser").join("tls");
        Self {
            root: root.to_path_buf(),
            ca_cert: root.join("ca").join("ca.pem"),
            ca_key: root.join("ca").join("ca_sk"),
            tls_ca_cert: root.join("tlsca").join("tlsca.pem"),
            tls_ca_key: root.join("tlsca").join("tlsca_sk"),
            endorser: MspPaths::under(root.join("endorser").join("msp")),
            admin: MspPaths::under(root.join("users").join("Admin").join("msp")),
            user: MspPaths::under(root.join("users").join("User1").join("msp")),
            tls_server_cert: tls.join("server.crt"),
            tls_server_key: tls.join("server.key"),
        }
    }

    /// The first file a complete organisation needs that is missing or empty (what a crash during
    /// a write used to leave), or None.
    pub fn first_incomplete(&self) -> Option<PathBuf> {
        let mut files = vec![
            self.ca_cert.clone(),
            self.ca_key.clone(),
            self.tls_ca_cert.clone(),
            self.tls_ca_key.clone(),
            self.tls_server_cert.clone(),
            self.tls_server_key.clone(),
            self.tls_root(),
        ];
        for msp in [&self.endorser, &self.admin, &self.user] {
            files.push(msp.cert.clone());
            files.push(msp.key.clone());
        }
        files
            .into_iter()
            .find(|f| std::fs::metadata(f).map_or(true, |m| !m.is_file() || m.len() == 0))
    }

    /// The TLS root clients trust for the endorser's listener (a copy of the TLS CA).
    pub fn tls_root(&self) -> PathBuf {
        self.tls_server_cert.with_file_name("ca.crt")
    }
}

/// A generated development organisation: its paths plus the PEMs, for callers that want them.
#[derive(Debug)]
pub struct DevCrypto {
    pub spec: DevCryptoSpec,
    pub paths: DevCryptoPaths,
    pub ca: CertAndKey,
    pub tls_ca: CertAndKey,
    pub endorser: CertAndKey,
    pub admin: CertAndKey,
    pub user: CertAndKey,
    pub tls_server: CertAndKey,
}

fn write_file(path: &Path, contents: &[u8], secret: bool) -> Result<(), DevCryptoError> {
    let mode = if secret { 0o600 } else { 0o644 };
    crate::durable::write_atomically(path, contents, Some(mode)).map_err(|source| {
        DevCryptoError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// Fabric NodeOUs: the role of an identity is the OU of its certificate.
fn node_ous_config() -> String {
    let mut config = String::from("NodeOUs:\n  Enable: true\n");
    for (key, ou) in [
        ("ClientOUIdentifier", "client"),
        ("PeerOUIdentifier", "peer"),
        ("AdminOUIdentifier", "admin"),
        ("OrdererOUIdentifier", "orderer"),
    ] {
        config.push_str(&format!(
            "  {key}:\n    Certificate: cacerts/ca.pem\n    OrganizationalUnitIdentifier: {ou}\n"
        ));
    }
    config
}

/// Writes one MSP folder: the identity's certificate and key, the CA and TLS CA, NodeOUs config.
fn write_msp(
    paths: &MspPaths,
    identity: &CertAndKey,
    ca_pem: &str,
    tls_ca_pem: &str,
) -> Result<(), DevCryptoError> {
    write_file(&paths.cert, identity.cert_pem.as_bytes(), false)?;
    write_file(&paths.key, identity.key_pem.as_bytes(), true)?;
    write_file(
        &paths.dir.join("cacerts").join("ca.pem"),
        ca_pem.as_bytes(),
        false,
    )?;
    write_file(
        &paths.dir.join("tlscacerts").join("tlsca.pem"),
        tls_ca_pem.as_bytes(),
        false,
    )?;
    write_file(
        &paths.dir.join("config.yaml"),
        node_ous_config().as_bytes(),
        false,
    )
}

/// Generates a fresh development organisation in `root`, which it owns (what is there is replaced). The files are
/// written under `root.partial` and published as a whole, so a crash leaves either no `root` or a
/// complete one, never an MSP with an empty signcerts/.
pub fn generate(root: &Path, spec: &DevCryptoSpec) -> Result<DevCrypto, DevCryptoError> {
    let staging = crate::durable::sibling(root, ".partial");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DevCryptoError::Io { path, source }
    };
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let mut crypto = generate_into(&staging, spec)?;
    if root.exists() {
        std::fs::remove_dir_all(root).map_err(io(root))?;
    }
    crate::durable::publish(&staging, root).map_err(io(root))?;
    crypto.paths = DevCryptoPaths::new(root);
    Ok(crypto)
}

fn generate_into(root: &Path, spec: &DevCryptoSpec) -> Result<DevCrypto, DevCryptoError> {
    let paths = DevCryptoPaths::new(root);
    let domain = spec.domain.as_str();
    let ca = DevCa::generate(&format!("ca.{domain}"), domain)?;
    let tls_ca = DevCa::generate(&format!("tlsca.{domain}"), domain)?;
    let endorser = ca.issue(&LeafSpec::identity(&format!("peer0.{domain}"), "peer"))?;
    let admin = ca.issue(&LeafSpec::identity(&format!("Admin@{domain}"), "admin"))?;
    let user = ca.issue(&LeafSpec::identity(&format!("User1@{domain}"), "client"))?;
    let mut server_spec = LeafSpec::identity(&format!("peer0.{domain}"), "peer");
    server_spec.usage = LeafUsage::Tls;
    server_spec.hosts = spec.tls_hosts.clone();
    let tls_server = tls_ca.issue(&server_spec)?;

    write_file(&paths.ca_cert, ca.cert_pem().as_bytes(), false)?;
    write_file(&paths.ca_key, ca.own.key_pem.as_bytes(), true)?;
    write_file(&paths.tls_ca_cert, tls_ca.cert_pem().as_bytes(), false)?;
    write_file(&paths.tls_ca_key, tls_ca.own.key_pem.as_bytes(), true)?;
    for (msp, identity) in [
        (&paths.endorser, &endorser),
        (&paths.admin, &admin),
        (&paths.user, &user),
    ] {
        write_msp(msp, identity, ca.cert_pem(), tls_ca.cert_pem())?;
    }
    write_file(
        &paths.tls_server_cert,
        tls_server.cert_pem.as_bytes(),
        false,
    )?;
    write_file(&paths.tls_server_key, tls_server.key_pem.as_bytes(), true)?;
    write_file(&paths.tls_root(), tls_ca.cert_pem().as_bytes(), false)?;

    Ok(DevCrypto {
        spec: spec.clone(),
        paths,
        ca: ca.own.clone(),
        tls_ca: tls_ca.own.clone(),
        endorser,
        admin,
        user,
        tls_server,
    })
}
