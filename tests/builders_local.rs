//! Local builds for the process runtime: the platform's build steps really run, produce what the
//! run plan starts, and failures say which step failed and why.
use std::{fs, path::Path, process::Command};

use chaincode_operator::builders::{
    ChaincodePackage, Limits,
    local::{LocalBuildError, build_locally},
    package::{package_source_dir, read_package},
    platform::{BuildOptions, LaunchSpec, platform_of},
};

fn package_dir(dir: &Path, kind: &str) -> ChaincodePackage {
    let bytes = package_source_dir(dir, kind, "local_1", None, &Limits::default()).unwrap();
    read_package(&bytes, &Limits::default()).unwrap()
}

#[test]
fn node_build_runs_npm_install_and_the_run_plan_starts_the_chaincode() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    // A dependency-free chaincode stand-in: npm install has nothing to fetch, so no network is used.
    fs::write(
        src.join("package.json"),
        r#"{"name":"echo-cc","version":"1.0.0","scripts":{"start":"node index.js"}}"#,
    )
    .unwrap();
    fs::write(
        src.join("index.js"),
        "console.log(JSON.stringify({args: process.argv.slice(2), id: process.env.CORE_CHAINCODE_ID_NAME, tls: process.env.CORE_PEER_TLS_ENABLED}));\n",
    )
    .unwrap();
    let package = package_dir(&src, "node");
    let work = tmp.path().join("work");
    let options = BuildOptions {
        npm_registry: Some("http://127.0.0.1:9/".into()),
        ..BuildOptions::default()
    };
    let build = build_locally(&package, &work, &options).unwrap_or_else(|err| panic!("{err}"));
    assert!(build.install_dir.join("index.js").exists());
    assert!(build.install_dir.join("package.json").exists());

    let launch = LaunchSpec::new(&package.id.to_string(), "127.0.0.1:7052", "Org1MSP");
    let plan = platform_of(&package)
        .unwrap()
        .run_plan(&package, &launch, build.install_dir.to_str().unwrap())
        .unwrap();
    let output = Command::new(&plan.command[0])
        .args(&plan.command[1..])
        .current_dir(&plan.working_dir)
        .envs(&plan.env)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("{stdout}"));
    let seen: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(
        seen["args"],
        serde_json::json!(["--peer.address", "127.0.0.1:7052"])
    );
    assert_eq!(seen["id"], package.id.to_string());
    assert_eq!(seen["tls"], "false");
}

#[test]
fn java_build_sh_gets_the_output_dir_and_the_jar_lands_where_the_run_plan_looks() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("build.sh"),
        "set -e\necho \"mirror=$CHAINCODE_REPOSITORY_MIRROR\" > \"$CHAINCODE_OUTPUT_DIR/chaincode.jar\"\n",
    )
    .unwrap();
    let package = package_dir(&src, "java");
    let options = BuildOptions {
        java_repository_mirror: Some("https://mirror.example/maven".into()),
        ..BuildOptions::default()
    };
    let build = build_locally(&package, &tmp.path().join("work"), &options).unwrap();
    let jar = build.install_dir.join("chaincode.jar");
    assert_eq!(
        fs::read_to_string(&jar).unwrap(),
        "mirror=https://mirror.example/maven\n"
    );
    let plan = platform_of(&package)
        .unwrap()
        .run_plan(
            &package,
            &LaunchSpec::new("x:1", "p:1", "M"),
            build.install_dir.to_str().unwrap(),
        )
        .unwrap();
    assert_eq!(plan.command[2], jar.to_str().unwrap());
}

#[test]
fn a_failing_step_is_named_with_the_tail_of_its_output() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(
        src.join("package.json"),
        r#"{"name":"x","scripts":{"start":"node ."}}"#,
    )
    .unwrap();
    fs::write(
        src.join("build.sh"),
        "echo compiling\necho 'error TS2304: cannot find name Foo' >&2\nexit 3\n",
    )
    .unwrap();
    let package = package_dir(&src, "node");
    let err =
        build_locally(&package, &tmp.path().join("work"), &BuildOptions::default()).unwrap_err();
    match &err {
        LocalBuildError::StepFailed {
            command,
            status,
            output_tail,
        } => {
            assert_eq!(command, "sh build.sh");
            assert!(status.contains('3'), "{status}");
            assert!(
                output_tail.contains("error TS2304: cannot find name Foo"),
                "{output_tail}"
            );
        }
        other => panic!("expected a failed step, got {other}"),
    }
}

#[test]
fn packages_that_are_not_built_locally_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/builders/ccaas");
    let package = package_dir(&src, "ccaas");
    let err =
        build_locally(&package, &tmp.path().join("work"), &BuildOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("runs as a service at asset-transfer-ccaas.org1.svc.cluster.local:9999"),
        "{err}"
    );
}

/// Waits for a child up to `limit`, killing it after; returns its combined output.
fn output_within(mut child: std::process::Child, limit: std::time::Duration) -> String {
    use std::io::Read;
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut text).unwrap();
    }
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut text).unwrap();
    }
    text
}

/// End to end with the real Node shim: the node-contract fixture is built with the platform's own
/// steps (`npm install --production` from its committed package-lock.json, from the npm registry),
/// then started with the run plan; the shim must come up and try to register with the peer named
/// in the plan under the package id. Nothing listens there, so it stops after the attempt.
#[test]
fn node_contract_builds_with_npm_and_the_real_shim_registers_per_the_run_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/builders/node-contract");
    let package = package_dir(&src, "node");
    assert!(package.code.file("src/package-lock.json").is_some());
    let build = build_locally(&package, &tmp.path().join("work"), &BuildOptions::default())
        .unwrap_or_else(|err| panic!("{err}"));
    assert!(
        build
            .install_dir
            .join("node_modules/fabric-contract-api/package.json")
            .exists()
    );

    // A port nothing listens on: bind, note it, release it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address = format!("127.0.0.1:{port}");
    let launch = LaunchSpec::new(&package.id.to_string(), &address, "Org1MSP");
    let plan = platform_of(&package)
        .unwrap()
        .run_plan(&package, &launch, build.install_dir.to_str().unwrap())
        .unwrap();
    let child = Command::new(&plan.command[0])
        .args(&plan.command[1..])
        .current_dir(&plan.working_dir)
        .envs(&plan.env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let output = output_within(child, std::time::Duration::from_secs(60));
    let expected = format!(
        "Registering with peer {address} as chaincode \"{}\"",
        package.id
    );
    assert!(output.contains(&expected), "{output}");
}
