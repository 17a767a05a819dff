//! The container's network namespace, between create and start: bring its loopback up.
//!
//! A new network namespace starts with `lo` down, so without this a `network_mode: none` (or
//! bridge) container could not even reach itself on 127.0.0.1. runc brings `lo` up on its own
//! (its "loopback" network for a new namespace); libcontainer does not, so the caller does it for
//! both (it is idempotent), after [`Runtime::create`](super::driver::Runtime::create) and before
//! `start`, when the namespace exists and no user code runs yet.
//!
//! `setns` changes the namespace of the calling *thread* only. It runs on a thread spawned for
//! it, which exits right after: never on a supervisor thread (a tokio worker or a blocking-pool
//! thread would keep the container's namespace for whatever runs on it next).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};

use super::driver::RuntimeError;

/// Sets `lo` up in the network namespace of process `pid` (a container's init).
pub fn loopback_up(pid: i32) -> Result<(), RuntimeError> {
    let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
    // Opened here, so a wrong pid fails before any thread exists, and the namespace stays
    // pinned even if the process exits meanwhile.
    let ns = File::open(&path).map_err(|e| RuntimeError::io("open", &path, e))?;
    let joined = std::thread::Builder::new()
        .name("devenv-netns".into())
        .spawn(move || -> io::Result<()> {
            setns(&ns, CloneFlags::CLONE_NEWNET)?;
            set_up("lo")
        })
        .map_err(|e| RuntimeError::io("start a thread to enter", &path, e))?
        .join();
    let result = joined.unwrap_or_else(|_| Err(io::Error::other("the netns thread panicked")));
    result.map_err(|e| RuntimeError::io("bring lo up in the network namespace", &path, e))?;
    tracing::debug!(pid, "loopback up");
    Ok(())
}

/// `SIOCGIFFLAGS`, add `IFF_UP`, `SIOCSIFFLAGS` on a datagram socket of the current thread's
/// network namespace (the classic `ifconfig lo up`; no netlink needed for one flag).
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: plain syscall; the result is checked and then owned.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nothing else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all zeros is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "interface name too long"));
    }
    for (dst, &src) in req.ifr_name.iter_mut().zip(name.as_bytes()) {
        *dst = src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq for both requests; the kernel reads and writes only it.
    unsafe {
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = req.ifr_ifru.ifru_flags;
        if flags & libc::IFF_UP as libc::c_short != 0 {
            return Ok(());
        }
        req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
        if libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
