//! The container's user: `user`, `user:group`, `uid` or `uid:gid`, resolved against the image's
//! own /etc/passwd and /etc/group (the rules are in [`crate::runtime::user`]).
//!
//! The two files are found inside the rootfs the way the container would find them: symlinks are
//! followed relative to the rootfs, so an image whose /etc/passwd points at `/etc/shadow` or
//! `../../..` reads its own files and never the host's.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::SpecErrorKind;
use crate::runtime::user::{self, UserError};

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the supplementary groups (moby's `AdditionalGids`).
    pub additional_gids: Vec<u32>,
}

/// Resolves `spec` (empty means root) in the image at `rootfs`, with the rules of
/// [`crate::runtime::user::resolve`].
pub(super) fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, SpecErrorKind> {
    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let group = read_in_root(rootfs, "etc/group")?;
    match user::resolve(spec, &passwd, &group) {
        Ok(u) => Ok(ResolvedUser { uid: u.uid, gid: u.gid, additional_gids: u.groups }),
        Err(UserError::Invalid(s)) => Err(SpecErrorKind::InvalidUser(s)),
        Err(UserError::UnknownUser(s)) => Err(SpecErrorKind::UnknownUser(s)),
        Err(UserError::UnknownGroup(s)) => Err(SpecErrorKind::UnknownGroup(s)),
    }
}

/// Reads `rel` (relative to the container's root) inside `rootfs`. A missing file reads as empty,
/// as in runc: an image without /etc/passwd can still run as a numeric uid.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String, SpecErrorKind> {
    let path = resolve_in_root(rootfs, Path::new(rel));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
            Ok(String::new())
        }
        Err(source) => Err(SpecErrorKind::ReadImageFile { path: Path::new("/").join(rel), source }),
    }
}

/// The host path of `rel` in the container whose root is `rootfs`, with every symlink on the way
/// resolved as the container would: absolute targets start again at `rootfs`, `..` never goes
/// above it. After 40 links (the kernel's limit) it gives up and returns a path that does not
/// exist.
pub(super) fn resolve_in_root(rootfs: &Path, rel: &Path) -> PathBuf {
    let mut todo: Vec<PathBuf> =
        rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut done: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match Path::new(&part).components().next() {
            None
            | Some(Component::CurDir)
            | Some(Component::RootDir)
            | Some(Component::Prefix(_)) => continue,
            Some(Component::ParentDir) => {
                done.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
        }
        let here: PathBuf = rootfs.join(done.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return rootfs.join(".devenv-symlink-loop");
                }
                let Ok(target) = std::fs::read_link(&here) else {
                    return here;
                };
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            _ => done.push(part),
        }
    }
    rootfs.join(done.iter().collect::<PathBuf>())
}
