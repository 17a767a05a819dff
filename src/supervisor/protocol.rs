//! The supervisor's control protocol: one JSON object per line on a unix socket under
//! DEVENV_HOME (`$DEVENV_HOME/run/<project>/control.sock`), a request from the client and a
//! response from the supervisor; `events` instead keeps the connection open and streams one
//! [`crate::events::Event`] per line. Editor plugins speak it too: README.md documents it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::LoadOptions;

/// How to load the project, as the client saw it (its directory and environment), and which
/// services it asked for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ProjectRef {
    pub options: LoadOptions,
    pub profiles: Vec<String>,
    /// Services named on the command line; all active ones when empty.
    pub services: Vec<String>,
    /// `up --no-watch`: neither watch rules nor the project file are watched.
    #[serde(default)]
    pub no_watch: bool,
    /// `up --debounce`: how long changes must have stopped before acting; 50 ms when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub debounce_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Converge the project to its file.
    Reconcile {
        project: Box<ProjectRef>,
    },
    /// Stop and remove everything, then exit.
    Down {
        volumes: bool,
    },
    Ping,
    /// Apply the project file now, then restart these services (every service with watch rules
    /// when empty) unless the reconcile just created them.
    Reload {
        #[serde(default)]
        services: Vec<String>,
    },
    /// Restart these services' containers in place.
    Restart {
        services: Vec<String>,
    },
    /// The project's services and watch rules.
    Status,
    /// Stream events, one JSON object per line, until the client hangs up.
    Events,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok {
        message: String,
        /// The answer to `status`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Box<StatusReport>>,
    },
    Error {
        message: String,
    },
}

impl Response {
    pub fn ok(message: impl Into<String>) -> Response {
        Response::Ok { message: message.into(), report: None }
    }
}

/// What `status` answers: each service's container and the watch rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    pub project: String,
    /// False with `up --no-watch`.
    pub watching: bool,
    pub services: Vec<ServiceStatus>,
    pub rules: Vec<RuleStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    pub service: String,
    /// `running`, `restarting`, `exited`, `created` or `creating`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// One watch rule of a running service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleStatus {
    pub service: String,
    /// Its index in the service's `watch` list.
    pub rule: usize,
    pub path: String,
    pub action: String,
    /// Paused by the loop guard.
    pub paused: bool,
}

/// Sends one request and waits for the response. `Ok(None)` when no supervisor listens.
pub fn call(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> std::io::Result<Option<Response>> {
    // A supervisor that is exiting can reset a connection it will never accept; ask again, and
    // the socket then either answers or refuses.
    for _ in 0..20 {
        match call_once(socket, req, timeout) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                std::thread::sleep(Duration::from_millis(10))
            }
            other => return other,
        }
    }
    call_once(socket, req, timeout)
}

fn call_once(
    socket: &Path,
    req: &Request,
    timeout: Option<Duration>,
) -> std::io::Result<Option<Response>> {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(timeout)?;
    let mut line = serde_json::to_string(req).expect("a request serializes");
    line.push('\n');
    (&stream).write_all(line.as_bytes())?;
    let mut reply = String::new();
    BufReader::new(&stream).read_line(&mut reply)?;
    serde_json::from_str(&reply).map(Some).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("bad reply from the supervisor: {e}"),
        )
    })
}

/// Sends `req` and hands every line the supervisor writes to `line` until it closes the
/// connection or `line` returns false. `Ok(false)` when no supervisor listens.
pub fn stream(
    socket: &Path,
    req: &Request,
    line: &mut dyn FnMut(&str) -> bool,
) -> std::io::Result<bool> {
    let stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(false)
        }
        Err(e) => return Err(e),
    };
    let mut out = serde_json::to_string(req).expect("a request serializes");
    out.push('\n');
    (&stream).write_all(out.as_bytes())?;
    for l in BufReader::new(&stream).lines() {
        if !line(&l?) {
            break;
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request lines README.md documents for editor plugins.
    #[test]
    fn documented_requests_parse() {
        let parse = |s: &str| serde_json::from_str::<Request>(s).unwrap();
        assert!(
            matches!(parse(r#"{"op":"reload"}"#), Request::Reload { services } if services.is_empty())
        );
        assert!(
            matches!(parse(r#"{"op":"reload","services":["app"]}"#), Request::Reload { services } if services == ["app"])
        );
        assert!(
            matches!(parse(r#"{"op":"restart","services":["app","web"]}"#), Request::Restart { services } if services.len() == 2)
        );
        assert!(matches!(parse(r#"{"op":"status"}"#), Request::Status));
        assert!(matches!(parse(r#"{"op":"events"}"#), Request::Events));
        assert!(serde_json::from_str::<Request>(r#"{"op":"bogus"}"#).is_err());
    }

    #[test]
    fn responses_are_one_flat_object() {
        let ok = serde_json::to_string(&Response::ok("app restarted in 58 ms")).unwrap();
        assert_eq!(ok, r#"{"status":"ok","message":"app restarted in 58 ms"}"#);
        let report = StatusReport {
            project: "p".into(),
            watching: true,
            services: vec![ServiceStatus {
                service: "app".into(),
                state: "running".into(),
                exit_code: None,
                pid: Some(4242),
                ip_address: Some("10.89.0.3".into()),
            }],
            rules: vec![],
        };
        let status = Response::Ok { message: String::new(), report: Some(Box::new(report)) };
        let json = serde_json::to_string(&status).unwrap();
        assert_eq!(
            json,
            r#"{"status":"ok","message":"","report":{"project":"p","watching":true,"services":[{"service":"app","state":"running","pid":4242,"ip_address":"10.89.0.3"}],"rules":[]}}"#
        );
        assert_eq!(serde_json::from_str::<Response>(&json).unwrap(), status);
    }
}
