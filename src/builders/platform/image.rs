//! Prebuilt-image chaincode (fabric-builder-k8s's `k8s` type): `image.json` `{name, digest}` at
//! the root of code.tar.gz. Nothing is built; the image runs with its own entrypoint.
use serde::Deserialize;

use super::{
    BuildDirs, BuildOptions, BuildScript, Deployment, LaunchSpec, Platform, PlatformError, RunPlan,
    invalid,
};
use crate::builders::package::ChaincodePackage;

pub struct PrebuiltImage;

const NAME: &str = "k8s";

/// `image.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageJson {
    pub name: String,
    pub digest: String,
}

impl ImageJson {
    /// `name@digest`, the reference the chaincode pod pulls.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.name, self.digest)
    }
}

pub fn image_json(package: &ChaincodePackage) -> Result<ImageJson, PlatformError> {
    let bytes = package
        .code
        .file("image.json")
        .ok_or_else(|| invalid(NAME, "image.json not found at the root of code.tar.gz"))?;
    let image: ImageJson = serde_json::from_slice(bytes)
        .map_err(|err| invalid(NAME, format!("image.json is invalid: {err}")))?;
    let name_ok = !image.name.is_empty()
        && !image.name.contains(|c: char| c.is_whitespace() || c == '@')
        && image.name.is_ascii();
    if !name_ok {
        return Err(invalid(
            NAME,
            format!(
                "image.json name {:?} is not an image name (registry/repository, no tag or digest)",
                image.name
            ),
        ));
    }
    let hex = image.digest.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            NAME,
            format!(
                "image.json digest {:?} is not sha256: followed by 64 lower-case hex digits",
                image.digest
            ),
        ));
    }
    Ok(image)
}

impl Platform for PrebuiltImage {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError> {
        image_json(package).map(|_| ())
    }

    fn deployment(&self, package: &ChaincodePackage) -> Result<Deployment, PlatformError> {
        Ok(Deployment::PrebuiltImage {
            reference: image_json(package)?.reference(),
        })
    }

    fn default_images(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    fn build_script(
        &self,
        package: &ChaincodePackage,
        _dirs: &BuildDirs,
        _options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        let image = image_json(package)?;
        Err(PlatformError::NotApplicable {
            platform: NAME,
            reason: format!(
                "a prebuilt image package has nothing to build and cannot run as a local process; it runs as {}",
                image.reference()
            ),
        })
    }

    fn run_plan(
        &self,
        package: &ChaincodePackage,
        launch: &LaunchSpec,
        _install_dir: &str,
    ) -> Result<RunPlan, PlatformError> {
        image_json(package)?;
        // The image's own entrypoint starts the chaincode; it reads the peer address from the env.
        Ok(RunPlan::new(Vec::new(), "", launch))
    }
}
