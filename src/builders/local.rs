//! Runs a platform's build script on this machine, for the process runtime: extracts the package
//! into a work directory, writes the helper files, runs each step and, when one fails, reports
//! which step and the tail of its output (not just "exit status 1").
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use super::{
    error::PackageError,
    package::ChaincodePackage,
    platform::{BuildDirs, BuildOptions, BuildScript, PlatformError, platform_of},
};

/// Bytes of a failed step's output kept in the error.
const OUTPUT_TAIL_BYTES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum LocalBuildError {
    #[error(transparent)]
    Platform(#[from] PlatformError),
    #[error(transparent)]
    Package(#[from] PackageError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("build step `{command}` could not start: {source}")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("build step `{command}` failed ({status}); output ends with:\n{output_tail}")]
    StepFailed {
        command: String,
        status: String,
        output_tail: String,
    },
}

/// A finished local build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBuild {
    pub dirs: BuildDirs,
    /// Where the chaincode runs from: pass as `install_dir` to [`super::Platform::run_plan`].
    pub install_dir: PathBuf,
}

/// Extracts `package` under `work_dir` (`input/`, `output/`, `scratch/`; `work_dir` must not exist
/// or be empty) and runs its platform's local build steps.
pub fn build_locally(
    package: &ChaincodePackage,
    work_dir: &Path,
    options: &BuildOptions,
) -> Result<LocalBuild, LocalBuildError> {
    let platform = platform_of(package)?;
    platform.validate(package)?;
    let input = work_dir.join("input");
    let output = work_dir.join("output");
    let scratch = work_dir.join("scratch");
    let dirs = BuildDirs {
        source: input.to_string_lossy().into_owned(),
        output: output.to_string_lossy().into_owned(),
        scratch: scratch.to_string_lossy().into_owned(),
    };
    let script = platform.local_build_steps(package, &dirs, options)?;
    package.extract_code(&input)?;
    for dir in [&output, &scratch] {
        fs::create_dir_all(dir).map_err(|source| LocalBuildError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    run_script(&script, &scratch)?;
    Ok(LocalBuild {
        dirs,
        install_dir: output,
    })
}

/// Writes the script's files into `scratch_dir`, then runs its steps in order.
pub fn run_script(script: &BuildScript, scratch_dir: &Path) -> Result<(), LocalBuildError> {
    for file in &script.files {
        let path = scratch_dir.join(&file.path);
        fs::write(&path, &file.contents).map_err(|source| LocalBuildError::Io { path, source })?;
    }
    for step in &script.steps {
        let command = std::iter::once(step.program.as_str())
            .chain(step.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new(&step.program)
            .args(&step.args)
            .current_dir(&step.working_dir)
            .envs(&step.env)
            .output()
            .map_err(|source| LocalBuildError::Spawn {
                command: command.clone(),
                source,
            })?;
        if !output.status.success() {
            let mut combined = output.stdout;
            combined.extend_from_slice(&output.stderr);
            let start = combined.len().saturating_sub(OUTPUT_TAIL_BYTES);
            return Err(LocalBuildError::StepFailed {
                command,
                status: output.status.to_string(),
                output_tail: String::from_utf8_lossy(&combined[start..]).into_owned(),
            });
        }
    }
    Ok(())
}
