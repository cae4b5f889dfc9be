//! Property tests: build contexts are byte-identical for the same input whatever the insertion
//! order, packages round-trip, and every entry of any accepted archive lands inside the root.
use std::{io::Write, path::Path};

use chaincode_operator::builders::{
    Limits,
    context::BuildContext,
    tree::{SourceEntry, SourceTree},
};
use flate2::{Compression, write::GzEncoder};
use proptest::prelude::*;
use tar::{EntryType, Header};

fn file_entries() -> impl Strategy<Value = Vec<(String, Vec<u8>, bool)>> {
    let path = proptest::collection::vec("[a-c]{1,3}", 1..4).prop_map(|parts| parts.join("/"));
    proptest::collection::vec(
        (
            path,
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<bool>(),
        ),
        0..20,
    )
}

/// Builds a tree from entries, skipping ones that would clash (a path used as both file and dir).
fn tree_of(entries: &[(String, Vec<u8>, bool)]) -> SourceTree {
    let mut tree = SourceTree::new();
    for (path, data, executable) in entries {
        let clashes = tree.entries().any(|(existing, _)| {
            existing == path
                || existing.starts_with(&format!("{path}/"))
                || path.starts_with(&format!("{existing}/"))
        });
        if !clashes {
            tree.insert(
                path.clone(),
                SourceEntry::File {
                    data: data.clone(),
                    executable: *executable,
                },
            );
        }
    }
    tree
}

/// A path segment, including the hostile ones.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-c]".prop_map(String::from),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
    ]
}

fn hostile_path() -> impl Strategy<Value = String> {
    (any::<bool>(), proptest::collection::vec(segment(), 1..5)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

#[derive(Debug, Clone)]
enum RawKind {
    File,
    Dir,
    Symlink(String),
    HardLink(String),
}

fn raw_entries() -> impl Strategy<Value = Vec<(String, RawKind)>> {
    let kind = prop_oneof![
        3 => Just(RawKind::File),
        1 => Just(RawKind::Dir),
        2 => hostile_path().prop_map(RawKind::Symlink),
        1 => hostile_path().prop_map(RawKind::HardLink),
    ];
    proptest::collection::vec((hostile_path(), kind), 1..10)
}

fn raw_tar_gz(entries: &[(String, RawKind)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind) in entries {
        let mut header = Header::new_gnu();
        let (entry_type, link, data): (EntryType, &str, &[u8]) = match kind {
            RawKind::File => (EntryType::Regular, "", b"data"),
            RawKind::Dir => (EntryType::Directory, "", b""),
            RawKind::Symlink(target) => (EntryType::Symlink, target, b""),
            RawKind::HardLink(target) => (EntryType::Link, target, b""),
        };
        let name = &name.as_bytes()[..name.len().min(99)];
        let link = &link.as_bytes()[..link.len().min(99)];
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
        header.set_entry_type(entry_type);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    let mut gz = GzEncoder::new(Vec::new(), Compression::fast());
    gz.write_all(&out).unwrap();
    gz.finish().unwrap()
}

fn assert_inside(root: &Path, dir: &Path) {
    let canonical_root = std::fs::canonicalize(root).unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            // Targets may not exist yet (dangling inside is allowed); resolve what exists.
            if let Ok(resolved) = std::fs::canonicalize(&path) {
                assert!(
                    resolved.starts_with(&canonical_root),
                    "{path:?} resolves to {resolved:?}"
                );
            } else {
                let target = std::fs::read_link(&path).unwrap();
                assert!(target.is_relative(), "{path:?} -> {target:?}");
            }
        } else if meta.is_dir() {
            assert_inside(root, &path);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn contexts_from_the_same_input_are_byte_identical(entries in file_entries(), seed in any::<u64>()) {
        let forward = tree_of(&entries);
        // Same entries inserted in another order.
        let mut shuffled: Vec<_> = forward.entries().map(|(p, e)| (p.to_string(), e.clone())).collect();
        let len = shuffled.len().max(1);
        shuffled.rotate_left((seed as usize) % len);
        shuffled.reverse();
        let mut backward = SourceTree::new();
        for (path, entry) in shuffled {
            backward.insert(path, entry);
        }
        let a = BuildContext::assemble("FROM scratch\n", &forward, &[]);
        let b = BuildContext::assemble("FROM scratch\n", &backward, &[]);
        prop_assert_eq!(&a.bytes, &b.bytes);
        prop_assert_eq!(a.digest, b.digest);
    }

    #[test]
    fn trees_round_trip_through_tar_gz(entries in file_entries()) {
        let tree = tree_of(&entries);
        let read = SourceTree::from_tar_gz("t", &tree.to_tar_gz(), &Limits::default()).unwrap();
        let files = |t: &SourceTree| t.entries()
            .filter(|(_, e)| !matches!(e, SourceEntry::Dir))
            .map(|(p, e)| (p.to_string(), e.clone()))
            .collect::<Vec<_>>();
        prop_assert_eq!(files(&read), files(&tree));
    }

    #[test]
    fn every_accepted_entry_lands_inside_the_root(entries in raw_entries()) {
        let bytes = raw_tar_gz(&entries);
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        if let Ok(tree) = SourceTree::from_tar_gz("fuzz", &bytes, &Limits::default()) {
            tree.extract_into(&root).unwrap();
            assert_inside(&root, &root);
            for (path, _) in tree.entries() {
                prop_assert!(!path.starts_with('/') && !path.split('/').any(|p| p == ".."));
            }
        }
        let names: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert!(names.iter().all(|n| n == "root"), "outside: {:?}", names);
    }
}
