//! devenv-init: the PID 1 of a container with `init: true` (Docker's `--init`, which runs tini).
//!
//! This file is not a module of the crate: `build.rs` compiles it on its own with `rustc` into a
//! static executable (`-C target-feature=+crt-static`), because it must run in any image,
//! including busybox ones that have no C library. So it uses only `std` plus a few `extern "C"`
//! declarations of libc functions that the static std already links.
//!
//! Usage: `/.devenv/init -- PROGRAM [ARGS...]`. It runs PROGRAM as its only direct child, then:
//! - forwards every signal it receives to that child (a program that is PID 1 in its namespace
//!   gets no default signal actions, so busybox `sleep` as PID 1 would ignore SIGTERM; as the
//!   child of this init it dies of it at once);
//! - reaps every zombie reparented to it (orphaned grandchildren, as tini does);
//! - exits with the child's exit status, or 128 + the signal number when a signal killed it (the
//!   shell's and tini's convention), as soon as the child is gone. The kernel then kills whatever
//!   is left in the PID namespace.
//!
//! If PROGRAM cannot be run, the exit status is 127 (not found) or 126 (found but not runnable),
//! as in a shell, with a message on stderr.

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::raw::{c_int, c_ulong};
use std::os::unix::process::CommandExt;
use std::process::{exit, Command};

/// glibc's and musl's `sigset_t`: 1024 bits.
#[repr(C, align(8))]
struct SigSet([u64; 16]);

/// `siginfo_t` is 128 bytes on Linux; only `si_signo`, its first field, is read here.
#[repr(C, align(8))]
struct SigInfo {
    si_signo: c_int,
    _rest: [u8; 124],
}

extern "C" {
    fn sigemptyset(set: *mut SigSet) -> c_int;
    fn sigfillset(set: *mut SigSet) -> c_int;
    fn sigdelset(set: *mut SigSet, signum: c_int) -> c_int;
    fn sigprocmask(how: c_int, set: *const SigSet, old: *mut SigSet) -> c_int;
    fn sigwaitinfo(set: *const SigSet, info: *mut SigInfo) -> c_int;
    fn waitpid(pid: c_int, status: *mut c_int, options: c_int) -> c_int;
    fn kill(pid: c_int, sig: c_int) -> c_int;
    fn prctl(option: c_int, arg2: c_ulong, arg3: c_ulong, arg4: c_ulong, arg5: c_ulong) -> c_int;
}

const SIG_SETMASK: c_int = 2;
const SIGCHLD: c_int = 17;
const WNOHANG: c_int = 1;
const PR_SET_CHILD_SUBREAPER: c_int = 36;
/// Signals that the kernel delivers synchronously for a fault of this process itself (blocking
/// them would turn a crash into a hang) plus the terminal job-control stops: left unblocked, as
/// tini does (`tini.c` `configure_signals`).
const NOT_FORWARDED: [c_int; 9] = [
    4,  // SIGILL
    5,  // SIGTRAP
    6,  // SIGABRT
    7,  // SIGBUS
    8,  // SIGFPE
    11, // SIGSEGV
    31, // SIGSYS
    21, // SIGTTIN
    22, // SIGTTOU
];

fn main() {
    let mut args: Vec<OsString> = std::env::args_os().skip(1).collect();
    if args.first().is_some_and(|a| a == "--") {
        args.remove(0);
    }
    if args.is_empty() {
        eprintln!("devenv-init: usage: init -- PROGRAM [ARGS...]");
        exit(2);
    }

    // Block the signals before the child exists, so none that arrives in between is lost: they
    // stay pending until `sigwaitinfo` takes them. The mask is inherited across fork and exec, so
    // the child empties it again (std's spawn only puts SIGPIPE's disposition back).
    let mut set = SigSet([0; 16]);
    // SAFETY: `set` is a valid, writable sigset_t-sized buffer; the calls only touch it.
    unsafe {
        sigfillset(&mut set);
        for sig in NOT_FORWARDED {
            sigdelset(&mut set, sig);
        }
        if sigprocmask(SIG_SETMASK, &set, std::ptr::null_mut()) != 0 {
            eprintln!("devenv-init: sigprocmask: {}", std::io::Error::last_os_error());
            exit(126);
        }
        // Orphans of the child come to us even when we are not PID 1 of the namespace (a shared
        // PID namespace); harmless when we are.
        prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }

    let mut command = Command::new(&args[0]);
    command.args(&args[1..]);
    // SAFETY: the closure runs between fork and exec and only calls the async-signal-safe
    // sigemptyset and sigprocmask, on its own stack buffer.
    unsafe {
        command.pre_exec(|| {
            let mut empty = SigSet([0; 16]);
            sigemptyset(&mut empty);
            if sigprocmask(SIG_SETMASK, &empty, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child.id() as c_int,
        Err(err) => {
            eprintln!("devenv-init: cannot run {:?}: {err}", args[0]);
            exit(if err.kind() == ErrorKind::NotFound { 127 } else { 126 });
        }
    };

    loop {
        let mut info = SigInfo { si_signo: 0, _rest: [0; 124] };
        // SAFETY: both pointers are valid for the duration of the call.
        let sig = unsafe { sigwaitinfo(&set, &mut info) };
        if sig < 0 {
            continue; // EINTR: a signal we do not block interrupted the wait
        }
        if sig != SIGCHLD {
            // SAFETY: plain syscall; a child that is already gone gives ESRCH, which is fine.
            unsafe { kill(child, sig) };
            continue;
        }
        if let Some(code) = reap(child) {
            exit(code);
        }
    }
}

/// Reaps every exited child (one SIGCHLD can stand for several); returns the exit code to use
/// once `child` is among them.
fn reap(child: c_int) -> Option<i32> {
    let mut result = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid out-pointer.
        let pid = unsafe { waitpid(-1, &mut status, WNOHANG) };
        if pid <= 0 {
            return result; // 0: children left but none exited; -1: ECHILD, none left
        }
        if pid == child {
            let signal = status & 0x7f;
            result = Some(if signal == 0 { (status >> 8) & 0xff } else { 128 + signal });
        }
    }
}
