//! The per-project supervisor: the one process that owns a running project's containers. It is
//! their subreaper, so it sees every exit and records its status; it is the only writer of the
//! project state while it runs; and it answers `up` and `down` on a unix socket under
//! DEVENV_HOME. Foreground `up` runs it in-process; `up -d` forks it (before any thread exists)
//! and waits for its readiness line on a pipe.

mod health;
mod policy;
pub mod protocol;
mod serve;
mod shared;
mod watching;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::Project;
use crate::engine::Engine;
use crate::events::{EventKind, EventSink};
use crate::state::{Home, ProjectState};
pub use policy::wants_restart;
use protocol::ProjectRef;
use shared::{summary, Shared};

/// How many events a slow reader of the event stream may fall behind before it skips ahead.
const EVENT_BACKLOG: usize = 1024;

/// Every how many housekeeping ticks (seconds) Docker's DOCKER-USER chain is re-checked.
const DOCKER_CHECK_TICKS: u64 = 5;

/// Why the supervisor stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `down` (or Ctrl-C in the foreground) removed the project.
    Down,
    /// The first reconcile failed; nothing of it was left behind.
    Failed,
    /// Asked to stop (SIGTERM when detached); containers keep running and a later `up` adopts
    /// them.
    Detached,
}

pub struct Supervisor {
    pub home: Home,
    pub engine: Engine,
    pub project: ProjectRef,
    /// In the foreground, Ctrl-C takes the project down, as Compose's `up` does.
    pub foreground: bool,
}

/// Messages the first reconcile sends to whoever waits for readiness.
pub type Ready = Box<dyn FnOnce(Result<String, String>) + Send>;

impl Supervisor {
    /// Runs the supervisor until the project is taken down. Builds its own tokio runtime, so the
    /// calling process must not have started one.
    pub fn run(self, ready: Ready) -> Exit {
        // Orphaned container processes are reparented to us, so their exits reach us.
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        rt.block_on(self.main(ready))
    }

    async fn main(mut self, ready: Ready) -> Exit {
        self.engine.events = EventSink::channel(EVENT_BACKLOG);
        print_events(&self.engine.events);
        let me = Shared::new(self.home.clone(), self.engine, self.project.clone());
        // Checks start with the containers, during the first reconcile already: dependents wait
        // for them.
        health::spawn(me.clone());
        // Handlers first: a container can exit during the first reconcile already.
        // Exits are reaped from the start, beside the first reconcile: a dependent may be
        // waiting for a one-shot service to complete.
        let mut sigchld = signal(SignalKind::child()).expect("SIGCHLD handler");
        let reaper = me.clone();
        tokio::spawn(async move {
            while sigchld.recv().await.is_some() {
                reaper.reap();
            }
        });
        let mut sigterm = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut sigint = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut first = {
            let me = me.clone();
            let project = self.project.clone();
            tokio::task::spawn_blocking(move || me.reconcile(Some(&project), true, false))
        };
        // Ctrl-C or SIGTERM during the first reconcile (which may wait long for a dependency
        // to be ready): the waits give up, and whatever the attempt made is removed.
        let mut interrupted = false;
        let first = tokio::select! {
            r = &mut first => r,
            _ = async { tokio::select! { _ = sigint.recv() => {}, _ = sigterm.recv() => {} } } => {
                interrupted = true;
                me.aborting.store(true, std::sync::atomic::Ordering::Relaxed);
                me.notify_ready();
                first.await
            }
        }
        .expect("reconcile task");
        if interrupted {
            if !me.name.lock().expect("name").is_empty() {
                let m = me.clone();
                tokio::task::spawn_blocking(move || m.down_blocking(false))
                    .await
                    .expect("down task");
            }
            ready(Err("interrupted while starting; everything it started was removed".into()));
            return Exit::Failed;
        }
        let name = me.name.lock().expect("name").clone();
        let listener = match first {
            Ok(outcome) => match bind(&self.home, &name) {
                Ok(l) => {
                    // `up` returns once the files are watched: an edit right after counts.
                    watching::spawn(me.clone());
                    me.watcher_caught_up().await;
                    ready(Ok(summary(&outcome)));
                    l
                }
                Err(e) => {
                    ready(Err(format!(
                        "cannot listen on {}: {e}",
                        self.home.socket(&name).display()
                    )));
                    me.down_blocking(false);
                    return Exit::Failed;
                }
            },
            Err(message) => {
                // A first attempt that left nothing leaves no state either.
                if !name.is_empty() && me.state.lock().expect("state").containers.is_empty() {
                    let _ = ProjectState::remove(&self.home.state_file(&name));
                }
                ready(Err(message));
                return Exit::Failed;
            }
        };

        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut ticks: u64 = 0;
        let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<Exit>(1);
        let exit = loop {
            tokio::select! {
                conn = listener.accept() => if let Ok((stream, _)) = conn {
                    tokio::spawn(serve::serve(me.clone(), stream, done_tx.clone()));
                },
                _ = tick.tick() => {
                    me.housekeeping();
                    ticks += 1;
                    // dockerd started after `up` would cut the bridge's traffic (FORWARD DROP):
                    // its DOCKER-USER rules are re-checked now and then (one iptables listing).
                    let network = me.state.lock().expect("state").network.clone();
                    if let (0, Some(net)) = (ticks % DOCKER_CHECK_TICKS, network) {
                        tokio::task::spawn_blocking(move || {
                            if let Err(e) = crate::network::firewall::ensure_docker_user(&net.bridge) {
                                tracing::warn!(error = %e, "re-adding the DOCKER-USER rules");
                            }
                        });
                    }
                }
                _ = sigint.recv(), if self.foreground => {
                    me.aborting.store(true, std::sync::atomic::Ordering::Relaxed);
                    let me = me.clone();
                    let _g = me.op.lock().await;
                    let m2 = me.clone();
                    tokio::task::spawn_blocking(move || m2.down_blocking(false)).await.expect("down task");
                    break Exit::Down;
                }
                _ = sigterm.recv() => {
                    if self.foreground {
                        me.aborting.store(true, std::sync::atomic::Ordering::Relaxed);
                        let m2 = me.clone();
                        tokio::task::spawn_blocking(move || m2.down_blocking(false)).await.expect("down task");
                        break Exit::Down;
                    }
                    break Exit::Detached;
                }
                Some(exit) = done_rx.recv() => break exit,
            }
        };
        let _ = std::fs::remove_file(self.home.socket(&name));
        if exit != Exit::Down {
            let mut st = me.state.lock().expect("state");
            st.supervisor = None;
            let _ = st.save(&self.home.state_file(&name));
        }
        exit
    }
}

/// The services to run: those named (with their dependencies), else every service whose
/// profiles are active.
pub fn wanted_services(
    project: &Project,
    pref: &ProjectRef,
) -> Result<Vec<String>, crate::graph::GraphError> {
    if pref.services.is_empty() {
        let active = |s: &crate::config::model::Service| {
            s.profiles.is_empty() || s.profiles.iter().any(|p| pref.profiles.contains(p))
        };
        Ok(project
            .model
            .services
            .iter()
            .filter(|(_, s)| active(s))
            .map(|(n, _)| n.clone())
            .collect())
    } else {
        let names: Vec<&str> = pref.services.iter().map(String::as_str).collect();
        project.graph.with_dependencies(&names)
    }
}

fn bind(home: &Home, project: &str) -> std::io::Result<UnixListener> {
    let path = home.socket(project);
    std::fs::create_dir_all(home.run_dir(project))?;
    // A socket file left by a supervisor that died is stale: nobody answers on it.
    if path.exists() && std::os::unix::net::UnixStream::connect(&path).is_err() {
        std::fs::remove_file(&path)?;
    }
    UnixListener::bind(&path)
}

/// Prints what the user should see on the supervisor's stderr: the terminal of a foreground
/// `up`, or the supervisor's log when detached. Container starts and exits are left out: a
/// foreground `up` prints each service's output already.
fn print_events(events: &EventSink) {
    let Some(mut rx) = events.subscribe() else { return };
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match rx.recv().await {
                Ok(e) => match e.kind {
                    EventKind::Starting { .. } | EventKind::Running { .. } => {}
                    kind => eprintln!("devenv: {kind}"),
                },
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Writes the readiness line to a pipe: `ok MESSAGE` or `error MESSAGE`.
pub fn pipe_ready(fd: OwnedFd) -> Ready {
    Box::new(move |r| {
        let mut f = std::fs::File::from(fd);
        let line = match r {
            Ok(m) => format!("ok {m}\n"),
            Err(m) => format!("error {m}\n"),
        };
        let _ = f.write_all(line.as_bytes());
    })
}

/// Where a detached supervisor writes its own diagnostics.
pub fn log_path(home: &Home, project: &str) -> PathBuf {
    home.run_dir(project).join("supervisor.log")
}
