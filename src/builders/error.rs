//! Why a package or source tree was rejected. Every variant that concerns one entry names it.
use std::path::PathBuf;

/// A package, archive or source directory that cannot be accepted.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{archive}: not a readable gzip/tar stream: {source}")]
    Corrupt {
        archive: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{archive}: entry {entry:?}: {reason}")]
    UnsafePath {
        archive: String,
        entry: String,
        reason: &'static str,
    },
    #[error("{archive}: entry {entry:?}: name is not valid UTF-8")]
    NonUtf8Name { archive: String, entry: String },
    #[error("{archive}: entry {entry:?} appears more than once")]
    Duplicate { archive: String, entry: String },
    #[error("{archive}: entry {entry:?}: {kind} entries are not allowed")]
    UnsupportedEntryType {
        archive: String,
        entry: String,
        kind: String,
    },
    #[error("{archive}: symlink {entry:?} points to {target:?}, outside the package")]
    SymlinkEscapes {
        archive: String,
        entry: String,
        target: String,
    },
    #[error(
        "{archive}: hard link {entry:?} points to {target:?}, which is not an earlier file in the package"
    )]
    HardLinkEscapes {
        archive: String,
        entry: String,
        target: String,
    },
    #[error("{archive}: entry {entry:?} lies beneath symlink {link:?}")]
    BeneathSymlink {
        archive: String,
        entry: String,
        link: String,
    },
    #[error("{archive}: entry {entry:?} is larger than the per-entry limit of {limit} bytes")]
    EntryTooLarge {
        archive: String,
        entry: String,
        limit: u64,
    },
    #[error(
        "{archive}: entry {entry:?} takes the archive past the total limit of {limit} uncompressed bytes"
    )]
    TotalTooLarge {
        archive: String,
        entry: String,
        limit: u64,
    },
    #[error("{archive}: entry {entry:?} exceeds the limit of {limit} entries")]
    TooManyEntries {
        archive: String,
        entry: String,
        limit: usize,
    },
    #[error(
        "{archive}: entry {entry:?} takes the compression ratio past {limit}:1 (a decompression bomb?)"
    )]
    CompressionRatio {
        archive: String,
        entry: String,
        limit: u64,
    },
    #[error("package file is {size} bytes, over the limit of {limit}")]
    PackageTooLarge { size: u64, limit: u64 },
    #[error("package has no {0}; a Fabric package holds metadata.json and code.tar.gz")]
    Missing(&'static str),
    #[error(
        "package entry {entry:?} is not expected; a Fabric package holds only metadata.json and code.tar.gz"
    )]
    UnexpectedEntry { entry: String },
    #[error("metadata.json is invalid: {0}")]
    Metadata(String),
    #[error(
        "label {0:?} is invalid: a label starts with a letter or digit and holds only letters, digits and _ . + -"
    )]
    Label(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot extract {entry:?} into {dir}: {source}")]
    Extract {
        dir: PathBuf,
        entry: String,
        #[source]
        source: std::io::Error,
    },
}

impl PackageError {
    /// The archive entry this error is about, when it concerns one.
    pub fn entry(&self) -> Option<&str> {
        match self {
            PackageError::UnsafePath { entry, .. }
            | PackageError::NonUtf8Name { entry, .. }
            | PackageError::Duplicate { entry, .. }
            | PackageError::UnsupportedEntryType { entry, .. }
            | PackageError::SymlinkEscapes { entry, .. }
            | PackageError::HardLinkEscapes { entry, .. }
            | PackageError::BeneathSymlink { entry, .. }
            | PackageError::EntryTooLarge { entry, .. }
            | PackageError::TotalTooLarge { entry, .. }
            | PackageError::TooManyEntries { entry, .. }
            | PackageError::CompressionRatio { entry, .. }
            | PackageError::UnexpectedEntry { entry }
            | PackageError::Extract { entry, .. } => Some(entry),
            _ => None,
        }
    }
}
