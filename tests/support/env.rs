//! A throwaway devenv world for one test: its own DEVENV_HOME, project directory and project
//! name, the fixture images loaded into its store, the real `devenv` binary to drive it, and a
//! check when it is dropped that nothing it started is left on the host.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use super::images::{oci_layout, Fixture};

pub struct DevEnv {
    pub home: tempfile::TempDir,
    pub dir: tempfile::TempDir,
    pub project: String,
    /// Container pids seen during the test: none may outlive it.
    pids: std::cell::RefCell<BTreeSet<i32>>,
    /// Host ends of container veths seen during the test: none may outlive it.
    veths: std::cell::RefCell<BTreeSet<String>>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl DevEnv {
    pub fn new(tag: &str) -> DevEnv {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let project = format!("t{}-{tag}-{n}", std::process::id());
        DevEnv {
            home: tempfile::Builder::new().prefix("devenv-home").tempdir().unwrap(),
            dir: tempfile::Builder::new().prefix("devenv-proj").tempdir().unwrap(),
            project,
            pids: Default::default(),
            veths: Default::default(),
        }
    }

    /// Loads fixture images under the given names, like a user's `devenv image load`.
    pub fn with_images(self, images: &[(Fixture, &str)]) -> DevEnv {
        for (f, name) in images {
            let layout = oci_layout(*f);
            self.ok(&["image", "load", layout.to_str().unwrap(), "--tag", name]);
        }
        self
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_devenv"));
        c.args(["-p", &self.project]).args(args).current_dir(self.dir.path());
        c.env("DEVENV_HOME", self.home.path()).env_remove("COMPOSE_PROJECT_NAME");
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let out = self.command(args).output().unwrap();
        self.note_pids();
        out
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "devenv {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "devenv {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        (out.status.code(), String::from_utf8(out.stderr).unwrap())
    }

    /// `devenv ps --format json`, as JSON.
    pub fn ps(&self) -> Vec<serde_json::Value> {
        serde_json::from_str(&self.ok(&["ps", "--format", "json"])).unwrap()
    }

    /// The state and pid of a service, from `ps`.
    pub fn service(&self, name: &str) -> (String, Option<i32>) {
        let row = self
            .ps()
            .into_iter()
            .find(|r| r["service"] == name)
            .unwrap_or_else(|| panic!("no service {name} in ps"));
        (row["state"].as_str().unwrap().to_owned(), row["pid"].as_i64().map(|p| p as i32))
    }

    fn note_pids(&self) {
        let state = self.home.path().join("projects").join(&self.project).join("state.json");
        if let Ok(text) = std::fs::read_to_string(state) {
            let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            if let Some(cs) = v["containers"].as_object() {
                for c in cs.values() {
                    if let Some(p) = c["pid"].as_i64() {
                        self.pids.borrow_mut().insert(p as i32);
                    }
                    if let Some(v) = c["endpoint"]["veth"].as_str().filter(|v| !v.is_empty()) {
                        self.veths.borrow_mut().insert(v.to_owned());
                    }
                }
            }
            if let Some(p) = v["supervisor"][0].as_i64() {
                self.pids.borrow_mut().insert(p as i32);
            }
        }
    }

    /// The project's hash on the host: its bridge is `dv-<hash>`, its nftables chains end in it.
    pub fn project_hash(&self) -> String {
        devenv::network::project_hash(&self.project, self.home.path())
    }

    /// Nothing of this test remains: no mount under its DEVENV_HOME, no container directory,
    /// no container or supervisor process it saw, no bridge, veth or nftables chain of its
    /// project, no address lease.
    pub fn assert_clean(&self) {
        let hash = self.project_hash();
        let bridge = format!("dv-{hash}");
        assert!(
            !std::path::Path::new("/sys/class/net").join(&bridge).exists(),
            "bridge {bridge} left behind"
        );
        for veth in self.veths.borrow().iter() {
            // The kernel deletes a veth when its namespace goes, a moment after the last process.
            let path = std::path::Path::new("/sys/class/net").join(veth);
            let gone = (0..100).any(|_| {
                let gone = !path.exists();
                if !gone {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                gone
            });
            assert!(gone, "veth {veth} left behind");
        }
        let chains = Command::new("nft").args(["list", "chains", "inet"]).output().unwrap();
        let chains = String::from_utf8_lossy(&chains.stdout);
        assert!(!chains.contains(&hash), "nftables chains of {hash} left behind:\n{chains}");
        let leases = self.home.path().join("network/leases.json");
        if let Ok(text) = std::fs::read_to_string(&leases) {
            assert!(!text.contains(&format!("\"{}\"", self.project)), "lease left: {text}");
        }
        let home = self.home.path().to_string_lossy().into_owned();
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&home))
            .map(str::to_owned)
            .collect();
        assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
        let containers = self.home.path().join("containers");
        let left: Vec<_> = std::fs::read_dir(&containers)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "container directories left behind: {left:?}");
        for pid in self.pids.borrow().iter() {
            // A zombie is gone for our purposes: it holds no resources but its pid.
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
                .unwrap_or(false);
            assert!(!alive, "process {pid} of project {} is still running", self.project);
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for DevEnv {
    fn drop(&mut self) {
        let _ = self.command(&["down", "-v"]).output();
        if !std::thread::panicking() {
            self.assert_clean();
        }
    }
}

/// A TCP port the kernel says is free on loopback right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits up to `secs` seconds for `f` to hold.
pub fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}
