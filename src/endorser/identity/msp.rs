//! Reading Fabric MSP folders (the layout cryptogen and fabric-ca write):
//!
//! ```text
//! msp/
//!   signcerts/          the identity's certificate (PEM)
//!   keystore/           its private key (PEM, PKCS#8 or SEC1; any file name, e.g. priv_sk)
//!   cacerts/            the organisation's root CA certificates
//!   intermediatecerts/  optional intermediate CA certificates
//!   tlscacerts/         optional TLS root CA certificates
//! ```
//!
//! Files are read in name order; a file may hold several PEM certificates.
use std::fs;
use std::path::{Path, PathBuf};

use super::trust::{Organization, OrganizationError};
use super::{IdentityError, SigningIdentity, certificate_p256_key, parse_private_key_pem};

/// Why an MSP folder could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MspError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{dir}: expected exactly one certificate in signcerts/, found {found}")]
    SignCerts { dir: PathBuf, found: usize },
    #[error(
        "{dir}: no private key in keystore/ belongs to the certificate in signcerts/ ({tried} files tried)"
    )]
    NoMatchingKey { dir: PathBuf, tried: usize },
    #[error("{dir}: {source}")]
    Identity { dir: PathBuf, source: IdentityError },
    #[error("{dir}: {source}")]
    Organization {
        dir: PathBuf,
        source: OrganizationError,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> MspError + '_ {
    move |source| MspError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Regular files of `dir` in name order; an absent optional folder is empty.
fn files_in(dir: &Path, required: bool) -> Result<Vec<PathBuf>, MspError> {
    if !required && !dir.exists() {
        return Ok(Vec::new());
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir))? {
        let path = entry.map_err(io_error(dir))?.path();
        if path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A certificate read from an MSP folder: its PEM text (as Fabric re-encodes it) and DER.
type PemAndDer = (Vec<u8>, Vec<u8>);

/// Every PEM certificate in the files of `dir`.
fn certificates_in(dir: &Path, required: bool) -> Result<Vec<PemAndDer>, MspError> {
    let mut certs = Vec::new();
    for path in files_in(dir, required)? {
        let bytes = fs::read(&path).map_err(io_error(&path))?;
        for block in x509_parser::pem::Pem::iter_from_buffer(&bytes) {
            let block = block.map_err(|e| MspError::Certificate {
                path: path.clone(),
                reason: format!("not PEM: {e}"),
            })?;
            if block.label != "CERTIFICATE" {
                continue;
            }
            let text = super::certificate_pem(&block.contents).into_bytes();
            super::certificate_der_from_pem(&text).map_err(|e| MspError::Certificate {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            certs.push((text, block.contents));
        }
    }
    Ok(certs)
}

/// Loads the signing identity of an MSP folder: the one certificate in `signcerts/` and the key
/// in `keystore/` that belongs to it.
pub fn load_signing_identity(mspid: &str, dir: &Path) -> Result<SigningIdentity, MspError> {
    let signcerts = dir.join("signcerts");
    let mut certs = certificates_in(&signcerts, true)?;
    if certs.len() != 1 {
        return Err(MspError::SignCerts {
            dir: dir.to_path_buf(),
            found: certs.len(),
        });
    }
    let (cert_pem, cert_der) = certs.remove(0);
    let public_key = certificate_p256_key(&cert_der).map_err(|source| MspError::Identity {
        dir: dir.to_path_buf(),
        source,
    })?;
    let keystore = dir.join("keystore");
    let key_files = files_in(&keystore, true)?;
    for path in &key_files {
        let text = fs::read_to_string(path).map_err(io_error(path))?;
        let Ok(key) = parse_private_key_pem(&text) else {
            continue;
        };
        if *key.verifying_key() == public_key {
            return SigningIdentity::new(mspid, &cert_pem, key).map_err(|source| {
                MspError::Identity {
                    dir: dir.to_path_buf(),
                    source,
                }
            });
        }
    }
    Err(MspError::NoMatchingKey {
        dir: dir.to_path_buf(),
        tried: key_files.len(),
    })
}

/// Loads an organisation from an MSP folder: `cacerts/` (required), `intermediatecerts/` and
/// `tlscacerts/` (optional).
pub fn load_organization(mspid: &str, dir: &Path) -> Result<Organization, MspError> {
    let ders = |sub: &str, required: bool| -> Result<Vec<Vec<u8>>, MspError> {
        Ok(certificates_in(&dir.join(sub), required)?
            .into_iter()
            .map(|(_, der)| der)
            .collect())
    };
    Organization::new(
        mspid,
        ders("cacerts", true)?,
        ders("intermediatecerts", false)?,
        ders("tlscacerts", false)?,
    )
    .map_err(|source| MspError::Organization {
        dir: dir.to_path_buf(),
        source,
    })
}
