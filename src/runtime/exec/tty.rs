//! `-t`: the command gets a new pty as its controlling terminal, and the caller relays between
//! that pty and its own stdin/stdout, like `docker exec -it`.
//!
//! The caller's terminal goes into raw mode (only with `-i` and when stdin is a terminal), so
//! that keys reach the command untouched and the pty's own line discipline does the echoing,
//! line editing and Ctrl-C; it is restored when [`run`] returns, on errors too (a guard).
//!
//! The relay is a plain `poll` loop, no async runtime: the pty master, stdin, and a signalfd for
//! SIGCHLD (the joiner exited), SIGWINCH (copy the terminal's size to the pty, whose line
//! discipline then signals the command) and SIGTERM/SIGHUP (passed on to the joiner, which
//! passes them to the command). Those signals are blocked while the loop runs so that none is
//! lost between two polls; the forked processes unblock them. Input to the command is buffered
//! and written when the master is writable, so a command that does not read cannot stall its
//! output.
//!
//! The pty is the caller's (host devpts), not allocated in the container's /dev/pts: the
//! command works with it, but `tty` inside prints a name the container does not have.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{self, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::child::{wait_status, Plan, Stdio};
use super::target::Target;
use super::{caller_io, spawn, ExecError};

/// Input buffered for the command beyond which stdin is no longer read.
const MAX_PENDING: usize = 64 * 1024;

pub(super) fn run(t: &Target, plan: &Plan, interactive: bool) -> Result<i32, ExecError> {
    // The size of whichever of stdin or stdout is a terminal, for the pty's initial size.
    // SAFETY: isatty only inspects the descriptor.
    let term = [0, 1].into_iter().find(|&fd| unsafe { libc::isatty(fd) } == 1);
    let size = term.and_then(window_size);
    let pty = nix::pty::openpty(size.as_ref(), None).map_err(caller_io("allocate a pty"))?;
    for fd in [&pty.master, &pty.slave] {
        fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))
            .map_err(caller_io("set up the pty"))?;
    }

    let mut mask = SigSet::empty();
    for sig in [Signal::SIGCHLD, Signal::SIGWINCH, Signal::SIGTERM, Signal::SIGHUP] {
        mask.add(sig);
    }
    let _blocked = Blocked::new(&mask)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(caller_io("create a signalfd"))?;

    let joiner = spawn(t, plan, Stdio::Pty(pty.slave.as_fd()))?;
    drop(pty.slave); // else the master never sees the command's side close
    let master = pty.master;
    let relayed = (|| {
        fcntl(master.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
            .map_err(caller_io("set up the pty"))?;
        // SAFETY: isatty only inspects the descriptor.
        let stdin_tty = unsafe { libc::isatty(0) } == 1;
        let _raw = if interactive && stdin_tty { Some(RawMode::enable()?) } else { None };
        Relay { master: master.as_fd(), signals: &signals, joiner, term, pending: Vec::new() }
            .run(interactive)
    })();
    match relayed {
        Ok(status) => Ok(status),
        Err(e) => {
            // Hang up the command's terminal (SIGHUP to it) and reap the joiner.
            drop(master);
            let _ = wait_status(joiner);
            Err(e)
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Output {
    Copied,
    Empty,
    Closed,
}

struct Relay<'a> {
    master: BorrowedFd<'a>,
    signals: &'a SignalFd,
    joiner: Pid,
    term: Option<i32>,
    /// Bytes read from stdin, not yet written to the pty.
    pending: Vec<u8>,
}

impl Relay<'_> {
    fn run(&mut self, interactive: bool) -> Result<i32, ExecError> {
        let stdin = io::stdin();
        let mut stdin_open = interactive;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let mut master_events = PollFlags::POLLIN;
            if !self.pending.is_empty() {
                master_events |= PollFlags::POLLOUT;
            }
            let mut fds = vec![
                PollFd::new(self.master, master_events),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            let read_stdin = stdin_open && self.pending.len() < MAX_PENDING;
            if read_stdin {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(caller_io("poll")(e)),
            }
            let ready =
                |i: usize| fds.get(i).and_then(|f| f.revents()).unwrap_or(PollFlags::empty());
            let (m, s, i) = (ready(0), ready(1), ready(2));
            let input = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;

            if m.intersects(input) && self.copy_output(&mut buf)? == Output::Closed {
                // Every holder of the command's side has closed it: the command is done.
                return Ok(wait_status(self.joiner));
            }
            if m.contains(PollFlags::POLLOUT) {
                self.flush_input()?;
            }
            if s.contains(PollFlags::POLLIN) {
                if let Some(status) = self.on_signals()? {
                    // Output already written by the command is still in the pty: pass it on.
                    while self.copy_output(&mut buf)? == Output::Copied {}
                    return Ok(status);
                }
            }
            if read_stdin && i.intersects(input) {
                match nix::unistd::read(stdin.as_raw_fd(), &mut buf) {
                    Ok(0) | Err(_) => {
                        // End of input: what Ctrl-D would send, so a shell or `cat` ends too.
                        stdin_open = false;
                        self.pending.push(0x04);
                    }
                    Ok(n) => self.pending.extend_from_slice(&buf[..n]),
                }
            }
        }
    }

    /// Copies what the pty has to stdout.
    fn copy_output(&mut self, buf: &mut [u8]) -> Result<Output, ExecError> {
        match nix::unistd::read(self.master.as_raw_fd(), buf) {
            // EIO: every holder of the slave side has closed it and nothing is left to read.
            Ok(0) | Err(nix::Error::EIO) => Ok(Output::Closed),
            Ok(n) => {
                write_all(io::stdout().as_fd(), &buf[..n]).map_err(caller_io("write to stdout"))?;
                Ok(Output::Copied)
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => Ok(Output::Empty),
            Err(e) => Err(caller_io("read from the pty")(e)),
        }
    }

    fn flush_input(&mut self) -> Result<(), ExecError> {
        match nix::unistd::write(self.master, &self.pending) {
            Ok(n) => {
                self.pending.drain(..n);
                Ok(())
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => Ok(()),
            Err(e) => Err(caller_io("write to the pty")(e)),
        }
    }

    /// Handles the pending signals; the joiner's status once it has exited.
    fn on_signals(&mut self) -> Result<Option<i32>, ExecError> {
        while let Some(info) = self.signals.read_signal().map_err(caller_io("read signals"))? {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => {
                    if let Some(size) = self.term.and_then(window_size) {
                        // SAFETY: TIOCSWINSZ reads a winsize from the pointer.
                        unsafe { libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &size) };
                    }
                }
                Ok(Signal::SIGCHLD) => match waitpid(self.joiner, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(Some(code)),
                    Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(128 + sig as i32)),
                    _ => {}
                },
                Ok(sig @ (Signal::SIGTERM | Signal::SIGHUP)) => {
                    let _ = nix::sys::signal::kill(self.joiner, sig);
                }
                _ => {}
            }
        }
        Ok(None)
    }
}

fn window_size(fd: i32) -> Option<libc::winsize> {
    // SAFETY: winsize is plain integers; TIOCGWINSZ fills it.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    (unsafe { libc::ioctl(fd, libc::TIOCGWINSZ, &mut ws) } == 0).then_some(ws)
}

/// Writes all of `data`, waiting for the descriptor to drain if it is non-blocking.
fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> nix::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::Error::EINTR) => {}
            Err(nix::Error::EAGAIN) => {
                let _ = poll(&mut [PollFd::new(fd, PollFlags::POLLOUT)], PollTimeout::NONE);
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Signals blocked until dropped (the previous mask restored).
struct Blocked(SigSet);

impl Blocked {
    fn new(mask: &SigSet) -> Result<Self, ExecError> {
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(mask), Some(&mut old))
            .map_err(caller_io("block signals"))?;
        Ok(Blocked(old))
    }
}

impl Drop for Blocked {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&self.0), None);
    }
}

/// The caller's terminal (stdin) in raw mode until dropped.
struct RawMode(Termios);

impl RawMode {
    fn enable() -> Result<Self, ExecError> {
        let stdin = io::stdin();
        let saved =
            termios::tcgetattr(stdin.as_fd()).map_err(caller_io("read terminal settings"))?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)
            .map_err(caller_io("put the terminal in raw mode"))?;
        Ok(RawMode(saved))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(io::stdin().as_fd(), SetArg::TCSANOW, &self.0);
    }
}
