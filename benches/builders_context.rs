//! Build-context throughput: reads a generated 50 MB source tree and writes the deterministic
//! tar.gz build context, next to GNU `tar -cz` on the same tree in the same run. Prints MB/s for
//! both, their ratio (ours / tar; >= 1.0 means we are at least as fast) and both compressed sizes.
//!
//! Run with `cargo bench --bench builders_context`. `BUILDERS_BENCH_MB` changes the tree size.
use std::{
    fs,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use chaincode_operator::builders::{Limits, context::BuildContext, gzip, tree::SourceTree};
use flate2::Compression;

/// Deterministic xorshift64* generator: the same tree on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "const",
    "let",
    "function",
    "return",
    "await",
    "async",
    "ctx",
    "stub",
    "putState",
    "getState",
    "asset",
    "owner",
    "JSON",
    "stringify",
    "parse",
    "Buffer",
    "from",
    "if",
    "else",
    "throw",
    "new",
    "Error",
    "for",
    "of",
    "class",
    "extends",
    "Contract",
    "module",
    "exports",
    "require",
    "value",
    "key",
    "id",
    "size",
    "color",
    "appraisedValue",
    "transaction",
    "channel",
    "peer",
    "endorse",
];

/// Source-like text: words from a small vocabulary plus random identifiers and numbers, so it
/// compresses roughly like real code (about 3-4x with gzip -6).
fn source_text(rng: &mut Rng, bytes: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes + 64);
    while out.len() < bytes {
        match rng.below(10) {
            0 => out.extend_from_slice(format!("x{:x}", rng.next() & 0xff_ffff).as_bytes()),
            1 => out.extend_from_slice(format!("{}", rng.below(100_000)).as_bytes()),
            _ => out.extend_from_slice(WORDS[rng.below(WORDS.len() as u64) as usize].as_bytes()),
        }
        out.push(match rng.below(12) {
            0 => b'\n',
            1 => b'(',
            2 => b'.',
            _ => b' ',
        });
    }
    out.truncate(bytes);
    out
}

/// Writes about `total` bytes of files into `root`: nested directories, sizes from 1 KB to 64 KB.
fn generate_tree(root: &Path, total: usize) -> usize {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut written = 0;
    let mut index = 0;
    while written < total {
        let dir = root.join(format!("pkg{:02}/lib{:02}", rng.below(20), rng.below(10)));
        fs::create_dir_all(&dir).expect("creating bench tree");
        let size = (1024 + rng.below(63 * 1024) as usize).min(total - written);
        fs::write(
            dir.join(format!("file{index:05}.js")),
            source_text(&mut rng, size),
        )
        .expect("writing bench tree");
        written += size;
        index += 1;
    }
    written
}

fn ours(root: &Path, out: &Path) -> (Duration, u64) {
    let limits = Limits {
        max_total_bytes: u64::MAX,
        max_entries: usize::MAX,
        ..Limits::default()
    };
    let start = Instant::now();
    let tree = SourceTree::from_dir(root, &limits, &|_| false).expect("reading bench tree");
    let context = BuildContext::assemble("FROM scratch\n", &tree, &[]);
    fs::write(out, &context.bytes).expect("writing context");
    (start.elapsed(), context.bytes.len() as u64)
}

/// The same work on one thread, to show what the parallel gzip contributes.
fn ours_one_thread(root: &Path, out: &Path) -> (Duration, u64) {
    let limits = Limits {
        max_total_bytes: u64::MAX,
        max_entries: usize::MAX,
        ..Limits::default()
    };
    let start = Instant::now();
    let tree = SourceTree::from_dir(root, &limits, &|_| false).expect("reading bench tree");
    let bytes = gzip::gzip(&tree.to_tar(), Compression::default(), 1);
    fs::write(out, &bytes).expect("writing context");
    (start.elapsed(), bytes.len() as u64)
}

fn gnu_tar(root: &Path, out: &Path) -> (Duration, u64) {
    let start = Instant::now();
    let status = Command::new("tar")
        .arg("-cz")
        .arg("-f")
        .arg(out)
        .arg("-C")
        .arg(root)
        .arg(".")
        .status()
        .expect("running GNU tar");
    let elapsed = start.elapsed();
    assert!(status.success(), "tar -cz failed");
    (elapsed, fs::metadata(out).expect("tar output").len())
}

fn main() {
    let megabytes: usize = std::env::var("BUILDERS_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("tree");
    let bytes = generate_tree(&root, megabytes * 1024 * 1024);
    let mb = bytes as f64 / (1024.0 * 1024.0);
    let ours_out = tmp.path().join("ours.tar.gz");
    let tar_out = tmp.path().join("tar.tar.gz");

    // Warm the page cache for both, then alternate runs and keep each side's best.
    ours(&root, &ours_out);
    gnu_tar(&root, &tar_out);
    let runs = 5;
    let (mut best_ours, mut best_tar, mut best_single) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    let (mut ours_size, mut tar_size) = (0, 0);
    for _ in 0..runs {
        best_single = best_single.min(ours_one_thread(&root, &ours_out).0);
        let (t, size) = ours(&root, &ours_out);
        best_ours = best_ours.min(t);
        ours_size = size;
        let (t, size) = gnu_tar(&root, &tar_out);
        best_tar = best_tar.min(t);
        tar_size = size;
    }
    let ours_rate = mb / best_ours.as_secs_f64();
    let tar_rate = mb / best_tar.as_secs_f64();
    println!("builders_context: {mb:.1} MB source tree, best of {runs} runs each");
    println!(
        "  chaincode-operator context : {ours_rate:8.1} MB/s  ({best_ours:.2?})  compressed {ours_size} bytes"
    );
    let single_rate = mb / best_single.as_secs_f64();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "  (same, on 1 thread)        : {single_rate:8.1} MB/s  ({best_single:.2?}); the line above used {threads} threads"
    );
    println!(
        "  GNU tar -cz                : {tar_rate:8.1} MB/s  ({best_tar:.2?})  compressed {tar_size} bytes"
    );
    println!("  speed ratio (ours / tar)   : {:.2}", ours_rate / tar_rate);
    println!(
        "  size ratio  (ours / tar)   : {:.3}",
        ours_size as f64 / tar_size as f64
    );
}
