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
        if !alive() {
            return false;
        }
        let signal = parse_signal(&rec.stop_signal).unwrap_or(Signal::SIGTERM);
        let _ = kill(Pid::from_raw(pid), signal);
        if wait_gone(&alive, Duration::from_millis(rec.stop_grace_ms)) {
            reap(pid);
            return false;
        }
        tracing::debug!(container = %rec.id, "grace period over; killing");
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_gone(&alive, Duration::from_secs(10));
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

fn wait_gone(alive: &dyn Fn() -> bool, limit: Duration) -> bool {
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

/// `SIGTERM`, `TERM`, `15`.
pub fn parse_signal(s: &str) -> Option<Signal> {
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    Signal::from_str(&name).ok()
}
