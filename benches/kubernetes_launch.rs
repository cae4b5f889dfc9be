//! The kubernetes runtime's launch path on a real cluster (the kube kit), beside the process
//! runtime measured in the same run:
//! - the build path: a fresh source package → install → in-cluster BuildKit build → image pushed →
//!   Pod → registered (`dev --runtime kubernetes` start to ready);
//! - the first invoke with no chaincode running (image present): p50 of N rounds, each round killing
//!   the chaincode (Pod / process group) and timing the next evaluate through fabric-gateway, split
//!   into apply → Pod created → running → registered from the endorser's launch log; the same for
//!   the process runtime (kill the process group, time the next evaluate).
//!
//! Every evaluate is one `node gateway.js` run, so each figure includes the client's start; the warm
//! evaluate (chaincode running) is printed too, and the launch cost is first minus warm.
//! `BENCH_QUICK=1` runs 3 rounds instead of 10. Skips with a notice without the kit.
#[path = "../tests/support/mod.rs"]
mod support;

use chaincode_operator::endorser::chaincode::runtime::process::plain_line;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::cluster::{
    Cluster, Kit, Namespace, chaincodes, condition, eventually, kill_chaincode_pods,
    kubernetes_args, start_npm_proxy, start_operator,
};
use support::dev::{copy_contract_source, dev_command, gateway, interrupt, spawn_dev};

fn p50(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Milliseconds of one `gateway.js read`.
async fn timed_read(dir: &Path) -> f64 {
    let started = Instant::now();
    gateway(dir, &["read", "bench"]).await.expect("evaluate");
    started.elapsed().as_secs_f64() * 1000.0
}

/// `field=NNN` values (milliseconds) of the endorser's "chaincode registered" log lines.
fn launch_phases(log: &Path) -> Vec<[f64; 4]> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let field = |line: &str, name: &str| -> f64 {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(&format!("{name}=")))
            .and_then(|v| v.parse().ok())
            .unwrap_or(f64::NAN)
    };
    text.lines()
        .map(|line| plain_line(line.as_bytes()))
        .filter(|line| line.contains("chaincode registered") && line.contains("registered_ms="))
        .map(|line| {
            [
                field(&line, "apply_ms"),
                field(&line, "pod_created_ms"),
                field(&line, "running_ms"),
                field(&line, "registered_ms"),
            ]
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let Some(cluster) = Cluster::from_env("kubernetes_launch bench") else {
        return;
    };
    let Some(kit) = Kit::from(&cluster) else {
        eprintln!("skipped kubernetes_launch bench: needs the kube kit");
        return;
    };
    let rounds = if std::env::var_os("BENCH_QUICK").is_some() {
        3
    } else {
        10
    };
    support::installed_e2e_dir("clients");
    cluster.apply_crd();
    let ns = Namespace::create(&cluster, format!("ccbench-{}", std::process::id()));
    let _operator = start_operator(&cluster, &ns.name);
    let (_proxy, npm_registry) = start_npm_proxy(&kit.node_ip).await;
    let work = tempfile::tempdir().expect("tempdir");

    // A source no build has seen: the content key is new, so the build really runs.
    let k8s_source = work.path().join("k8s-src");
    copy_contract_source(&k8s_source);
    let index = k8s_source.join("index.js");
    let code = std::fs::read_to_string(&index).expect("index.js");
    let nonce = format!("// bench {:?}\n", std::time::SystemTime::now());
    std::fs::write(&index, format!("{nonce}{code}")).expect("write index.js");

    let log = work.path().join("k8s-dev.log");
    let mut args = kubernetes_args(&kit, &ns.name, "bench");
    args.extend(["--node-registry".to_string(), npm_registry.clone()]);
    let mut command = dev_command(&work.path().join("k8s-dev"), &k8s_source, &args);
    command
        .env("KUBECONFIG", &cluster.kubeconfig)
        .stderr(std::fs::File::create(&log).expect("log file"));
    let started = Instant::now();
    let k8s = spawn_dev(
        command,
        &work.path().join("k8s-dev"),
        Duration::from_secs(600),
    )
    .await;
    let build_path = started.elapsed();
    let first = launch_phases(&log);
    let name = chaincodes(&cluster, &ns.name, "bench")[0]["metadata"]["name"]
        .as_str()
        .expect("name")
        .to_string();

    let process_source = work.path().join("process-src");
    copy_contract_source(&process_source);
    let mut command = dev_command(
        &work.path().join("process-dev"),
        &process_source,
        &[
            "--chaincode-listen".to_string(),
            "127.0.0.1:0".to_string(),
            "--node-registry".to_string(),
            "https://registry.npmjs.org/".to_string(),
        ],
    );
    command.stderr(Stdio::null());
    let process = spawn_dev(
        command,
        &work.path().join("process-dev"),
        Duration::from_secs(600),
    )
    .await;

    let (mut k8s_first, mut k8s_warm, mut proc_first, mut proc_warm) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        // Kubernetes: kill the Pod, wait until the endorser saw the stream close.
        kill_chaincode_pods(&cluster, &ns.name, &name);
        eventually("Registered=False", Duration::from_secs(60), || {
            chaincodes(&cluster, &ns.name, "bench")
                .first()
                .and_then(|cc| condition(cc, "Registered").cloned())
                .is_some_and(|c| c["status"] == "False")
        })
        .await;
        k8s_first.push(timed_read(&k8s.dir).await);
        k8s_warm.push(timed_read(&k8s.dir).await);

        // Process: kill the chaincode's process group; the endorser sees its stream close.
        for pid in support::procs::chaincode_pids(&process.info.package_id) {
            if let Some(group) = support::procs::process_group(pid) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(group as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        eventually("process chaincode gone", Duration::from_secs(30), || {
            support::procs::chaincode_pids(&process.info.package_id).is_empty()
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        proc_first.push(timed_read(&process.dir).await);
        proc_warm.push(timed_read(&process.dir).await);
    }
    let phases = launch_phases(&log);
    let relaunches = &phases[first.len().min(phases.len())..];
    let phase_p50 = |i: usize| p50(&mut relaunches.iter().map(|p| p[i]).collect::<Vec<_>>());

    let (kf, kw, pf, pw) = (
        p50(&mut k8s_first),
        p50(&mut k8s_warm),
        p50(&mut proc_first),
        p50(&mut proc_warm),
    );
    println!(
        "kubernetes_launch on the kube kit ({rounds} rounds, p50; every evaluate includes starting the Node client)"
    );
    println!(
        "  build path (fresh source -> BuildKit Job -> image pushed -> Pod -> registered): dev ready after {:.1} s; Pod created {:.1} s after the apply",
        build_path.as_secs_f64(),
        first.first().map(|p| p[1] / 1000.0).unwrap_or(f64::NAN)
    );
    println!(
        "  kubernetes first invoke, no Pod: {kf:.0} ms (warm {kw:.0} ms, launch cost {:.0} ms): apply {:.0} ms -> Pod created {:.0} ms -> running {:.0} ms -> registered {:.0} ms",
        kf - kw,
        phase_p50(0),
        phase_p50(1),
        phase_p50(2),
        phase_p50(3)
    );
    println!(
        "  process first invoke, no process: {pf:.0} ms (warm {pw:.0} ms, launch cost {:.0} ms)",
        pf - pw
    );
    println!(
        "  ratio kubernetes / process launch cost: {:.2}",
        (kf - kw) / (pf - pw)
    );
    interrupt(k8s).await;
    interrupt(process).await;
}
