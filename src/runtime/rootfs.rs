//! The container's root file system: an overlayfs mount of the image's layers (read-only lower
//! directories) under a per-container upper directory, on the host, before the runtime creates
//! the container (the spec's `root.path` is the mount point).
//!
//! Both functions are idempotent, so a retried `up` or a `down` after a crash can call them
//! again: mounting where our overlay already is does nothing, unmounting what is not mounted does
//! nothing.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use super::driver::RuntimeError;

/// The kernel takes mount options up to a page; beyond that, layers are named by descriptor.
const MAX_OPTIONS: usize = 4095;

/// Mounts an overlay at `target` with `lower_dirs` (lowest layer first, as an image lists them)
/// below the writable `upper` (with `work`, on the same file system, for overlayfs' own use).
/// `upper`, `work` and `target` are created if missing. A single lower directory works too.
pub fn mount_overlay(
    lower_dirs: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<(), RuntimeError> {
    if lower_dirs.is_empty() {
        return Err(RuntimeError::InvalidPath {
            path: target.to_owned(),
            reason: "an overlay needs at least one lower directory",
        });
    }
    // Overlay's option syntax has no escaping that every kernel takes: `:` separates layers and
    // `,` options.
    for path in lower_dirs.iter().map(PathBuf::as_path).chain([upper, work]) {
        let text = path.to_str().unwrap_or(",");
        if text.contains([',', ':', '\\']) || !path.is_absolute() {
            return Err(RuntimeError::InvalidPath {
                path: path.to_owned(),
                reason: "overlay layer paths must be absolute, UTF-8, without ',' ':' or '\\'",
            });
        }
    }
    for dir in [upper, work, target] {
        fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create", dir, e))?;
    }
    if mount_type(target)?.as_deref() == Some("overlay") {
        tracing::debug!(target = %target.display(), "overlay already mounted");
        return Ok(());
    }

    // Overlay wants the top layer first; images list the base first.
    let lower: Vec<String> = lower_dirs.iter().rev().map(|p| p.display().to_string()).collect();
    let mut options = overlay_options(&lower, upper, work);
    // Many layers with long paths overflow the page the kernel copies the options into. The
    // kernel resolves each lower path at mount time, so `/proc/self/fd/N` of an open directory
    // names the same layer in a few bytes; the descriptors only need to live until `mount`.
    let mut _held: Vec<OwnedFd> = Vec::new();
    if options.len() > MAX_OPTIONS {
        let mut short = Vec::with_capacity(lower.len());
        for dir in lower_dirs.iter().rev() {
            let fd = open(
                dir.as_path(),
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| RuntimeError::io("open the layer", dir, e.into()))?;
            // SAFETY: `open` returned a fresh descriptor that nothing else owns.
            let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            short.push(format!("/proc/self/fd/{}", fd.as_raw_fd()));
            _held.push(fd);
        }
        options = overlay_options(&short, upper, work);
    }

    match mount(Some("overlay"), target, Some("overlay"), MsFlags::empty(), Some(options.as_str()))
    {
        Ok(()) => {
            tracing::debug!(target = %target.display(), layers = lower.len(), "mounted overlay");
            Ok(())
        }
        Err(errno) => Err(mount_error(errno, target)),
    }
}

fn overlay_options(lower: &[String], upper: &Path, work: &Path) -> String {
    format!("lowerdir={},upperdir={},workdir={}", lower.join(":"), upper.display(), work.display())
}

/// Turns a failed overlay mount into an error that says what to do about it.
fn mount_error(errno: Errno, target: &Path) -> RuntimeError {
    let filesystems = fs::read_to_string("/proc/filesystems").unwrap_or_default();
    if errno == Errno::ENODEV || !overlay_listed(&filesystems) {
        return RuntimeError::OverlayUnavailable { target: target.to_owned() };
    }
    let source = io::Error::from(errno);
    let op = match errno {
        // The upper directory's file system cannot hold an overlay's upper layer (another
        // overlay, NFS...), or upper and work are on different file systems.
        Errno::EINVAL => {
            "mount overlay (upper and work dirs must be on one file system that \
                          overlayfs can write to, such as ext4, xfs or btrfs) at"
        }
        _ => "mount overlay at",
    };
    RuntimeError::io(op, target, source)
}

/// Whether `/proc/filesystems` (its text) lists overlayfs.
pub fn overlay_listed(filesystems: &str) -> bool {
    filesystems.lines().any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// Unmounts `target`. A mount still in use (a process kept a file open in it) is detached
/// lazily: gone from the tree at once, freed by the kernel when the last user closes it. Not
/// mounted, or missing, is success.
pub fn unmount(target: &Path) -> Result<(), RuntimeError> {
    if mount_type(target)?.is_none() {
        return Ok(());
    }
    let result = match umount2(target, MntFlags::empty()) {
        Err(Errno::EBUSY) => {
            tracing::debug!(target = %target.display(), "busy, detaching lazily");
            umount2(target, MntFlags::MNT_DETACH)
        }
        other => other,
    };
    match result {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(errno) => Err(RuntimeError::io("unmount", target, errno.into())),
    }
}

/// The file system type mounted exactly at `path`, from `/proc/self/mountinfo` (the last mount
/// at a point is the visible one); `None` if nothing is mounted there.
fn mount_type(path: &Path) -> Result<Option<String>, RuntimeError> {
    let path = match fs::canonicalize(path) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RuntimeError::io("resolve", path, e)),
    };
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| RuntimeError::io("read", "/proc/self/mountinfo", e))?;
    Ok(mount_type_in(&info, &path.to_string_lossy()))
}

/// The type of the last mount at `point` in mountinfo text. Fields: id, parent, dev, root,
/// mount point (octal-escaped), options, optional fields, `-`, type, source, super options.
pub fn mount_type_in(mountinfo: &str, point: &str) -> Option<String> {
    mountinfo
        .lines()
        .rev()
        .filter(|line| line.split(' ').nth(4).map(unescape).as_deref() == Some(point))
        .filter_map(|line| line.split(" - ").nth(1)?.split(' ').next().map(str::to_owned))
        .next()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            let s = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(s, 8).ok()
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_in_proc_filesystems() {
        assert!(overlay_listed("nodev\tsysfs\nnodev\toverlay\n\text4\n"));
        assert!(!overlay_listed("nodev\tsysfs\n\text4\nnodev\toverlayish\n"));
    }

    #[test]
    fn last_mount_at_a_point_wins() {
        let info = "22 1 0:21 / /proc rw - proc proc rw\n\
                    90 22 0:50 / /a\\040b rw shared:1 - tmpfs tmpfs rw\n\
                    91 90 0:51 / /a\\040b rw - overlay overlay rw,lowerdir=/l\n";
        assert_eq!(mount_type_in(info, "/a b").as_deref(), Some("overlay"));
        assert_eq!(mount_type_in(info, "/proc").as_deref(), Some("proc"));
        assert_eq!(mount_type_in(info, "/a"), None);
    }
}
