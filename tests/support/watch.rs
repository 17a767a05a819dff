//! Helpers for live-edit tests and benchmarks: following `devenv events --format json` from a
//! child process with timeouts, HTTP checks with curl that wait for a body, and requests on the
//! supervisor's control socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::env::DevEnv;

/// `devenv events --format json`, running as a child process; its lines are parsed on a
/// thread, and the test takes them with a timeout. Killed (and reaped) when dropped.
pub struct Events {
    child: Child,
    rx: Receiver<Value>,
    /// Every event taken so far, for failure messages and later searches.
    pub seen: Vec<Value>,
}

impl Events {
    /// Starts following the events of `env`'s running project. Returns once the supervisor has
    /// accepted the connection (and a moment more for it to subscribe), so that what the test
    /// does next is seen.
    pub fn follow(env: &DevEnv) -> Events {
        Events::spawn(env, true)
    }

    /// `devenv events` in its text form: each line comes as a JSON string.
    pub fn follow_text(env: &DevEnv) -> Events {
        Events::spawn(env, false)
    }

    fn spawn(env: &DevEnv, json: bool) -> Events {
        let socket = control_socket(env);
        let before = socket_connections(&socket);
        let args: &[&str] = if json { &["events", "--format", "json"] } else { &["events"] };
        let mut child = env
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn devenv events");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let v = match json {
                    true => serde_json::from_str(&line)
                        .unwrap_or_else(|e| panic!("devenv events printed {line:?}: {e}")),
                    false => Value::String(line),
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        // The supervisor's side of an accepted connection shows in /proc/net/unix under the
        // socket's path; subscribing follows at once in the supervisor's connection task.
        let deadline = Instant::now() + Duration::from_secs(5);
        while socket_connections(&socket) <= before && Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("devenv events exited at once: {status}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        Events { child, rx, seen: Vec::new() }
    }

    /// Waits up to `secs` seconds for an event for which `pred` holds (events already taken
    /// are searched first); returns it. Panics listing every event seen on timeout.
    pub fn wait_for(&mut self, secs: u64, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        self.wait_from(0, secs, what, pred)
    }

    /// As [`Events::wait_for`], but only events from index `start` of [`Events::seen`] on count
    /// (`start` = `seen.len()` earlier: only events taken since then).
    pub fn wait_from(
        &mut self,
        start: usize,
        secs: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().skip(start).find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!("timed out waiting for {what}; events seen:\n{}", self.dump())
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("the event stream ended before {what}; events seen:\n{}", self.dump())
                }
            }
        }
    }

    /// Takes every event that arrives within `dur` (plus those already queued).
    pub fn drain_for(&mut self, dur: Duration) -> Vec<Value> {
        let deadline = Instant::now() + dur;
        let mut got = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    got.push(v);
                }
                Err(_) => return got,
            }
        }
    }

    /// Every event seen so far, one JSON line each.
    pub fn dump(&self) -> String {
        self.seen.iter().map(|v| format!("  {v}\n")).collect()
    }

    /// Whether `devenv events` has exited (the supervisor closed the stream).
    pub fn exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event of `kind` about `service`.
pub fn is_event(v: &Value, kind: &str, service: &str) -> bool {
    v["event"] == kind && v["service"] == service
}

/// How many of `events` are of `kind` about `service`.
pub fn count(events: &[Value], kind: &str, service: &str) -> usize {
    events.iter().filter(|v| is_event(v, kind, service)).count()
}

/// The number of connections to a unix socket path that /proc/net/unix lists (the listener
/// and the server's side of every accepted connection).
fn socket_connections(socket: &std::path::Path) -> usize {
    let path = socket.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split_whitespace().nth(7) == Some(path.as_str()))
        .count()
}

/// `$DEVENV_HOME/run/<project>/control.sock` of `env`'s project.
pub fn control_socket(env: &DevEnv) -> PathBuf {
    env.home.path().join("run").join(&env.project).join("control.sock")
}

/// Sends one raw request line to the supervisor's socket; returns its one-line answer, parsed.
pub fn control(env: &DevEnv, request: &str) -> Value {
    let stream = UnixStream::connect(control_socket(env)).expect("connect to control.sock");
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    (&stream).write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).expect("read the answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer {line:?}: {e}"))
}

/// An HTTP GET with curl: `(status, body)`, or None when nothing answers. The connect timeout is
/// short: a restart replaces the container's network namespace, and a SYN sent to its address in
/// that window is dropped, which would leave curl waiting a second for TCP to send it again.
pub fn http_get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--connect-timeout", "0.2", "--max-time", "2", "-w", "\n%{http_code}", url])
        .output()
        .expect("run curl");
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n')?;
    Some((code.trim().parse().ok()?, body.to_owned()))
}

/// The body of a 200 answer, or None.
pub fn http_body(url: &str) -> Option<String> {
    http_get(url).filter(|(code, _)| *code == 200).map(|(_, body)| body)
}

/// Waits up to `secs` seconds for `url` to answer 200 with exactly `body`; returns how long it
/// took. Panics with the last answer on timeout.
pub fn wait_for_body(secs: u64, url: &str, body: &str) -> Duration {
    wait_for_answer(secs, url, 200, Some(body))
}

/// Waits up to `secs` seconds for `url` to answer with status `code` (and `body`, if given).
pub fn wait_for_answer(secs: u64, url: &str, code: u16, body: Option<&str>) -> Duration {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut last = None;
    while Instant::now() < deadline {
        last = http_get(url);
        if let Some((c, b)) = &last {
            if *c == code && body.is_none_or(|want| want == b) {
                return start.elapsed();
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {url} to answer {code} {body:?}; last answer: {last:?}");
}

/// Whether process `pid` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
        .unwrap_or(false)
}
