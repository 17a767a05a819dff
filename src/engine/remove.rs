//! Stopping and removing one container. Stop sends the stop signal to the container's init
//! (which forwards it), waits out the grace period, then kills. Removal is best-effort: every
//! step is tried whatever failed before, and every error is returned.

use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Engine, EngineError};
use crate::runtime::rootfs;
use crate::state::{process_start_time, ContainerRecord};

impl Engine {
    /// Stops the container's processes: the stop signal, then SIGKILL after the grace period.
    /// Returns whether it had to kill.
    pub fn stop(&self, rec: &ContainerRecord) -> bool {
        let (Some(pid), Some(start)) = (rec.pid, rec.pid_start) else { return false };
        let alive = || process_start_time(pid) == Some(start);
        // Opened before the signal and checked against the start time after: the descriptor
        // then refers to the container's init even if its pid is reused later.
        let pidfd = PidFd::open(pid).filter(|_| alive());
        if !alive() {
            return false;
        }
        let signal = parse_signal(&rec.stop_signal).unwrap_or(Signal::SIGTERM);
        let _ = kill(Pid::from_raw(pid), signal);
        let wait = |limit| match &pidfd {
            Some(fd) => fd.wait(limit),
            None => poll_gone(&alive, limit),
        };
        if wait(Duration::from_millis(rec.stop_grace_ms)) {
            reap(pid);
            return false;
        }
        tracing::debug!(container = %rec.id, "grace period over; killing");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait(Duration::from_secs(10));
        reap(pid);
        true
    }

    /// Stops the container if needed and removes everything that was made for it: the
    /// runtime's container, the rootfs mount, the container directory.
    pub fn remove(&self, rec: &ContainerRecord) -> Vec<EngineError> {
        let mut errors = Vec::new();
        let service = || rec.service.clone();
        self.stop(rec);
        if let Err(source) = self.runtime.delete(&rec.id, true) {
            errors.push(EngineError::Runtime { service: service(), source });
        }
        if let Some(endpoint) = &rec.endpoint {
            if let Err(e) = self.detach_endpoint(endpoint) {
                errors.push(e);
            }
        }
        let dir = self.home.container(&rec.id);
        let root = dir.join("rootfs");
        if let Err(source) = rootfs::unmount(&root) {
            errors.push(EngineError::Runtime { service: service(), source });
        }
        if dir.exists() {
            if let Err(source) = std::fs::remove_dir_all(&dir) {
                errors.push(EngineError::Io {
                    service: service(),
                    what: "cannot remove",
                    path: dir,
                    source,
                });
            }
        }
        errors
    }
}

/// Collects the exit of a container init that is our child (the supervisor is its subreaper),
/// so removed containers leave no zombie; for any other process this does nothing.
fn reap(pid: i32) {
    use nix::sys::wait::{waitpid, WaitPidFlag};
    let _ = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG));
}

/// Waits for a process that may not be our child by polling its start time.
fn poll_gone(alive: &dyn Fn() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    while alive() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    true
}

/// A pidfd: readable the moment its process exits, child or not (Linux 5.3+).
struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    fn open(pid: i32) -> Option<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        // SAFETY: a non-negative result is a descriptor we now own.
        (fd >= 0).then(|| PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    /// Whether the process exited within `limit`.
    fn wait(&self, limit: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32)
                .unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, ms) {
                Ok(n) if n > 0 => return true,
                Ok(_) => return false,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return false,
            }
        }
    }
}

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&name).ok()
}
