//! Finding a launched chaincode's processes in /proc (by the CORE_CHAINCODE_ID_NAME the runtime
//! gave them) and measuring their CPU time.
use std::path::Path;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// Fields of /proc/<pid>/stat after the parenthesised command name (field 3 onwards).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(String::from).collect())
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir(Path::new("/proc"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Live processes whose environment has `CORE_CHAINCODE_ID_NAME=<package_id>`.
pub fn chaincode_pids(package_id: &str) -> Vec<u32> {
    let wanted = format!("CORE_CHAINCODE_ID_NAME={package_id}");
    all_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|b| *b == 0).any(|var| var == wanted.as_bytes()))
        })
        .filter(|pid| stat_fields(*pid).is_some_and(|f| f[0] != "Z"))
        .collect()
}

/// The process group of `pid`.
pub fn process_group(pid: u32) -> Option<u32> {
    stat_fields(pid)?.get(2)?.parse().ok()
}

/// The one process group the chaincode `package_id` runs in (panics if there is not exactly one).
pub fn chaincode_group(package_id: &str) -> u32 {
    let mut groups: Vec<u32> = chaincode_pids(package_id)
        .into_iter()
        .filter_map(process_group)
        .collect();
    groups.sort();
    groups.dedup();
    assert_eq!(
        groups.len(),
        1,
        "process groups of {package_id}: {groups:?}"
    );
    groups[0]
}

/// User + system CPU seconds of the live members of process group `pgid`.
pub fn group_cpu_seconds(pgid: u32) -> f64 {
    all_pids()
        .into_iter()
        .filter_map(stat_fields)
        .filter(|f| f.get(2).and_then(|g| g.parse::<u32>().ok()) == Some(pgid))
        .map(|f| {
            [11, 12]
                .iter()
                .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum::<f64>()
        / TICKS_PER_SECOND
}

/// User + system CPU seconds of process `pid` itself (all its threads, not its children); 0 when
/// it is gone.
pub fn pid_cpu_seconds(pid: u32) -> f64 {
    stat_fields(pid).map_or(0.0, |f| {
        [11, 12]
            .iter()
            .filter_map(|&i| f.get(i)?.parse::<f64>().ok())
            .sum::<f64>()
    }) / TICKS_PER_SECOND
}

/// Live descendants of `pid` (children, their children, ...), not `pid` itself.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = all_pids()
        .into_iter()
        .filter_map(|p| Some((p, stat_fields(p)?.get(1)?.parse().ok()?)))
        .collect();
    let mut found = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        for &(child, ppid) in &parents {
            if ppid == parent && !found.contains(&child) {
                found.push(child);
                frontier.push(child);
            }
        }
    }
    found
}

/// Live members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| process_group(p) == Some(pgid))
        .collect()
}

/// A `/proc/<pid>/status` field in KiB (e.g. `VmRSS`, `VmHWM`); None when the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|line| {
        line.strip_prefix(field)?
            .strip_prefix(':')?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}
