//! devenv's bridge while Docker runs beside it. Once dockerd has run, the iptables FORWARD policy
//! is DROP and br_netfilter passes bridged frames through iptables, so traffic between two
//! containers of any other bridge is dropped unless that bridge is let through in Docker's
//! DOCKER-USER chain, which devenv does. This test starts a private dockerd (its own data root,
//! exec root and socket), then checks that two services reach each other by name and through a
//! published port.
//!
//! It changes host-wide state (the FORWARD policy, br_netfilter) that other tests running at the
//! same moment would notice, so it is ignored in the parallel run and `scripts/test.sh` runs it
//! alone afterwards; it restores the policy and removes docker0 when done.

mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::env::{eventually, free_port, DevEnv};
use support::images::Fixture;

struct Dockerd {
    child: Child,
    _dir: tempfile::TempDir,
    policy: String,
    had_docker0: bool,
}

fn forward_policy() -> String {
    let out = Command::new("iptables").args(["-S", "FORWARD"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("-P FORWARD ")).unwrap_or("ACCEPT").trim().to_owned()
}

impl Dockerd {
    fn start() -> Option<Dockerd> {
        if !Path::new("/usr/sbin/dockerd").exists() {
            eprintln!("skipped: dockerd is not installed (apt-get install docker.io)");
            return None;
        }
        let policy = forward_policy();
        let had_docker0 = Path::new("/sys/class/net/docker0").exists();
        let dir = tempfile::Builder::new().prefix("devenv-dockerd").tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("daemon.json"), "{}").unwrap();
        let sock = d.join("docker.sock");
        let child = Command::new("/usr/sbin/dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("docker.pid"))
            .arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dockerd");
        eventually(60, "dockerd to listen", || sock.exists());
        eventually(30, "dockerd to make DOCKER-USER", || {
            Command::new("iptables")
                .args(["-n", "-L", "DOCKER-USER"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        // Docker 20.10 sets DROP only when it had to turn ip_forward on itself; newer versions
        // always do. Reproduce the common case either way.
        Command::new("iptables").args(["-P", "FORWARD", "DROP"]).status().unwrap();
        if !Path::new("/proc/sys/net/bridge/bridge-nf-call-iptables").exists() {
            let _ = Command::new("modprobe").arg("br_netfilter").status();
        }
        Some(Dockerd { child, _dir: dir, policy, had_docker0 })
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..300 {
            if self.child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.had_docker0 {
            let _ = Command::new("ip").args(["link", "del", "docker0"]).status();
        }
        let _ = Command::new("iptables").args(["-P", "FORWARD", &self.policy]).status();
    }
}

#[test]
#[ignore = "starts dockerd, which changes host-wide forwarding; scripts/test.sh runs it alone"]
fn the_bridge_works_while_dockerd_runs() {
    if !support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let Some(_dockerd) = Dockerd::start() else { return };
    assert_eq!(forward_policy(), "DROP");
    let env = DevEnv::new("docker")
        .with_images(&[(Fixture::Nginx, "nginx:1.22"), (Fixture::Busybox, "busybox")]);
    let port = free_port();
    env.write(
        "devenv.yaml",
        &format!("services:\n  web:\n    image: nginx:1.22\n    ports: [\"{port}:80\"]\n  client:\n    image: busybox\n    command: [sleep, \"300\"]\n"),
    );
    env.ok(&["up", "-d"]);
    eventually(10, "client to reach web by name across the bridge", || {
        let out = env.run(&["exec", "client", "wget", "-qO-", "http://web/"]);
        String::from_utf8_lossy(&out.stdout).contains("devenv nginx")
    });
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2", &format!("http://127.0.0.1:{port}/")])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("devenv nginx"));
    // The test can fail: without devenv's ACCEPT rules the same request is dropped.
    let bridge = format!("dv-{}", env.project_hash());
    for dir in ["-i", "-o"] {
        let del = ["-D", "DOCKER-USER", dir, &bridge, "-j", "ACCEPT"];
        assert!(Command::new("iptables").args(del).status().unwrap().success());
    }
    let out = env.run(&["exec", "client", "timeout", "2", "wget", "-qO-", "http://web/"]);
    assert!(!out.status.success(), "expected the FORWARD policy to drop it");
    // As after a dockerd started once the project was up: the supervisor puts the rules back.
    eventually(15, "the supervisor to restore the DOCKER-USER rules", || {
        let out = env.run(&["exec", "client", "timeout", "2", "wget", "-qO-", "http://web/"]);
        String::from_utf8_lossy(&out.stdout).contains("devenv nginx")
    });
    env.ok(&["down"]);
    // Our ACCEPT rules went with the project.
    let rules = Command::new("iptables").args(["-S", "DOCKER-USER"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&rules.stdout).contains(&bridge));
}
