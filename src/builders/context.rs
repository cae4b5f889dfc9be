//! The deterministic Docker build context: `Dockerfile`, the package's code under `code/` and the
//! build's helper files under `build/`, as a tar.gz whose sha256 is the content key naming the
//! image (N peers installing the same package cause one build).
use flate2::Compression;
use sha2::{Digest, Sha256};

use super::{
    package::ChaincodePackage,
    platform::{BuildOptions, GeneratedFile, PlatformError, platform_of},
    tree::{SourceEntry, SourceTree},
};

/// A build context ready to hand to BuildKit (`--local context=...` after extraction, or as a
/// tar.gz stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildContext {
    /// The tar.gz bytes.
    pub bytes: Vec<u8>,
    /// Lower-case hex sha256 of `bytes`: the content key.
    pub digest: String,
    /// The Dockerfile inside the context.
    pub dockerfile: String,
}

impl BuildContext {
    /// Assembles a context from a Dockerfile, a code tree (placed under `code/`) and helper files
    /// (under `build/`), compressed at gzip level 6 on all cores.
    pub fn assemble(dockerfile: &str, code: &SourceTree, files: &[GeneratedFile]) -> BuildContext {
        Self::assemble_with_level(dockerfile, code, files, Compression::default())
    }

    /// As [`BuildContext::assemble`] at an explicit compression level.
    pub fn assemble_with_level(
        dockerfile: &str,
        code: &SourceTree,
        files: &[GeneratedFile],
        level: Compression,
    ) -> BuildContext {
        let mut tree = code.nested_under("code");
        tree.insert(
            "Dockerfile".to_string(),
            SourceEntry::File {
                data: dockerfile.as_bytes().to_vec(),
                executable: false,
            },
        );
        for file in files {
            tree.insert(
                format!("build/{}", file.path),
                SourceEntry::File {
                    data: file.contents.as_bytes().to_vec(),
                    executable: false,
                },
            );
        }
        let bytes = tree.to_tar_gz_with_level(level);
        let digest = hex::encode(Sha256::digest(&bytes));
        BuildContext {
            bytes,
            digest,
            dockerfile: dockerfile.to_string(),
        }
    }

    /// The image tag this context names: the whole content digest (tags allow 128 characters).
    pub fn image_tag(&self) -> String {
        format!("ctx-{}", self.digest)
    }
}

/// The build context of a source package, per its platform.
pub fn build_context(
    package: &ChaincodePackage,
    options: &BuildOptions,
) -> Result<BuildContext, PlatformError> {
    let platform = platform_of(package)?;
    let dockerfile = platform.dockerfile(package, options)?;
    let files = platform.context_files(package, options)?;
    Ok(BuildContext::assemble(&dockerfile, &package.code, &files))
}
