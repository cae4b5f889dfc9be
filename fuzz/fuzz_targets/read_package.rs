//! Feeds arbitrary bytes to the package reader, both as a whole package and as a bare code.tar.gz.
//! Invariants checked on acceptance: every path is normalized and relative, and the platform
//! verdict, build context and run plan never panic.
#![no_main]

use chaincode_operator::builders::{
    Limits,
    context::build_context,
    package::read_package,
    platform::{BuildOptions, LaunchSpec, platform_of},
    tree::{SourceTree, normalize_entry_path},
};
use libfuzzer_sys::fuzz_target;

fn limits() -> Limits {
    Limits {
        max_package_bytes: 1 << 20,
        max_total_bytes: 4 << 20,
        max_entry_bytes: 1 << 20,
        max_entries: 2_000,
        ratio_allowance_bytes: 4 << 20,
        ..Limits::default()
    }
}

fn check_tree(tree: &SourceTree) {
    for (path, _) in tree.entries() {
        assert_eq!(normalize_entry_path(path).as_deref(), Ok(path));
        assert!(!path.is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let limits = limits();
    if let Ok(tree) = SourceTree::from_tar_gz("fuzz", data, &limits) {
        check_tree(&tree);
    }
    if let Ok(package) = read_package(data, &limits) {
        check_tree(&package.code);
        if let Ok(platform) = platform_of(&package) {
            let _ = platform.deployment(&package);
            let _ = build_context(&package, &BuildOptions::default());
            let _ = platform.run_plan(&package, &LaunchSpec::new("cc:0", "peer:7052", "Org1MSP"), "/cc");
        }
    }
});
