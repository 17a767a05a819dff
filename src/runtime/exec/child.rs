//! The two forked processes of an exec, and what they do before the command runs.
//!
//! - The *joiner* (forked from the caller) moves itself into the container's cgroups, `setns`
//!   into each of its namespaces and `chroot`s into its root. `setns(CLONE_NEWPID)` only places
//!   the joiner's future children in the namespace (setns(2)), so it then forks:
//! - the *command* process, which really is in the container's pid namespace, takes its stdio
//!   (a pty or the caller's), drops capabilities to the container's bounding set, becomes the
//!   user, changes to the working directory and `execve`s the command.
//!
//! The joiner waits for the command and exits with its status (128 + signal if killed),
//! forwarding SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 to it; it is killed with SIGTERM (and so
//! forwards it) if the caller dies first. Until `execve` both are non-dumpable, so that the
//! container cannot reach the devenv binary through `/proc/<pid>/exe` (CVE-2019-5736). Both
//! come from single-threaded parents, so they may allocate. A failure before `execve` is written to the error pipe as
//! `step NUL errno` and the process exits; the caller turns it into [`ExecError::Setup`]. The
//! pipe is close-on-exec, so a successful `execve` closes it: an empty read means the command
//! started. A command that cannot be found or run is not a setup failure but the command's own
//! result, as in Docker: a message on its stderr and status 127 or 126.
//!
//! [`ExecError::Setup`]: super::ExecError::Setup

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sys::signal::{self, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{ForkResult, Gid, Pid, Uid};

use super::target::Target;
use super::user::Identity;

/// Everything the command process needs, prepared (and validated) in the caller.
pub(super) struct Plan {
    pub argv: Vec<CString>,
    pub env: Vec<CString>,
    /// The directories of the command's `PATH`, to find `argv[0]` in.
    pub path: Vec<Vec<u8>>,
    pub workdir: Option<CString>,
    pub ident: Identity,
    pub joins_userns: bool,
}

/// Where the command's stdio comes from.
pub(super) enum Stdio<'a> {
    /// The pty's slave side: a new session with it as the controlling terminal.
    Pty(BorrowedFd<'a>),
    /// The caller's stdout and stderr; stdin too, or `/dev/null` if given.
    Inherit(Option<BorrowedFd<'a>>),
}

/// Writes a setup failure to the error pipe and exits the forked process.
fn fail(err: &OwnedFd, step: &str, e: io::Error) -> ! {
    let msg = format!("{step}\0{}", e.raw_os_error().unwrap_or(0));
    let _ = nix::unistd::write(err, msg.as_bytes());
    // SAFETY: _exit skips atexit handlers and destructors that belong to the caller's process.
    unsafe { libc::_exit(1) }
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// The joiner: cgroups, namespaces, root, then the command process. Never returns.
pub(super) fn joiner(t: &Target, plan: &Plan, stdio: Stdio<'_>, err: OwnedFd) -> ! {
    // Not dumpable, so that the container's processes cannot open /proc/<pid>/exe (the devenv
    // binary) or /proc/<pid>/fd of the command process while it still runs our code inside the
    // container's pid namespace (CVE-2019-5736; runc does the same). execve makes the command
    // dumpable again.
    if let Err(e) = nix::sys::prctl::set_dumpable(false) {
        fail(&err, "make the exec process non-dumpable", nix_io(e));
    }
    let parent = nix::unistd::getppid();
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    if nix::unistd::getppid() != parent {
        // SAFETY: see `fail`.
        unsafe { libc::_exit(1) } // the caller is already gone
    }
    let me = std::process::id().to_string();
    for procs in &t.cgroup_procs {
        if let Err(e) = std::fs::write(procs, &me) {
            fail(&err, &format!("join the container's cgroup ({})", procs.display()), e);
        }
    }
    for ns in &t.namespaces {
        if let Err(e) = nix::sched::setns(ns.fd.as_fd(), ns.flag) {
            fail(&err, &format!("join the container's {} namespace", ns.name), nix_io(e));
        }
    }
    // After setns(mnt) our root is the namespace's root; the container's own root (a pivot_root
    // or chroot within it) is the directory opened before, as nsenter --root does.
    if let Err(e) = nix::unistd::fchdir(t.root.as_raw_fd()).and_then(|()| nix::unistd::chroot("."))
    {
        fail(&err, "enter the container's root directory", nix_io(e));
    }

    // SAFETY: this process is single-threaded (a fork of a single-threaded caller).
    match unsafe { nix::unistd::fork() } {
        Err(e) => fail(&err, "fork in the container's pid namespace", nix_io(e)),
        Ok(ForkResult::Child) => command(t, plan, stdio, &err),
        Ok(ForkResult::Parent { child }) => {
            drop(err);
            forward_signals_to(child);
            // SAFETY: see `fail`.
            unsafe { libc::_exit(wait_status(child)) }
        }
    }
}

/// Waits for `child` and returns its status the way a shell shows it: the exit code, or 128 plus
/// the number of the signal that killed it.
pub(super) fn wait_status(child: Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(_) => return 255,
        }
    }
}

static FORWARD_TO: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward(sig: libc::c_int) {
    let pid = FORWARD_TO.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe { libc::kill(pid, sig) };
    }
}

/// The terminal's SIGINT/SIGQUIT already reach the command (same process group, or its own
/// terminal), so the joiner ignores them; signals sent to the joiner itself are passed on.
fn forward_signals_to(child: Pid) {
    FORWARD_TO.store(child.as_raw(), Ordering::Relaxed);
    let fwd = SigAction::new(SigHandler::Handler(forward), SaFlags::SA_RESTART, SigSet::empty());
    let ign = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGTERM, Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2] {
        // SAFETY: the handler only calls kill(2).
        let _ = unsafe { signal::sigaction(sig, &fwd) };
    }
    for sig in [Signal::SIGINT, Signal::SIGQUIT] {
        // SAFETY: ignoring needs no handler.
        let _ = unsafe { signal::sigaction(sig, &ign) };
    }
    let _ = signal::sigprocmask(signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// The command process: stdio, capabilities, user, working directory, `execve`.
fn command(t: &Target, plan: &Plan, stdio: Stdio<'_>, err: &OwnedFd) -> ! {
    reset_signals();
    if let Err(e) = set_stdio(stdio) {
        fail(err, "set up the command's stdio", e);
    }
    if let Err(e) = super::caps::restrict(t.cap_bnd, t.cap_inh, t.no_new_privs) {
        fail(err, "drop capabilities to the container's bounding set", e);
    }
    // The working directory first, as root: the user may lack search permission on the way.
    let cwd = match &plan.workdir {
        Some(dir) => nix::unistd::chdir(dir.as_c_str()).map_err(nix_io),
        None => nix::unistd::fchdir(t.cwd.as_raw_fd()).map_err(nix_io),
    };
    if let Err(e) = cwd {
        let dir = plan.workdir.as_deref().map_or("(the container's)".into(), CStr::to_string_lossy);
        fail(err, &format!("change to working directory {dir}"), e);
    }
    if plan.workdir.is_none() && !cwd_is_inside_root() {
        // The init's cwd is not under its root (it chdir'd out before a chroot): never start
        // the command outside the container's root.
        let _ = nix::unistd::chdir("/");
    }
    if let Err(e) = set_user(&plan.ident, plan.joins_userns) {
        fail(err, &format!("switch to uid {} gid {}", plan.ident.uid, plan.ident.gid), e);
    }
    close_inherited_fds();
    exec_command(plan)
}

fn reset_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: restoring default dispositions (Rust ignores SIGPIPE; the caller may ignore
            // SIGINT while it waits), which exec would otherwise keep.
            let _ = unsafe { signal::sigaction(sig, &dfl) };
        }
    }
    let _ = signal::sigprocmask(signal::SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

fn set_stdio(stdio: Stdio<'_>) -> io::Result<()> {
    match stdio {
        Stdio::Pty(slave) => {
            nix::unistd::setsid().map_err(nix_io)?;
            // SAFETY: TIOCSCTTY takes an int argument; 0 = do not steal from another session.
            if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } < 0 {
                return Err(io::Error::last_os_error());
            }
            for fd in 0..3 {
                nix::unistd::dup2(slave.as_raw_fd(), fd).map_err(nix_io)?;
            }
        }
        Stdio::Inherit(Some(null)) => {
            nix::unistd::dup2(null.as_raw_fd(), 0).map_err(nix_io)?;
        }
        Stdio::Inherit(None) => {}
    }
    Ok(())
}

/// `getcwd` reports a directory outside the root as unreachable (glibc: `ENOENT`).
fn cwd_is_inside_root() -> bool {
    std::env::current_dir().is_ok_and(|p| p.as_os_str().as_bytes().starts_with(b"/"))
}

fn set_user(id: &Identity, joins_userns: bool) -> io::Result<()> {
    let groups: Vec<Gid> = id.groups.iter().map(|&g| Gid::from_raw(g)).collect();
    match nix::unistd::setgroups(&groups) {
        // A user namespace whose setgroups is "deny" (unprivileged mappings) keeps its groups.
        Err(nix::Error::EPERM) if joins_userns => {}
        r => r.map_err(nix_io)?,
    }
    nix::unistd::setgid(Gid::from_raw(id.gid)).map_err(nix_io)?;
    nix::unistd::setuid(Uid::from_raw(id.uid)).map_err(nix_io)
}

/// Marks every descriptor above stderr close-on-exec, so that none of the caller's (or the
/// host's directories: root, cwd, namespaces) reaches the command (the leak behind
/// CVE-2024-21626).
fn close_inherited_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let r =
        unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r != 0 {
        // Kernels before 5.11: do it one by one for every descriptor we have.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> =
                dir.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect();
            for fd in fds.into_iter().filter(|&fd| fd > 2) {
                // SAFETY: setting FD_CLOEXEC on a descriptor number; EBADF is harmless.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
}

/// Finds `argv[0]` like Go's `exec.LookPath` (what runc uses): a name with a slash is taken as
/// it is, others are searched in the command's `PATH` for a non-directory with an execute bit.
/// Then `execve`; on failure, Docker's message and status: 127 when there is nothing to run, 126
/// when it cannot be run.
fn exec_command(plan: &Plan) -> ! {
    let name = plan.argv[0].as_bytes();
    let found = if name.contains(&b'/') {
        Some(plan.argv[0].clone())
    } else {
        plan.path.iter().find_map(|dir| {
            let mut p = if dir.is_empty() { b".".to_vec() } else { dir.clone() };
            p.push(b'/');
            p.extend_from_slice(name);
            let md = std::fs::metadata(std::ffi::OsStr::from_bytes(&p)).ok()?;
            let runnable = !md.is_dir()
                && std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o111 != 0;
            runnable.then(|| CString::new(p).expect("no NUL"))
        })
    };
    let shown = String::from_utf8_lossy(name);
    let Some(path) = found else {
        die(127, &format!("exec: \"{shown}\": executable file not found in $PATH"));
    };
    let e = nix::unistd::execve(&path, &plan.argv, &plan.env).unwrap_err();
    let code = if e == nix::Error::ENOENT { 127 } else { 126 };
    die(code, &format!("exec: \"{shown}\": {}", e.desc().to_lowercase()))
}

/// Writes `msg` to the command's stderr with write(2) itself: std's stderr lock may have been
/// held by another thread of the caller's parent when it forked.
fn die(code: i32, msg: &str) -> ! {
    let line = format!("{msg}\n");
    let _ = nix::unistd::write(std::io::stderr(), line.as_bytes());
    // SAFETY: see `fail`.
    unsafe { libc::_exit(code) }
}
