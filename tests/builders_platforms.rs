//! Per-platform behaviour on real sample chaincodes kept under tests/fixtures/builders: packaging,
//! validation, the Dockerfile, the run plan and the local build steps.
use std::path::{Path, PathBuf};

use chaincode_operator::builders::{
    ChaincodePackage, Limits,
    context::build_context,
    package::{package_source_dir, read_package},
    platform::{
        BuildDirs, BuildOptions, Deployment, LaunchSpec, LaunchTls, PlatformError, platform_for,
        platform_of,
    },
    tree::SourceTree,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/builders")
        .join(name)
}

fn package_fixture(name: &str, kind: &str) -> ChaincodePackage {
    let bytes = package_source_dir(
        &fixture(name),
        kind,
        &format!("{name}_1.0"),
        None,
        &Limits::default(),
    )
    .unwrap_or_else(|err| panic!("packaging {name}: {err}"));
    read_package(&bytes, &Limits::default()).unwrap_or_else(|err| panic!("reading {name}: {err}"))
}

fn local_dirs() -> BuildDirs {
    BuildDirs {
        source: "/work/cc/input".into(),
        output: "/work/cc/output".into(),
        scratch: "/work/cc/scratch".into(),
    }
}

fn launch() -> LaunchSpec {
    LaunchSpec::new("cc_1.0:abcd", "peer0.org1:7052", "Org1MSP")
}

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| word.to_string()).collect()
}

/// Replaces one file of a package's code tree, to check validation of a broken variant.
fn with_file(package: &ChaincodePackage, path: &str, contents: Option<&str>) -> ChaincodePackage {
    let mut tree = SourceTree::new();
    for (entry_path, entry) in package.code.entries() {
        if entry_path != path {
            tree.insert(entry_path.to_string(), entry.clone());
        }
    }
    if let Some(contents) = contents {
        tree.insert(
            path.to_string(),
            chaincode_operator::builders::tree::SourceEntry::File {
                data: contents.as_bytes().to_vec(),
                executable: false,
            },
        );
    }
    ChaincodePackage {
        code: tree,
        ..package.clone()
    }
}

fn invalid_message(result: Result<(), PlatformError>) -> String {
    match result {
        Err(PlatformError::Invalid { message, .. }) => message,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

#[test]
fn node_contract_packages_under_src_and_builds_with_npm_install_production() {
    let package = package_fixture("node-contract", "node");
    assert_eq!(package.metadata.kind, "node");
    assert!(package.code.file("src/package.json").is_some());
    assert!(package.code.file("src/lib/assetTransfer.js").is_some());
    assert!(
        package
            .code
            .file("META-INF/statedb/couchdb/indexes/indexOwner.json")
            .is_some()
    );
    let platform = platform_of(&package).unwrap();
    platform.validate(&package).unwrap();

    let steps = platform
        .local_build_steps(&package, &local_dirs(), &BuildOptions::default())
        .unwrap()
        .steps;
    assert_eq!(steps.len(), 2);
    assert_eq!(
        (steps[0].program.as_str(), steps[0].args.clone()),
        (
            "cp",
            argv(&["-R", "/work/cc/input/src/.", "/work/cc/output"])
        )
    );
    assert_eq!(steps[1].program, "npm");
    assert_eq!(steps[1].args, argv(&["install", "--production"]));
    assert_eq!(steps[1].working_dir, "/work/cc/output");

    let options = BuildOptions {
        npm_registry: Some("https://npm.internal.example/".into()),
        ..BuildOptions::default()
    };
    let steps = platform
        .local_build_steps(&package, &local_dirs(), &options)
        .unwrap()
        .steps;
    assert_eq!(
        steps[1].args,
        argv(&[
            "install",
            "--production",
            "--registry",
            "https://npm.internal.example/"
        ])
    );

    let plan = platform
        .run_plan(&package, &launch(), "/work/cc/output")
        .unwrap();
    assert_eq!(
        plan.command,
        argv(&["npm", "start", "--", "--peer.address", "peer0.org1:7052"])
    );
    assert_eq!(plan.working_dir, "/work/cc/output");
    assert_eq!(plan.env["CORE_CHAINCODE_ID_NAME"], "cc_1.0:abcd");
    assert_eq!(plan.env["CORE_PEER_ADDRESS"], "peer0.org1:7052");
    assert_eq!(plan.env["CORE_PEER_LOCALMSPID"], "Org1MSP");
}

#[test]
fn node_dockerfile_has_two_stages_a_non_root_user_and_oci_labels() {
    let package = package_fixture("node-contract", "node");
    let options = BuildOptions {
        builder_image: Some("registry.example/nodeenv:2.5.8".into()),
        runtime_image: Some("registry.example/node-runtime:20".into()),
        run_as_uid: 4242,
        ..BuildOptions::default()
    };
    let dockerfile = platform_of(&package)
        .unwrap()
        .dockerfile(&package, &options)
        .unwrap();
    let lines: Vec<&str> = dockerfile.lines().collect();
    assert!(
        lines.contains(&"FROM registry.example/nodeenv:2.5.8 AS builder"),
        "{dockerfile}"
    );
    assert!(
        lines.contains(&"FROM registry.example/node-runtime:20"),
        "{dockerfile}"
    );
    assert!(
        lines.contains(&"COPY code/ /chaincode/input/"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("npm install --production"),
        "{dockerfile}"
    );
    assert!(
        lines.contains(&"COPY --from=builder --chown=4242:4242 /chaincode/output/ /chaincode/")
    );
    assert!(lines.contains(&"USER 4242:4242"), "{dockerfile}");
    // The image starts the chaincode itself, dialling the peer the Pod names in CORE_PEER_ADDRESS.
    assert!(
        lines.contains(
            &r#"ENTRYPOINT ["sh", "-c", "exec npm start -- --peer.address \"$CORE_PEER_ADDRESS\""]"#
        ),
        "{dockerfile}"
    );
    // Named by content: the package id (a hash of the package file's bytes) stays out.
    assert!(!dockerfile.contains(&package.id.hash), "{dockerfile}");
    assert!(dockerfile.contains("dev.chaincode.fabric.platform=\"node\""));
    assert!(dockerfile.contains("org.opencontainers.image.title=\"node-contract_1.0\""));
    // The runtime stage comes after the builder stage and nothing runs as root in it.
    let runtime_at = dockerfile
        .find("FROM registry.example/node-runtime")
        .unwrap();
    assert!(dockerfile.find("AS builder").unwrap() < runtime_at);
    assert!(!dockerfile[runtime_at..].contains("RUN "));

    let root = BuildOptions {
        run_as_uid: 0,
        ..BuildOptions::default()
    };
    assert!(matches!(
        platform_of(&package).unwrap().dockerfile(&package, &root),
        Err(PlatformError::Options(_))
    ));
}

#[test]
fn node_validation_speaks_to_the_developer() {
    let package = package_fixture("node-contract", "node");
    let platform = platform_for("node").unwrap();
    let no_start = with_file(
        &package,
        "src/package.json",
        Some(r#"{"name":"x","scripts":{"test":"x"}}"#),
    );
    assert!(
        invalid_message(platform.validate(&no_start))
            .starts_with("package.json has no start script")
    );
    let missing = with_file(&package, "src/package.json", None);
    assert!(
        invalid_message(platform.validate(&missing)).contains("package.json not found in src/")
    );
    let broken = with_file(&package, "src/package.json", Some("{not json"));
    assert!(
        invalid_message(platform.validate(&broken)).starts_with("package.json is not valid JSON")
    );

    // start.sh stands in for the start script and becomes the command.
    let start_sh = with_file(
        &no_start,
        "src/start.sh",
        Some("#!/bin/sh\nexec node index.js \"$@\"\n"),
    );
    platform.validate(&start_sh).unwrap();
    let plan = platform.run_plan(&start_sh, &launch(), "/cc").unwrap();
    assert_eq!(
        plan.command,
        argv(&["sh", "start.sh", "--peer.address", "peer0.org1:7052"])
    );

    // build.sh replaces npm install, and still sees the registry.
    let build_sh = with_file(&package, "src/build.sh", Some("npm ci --omit=dev\n"));
    let options = BuildOptions {
        npm_registry: Some("http://r:4873".into()),
        ..BuildOptions::default()
    };
    let steps = platform
        .local_build_steps(&build_sh, &local_dirs(), &options)
        .unwrap()
        .steps;
    assert_eq!(steps[1].program, "sh");
    assert_eq!(steps[1].args, argv(&["build.sh"]));
    assert_eq!(steps[1].env["NPM_CONFIG_REGISTRY"], "http://r:4873");
}

#[test]
fn go_module_with_vendor_builds_statically_with_mod_vendor() {
    let package = package_fixture("go-vendor", "golang");
    assert_eq!(package.metadata.kind, "golang");
    assert_eq!(package.metadata.path, "github.com/example/asset-cc");
    assert!(package.code.file("src/go.mod").is_some());
    assert!(package.code.file("src/vendor/modules.txt").is_some());
    let platform = platform_of(&package).unwrap();
    platform.validate(&package).unwrap();

    let options = BuildOptions {
        goproxy: Some("https://proxy.internal.example".into()),
        gosumdb: Some("off".into()),
        goflags: Some("-buildvcs=false".into()),
        ..BuildOptions::default()
    };
    let steps = platform
        .local_build_steps(&package, &local_dirs(), &options)
        .unwrap()
        .steps;
    assert_eq!(steps.len(), 1);
    let build = &steps[0];
    assert_eq!(build.program, "go");
    assert_eq!(
        build.args,
        argv(&[
            "build",
            "-trimpath",
            "-mod=vendor",
            "-ldflags=-s -w",
            "-o",
            "/work/cc/output/chaincode",
            "."
        ])
    );
    assert_eq!(build.working_dir, "/work/cc/input/src");
    assert_eq!(build.env["CGO_ENABLED"], "0");
    assert_eq!(build.env["GO111MODULE"], "on");
    assert_eq!(build.env["GOPROXY"], "https://proxy.internal.example");
    assert_eq!(build.env["GOSUMDB"], "off");
    assert_eq!(build.env["GOFLAGS"], "-buildvcs=false");

    let plan = platform
        .run_plan(&package, &launch(), "/work/cc/output")
        .unwrap();
    assert_eq!(
        plan.command,
        argv(&["/work/cc/output/chaincode", "-peer.address=peer0.org1:7052"])
    );

    let dockerfile = platform
        .dockerfile(&package, &BuildOptions::default())
        .unwrap();
    assert!(
        dockerfile.contains("FROM hyperledger/fabric-ccenv:2.5 AS builder"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("\nFROM hyperledger/fabric-baseos:2.5\n"),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("cd /chaincode/input/src && env 'CGO_ENABLED=0' 'GO111MODULE=on' go build -trimpath '-mod=vendor'"), "{dockerfile}");
    assert!(dockerfile.contains("dev.chaincode.fabric.platform=\"golang\""));
}

#[test]
fn go_without_vendor_uses_readonly_modules_and_bad_layouts_are_explained() {
    let vendored = package_fixture("go-vendor", "golang");
    let platform = platform_for("golang").unwrap();
    let mut tree = SourceTree::new();
    for (path, entry) in vendored.code.entries() {
        if !path.starts_with("src/vendor") {
            tree.insert(path.to_string(), entry.clone());
        }
    }
    let modules = ChaincodePackage {
        code: tree,
        ..vendored.clone()
    };
    let steps = platform
        .local_build_steps(&modules, &local_dirs(), &BuildOptions::default())
        .unwrap()
        .steps;
    assert!(steps[0].args.contains(&"-mod=readonly".to_string()));
    assert!(!steps[0].env.contains_key("GOPROXY"));

    let no_modules_txt = with_file(&vendored, "src/vendor/modules.txt", None);
    assert!(invalid_message(platform.validate(&no_modules_txt)).contains("has no modules.txt"));

    let mut elsewhere = vendored.clone();
    elsewhere.metadata.path = "github.com/other/cc".into();
    assert_eq!(
        invalid_message(platform.validate(&elsewhere)),
        "path github.com/other/cc is not inside module github.com/example/asset-cc (src/go.mod)"
    );

    let no_go_mod = with_file(&modules, "src/go.mod", None);
    assert_eq!(
        invalid_message(platform.validate(&no_go_mod)),
        "go.mod not found under src/ or src/github.com/example/asset-cc, and there are no sources at src/github.com/example/asset-cc"
    );

    let not_main = with_file(&vendored, "src/main.go", Some("package asset\n"));
    assert!(
        invalid_message(platform.validate(&not_main))
            .starts_with("no `package main` Go file in src")
    );
}

#[test]
fn go_gopath_layout_builds_with_gopath() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.go"),
        "package main\n\nfunc main() {}\n",
    )
    .unwrap();
    let bytes = package_source_dir(
        dir.path(),
        "golang",
        "old_1",
        Some("example.com/old/cc"),
        &Limits::default(),
    )
    .unwrap();
    let package = read_package(&bytes, &Limits::default()).unwrap();
    assert!(
        package
            .code
            .file("src/example.com/old/cc/main.go")
            .is_some()
    );
    let steps = platform_of(&package)
        .unwrap()
        .local_build_steps(&package, &local_dirs(), &BuildOptions::default())
        .unwrap()
        .steps;
    assert_eq!(steps[0].env["GOPATH"], "/work/cc/input");
    assert_eq!(steps[0].env["GO111MODULE"], "off");
    assert_eq!(
        steps[0].args.last().map(String::as_str),
        Some("example.com/old/cc")
    );
}

#[test]
fn java_gradle_project_builds_with_gradle_and_runs_the_jar() {
    let package = package_fixture("java-gradle", "java");
    assert!(package.code.file("src/build.gradle").is_some());
    let platform = platform_of(&package).unwrap();
    platform.validate(&package).unwrap();
    let script = platform
        .local_build_steps(&package, &local_dirs(), &BuildOptions::default())
        .unwrap();
    assert!(script.files.is_empty());
    assert_eq!(script.steps[0].program, "gradle");
    assert_eq!(
        script.steps[0].args,
        argv(&["--no-daemon", "build", "-x", "test"])
    );
    assert_eq!(script.steps[0].working_dir, "/work/cc/input/src");
    assert_eq!(
        script.steps[1].args,
        argv(&["build/libs/chaincode.jar", "/work/cc/output/chaincode.jar"])
    );

    let plan = platform
        .run_plan(&package, &launch(), "/chaincode")
        .unwrap();
    assert_eq!(
        plan.command,
        argv(&[
            "java",
            "-jar",
            "/chaincode/chaincode.jar",
            "--peerAddress",
            "peer0.org1:7052"
        ])
    );

    // A wrapper is preferred, and a mirror becomes an init script shipped in the build context.
    let wrapped = with_file(&package, "src/gradlew", Some("#!/bin/sh\n"));
    let options = BuildOptions {
        java_repository_mirror: Some("https://maven.internal.example/repo".into()),
        ..BuildOptions::default()
    };
    let script = platform
        .local_build_steps(&wrapped, &local_dirs(), &options)
        .unwrap();
    assert_eq!(script.steps[0].program, "sh");
    assert_eq!(
        script.steps[0].args,
        argv(&[
            "gradlew",
            "--no-daemon",
            "build",
            "-x",
            "test",
            "--init-script",
            "/work/cc/scratch/mirror.init.gradle"
        ])
    );
    assert_eq!(script.files[0].path, "mirror.init.gradle");
    assert!(
        script.files[0]
            .contents
            .contains("'https://maven.internal.example/repo'")
    );
    let context = build_context(&wrapped, &options).unwrap();
    assert!(context.dockerfile.contains("COPY build/ /chaincode/build/"));
    assert!(
        context
            .dockerfile
            .contains("--init-script /chaincode/build/mirror.init.gradle")
    );
    assert!(
        context
            .dockerfile
            .contains("FROM hyperledger/fabric-javaenv:2.5 AS builder")
    );
}

#[test]
fn java_maven_and_missing_build_files() {
    let package = package_fixture("java-gradle", "java");
    let platform = platform_for("java").unwrap();
    let maven = with_file(
        &with_file(&package, "src/build.gradle", None),
        "src/pom.xml",
        Some("<project/>"),
    );
    let options = BuildOptions {
        java_repository_mirror: Some("https://m.example/r?a=1&b=2".into()),
        ..BuildOptions::default()
    };
    let script = platform
        .local_build_steps(&maven, &local_dirs(), &options)
        .unwrap();
    assert_eq!(script.steps[0].program, "mvn");
    assert_eq!(
        script.steps[0].args,
        argv(&[
            "-B",
            "package",
            "-DskipTests",
            "-s",
            "/work/cc/scratch/maven-settings.xml"
        ])
    );
    assert!(
        script.files[0]
            .contents
            .contains("<url>https://m.example/r?a=1&amp;b=2</url>")
    );
    assert_eq!(
        script.steps[1].args,
        argv(&["target/chaincode.jar", "/work/cc/output/chaincode.jar"])
    );

    let nothing = with_file(&package, "src/build.gradle", None);
    assert!(
        invalid_message(platform.validate(&nothing))
            .starts_with("no build.gradle, build.gradle.kts, pom.xml or build.sh")
    );
}

#[test]
fn prebuilt_image_package_runs_its_image_by_digest_and_has_nothing_to_build() {
    let package = package_fixture("prebuilt-image", "k8s");
    assert!(package.code.file("image.json").is_some());
    let platform = platform_of(&package).unwrap();
    assert_eq!(platform.name(), "k8s");
    assert_eq!(
        platform.deployment(&package).unwrap(),
        Deployment::PrebuiltImage {
            reference: "ghcr.io/hyperledger-labs/fabric-builder-k8s/sample-go-chaincode@sha256:0a5ee3b35f7bc3bd5ee6e3f7c7fcbc46b43d1e2d1b4a6c0ad6e0b1d7a0f4c2e9".into()
        }
    );
    let mut tls_launch = launch();
    tls_launch.tls = Some(LaunchTls {
        client_key_pem: "K".into(),
        client_cert_pem: "C".into(),
        peer_root_cert_pem: "R".into(),
    });
    let plan = platform.run_plan(&package, &tls_launch, "").unwrap();
    assert!(plan.command.is_empty());
    assert_eq!(plan.files.len(), 5);
    assert!(matches!(
        platform.dockerfile(&package, &BuildOptions::default()),
        Err(PlatformError::NotApplicable { .. })
    ));
    assert!(matches!(
        platform.local_build_steps(&package, &local_dirs(), &BuildOptions::default()),
        Err(PlatformError::NotApplicable { .. })
    ));

    let tagged = with_file(
        &package,
        "image.json",
        Some(r#"{"name":"repo/cc:1.0@x","digest":"sha256:00"}"#),
    );
    assert!(invalid_message(platform.validate(&tagged)).contains("is not an image name"));
    let short = with_file(
        &package,
        "image.json",
        Some(r#"{"name":"repo/cc","digest":"sha256:00"}"#),
    );
    assert!(invalid_message(platform.validate(&short)).contains("is not sha256: followed by 64"));
}

#[test]
fn ccaas_package_is_a_service_with_a_validated_connection() {
    let package = package_fixture("ccaas", "ccaas");
    let platform = platform_of(&package).unwrap();
    match platform.deployment(&package).unwrap() {
        Deployment::Service(conn) => {
            assert_eq!(
                conn.address,
                "asset-transfer-ccaas.org1.svc.cluster.local:9999"
            );
            assert_eq!(conn.dial_timeout, "10s");
            assert!(!conn.tls_required);
        }
        other => panic!("expected a service, got {other:?}"),
    }
    assert!(matches!(
        platform.run_plan(&package, &launch(), "/x"),
        Err(PlatformError::NotApplicable { .. })
    ));
    let tls = with_file(
        &package,
        "connection.json",
        Some(r#"{"address":"cc:9999","tls_required":true}"#),
    );
    assert_eq!(
        invalid_message(platform.validate(&tls)),
        "connection.json requires TLS but root_cert is empty"
    );
    let no_port = with_file(&package, "connection.json", Some(r#"{"address":"cc"}"#));
    assert!(invalid_message(platform.validate(&no_port)).contains("is not host:port"));
}

#[test]
fn build_context_holds_dockerfile_code_and_a_digest_of_its_bytes() {
    let package = package_fixture("node-contract", "node");
    let context = build_context(&package, &BuildOptions::default()).unwrap();
    let tree = SourceTree::from_tar_gz("context", &context.bytes, &Limits::default()).unwrap();
    assert_eq!(tree.file("Dockerfile"), Some(context.dockerfile.as_bytes()));
    assert!(tree.file("code/src/package.json").is_some());
    assert!(
        tree.file("code/META-INF/statedb/couchdb/indexes/indexOwner.json")
            .is_some()
    );
    use sha2::Digest;
    assert_eq!(
        context.digest,
        hex::encode(sha2::Sha256::digest(&context.bytes))
    );
    let again = build_context(&package, &BuildOptions::default()).unwrap();
    assert_eq!(again.bytes, context.bytes);
    // Different options give a different Dockerfile, hence a different content key.
    let other = build_context(
        &package,
        &BuildOptions {
            run_as_uid: 2000,
            ..BuildOptions::default()
        },
    )
    .unwrap();
    assert_ne!(other.digest, context.digest);
}

#[test]
fn go_module_nested_at_src_path_builds_in_its_own_directory() {
    let mut code = SourceTree::new();
    let file = |text: &str| chaincode_operator::builders::tree::SourceEntry::File {
        data: text.as_bytes().to_vec(),
        executable: false,
    };
    code.insert(
        "src/example.com/cc/go.mod".into(),
        file("module example.com/cc\n"),
    );
    code.insert(
        "src/example.com/cc/main.go".into(),
        file("package main\nfunc main() {}\n"),
    );
    let package = ChaincodePackage {
        id: chaincode_operator::builders::PackageId::new("nested", b""),
        metadata: chaincode_operator::builders::PackageMetadata {
            kind: "golang".into(),
            label: "nested".into(),
            path: "example.com/cc".into(),
        },
        code,
    };
    let steps = platform_of(&package)
        .unwrap()
        .local_build_steps(&package, &local_dirs(), &BuildOptions::default())
        .unwrap()
        .steps;
    assert_eq!(steps[0].working_dir, "/work/cc/input/src/example.com/cc");
    assert_eq!(steps[0].args.last().map(String::as_str), Some("."));
    assert!(steps[0].args.contains(&"-mod=readonly".to_string()));
}
