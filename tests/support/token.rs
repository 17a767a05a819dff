//! The token server of the Docker registry token flow, for a registry started
//! with `Auth::Token`: a std `TcpListener` on `127.0.0.1:0` and one thread.
//!
//! `GET /token?service=devenv-test&scope=repository:NAME:pull,push[&scope=...]`,
//! with or without `Authorization: Basic`, and the OAuth2 form
//! `POST /token` (`grant_type=password&username=..&password=..&scope=..&service=..`)
//! both answer `{"token": JWT, "access_token": JWT, "expires_in": 300}`.
//!
//! Policy: the configured user gets every action it asks for; wrong credentials
//! get 401 (`{"errors":[{"code":"UNAUTHORIZED",..}]}`); no credentials get a token
//! granting `pull` only if `anonymous_pull`, else a token granting nothing.
//!
//! Tokens are ES256 JWTs whose `x5c` header holds a self-signed certificate made
//! per server with the `openssl` CLI; the registry's `rootcertbundle` is that
//! certificate, which is how distribution 2.8 checks the signature
//! (registry/auth/token: the x5c chain must verify against the bundle). Claims:
//! iss `TOKEN_ISSUER`, sub (user, "" if anonymous), aud `TOKEN_SERVICE`, exp, nbf,
//! iat, jti, access `[{type, name, actions}]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// `service` in the registry's config, the challenge and the tokens' `aud`.
pub const TOKEN_SERVICE: &str = "devenv-test";
/// `issuer` in the registry's config and the tokens' `iss`.
pub const TOKEN_ISSUER: &str = "devenv-test-issuer";
/// Lifetime of a token, `expires_in` in the answer.
pub const TOKEN_EXPIRES_IN: u64 = 300;

/// One request the token endpoint answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenRequest {
    /// "GET" or "POST".
    pub method: String,
    /// The user name presented (Basic auth or the POST form), None if anonymous.
    pub user: Option<String>,
    /// The `scope` parameters as sent (decoded), e.g. "repository:a/b:pull".
    pub scopes: Vec<String>,
    /// The `service` parameter.
    pub service: Option<String>,
    /// 200, 401 (wrong credentials), 400, 404 or 405.
    pub status: u16,
    /// What the token grants, one "TYPE:NAME:ACTION,ACTION" per resource.
    pub granted: Vec<String>,
}

struct Inner {
    user: String,
    password: String,
    anonymous_pull: bool,
    key: PathBuf,
    /// Standard base64 of the certificate's DER, the `x5c` entry.
    x5c: String,
    requests: Mutex<Vec<TokenRequest>>,
    stop: AtomicBool,
}

pub struct TokenServer {
    addr: SocketAddr,
    cert: PathBuf,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Makes a key and certificate in `dir` and starts serving on 127.0.0.1:0.
    pub fn start(dir: &Path, user: &str, password: &str, anonymous_pull: bool) -> TokenServer {
        let key = dir.join("token-key.pem");
        let cert = dir.join("token-cert.pem");
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=devenv-test-token-signer",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                cert.to_str().unwrap(),
            ],
            &[],
        );
        let der = openssl(&["x509", "-in", cert.to_str().unwrap(), "-outform", "DER"], &[]);
        let inner = Arc::new(Inner {
            user: user.to_string(),
            password: password.to_string(),
            anonymous_pull,
            key,
            x5c: base64(&der, STD, true),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        let addr = listener.local_addr().expect("token server addr");
        let shared = inner.clone();
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    // Sequential is plenty: each answer takes a few milliseconds.
                    let _ = serve(&shared, conn);
                }
            }
        });
        TokenServer { addr, cert, inner, thread: Some(thread) }
    }

    /// "http://127.0.0.1:P/token"
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The self-signed certificate (PEM) the registry trusts.
    pub fn cert_path(&self) -> PathBuf {
        self.cert.clone()
    }

    pub fn requests(&self) -> Vec<TokenRequest> {
        self.inner.requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// A token for the configured user and `scope`, made without an HTTP request
    /// (so it is not in `requests()`).
    pub fn issue_for_owner(&self, scope: &str) -> String {
        let (access, _) = grant(&self.inner, true, &[scope.to_string()]);
        mint(&self.inner, &self.inner.user, access)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop, which then sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(inner: &Inner, mut conn: TcpStream) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let Some((head, mut body)) = read_head(&mut conn)? else { return Ok(()) };
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let target = request_line.next().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let header = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let mut params = parse_form(query);
    let mut creds = header("authorization").and_then(|v| {
        let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
        let text = String::from_utf8(unbase64(b64.trim())?).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    });
    if method == "POST" {
        let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while body.len() < len {
            let mut buf = [0u8; 4096];
            let n = conn.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        let form = parse_form(&String::from_utf8_lossy(&body));
        let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        if let (Some(u), Some(p)) = (get("username"), get("password")) {
            creds = Some((u, p));
        }
        params.extend(form);
    }
    let scopes: Vec<String> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect();
    let service = params.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone());
    let mut record = TokenRequest {
        method: method.clone(),
        user: creds.as_ref().map(|(u, _)| u.clone()),
        scopes: scopes.clone(),
        service,
        status: 200,
        granted: Vec::new(),
    };
    let response = if path != "/token" {
        record.status = 404;
        error(404, "NOT_FOUND", "no such endpoint")
    } else if method != "GET" && method != "POST" {
        record.status = 405;
        error(405, "UNSUPPORTED", "GET or POST")
    } else if creds.as_ref().is_some_and(|(u, p)| *u != inner.user || *p != inner.password) {
        record.status = 401;
        error(401, "UNAUTHORIZED", "authentication required")
    } else {
        let (access, granted) = grant(inner, creds.is_some(), &scopes);
        record.granted = granted;
        let sub = creds.as_ref().map(|(u, _)| u.as_str()).unwrap_or("");
        let token = mint(inner, sub, access);
        let body = json!({"token": token, "access_token": token, "expires_in": TOKEN_EXPIRES_IN});
        response(200, "application/json", &body.to_string())
    };
    inner.requests.lock().unwrap_or_else(PoisonError::into_inner).push(record);
    conn.write_all(response.as_bytes())?;
    conn.flush()
}

/// The `access` claim for `scopes`, and the same as "TYPE:NAME:ACTIONS" strings.
fn grant(inner: &Inner, authenticated: bool, scopes: &[String]) -> (Vec<Value>, Vec<String>) {
    let mut access = Vec::new();
    let mut granted = Vec::new();
    for scope in scopes {
        // "repository:NAME:pull,push"; NAME has no ':' (a registry host is not part of it).
        let mut parts = scope.splitn(3, ':');
        let (Some(kind), Some(name), Some(actions)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let allowed: Vec<&str> = actions
            .split(',')
            .filter(|a| authenticated || (inner.anonymous_pull && *a == "pull"))
            .collect();
        if allowed.is_empty() {
            continue;
        }
        access.push(json!({"type": kind, "name": name, "actions": allowed}));
        granted.push(format!("{kind}:{name}:{}", allowed.join(",")));
    }
    (access, granted)
}

/// A signed ES256 JWT for `sub` with the `access` claim.
fn mint(inner: &Inner, sub: &str, access: Vec<Value>) -> String {
    static JTI: AtomicU64 = AtomicU64::new(0);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [inner.x5c]});
    let claims = json!({
        "iss": TOKEN_ISSUER,
        "sub": sub,
        "aud": TOKEN_SERVICE,
        "exp": now + TOKEN_EXPIRES_IN,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{}-{}-{now}", std::process::id(), JTI.fetch_add(1, Ordering::Relaxed)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        base64(header.to_string().as_bytes(), URL, false),
        base64(claims.to_string().as_bytes(), URL, false)
    );
    let der = openssl(
        &["dgst", "-sha256", "-sign", inner.key.to_str().unwrap()],
        signing_input.as_bytes(),
    );
    format!("{signing_input}.{}", base64(&ecdsa_der_to_raw(&der), URL, false))
}

/// JWS ES256 wants r || s, 32 bytes each; openssl gives DER `SEQUENCE { INTEGER r, INTEGER s }`.
fn ecdsa_der_to_raw(der: &[u8]) -> Vec<u8> {
    assert_eq!(der.first(), Some(&0x30), "ECDSA signature is a DER sequence");
    // P-256 signatures are at most 72 bytes: the length is in short form.
    let mut pos = 2;
    let mut raw = Vec::with_capacity(64);
    for _ in 0..2 {
        assert_eq!(der[pos], 0x02, "DER integer");
        let len = der[pos + 1] as usize;
        let int = &der[pos + 2..pos + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
        pos += 2 + len;
    }
    raw
}

/// Runs `openssl ARGS` with `stdin`; returns stdout, panicking on failure.
fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run openssl (apt-get install openssl): {e}"));
    child.stdin.take().unwrap().write_all(stdin).expect("write openssl stdin");
    let out = child.wait_with_output().expect("wait for openssl");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Reads up to the blank line; returns the head and any body bytes read past it,
/// or None if the peer closed first.
pub(crate) fn read_head(conn: &mut TcpStream) -> std::io::Result<Option<(String, Vec<u8>)>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            return Ok(Some((head, buf[end + 4..].to_vec())));
        }
        if buf.len() > 64 * 1024 {
            return Ok(None);
        }
        let n = conn.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn response(status: u16, content_type: &str, body: &str) -> String {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let extra =
        if status == 401 { "WWW-Authenticate: Basic realm=\"devenv-test-token\"\r\n" } else { "" };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         {extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

/// A registry-style error answer (`{"errors":[{"code","message","detail"}]}`).
pub(crate) fn error(status: u16, code: &str, message: &str) -> String {
    let body = json!({"errors": [{"code": code, "message": message, "detail": null}]});
    response(status, "application/json; charset=utf-8", &body.to_string())
}

/// `a=b&c=d` with percent-decoding and `+` as space.
fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64 with `alphabet`, `=`-padded if `pad`.
pub fn base64(bytes: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (chunk[0] as u32) << 16
            | (*chunk.get(1).unwrap_or(&0) as u32) << 8
            | *chunk.get(2).unwrap_or(&0) as u32;
        for i in 0..=chunk.len() {
            out.push(alphabet[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
        if pad {
            out.push_str(&"=="[..3 - chunk.len()]);
        }
    }
    out
}

/// Standard or URL-safe base64, padded or not; None if malformed.
pub fn unbase64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = acc << 6 | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}
