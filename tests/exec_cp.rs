//! `runtime::exec` and `runtime::cp` against real processes in real namespaces (as root): a
//! busybox rootfs run by `unshare` + `chroot` stands in for a container, so these tests do not
//! depend on devenv's own runtime. The `-t` test drives a shell through tmux. The cp tests are
//! in `exec_cp/cp.rs`, the live-edit sync ones in `exec_cp/sync.rs`.
//!
//! Needs: root, util-linux (`unshare`, `setpriv`), tmux, busybox-static (the fixture).

mod support;

#[path = "exec_cp/container.rs"]
mod container;
#[path = "exec_cp/cp.rs"]
mod cp;
#[path = "exec_cp/sync.rs"]
mod sync;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use container::{cmd, run, Container, CTR_VAR, EXEC_ERROR, HOSTNAME};
use devenv::runtime::exec::{exec, ExecError, ExecOptions};

/// Skips a test (with a note) unless running as root.
macro_rules! require_root {
    () => {
        if !$crate::support::is_root() {
            eprintln!("SKIP: needs root (namespaces, chroot, cgroups)");
            return;
        }
    };
}
pub(crate) use require_root;

#[test]
fn exec_returns_the_command_status_and_output() {
    require_root!();
    let c = Container::start();
    let r = run(c.pid, &cmd(&["echo", "hi"]));
    assert_eq!((r.status, r.stdout.as_str(), r.stderr.as_str()), (0, "hi\n", ""));
    assert_eq!(run(c.pid, &cmd(&["sh", "-c", "exit 7"])).status, 7);
    assert_eq!(run(c.pid, &cmd(&["sh", "-c", "echo oops >&2; exit 3"])).stderr, "oops\n");
    // Killed by a signal: 128 + its number, as a shell reports it.
    assert_eq!(run(c.pid, &cmd(&["sh", "-c", "kill -TERM $$"])).status, 128 + 15);

    let r = run(c.pid, &cmd(&["no-such-command", "x"]));
    assert_eq!(r.status, 127, "{r:?}");
    assert!(
        r.stderr.contains(r#"exec: "no-such-command": executable file not found in $PATH"#),
        "{r:?}"
    );
    let r = run(c.pid, &cmd(&["/bin/nope"]));
    assert_eq!(r.status, 127, "{r:?}");
    assert!(r.stderr.contains("no such file or directory"), "{r:?}");
    let r = run(c.pid, &cmd(&["/etc/passwd"]));
    assert_eq!(r.status, 126, "{r:?}");
    assert!(r.stderr.contains("permission denied"), "{r:?}");
    // The host has programs the container lacks; they must not be found.
    assert!(Path::new("/usr/bin/tmux").exists());
    assert_eq!(run(c.pid, &cmd(&["tmux", "-V"])).status, 127);
}

#[test]
fn exec_uses_the_container_environment_user_and_directory() {
    require_root!();
    let c = Container::start();
    let mut o = cmd(&["sh", "-c", "echo $CTR_VAR $EXTRA $HOME; pwd"]);
    o.env = vec![("EXTRA".into(), "from-exec".into())];
    let r = run(c.pid, &o);
    assert_eq!(r.stdout, format!("{CTR_VAR} from-exec /root\n/home\n"), "{r:?}");

    o.env.push(("CTR_VAR".into(), "overridden".into()));
    o.workdir = Some("/tmp".into());
    assert_eq!(run(c.pid, &o).stdout, "overridden from-exec /root\n/tmp\n");

    let mut o = cmd(&["sh", "-c", "id -u; id -g; id -G; echo $HOME"]);
    o.user = Some("nobody".into());
    assert_eq!(run(c.pid, &o).stdout, "65534\n65534\n65534\n/nonexistent\n");
    o.user = Some("1234:5678".into());
    assert_eq!(run(c.pid, &o).stdout, "1234\n5678\n5678\n/\n");
    o.user = Some("www-data:nogroup".into());
    assert_eq!(run(c.pid, &o).stdout, "33\n65534\n65534\n/var/www\n");

    o.user = Some("ghost".into());
    let r = run(c.pid, &o);
    assert_eq!(r.status, EXEC_ERROR);
    assert!(r.stderr.contains(r#"user "ghost" is not in the container's /etc/passwd"#), "{r:?}");

    let mut o = cmd(&["pwd"]);
    o.workdir = Some("/no/such/dir".into());
    let r = run(c.pid, &o);
    assert_eq!(r.status, EXEC_ERROR);
    assert!(r.stderr.contains("change to working directory /no/such/dir"), "{r:?}");
}

#[test]
fn exec_joins_the_container_namespaces_and_cgroups() {
    require_root!();
    let c = Container::start();
    let r = run(c.pid, &cmd(&["hostname"]));
    assert_eq!(r.stdout, format!("{HOSTNAME}\n"));
    assert_ne!(fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim(), HOSTNAME);

    // Only the container's loopback, none of the host's interfaces.
    let r = run(c.pid, &cmd(&["ip", "-o", "link"]));
    let links: Vec<&str> = r.stdout.lines().filter_map(|l| l.split(": ").nth(1)).collect();
    assert_eq!(links, ["lo"], "{r:?}");
    assert!(fs::read_dir("/sys/class/net").unwrap().count() > 1, "the host has more than lo");

    // Its pid namespace (its init is pid 1) and its /proc.
    let r = run(c.pid, &cmd(&["sh", "-c", "cat /proc/1/comm; echo $$"]));
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0], "sleep");
    assert!(lines[1].parse::<i32>().unwrap() < 100, "a pid of the container's namespace: {r:?}");

    for ns in ["mnt", "uts", "ipc", "net", "pid"] {
        let theirs = fs::read_link(format!("/proc/{}/ns/{ns}", c.pid)).unwrap();
        let r = run(c.pid, &cmd(&["readlink", &format!("/proc/self/ns/{ns}")]));
        assert_eq!(r.stdout.trim(), theirs.to_str().unwrap(), "{ns} namespace");
    }

    // Its cgroups: the exec'd process is in the container's, not in ours.
    let r = run(c.pid, &cmd(&["cat", "/proc/self/cgroup"]));
    assert!(!c.cgroups.is_empty());
    for cg in &c.cgroups {
        let name = cg.file_name().unwrap().to_str().unwrap();
        assert!(r.stdout.contains(&format!("/{name}\n")), "{name} in {r:?}");
    }
}

#[test]
fn exec_gets_the_container_capabilities() {
    require_root!();
    let c = Container::start_with(&[], &["setpriv", "--bounding-set", "-net_admin,-mknod"]);
    let status = fs::read_to_string(format!("/proc/{}/status", c.pid)).unwrap();
    let bnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap().to_owned();
    let r = run(c.pid, &cmd(&["grep", "-E", "^Cap(Bnd|Eff|Prm|Amb)", "/proc/self/status"]));
    let caps: Vec<&str> = r.stdout.lines().collect();
    let value = bnd.split_whitespace().nth(1).unwrap();
    assert!(caps.contains(&bnd.as_str()), "{r:?}");
    assert!(caps.iter().any(|l| l.starts_with("CapEff:") && l.ends_with(value)), "{r:?}");
    assert!(caps.iter().any(|l| l.starts_with("CapAmb:") && l.ends_with("0000000000000000")));
    // Without CAP_NET_ADMIN, even root cannot change the container's network.
    let r = run(c.pid, &cmd(&["ip", "link", "set", "lo", "up"]));
    assert_ne!(r.status, 0, "{r:?}");
    // A non-root user ends up with none.
    let mut o = cmd(&["grep", "^CapEff", "/proc/self/status"]);
    o.user = Some("nobody".into());
    assert_eq!(run(c.pid, &o).stdout, "CapEff:\t0000000000000000\n");
}

#[test]
fn exec_and_cp_work_in_a_user_namespace() {
    require_root!();
    // Its own user namespace (root mapped to root, setgroups denied, as `unshare -r` does).
    let c = Container::start_with(&["--map-root-user"], &[]);
    let theirs = fs::read_link(format!("/proc/{}/ns/user", c.pid)).unwrap();
    assert_ne!(theirs, fs::read_link("/proc/self/ns/user").unwrap());
    let r = run(c.pid, &cmd(&["sh", "-c", "readlink /proc/self/ns/user; id -u; hostname"]));
    assert_eq!(r.stdout, format!("{}\n0\n{HOSTNAME}\n", theirs.display()), "{r:?}");
    // Only uid 0 exists in that namespace.
    let mut o = cmd(&["id"]);
    o.user = Some("nobody".into());
    let r = run(c.pid, &o);
    assert_eq!(r.status, EXEC_ERROR, "{r:?}");
    assert!(r.stderr.contains("switch to uid 65534 gid 65534"), "{r:?}");

    let src = c.dir.path().join("in.txt");
    fs::write(&src, "into a userns\n").unwrap();
    devenv::runtime::cp::copy_in(c.pid, &src, "/tmp").unwrap();
    assert_eq!(run(c.pid, &cmd(&["cat", "/tmp/in.txt"])).stdout, "into a userns\n");
}

#[test]
fn exec_refuses_a_multithreaded_caller_and_a_missing_container() {
    // This test process runs tests on threads: calling exec here must be refused.
    let err = exec(std::process::id() as i32, &cmd(&["true"])).unwrap_err();
    assert!(matches!(err, ExecError::MultiThreaded(n) if n > 1), "{err}");
    require_root!();
    let r = run(i32::MAX - 1, &cmd(&["true"]));
    assert_eq!(r.status, EXEC_ERROR);
    assert!(r.stderr.contains("is not running"), "{r:?}");
    let r = run(std::process::id() as i32, &ExecOptions::default());
    assert!(r.stderr.contains("no command given"), "{r:?}");
    let mut o = cmd(&["true"]);
    o.env = vec![("A=B".into(), "C".into())];
    let r = run(std::process::id() as i32, &o);
    assert!(r.stderr.contains(r#"invalid environment variable name "A=B""#), "{r:?}");
}

const TTY_PID: &str = "DEVENV_TEST_EXEC_TTY_PID";
const TTY_STATUS: &str = "DEVENV_TEST_EXEC_TTY_STATUS";

/// Not a test on its own: when tmux runs this binary with `TTY_PID` set, this runs
/// `exec -t -i sh` in that container on tmux's terminal and writes the status to `TTY_STATUS`.
#[test]
fn tty_helper() {
    let Ok(pid) = std::env::var(TTY_PID) else { return };
    let opts = ExecOptions { tty: true, interactive: true, ..cmd(&["sh"]) };
    let status_file = std::env::var(TTY_STATUS).expect("status file");
    // SAFETY: the child only calls exec and exits (see container::run).
    match unsafe { nix::unistd::fork() }.expect("fork") {
        nix::unistd::ForkResult::Child => {
            let code = match exec(pid.parse().unwrap(), &opts) {
                Ok(code) => code.to_string(),
                Err(e) => format!("error: {e}"),
            };
            let _ = fs::write(&status_file, code);
            // SAFETY: leaves without the harness's atexit handlers.
            unsafe { libc::_exit(0) }
        }
        nix::unistd::ForkResult::Parent { child } => {
            nix::sys::wait::waitpid(child, None).expect("wait");
        }
    }
}

/// tmux on a private socket, killed when dropped.
struct Tmux(std::path::PathBuf);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-S")
            .arg(&self.0)
            .args(args)
            .output()
            .expect("run tmux (apt-get install tmux)")
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "t"]).stdout).into_owned()
    }

    /// `rows cols` of the pane, as `stty size` prints them.
    fn pane_size(&self) -> String {
        let out = self.cmd(&["display-message", "-p", "-t", "t", "#{pane_height} #{pane_width}"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Waits until the pane shows `want` (as a whole line) `times` times.
    fn wait_for(&self, want: &str, times: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.lines().filter(|l| l.trim_end() == want).count() >= times {
                return screen;
            }
            assert!(Instant::now() < deadline, "waiting for {want:?} x{times}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        assert!(self.cmd(&args).status.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

#[test]
fn exec_tty_gives_a_working_terminal() {
    require_root!();
    let c = Container::start();
    let tmux = Tmux(c.dir.path().join("tmux.sock"));
    let status_file = c.dir.path().join("tty-status");
    let exe = std::env::current_exe().unwrap();
    // The terminal's settings before and after: raw mode must not outlive the exec.
    let stty = |name: &str| format!("stty -g > {}", c.dir.path().join(name).display());
    let helper = format!(
        "{}; {} --exact tty_helper --nocapture --test-threads=1; {}",
        stty("stty-before"),
        exe.display(),
        stty("stty-after")
    );
    let out = tmux.cmd(&[
        "new-session",
        "-d",
        "-s",
        "t",
        "-x",
        "100",
        "-y",
        "30",
        "-e",
        &format!("{TTY_PID}={}", c.pid),
        "-e",
        &format!("{TTY_STATUS}={}", status_file.display()),
        &helper,
    ]);
    assert!(out.status.success(), "tmux new-session: {out:?}");

    tmux.keys(&["echo $((6*7))", "Enter"]);
    tmux.wait_for("42", 1);
    // Line editing works: Up recalls the last command.
    tmux.keys(&["Up", "Enter"]);
    tmux.wait_for("42", 2);
    // The terminal's size, then a resize, reach the command.
    tmux.keys(&["stty size", "Enter"]);
    tmux.wait_for(&tmux.pane_size(), 1);
    assert!(tmux.cmd(&["resize-window", "-t", "t", "-x", "90", "-y", "25"]).status.success());
    let resized = tmux.pane_size();
    assert!(resized.ends_with(" 90"), "{resized}");
    tmux.keys(&["stty size", "Enter"]);
    tmux.wait_for(&resized, 1);
    // It really is inside: the container's hostname.
    tmux.keys(&["hostname", "Enter"]);
    tmux.wait_for(HOSTNAME, 1);

    tmux.keys(&["exit 3", "Enter"]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tmux.cmd(&["has-session", "-t", "t"]).status.success() {
        assert!(Instant::now() < deadline, "the session did not end:\n{}", tmux.screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(fs::read_to_string(&status_file).unwrap(), "3");
    let settings = |name: &str| fs::read_to_string(c.dir.path().join(name)).unwrap();
    assert_eq!(settings("stty-before"), settings("stty-after"), "terminal settings restored");
}
