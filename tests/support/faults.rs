//! A fault-injecting HTTP/1.1 proxy in front of a registry, for the pull tests'
//! failure cases. Plain std: a `TcpListener` on `127.0.0.1:0`, a thread per
//! connection, one upstream connection per request.
//!
//! Every request is forwarded as is (method, target, headers, `Range`, body)
//! except that `Connection: close` replaces any Connection/Keep-Alive header, on
//! the way up and on the way back down; the body is streamed until the upstream
//! closes. So a client gets one request per connection and must reconnect.
//!
//! Blob requests are `GET /v2/<name>/blobs/<digest>` (not uploads). Faults on
//! blobs apply only to their 200 and 206 answers (never to a 401 challenge).
//! Registry for the "registry is down" case: `registry::down_addr()`.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::token::{error, read_head};

/// What the proxy does wrong.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards everything faithfully.
    None,
    /// The first `times` requests (of any kind, `GET /v2/` included) get
    /// `500 Internal Server Error` with a registry-style JSON body
    /// (`{"errors":[{"code":"UNKNOWN","message":"injected fault",..}]}`) without
    /// reaching the registry; later ones are forwarded.
    Status500 { times: u32 },
    /// Like `Status500`, but only for the first `times` blob GETs; everything
    /// else (ping, token challenge, manifests) is forwarded.
    Status500OnBlobs { times: u32 },
    /// The first `times` blob answers (200 or 206) are cut after the headers and
    /// `after_bytes` bytes of the body: the proxy closes the connection although
    /// Content-Length promised more. Later ones are forwarded whole.
    CloseMidBlob { after_bytes: u64, times: u32 },
    /// Every blob answer (200 or 206) has one byte flipped (XOR 0xff), at half
    /// its Content-Length (at 0 without one); the length is unchanged.
    CorruptBlob,
}

/// One request the proxy received, as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxiedRequest {
    pub method: String,
    /// Request target, e.g. "/v2/devenv-test/x/blobs/sha256:...".
    pub target: String,
    /// The `Range` header, if any (forwarded unchanged).
    pub range: Option<String>,
    /// Status sent to the client (0 if the upstream could not be reached or
    /// answered nothing; the client then gets a 502).
    pub status: u16,
    /// Body bytes sent to the client.
    pub body_bytes: u64,
    /// Whether this answer was faulted (500, cut or corrupted).
    pub faulted: bool,
}

impl ProxiedRequest {
    /// `GET /v2/<name>/blobs/<digest>`
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && is_blob_path(&self.target)
    }
}

struct State {
    fault: Fault,
    /// Faults injected so far (500s, cuts or corruptions).
    injected: u32,
    requests: Vec<ProxiedRequest>,
    /// Connections accepted whose handler has not finished: a client may have its whole answer
    /// while the handler is still logging the request.
    in_flight: usize,
}

pub struct FaultProxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:0 forwarding to `upstream` ("127.0.0.1:PORT").
    pub fn start(upstream: &str, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault proxy");
        let addr = listener.local_addr().expect("fault proxy addr");
        let state =
            Arc::new(Mutex::new(State { fault, injected: 0, requests: Vec::new(), in_flight: 0 }));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2, upstream) = (state.clone(), stop.clone(), upstream.to_string());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (state, upstream) = (state2.clone(), upstream.clone());
                state.lock().unwrap_or_else(PoisonError::into_inner).in_flight += 1;
                std::thread::spawn(move || {
                    handle(conn, &upstream, &state);
                    state.lock().unwrap_or_else(PoisonError::into_inner).in_flight -= 1;
                });
            }
        });
        FaultProxy { addr, state, stop, thread: Some(thread) }
    }

    /// "127.0.0.1:PORT"
    pub fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// "http://127.0.0.1:PORT"
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests answered so far (a request is logged once its answer is sent or cut).
    pub fn request_count(&self) -> usize {
        self.settled().requests.len()
    }

    /// Requests answered so far, in the order their answers finished.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        self.settled().requests.clone()
    }

    /// The state once every accepted connection's handler has finished (at most 2 s): the
    /// client may already hold its answer while the handler is still logging it.
    fn settled(&self) -> std::sync::MutexGuard<'_, State> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            let s = self.lock();
            if s.in_flight == 0 || std::time::Instant::now() > deadline {
                return s;
            }
            drop(s);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// How many answers were faulted so far.
    pub fn faults_injected(&self) -> u32 {
        self.lock().injected
    }

    /// Changes the fault from now on (and resets the count `times` is checked against).
    pub fn set_fault(&self, fault: Fault) {
        let mut s = self.lock();
        s.fault = fault;
        s.injected = 0;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn is_blob_path(target: &str) -> bool {
    let path = target.split('?').next().unwrap_or("");
    path.starts_with("/v2/") && path.contains("/blobs/") && !path.contains("/blobs/uploads")
}

/// Drops Connection and Keep-Alive headers and adds `Connection: close`.
fn close_head(head: &str) -> String {
    let mut out = String::new();
    for (i, line) in head.split("\r\n").enumerate() {
        let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
        if i > 0 && matches!(name.as_str(), "connection" | "keep-alive" | "proxy-connection") {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out + "Connection: close\r\n\r\n"
}

fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn handle(mut client: TcpStream, upstream: &str, state: &Mutex<State>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    // A TLS ClientHello (clients such as skopeo try https first): answer at once like
    // the registry (Go's net/http) does, or the client waits for its handshake timeout.
    let mut first = [0u8; 1];
    if client.peek(&mut first).is_ok_and(|n| n == 1) && first[0] == 0x16 {
        let _ = client.write_all(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
        );
        let _ = client.shutdown(Shutdown::Both);
        return;
    }
    let Ok(Some((head, early_body))) = read_head(&mut client) else { return };
    let mut words = head.split(' ');
    let method = words.next().unwrap_or("").to_string();
    let target = words.next().unwrap_or("").to_string();
    let mut rec = ProxiedRequest {
        range: header(&head, "range"),
        method,
        target,
        status: 0,
        body_bytes: 0,
        faulted: false,
    };
    let blob_get = rec.is_blob_get();
    let lock = || state.lock().unwrap_or_else(PoisonError::into_inner);

    let fail_500 = {
        let mut s = lock();
        match s.fault {
            Fault::Status500 { times } if s.injected < times => {
                s.injected += 1;
                true
            }
            Fault::Status500OnBlobs { times } if blob_get && s.injected < times => {
                s.injected += 1;
                true
            }
            _ => false,
        }
    };
    if fail_500 {
        let answer = error(500, "UNKNOWN", "injected fault");
        rec.status = 500;
        rec.faulted = true;
        rec.body_bytes = answer.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len()) as u64;
        lock().requests.push(rec);
        let _ = client.write_all(answer.as_bytes());
        finish(client, None);
        return;
    }

    let up = TcpStream::connect(upstream).and_then(|mut up| {
        up.write_all(close_head(&head).as_bytes())?;
        up.write_all(&early_body)?;
        Ok(up)
    });
    let Ok(mut up) = up else {
        let _ = client.write_all(error(502, "UNAVAILABLE", "upstream unreachable").as_bytes());
        lock().requests.push(rec);
        finish(client, None);
        return;
    };
    // The rest of a request body (pushes), streamed up while the answer comes down.
    let body_up = {
        let (mut from, mut to) =
            (client.try_clone().expect("dup client"), up.try_clone().expect("dup upstream"));
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let mut upstream_open = true;
            // Drain until the client closes, even once the upstream is gone: closing a
            // socket with unread input sends RST, which can destroy the answer in flight.
            while let Ok(n) = from.read(&mut buf) {
                if n == 0 {
                    break;
                }
                upstream_open = upstream_open && to.write_all(&buf[..n]).is_ok();
            }
        })
    };

    let _ = up.set_read_timeout(Some(Duration::from_secs(60)));
    let Ok(Some((resp_head, first))) = read_head(&mut up) else {
        let _ = client.write_all(error(502, "UNAVAILABLE", "upstream sent no answer").as_bytes());
        lock().requests.push(rec);
        finish(client, Some(body_up));
        return;
    };
    rec.status = resp_head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: Option<u64> = header(&resp_head, "content-length").and_then(|v| v.parse().ok());
    // (cut after N bytes, corrupt byte at offset)
    let (cut, corrupt_at) = {
        let mut s = lock();
        let eligible = blob_get && matches!(rec.status, 200 | 206);
        match s.fault {
            Fault::CloseMidBlob { after_bytes, times } if eligible && s.injected < times => {
                s.injected += 1;
                (Some(after_bytes), None)
            }
            Fault::CorruptBlob if eligible => {
                s.injected += 1;
                (None, Some(length.map_or(0, |l| l / 2)))
            }
            _ => (None, None),
        }
    };
    rec.faulted = cut.is_some() || corrupt_at.is_some();
    let mut ok = client.write_all(close_head(&resp_head).as_bytes()).is_ok();
    let mut pending = first;
    let mut buf = vec![0u8; 64 * 1024];
    while ok {
        if pending.is_empty() {
            match up.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        let mut chunk = std::mem::take(&mut pending);
        if let Some(limit) = cut {
            chunk.truncate(limit.saturating_sub(rec.body_bytes) as usize);
        }
        if let Some(at) = corrupt_at {
            if at >= rec.body_bytes && at < rec.body_bytes + chunk.len() as u64 {
                chunk[(at - rec.body_bytes) as usize] ^= 0xff;
            }
        }
        ok = client.write_all(&chunk).is_ok();
        rec.body_bytes += chunk.len() as u64;
        if cut.is_some_and(|limit| rec.body_bytes >= limit) {
            break;
        }
    }
    let _ = up.shutdown(Shutdown::Both);
    lock().requests.push(rec);
    finish(client, Some(body_up));
}

/// Ends the answer (FIN) and lets the client close first; see the drain above.
fn finish(client: TcpStream, drain: Option<JoinHandle<()>>) {
    let _ = client.shutdown(Shutdown::Write);
    match drain {
        Some(t) => {
            drop(client);
            let _ = t.join();
        }
        None => {
            let mut c = client;
            let mut buf = [0u8; 4096];
            while matches!(c.read(&mut buf), Ok(n) if n > 0) {}
        }
    }
}
