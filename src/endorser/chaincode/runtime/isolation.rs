//! Chaincode as another user. An endorser running as root would otherwise hand its chaincode the
//! CA, endorser and admin keys: a chaincode is code from whoever installed the package. With
//! [`RunAs`] the process runtime builds and runs chaincode as an unprivileged uid, with no
//! supplementary groups, in an area outside the data directory: only that area and the chaincode's
//! own launch files belong to the uid, and the keys stay 0600 root.
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The user chaincode runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// The unprivileged user used when the endorser runs as root and none is configured.
pub const DEFAULT_CHAINCODE_USER: &str = "nobody";

impl RunAs {
    /// `NAME`, `UID` or `UID:GID`; None for root (run chaincode as the endorser's user).
    pub fn parse(spec: &str) -> Result<Option<RunAs>, String> {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, default_gid) = match user.parse::<u32>() {
            Ok(uid) => (uid, uid),
            Err(_) => match nix::unistd::User::from_name(user) {
                Ok(Some(found)) => (found.uid.as_raw(), found.gid.as_raw()),
                Ok(None) => return Err(format!("no user {user:?} on this machine")),
                Err(e) => return Err(format!("looking up user {user:?}: {e}")),
            },
        };
        let gid = match group {
            None => default_gid,
            Some(g) => g
                .parse::<u32>()
                .map_err(|_| format!("group {g:?} is not a numeric gid"))?,
        };
        Ok((uid != 0).then_some(RunAs { uid, gid }))
    }

    /// The default: [`DEFAULT_CHAINCODE_USER`] when this process is root (65534 if the machine
    /// has no such user), else None (chaincode runs as the endorser's own, unprivileged, user).
    pub fn default_for_this_process() -> Option<RunAs> {
        if !nix::unistd::geteuid().is_root() {
            return None;
        }
        RunAs::parse(DEFAULT_CHAINCODE_USER)
            .ok()
            .flatten()
            .or(Some(RunAs {
                uid: 65534,
                gid: 65534,
            }))
    }

    /// Where builds, launch files and HOME live for a runtime whose work directory is
    /// `work_dir`: `TMPDIR/chaincode-operator/<uid>-<hash of work_dir>`, traversable by the uid
    /// whatever the data directory's ancestors allow (a data directory under /root, a 0700
    /// temporary directory). The path is checked to be a directory root owns, not a link another
    /// user planted.
    pub fn area(&self, work_dir: &Path) -> io::Result<PathBuf> {
        let absolute = std::path::absolute(work_dir)?;
        let digest = hex::encode(Sha256::digest(absolute.as_os_str().as_encoded_bytes()));
        let top = std::env::temp_dir().join("chaincode-operator");
        let area = top.join(format!("{}-{}", self.uid, &digest[..16]));
        for dir in [&top, &area] {
            match std::fs::create_dir(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e),
            }
            let meta = std::fs::symlink_metadata(dir)?;
            if !meta.is_dir() || meta.uid() != nix::unistd::geteuid().as_raw() {
                return Err(io::Error::other(format!(
                    "{} is not a directory of this user: refusing to put chaincode there",
                    dir.display()
                )));
            }
            // Others may enter (to reach their own subdirectory), not list or write.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
        }
        Ok(area)
    }

    /// A directory in the area owned by the uid (created if missing).
    pub fn owned_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::os::unix::fs::chown(dir, Some(self.uid), Some(self.gid))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }

    /// Hands `path` and everything under it to the uid (symlinks themselves, not their targets).
    pub fn give(&self, path: &Path) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                self.give(&entry?.path())?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_parsed_by_name_uid_and_uid_gid_and_root_means_none() {
        assert_eq!(
            RunAs::parse("1234").unwrap(),
            Some(RunAs {
                uid: 1234,
                gid: 1234
            })
        );
        assert_eq!(
            RunAs::parse("1234:99").unwrap(),
            Some(RunAs { uid: 1234, gid: 99 })
        );
        assert_eq!(RunAs::parse("0").unwrap(), None);
        assert_eq!(RunAs::parse("root").unwrap(), None);
        assert!(RunAs::parse("no-such-user-here").is_err());
        assert!(RunAs::parse("1234:staff").is_err());
    }
}
