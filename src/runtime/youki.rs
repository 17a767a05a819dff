//! [`Youki`]: the [`Runtime`] on youki's libcontainer, embedded in devenv but never called from
//! the calling process: every operation re-executes the devenv binary in its helper mode
//! ([`super::helper`]), a fresh single-threaded process that calls libcontainer and answers with
//! one JSON line.
//!
//! `create` runs the helper from a sealed in-memory copy of the devenv binary (`memfd_create`
//! plus `F_SEAL_WRITE`..., made on the first create of a [`Youki`] by the `pentacle` crate): the
//! container's init is a clone of the helper until it executes the user program, and a sealed
//! copy is what keeps a process in the container from overwriting the host's devenv binary
//! through `/proc/<pid>/exe` (CVE-2019-5736). youki's own binary re-executes itself from such a
//! copy at every start (`pentacle::ensure_sealed()`); copying once per supervisor instead keeps
//! each create at one `exec` (the copy itself costs tens of milliseconds for a release binary,
//! once). The other operations never put a process in a container and run the file directly.
//!
//! The container's stdio reaches the helper at fixed descriptors 3 (stdin), 4 and 5, set up
//! between fork and exec; the helper hands them to libcontainer, which makes them the init's 0-2.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};

use super::driver::{ContainerState, Runtime, RuntimeError, Signal, Stdio};
use super::helper::{Reply, HELPER_ARG};

/// The libcontainer runtime, driven through the devenv helper.
pub struct Youki {
    root: PathBuf,
    helper: PathBuf,
    /// The sealed copy of `helper`, made on first use.
    sealed: Mutex<Option<Arc<File>>>,
}

impl Youki {
    /// `state_root` holds the runtime's state (one directory per container; created on first
    /// use). `helper_exe` is the devenv binary to run in helper mode: `/proc/self/exe` in devenv
    /// itself ([`Youki::current_exe`]), `env!("CARGO_BIN_EXE_devenv")` in integration tests.
    pub fn new(state_root: impl Into<PathBuf>, helper_exe: impl Into<PathBuf>) -> Youki {
        Youki { root: state_root.into(), helper: helper_exe.into(), sealed: Mutex::new(None) }
    }

    /// The runtime for the running devenv binary.
    pub fn current_exe(state_root: impl Into<PathBuf>) -> Youki {
        Youki::new(state_root, "/proc/self/exe")
    }

    pub fn state_root(&self) -> &Path {
        &self.root
    }

    fn sealed_helper(&self, id: &str, op: &'static str) -> Result<Arc<File>, RuntimeError> {
        let mut slot = self.sealed.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = slot.as_ref() {
            return Ok(file.clone());
        }
        let spawn_error = |source| RuntimeError::Spawn {
            id: id.to_owned(),
            op,
            program: self.helper.clone(),
            source,
        };
        let started = std::time::Instant::now();
        let mut exe = File::open(&self.helper).map_err(spawn_error)?;
        let memfd = pentacle::SealOptions::new()
            .executable(true)
            .copy_and_seal(&mut exe)
            .map_err(spawn_error)?;
        // Keep it above the descriptors 3-5 that `run` maps into the child, or mapping the
        // stdio would replace the very file the child is about to execute.
        // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor that this function then owns.
        let high = unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
        if high < 0 {
            return Err(spawn_error(io::Error::last_os_error()));
        }
        // SAFETY: `high` is a fresh descriptor nothing else owns.
        let file = Arc::new(File::from(unsafe { OwnedFd::from_raw_fd(high) }));
        tracing::debug!(helper = %self.helper.display(), elapsed = ?started.elapsed(), "sealed copy");
        *slot = Some(file.clone());
        Ok(file)
    }

    /// Runs one helper operation; `stdio` (create only) is mapped to descriptors 3, 4 and 5.
    fn run(
        &self,
        op: &'static str,
        id: &str,
        extra: &[OsString],
        stdio: Option<&Stdio>,
    ) -> Result<Reply, RuntimeError> {
        // Only `create` makes a process that lives in the container; the other operations run the
        // binary as it is and need no sealed copy.
        let sealed = if op == "create" { Some(self.sealed_helper(id, op)?) } else { None };
        let mut command = match &sealed {
            Some(file) => Command::new(format!("/proc/self/fd/{}", file.as_raw_fd())),
            None => Command::new(&self.helper),
        };
        command
            .arg0(&self.helper)
            .arg(HELPER_ARG)
            .arg(op)
            .arg(&self.root)
            .arg(id)
            .args(extra)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        if let Some(stdio) = stdio {
            let fds = [
                stdio.stdin.as_ref().map_or(-1, |f| f.as_raw_fd()),
                stdio.stdout.as_raw_fd(),
                stdio.stderr.as_raw_fd(),
            ];
            // SAFETY: the closure runs between fork and exec and only calls fcntl and dup2, which
            // are async-signal-safe, on a copied array.
            unsafe { command.pre_exec(move || map_fds(fds)) };
        }
        let started = std::time::Instant::now();
        // dup2 in the child fails with EBUSY when the fork caught another thread of ours between
        // reserving a descriptor number and installing the file (open(2) in flight): that slot
        // stays reserved in the child forever. A new fork does not inherit the race.
        let mut output = command.output();
        for _ in 0..4 {
            match &output {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => output = command.output(),
                _ => break,
            }
        }
        let output = output.map_err(|source| RuntimeError::Spawn {
            id: id.to_owned(),
            op,
            program: self.helper.clone(),
            source,
        })?;
        tracing::debug!(op, id, elapsed = ?started.elapsed(), status = %output.status, "helper");
        let text = String::from_utf8_lossy(&output.stdout);
        let protocol = |message: String| RuntimeError::Protocol {
            id: id.to_owned(),
            op,
            program: self.helper.clone(),
            message,
        };
        let line =
            text.lines().rev().find(|l| !l.trim().is_empty()).ok_or_else(|| {
                protocol(format!("no answer ({}); see its stderr", output.status))
            })?;
        let reply: Reply = serde_json::from_str(line)
            .map_err(|e| protocol(format!("{e} in {line:?} ({})", output.status)))?;
        if !reply.ok || !output.status.success() {
            let message = reply.error.unwrap_or_else(|| format!("helper {}", output.status));
            return Err(RuntimeError::Failed { id: id.to_owned(), op, message });
        }
        Ok(reply)
    }
}

/// Moves the stdio descriptors to 3, 4 and 5 in the child. First duplicates all of them above
/// 9, so that a source that already sits at 3-5 is not overwritten by another's `dup2`. `dup2`
/// clears close-on-exec on the targets, so they survive the exec; the duplicates above 9 do not.
fn map_fds(fds: [RawFd; 3]) -> io::Result<()> {
    let mut high = [-1; 3];
    for (slot, &fd) in high.iter_mut().zip(&fds) {
        if fd >= 0 {
            // SAFETY: async-signal-safe syscall on a descriptor the parent keeps open.
            *slot = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 10) };
            if *slot < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    for (target, &fd) in (3..).zip(&high) {
        // SAFETY: as above.
        if fd >= 0 && unsafe { libc::dup2(fd, target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

impl Runtime for Youki {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError> {
        let extra = [bundle.into(), if stdio.stdin.is_some() { "1" } else { "0" }.into()];
        let reply = self.run("create", id, &extra, Some(&stdio))?;
        reply.pid.ok_or_else(|| RuntimeError::Protocol {
            id: id.to_owned(),
            op: "create",
            program: self.helper.clone(),
            message: "no pid in the answer".into(),
        })
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.run("start", id, &[], None).map(drop)
    }

    fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError> {
        self.run("kill", id, &[(signal as i32).to_string().into()], None).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        self.run("delete", id, &[if force { "1" } else { "0" }.into()], None).map(drop)
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        Ok(self.run("state", id, &[], None)?.state)
    }
}
