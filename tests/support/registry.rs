//! A throwaway OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a loopback port with filesystem storage in a temporary directory, and
//! `skopeo` to push fixture images into it. Plain std, no async.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::images::{oci_layout, Fixture, REF_NAME};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running registry; dropping it kills the process and deletes its storage.
pub struct Registry {
    child: Child,
    addr: String,
    dir: TempDir,
}

impl Registry {
    /// Starts a registry and waits until `GET /v2/` answers 200.
    ///
    /// The registry binds `127.0.0.1:0` itself and we read the port from its
    /// "listening on" log line. Unlike probing a free port and handing it over,
    /// this cannot lose a race with a parallel test (which could even make us
    /// talk to another test's registry).
    pub fn start() -> Registry {
        let dir = tempfile::Builder::new().prefix("devenv-registry-").tempdir().expect("tempdir");
        let config = dir.path().join("config.yml");
        fs::write(&config, config_yaml(&dir.path().join("storage"))).expect("write config");
        let log_path = dir.path().join("registry.log");
        let log = File::create(&log_path).expect("create registry log");
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("spawn {REGISTRY_BIN} (apt-get install docker-registry): {e}")
            });
        let mut reg = Registry { child, addr: String::new(), dir };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = reg.child.try_wait() {
                reg.fail(&format!("exited during startup with {status}"));
            }
            if reg.addr.is_empty() {
                let text = fs::read_to_string(&log_path).unwrap_or_default();
                if let Some(addr) = listening_addr(&text) {
                    reg.addr = addr;
                }
            }
            if !reg.addr.is_empty() && http_status(&reg.addr, "/v2/") == Some(200) {
                return reg;
            }
            if Instant::now() > deadline {
                reg.fail(&format!("did not answer GET /v2/ within {STARTUP_TIMEOUT:?}"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// Process id of the registry (to check it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Pushes fixture `f` as `ADDR/<repo_and_tag>` (e.g. "devenv-test/redis:latest").
    pub fn push(&self, f: Fixture, repo_and_tag: &str) {
        let layout = oci_layout(f);
        // skopeo 1.9 takes `oci:PATH[:REF]`, REF matching the
        // org.opencontainers.image.ref.name annotation; naming it stays correct
        // even if a layout ever holds more than one image.
        let src = format!("oci:{}:{REF_NAME}", layout.display());
        let dest = format!("docker://{}/{repo_and_tag}", self.addr);
        let out = Command::new("skopeo")
            // No policy.json is needed this way, and the registry is plain HTTP.
            .args(["--insecure-policy", "copy", "--dest-tls-verify=false", "--quiet"])
            .args([&src, &dest])
            .output()
            .unwrap_or_else(|e| panic!("run skopeo (apt-get install skopeo): {e}"));
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Kills the registry and panics with its log.
    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        panic!("docker-registry {why}; log:\n{log}");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SIGKILL then wait, so no zombie or orphan outlives the test; the
        // TempDir field is dropped afterwards and removes the storage.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config_yaml(storage: &std::path::Path) -> String {
    format!(
        "version: 0.1
log:
  level: info
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:0
  # A fixed secret silences the warning about generating a random one.
  secret: devenv-test-registry
",
        storage.display()
    )
}

/// Extracts ADDR from the registry's `msg="listening on ADDR"` log line.
fn listening_addr(log: &str) -> Option<String> {
    let rest = &log[log.find("listening on ")? + "listening on ".len()..];
    let addr: String =
        rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
    addr.contains(':').then_some(addr)
}

/// Status code of a plain HTTP/1.0 GET, or None if the server is not answering.
fn http_status(addr: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    // "HTTP/1.1 200"
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}
