//! The helper mode of the devenv binary (`devenv __runtime <op> ...`): the only place that calls
//! libcontainer.
//!
//! libcontainer creates a container by cloning the process that calls it, which is unsafe in a
//! multi-threaded process such as the tokio supervisor (youki issues #3011, #3027; runwasi uses a
//! zygote process for the same reason). [`Youki`](super::youki::Youki) therefore runs every
//! operation in a fresh, single-threaded devenv process that `main.rs` dispatches here before
//! anything else (no thread, no clap, no logging set up yet). The protocol:
//!
//! ```text
//! devenv __runtime create <root> <id> <bundle> <stdin: 0|1>   fds 3 (stdin), 4, 5: the stdio
//! devenv __runtime start  <root> <id>
//! devenv __runtime kill   <root> <id> <signal number>
//! devenv __runtime delete <root> <id> <force: 0|1>
//! devenv __runtime state  <root> <id>
//! ```
//!
//! The answer is one JSON line on stdout ([`Reply`]); exit status 0 with `"ok": true`, 1 with
//! `"ok": false` and the error. Logs (`DEVENV_LOG`) go to the helper's stderr, which is the
//! caller's; libcontainer's own logs from inside a new container's init, written after it took
//! the container's stdio, end up in the container's stderr log.

use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus as YoukiStatus};
use libcontainer::signal::Signal as YoukiSignal;
use libcontainer::syscall::syscall::SyscallType;
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow};
use serde::{Deserialize, Serialize};

use super::driver::{ContainerState, ContainerStatus};

/// The first argument that selects the helper mode.
pub const HELPER_ARG: &str = "__runtime";

/// The helper's answer, one JSON line.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<ContainerState>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The helper's `main`: runs one operation and returns the process exit status.
pub fn main() -> i32 {
    let args: Vec<OsString> = std::env::args_os().skip(2).collect();
    if std::env::var_os("DEVENV_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_env("DEVENV_LOG"))
            .with_writer(io::stderr)
            .init();
    }
    // The container's init is a clone of this process and keeps its signal mask and ignored
    // signals across exec: libcontainer resets neither. Rust's runtime ignores SIGPIPE, which a
    // program in the container would then inherit (`yes | head` would not stop), and the caller
    // may have blocked signals. Start the container from a clean slate, as runc does.
    // SAFETY: setting a default disposition installs no handler code.
    unsafe {
        let _ = signal::signal(signal::Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let _ = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);

    let reply = run(&args).unwrap_or_else(|error| Reply { error: Some(error), ..Reply::default() });
    let code = if reply.ok { 0 } else { 1 };
    let line = serde_json::to_string(&reply).unwrap_or_else(|_| r#"{"ok":false}"#.into());
    let mut out = io::stdout().lock();
    if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
        return 2;
    }
    code
}

fn run(args: &[OsString]) -> Result<Reply, String> {
    let arg = |i: usize| args.get(i).ok_or_else(|| format!("missing argument {i} in {args:?}"));
    let op = arg(0)?.to_str().unwrap_or("");
    let root = PathBuf::from(arg(1)?);
    let id = arg(2)?.to_str().ok_or("the container id is not UTF-8")?;
    let flag = |i: usize| arg(i).map(|a| a == "1");
    let ok = Reply { ok: true, ..Reply::default() };
    tracing::debug!(op, id, root = %root.display(), "runtime helper");
    match op {
        "create" => {
            let pid = create(&root, id, Path::new(arg(3)?), flag(4)?)?;
            Ok(Reply { pid: Some(pid), ..ok })
        }
        "start" => load(&root, id)?.start().map(|()| ok).map_err(chain),
        "kill" => {
            let number: i32 = arg(3)?.to_str().and_then(|s| s.parse().ok()).ok_or("bad signal")?;
            kill(&root, id, number).map(|()| ok)
        }
        "delete" => delete(&root, id, flag(3)?).map(|()| ok),
        "state" => Ok(Reply { state: state(&root, id)?, ..ok }),
        _ => Err(format!("unknown runtime helper operation {op:?}")),
    }
}

fn create(root: &Path, id: &str, bundle: &Path, has_stdin: bool) -> Result<i32, String> {
    // CVE-2019-5736: a process in the container could open the runtime's own binary through
    // /proc/<pid>/exe while the init (a clone of this process) is still it, and overwrite it.
    // Run from a sealed, read-only memory copy instead, as youki's binary does. `Youki` already
    // starts the helper from one, so this is a cheap check (an open and an fcntl); a helper run
    // directly from the file re-executes itself here. fds 3-5 are not close-on-exec: they survive.
    pentacle::ensure_sealed().map_err(|e| format!("cannot run from a sealed copy: {e}"))?;

    fs::create_dir_all(root).map_err(|e| format!("create {}: {e}", root.display()))?;
    let existed = root.join(id).exists();
    let stdin = if has_stdin { Some(inherited_fd(3)?) } else { None };
    let mut builder = ContainerBuilder::new(id.to_owned(), SyscallType::Linux)
        .with_root_path(root)
        .map_err(chain)?
        .with_stdout(inherited_fd(4)?)
        .with_stderr(inherited_fd(5)?);
    if let Some(stdin) = stdin {
        builder = builder.with_stdin(stdin);
    }
    let built = builder.validate_id().and_then(|builder| {
        // No systemd: the cgroup is the spec's cgroupsPath under each hierarchy. Detached: this
        // process returns once the init waits for `start`.
        builder.as_init(bundle).with_systemd(false).with_detach(true).build()
    });
    match built {
        Ok(container) => container.pid().map(|p| p.as_raw()).ok_or_else(|| "no init pid".into()),
        Err(err) => {
            let message = chain(err);
            // libcontainer leaves the state directory (and maybe the cgroup) of a failed create;
            // remove them, unless the directory was another container's.
            if !existed {
                if let Err(e) = delete(root, id, true) {
                    tracing::warn!(id, error = e, "cleaning up after a failed create");
                }
            }
            Err(message)
        }
    }
}

/// Takes ownership of a descriptor the caller passed at a fixed number.
fn inherited_fd(fd: i32) -> Result<OwnedFd, String> {
    // SAFETY: F_GETFD only checks that the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(format!("descriptor {fd} was not passed: {}", io::Error::last_os_error()));
    }
    // SAFETY: the descriptor is open and nothing else in this process owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn load(root: &Path, id: &str) -> Result<Container, String> {
    Container::load(root.join(id)).map_err(chain)
}

fn kill(root: &Path, id: &str, number: i32) -> Result<(), String> {
    let mut container = load(root, id)?;
    if container.status() == YoukiStatus::Stopped {
        return Ok(()); // nothing left to signal; racing with an exit is not an error
    }
    let signal = YoukiSignal::try_from(number).map_err(|e| e.to_string())?;
    container.kill(signal, false).map_err(chain)
}

fn delete(root: &Path, id: &str, force: bool) -> Result<(), String> {
    let dir = root.join(id);
    if !dir.exists() {
        return Ok(());
    }
    match Container::load(dir.clone()) {
        Ok(mut container) => container.delete(force).map_err(chain),
        // No readable state: a create that died before writing it. Nothing runs from it.
        Err(err) if force => {
            tracing::warn!(id, error = chain(err), "removing a container without state");
            fs::remove_dir_all(&dir).map_err(|e| format!("remove {}: {e}", dir.display()))
        }
        Err(err) => Err(chain(err)),
    }
}

fn state(root: &Path, id: &str) -> Result<Option<ContainerState>, String> {
    if !root.join(id).join("state.json").exists() {
        return Ok(None);
    }
    let container = load(root, id)?;
    let status = match container.status() {
        YoukiStatus::Creating => ContainerStatus::Creating,
        YoukiStatus::Created => ContainerStatus::Created,
        YoukiStatus::Running => ContainerStatus::Running,
        YoukiStatus::Stopped => ContainerStatus::Stopped,
        YoukiStatus::Paused => ContainerStatus::Paused,
    };
    Ok(Some(ContainerState { status, pid: container.pid().map(|p| p.as_raw()) }))
}

/// An error and its sources on one line: libcontainer's top-level messages alone are terse
/// ("failed to create container").
fn chain(err: impl std::error::Error) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
        source = s.source();
    }
    message
}
