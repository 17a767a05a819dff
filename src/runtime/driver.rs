//! The runtime driver interface, shared by [`Youki`](super::youki::Youki) (libcontainer, through
//! the re-executed helper) and [`Runc`](super::runc::Runc) (Debian's `runc` binary): the
//! [`Runtime`] trait, its types and errors, the bundle ([`write_bundle`], the cgroup path), and
//! what a supervisor needs to learn of a container's exit ([`set_child_subreaper`],
//! [`wait_exit`]).
//!
//! # Who is the container init's parent
//!
//! Both runtimes create the container's init from a short-lived process (the helper, `runc
//! create`) that exits once the container is created. The init is then an orphan, and the kernel
//! gives it to the nearest ancestor that is a *child subreaper*, else to the host's PID 1. So the
//! supervisor calls [`set_child_subreaper`] once, before creating containers: every container
//! init becomes its child, [`wait_exit`] (or `waitid` on a pidfd) gives the exit status, and only
//! the supervisor can reap it. Without it the host's init reaps the container and its exit status
//! is lost. (libcontainer's `as_sibling` would make the init a direct child of the supervisor,
//! but it leaves the runtime's intermediate process as an unreaped zombie of the supervisor, and
//! runc has no such mode; the subreaper works the same for both.)
//!
//! # A program that cannot run
//!
//! With `init` (the default) the init starts first and runs the program itself: a missing
//! program makes the container exit with status 127 (126 if it is not executable), with
//! `devenv-init: cannot run "name": No such file or directory` in its stderr log, like a shell.
//! Without `init`, both runtimes look the program up before `create` returns, and `create` fails
//! with [`RuntimeError::Failed`] naming it (`executable 'name' not found in $PATH`); the failed
//! create leaves no state, cgroup or process behind.
//!
//! A subreaper also inherits other orphans among its descendants; they are rare (nothing but the
//! container inits outlive the helpers here), but a supervisor that wants no zombie at all reaps
//! pids it does not know with `waitid(P_ALL, WNOWAIT)` + `waitpid(pid)`.

use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::resource::{getrlimit, Resource};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use oci_spec::runtime::{PosixRlimitBuilder, PosixRlimitType, Spec};
use serde::{Deserialize, Serialize};

pub use nix::sys::signal::Signal;

/// Drives an OCI runtime. Every method blocks (it runs a helper process or the runtime binary):
/// call it from `tokio::task::spawn_blocking`, never on an async worker.
pub trait Runtime: Send + Sync {
    /// Creates the container from `bundle/config.json` with the given stdio: its init process
    /// exists, in its namespaces and cgroup, but does not run user code until [`Runtime::start`].
    /// Returns the init's pid on the host. Between the two, the network namespace is at
    /// `/proc/<pid>/ns/net` (see [`super::netns::loopback_up`]).
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError>;
    /// Runs the user program of a created container.
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends `signal` to the container's init process (not to all its processes). A container
    /// whose init has already exited is not an error.
    fn kill(&self, id: &str, signal: Signal) -> Result<(), RuntimeError>;
    /// Deletes the container: its state directory and its cgroup. A running container needs
    /// `force` (which kills it first). A container that does not exist is not an error.
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
    /// The container's status and init pid, `None` if the runtime does not know it.
    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError>;
}

/// The container's standard streams. They are passed as they are (no relay): files opened with
/// `O_APPEND` for the log, pipes, or `/dev/null`. Without `stdin`, the container reads
/// `/dev/null`.
#[derive(Debug)]
pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What a runtime knows of a container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub status: ContainerStatus,
    /// The init's pid on the host; `None` once the runtime has forgotten it (stopped).
    pub pid: Option<i32>,
}

/// The OCI runtime spec's container statuses, named as `runc state` prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerStatus {
    Creating,
    Created,
    Running,
    Stopped,
    Paused,
}

/// Why a runtime operation failed. Each error names the container or path and the operation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime ran and refused or failed the operation; `message` is its own explanation.
    #[error("container {id}: {op} failed: {message}")]
    Failed { id: String, op: &'static str, message: String },
    /// The helper or the runtime binary could not be started.
    #[error("container {id}: {op}: cannot run {program}: {source}")]
    Spawn {
        id: String,
        op: &'static str,
        program: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The helper or the runtime binary answered something that is not its protocol.
    #[error("container {id}: {op}: unexpected answer from {program}: {message}")]
    Protocol { id: String, op: &'static str, program: PathBuf, message: String },
    /// A file system or kernel call on a path failed.
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The kernel has no overlayfs, so no container root file system can be made.
    #[error(
        "cannot mount the root file system at {target}: overlayfs is not available on this \
         kernel ('overlay' is not in /proc/filesystems; load it with `modprobe overlay`, or use \
         a kernel built with CONFIG_OVERLAY_FS)"
    )]
    OverlayUnavailable { target: PathBuf },
    /// A path that the kernel interface cannot take (for example a `:` in an overlay layer).
    #[error("{path}: {reason}")]
    InvalidPath { path: PathBuf, reason: &'static str },
}

impl RuntimeError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        RuntimeError::Io { op, path: path.into(), source }
    }
}

/// The cgroup of a project's container, relative to each hierarchy's root (`linux.cgroupsPath`):
/// `/devenv/<project>/<id>`, so that everything devenv runs is under one tree and a project's
/// containers are grouped. `project` and `id` are names without `/` (validated by the config).
pub fn cgroups_path(project: &str, id: &str) -> String {
    format!("/devenv/{project}/{id}")
}

/// Sets the spec's cgroup to `cgroups_path`, fits its rlimits to what this process may grant
/// ([`fit_rlimits`]), and writes it to `bundle/config.json` (atomically: a runtime never reads
/// half a spec). Returns the file's path.
pub fn write_bundle(
    bundle: &Path,
    spec: &mut Spec,
    cgroups_path: &str,
) -> Result<PathBuf, RuntimeError> {
    if let Some(linux) = spec.linux_mut() {
        linux.set_cgroups_path(Some(PathBuf::from(cgroups_path)));
    }
    fit_rlimits(spec);
    let path = bundle.join("config.json");
    let tmp = bundle.join(".config.json.tmp");
    let json = serde_json::to_vec_pretty(spec)
        .map_err(|e| RuntimeError::io("serialize the spec for", &path, e.into()))?;
    let write = || -> io::Result<()> {
        fs::create_dir_all(bundle)?;
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&json)?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| RuntimeError::io("write", &path, e))?;
    tracing::debug!(path = %path.display(), cgroups_path, "wrote the bundle's config.json");
    Ok(path)
}

/// Lowers the spec's hard rlimits to this process's own when it lacks `CAP_SYS_RESOURCE`.
///
/// The runtime sets the container's rlimits from its own process, which inherits this one's
/// limits and capabilities; raising a hard limit needs `CAP_SYS_RESOURCE`, and without it both
/// runc and libcontainer fail the whole create with EPERM ("error setting rlimit type 7"). Such a
/// host (a sandbox, a container running devenv) gets the highest limits it can give instead, as
/// a program started from the same shell would.
pub fn fit_rlimits(spec: &mut Spec) {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let effective = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    if effective & (1 << CAP_SYS_RESOURCE) != 0 {
        return;
    }
    let Some(process) = spec.process_mut().as_mut() else { return };
    let Some(mut rlimits) = process.rlimits().clone() else { return };
    for rlimit in &mut rlimits {
        let Some(resource) = resource_of(rlimit.typ()) else { continue };
        let Ok((_, own_hard)) = getrlimit(resource) else { continue };
        if rlimit.hard() > own_hard {
            tracing::debug!(?resource, from = rlimit.hard(), to = own_hard, "lowering rlimit");
            let fitted = PosixRlimitBuilder::default()
                .typ(rlimit.typ())
                .hard(own_hard)
                .soft(rlimit.soft().min(own_hard))
                .build();
            if let Ok(fitted) = fitted {
                *rlimit = fitted;
            }
        }
    }
    process.set_rlimits(Some(rlimits));
}

/// The kernel's resource for an rlimit of the spec (every kind a service's `ulimits` can set).
fn resource_of(typ: PosixRlimitType) -> Option<Resource> {
    use PosixRlimitType::*;
    Some(match typ {
        RlimitCpu => Resource::RLIMIT_CPU,
        RlimitFsize => Resource::RLIMIT_FSIZE,
        RlimitData => Resource::RLIMIT_DATA,
        RlimitStack => Resource::RLIMIT_STACK,
        RlimitCore => Resource::RLIMIT_CORE,
        RlimitRss => Resource::RLIMIT_RSS,
        RlimitNproc => Resource::RLIMIT_NPROC,
        RlimitNofile => Resource::RLIMIT_NOFILE,
        RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        RlimitAs => Resource::RLIMIT_AS,
        RlimitLocks => Resource::RLIMIT_LOCKS,
        RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitNice => Resource::RLIMIT_NICE,
        RlimitRtprio => Resource::RLIMIT_RTPRIO,
        RlimitRttime => Resource::RLIMIT_RTTIME,
        #[allow(unreachable_patterns)]
        _ => return None,
    })
}

/// Removes the project's cgroup directories (`devenv/<project>` in every hierarchy) once its
/// containers are deleted: the runtimes remove each container's own cgroup, not the parents they
/// created. Call it after the last container of the project is gone (`down`); a directory that
/// still has children is left in place and reported.
pub fn remove_project_cgroups(project: &str) -> Result<(), RuntimeError> {
    let root = Path::new("/sys/fs/cgroup");
    // Unified (v2): one tree at the root. Legacy and hybrid (v1): one tree per subdirectory
    // (`memory`, `pids`, ..., and `unified` for hybrid's v2 tree).
    let mut trees = vec![root.to_path_buf()];
    if let Ok(entries) = fs::read_dir(root) {
        trees.extend(entries.flatten().map(|e| e.path()));
    }
    let mut first_error = None;
    for tree in trees {
        let dir = tree.join("devenv").join(project);
        match fs::remove_dir(&dir) {
            Ok(()) => tracing::debug!(dir = %dir.display(), "removed the project's cgroup"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // ENOTDIR: `tree` is a file of the v2 root (cgroup.procs...), not a hierarchy.
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => {
                first_error.get_or_insert(RuntimeError::io("remove the cgroup", dir, e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Makes the calling process a child subreaper (`PR_SET_CHILD_SUBREAPER`): orphans among its
/// descendants, container inits included, become its children. Process-wide; call it once,
/// before the first container is created.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for the child `pid` (a container init, once [`set_child_subreaper`] made it ours) to
/// exit and reaps it. Returns its exit code, or 128 + the signal number when a signal killed it.
pub fn wait_exit(pid: i32) -> io::Result<i32> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return Ok(code);
                }
            }
        }
    }
}

/// [`wait_exit`] without blocking: `None` while the child runs.
pub fn try_wait_exit(pid: i32) -> io::Result<Option<i32>> {
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
        Ok(status) => Ok(exit_code(status)),
        Err(e) => Err(e.into()),
    }
}

fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 3)), Some(3));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGTERM, false)), Some(143));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn statuses_read_as_runc_prints_them() {
        let state: ContainerState =
            serde_json::from_str(r#"{"status":"created","pid":42}"#).expect("parse");
        assert_eq!(state, ContainerState { status: ContainerStatus::Created, pid: Some(42) });
        assert_eq!(cgroups_path("web", "web-1"), "/devenv/web/web-1");
    }
}
