//! A throwaway OCI registry for tests: Debian's `docker-registry` (distribution
//! 2.8) on a loopback port with filesystem storage in a temporary directory, and
//! `skopeo` to push fixture images into it. Plain std, no async.
//!
//! Three kinds of access control (`Auth`): none, HTTP basic against an htpasswd
//! file (bcrypt, made with apache2-utils' `htpasswd`), and the Docker token flow
//! against a token server the harness runs itself (`token.rs`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::images::{oci_layout, Fixture, REF_NAME};
use super::token::{TokenRequest, TokenServer, TOKEN_ISSUER, TOKEN_SERVICE};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Who may use a registry started with `Registry::start_with`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Auth {
    /// Anyone may pull and push.
    Anonymous,
    /// HTTP basic auth (`WWW-Authenticate: Basic realm="devenv-test"`) for every
    /// request, including `GET /v2/`; only this user exists.
    Htpasswd { user: String, password: String },
    /// `auth: token`: the registry answers 401 with
    /// `WWW-Authenticate: Bearer realm="http://127.0.0.1:P/token",service="devenv-test",scope=...`
    /// and trusts ES256 JWTs from the harness's token server (see `token.rs`).
    /// `user`/`password` get every action they ask for; a wrong password gets 401
    /// from the token endpoint. Requests without credentials get a token that grants
    /// `pull` if `anonymous_pull`, else a token granting nothing (what Docker Hub does
    /// for private repositories), so the registry answers the next request with 401.
    Token { user: String, password: String, anonymous_pull: bool },
}

impl Auth {
    pub fn htpasswd(user: &str, password: &str) -> Auth {
        Auth::Htpasswd { user: user.to_string(), password: password.to_string() }
    }

    pub fn token(user: &str, password: &str, anonymous_pull: bool) -> Auth {
        Auth::Token { user: user.to_string(), password: password.to_string(), anonymous_pull }
    }
}

/// A running registry; dropping it kills the process, stops the token server
/// and deletes the storage.
pub struct Registry {
    child: Child,
    addr: String,
    dir: TempDir,
    auth: Auth,
    token: Option<TokenServer>,
}

impl Registry {
    /// Starts an anonymous registry (`start_with(Auth::Anonymous)`).
    pub fn start() -> Registry {
        Registry::start_with(Auth::Anonymous)
    }

    /// Starts a registry and waits until `GET /v2/` answers (200, or 401 when
    /// `auth` asks for credentials).
    ///
    /// The registry binds `127.0.0.1:0` itself and we read the port from its
    /// "listening on" log line. Unlike probing a free port and handing it over,
    /// this cannot lose a race with a parallel test (which could even make us
    /// talk to another test's registry).
    pub fn start_with(auth: Auth) -> Registry {
        let dir = tempfile::Builder::new().prefix("devenv-registry-").tempdir().expect("tempdir");
        let mut token = None;
        let auth_yaml = match &auth {
            Auth::Anonymous => String::new(),
            Auth::Htpasswd { user, password } => {
                let path = dir.path().join("htpasswd");
                fs::write(&path, htpasswd_line(user, password)).expect("write htpasswd");
                format!(
                    "auth:\n  htpasswd:\n    realm: devenv-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token { user, password, anonymous_pull } => {
                let server = TokenServer::start(dir.path(), user, password, *anonymous_pull);
                let yaml = format!(
                    "auth:\n  token:\n    realm: {}\n    service: {TOKEN_SERVICE}\n    \
                     issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}\n",
                    server.realm(),
                    server.cert_path().display()
                );
                token = Some(server);
                yaml
            }
        };
        let config = dir.path().join("config.yml");
        fs::write(&config, config_yaml(&dir.path().join("storage")) + &auth_yaml)
            .expect("write config");
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
        let mut reg = Registry { child, addr: String::new(), dir, auth, token };
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
            if !reg.addr.is_empty()
                && matches!(http_status(&reg.addr, "/v2/"), Some(200) | Some(401))
            {
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

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The access control it was started with.
    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    /// (user, password) for `Htpasswd` and `Token`, None for `Anonymous`.
    pub fn credentials(&self) -> Option<(String, String)> {
        match &self.auth {
            Auth::Anonymous => None,
            Auth::Htpasswd { user, password } | Auth::Token { user, password, .. } => {
                Some((user.clone(), password.clone()))
            }
        }
    }

    /// The token endpoint ("http://127.0.0.1:P/token") of an `Auth::Token` registry.
    pub fn token_realm(&self) -> Option<String> {
        self.token.as_ref().map(TokenServer::realm)
    }

    /// Every request the token endpoint has answered so far, oldest first
    /// (empty unless `Auth::Token`).
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.token.as_ref().map(TokenServer::requests).unwrap_or_default()
    }

    /// Process id of the registry (to check it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The registry's log file (stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    /// Pushes fixture `f` as `ADDR/<repo_and_tag>` (e.g. "devenv-test/redis:latest");
    /// returns the manifest digest.
    pub fn push(&self, f: Fixture, repo_and_tag: &str) -> String {
        self.push_layout(&oci_layout(f), repo_and_tag)
    }

    /// Pushes the image (or image index, with all its images) that the OCI layout
    /// `layout` tags `REF_NAME` as `ADDR/<repo_and_tag>`, byte for byte (skopeo
    /// `--all --preserve-digests`), with this registry's credentials if any.
    /// Returns the digest ("sha256:...") of the pushed manifest or index as the
    /// registry reports it in `Docker-Content-Digest`.
    pub fn push_layout(&self, layout: &Path, repo_and_tag: &str) -> String {
        // skopeo 1.9 takes `oci:PATH[:REF]`, REF matching the
        // org.opencontainers.image.ref.name annotation; naming it stays correct
        // even if a layout ever holds more than one image.
        let src = format!("oci:{}:{REF_NAME}", layout.display());
        let dest = format!("docker://{}/{repo_and_tag}", self.addr);
        let digest_file = self.dir.path().join(format!("digest-{}", unique()));
        let mut cmd = Command::new("skopeo");
        // No policy.json is needed this way, and the registry is plain HTTP.
        cmd.args(["--insecure-policy", "copy", "--dest-tls-verify=false", "--quiet"])
            .args(["--all", "--preserve-digests", "--digestfile"])
            .arg(&digest_file);
        if let Some((user, password)) = self.credentials() {
            cmd.arg(format!("--dest-creds={user}:{password}"));
        }
        let out = cmd
            .args([&src, &dest])
            .output()
            .unwrap_or_else(|e| panic!("run skopeo (apt-get install skopeo): {e}"));
        assert!(
            out.status.success(),
            "skopeo copy {src} {dest} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let digest = fs::read_to_string(&digest_file).expect("read skopeo --digestfile");
        let _ = fs::remove_file(&digest_file);
        let (repo, tag) = repo_and_tag.rsplit_once(':').expect("repo_and_tag is NAME:TAG");
        let reported = self.manifest_digest(repo, tag);
        assert_eq!(digest.trim(), reported, "skopeo's and the registry's digest of {repo_and_tag}");
        reported
    }

    /// `Docker-Content-Digest` of `HEAD /v2/<repo>/manifests/<reference>`, using
    /// this registry's credentials (a token from the token server if need be).
    pub fn manifest_digest(&self, repo: &str, reference: &str) -> String {
        let mut cmd = Command::new("curl");
        cmd.args(["--silent", "--show-error", "--fail", "--noproxy", "*", "--max-time", "10"])
            .args(["--head", "-H", &format!("Accept: {}", ACCEPT_MANIFESTS)]);
        match &self.auth {
            Auth::Anonymous => {}
            Auth::Htpasswd { user, password } => {
                cmd.args(["--user", &format!("{user}:{password}")]);
            }
            Auth::Token { .. } => {
                let token = self.token_for(&format!("repository:{repo}:pull"));
                cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
            }
        }
        let out = cmd
            .arg(format!("{}/v2/{repo}/manifests/{reference}", self.url()))
            .output()
            .expect("run curl");
        let head = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "HEAD {repo}:{reference}: {}{head}",
            String::from_utf8_lossy(&out.stderr)
        );
        head.lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("docker-content-digest").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest in:\n{head}"))
    }

    /// A JWT for `scope` (e.g. "repository:NAME:pull") from this registry's token
    /// server, asked with its credentials. Panics unless `Auth::Token`.
    pub fn token_for(&self, scope: &str) -> String {
        let server = self.token.as_ref().expect("token_for needs Auth::Token");
        server.issue_for_owner(scope)
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

/// Every manifest type a pull may meet, for `Accept` (OCI and Docker, images and lists).
pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// A loopback "127.0.0.1:PORT" where nothing listens (a port the kernel just
/// handed out and that was closed again), for "registry is down" tests.
pub fn down_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr").to_string();
    drop(listener);
    addr
}

/// One bcrypt htpasswd line (distribution accepts only bcrypt), from apache2-utils.
fn htpasswd_line(user: &str, password: &str) -> String {
    let out = Command::new("htpasswd")
        // -B bcrypt, -b password on the command line, -n print instead of writing a file;
        // cost 5 (the minimum) keeps the registry's check per request fast.
        .args(["-B", "-C", "5", "-b", "-n", user, password])
        .output()
        .unwrap_or_else(|e| panic!("run htpasswd (apt-get install apache2-utils): {e}"));
    assert!(out.status.success(), "htpasswd: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("htpasswd output is UTF-8").trim_end().to_string() + "\n"
}

/// A name no other call in this process (or a concurrent one) produces.
pub(crate) fn unique() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{}-{seq}", std::process::id())
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
