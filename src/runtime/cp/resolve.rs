//! Opening paths the way one side of a copy sees them: the host's paths as usual, a container's
//! paths inside its root with `openat2(RESOLVE_IN_ROOT)`.
//!
//! The container's root is `/proc/<pid>/root`, opened once as an `O_PATH` directory. Every later
//! lookup starts from that descriptor, and the kernel resolves each component (symlinks, `..`,
//! absolute link targets) as if that directory were `/`: a link to `/etc/shadow` or `../../..`
//! lands inside the container, however the container rearranges its files meanwhile
//! (openat2(2); this is what runc, libpathrs and Docker's fix for CVE-2018-15664 rely on). Magic
//! links (`/proc/<pid>/root`, `/proc/self/fd/N` in the container's own /proc) are refused too, as
//! they jump outside any root.
//!
//! `openat2` is raw `libc::syscall`: it is one call, and libpathrs' fallbacks for kernels without
//! it (before Linux 5.6) would be the only reason for the dependency. Without it, copying fails
//! with [`CpError::NoOpenat2`] rather than resolving unsafely.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;

use super::CpError;

/// Where a path is looked up.
#[derive(Clone, Copy)]
pub(crate) enum Side<'a> {
    /// The caller's own view: relative paths from its cwd, symlinks followed as usual.
    Host,
    /// Inside a container: every path resolved under this root (an `O_PATH` directory fd).
    Container(BorrowedFd<'a>),
}

impl Side<'_> {
    /// Opens `path` with `flags` (plus `O_CLOEXEC`), following symlinks the way this side sees
    /// them. An empty path means the side's starting point (cwd or root).
    pub(crate) fn open(&self, path: &[u8], flags: OFlag) -> io::Result<OwnedFd> {
        let path = if path.is_empty() { b"." } else { path };
        let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        match self {
            Side::Host => {
                // SAFETY: `c` is a valid C string; the returned fd is new and owned by us.
                let fd = unsafe { libc::open(c.as_ptr(), (flags | OFlag::O_CLOEXEC).bits()) };
                if fd < 0 {
                    return Err(io::Error::last_os_error());
                }
                // SAFETY: `fd` was just returned by open(2) and nothing else owns it.
                Ok(unsafe { OwnedFd::from_raw_fd(fd) })
            }
            Side::Container(root) => openat2_in_root(*root, &c, flags),
        }
    }

    /// How a path on this side is shown in messages.
    pub(crate) fn show(&self, path: &[u8]) -> PathBuf {
        let p = PathBuf::from(OsStr::from_bytes(path));
        match self {
            Side::Host => p,
            Side::Container(_) if p.is_absolute() => p,
            Side::Container(_) => PathBuf::from("/").join(p),
        }
    }
}

/// Opens the root directory of the container whose init has host pid `pid`, as an `O_PATH`
/// descriptor that later lookups are anchored to. Opened once: the pid could be reused later,
/// the descriptor keeps pointing at this container's root.
pub(crate) fn open_root(pid: i32) -> Result<OwnedFd, CpError> {
    let path = format!("/proc/{pid}/root");
    Side::Host
        .open(path.as_bytes(), OFlag::O_PATH | OFlag::O_DIRECTORY)
        .map_err(|source| CpError::Root { pid, source })
}

/// `openat2(root, path, flags | O_CLOEXEC, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`.
///
/// The kernel answers `EAGAIN` when a concurrent rename could have let `..` escape during the
/// walk (it checks a sequence counter); the lookup is then simply tried again, as openat2(2)
/// advises. `ENOSYS` (kernel before 5.6) becomes `Unsupported`.
pub(crate) fn openat2_in_root(
    root: BorrowedFd<'_>,
    path: &CString,
    flags: OFlag,
) -> io::Result<OwnedFd> {
    // `open_how` is non-exhaustive in libc (the kernel may grow it); zeroed is its documented
    // default, and its size is passed along so the kernel knows which version we speak.
    // SAFETY: open_how is plain integers, valid when zeroed.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | OFlag::O_CLOEXEC).bits() as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    for _ in 0..128 {
        // SAFETY: valid fd, C string and open_how with its true size; the result is a new fd.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if fd >= 0 {
            // SAFETY: openat2 returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) });
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
            Some(libc::ENOSYS) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this kernel lacks openat2 (Linux 5.6+), needed to resolve paths safely",
                ))
            }
            _ => return Err(err),
        }
    }
    Err(io::Error::new(io::ErrorKind::Interrupted, "openat2 kept racing with renames"))
}

/// Reads a whole (small) file inside the container root, e.g. its /etc/passwd. `Ok(None)` when
/// it does not exist.
pub(crate) fn read_in_root(root: BorrowedFd<'_>, path: &str) -> io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let c = CString::new(path).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // O_NONBLOCK: a FIFO planted at that path must not hang us; regular files ignore it.
    let fd = match openat2_in_root(root, &c, OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
    {
        Ok(fd) => fd,
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let mut file = std::fs::File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("{path} is not a file")));
    }
    let mut buf = Vec::new();
    // A bound, so that a container cannot make us read forever (a huge sparse file).
    file.by_ref().take(16 << 20).read_to_end(&mut buf)?;
    Ok(Some(buf))
}
