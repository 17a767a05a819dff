//! `devenv exec`: running a command inside a running container, as `docker exec` does.
//!
//! A container is named by the host pid of its init (from the saved state); no supervisor or
//! runtime is involved. [`exec`] reads what the command must share from `/proc/<pid>`
//! ([`target`]), resolves the user in the container's own files ([`user`]), then forks a
//! process that joins the container's cgroups, namespaces and root and forks the command in its
//! pid namespace ([`child`]), with the container's capabilities ([`caps`]). With `-t` the
//! command gets a pty whose other end is relayed to the caller's terminal ([`tty`]); otherwise it
//! inherits the caller's stdio.
//!
//! # The caller must be single-threaded
//! The namespaces are joined in forked processes, never in the caller: `setns(CLONE_NEWNS)` is
//! refused to a multi-threaded process, and `setns(CLONE_NEWPID)` only applies to children
//! (setns(2)). Those forked processes run ordinary Rust code (allocation, formatting, std::fs),
//! which is only safe after `fork` if no other thread could have held a lock at that moment. So
//! the caller must have a single thread: the CLI calls [`exec`] before starting any (no tokio
//! runtime). [`exec`] counts the entries of `/proc/self/task` and refuses with
//! [`ExecError::MultiThreaded`] otherwise. While the command runs, [`exec`] also changes the
//! caller's signal handling and, with `-t`, its terminal mode; both are restored on return.

mod caps;
mod child;
mod target;
mod tty;
mod user;

use std::ffi::CString;
use std::io::{self, Read};
use std::os::fd::AsFd;

use nix::fcntl::OFlag;
use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::{ForkResult, Pid};

use child::{Plan, Stdio};
use target::Target;

/// What to run, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExecOptions {
    /// The command and its arguments; `argv[0]` is looked up in the command's `PATH`.
    pub argv: Vec<String>,
    /// Added over the container's environment (that of its init, `/proc/<pid>/environ`).
    pub env: Vec<(String, String)>,
    /// `name`, `uid`, `name:group` or `uid:gid`, resolved in the container's /etc/passwd and
    /// /etc/group; `None` runs as the container's init does.
    pub user: Option<String>,
    /// Working directory inside the container; `None` is the init's.
    pub workdir: Option<String>,
    /// Give the command a pty, relayed to the caller's stdin and stdout (`-t`).
    pub tty: bool,
    /// Pass the caller's stdin to the command (`-i`); otherwise it reads `/dev/null`.
    pub interactive: bool,
}

/// Why a command could not be started. A command that starts and fails, or that does not exist
/// in the container (127) or cannot be executed (126), is an `Ok` exit status instead, as with
/// `docker exec`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(
        "exec must be called from a single-threaded process, but this one has {0} threads \
         (it forks, and joins a mount namespace)"
    )]
    MultiThreaded(usize),
    #[error("no command given")]
    NoCommand,
    #[error("{0:?} contains a NUL byte")]
    Nul(String),
    #[error("invalid environment variable name {0:?}")]
    InvalidEnv(String),
    #[error("container process {pid} is not running")]
    NotRunning { pid: i32 },
    #[error("cannot read /proc/{pid}/{what} of the container: {source}")]
    Inspect { pid: i32, what: String, source: io::Error },
    #[error("cannot read {path} in the container: {source}")]
    ReadContainerFile { path: String, source: io::Error },
    #[error("invalid user {0:?}: expected user, user:group, uid or uid:gid")]
    InvalidUser(String),
    #[error("user {0:?} is not in the container's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the container's /etc/group")]
    UnknownGroup(String),
    #[error("id {0} of the container's init is not mapped in its user namespace")]
    UnmappedId(u32),
    /// A step in the forked process, before the command started.
    #[error("cannot {step}: {source}")]
    Setup { step: String, source: io::Error },
    /// A step in the calling process (fork, pty, terminal).
    #[error("cannot {what}: {source}")]
    Io { what: &'static str, source: io::Error },
}

/// The first argument that makes the binary run one exec on behalf of a multi-threaded caller
/// (the supervisor, for `sync+exec` watch rules): `devenv __exec PID OPTIONS-JSON`.
pub const HELPER_ARG: &str = "__exec";

/// The `__exec` mode: runs the command the arguments describe and exits with its status (125
/// when it could not be started, with the reason on stderr). The process is single-threaded:
/// `main` calls this before anything else.
pub fn helper_main() -> i32 {
    let args: Vec<String> = std::env::args().skip(2).collect();
    let parsed = match args.as_slice() {
        [pid, json] => pid.parse::<i32>().ok().zip(serde_json::from_str::<ExecOptions>(json).ok()),
        _ => None,
    };
    let Some((pid, opts)) = parsed else {
        eprintln!("usage: devenv {HELPER_ARG} PID OPTIONS-JSON (internal)");
        return 125;
    };
    match exec(pid, &opts) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("devenv: exec: {e}");
            125
        }
    }
}

/// Runs `opts` in the container (init pid `pid`) from a new process of this binary, so a
/// caller with threads can exec too; the command's output goes to `output`. Returns its exit
/// status (125: it could not be started, and why is in `output`).
pub fn exec_from_threads(pid: i32, opts: &ExecOptions, output: std::fs::File) -> io::Result<i32> {
    let json = serde_json::to_string(opts).expect("options serialize");
    let status = std::process::Command::new("/proc/self/exe")
        .arg(HELPER_ARG)
        .arg(pid.to_string())
        .arg(json)
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        .status()?;
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `opts.argv` in the container whose init has host pid `pid` and returns its exit status
/// (128 + signal number if a signal killed it).
///
/// The caller must be single-threaded (see the module documentation). While the command runs,
/// the calling process ignores SIGINT and SIGQUIT (without `-t`: the terminal sends them to the
/// command as well, as `system(3)` does); with `-t` it puts its terminal in raw mode, restored
/// before returning, and passes SIGWINCH, SIGTERM and SIGHUP on.
pub fn exec(pid: i32, opts: &ExecOptions) -> Result<i32, ExecError> {
    let threads = std::fs::read_dir("/proc/self/task").map(Iterator::count).unwrap_or(0);
    if threads != 1 {
        return Err(ExecError::MultiThreaded(threads));
    }
    if opts.argv.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let target = Target::inspect(pid)?;
    let ident = user::identity(&target, opts.user.as_deref())?;
    let plan = plan(&target, ident, opts)?;
    if opts.tty {
        tty::run(&target, &plan, opts.interactive)
    } else {
        run_plain(&target, &plan, opts.interactive)
    }
}

/// The command's argv, environment and directories, checked before anything is forked.
fn plan(t: &Target, ident: user::Identity, opts: &ExecOptions) -> Result<Plan, ExecError> {
    let c = |s: &[u8]| {
        CString::new(s).map_err(|_| ExecError::Nul(String::from_utf8_lossy(s).into_owned()))
    };
    // The container's environment, then ours over it. A user chosen with -u gets its own HOME
    // (the init's would be another user's); so does a process whose environment has none.
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = t
        .env
        .iter()
        .filter_map(|e| {
            let i = e.iter().position(|&b| b == b'=')?;
            Some((e[..i].to_vec(), e[i + 1..].to_vec()))
        })
        .collect();
    let mut set = |k: &[u8], v: &[u8], replace: bool| match env.iter_mut().find(|(key, _)| key == k)
    {
        Some(entry) if replace => entry.1 = v.to_vec(),
        Some(_) => {}
        None => env.push((k.to_vec(), v.to_vec())),
    };
    let home = ident.home.clone().unwrap_or_else(|| "/".to_owned());
    set(b"HOME", home.as_bytes(), opts.user.is_some());
    set(b"PATH", DEFAULT_PATH.as_bytes(), false);
    if opts.tty {
        set(b"TERM", b"xterm", false);
    }
    for (k, v) in &opts.env {
        if k.is_empty() || k.contains('=') {
            return Err(ExecError::InvalidEnv(k.clone()));
        }
        set(k.as_bytes(), v.as_bytes(), true);
    }
    let path = env.iter().find(|(k, _)| k == b"PATH").map(|(_, v)| v.clone()).unwrap_or_default();
    let env = env
        .iter()
        .map(|(k, v)| c(&[&k[..], b"=", &v[..]].concat()))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Plan {
        argv: opts.argv.iter().map(|a| c(a.as_bytes())).collect::<Result<_, _>>()?,
        env,
        path: path.split(|&b| b == b':').map(<[u8]>::to_vec).collect(),
        workdir: opts.workdir.as_deref().map(|w| c(w.as_bytes())).transpose()?,
        ident,
        joins_userns: t.joins_userns(),
    })
}

/// Without a pty: the command shares the caller's stdout and stderr (and stdin with `-i`).
fn run_plain(t: &Target, plan: &Plan, interactive: bool) -> Result<i32, ExecError> {
    let null = if interactive {
        None
    } else {
        let fd = crate::runtime::cp::resolve::Side::Host
            .open(b"/dev/null", OFlag::O_RDONLY)
            .map_err(|source| ExecError::Io { what: "open /dev/null", source })?;
        Some(fd)
    };
    let _ignored = IgnoreInterrupts::new();
    let joiner = spawn(t, plan, Stdio::Inherit(null.as_ref().map(AsFd::as_fd)))?;
    Ok(child::wait_status(joiner))
}

/// Forks the joiner and waits until the command has started (or setup failed): the error pipe
/// reads empty once the command's `execve` has closed it.
fn spawn(t: &Target, plan: &Plan, stdio: Stdio<'_>) -> Result<Pid, ExecError> {
    let (err_r, err_w) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(caller_io("create a pipe"))?;
    // SAFETY: the caller is single-threaded (checked in `exec`), so the child may run any code.
    match unsafe { nix::unistd::fork() }.map_err(caller_io("fork"))? {
        ForkResult::Child => {
            drop(err_r);
            child::joiner(t, plan, stdio, err_w)
        }
        ForkResult::Parent { child } => {
            drop(err_w);
            let mut report = Vec::new();
            let read = std::fs::File::from(err_r).read_to_end(&mut report);
            if report.is_empty() {
                read.map_err(|source| ExecError::Io { what: "read the error pipe", source })?;
                return Ok(child);
            }
            let _ = child::wait_status(child);
            Err(parse_report(&report))
        }
    }
}

/// `step NUL errno`, as the children write it.
fn parse_report(report: &[u8]) -> ExecError {
    let text = String::from_utf8_lossy(report);
    let (step, errno) = text.split_once('\0').unwrap_or((&text, "0"));
    let errno = errno.trim().parse().unwrap_or(0);
    let source =
        if errno == 0 { io::Error::other("failed") } else { io::Error::from_raw_os_error(errno) };
    ExecError::Setup { step: step.to_owned(), source }
}

/// Ignores SIGINT and SIGQUIT until dropped, then restores what was there.
struct IgnoreInterrupts(Vec<(Signal, SigAction)>);

impl IgnoreInterrupts {
    fn new() -> Self {
        let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
        let saved = [Signal::SIGINT, Signal::SIGQUIT]
            .into_iter()
            // SAFETY: installing SIG_IGN runs no code.
            .filter_map(|sig| unsafe { signal::sigaction(sig, &ign) }.ok().map(|old| (sig, old)))
            .collect();
        IgnoreInterrupts(saved)
    }
}

impl Drop for IgnoreInterrupts {
    fn drop(&mut self) {
        for (sig, old) in &self.0 {
            // SAFETY: restores the disposition that was installed before.
            let _ = unsafe { signal::sigaction(*sig, old) };
        }
    }
}

/// Maps a failed call in the calling process to [`ExecError::Io`].
fn caller_io(what: &'static str) -> impl Fn(nix::Error) -> ExecError {
    move |e| ExecError::Io { what, source: io::Error::from(e) }
}
