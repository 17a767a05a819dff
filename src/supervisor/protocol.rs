//! The supervisor's control protocol: one JSON object per line on a unix socket under
//! DEVENV_HOME, a request from the client and a response from the supervisor.

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
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    Ok { message: String },
    Error { message: String },
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
