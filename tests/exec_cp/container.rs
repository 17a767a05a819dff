//! A "container" made without devenv's runtime, for testing exec and cp against: a copy of the
//! busybox fixture rootfs, and `unshare` starting `sleep` in new pid, mount, uts, ipc and net
//! namespaces, chrooted there, moved into cgroups of its own. [`Container`] kills it and removes
//! everything when dropped, on panics too.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use devenv::runtime::exec::{exec, ExecOptions};
use nix::fcntl::OFlag;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;

use crate::support::images::{rootfs_dir, Fixture};

pub const HOSTNAME: &str = "ctr-test";
pub const CTR_VAR: &str = "from-container";

pub struct Container {
    /// Holds `rootfs/` and whatever the test keeps on the host side.
    pub dir: tempfile::TempDir,
    pub rootfs: PathBuf,
    /// Host pid of the container's init (`sleep`, pid 1 inside).
    pub pid: i32,
    unshare: Child,
    /// cgroup directories made for it (v1 pids, v2), removed at the end.
    pub cgroups: Vec<PathBuf>,
}

impl Container {
    pub fn start() -> Container {
        Container::start_with(&[], &[])
    }

    /// Starts the container with more `unshare` options (e.g. `--map-root-user`) and `prefix`
    /// (e.g. `setpriv --bounding-set ...`) run in the new namespaces before `chroot`.
    pub fn start_with(unshare: &[&str], prefix: &[&str]) -> Container {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::Builder::new().prefix("devenv-exec-cp-").tempdir().expect("tempdir");
        let rootfs = dir.path().join("rootfs");
        let st = Command::new("cp")
            .args(["-a", "--"])
            .arg(rootfs_dir(Fixture::Busybox))
            .arg(&rootfs)
            .status()
            .expect("run cp");
        assert!(st.success(), "copy the busybox rootfs");

        let script = format!("hostname {HOSTNAME}; cd /home; echo $$ > /ready; exec sleep 1000");
        let mut argv: Vec<String> =
            ["unshare", "--fork", "--kill-child", "--pid", "--mount", "--uts", "--ipc", "--net"]
                .map(String::from)
                .to_vec();
        argv.extend(unshare.iter().map(|s| s.to_string()));
        argv.push(format!("--mount-proc={}/proc", rootfs.display()));
        argv.extend(prefix.iter().map(|s| s.to_string()));
        argv.extend(["chroot".into(), rootfs.display().to_string()]);
        argv.extend(["/bin/sh".into(), "-c".into(), script]);
        let unshare = Command::new(&argv[0])
            .args(&argv[1..])
            .env_clear()
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .env("HOME", "/root")
            .env("CTR_VAR", CTR_VAR)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {argv:?} (util-linux): {e}"));
        let mut c = Container { dir, rootfs, pid: 0, unshare, cgroups: Vec::new() };
        c.pid = c.wait_ready();

        let name = format!(
            "devenv-exec-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        for base in cgroup_bases() {
            let cg = base.join(&name);
            fs::create_dir(&cg).unwrap_or_else(|e| panic!("create {}: {e}", cg.display()));
            c.cgroups.push(cg.clone());
            fs::write(cg.join("cgroup.procs"), c.pid.to_string()).expect("move into cgroup");
        }
        c
    }

    /// Waits for the init to have written /ready and become `sleep`; returns its host pid.
    fn wait_ready(&mut self) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let upid = self.unshare.id();
        loop {
            let children = fs::read_to_string(format!("/proc/{upid}/task/{upid}/children"));
            let child =
                children.ok().and_then(|c| c.split_whitespace().next()?.parse::<i32>().ok());
            if let Some(pid) = child {
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if comm.trim() == "sleep" && self.rootfs.join("ready").exists() {
                    return pid;
                }
            }
            if let Ok(Some(st)) = self.unshare.try_wait() {
                panic!("the test container exited early: {st}");
            }
            assert!(Instant::now() < deadline, "the test container did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A host path inside the container's root.
    pub fn path(&self, inside: &str) -> PathBuf {
        self.rootfs.join(inside.trim_start_matches('/'))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // unshare first: --kill-child then SIGKILLs the namespace's pid 1, which takes every
        // process of the namespace (exec'd ones too) with it. (Killing pid 1 first makes unshare
        // complain as it re-raises the signal on itself.)
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie waiting for whoever it was reparented to.
        let alive = |pid: i32| {
            let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            !matches!(state, None | Some(Some('Z')) | Some(Some('X')))
        };
        while self.pid > 0 && alive(self.pid) {
            if Instant::now() > deadline {
                let pid = nix::unistd::Pid::from_raw(self.pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for cg in &self.cgroups {
            // Emptied asynchronously once the processes are reaped.
            for _ in 0..200 {
                if fs::remove_dir(cg).is_ok() || !cg.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The TempDir removes the rootfs copy; nothing is mounted there outside the namespace.
    }
}

/// Where to make the test's cgroups: the v1 pids hierarchy and the v2 one, where mounted.
fn cgroup_bases() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()]; // unified
    }
    ["pids", "unified"]
        .iter()
        .map(|h| root.join(h))
        .filter(|p| p.join("cgroup.procs").exists())
        .collect()
}

/// What an exec printed and returned.
#[derive(Debug)]
pub struct Ran {
    pub status: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Status the forked caller exits with when `exec` itself returned an error.
pub const EXEC_ERROR: i32 = 250;

/// Calls [`exec`] the way the CLI does, from a single-threaded process: a fork of this
/// (multi-threaded) test process, whose only thread is the one that forked. Its stdout and
/// stderr are captured; every other inherited descriptor is closed, so that other tests' pipes
/// do not stay open in it.
pub fn run(pid: i32, opts: &ExecOptions) -> Ran {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).expect("pipe");
    // SAFETY: the child only calls exec (which allocates; glibc's malloc is fork-safe) and exits.
    match unsafe { nix::unistd::fork() }.expect("fork") {
        ForkResult::Child => {
            let _ = nix::unistd::dup2(out_w.as_raw_fd(), 1);
            let _ = nix::unistd::dup2(err_w.as_raw_fd(), 2);
            // SAFETY: closes descriptors this process does not use.
            unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
            std::mem::forget((out_r, out_w, err_r, err_w)); // closed already
            let code = match exec(pid, opts) {
                Ok(code) => code,
                Err(e) => {
                    let msg = format!("EXEC ERROR: {e}\n");
                    let _ = nix::unistd::write(std::io::stderr(), msg.as_bytes());
                    EXEC_ERROR
                }
            };
            // SAFETY: leaves without running the test harness's atexit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((out_w, err_w));
            let reader = std::thread::spawn(move || read_all(out_r));
            let stderr = read_all(err_r);
            let stdout = reader.join().expect("stdout reader");
            let status = match waitpid(child, None).expect("waitpid") {
                WaitStatus::Exited(_, code) => code,
                other => panic!("exec caller ended with {other:?}"),
            };
            Ran { status, stdout, stderr }
        }
    }
}

fn read_all(fd: OwnedFd) -> String {
    let mut s = String::new();
    fs::File::from(fd).read_to_string(&mut s).expect("read output");
    s
}

/// `ExecOptions` for `argv`, non-interactive, no tty.
pub fn cmd(argv: &[&str]) -> ExecOptions {
    ExecOptions { argv: argv.iter().map(|a| a.to_string()).collect(), ..ExecOptions::default() }
}
