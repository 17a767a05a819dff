//! Live-edit sync: bringing single paths of a running container up to date with the host's,
//! copying what exists and removing what is gone. Unlike `docker cp`, a sync names its exact
//! destination, makes missing parent directories, replaces whatever is there (a directory by a
//! file too) and deletes.
//!
//! The safety is [`copy_in`](super::copy_in)'s: container paths are resolved by the kernel
//! inside the container's root, then everything is done relative to directory descriptors with
//! `O_NOFOLLOW`, so a symlink the container planted (or swaps in) never leads to a host file.

use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use super::resolve::{self, Side};
use super::tree::{self, Policy, Walk};
use super::{container_root_owner, cstring, io_err, open_err, split_last, CpError};

/// Applies sync operations, in order, to the running container whose init has host pid `pid`.
/// Each is (host path, absolute container path):
/// - a host path that exists (file, symlink or directory; a symlink is copied as a symlink) is
///   copied to the container path: missing parents are made as directories owned by the
///   container's root, an existing entry is replaced, a directory is copied recursively and
///   merged into one already there;
/// - a host path that no longer exists means the container path is removed (recursively, if a
///   directory; already absent is fine).
///
/// Returns how many operations were applied; stops at the first error, which names the path.
pub fn sync_in(pid: i32, ops: &[(PathBuf, String)]) -> Result<usize, CpError> {
    let root = resolve::open_root(pid)?;
    let owner = container_root_owner(pid)?;
    let policy = Policy { owner, strip_setid: false };
    for (host, container) in ops {
        apply(root.as_fd(), policy, host, container)?;
    }
    Ok(ops.len())
}

fn apply(root: BorrowedFd<'_>, policy: Policy, host: &Path, ctr: &str) -> Result<(), CpError> {
    let side = Side::Container(root);
    let show = side.show(ctr.as_bytes());
    let (parent, Some(name)) = split_last(ctr.as_bytes()) else {
        return Err(CpError::SyncTarget { path: show });
    };
    if !ctr.starts_with('/') {
        return Err(CpError::SyncTarget { path: show });
    }
    let name = cstring(name, &show)?;
    let src = match Side::Host.open(host.as_os_str().as_bytes(), OFlag::O_PATH | OFlag::O_NOFOLLOW)
    {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return delete(side, &parent, &name, &show);
        }
        Err(e) => return Err(io_err("open", host, e)),
    };
    let src_is_dir = tree::kind(&tree::fstat(src.as_fd()).map_err(|e| io_err("stat", host, e))?)
        == SFlag::S_IFDIR;
    let dir = ensure_dir(side, policy, &parent)?;
    // The copy merges into a directory and replaces anything else, but cannot put a file where
    // a directory is: that directory goes first, as the host's did.
    if !src_is_dir && is_dir_at(dir.as_fd(), &name, &show)? {
        remove_tree(dir.as_fd(), &name, &show)?;
    }
    let mut walk = Walk { policy, src: host.to_path_buf(), dst: show };
    walk.entry(src.as_fd(), dir.as_fd(), &name)
}

/// Removes `name` from the container directory `parent`, whatever it is; absent is fine, and so
/// is a parent that is absent or not a directory (nothing can be there).
fn delete(side: Side<'_>, parent: &[u8], name: &CStr, show: &Path) -> Result<(), CpError> {
    let dir = match side.open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(())
        }
        Err(e) => return Err(open_err(e, show)),
    };
    remove_tree(dir.as_fd(), name, show)
}

/// Whether `name` in `dir` is a directory (not following a symlink); false when absent.
fn is_dir_at(dir: BorrowedFd<'_>, name: &CStr, show: &Path) -> Result<bool, CpError> {
    match nix::sys::stat::fstatat(Some(dir.as_raw_fd()), name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(tree::kind(&st) == SFlag::S_IFDIR),
        Err(nix::Error::ENOENT) => Ok(false),
        Err(e) => Err(io_err("stat", show, io::Error::from(e))),
    }
}

/// Removes `name` from `dir`: a directory with everything in it, anything else (a symlink
/// itself, never what it points to) unlinked. Entries that vanish meanwhile are fine.
fn remove_tree(dir: BorrowedFd<'_>, name: &CStr, show: &Path) -> Result<(), CpError> {
    let gone = |e: nix::Error| e == nix::Error::ENOENT;
    if is_dir_at(dir, name, show)? {
        // O_NOFOLLOW: if the container swapped the directory for a symlink, this fails (ELOOP)
        // rather than emptying the link's target.
        let sub = tree::openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW)
            .map_err(|e| open_err(e, show))?;
        let names = tree::list(sub.as_fd()).map_err(|e| io_err("read directory", show, e))?;
        for n in names {
            let child = show.join(OsStr::from_bytes(n.as_bytes()));
            remove_tree(sub.as_fd(), &n, &child)?;
        }
        match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::RemoveDir) {
            Ok(()) => Ok(()),
            Err(e) if gone(e) => Ok(()),
            Err(e) => Err(io_err("remove", show, io::Error::from(e))),
        }
    } else {
        match nix::unistd::unlinkat(Some(dir.as_raw_fd()), name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(()),
            Err(e) if gone(e) => Ok(()),
            Err(e) => Err(io_err("remove", show, io::Error::from(e))),
        }
    }
}

/// Opens the container directory `path` (symlinks followed inside the root), making it and its
/// missing parents as `mkdir -p` would: mode 0755, owned by the container's root.
fn ensure_dir(side: Side<'_>, policy: Policy, path: &[u8]) -> Result<OwnedFd, CpError> {
    let show = side.show(path);
    match side.open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(fd) => return Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        Err(e) => return Err(open_err(e, &show)),
    }
    let (parent, Some(name)) = split_last(path) else {
        // `/` always exists; a name-less path that does not is not ours to make.
        return Err(CpError::NoDestDir { path: show });
    };
    let parent = ensure_dir(side, policy, &parent)?;
    let name = cstring(name, &show)?;
    let made = match nix::sys::stat::mkdirat(
        Some(parent.as_raw_fd()),
        name.as_c_str(),
        Mode::from_bits_truncate(0o700),
    ) {
        Ok(()) => true,
        Err(nix::Error::EEXIST) => false,
        Err(e) => return Err(io_err("create directory", &show, io::Error::from(e))),
    };
    // Whatever is there now, only a real directory opens (a symlink swapped in fails, ELOOP).
    let fd = tree::openat(
        parent.as_fd(),
        &name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
    )
    .map_err(|e| open_err(e, &show))?;
    if made {
        // Owner first, then the mode (made 0700 so that nobody else could use it meanwhile;
        // 0755 explicitly, whatever our umask).
        if let Some((uid, gid)) = policy.owner {
            nix::unistd::fchown(fd.as_raw_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| io_err("chown", &show, io::Error::from(e)))?;
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(0o755))
            .map_err(|e| io_err("chmod", &show, io::Error::from(e)))?;
    }
    Ok(fd)
}
