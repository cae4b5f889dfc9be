//! `chaincode-operator package` and `inspect`, run as the binary a user runs, and the external
//! builder's steps run as a stock peer runs them (`run` against a fake Kubernetes API server).
#[path = "support/fake_apiserver.rs"]
mod fake_apiserver;

use std::io::BufRead as _;
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Output, Stdio},
    sync::{Arc, Condvar, Mutex},
    time::{Duration, Instant},
};

use base64::Engine as _;
use fake_apiserver::{Cluster, FakeApiServer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_chaincode-operator"))
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/builders")
        .join(name)
}

fn run(command: &mut Command) -> Output {
    command.output().expect("running chaincode-operator")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn package(src: &Path, kind: &str, label: &str, out: &Path) -> Output {
    run(bin()
        .arg("package")
        .arg(src)
        .args(["--label", label, "--type", kind, "-o"])
        .arg(out))
}

#[test]
fn packaging_is_deterministic_and_reads_back_with_the_same_id() {
    let tmp = tempfile::tempdir().unwrap();
    let first = tmp.path().join("first.tar.gz");
    let output = package(&fixture("node-contract"), "node", "asset_1.0", &first);
    assert!(output.status.success(), "{output:?}");
    let bytes = fs::read(&first).unwrap();
    let expected_id = format!("asset_1.0:{}", hex::encode(Sha256::digest(&bytes)));
    assert_eq!(stdout(&output).trim(), expected_id);

    // A copy of the tree with other mtimes, an extra node_modules and another directory name.
    let copy = tmp.path().join("elsewhere");
    copy_dir(&fixture("node-contract"), &copy);
    fs::create_dir_all(copy.join("node_modules/left-pad")).unwrap();
    fs::write(copy.join("node_modules/left-pad/index.js"), "x").unwrap();
    let file = fs::File::options()
        .write(true)
        .open(copy.join("index.js"))
        .unwrap();
    file.set_modified(
        std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000),
    )
    .unwrap();
    let second = tmp.path().join("second.tar.gz");
    let output = package(&copy, "node", "asset_1.0", &second);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        fs::read(&second).unwrap(),
        bytes,
        "same tree, different bytes"
    );

    let output = run(bin().arg("inspect").arg(&first));
    assert!(output.status.success(), "{output:?}");
    let text = stdout(&output);
    assert!(
        text.contains(&format!("package id: {expected_id}")),
        "{text}"
    );
    assert!(text.contains("label:      asset_1.0"), "{text}");
    assert!(text.contains("type:       node"), "{text}");
    assert!(
        text.contains("verdict:    ok (built from source)"),
        "{text}"
    );
}

#[test]
fn golang_packages_record_the_module_path() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("go.tar.gz");
    assert!(
        package(&fixture("go-vendor"), "golang", "gocc_1", &out)
            .status
            .success()
    );
    let text = stdout(&run(bin().arg("inspect").arg(&out)));
    assert!(
        text.contains("path:       github.com/example/asset-cc"),
        "{text}"
    );
    assert!(text.contains("type:       golang"), "{text}");
}

#[test]
fn a_package_made_with_plain_tar_in_fabrics_layout_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let stage = tmp.path().join("stage");
    copy_dir(&fixture("node-contract"), &stage.join("src"));
    fs::rename(stage.join("src/META-INF"), stage.join("META-INF")).unwrap();
    let work = tmp.path().join("work");
    fs::create_dir_all(&work).unwrap();
    let tar = |args: &[&str], dir: &Path| {
        let status = Command::new("tar")
            .args(args)
            .current_dir(dir)
            .status()
            .expect("GNU tar");
        assert!(status.success());
    };
    tar(
        &[
            "czf",
            work.join("code.tar.gz").to_str().unwrap(),
            "src",
            "META-INF",
        ],
        &stage,
    );
    fs::write(
        work.join("metadata.json"),
        r#"{"path":"","type":"node","label":"plain_tar"}"#,
    )
    .unwrap();
    let pkg = tmp.path().join("plain.tar.gz");
    tar(
        &["czf", pkg.to_str().unwrap(), "metadata.json", "code.tar.gz"],
        &work,
    );

    let output = run(bin().arg("inspect").arg(&pkg));
    assert!(output.status.success(), "{output:?}");
    let id = format!(
        "plain_tar:{}",
        hex::encode(Sha256::digest(fs::read(&pkg).unwrap()))
    );
    assert!(
        stdout(&output).contains(&format!("package id: {id}")),
        "{}",
        stdout(&output)
    );
}

#[test]
fn inspect_fails_with_the_error_for_rejected_packages() {
    let tmp = tempfile::tempdir().unwrap();
    // Unsafe archive: rejected by the reader.
    let evil = tmp.path().join("evil.tar.gz");
    fs::write(&evil, b"\x1f\x8b\x08\x00garbage").unwrap();
    let output = run(bin().arg("inspect").arg(&evil));
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a readable gzip/tar stream"));

    // Safe archive, but not a valid node chaincode: the platform's verdict.
    let src = tmp.path().join("nostart");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("package.json"),
        r#"{"name":"x","version":"1.0.0"}"#,
    )
    .unwrap();
    let pkg = tmp.path().join("nostart.tar.gz");
    assert!(package(&src, "node", "nostart", &pkg).status.success());
    let output = run(bin().arg("inspect").arg(&pkg));
    assert!(!output.status.success());
    assert!(stdout(&output).contains("verdict:    rejected"));
    assert!(String::from_utf8_lossy(&output.stderr).contains("package.json has no start script"));
}

#[test]
fn package_refuses_bad_labels_and_unknown_types() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("x.tar.gz");
    let output = package(&fixture("node-contract"), "node", "bad label", &out);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("label \"bad label\" is invalid"));
    let output = package(&fixture("node-contract"), "cobol", "ok", &out);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown chaincode type \"cobol\""));
    assert!(!out.exists());
}

#[test]
fn packages_written_by_us_read_with_gnu_tar_and_gzip() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("node.tar.gz");
    assert!(
        package(&fixture("node-contract"), "node", "gnu_1", &pkg)
            .status
            .success()
    );
    let gzip_test = Command::new("gzip")
        .arg("-t")
        .arg(&pkg)
        .status()
        .expect("gzip");
    assert!(gzip_test.success());
    let out = tmp.path().join("x");
    fs::create_dir_all(&out).unwrap();
    let status = Command::new("tar")
        .arg("xzf")
        .arg(&pkg)
        .current_dir(&out)
        .status()
        .expect("tar");
    assert!(status.success());
    let metadata: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join("metadata.json")).unwrap()).unwrap();
    assert_eq!(
        metadata,
        serde_json::json!({"type": "node", "label": "gnu_1", "path": ""})
    );
    let listing = Command::new("tar")
        .args(["tzvf", "code.tar.gz"])
        .env("TZ", "UTC")
        .current_dir(&out)
        .output()
        .expect("tar");
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(listing.contains("src/lib/assetTransfer.js"), "{listing}");
    assert!(
        listing.contains("META-INF/statedb/couchdb/indexes/indexOwner.json"),
        "{listing}"
    );
    // Normalized ownership, modes and timestamps.
    for line in listing.lines() {
        assert!(line.contains(" 0/0 "), "{line}");
        assert!(line.contains("1970-01-01 00:00"), "{line}");
        assert!(
            line.starts_with("-rw-r--r--") || line.starts_with("drwxr-xr-x"),
            "{line}"
        );
    }
}

/// `context` writes the build context a source Chaincode names: its sha256 is the printed
/// contentDigest (what the build Job verifies) and it holds the Dockerfile; the output says how to
/// load it into a ConfigMap.
#[test]
fn context_writes_the_build_context_a_source_chaincode_names() {
    let tmp = tempfile::tempdir().unwrap();
    let pkg = tmp.path().join("asset.tar.gz");
    let output = package(&fixture("node-contract"), "node", "asset_1.0", &pkg);
    assert!(output.status.success(), "{output:?}");
    let ctx = tmp.path().join("ctx.tar.gz");
    let output = run(bin()
        .arg("context")
        .arg(&pkg)
        .arg("-o")
        .arg(&ctx)
        .args(["--npm-registry", "https://npm.example.com/"]));
    assert!(output.status.success(), "{output:?}");
    let bytes = fs::read(&ctx).unwrap();
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let text = stdout(&output);
    assert!(text.contains(&format!("contentDigest: {digest}")), "{text}");
    assert!(
        text.contains("kubectl create configmap NAME --from-file=context.tar.gz="),
        "{text}"
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let names: Vec<String> = archive
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "Dockerfile"), "{names:?}");
    assert!(names.iter().any(|n| n.starts_with("code/")), "{names:?}");

    // Same package, same options: the same bytes (equal contexts build once).
    let again = tmp.path().join("again.tar.gz");
    let output = run(bin()
        .arg("context")
        .arg(&pkg)
        .arg("-o")
        .arg(&again)
        .args(["--npm-registry", "https://npm.example.com/"]));
    assert!(output.status.success(), "{output:?}");
    assert_eq!(fs::read(&again).unwrap(), bytes);
}

/// What a stock peer does with a package before calling an external builder: metadata.json into
/// METADATA_DIR, code.tar.gz extracted into SOURCE_DIR.
fn as_the_peer_lays_it_out(package: &Path, dir: &Path) -> (PathBuf, PathBuf) {
    let (source, metadata) = (dir.join("source"), dir.join("metadata"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&metadata).unwrap();
    let bytes = fs::read(package).unwrap();
    let mut outer = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    for entry in outer.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        match name.as_str() {
            "metadata.json" => fs::write(metadata.join("metadata.json"), content).unwrap(),
            "code.tar.gz" => tar::Archive::new(flate2::read::GzDecoder::new(content.as_slice()))
                .unpack(&source)
                .unwrap(),
            other => panic!("unexpected {other} in the package"),
        }
    }
    (source, metadata)
}

/// The external builder run as a stock peer runs it, through the scripts `builder install`
/// writes: detect claims node, golang, java and prebuilt-image packages (ours and
/// fabric-builder-k8s's `k8s` type) and leaves ccaas to Fabric's builder; build writes the same
/// build context the operator builds from (same digest as `context`, so a package installed on
/// peers and applied as a Chaincode builds once) or the pinned image; release hands over the
/// CouchDB indexes; a broken metadata.json is refused with the reason.
#[test]
fn the_external_builder_detects_builds_and_releases_as_a_peer_runs_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let builder = tmp.path().join("builder");
    let output = run(bin()
        .args(["builder", "install"])
        .arg(&builder)
        .arg("--copy"));
    assert!(output.status.success(), "{output:?}");
    for step in ["detect", "build", "release"] {
        let mode = fs::metadata(builder.join("bin").join(step))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "bin/{step} is executable");
    }
    let step = |name: &str| Command::new(builder.join("bin").join(name));

    let cases = [
        ("node-contract", "node", true),
        ("go-vendor", "golang", true),
        ("java-gradle", "java", true),
        ("prebuilt-image", "k8s", true),
        ("ccaas", "ccaas", false),
    ];
    for (fixture_name, kind, claimed) in cases {
        let dir = tmp.path().join(fixture_name);
        let pkg = dir.join("package.tar.gz");
        fs::create_dir_all(&dir).unwrap();
        let made = package(&fixture(fixture_name), kind, &format!("{kind}cc_1.0"), &pkg);
        assert!(made.status.success(), "{made:?}");
        let (source, metadata) = as_the_peer_lays_it_out(&pkg, &dir);

        let detected = run(step("detect").arg(&source).arg(&metadata));
        assert_eq!(
            detected.status.success(),
            claimed,
            "detect {kind}: {detected:?}"
        );
        if !claimed {
            continue;
        }
        let out = dir.join("build-output");
        fs::create_dir_all(&out).unwrap();
        let built = run(step("build").arg(&source).arg(&metadata).arg(&out));
        assert!(built.status.success(), "build {kind}: {built:?}");
        let description: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("chaincode-operator.json")).unwrap())
                .unwrap();
        assert_eq!(description["type"], kind);
        assert_eq!(description["label"], format!("{kind}cc_1.0"));
        if kind == "k8s" {
            assert_eq!(description["deploy"], "image");
            let image = description["image"].as_str().unwrap();
            assert!(
                image.starts_with(
                    "ghcr.io/hyperledger-labs/fabric-builder-k8s/sample-go-chaincode@sha256:"
                ),
                "{image}"
            );
            continue;
        }
        assert_eq!(description["deploy"], "source");
        let context = fs::read(out.join("context.tar.gz")).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&context)));
        assert_eq!(description["contentDigest"], digest);
        // The operator's path (`context` on the package file) names the same build.
        let ctx = dir.join("ctx.tar.gz");
        let via_context = run(bin().arg("context").arg(&pkg).arg("-o").arg(&ctx));
        assert!(via_context.status.success(), "{via_context:?}");
        assert!(
            stdout(&via_context).contains(&format!("contentDigest: {digest}")),
            "{kind}: {}",
            stdout(&via_context)
        );

        let release = dir.join("release");
        fs::create_dir_all(&release).unwrap();
        let released = run(step("release").arg(&out).arg(&release));
        assert!(released.status.success(), "release {kind}: {released:?}");
        if fixture_name == "node-contract" {
            assert!(
                release
                    .join("statedb/couchdb/indexes/indexOwner.json")
                    .is_file()
            );
        }
    }

    // A metadata.json that is not JSON: not claimed, and build says why.
    let broken = tmp.path().join("broken");
    let (source, metadata) = (broken.join("source"), broken.join("metadata"));
    fs::create_dir_all(&source).unwrap();
    fs::create_dir_all(&metadata).unwrap();
    fs::write(metadata.join("metadata.json"), "{not json").unwrap();
    let detected = run(step("detect").arg(&source).arg(&metadata));
    assert!(!detected.status.success());
    let built = run(step("build")
        .arg(&source)
        .arg(&metadata)
        .arg(broken.join("out")));
    assert!(!built.status.success());
    assert!(
        String::from_utf8_lossy(&built.stderr).contains("metadata.json is not valid"),
        "{built:?}"
    );
}

/// What the install-time steps take from the peer and tell it: detect says what it claims and
/// exits 1 (with the reason) for what it leaves to others; build takes the propagated image and
/// npm settings into the build context, exactly as the operator's `context` would, and carries the
/// CouchDB indexes to release; release hands them over unchanged and nothing for a package
/// without any; a package that cannot be built fails build with the reason and no build output.
#[test]
fn the_external_builder_steps_take_the_peers_settings_and_say_why_they_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let builder = tmp.path().join("builder");
    let output = run(bin().args(["builder", "install"]).arg(&builder));
    assert!(output.status.success(), "{output:?}");
    let step = |name: &str| {
        let mut command = Command::new(builder.join("bin").join(name));
        for var in [
            "NODE_REGISTRY",
            "CHAINCODE_BUILDER_IMAGE",
            "CHAINCODE_RUNTIME_IMAGE",
            "GOPROXY",
            "MAVEN_MIRROR",
        ] {
            command.env_remove(var);
        }
        command
    };
    let stderr = |output: &Output| String::from_utf8_lossy(&output.stderr).into_owned();
    let laid_out = |fixture_dir: &Path, kind: &str, name: &str| {
        let dir = tmp.path().join(name);
        fs::create_dir_all(&dir).unwrap();
        let pkg = dir.join("package.tar.gz");
        let made = package(fixture_dir, kind, &format!("{name}_1"), &pkg);
        assert!(made.status.success(), "{made:?}");
        let (source, metadata) = as_the_peer_lays_it_out(&pkg, &dir);
        (dir, pkg, source, metadata)
    };

    let (dir, pkg, source, metadata) = laid_out(&fixture("node-contract"), "node", "node");
    let detected = run(step("detect").arg(&source).arg(&metadata));
    assert_eq!(detected.status.code(), Some(0), "{detected:?}");
    assert!(stderr(&detected).contains("chaincode-operator builds node packages"));

    let plain = dir.join("plain-output");
    let built = run(step("build").arg(&source).arg(&metadata).arg(&plain));
    assert!(built.status.success(), "{built:?}");
    let settings = [
        ("NODE_REGISTRY", "https://npm.example/"),
        ("CHAINCODE_BUILDER_IMAGE", "registry.example/nodeenv:2.5"),
        ("CHAINCODE_RUNTIME_IMAGE", "registry.example/noderun:2.5"),
    ];
    let out = dir.join("build-output");
    let built = run(step("build")
        .arg(&source)
        .arg(&metadata)
        .arg(&out)
        .envs(settings));
    assert!(built.status.success(), "{built:?}");
    let digest_of = |out: &Path| {
        let description: serde_json::Value =
            serde_json::from_slice(&fs::read(out.join("chaincode-operator.json")).unwrap())
                .unwrap();
        let context = fs::read(out.join("context.tar.gz")).unwrap();
        let digest = format!("sha256:{}", hex::encode(Sha256::digest(&context)));
        assert_eq!(description["contentDigest"], digest.as_str());
        (digest, context)
    };
    let (digest, context) = digest_of(&out);
    assert_ne!(digest, digest_of(&plain).0, "the settings change the build");
    let via_context = run(bin()
        .arg("context")
        .arg(&pkg)
        .arg("-o")
        .arg(dir.join("ctx.tar.gz"))
        .args(["--npm-registry", "https://npm.example/"])
        .args(["--builder-image", "registry.example/nodeenv:2.5"])
        .args(["--runtime-image", "registry.example/noderun:2.5"]));
    assert!(via_context.status.success(), "{via_context:?}");
    assert!(
        stdout(&via_context).contains(&format!("contentDigest: {digest}")),
        "{}",
        stdout(&via_context)
    );
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(context.as_slice()));
    let mut dockerfile = String::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == "Dockerfile" {
            std::io::Read::read_to_string(&mut entry, &mut dockerfile).unwrap();
        }
    }
    for image in [
        "registry.example/nodeenv:2.5",
        "registry.example/noderun:2.5",
    ] {
        assert!(dockerfile.contains(image), "{image} in\n{dockerfile}");
    }

    // The indexes travel through the build output to release, unchanged.
    let index = "statedb/couchdb/indexes/indexOwner.json";
    let original = fs::read(fixture("node-contract").join("META-INF").join(index)).unwrap();
    assert_eq!(
        fs::read(out.join("META-INF").join(index)).unwrap(),
        original
    );
    let release = dir.join("release");
    fs::create_dir_all(&release).unwrap();
    let released = run(step("release").arg(&out).arg(&release));
    assert_eq!(released.status.code(), Some(0), "{released:?}");
    assert_eq!(fs::read(release.join(index)).unwrap(), original);

    // A prebuilt image has no indexes: release succeeds and hands over nothing.
    let (dir, _, source, metadata) = laid_out(&fixture("prebuilt-image"), "k8s", "image");
    let out = dir.join("build-output");
    assert!(
        run(step("build").arg(&source).arg(&metadata).arg(&out))
            .status
            .success()
    );
    let release = dir.join("release");
    fs::create_dir_all(&release).unwrap();
    let released = run(step("release").arg(&out).arg(&release));
    assert_eq!(released.status.code(), Some(0), "{released:?}");
    assert_eq!(fs::read_dir(&release).unwrap().count(), 0);

    // Left to Fabric's ccaas builder: detect exits 1 saying so, and build refuses it too.
    let (dir, _, source, metadata) = laid_out(&fixture("ccaas"), "ccaas", "svc");
    let detected = run(step("detect").arg(&source).arg(&metadata));
    assert_eq!(detected.status.code(), Some(1), "{detected:?}");
    assert!(
        stderr(&detected).contains("Fabric's ccaas builder"),
        "{detected:?}"
    );
    let built = run(step("build")
        .arg(&source)
        .arg(&metadata)
        .arg(dir.join("out")));
    assert!(!built.status.success());
    assert!(
        stderr(&built).contains("Fabric's ccaas builder"),
        "{built:?}"
    );

    // No metadata.json: detect exits 1 naming it.
    let empty = tmp.path().join("empty-metadata");
    fs::create_dir_all(&empty).unwrap();
    let detected = run(step("detect").arg(&source).arg(&empty));
    assert_eq!(detected.status.code(), Some(1), "{detected:?}");
    assert!(
        stderr(&detected).contains("empty-metadata/metadata.json"),
        "{detected:?}"
    );

    // Claimed, but not buildable: build fails with the platform's reason, writing nothing.
    let nostart = tmp.path().join("nostart-src");
    fs::create_dir_all(&nostart).unwrap();
    fs::write(
        nostart.join("package.json"),
        r#"{"name":"x","version":"1.0.0"}"#,
    )
    .unwrap();
    let (dir, _, source, metadata) = laid_out(&nostart, "node", "nostart");
    let out = dir.join("build-output");
    let built = run(step("build").arg(&source).arg(&metadata).arg(&out));
    assert!(!built.status.success());
    assert!(
        stderr(&built).contains("package.json has no start script"),
        "{built:?}"
    );
    assert!(!out.join("chaincode-operator.json").exists());
}

// ---- bin/run, as a stock peer runs it, against a fake API server ----

/// Only a guard against hangs: every wait ends as soon as what it waits for happens.
const HANG_GUARD: Duration = Duration::from_secs(60);
const NAMESPACE: &str = "fabric-peers";
const ENDORSER: &str = "peer0.org1";
const PEER_ADDRESS: &str = "peer0.org1.example.com:7052";
const CLIENT_CERT: &str =
    "-----BEGIN CERTIFICATE-----\nY2xpZW50IGNlcnQ=\n-----END CERTIFICATE-----\n";
const CLIENT_KEY: &str =
    "-----BEGIN PRIVATE KEY-----\nY2xpZW50IGtleQ==\n-----END PRIVATE KEY-----\n";
const ROOT_CERT: &str = "-----BEGIN CERTIFICATE-----\ncGVlciByb290\n-----END CERTIFICATE-----\n";

/// A node package through the peer's install: the builder's scripts (`builder install`), the
/// package laid out as the peer does, and its BUILD_OUTPUT_DIR from the real bin/build.
struct Installed {
    builder: PathBuf,
    output: PathBuf,
    package_id: String,
}

fn installed_node_package(dir: &Path) -> Installed {
    installed_package(dir, "node-contract", "node", "nodecc_1.0")
}

fn installed_package(dir: &Path, fixture_name: &str, kind: &str, label: &str) -> Installed {
    let builder = dir.join("builder");
    let output = run(bin().args(["builder", "install"]).arg(&builder));
    assert!(output.status.success(), "{output:?}");
    let pkg = dir.join("package.tar.gz");
    let made = package(&fixture(fixture_name), kind, label, &pkg);
    assert!(made.status.success(), "{made:?}");
    let package_id = format!(
        "{label}:{}",
        hex::encode(Sha256::digest(fs::read(&pkg).unwrap()))
    );
    let (source, metadata) = as_the_peer_lays_it_out(&pkg, dir);
    let out = dir.join("build-output");
    fs::create_dir_all(&out).unwrap();
    let built = run(Command::new(builder.join("bin/build"))
        .arg(&source)
        .arg(&metadata)
        .arg(&out));
    assert!(built.status.success(), "{built:?}");
    Installed {
        builder,
        output: out,
        package_id,
    }
}

/// RUN_METADATA_DIR with the chaincode.json a peer writes for one launch (with TLS).
fn run_metadata(dir: &Path, package_id: &str) -> PathBuf {
    run_metadata_with(dir, package_id, CLIENT_CERT, CLIENT_KEY, ROOT_CERT)
}

fn run_metadata_with(dir: &Path, package_id: &str, cert: &str, key: &str, root: &str) -> PathBuf {
    let meta = dir.join("run-metadata");
    fs::create_dir_all(&meta).unwrap();
    let chaincode = json!({
        "chaincode_id": package_id,
        "peer_address": PEER_ADDRESS,
        "client_cert": cert,
        "client_key": key,
        "root_cert": root,
        "mspid": "Org1MSP",
    });
    fs::write(meta.join("chaincode.json"), chaincode.to_string()).unwrap();
    meta
}

/// bin/run BUILD_OUTPUT_DIR RUN_METADATA_DIR started as a peer starts it: only the propagated
/// environment (the registration relay off: the chaincode dials the peer itself).
struct PeerRun {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

fn peer_runs(
    builder: &Path,
    output: &Path,
    metadata: &Path,
    home: &Path,
    env: &[(&str, &str)],
) -> PeerRun {
    let mut command = Command::new(builder.join("bin/run"));
    command
        .arg(output)
        .arg(metadata)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("CHAINCODE_NAMESPACE", NAMESPACE)
        .env("CHAINCODE_ENDORSER_ID", ENDORSER)
        .env("CHAINCODE_RELAY", "off")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("bin/run starts");
    let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
    let mut readers = Vec::new();
    let streams: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().unwrap()),
        Box::new(child.stderr.take().unwrap()),
    ];
    for stream in streams {
        let lines = lines.clone();
        readers.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(stream)
                .lines()
                .map_while(Result::ok)
            {
                lines.0.lock().unwrap().push(line);
                lines.1.notify_all();
            }
        }));
    }
    PeerRun {
        child,
        lines,
        readers,
    }
}

impl PeerRun {
    fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Waits for an output line containing `text`.
    fn wait_for_line(&self, text: &str) -> String {
        let deadline = Instant::now() + HANG_GUARD;
        let mut lines = self.lines.0.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(text)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line with {text:?} from bin/run:\n{}",
                lines.join("\n")
            );
            lines = self.lines.1.wait_timeout(lines, left).unwrap().0;
        }
    }

    fn still_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// The peer stops chaincode with SIGTERM.
    fn terminate(&self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    }

    /// The exit status, with all the output read.
    fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + HANG_GUARD;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "bin/run did not exit:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        status
    }
}

impl Drop for PeerRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one launch applied: the Chaincode, its TLS Secret (None in plaintext) and build context
/// ConfigMap (None for a prebuilt image), as the fake holds them.
struct Launch {
    name: String,
    chaincode: Value,
    secret: Option<Value>,
    config_map: Option<Value>,
}

/// The launch once bin/run has written all of it: it watches the Chaincode (a list by
/// `metadata.name`, then a watch) only after its last write.
fn applied_launch(fake: &FakeApiServer) -> Launch {
    fake.wait_for("a Chaincode that bin/run watches", HANG_GUARD, |c| {
        let chaincode = c.all("chaincodes").first().copied()?.clone();
        let name = chaincode["metadata"]["name"].as_str()?.to_string();
        let selector = format!("metadata.name={name}");
        c.requests_to("GET", "/chaincodes")
            .iter()
            .find(|r| r.query.get("fieldSelector") == Some(&selector))?;
        Some(Launch {
            secret: c.get("secrets", &format!("{name}-endorser-tls")).cloned(),
            config_map: c.get("configmaps", &format!("{name}-context")).cloned(),
            name,
            chaincode,
        })
    })
}

/// Writes the Chaincode's status as the operator does for the launch's current attempt.
fn operator_reports(fake: &FakeApiServer, name: &str, phase: &str, conditions: Value) {
    let cc = fake
        .with(|c| c.get("chaincodes", name).cloned())
        .expect("the Chaincode");
    fake.write_status(
        "chaincodes",
        name,
        json!({
            "phase": phase,
            "podName": format!("{name}-pod"),
            "launchAttempt": cc["spec"]["launchAttempt"],
            "observedGeneration": cc["metadata"]["generation"],
            "conditions": conditions,
        }),
    );
}

fn condition(status: &str, kind: &str, reason: &str, message: &str) -> Value {
    json!({"type": kind, "status": status, "reason": reason, "message": message})
}

fn running_conditions(pod: &str) -> Value {
    json!([
        condition("True", "Built", "Built", "image built"),
        condition(
            "True",
            "Launched",
            "PodRunning",
            &format!("pod {pod} is running")
        ),
        condition(
            "Unknown",
            "Ready",
            "RegistrationUnobserved",
            "launched by a stock peer"
        ),
    ])
}

/// The Registered condition the endorser side wrote, once it is there.
fn registered(fake: &FakeApiServer, name: &str, reason: &str) -> Value {
    fake.wait_for(
        &format!("Registered {reason}"),
        HANG_GUARD,
        |c: &Cluster| {
            c.get("chaincodes", name)?["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|cond| cond["type"] == "Registered" && cond["reason"] == reason)
                .cloned()
        },
    )
}

fn decoded(object: &Value, field: &str, key: &str) -> Vec<u8> {
    let text = object[field][key].as_str().unwrap_or_else(|| {
        panic!("no {field}.{key} in {object:#}");
    });
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// bin/run of a node package, as the peer runs it: it applies the TLS Secret with the peer's
/// certificates in the files the chaincode reads, the build context ConfigMap from the build
/// output, and the Chaincode with the package id, the peer, the MSP id, a new launch attempt and
/// the propagated settings (namespace, endorser id, build registry, node registry, pod settings,
/// startup timeout), all server-side applied and labelled; once the operator says the Pod runs it
/// marks registration as not observed (`Registered=Unknown, StockPeer`), prints the Pod's log for
/// the peer and keeps running; the peer's SIGTERM deletes the Chaincode, Secret and ConfigMap and
/// exits 0.
#[test]
fn builder_run_launches_reports_logs_and_cleans_up_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);
    let fake = FakeApiServer::start();
    let kubeconfig = fake.kubeconfig(tmp.path(), "default");
    let pod_settings = tmp.path().join("pod.yaml");
    fs::write(
        &pod_settings,
        "serviceAccountName: chaincode-runner\nimagePullSecrets:\n- name: regcred\n\
         nodeSelector:\n  kubernetes.io/os: linux\nenv:\n- name: EXTRA_SETTING\n  value: \"1\"\n",
    )
    .unwrap();
    let before = epoch_seconds();
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("CHAINCODE_BUILD_REGISTRY", "registry.example/chaincode"),
            ("NODE_REGISTRY", "https://npm.example/"),
            ("CHAINCODE_POD_SETTINGS", pod_settings.to_str().unwrap()),
            ("CHAINCODE_STARTUP_TIMEOUT", "120"),
        ],
    );

    let launch = applied_launch(&fake);
    let after = epoch_seconds();
    let secret = launch.secret.clone().expect("a TLS Secret");
    let config_map = launch
        .config_map
        .clone()
        .expect("a build context ConfigMap");
    let name = &launch.name;
    let cc = &launch.chaincode;
    assert!(name.starts_with("peer0-org1-nodecc-1-0-"), "{name}");
    assert_eq!(cc["metadata"]["namespace"], NAMESPACE);
    let spec = &cc["spec"];
    assert_eq!(spec["packageId"], installed.package_id.as_str());
    assert_eq!(spec["platform"], "node");
    assert_eq!(
        spec["peer"],
        json!({"address": PEER_ADDRESS, "mspId": "Org1MSP"})
    );
    assert_eq!(spec["tls"]["secretName"], format!("{name}-endorser-tls"));
    let attempt = spec["launchAttempt"].as_u64().unwrap();
    assert!(
        (before..=after).contains(&attempt),
        "launchAttempt {attempt}"
    );
    let description: Value = serde_json::from_slice(
        &fs::read(installed.output.join("chaincode-operator.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        spec["source"],
        json!({
            "contentDigest": description["contentDigest"],
            "configMap": {"name": format!("{name}-context"), "key": "context.tar.gz"},
        })
    );
    assert_eq!(spec["build"]["registry"], "registry.example/chaincode");
    assert_eq!(spec["build"]["npmRegistry"], "https://npm.example/");
    assert_eq!(spec["startupTimeoutSeconds"], 120);
    let pod = &spec["pod"];
    assert_eq!(pod["serviceAccountName"], "chaincode-runner");
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "regcred"}]));
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    let env = pod["env"].as_array().unwrap();
    assert!(
        env.contains(&json!({"name": "EXTRA_SETTING", "value": "1"})),
        "{env:?}"
    );
    assert!(
        env.iter()
            .any(|e| e["name"] == "CORE_CHAINCODE_LOGGING_LEVEL"),
        "{env:?}"
    );

    // Everything the launch wrote carries the same labels and package annotation, and the
    // Secret and ConfigMap are owned by the Chaincode (deleting it deletes them).
    let hash = installed.package_id.split_once(':').unwrap().1;
    let labels = json!({
        "app.kubernetes.io/managed-by": "chaincode-endorser",
        "fabric.chaincode.dev/endorser": ENDORSER,
        "fabric.chaincode.dev/package-label": "nodecc_1.0",
        "fabric.chaincode.dev/package-hash": &hash[..40],
    });
    for object in [cc, &secret, &config_map] {
        assert_eq!(object["metadata"]["labels"], labels, "{object:#}");
        assert_eq!(
            object["metadata"]["annotations"]["fabric.chaincode.dev/package-id"],
            installed.package_id.as_str()
        );
        assert_eq!(object["metadata"]["namespace"], NAMESPACE);
    }
    for object in [&secret, &config_map] {
        let owner = &object["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "Chaincode");
        assert_eq!(owner["name"], name.as_str());
        assert_eq!(owner["uid"], cc["metadata"]["uid"]);
    }
    // The peer's certificates, in the files the operator mounts for the chaincode.
    assert_eq!(
        decoded(&secret, "data", "client.crt"),
        CLIENT_CERT.as_bytes()
    );
    assert_eq!(
        decoded(&secret, "data", "client.key"),
        CLIENT_KEY.as_bytes()
    );
    assert_eq!(decoded(&secret, "data", "peer.crt"), ROOT_CERT.as_bytes());
    assert_eq!(secret["data"].as_object().unwrap().len(), 3);
    assert_eq!(
        decoded(&config_map, "binaryData", "context.tar.gz"),
        fs::read(installed.output.join("context.tar.gz")).unwrap()
    );
    // Server-side applies by the endorser's field manager, with the kubeconfig's token.
    fake.with(|c| {
        let applies: Vec<_> = c.requests.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(
            applies.len(),
            5,
            "Secret, ConfigMap, Chaincode, Secret, ConfigMap"
        );
        for request in &c.requests {
            assert_eq!(request.authorization.as_deref(), Some("Bearer fake-token"));
        }
        for request in applies {
            assert_eq!(
                request.content_type.as_deref(),
                Some("application/apply-patch+yaml"),
                "{request:?}"
            );
            assert_eq!(request.query["fieldManager"], "chaincode-endorser");
            assert_eq!(request.query["force"], "true");
            assert!(
                request.path.contains(&format!("/namespaces/{NAMESPACE}/")),
                "{request:?}"
            );
        }
    });

    // The operator's Pod runs: its log reaches the peer, registration is marked unobservable.
    let pod_name = format!("{name}-pod");
    fake.pod_log(
        &pod_name,
        &["chaincode log line one", "chaincode log line two"],
    );
    operator_reports(&fake, name, "Running", running_conditions(&pod_name));
    peer_run.wait_for_line(&format!("is running in Pod {pod_name}"));
    let stock = registered(&fake, name, "StockPeer");
    assert_eq!(stock["status"], "Unknown");
    assert_eq!(stock["observedGeneration"], cc["metadata"]["generation"]);
    let line = peer_run.wait_for_line("chaincode log line one");
    assert!(line.contains(&installed.package_id), "{line}");
    peer_run.wait_for_line("chaincode log line two");
    fake.pod_log(&pod_name, &["chaincode log line three"]);
    peer_run.wait_for_line("chaincode log line three");
    fake.with(|c| {
        // kube's watcher: a list by name, then a watch from the list's resourceVersion.
        let selector = format!("metadata.name={name}");
        let reads = c.requests_to("GET", "/chaincodes");
        let list = reads.iter().position(|r| !r.is_watch()).expect("a list");
        let watch = reads.iter().position(|r| r.is_watch()).expect("a watch");
        assert!(list < watch);
        assert_eq!(reads[watch].query["fieldSelector"], selector);
        assert!(reads[watch].query.contains_key("resourceVersion"));
        let logs = c.requests_to("GET", &format!("pods/{pod_name}/log"));
        assert_eq!(logs.len(), 1, "{logs:?}");
        assert_eq!(logs[0].query["follow"], "true");
        let status_patches = c.requests_to("PATCH", &format!("chaincodes/{name}/status"));
        assert_eq!(status_patches.len(), 1, "{status_patches:?}");
        let condition = &status_patches[0].body.as_ref().unwrap()["status"]["conditions"][0];
        assert_eq!(condition["type"], "Registered");
        assert_eq!(condition["status"], "Unknown");
        // Only its own condition: the operator's stay as they are.
        assert_eq!(
            c.get("chaincodes", name).unwrap()["status"]["conditions"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
    });
    assert!(peer_run.still_running(), "{}", peer_run.output());

    // The peer stops the chaincode: everything the launch wrote is deleted, exit 0.
    peer_run.terminate();
    let status = peer_run.exit();
    assert_eq!(status.code(), Some(0), "{}", peer_run.output());
    assert!(peer_run.output().contains("stopped by the peer"));
    fake.with(|c| {
        for path in [
            format!("chaincodes/{name}"),
            format!("secrets/{name}-endorser-tls"),
            format!("configmaps/{name}-context"),
        ] {
            assert_eq!(c.requests_to("DELETE", &path).len(), 1, "DELETE {path}");
        }
        assert!(c.objects.is_empty(), "{:?}", c.objects.keys());
    });
}

/// A launch the operator reports as failed for good ends bin/run non-zero with the reason, and
/// marks the Chaincode `Registered=False, LaunchFailed`; the failed launch is kept for `kubectl
/// describe` (the runtime deletes a failed launch only while its Pod runs).
#[test]
fn builder_run_exits_non_zero_with_the_reason_when_the_launch_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);
    let cases = [
        (
            "Launching",
            json!([
                condition("True", "Built", "Built", "image built"),
                condition(
                    "False",
                    "Launched",
                    "ImagePullFailed",
                    "ErrImagePull: manifest unknown"
                ),
            ]),
            "ImagePullFailed: ErrImagePull: manifest unknown",
        ),
        (
            "Failed",
            json!([
                condition(
                    "False",
                    "Built",
                    "BuildFailed",
                    "npm ERR! missing script: start"
                ),
                condition("False", "Launched", "BuildFailed", "no image to run"),
            ]),
            "BuildFailed: npm ERR! missing script: start",
        ),
    ];
    for (phase, conditions, reason) in cases {
        let fake = FakeApiServer::start();
        let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
        let mut peer_run = peer_runs(
            &installed.builder,
            &installed.output,
            &meta,
            tmp.path(),
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        let launch = applied_launch(&fake);
        operator_reports(&fake, &launch.name, phase, conditions);
        let status = peer_run.exit();
        let output = peer_run.output();
        assert_eq!(status.code(), Some(1), "{output}");
        assert!(output.contains("did not start"), "{output}");
        assert!(output.contains(reason), "{reason}: {output}");
        let failed = registered(&fake, &launch.name, "LaunchFailed");
        assert_eq!(failed["status"], "False");
        assert!(
            failed["message"].as_str().unwrap().contains(reason),
            "{failed}"
        );
        fake.with(|c| {
            assert!(c.requests_to("DELETE", "").is_empty());
            assert!(c.get("chaincodes", &launch.name).is_some());
        });
    }
}

/// A chaincode whose Pod ends after it ran ends bin/run non-zero (the peer then sees its
/// chaincode gone), saying why.
#[test]
fn builder_run_exits_non_zero_when_the_pod_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);
    let fake = FakeApiServer::start();
    let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let launch = applied_launch(&fake);
    let pod = format!("{}-pod", launch.name);
    fake.pod_log(&pod, &["starting chaincode"]);
    operator_reports(&fake, &launch.name, "Running", running_conditions(&pod));
    peer_run.wait_for_line("starting chaincode");
    registered(&fake, &launch.name, "StockPeer");
    assert!(peer_run.still_running(), "{}", peer_run.output());

    let ended = format!("pod {pod} failed (exit code 1, Error): TypeError: boom");
    fake.pod_log(&pod, &["TypeError: boom"]);
    fake.end_pod_log(&pod);
    operator_reports(
        &fake,
        &launch.name,
        "Failed",
        json!([
            condition("False", "Launched", "PodFailed", &ended),
            condition("False", "Ready", "PodFailed", &ended),
        ]),
    );
    let status = peer_run.exit();
    let output = peer_run.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("ended"), "{output}");
    assert!(output.contains(&ended), "{output}");
    assert!(output.contains("TypeError: boom"), "{output}");
    let failed = registered(&fake, &launch.name, "LaunchFailed");
    assert_eq!(failed["status"], "False");
}

/// Input a peer should never hand over, or that an earlier step did not write: bin/run fails
/// at once naming the file, before it writes anything to the cluster.
#[test]
fn builder_run_refuses_missing_or_broken_input_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let fake = FakeApiServer::start();
    let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
    let good = run_metadata(tmp.path(), &installed.package_id);
    let bad_metadata = |dir: &str, content: Option<&str>| {
        let meta = tmp.path().join(dir);
        fs::create_dir_all(&meta).unwrap();
        if let Some(content) = content {
            fs::write(meta.join("chaincode.json"), content).unwrap();
        }
        meta
    };
    let no_output = tmp.path().join("empty-build-output");
    fs::create_dir_all(&no_output).unwrap();
    let cases = [
        (
            no_output.clone(),
            good.clone(),
            "empty-build-output/chaincode-operator.json",
        ),
        (
            installed.output.clone(),
            bad_metadata("no-chaincode-json", None),
            "no-chaincode-json/chaincode.json",
        ),
        (
            installed.output.clone(),
            bad_metadata("garbled", Some("{\"chaincode_id\": ")),
            "garbled/chaincode.json is not valid",
        ),
        (
            installed.output.clone(),
            bad_metadata(
                "no-mspid",
                Some(
                    &json!({"chaincode_id": installed.package_id,
                             "peer_address": PEER_ADDRESS})
                    .to_string(),
                ),
            ),
            "no-mspid/chaincode.json is not valid",
        ),
    ];
    for (output, meta, expected) in cases {
        let mut peer_run = peer_runs(
            &installed.builder,
            &output,
            &meta,
            tmp.path(),
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        let status = peer_run.exit();
        let text = peer_run.output();
        assert_eq!(status.code(), Some(1), "{expected}: {text}");
        assert!(text.contains(expected), "{expected}: {text}");
    }
    // The build context missing beside its description.
    fs::remove_file(installed.output.join("context.tar.gz")).unwrap();
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &good,
        tmp.path(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    assert_eq!(peer_run.exit().code(), Some(1), "{}", peer_run.output());
    assert!(
        peer_run.output().contains("build-output/context.tar.gz"),
        "{}",
        peer_run.output()
    );
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
}

/// No cluster to talk to: bin/run fails promptly with a message saying so, not a hang.
/// A kubeconfig at `path` for an API server on 127.0.0.1:`port` (plain HTTP, no credentials).
fn local_kubeconfig(path: &Path, port: u16) -> PathBuf {
    fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: local\n  cluster:\n    server: \
             http://127.0.0.1:{port}\ncontexts:\n- name: local\n  context:\n    cluster: local\n    \
             user: local\ncurrent-context: local\nusers:\n- name: local\n  user: {{}}\n"
        ),
    )
    .unwrap();
    path.to_path_buf()
}

#[test]
fn builder_run_fails_clearly_without_a_reachable_api_server() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);

    // A kubeconfig naming a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let kubeconfig = local_kubeconfig(&tmp.path().join("unreachable"), port);
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    assert_eq!(peer_run.exit().code(), Some(1), "{}", peer_run.output());
    let text = peer_run.output();
    assert!(
        text.contains(&format!("launching {}", installed.package_id)),
        "{text}"
    );
    assert!(text.contains("applying the launch's TLS Secret"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}")) || text.contains("onnect"),
        "{text}"
    );

    // A server that takes the connection and never answers: bounded by the startup timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let kubeconfig = local_kubeconfig(&tmp.path().join("silent"), port);
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("CHAINCODE_STARTUP_TIMEOUT", "1"),
        ],
    );
    assert_eq!(peer_run.exit().code(), Some(1), "{}", peer_run.output());
    let text = peer_run.output();
    assert!(
        text.contains("the Kubernetes API server did not answer within 1 s"),
        "{text}"
    );
    drop(silent);

    // No kubeconfig at all (HOME has none) and not in a cluster.
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[],
    );
    assert_eq!(peer_run.exit().code(), Some(1), "{}", peer_run.output());
    let text = peer_run.output();
    assert!(text.contains("connecting to Kubernetes"), "{text}");
    assert!(text.contains("KUBECONFIG"), "{text}");
}
/// The API server refusing a write part-way (a 409 conflict, a 500): bin/run fails with an error
/// naming the object and the server's answer, and leaves nothing of the launch behind.
#[test]
fn builder_run_leaves_nothing_half_created_when_an_apply_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);
    let cases = [
        // (method, path suffix, which matching request, code, reason, expected message)
        (
            "PATCH",
            "-context",
            0,
            409,
            "Conflict",
            "applying the build context ConfigMap",
        ),
        ("PATCH", "", 2, 500, "InternalError", "applying Chaincode"),
        (
            "PATCH",
            "-endorser-tls",
            1,
            409,
            "Conflict",
            "applying the launch's TLS Secret",
        ),
    ];
    for (method, suffix, nth, code, reason, expected) in cases {
        let fake = FakeApiServer::start();
        let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
        fake.fail(method, suffix, nth, code, reason);
        let mut peer_run = peer_runs(
            &installed.builder,
            &installed.output,
            &meta,
            tmp.path(),
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        let status = peer_run.exit();
        let text = peer_run.output();
        assert_eq!(status.code(), Some(1), "{text}");
        assert!(text.contains(expected), "{expected}: {text}");
        assert!(
            text.contains(&format!("{reason} injected by the test")),
            "{text}"
        );
        fake.with(|c| {
            assert!(
                c.objects.is_empty(),
                "{expected}: left behind {:?}",
                c.objects.keys()
            )
        });
    }
}

/// A prebuilt-image package (fabric-builder-k8s's `k8s` type) in plaintext (the peer's
/// chaincode.json without certificates): bin/run applies only the Chaincode, naming the pinned
/// image, with no TLS Secret and no build context; the peer's SIGTERM before the Pod runs deletes
/// it and exits 0.
#[test]
fn builder_run_of_a_prebuilt_image_in_plaintext_stopped_before_it_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_package(tmp.path(), "prebuilt-image", "k8s", "k8scc_1.0");
    let meta = run_metadata_with(tmp.path(), &installed.package_id, "", "", "");
    let fake = FakeApiServer::start();
    let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let launch = applied_launch(&fake);
    assert!(launch.secret.is_none() && launch.config_map.is_none());
    let description: Value = serde_json::from_slice(
        &fs::read(installed.output.join("chaincode-operator.json")).unwrap(),
    )
    .unwrap();
    let (image, digest) = description["image"]
        .as_str()
        .unwrap()
        .split_once('@')
        .unwrap();
    let spec = &launch.chaincode["spec"];
    assert_eq!(spec["platform"], "image");
    assert_eq!(spec["image"], json!({"name": image, "digest": digest}));
    assert_eq!(spec["packageId"], installed.package_id.as_str());
    assert_eq!(
        spec["peer"],
        json!({"address": PEER_ADDRESS, "mspId": "Org1MSP"})
    );
    assert!(
        spec.get("source").is_none() && spec.get("tls").is_none(),
        "{spec:#}"
    );
    fake.with(|c| {
        let applies: Vec<_> = c.requests.iter().filter(|r| r.method == "PATCH").collect();
        assert_eq!(applies.len(), 1, "only the Chaincode: {applies:?}");
    });
    assert!(peer_run.still_running(), "{}", peer_run.output());

    peer_run.terminate();
    let status = peer_run.exit();
    assert_eq!(status.code(), Some(0), "{}", peer_run.output());
    assert!(
        peer_run
            .output()
            .contains("stopped by the peer before it ran"),
        "{}",
        peer_run.output()
    );
    fake.with(|c| {
        assert_eq!(
            c.requests_to("DELETE", &format!("chaincodes/{}", launch.name))
                .len(),
            1
        );
        assert!(c.objects.is_empty(), "{:?}", c.objects.keys());
    });
}

/// The peer's SIGTERM when the launch cannot be deleted (the API server answers 500), before and
/// after the Pod runs: bin/run exits 1 saying so, instead of claiming a clean stop.
#[test]
fn builder_run_says_so_when_the_launch_cannot_be_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let meta = run_metadata(tmp.path(), &installed.package_id);
    for running in [false, true] {
        let fake = FakeApiServer::start();
        let kubeconfig = fake.kubeconfig(tmp.path(), NAMESPACE);
        let mut peer_run = peer_runs(
            &installed.builder,
            &installed.output,
            &meta,
            tmp.path(),
            &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
        );
        let launch = applied_launch(&fake);
        fake.fail(
            "DELETE",
            &format!("chaincodes/{}", launch.name),
            0,
            500,
            "InternalError",
        );
        if running {
            let pod = format!("{}-pod", launch.name);
            operator_reports(&fake, &launch.name, "Running", running_conditions(&pod));
            peer_run.wait_for_line("is running in Pod");
        }
        peer_run.terminate();
        let status = peer_run.exit();
        let text = peer_run.output();
        assert_eq!(status.code(), Some(1), "running {running}: {text}");
        assert!(text.contains("deleting the launch"), "{text}");
        assert!(
            text.contains("InternalError injected by the test"),
            "{text}"
        );
    }
}

/// A stand-in for a stock peer's chaincode listener: mutual TLS from its own CA, a stream only
/// with the client certificate it issued (Fabric binds the certificate to the chaincode), and
/// REGISTER answered with REGISTERED and READY.
mod fake_peer {
    use std::pin::Pin;

    use chaincode_operator::endorser::chaincode::tls::{CertHash, ChaincodeCa, cert_hash};
    use chaincode_operator::proto::protos::ChaincodeMessage;
    use chaincode_operator::proto::protos::chaincode_message::Type;
    use chaincode_operator::proto::protos::chaincode_support_server::{
        ChaincodeSupport, ChaincodeSupportServer,
    };
    use futures::{Stream, StreamExt as _};
    use tonic::{Request, Response, Status, Streaming};

    pub struct Peer {
        pub address: String,
        /// chaincode.json's `client_cert`, `client_key` (PKCS#8 under an `EC PRIVATE KEY` label,
        /// as Fabric's peer writes it) and `root_cert`.
        pub client_cert: String,
        pub client_key: String,
        pub root_cert: String,
        _runtime: tokio::runtime::Runtime,
    }

    struct Listener {
        issued: CertHash,
    }

    type Messages = Pin<Box<dyn Stream<Item = Result<ChaincodeMessage, Status>> + Send>>;

    #[tonic::async_trait]
    impl ChaincodeSupport for Listener {
        type RegisterStream = Messages;

        async fn register(
            &self,
            request: Request<Streaming<ChaincodeMessage>>,
        ) -> Result<Response<Messages>, Status> {
            let presented = request
                .peer_certs()
                .and_then(|certs| certs.first().map(|c| cert_hash(c)));
            if presented != Some(self.issued) {
                return Err(Status::unauthenticated(
                    "not the certificate this peer issued",
                ));
            }
            let replies = request.into_inner().flat_map(|message| {
                let kinds = match message {
                    Ok(m) if m.r#type == Type::Register as i32 => {
                        vec![Type::Registered, Type::Ready]
                    }
                    _ => Vec::new(),
                };
                futures::stream::iter(kinds.into_iter().map(|kind| {
                    Ok(ChaincodeMessage {
                        r#type: kind as i32,
                        ..Default::default()
                    })
                }))
            });
            Ok(Response::new(Box::pin(replies)))
        }
    }

    pub fn start() -> Peer {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let ca = ChaincodeCa::generate("fake peer").unwrap();
        let server = ca.issue_listener("127.0.0.1:0").unwrap();
        let client = ca.issue_client("chaincode").unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let router = tonic::transport::Server::builder()
            .tls_config(ca.tonic_server_tls(&server))
            .unwrap()
            .add_service(ChaincodeSupportServer::new(Listener {
                issued: client.hash,
            }));
        runtime.spawn(
            router.serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        Peer {
            address,
            client_cert: client.cert_pem,
            client_key: client
                .key_pem
                .replace("BEGIN PRIVATE KEY", "BEGIN EC PRIVATE KEY")
                .replace("END PRIVATE KEY", "END EC PRIVATE KEY"),
            root_cert: ca.root_pem().to_string(),
            _runtime: runtime,
        }
    }
}

/// The chaincode's side of a stream to `address` with the launch Secret's files: sends REGISTER
/// and returns the message types it got back; its side of the stream ends when `hold` fires.
async fn chaincode_registers(
    address: &str,
    secret: &Value,
    hold: tokio::sync::oneshot::Receiver<()>,
) -> Vec<i32> {
    use chaincode_operator::proto::protos::ChaincodeMessage;
    use chaincode_operator::proto::protos::chaincode_message::Type;
    use chaincode_operator::proto::protos::chaincode_support_client::ChaincodeSupportClient;
    use futures::StreamExt as _;
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
    let text = |key: &str| String::from_utf8(decoded(secret, "data", key)).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(text("peer.crt")))
        .identity(Identity::from_pem(text("client.crt"), text("client.key")))
        .domain_name("127.0.0.1");
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .expect("the chaincode reaches the relay with the Secret's certificates");
    let register = ChaincodeMessage {
        r#type: Type::Register as i32,
        ..Default::default()
    };
    let outbound = futures::stream::iter([register]).chain(
        futures::stream::once(async move {
            let _ = hold.await;
            ChaincodeMessage::default()
        })
        .filter(|_| futures::future::ready(false)),
    );
    let mut inbound = ChaincodeSupportClient::new(channel)
        .register(outbound)
        .await
        .expect("the relay forwards the stream to the peer")
        .into_inner();
    // Everything the peer sends until the stream ends (after `hold`, when the chaincode's side
    // ends and the relay ends the peer's).
    let mut kinds = Vec::new();
    while let Some(Ok(message)) = inbound.next().await {
        kinds.push(message.r#type);
    }
    kinds
}

/// bin/run with its registration relay (the default): the Chaincode tells the chaincode to dial
/// the relay, with certificates from the relay's CA instead of the peer's (the peer's chaincode
/// key stays on the peer's host); a chaincode that dials it reaches the peer, which accepts the
/// certificate it issued (relabelled as Fabric writes its keys); `Registered=True` once the peer
/// sent READY, `Registered=False, StreamClosed` when the stream ends; SIGTERM cleans up.
#[test]
fn builder_run_relays_the_chaincode_to_the_peer_and_reports_its_registration() {
    let tmp = tempfile::tempdir().unwrap();
    let installed = installed_node_package(tmp.path());
    let peer = fake_peer::start();
    let meta = tmp.path().join("run-metadata");
    fs::create_dir_all(&meta).unwrap();
    let chaincode_json = json!({
        "chaincode_id": installed.package_id,
        "peer_address": peer.address,
        "client_cert": peer.client_cert,
        "client_key": peer.client_key,
        "root_cert": peer.root_cert,
        "mspid": "Org1MSP",
    });
    fs::write(meta.join("chaincode.json"), chaincode_json.to_string()).unwrap();
    let fake = FakeApiServer::start();
    let kubeconfig = fake.kubeconfig(tmp.path(), "default");
    let mut peer_run = peer_runs(
        &installed.builder,
        &installed.output,
        &meta,
        tmp.path(),
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap()),
            ("CHAINCODE_BUILD_REGISTRY", "registry.example/chaincode"),
            ("CHAINCODE_RELAY", "on"),
            ("CHAINCODE_RELAY_LISTEN", "127.0.0.1:0"),
        ],
    );
    let launch = applied_launch(&fake);
    let name = &launch.name;
    let relay = launch.chaincode["spec"]["peer"]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        relay.starts_with("127.0.0.1:") && relay != peer.address,
        "the chaincode dials the relay on the peer's host: {relay}"
    );
    let secret = launch.secret.clone().expect("a TLS Secret");
    for (file, peers) in [
        ("client.crt", &peer.client_cert),
        ("client.key", &peer.client_key),
        ("peer.crt", &peer.root_cert),
    ] {
        assert_ne!(
            decoded(&secret, "data", file),
            peers.as_bytes(),
            "{file} comes from the relay's CA, not the peer's"
        );
    }

    let pod_name = format!("{name}-pod");
    operator_reports(&fake, name, "Running", running_conditions(&pod_name));
    peer_run.wait_for_line(&format!("is running in Pod {pod_name}"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (release, hold) = tokio::sync::oneshot::channel();
    let stream = runtime.spawn({
        let secret = secret.clone();
        let relay = relay.clone();
        async move { chaincode_registers(&relay, &secret, hold).await }
    });
    let ready = registered(&fake, name, "Registered");
    assert_eq!(ready["status"], "True", "{ready}");
    let kinds = runtime.block_on(async {
        let _ = release.send(());
        stream.await.unwrap()
    });
    use chaincode_operator::proto::protos::chaincode_message::Type;
    assert_eq!(kinds, [Type::Registered as i32, Type::Ready as i32]);
    let closed = registered(&fake, name, "StreamClosed");
    assert_eq!(closed["status"], "False", "{closed}");
    fake.with(|c| {
        assert!(
            c.requests_to("PATCH", &format!("chaincodes/{name}/status"))
                .iter()
                .all(|r| !r.body.as_ref().unwrap().to_string().contains("StockPeer")),
            "never StockPeer with the relay"
        );
    });

    peer_run.terminate();
    let status = peer_run.exit();
    assert_eq!(status.code(), Some(0), "{}", peer_run.output());
    fake.with(|c| assert!(c.objects.is_empty(), "{:?}", c.objects.keys()));
}
