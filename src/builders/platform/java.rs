//! Java chaincode: sources under `src/`, built with the package's build.sh, Gradle or Maven (the
//! project's wrapper when present), optionally through a repository mirror. The build must produce
//! a runnable `chaincode.jar` (Fabric's javaenv convention: `build/libs/chaincode.jar` for Gradle,
//! `target/chaincode.jar` for Maven, or `$CHAINCODE_OUTPUT_DIR/chaincode.jar` from build.sh).
//! Started with `java -jar chaincode.jar --peerAddress ADDR`.
use super::{
    BuildDirs, BuildOptions, BuildScript, GeneratedFile, LaunchSpec, Platform, PlatformError,
    RunPlan, invalid, join_dir, step,
};
use crate::builders::package::ChaincodePackage;

pub struct Java;

const NAME: &str = "java";

/// The build tool a Java package uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JavaBuild {
    Script,
    Gradle { wrapper: bool },
    Maven { wrapper: bool },
}

pub fn detect(package: &ChaincodePackage) -> Result<JavaBuild, PlatformError> {
    let has = |name: &str| package.code.file(&format!("src/{name}")).is_some();
    if has("build.sh") {
        Ok(JavaBuild::Script)
    } else if has("build.gradle") || has("build.gradle.kts") {
        Ok(JavaBuild::Gradle {
            wrapper: has("gradlew"),
        })
    } else if has("pom.xml") {
        Ok(JavaBuild::Maven {
            wrapper: has("mvnw"),
        })
    } else {
        Err(invalid(
            NAME,
            "no build.gradle, build.gradle.kts, pom.xml or build.sh in src/ (the package root of a java chaincode)",
        ))
    }
}

fn maven_settings(mirror: &str) -> String {
    let url = xml_escape(mirror);
    format!(
        "<settings>\n  <mirrors>\n    <mirror>\n      <id>chaincode-mirror</id>\n      <mirrorOf>*</mirrorOf>\n      <url>{url}</url>\n    </mirror>\n  </mirrors>\n</settings>\n"
    )
}

fn gradle_mirror_init(mirror: &str) -> String {
    let url = mirror.replace('\\', "\\\\").replace('\'', "\\'");
    format!(
        "// Routes every repository through the configured mirror.\n\
         def mirrorUrl = '{url}'\n\
         def useMirror = {{ RepositoryHandler repos ->\n\
         \x20   repos.all {{ ArtifactRepository repo ->\n\
         \x20       if (!(repo instanceof MavenArtifactRepository) || repo.url.toString() != mirrorUrl) {{ repos.remove(repo) }}\n\
         \x20   }}\n\
         \x20   repos.maven {{ url = mirrorUrl }}\n\
         }}\n\
         settingsEvaluated {{ settings -> useMirror(settings.pluginManagement.repositories) }}\n\
         allprojects {{\n\
         \x20   useMirror(buildscript.repositories)\n\
         \x20   useMirror(repositories)\n\
         }}\n"
    )
}

fn xml_escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Platform for Java {
    fn name(&self) -> &'static str {
        NAME
    }

    fn validate(&self, package: &ChaincodePackage) -> Result<(), PlatformError> {
        detect(package).map(|_| ())
    }

    fn default_images(&self) -> Option<(&'static str, &'static str)> {
        Some((
            "hyperledger/fabric-javaenv:2.5",
            "hyperledger/fabric-javaenv:2.5",
        ))
    }

    fn build_script(
        &self,
        package: &ChaincodePackage,
        dirs: &BuildDirs,
        options: &BuildOptions,
    ) -> Result<BuildScript, PlatformError> {
        let build = detect(package)?;
        let src = join_dir(&dirs.source, "src");
        let jar = format!("{}/chaincode.jar", dirs.output.trim_end_matches('/'));
        let mirror = options.java_repository_mirror.as_deref();
        let mut files = Vec::new();
        let steps = match build {
            JavaBuild::Script => {
                let mut script = step("sh", &["build.sh"], &src);
                script
                    .env
                    .insert("CHAINCODE_OUTPUT_DIR".to_string(), dirs.output.clone());
                if let Some(mirror) = mirror {
                    script.env.insert(
                        "CHAINCODE_REPOSITORY_MIRROR".to_string(),
                        mirror.to_string(),
                    );
                }
                vec![script]
            }
            JavaBuild::Gradle { wrapper } => {
                let (program, mut args) = if wrapper {
                    ("sh", vec!["gradlew".to_string()])
                } else {
                    ("gradle", vec![])
                };
                args.extend(["--no-daemon", "build", "-x", "test"].map(String::from));
                if let Some(mirror) = mirror {
                    files.push(GeneratedFile {
                        path: "mirror.init.gradle".to_string(),
                        contents: gradle_mirror_init(mirror),
                    });
                    args.push("--init-script".to_string());
                    args.push(join_dir(&dirs.scratch, "mirror.init.gradle"));
                }
                let mut gradle = step(program, &[], &src);
                gradle.args = args;
                vec![
                    gradle,
                    step("cp", &["build/libs/chaincode.jar", &jar], &src),
                ]
            }
            JavaBuild::Maven { wrapper } => {
                let (program, mut args) = if wrapper {
                    ("sh", vec!["mvnw".to_string()])
                } else {
                    ("mvn", vec![])
                };
                args.extend(["-B", "package", "-DskipTests"].map(String::from));
                if let Some(mirror) = mirror {
                    files.push(GeneratedFile {
                        path: "maven-settings.xml".to_string(),
                        contents: maven_settings(mirror),
                    });
                    args.push("-s".to_string());
                    args.push(join_dir(&dirs.scratch, "maven-settings.xml"));
                }
                let mut maven = step(program, &[], &src);
                maven.args = args;
                vec![maven, step("cp", &["target/chaincode.jar", &jar], &src)]
            }
        };
        Ok(BuildScript { files, steps })
    }

    fn run_plan(
        &self,
        package: &ChaincodePackage,
        launch: &LaunchSpec,
        install_dir: &str,
    ) -> Result<RunPlan, PlatformError> {
        detect(package)?;
        let jar = format!("{}/chaincode.jar", install_dir.trim_end_matches('/'));
        let command = vec![
            "java".to_string(),
            "-jar".to_string(),
            jar,
            "--peerAddress".to_string(),
            launch.peer_address.clone(),
        ];
        Ok(RunPlan::new(command, install_dir, launch))
    }
}
