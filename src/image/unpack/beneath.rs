//! Opening directories under a layer root without ever following a symlink: `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS` where the kernel has it, else (and to create missing
//! parents) one component at a time with `O_NOFOLLOW | O_DIRECTORY`. Also removal that does not
//! follow symlinks.

use std::cell::Cell;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

/// Set to false once `openat2` turns out to be unavailable, so the fallback walk is used directly.
pub(super) static OPENAT2_WORKS: AtomicBool = AtomicBool::new(true);

pub(super) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

/// A layer root directory, and how paths below it are resolved.
pub(super) struct Beneath {
    fd: OwnedFd,
    /// Whether to try `openat2` (false once it failed with ENOSYS/EPERM, or in tests of the
    /// fallback).
    openat2: Cell<bool>,
}

impl Beneath {
    pub(super) fn new(fd: OwnedFd, openat2: bool) -> Self {
        Beneath { fd, openat2: Cell::new(openat2) }
    }

    pub(super) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the directory `comps` under the root without following any symlink, with `openat2`
    /// where the kernel has it; creates missing components when `create`.
    pub(super) fn open_dir(&self, comps: &[Vec<u8>], create: bool) -> rustix::io::Result<OwnedFd> {
        if comps.is_empty() {
            return rfs::openat(&self.fd, ".", dir_flags(), Mode::empty());
        }
        if self.openat2.get() {
            let resolve = ResolveFlags::BENEATH
                | ResolveFlags::NO_SYMLINKS
                | ResolveFlags::NO_MAGICLINKS
                | ResolveFlags::NO_XDEV;
            let path = comps.join(&b'/');
            for _ in 0..16 {
                match rfs::openat2(&self.fd, os(&path), dir_flags(), Mode::empty(), resolve) {
                    // EAGAIN: a concurrent rename somewhere on the system; the kernel asks to retry.
                    Err(Errno::AGAIN) => continue,
                    Err(Errno::NOENT) if create => break,
                    Err(Errno::NOSYS | Errno::PERM) => {
                        tracing::debug!(
                            "openat2 unavailable; resolving paths one component at a time"
                        );
                        OPENAT2_WORKS.store(false, Ordering::Relaxed);
                        self.openat2.set(false);
                        break;
                    }
                    other => return other,
                }
            }
        }
        walk(self.fd.as_fd(), comps, create)
    }
}

pub(super) fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The fallback resolution: one component at a time, `O_NOFOLLOW | O_DIRECTORY` at each step, so
/// a symlink anywhere on the way fails with ELOOP (or ENOTDIR) instead of being followed.
fn walk(root: BorrowedFd<'_>, comps: &[Vec<u8>], create: bool) -> rustix::io::Result<OwnedFd> {
    let mut cur = rfs::openat(root, ".", dir_flags(), Mode::empty())?;
    for c in comps {
        let next = match rfs::openat(&cur, os(c), dir_flags(), Mode::empty()) {
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&cur, os(c), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rfs::openat(&cur, os(c), dir_flags(), Mode::empty())?
            }
            other => other?,
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` (a directory with all its content), without following
/// symlinks; nothing there is fine.
pub(super) fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            let sub = rfs::openat(dir, os(name), dir_flags(), Mode::empty())?;
            let entries: Vec<Vec<u8>> = rfs::Dir::read_from(&sub)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n != b"." && n != b"..")
                .collect();
            for child in entries {
                remove_at(sub.as_fd(), &child)?;
            }
            rfs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}
