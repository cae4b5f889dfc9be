//! Hostile archives: every unsafe shape a package can take is rejected with its documented error
//! naming the offending entry, and nothing is ever written outside the target directory.
use std::io::Write;

use chaincode_operator::builders::{
    Limits, PackageError,
    package::{ChaincodePackage, read_package},
    tree::SourceTree,
};
use flate2::{Compression, write::GzEncoder};
use tar::{EntryType, Header};

/// One raw tar entry; names and link targets are written byte for byte, bypassing the tar crate's
/// own path checks, as an attacker would.
struct Raw<'a> {
    name: &'a [u8],
    kind: EntryType,
    link: &'a [u8],
    data: &'a [u8],
    mode: u32,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind: EntryType::Regular,
        link: b"",
        data,
        mode: 0o644,
    }
}

fn special<'a>(name: &'a str, kind: EntryType, link: &'a str) -> Raw<'a> {
    Raw {
        name: name.as_bytes(),
        kind,
        link: link.as_bytes(),
        data: b"",
        mode: 0o777,
    }
}

fn raw_tar(entries: &[Raw<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..entry.name.len()].copy_from_slice(entry.name);
            old.linkname[..entry.link.len()].copy_from_slice(entry.link);
        }
        header.set_entry_type(entry.kind);
        if entry.kind == EntryType::GNUSparse
            && let Some(gnu) = header.as_gnu_mut()
        {
            gnu.set_real_size(0);
        }
        header.set_size(entry.data.len() as u64);
        header.set_mode(entry.mode);
        header.set_mtime(0);
        header.set_cksum();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(entry.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// A package whose code.tar.gz is `code` (already gzip'd).
fn package_with_code(code: &[u8]) -> Vec<u8> {
    let metadata = br#"{"type":"node","label":"hostile_1"}"#;
    gzip(&raw_tar(&[
        file("metadata.json", metadata),
        file("code.tar.gz", code),
    ]))
}

fn package_of(entries: &[Raw<'_>]) -> Vec<u8> {
    package_with_code(&gzip(&raw_tar(entries)))
}

/// Reads the package and, if accepted, extracts it into `<tmp>/root`; returns the read result
/// after checking that `<tmp>` holds nothing but `root` (and `root` nothing when rejected).
fn read_and_extract(bytes: &[u8], limits: &Limits) -> Result<ChaincodePackage, PackageError> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let result = read_package(bytes, limits);
    if let Ok(package) = &result {
        package.extract_code(&root).unwrap();
    }
    let outside: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        outside.iter().all(|name| name == "root"),
        "written outside the root: {outside:?}"
    );
    if result.is_err() {
        assert!(!root.exists(), "a rejected package left files behind");
    }
    result
}

fn rejected(entries: &[Raw<'_>]) -> PackageError {
    match read_and_extract(&package_of(entries), &Limits::default()) {
        Ok(package) => panic!("accepted a hostile package: {:?}", package.code),
        Err(err) => err,
    }
}

fn assert_names(err: &PackageError, entry: &str) {
    assert_eq!(
        err.entry(),
        Some(entry),
        "error {err} should name {entry:?}"
    );
    assert!(
        err.to_string().contains(entry),
        "message {err} should name {entry:?}"
    );
}

#[test]
fn parent_directory_components_are_rejected() {
    let err = rejected(&[file("src/../../evil.js", b"x")]);
    assert!(
        matches!(&err, PackageError::UnsafePath { reason, .. } if *reason == "parent directory (..) component")
    );
    assert_names(&err, "src/../../evil.js");
    assert!(err.to_string().contains("code.tar.gz"));
}

#[test]
fn absolute_paths_are_rejected() {
    let err = rejected(&[file("/etc/cron.d/evil", b"x")]);
    assert!(matches!(&err, PackageError::UnsafePath { reason, .. } if *reason == "absolute path"));
    assert_names(&err, "/etc/cron.d/evil");
}

#[test]
fn symlinks_leaving_the_tree_are_rejected() {
    for target in ["../../../etc", "/etc/passwd", "../.."] {
        let err = rejected(&[
            file("src/index.js", b"x"),
            special("src/link", EntryType::Symlink, target),
        ]);
        assert!(
            matches!(&err, PackageError::SymlinkEscapes { target: t, .. } if t == target),
            "{err}"
        );
        assert_names(&err, "src/link");
    }
}

#[test]
fn symlink_chains_are_resolved_before_judging() {
    // `src/up` points at the root (fine), so `src/up/../x` would climb out of it.
    let err = rejected(&[
        special("src/up", EntryType::Symlink, ".."),
        special("src/esc", EntryType::Symlink, "up/../x"),
    ]);
    assert!(matches!(err, PackageError::SymlinkEscapes { .. }));
    assert_names(&err, "src/esc");
}

#[test]
fn entries_written_through_a_symlink_are_rejected() {
    let err = rejected(&[
        special("src/dir", EntryType::Symlink, "."),
        file("src/dir/x.js", b"x"),
    ]);
    assert!(matches!(&err, PackageError::BeneathSymlink { link, .. } if link == "src/dir"));
    assert_names(&err, "src/dir/x.js");
}

#[test]
fn hard_links_must_point_at_an_earlier_file_inside() {
    for target in ["/etc/shadow", "../outside", "src/later.js"] {
        let err = rejected(&[
            special("src/h", EntryType::Link, target),
            file("src/later.js", b"x"),
        ]);
        assert!(
            matches!(&err, PackageError::HardLinkEscapes { target: t, .. } if t == target),
            "{err}"
        );
        assert_names(&err, "src/h");
    }
}

#[test]
fn device_fifo_and_sparse_entries_are_rejected() {
    for (kind, name) in [
        (EntryType::Char, "character device"),
        (EntryType::Block, "block device"),
        (EntryType::Fifo, "fifo"),
        (EntryType::GNUSparse, "sparse file"),
    ] {
        let err = rejected(&[special("src/dev", kind, "")]);
        assert!(
            matches!(&err, PackageError::UnsupportedEntryType { kind: k, .. } if k == name),
            "{err}"
        );
        assert_names(&err, "src/dev");
    }
}

#[test]
fn duplicate_entries_are_rejected_even_when_spelled_differently() {
    let err = rejected(&[file("src/a.js", b"1"), file("src/a.js", b"2")]);
    assert!(matches!(err, PackageError::Duplicate { .. }));
    assert_names(&err, "src/a.js");
    let err = rejected(&[file("src/a.js", b"1"), file("./src//a.js", b"2")]);
    assert_names(&err, "./src//a.js");
}

#[test]
fn non_utf8_names_are_rejected() {
    let name = b"src/\xff\xfe.js";
    let err = rejected(&[Raw {
        name,
        kind: EntryType::Regular,
        link: b"",
        data: b"x",
        mode: 0o644,
    }]);
    assert!(matches!(err, PackageError::NonUtf8Name { .. }));
    assert_eq!(err.entry(), Some(String::from_utf8_lossy(name).as_ref()));
}

#[test]
fn gnu_long_names_and_pax_paths_are_checked_too() {
    let long = format!("src/{}../../../../../../evil", "d/".repeat(60));
    let err = rejected(&[
        Raw {
            name: b"././@LongLink",
            kind: EntryType::GNULongName,
            link: b"",
            data: long.as_bytes(),
            mode: 0o644,
        },
        file("src/short", b"x"),
    ]);
    assert!(matches!(err, PackageError::UnsafePath { .. }));
    assert_names(&err, &long);

    let record = "22 path=../../evilpax\n";
    let err = rejected(&[
        Raw {
            name: b"PaxHeader/x",
            kind: EntryType::XHeader,
            link: b"",
            data: record.as_bytes(),
            mode: 0o644,
        },
        file("src/innocent.js", b"x"),
    ]);
    assert_names(&err, "../../evilpax");
}

#[test]
fn entries_over_the_per_entry_limit_are_rejected() {
    let limits = Limits {
        max_entry_bytes: 1000,
        ..Limits::default()
    };
    let big = vec![b'a'; 1001];
    let err = read_and_extract(
        &package_of(&[file("src/small.js", b"x"), file("src/big.bin", &big)]),
        &limits,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        PackageError::EntryTooLarge { limit: 1000, .. }
    ));
    assert_names(&err, "src/big.bin");
}

#[test]
fn totals_over_the_limit_are_rejected_naming_the_entry_that_crossed_it() {
    let limits = Limits {
        max_total_bytes: 2500,
        ..Limits::default()
    };
    let chunk = vec![b'a'; 1000];
    let entries = [
        file("src/1", &chunk),
        file("src/2", &chunk),
        file("src/3", &chunk),
        file("src/4", &chunk),
    ];
    let err = read_and_extract(&package_of(&entries), &limits).unwrap_err();
    assert!(matches!(
        err,
        PackageError::TotalTooLarge { limit: 2500, .. }
    ));
    assert_names(&err, "src/3");
}

#[test]
fn archives_with_too_many_entries_are_rejected() {
    let limits = Limits {
        max_entries: 10,
        ..Limits::default()
    };
    let names: Vec<String> = (0..20).map(|i| format!("src/f{i:02}")).collect();
    let entries: Vec<Raw<'_>> = names.iter().map(|name| file(name, b"x")).collect();
    let err = read_and_extract(&package_of(&entries), &limits).unwrap_err();
    assert!(matches!(
        err,
        PackageError::TooManyEntries { limit: 10, .. }
    ));
    assert_names(&err, "src/f10");
}

#[test]
fn decompression_bombs_trip_the_ratio_limit() {
    // 30 MB of zeros gzip to ~30 KB: a ratio near 1000:1.
    let zeros = vec![0u8; 30 * 1024 * 1024];
    let code = gzip(&raw_tar(&[
        file("src/ok.js", b"x"),
        file("src/zeros.bin", &zeros),
    ]));
    let limits = Limits {
        ratio_allowance_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let err = read_and_extract(&package_with_code(&code), &limits).unwrap_err();
    assert!(
        matches!(err, PackageError::CompressionRatio { limit: 200, .. }),
        "{err}"
    );
    assert_names(&err, "src/zeros.bin");
}

#[test]
fn a_bomb_inside_tar_headers_is_stopped_too() {
    // A gzip stream of nothing but zero blocks would end the tar at once; instead use an endless
    // run of GNU long-name data, which the tar crate buffers itself.
    let huge_name = vec![b'a'; 8 * 1024 * 1024];
    let code = gzip(&raw_tar(&[Raw {
        name: b"././@LongLink",
        kind: EntryType::GNULongName,
        link: b"",
        data: &huge_name,
        mode: 0o644,
    }]));
    let limits = Limits {
        ratio_allowance_bytes: 64 * 1024,
        ..Limits::default()
    };
    let err = read_and_extract(&package_with_code(&code), &limits).unwrap_err();
    assert!(
        matches!(
            err,
            PackageError::CompressionRatio { .. } | PackageError::Corrupt { .. }
        ),
        "{err}"
    );
}

#[test]
fn an_outer_package_bomb_is_rejected_before_code_is_read() {
    let zeros = vec![0u8; 30 * 1024 * 1024];
    let outer = gzip(&raw_tar(&[
        file("metadata.json", br#"{"type":"node","label":"x"}"#),
        file("code.tar.gz", &zeros),
    ]));
    let limits = Limits {
        ratio_allowance_bytes: 1024 * 1024,
        ..Limits::default()
    };
    let err = read_and_extract(&outer, &limits).unwrap_err();
    assert!(
        matches!(&err, PackageError::CompressionRatio { archive, .. } if archive == "package"),
        "{err}"
    );
    assert_names(&err, "code.tar.gz");
}

#[test]
fn packages_over_the_file_size_limit_are_refused_unread() {
    let limits = Limits {
        max_package_bytes: 100,
        ..Limits::default()
    };
    let err = read_and_extract(&package_of(&[file("src/a", &[7u8; 4096])]), &limits).unwrap_err();
    assert!(matches!(
        err,
        PackageError::PackageTooLarge { limit: 100, .. }
    ));
}

#[test]
fn malformed_packages_get_clear_errors() {
    let err = read_and_extract(b"definitely not gzip", &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, PackageError::Corrupt { archive, .. } if archive == "package"),
        "{err}"
    );

    let no_metadata = gzip(&raw_tar(&[file("code.tar.gz", &gzip(&raw_tar(&[])))]));
    assert!(matches!(
        read_and_extract(&no_metadata, &Limits::default()),
        Err(PackageError::Missing("metadata.json"))
    ));

    let extra = gzip(&raw_tar(&[
        file("metadata.json", br#"{"type":"node","label":"x"}"#),
        file("code.tar.gz", &gzip(&raw_tar(&[]))),
        file("run.sh", b"x"),
    ]));
    let err = read_and_extract(&extra, &Limits::default()).unwrap_err();
    assert_names(&err, "run.sh");

    let bad_label = gzip(&raw_tar(&[
        file("metadata.json", br#"{"type":"node","label":"../x"}"#),
        file("code.tar.gz", &gzip(&raw_tar(&[]))),
    ]));
    assert!(matches!(
        read_and_extract(&bad_label, &Limits::default()),
        Err(PackageError::Label(_))
    ));

    let truncated = package_of(&[file("src/a.js", &[b'x'; 5000])]);
    let cut = &truncated[..truncated.len() / 2];
    assert!(matches!(
        read_and_extract(cut, &Limits::default()),
        Err(PackageError::Corrupt { .. })
    ));
}

#[test]
fn accepted_links_stay_inside_and_extraction_refuses_a_non_empty_target() {
    let bytes = package_of(&[
        file("src/lib/a.js", b"module.exports = 1;\n"),
        special("src/index.js", EntryType::Symlink, "lib/a.js"),
        special("src/copy.js", EntryType::Link, "src/lib/a.js"),
        special("src/lib/self", EntryType::Symlink, "."),
    ]);
    let package = read_and_extract(&bytes, &Limits::default()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    package.extract_code(&root).unwrap();
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    assert_eq!(read("src/index.js"), "module.exports = 1;\n");
    assert_eq!(read("src/copy.js"), "module.exports = 1;\n");
    for entry in ["src/index.js", "src/lib/self"] {
        let resolved = std::fs::canonicalize(root.join(entry)).unwrap();
        assert!(
            resolved.starts_with(std::fs::canonicalize(&root).unwrap()),
            "{entry} resolves to {resolved:?}"
        );
    }
    let err = package.extract_code(&root).unwrap_err();
    assert!(matches!(err, PackageError::Extract { .. }));
    assert!(err.to_string().contains("not empty"));
}

#[test]
fn subtrees_of_an_accepted_tree_are_revalidated() {
    let code = raw_tar(&[
        file("top.txt", b"x"),
        special("src/l", EntryType::Symlink, "../top.txt"),
    ]);
    let tree = SourceTree::from_tar_gz("code.tar.gz", &gzip(&code), &Limits::default()).unwrap();
    let err = tree.subtree("src", "src/").unwrap_err();
    assert!(matches!(err, PackageError::SymlinkEscapes { .. }));
}

#[test]
fn entries_beneath_a_file_are_rejected() {
    let err = rejected(&[file("src/a", b"x"), file("src/a/b", b"y")]);
    assert!(
        matches!(&err, PackageError::UnsafePath { reason, .. } if *reason == "a parent of this entry is a file")
    );
    assert_names(&err, "src/a/b");
}

#[test]
fn overlong_paths_are_rejected() {
    let limits = Limits {
        max_path_bytes: 64,
        ..Limits::default()
    };
    let long = format!("src/{}", "a".repeat(80));
    let err = read_and_extract(&package_of(&[file(&long, b"x")]), &limits).unwrap_err();
    assert!(matches!(&err, PackageError::UnsafePath { reason, .. } if *reason == "path too long"));
    assert_names(&err, &long);
}

#[cfg(unix)]
#[test]
fn source_directories_are_held_to_the_same_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("index.js"), "x").unwrap();
    std::os::unix::fs::symlink("../../etc/passwd", src.join("passwd")).unwrap();
    let err = SourceTree::from_dir(&src, &Limits::default(), &|_| false).unwrap_err();
    assert!(matches!(err, PackageError::SymlinkEscapes { .. }));
    assert_names(&err, "passwd");

    std::fs::remove_file(src.join("passwd")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(fifo.success());
    let err = SourceTree::from_dir(&src, &Limits::default(), &|_| false).unwrap_err();
    assert!(matches!(err, PackageError::UnsupportedEntryType { .. }));
    assert_names(&err, "pipe");
}
