//! Files and trees that must survive a power cut: written whole or not at all, and on disk before
//! anything points at them. A plain `fs::write` can leave a 0-byte file after a crash (the inode
//! reached the disk, the data did not), which a restart then trusts.
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` so that after a crash it holds the old or the new content, never a
/// part: a temporary file in the same directory, fsync'd, renamed over `path`, then the directory
/// fsync'd. `mode` (Unix permission bits) is set before the rename, so a secret is never readable.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let dir = parent(path);
    std::fs::create_dir_all(dir)?;
    let tmp = sibling(path, ".tmp");
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(mode);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        if let Some(mode) = mode {
            // An old temporary file keeps its mode on open.
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Puts a finished tree (or file) at `to`: flushes what was written under `from`, renames it to
/// `to` (which must not exist) and fsyncs the parent, so `to` appears only with its whole content.
pub fn publish(from: &Path, to: &Path) -> io::Result<()> {
    sync_tree(from)?;
    std::fs::rename(from, to)?;
    sync_dir(parent(to))
}

/// Flushes file data and directory entries written under `dir`. On Linux one `syncfs` covers a
/// tree of thousands of files (node_modules) in one call; elsewhere each file is fsync'd.
pub fn sync_tree(dir: &Path) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let handle = std::fs::File::open(dir)?;
        nix::unistd::syncfs(&handle).map_err(io::Error::from)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        fn walk(path: &Path) -> io::Result<()> {
            let meta = std::fs::symlink_metadata(path)?;
            if meta.is_dir() {
                for entry in std::fs::read_dir(path)? {
                    walk(&entry?.path())?;
                }
            }
            if !meta.file_type().is_symlink() {
                std::fs::File::open(path)?.sync_all()?;
            }
            Ok(())
        }
        walk(dir)
    }
}

/// Makes the entries of `dir` (a create, rename or delete) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// `path` with `suffix` added to its file name (`crypto` → `crypto.partial`); never `with_extension`,
/// which would cut names with dots in them.
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Every regular file under `dir` with its size, relative paths with `/`, sorted: a manifest a
/// marker can carry and a later run can check without reading the files.
pub fn file_sizes(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    fn walk(root: &Path, path: &Path, out: &mut Vec<(String, u64)>) -> io::Result<()> {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                walk(root, &entry.path(), out)?;
            } else if kind.is_file() {
                let path = entry.path();
                let relative = path.strip_prefix(root).unwrap_or(&path);
                let name = relative
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/");
                out.push((name, entry.metadata()?.len()));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_atomic_write_replaces_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dev.json");
        write_atomically(&path, b"one", None).expect("first");
        write_atomically(&path, b"two", Some(0o600)).expect("second");
        assert_eq!(std::fs::read(&path).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("dev.json")]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_failed_write_keeps_the_old_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("file");
        write_atomically(&path, b"old", None).expect("first");
        // The temporary name is taken by a directory: the write fails before the rename.
        std::fs::create_dir(sibling(&path, ".tmp")).expect("block the temporary file");
        assert!(write_atomically(&path, b"new", None).is_err());
        assert_eq!(std::fs::read(&path).expect("read"), b"old");
    }

    #[test]
    fn a_published_tree_appears_whole_and_manifests_list_sizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let partial = dir.path().join("pkg.partial");
        std::fs::create_dir_all(partial.join("src/lib")).expect("mkdir");
        std::fs::write(partial.join("src/package.json"), "{}").expect("write");
        std::fs::write(partial.join("src/lib/a.js"), "abc").expect("write");
        let done = dir.path().join("pkg");
        publish(&partial, &done).expect("publish");
        assert!(!partial.exists());
        assert_eq!(
            file_sizes(&done).expect("sizes"),
            vec![
                ("src/lib/a.js".to_string(), 3),
                ("src/package.json".to_string(), 2)
            ]
        );
    }
}
