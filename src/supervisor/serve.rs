//! One connection to the supervisor's socket: read the request line, answer it (see
//! `protocol.rs`), or, for `events`, stream events until the client hangs up.

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::broadcast::error::RecvError;

use super::protocol::{Request, Response};
use super::shared::{summary, Shared};
use super::Exit;
use crate::events::EventKind;

pub(super) async fn serve(
    me: Arc<Shared>,
    stream: UnixStream,
    done: tokio::sync::mpsc::Sender<Exit>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else { return };
    let request = match serde_json::from_str::<Request>(&line) {
        Ok(r) => r,
        Err(e) => {
            let message = format!(
                "bad request: {e}; expected one JSON object per line, like {{\"op\":\"status\"}}"
            );
            return reply(&mut write, &Response::Error { message }).await;
        }
    };
    let blocking = |f: Box<dyn FnOnce(&Shared) -> Response + Send>| {
        let me = me.clone();
        async move {
            let _g = me.op.lock().await;
            let m = me.clone();
            tokio::task::spawn_blocking(move || f(&m)).await.expect("supervisor task")
        }
    };
    let response = match request {
        Request::Ping => Response::ok("pong"),
        Request::Status => {
            Response::Ok { message: String::new(), report: Some(Box::new(me.status())) }
        }
        Request::Events => return stream_events(&me, lines, write).await,
        Request::Reconcile { project } => {
            let r = blocking(Box::new(move |m| match m.reconcile(Some(&project), false, false) {
                Ok(o) => Response::ok(summary(&o)),
                Err(message) => Response::Error { message },
            }))
            .await;
            me.watcher_caught_up().await;
            r
        }
        Request::Reload { services } => {
            let r = blocking(Box::new(move |m| match m.reload(&services) {
                Ok(message) => Response::ok(message),
                Err(message) => Response::Error { message },
            }))
            .await;
            me.watcher_caught_up().await;
            r
        }
        Request::Restart { services } if services.is_empty() => {
            Response::Error { message: "restart: name at least one service".into() }
        }
        Request::Restart { services } => {
            blocking(Box::new(move |m| match m.restart(&services) {
                Ok(done) => Response::ok(
                    done.iter()
                        .map(|(s, ms)| format!("{s} restarted in {ms} ms"))
                        .collect::<Vec<_>>()
                        .join("; "),
                ),
                Err(message) => Response::Error { message },
            }))
            .await
        }
        Request::Down { volumes } => {
            me.aborting.store(true, std::sync::atomic::Ordering::Relaxed);
            let response = blocking(Box::new(move |m| {
                let errors = m.down_blocking(volumes);
                match errors.is_empty() {
                    true => Response::ok("removed"),
                    false => Response::Error { message: errors.join("\n") },
                }
            }))
            .await;
            // Answer before the loop exits and drops this task.
            reply(&mut write, &response).await;
            let _ = done.send(Exit::Down).await;
            return;
        }
    };
    reply(&mut write, &response).await;
}

async fn reply(write: &mut OwnedWriteHalf, response: &Response) {
    let mut out = serde_json::to_string(response).expect("a response serializes");
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
}

/// Writes every event as a JSON line until the client closes its end (or the supervisor
/// exits). A reader too slow to keep up is told how many events it missed.
async fn stream_events(
    me: &Shared,
    mut lines: tokio::io::Lines<BufReader<tokio::net::unix::OwnedReadHalf>>,
    mut write: OwnedWriteHalf,
) {
    let Some(mut rx) = me.engine.events.subscribe() else { return };
    loop {
        let event = tokio::select! {
            e = rx.recv() => e,
            // EOF or anything else from the client ends the stream.
            _ = lines.next_line() => return,
        };
        let event = match event {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => crate::events::Event {
                time: crate::clock::rfc3339_millis(std::time::SystemTime::now()),
                kind: EventKind::Error {
                    service: None,
                    message: format!("{n} events were dropped: this reader was too slow"),
                },
            },
            Err(RecvError::Closed) => return,
        };
        let mut line = serde_json::to_string(&event).expect("an event serializes");
        line.push('\n');
        if write.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}
