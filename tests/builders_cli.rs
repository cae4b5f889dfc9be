//! `chaincode-operator package` and `inspect`, run as the binary a user runs.
use std::{
    fs,
    path::{Path, PathBuf},
    process::{Command, Output},
};

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
