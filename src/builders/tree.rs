//! The validated in-memory source tree, the safe tar.gz reader that produces it, the deterministic
//! tar.gz writer, and extraction that never writes outside its target directory.
//!
//! Paths are normalized, relative, `/`-separated UTF-8 strings with no `.` or `..` components.
//! A tree never holds an entry beneath a symlink, and every symlink resolves (following other
//! symlinks in the tree) to a path inside the tree.
use std::{
    cell::Cell,
    collections::BTreeMap,
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    rc::Rc,
};

use flate2::{Compression, read::MultiGzDecoder};
use tar::{EntryType, Header};

use super::{error::PackageError, gzip::gzip_all_cores, limits::Limits};

/// One entry of a source tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEntry {
    Dir,
    File { data: Vec<u8>, executable: bool },
    Symlink { target: String },
}

/// A validated set of entries keyed by normalized relative path, in sorted order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceTree {
    entries: BTreeMap<String, SourceEntry>,
}

/// Most symlinks followed while resolving one path (as Linux's ELOOP bound).
const MAX_SYMLINK_HOPS: usize = 40;

/// Normalizes an archive entry name; `Ok("")` is the root itself. The error is the reason it is unsafe.
pub fn normalize_entry_path(raw: &str) -> Result<String, &'static str> {
    if raw.is_empty() {
        return Err("empty name");
    }
    if raw.starts_with('/') {
        return Err("absolute path");
    }
    if raw.contains('\\') {
        return Err("backslash in name");
    }
    if raw.contains('\0') {
        return Err("NUL byte in name");
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("parent directory (..) component"),
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

fn split(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/').filter(|part| !part.is_empty())
}

impl SourceTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries in sorted path order.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &SourceEntry)> {
        self.entries
            .iter()
            .map(|(path, entry)| (path.as_str(), entry))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&SourceEntry> {
        self.entries.get(path)
    }

    /// The contents of a regular file.
    pub fn file(&self, path: &str) -> Option<&[u8]> {
        match self.entries.get(path) {
            Some(SourceEntry::File { data, .. }) => Some(data),
            _ => None,
        }
    }

    /// Whether `path` is a directory (explicit or implied by deeper entries).
    pub fn is_dir(&self, path: &str) -> bool {
        if path.is_empty() {
            return true;
        }
        matches!(self.entries.get(path), Some(SourceEntry::Dir))
            || self
                .entries
                .range(format!("{path}/")..)
                .next()
                .is_some_and(|(key, _)| key.starts_with(&format!("{path}/")))
    }

    /// Names directly inside directory `dir` ("" is the root), sorted.
    pub fn children(&self, dir: &str) -> Vec<&str> {
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        let mut names: Vec<&str> = self
            .entries
            .range(prefix.clone()..)
            .take_while(|(key, _)| key.starts_with(&prefix))
            .filter_map(|(key, _)| key[prefix.len()..].split('/').next())
            .filter(|name| !name.is_empty())
            .collect();
        // `a/b-x` sorts between `a/b` and `a/b/c`, so equal names need not be adjacent.
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Total bytes of file contents.
    pub fn content_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|entry| match entry {
                SourceEntry::File { data, .. } => data.len() as u64,
                _ => 0,
            })
            .sum()
    }

    /// Inserts an entry at an already-normalized path, replacing any previous one.
    pub fn insert(&mut self, path: String, entry: SourceEntry) {
        self.entries.insert(path, entry);
    }

    /// The entries under `prefix` (a directory path), re-rooted there and re-validated: a symlink
    /// that stays inside the whole tree may leave the subtree.
    pub fn subtree(&self, prefix: &str, archive: &str) -> Result<SourceTree, PackageError> {
        if prefix.is_empty() {
            return Ok(self.clone());
        }
        let with_slash = format!("{prefix}/");
        let entries = self
            .entries
            .range(with_slash.clone()..)
            .take_while(|(key, _)| key.starts_with(&with_slash))
            .map(|(key, entry)| (key[with_slash.len()..].to_string(), entry.clone()))
            .collect();
        let tree = SourceTree { entries };
        tree.check_links(archive)?;
        Ok(tree)
    }

    /// The tree with `prefix/` prepended to every path.
    pub fn nested_under(&self, prefix: &str) -> SourceTree {
        if prefix.is_empty() {
            return self.clone();
        }
        SourceTree {
            entries: self
                .entries
                .iter()
                .map(|(key, entry)| (format!("{prefix}/{key}"), entry.clone()))
                .collect(),
        }
    }

    /// Rejects entries beneath symlinks or files, and symlinks resolving outside the tree.
    fn check_links(&self, archive: &str) -> Result<(), PackageError> {
        for (path, entry) in &self.entries {
            let mut ancestor = String::new();
            let parts: Vec<&str> = split(path).collect();
            for part in &parts[..parts.len().saturating_sub(1)] {
                if !ancestor.is_empty() {
                    ancestor.push('/');
                }
                ancestor.push_str(part);
                match self.entries.get(&ancestor) {
                    Some(SourceEntry::Symlink { .. }) => {
                        return Err(PackageError::BeneathSymlink {
                            archive: archive.to_string(),
                            entry: path.clone(),
                            link: ancestor,
                        });
                    }
                    Some(SourceEntry::File { .. }) => {
                        return Err(PackageError::UnsafePath {
                            archive: archive.to_string(),
                            entry: path.clone(),
                            reason: "a parent of this entry is a file",
                        });
                    }
                    _ => {}
                }
            }
            if let SourceEntry::Symlink { target } = entry
                && self.resolve_link(path, target).is_none()
            {
                return Err(PackageError::SymlinkEscapes {
                    archive: archive.to_string(),
                    entry: path.clone(),
                    target: target.clone(),
                });
            }
        }
        Ok(())
    }

    /// Resolves symlink `link` (pointing at `target`) the way the kernel would after extraction,
    /// following symlinks in the tree; `None` when it leaves the tree or loops.
    fn resolve_link(&self, link: &str, target: &str) -> Option<String> {
        if target.starts_with('/') || target.is_empty() {
            return None;
        }
        let mut resolved: Vec<String> = split(link).map(str::to_string).collect();
        resolved.pop();
        let mut pending: Vec<String> = split(target).rev().map(str::to_string).collect();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "." => {}
                ".." => {
                    resolved.pop()?;
                }
                name => {
                    resolved.push(name.to_string());
                    if let Some(SourceEntry::Symlink { target }) =
                        self.entries.get(&resolved.join("/"))
                    {
                        hops += 1;
                        if hops > MAX_SYMLINK_HOPS || target.starts_with('/') || target.is_empty() {
                            return None;
                        }
                        resolved.pop();
                        pending.extend(split(target).rev().map(str::to_string));
                    }
                }
            }
        }
        Some(resolved.join("/"))
    }

    /// Reads a gzip'd tar stream, holding it to `limits`; `archive` names the stream in errors.
    pub fn from_tar_gz(
        archive: &str,
        compressed: &[u8],
        limits: &Limits,
    ) -> Result<SourceTree, PackageError> {
        let budget = limits.decompressed_budget(compressed.len() as u64);
        let counter = Rc::new(Cell::new(0u64));
        let stream = BudgetedReader {
            inner: MultiGzDecoder::new(compressed),
            read: counter.clone(),
            budget,
        };
        let mut state = TarReadState {
            archive,
            limits,
            counter,
            budget,
            tree: SourceTree::new(),
            total: 0,
            count: 0,
            current: String::from("<first entry header>"),
        };
        state.read_all(tar::Archive::new(stream))?;
        state.tree.check_links(archive)?;
        Ok(state.tree)
    }

    /// Reads a directory from disk, holding it to `limits`. Entries for which `skip` returns true
    /// (given the normalized relative path) are left out, with everything beneath them.
    pub fn from_dir(
        dir: &Path,
        limits: &Limits,
        skip: &dyn Fn(&str) -> bool,
    ) -> Result<SourceTree, PackageError> {
        let archive = dir.display().to_string();
        let mut tree = SourceTree::new();
        let mut total = 0u64;
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((path, rel)) = pending.pop() {
            let io_err = |source| PackageError::Io {
                path: path.clone(),
                source,
            };
            let mut names = Vec::new();
            for item in fs::read_dir(&path).map_err(io_err)? {
                names.push(item.map_err(io_err)?.file_name());
            }
            names.sort();
            for name in names {
                let child = path.join(&name);
                let name = name.to_str().ok_or_else(|| PackageError::NonUtf8Name {
                    archive: archive.clone(),
                    entry: child.display().to_string(),
                })?;
                let child_rel = if rel.is_empty() {
                    name.to_string()
                } else {
                    format!("{rel}/{name}")
                };
                if skip(&child_rel) {
                    continue;
                }
                if child_rel.len() > limits.max_path_bytes {
                    return Err(unsafe_path(&archive, &child_rel, "path too long"));
                }
                if tree.len() >= limits.max_entries {
                    return Err(PackageError::TooManyEntries {
                        archive: archive.clone(),
                        entry: child_rel,
                        limit: limits.max_entries,
                    });
                }
                let child_io = |source| PackageError::Io {
                    path: child.clone(),
                    source,
                };
                let meta = fs::symlink_metadata(&child).map_err(child_io)?;
                let kind = meta.file_type();
                let entry = if kind.is_dir() {
                    pending.push((child.clone(), child_rel.clone()));
                    SourceEntry::Dir
                } else if kind.is_symlink() {
                    let target = fs::read_link(&child).map_err(child_io)?;
                    let target = target.to_str().ok_or_else(|| PackageError::NonUtf8Name {
                        archive: archive.clone(),
                        entry: child_rel.clone(),
                    })?;
                    SourceEntry::Symlink {
                        target: target.to_string(),
                    }
                } else if kind.is_file() {
                    if meta.len() > limits.max_entry_bytes {
                        return Err(PackageError::EntryTooLarge {
                            archive: archive.clone(),
                            entry: child_rel,
                            limit: limits.max_entry_bytes,
                        });
                    }
                    total += meta.len();
                    if total > limits.max_total_bytes {
                        return Err(PackageError::TotalTooLarge {
                            archive: archive.clone(),
                            entry: child_rel,
                            limit: limits.max_total_bytes,
                        });
                    }
                    let data = fs::read(&child).map_err(child_io)?;
                    SourceEntry::File {
                        data,
                        executable: is_executable(&meta),
                    }
                } else {
                    return Err(PackageError::UnsupportedEntryType {
                        archive: archive.clone(),
                        entry: child_rel,
                        kind: "special file (device, fifo or socket)".to_string(),
                    });
                };
                tree.entries.insert(child_rel, entry);
            }
        }
        tree.check_links(&archive)?;
        Ok(tree)
    }

    /// Writes the tree as a deterministic tar.gz: sorted entries (parents before children, implied
    /// directories made explicit), mtime 0, uid/gid 0, no user names, modes 0644/0755, and one gzip
    /// member with no file name and mtime 0, compressed in parallel (see [`super::gzip`]).
    pub fn to_tar_gz(&self) -> Vec<u8> {
        self.to_tar_gz_with_level(Compression::default())
    }

    /// As [`SourceTree::to_tar_gz`] at the given compression level.
    pub fn to_tar_gz_with_level(&self, level: Compression) -> Vec<u8> {
        gzip_all_cores(&self.to_tar(), level)
    }

    /// The deterministic, uncompressed tar of the tree.
    pub fn to_tar(&self) -> Vec<u8> {
        let capacity = self.content_bytes() as usize + 1024 * (self.entries.len() + 2);
        self.write_tar(Vec::with_capacity(capacity))
            .expect("writing to a Vec cannot fail")
    }

    fn write_tar<W: Write>(&self, out: W) -> io::Result<W> {
        let mut builder = tar::Builder::new(out);
        for (path, entry) in self.with_parents() {
            let mut header = Header::new_gnu();
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match entry {
                SourceEntry::Dir => {
                    header.set_entry_type(EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), io::empty())?;
                }
                SourceEntry::File { data, executable } => {
                    header.set_entry_type(EntryType::Regular);
                    header.set_mode(if *executable { 0o755 } else { 0o644 });
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, data.as_slice())?;
                }
                SourceEntry::Symlink { target } => {
                    header.set_entry_type(EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target)?;
                }
            }
        }
        builder.into_inner()
    }

    /// Entries plus a directory entry for every implied parent, in sorted order.
    fn with_parents(&self) -> Vec<(&str, &SourceEntry)> {
        static DIR: SourceEntry = SourceEntry::Dir;
        let mut all: BTreeMap<&str, &SourceEntry> = BTreeMap::new();
        for (path, entry) in &self.entries {
            let mut end = 0;
            while let Some(slash) = path[end..].find('/') {
                end += slash;
                all.entry(&path[..end]).or_insert(&DIR);
                end += 1;
            }
            all.insert(path, entry);
        }
        all.into_iter().collect()
    }

    /// Writes the tree into `dir`, which must not exist or be empty. Files are created with
    /// `create_new` (never through an existing link) and symlinks last, so nothing lands outside.
    pub fn extract_into(&self, dir: &Path) -> Result<(), PackageError> {
        let dir_err = |entry: &str, source| PackageError::Extract {
            dir: dir.to_path_buf(),
            entry: entry.to_string(),
            source,
        };
        match fs::read_dir(dir) {
            Ok(mut items) => {
                if items.next().is_some() {
                    return Err(dir_err(
                        "",
                        io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            "target directory is not empty",
                        ),
                    ));
                }
            }
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).map_err(|source| dir_err("", source))?
            }
            Err(err) => return Err(dir_err("", err)),
        }
        let mut links = Vec::new();
        for (path, entry) in self.with_parents() {
            let target = safe_join(dir, path).ok_or_else(|| {
                dir_err(
                    path,
                    io::Error::new(io::ErrorKind::InvalidInput, "unsafe path"),
                )
            })?;
            match entry {
                SourceEntry::Dir => match fs::symlink_metadata(&target) {
                    Ok(meta) if meta.is_dir() => {}
                    Ok(_) => {
                        return Err(dir_err(
                            path,
                            io::Error::new(
                                io::ErrorKind::AlreadyExists,
                                "exists and is not a directory",
                            ),
                        ));
                    }
                    Err(_) => fs::create_dir(&target).map_err(|source| dir_err(path, source))?,
                },
                SourceEntry::File { data, executable } => {
                    write_new_file(&target, data, *executable)
                        .map_err(|source| dir_err(path, source))?
                }
                SourceEntry::Symlink { target: link } => links.push((target, link, path)),
            }
        }
        for (at, link, path) in links {
            make_symlink(link, &at).map_err(|source| dir_err(path, source))?;
        }
        Ok(())
    }
}

/// `dir/path` for a normalized path; `None` if the path is not normalized.
fn safe_join(dir: &Path, path: &str) -> Option<PathBuf> {
    match normalize_entry_path(path) {
        Ok(normal) if normal == path => Some(dir.join(path)),
        _ => None,
    }
}

#[cfg(unix)]
fn is_executable(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &fs::Metadata) -> bool {
    false
}

fn write_new_file(path: &Path, data: &[u8], executable: bool) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if executable { 0o755 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = executable;
    options.open(path)?.write_all(data)
}

#[cfg(unix)]
fn make_symlink(target: &str, at: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, at)
}

#[cfg(not(unix))]
fn make_symlink(_target: &str, _at: &Path) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "symlinks need a unix host",
    ))
}

fn unsafe_path(archive: &str, entry: &str, reason: &'static str) -> PackageError {
    PackageError::UnsafePath {
        archive: archive.to_string(),
        entry: entry.to_string(),
        reason,
    }
}

/// Counts decompressed bytes and fails the stream once they pass the budget, so a gzip bomb stops
/// even inside tar headers the tar crate reads on its own.
struct BudgetedReader<R> {
    inner: R,
    read: Rc<Cell<u64>>,
    budget: u64,
}

impl<R: Read> Read for BudgetedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let total = self.read.get() + n as u64;
        self.read.set(total);
        if total > self.budget {
            return Err(io::Error::other("decompressed size over budget"));
        }
        Ok(n)
    }
}

struct TarReadState<'a> {
    archive: &'a str,
    limits: &'a Limits,
    counter: Rc<Cell<u64>>,
    budget: u64,
    tree: SourceTree,
    total: u64,
    count: usize,
    /// The entry being read, to name it when the stream itself fails.
    current: String,
}

impl TarReadState<'_> {
    fn stream_error(&self, source: io::Error) -> PackageError {
        if self.counter.get() > self.budget {
            PackageError::CompressionRatio {
                archive: self.archive.to_string(),
                entry: self.current.clone(),
                limit: self.limits.max_compression_ratio,
            }
        } else {
            PackageError::Corrupt {
                archive: self.archive.to_string(),
                source,
            }
        }
    }

    fn read_all<R: Read>(&mut self, mut archive: tar::Archive<R>) -> Result<(), PackageError> {
        let entries = archive.entries().map_err(|err| self.stream_error(err))?;
        for entry in entries {
            let entry = entry.map_err(|err| self.stream_error(err))?;
            self.read_entry(entry)?;
        }
        Ok(())
    }

    fn read_entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), PackageError> {
        let archive = self.archive;
        let raw = entry.path_bytes().into_owned();
        let name = match std::str::from_utf8(&raw) {
            Ok(name) => name.to_string(),
            Err(_) => {
                return Err(PackageError::NonUtf8Name {
                    archive: archive.to_string(),
                    entry: String::from_utf8_lossy(&raw).into_owned(),
                });
            }
        };
        self.current = name.clone();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            return Ok(());
        }
        self.count += 1;
        if self.count > self.limits.max_entries {
            return Err(PackageError::TooManyEntries {
                archive: archive.to_string(),
                entry: name,
                limit: self.limits.max_entries,
            });
        }
        if name.len() > self.limits.max_path_bytes {
            return Err(unsafe_path(archive, &name, "path too long"));
        }
        let path =
            normalize_entry_path(&name).map_err(|reason| unsafe_path(archive, &name, reason))?;
        let entry_value = match kind {
            EntryType::Directory => SourceEntry::Dir,
            EntryType::Regular | EntryType::Continuous => {
                let executable = entry
                    .header()
                    .mode()
                    .map(|m| m & 0o111 != 0)
                    .unwrap_or(false);
                SourceEntry::File {
                    data: self.read_data(&mut entry, &name)?,
                    executable,
                }
            }
            EntryType::Symlink => SourceEntry::Symlink {
                target: self.link_name(&entry, &name)?,
            },
            EntryType::Link => {
                let target = self.link_name(&entry, &name)?;
                let source = normalize_entry_path(&target)
                    .ok()
                    .and_then(|normal| self.tree.entries.get(&normal))
                    .cloned();
                match source {
                    Some(SourceEntry::File { data, executable }) => {
                        self.add_total(data.len() as u64, &name)?;
                        SourceEntry::File { data, executable }
                    }
                    _ => {
                        return Err(PackageError::HardLinkEscapes {
                            archive: archive.to_string(),
                            entry: name,
                            target,
                        });
                    }
                }
            }
            other => {
                return Err(PackageError::UnsupportedEntryType {
                    archive: archive.to_string(),
                    entry: name,
                    kind: entry_kind_name(other).to_string(),
                });
            }
        };
        if path.is_empty() {
            return match entry_value {
                SourceEntry::Dir => Ok(()),
                _ => Err(unsafe_path(archive, &name, "names the archive root")),
            };
        }
        if self.tree.entries.contains_key(&path) {
            return Err(PackageError::Duplicate {
                archive: archive.to_string(),
                entry: name,
            });
        }
        self.tree.entries.insert(path, entry_value);
        Ok(())
    }

    fn link_name<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        name: &str,
    ) -> Result<String, PackageError> {
        let raw = entry.link_name_bytes().unwrap_or_default().into_owned();
        String::from_utf8(raw).map_err(|_| PackageError::NonUtf8Name {
            archive: self.archive.to_string(),
            entry: name.to_string(),
        })
    }

    fn add_total(&mut self, bytes: u64, name: &str) -> Result<(), PackageError> {
        self.total += bytes;
        if self.total > self.limits.max_total_bytes {
            return Err(PackageError::TotalTooLarge {
                archive: self.archive.to_string(),
                entry: name.to_string(),
                limit: self.limits.max_total_bytes,
            });
        }
        Ok(())
    }

    fn read_data<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &str,
    ) -> Result<Vec<u8>, PackageError> {
        let too_large = || PackageError::EntryTooLarge {
            archive: self.archive.to_string(),
            entry: name.to_string(),
            limit: self.limits.max_entry_bytes,
        };
        if entry.header().size().unwrap_or(u64::MAX) > self.limits.max_entry_bytes {
            return Err(too_large());
        }
        let mut data = Vec::new();
        let mut chunk = [0u8; 64 * 1024];
        loop {
            let n = entry
                .read(&mut chunk)
                .map_err(|err| self.stream_error(err))?;
            if n == 0 {
                break;
            }
            if (data.len() + n) as u64 > self.limits.max_entry_bytes {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk[..n]);
            self.add_total(n as u64, name)?;
        }
        Ok(data)
    }
}

fn entry_kind_name(kind: EntryType) -> &'static str {
    match kind {
        EntryType::Char => "character device",
        EntryType::Block => "block device",
        EntryType::Fifo => "fifo",
        EntryType::GNUSparse => "sparse file",
        EntryType::GNULongName | EntryType::GNULongLink => "dangling GNU long-name",
        _ => "unknown type",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(entries: &[(&str, SourceEntry)]) -> SourceTree {
        SourceTree {
            entries: entries
                .iter()
                .map(|(path, entry)| (path.to_string(), entry.clone()))
                .collect(),
        }
    }

    fn link(target: &str) -> SourceEntry {
        SourceEntry::Symlink {
            target: target.to_string(),
        }
    }

    #[test]
    fn normalizing_drops_dots_and_rejects_escapes() {
        assert_eq!(
            normalize_entry_path("./src//a/./b.js"),
            Ok("src/a/b.js".to_string())
        );
        assert_eq!(normalize_entry_path("./"), Ok(String::new()));
        assert_eq!(normalize_entry_path("/etc/passwd"), Err("absolute path"));
        assert_eq!(
            normalize_entry_path("src/../../x"),
            Err("parent directory (..) component")
        );
        assert_eq!(normalize_entry_path("a\\b"), Err("backslash in name"));
        assert_eq!(normalize_entry_path(""), Err("empty name"));
    }

    #[test]
    fn symlinks_are_resolved_through_other_symlinks() {
        // `up` resolves to the root, so `up/../x` really is outside even though it looks inside.
        let t = tree(&[("d/up", link("..")), ("d/esc", link("up/../x"))]);
        assert!(
            matches!(t.check_links("t"), Err(PackageError::SymlinkEscapes { entry, .. }) if entry == "d/esc")
        );
        let ok = tree(&[
            ("lib", SourceEntry::Dir),
            ("d/l", link("../lib")),
            ("d/m", link("l/../lib")),
        ]);
        assert!(ok.check_links("t").is_ok());
    }

    #[test]
    fn symlink_loops_and_absolute_targets_are_rejected() {
        assert!(
            tree(&[("a", link("b")), ("b", link("a"))])
                .check_links("t")
                .is_err()
        );
        assert!(tree(&[("a", link("/etc"))]).check_links("t").is_err());
    }

    #[test]
    fn entries_beneath_a_symlink_are_rejected() {
        let t = tree(&[("a", link(".")), ("a/b", SourceEntry::Dir)]);
        assert!(
            matches!(t.check_links("t"), Err(PackageError::BeneathSymlink { link, .. }) if link == "a")
        );
    }

    #[test]
    fn subtree_revalidates_links_that_leave_it() {
        let t = tree(&[
            (
                "top.txt",
                SourceEntry::File {
                    data: vec![],
                    executable: false,
                },
            ),
            ("src/l", link("../top.txt")),
        ]);
        assert!(t.check_links("t").is_ok());
        assert!(matches!(
            t.subtree("src", "t"),
            Err(PackageError::SymlinkEscapes { .. })
        ));
    }

    #[test]
    fn children_lists_direct_names_once() {
        let file = SourceEntry::File {
            data: vec![1],
            executable: false,
        };
        let t = tree(&[
            ("a/b/c", file.clone()),
            ("a/b/d", file.clone()),
            ("a/e", file),
        ]);
        assert_eq!(t.children("a"), vec!["b", "e"]);
        assert_eq!(t.children(""), vec!["a"]);
        assert!(t.is_dir("a/b"));
        assert!(!t.is_dir("a/e"));
    }
}
