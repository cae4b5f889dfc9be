//! Builders: Fabric chaincode packages in, build plans out.
//!
//! - [`package`]: reads Fabric 2.x lifecycle packages (and plain source directories) safely, computes
//!   package ids, writes deterministic packages and extracts them without leaving the target directory.
//! - [`limits`]: the configurable bounds every package read is held to.
//! - [`tree`]: the validated in-memory source tree and the deterministic tar.gz writer.
//! - [`platform`]: one module per chaincode type (golang, node, java, prebuilt image, ccaas) behind the
//!   [`platform::Platform`] trait: validation, Dockerfile, run plan and local build steps.
//! - [`context`]: the deterministic Docker build context whose sha256 names the chaincode image.
//! - [`local`]: runs the build steps on this machine for the process runtime.
//! - [`cli`]: the `package` and `inspect` subcommands.
pub mod cli;
pub mod context;
pub mod error;
pub mod gzip;
pub mod limits;
pub mod local;
pub mod package;
pub mod platform;
pub mod tree;

pub use context::BuildContext;
pub use error::PackageError;
pub use limits::Limits;
pub use package::{ChaincodePackage, PackageId, PackageMetadata, read_package, read_package_file};
pub use platform::{Platform, platform_for};
