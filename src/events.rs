//! What happens to a running project, as events: containers starting, running, exiting and
//! restarting, files synced, reconciles, errors. The supervisor publishes them on a broadcast
//! channel; `devenv events` and editor plugins read them as JSON lines from its socket (the
//! protocol is documented in README.md). The engine emits through an [`EventSink`], which is a
//! no-op when no supervisor listens (a CLI-only `down`).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

/// One event: when, and what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// RFC 3339 in UTC, with milliseconds.
    pub time: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// A container is being created for the service.
    Starting { service: String },
    /// Its process runs.
    Running { service: String, pid: i32 },
    /// Its process ended; `code` is None when devenv did not see the status.
    Exited { service: String, code: Option<i32> },
    /// Its healthcheck's status changed: `starting`, `healthy` or `unhealthy`.
    Health { service: String, status: String },
    /// Restarted (by a watch rule, `devenv restart` or `reload`), in `ms` milliseconds.
    Restarted { service: String, ms: u64 },
    /// Changed files were copied into (or deleted from) the container.
    Synced { service: String, files: usize, ms: u64 },
    /// A `signal` watch rule sent this signal.
    Signaled { service: String, signal: String },
    /// A `sync+exec` command ran, with its exit status.
    Executed { service: String, command: String, code: i32, ms: u64 },
    /// The project file was applied: what changed, in `ms` milliseconds.
    Reconciled { created: Vec<String>, recreated: Vec<String>, removed: Vec<String>, ms: u64 },
    /// Something worth telling that is not an error (a sync skipped on a bind mount).
    Note {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        message: String,
    },
    /// Something failed: an invalid edit, a restart that failed, a paused watch rule.
    Error {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        service: Option<String>,
        message: String,
    },
}

impl std::fmt::Display for EventKind {
    /// One line for people: `web restarted in 42 ms`.
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match self {
            EventKind::Starting { service } => write!(f, "{service} starting"),
            EventKind::Running { service, pid } => write!(f, "{service} running (pid {pid})"),
            EventKind::Exited { service, code: Some(c) } => write!(f, "{service} exited ({c})"),
            EventKind::Exited { service, code: None } => write!(f, "{service} exited"),
            EventKind::Health { service, status } => write!(f, "{service} is {status}"),
            EventKind::Restarted { service, ms } => write!(f, "{service} restarted in {ms} ms"),
            EventKind::Synced { service, files, ms } => {
                let s = if *files == 1 { "" } else { "s" };
                write!(f, "{service} synced {files} file{s} in {ms} ms")
            }
            EventKind::Signaled { service, signal } => write!(f, "{service} sent {signal}"),
            EventKind::Executed { service, command, code, ms } => {
                write!(f, "{service} ran `{command}`: exit {code} in {ms} ms")
            }
            EventKind::Reconciled { created, recreated, removed, ms } => {
                let list = |v: &[String]| if v.is_empty() { "-".into() } else { v.join(",") };
                write!(
                    f,
                    "reconciled in {ms} ms: created {}, recreated {}, removed {}",
                    list(created),
                    list(recreated),
                    list(removed)
                )
            }
            EventKind::Note { service: Some(s), message } => write!(f, "{s}: {message}"),
            EventKind::Error { service: Some(s), message } => write!(f, "{s}: error: {message}"),
            EventKind::Note { service: None, message } => f.write_str(message),
            // A project file's error starts with `error: ` already.
            EventKind::Error { service: None, message } if message.starts_with("error: ") => {
                f.write_str(message)
            }
            EventKind::Error { service: None, message } => write!(f, "error: {message}"),
        }
    }
}

/// Where the engine and the supervisor send events. Cloning shares the channel.
#[derive(Debug, Clone, Default)]
pub struct EventSink(Option<broadcast::Sender<Event>>);

impl EventSink {
    /// A sink that keeps the last `capacity` events for slow readers; a reader further behind
    /// skips ahead (it is told how many it missed).
    pub fn channel(capacity: usize) -> EventSink {
        EventSink(Some(broadcast::channel(capacity).0))
    }

    /// Publishes an event, stamped now. Never blocks; with no reader it is dropped.
    pub fn emit(&self, kind: EventKind) {
        tracing::debug!(event = %kind, "event");
        if let Some(tx) = &self.0 {
            let _ = tx.send(Event { time: crate::clock::rfc3339_millis(SystemTime::now()), kind });
        }
    }

    /// A new reader of the events published from now on; None for the no-op sink.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Event>> {
        self.0.as_ref().map(broadcast::Sender::subscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_flat_json_lines() {
        let e = Event {
            time: "2024-01-01T00:00:00.250Z".into(),
            kind: EventKind::Restarted { service: "web".into(), ms: 42 },
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"time":"2024-01-01T00:00:00.250Z","event":"restarted","service":"web","ms":42}"#
        );
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(e.kind.to_string(), "web restarted in 42 ms");
    }

    #[test]
    fn a_sink_delivers_to_subscribers_only() {
        EventSink::default().emit(EventKind::Starting { service: "a".into() });
        let sink = EventSink::channel(8);
        let mut rx = sink.subscribe().unwrap();
        sink.emit(EventKind::Exited { service: "a".into(), code: Some(3) });
        let got = rx.try_recv().unwrap();
        assert_eq!(got.kind, EventKind::Exited { service: "a".into(), code: Some(3) });
        assert!(got.time.ends_with('Z'));
    }
}
