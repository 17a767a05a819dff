//! The per-project supervisor: the one process that owns a running project's containers. It is
//! their subreaper, so it sees every exit and records its status; it is the only writer of the
//! project state while it runs; and it answers `up` and `down` on a unix socket under
//! DEVENV_HOME. Foreground `up` runs it in-process; `up -d` forks it (before any thread exists)
//! and waits for its readiness line on a pipe.

pub mod protocol;

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{self, Project};
use crate::engine::Engine;
use crate::state::{process_start_time, ContainerStatus, Home, ProjectState};
use protocol::{ProjectRef, Request, Response};

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

    async fn main(self, ready: Ready) -> Exit {
        let me = Arc::new(Shared {
            home: self.home.clone(),
            engine: self.engine,
            state: Mutex::new(ProjectState::default()),
            op: tokio::sync::Mutex::new(()),
            name: Mutex::new(String::new()),
            stop_layers: Mutex::new(Vec::new()),
        });
        // Handlers first: a container can exit during the first reconcile already.
        let mut sigchld = signal(SignalKind::child()).expect("SIGCHLD handler");
        let mut sigterm = signal(SignalKind::terminate()).expect("SIGTERM handler");
        let mut sigint = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let first = {
            let me = me.clone();
            let project = self.project.clone();
            tokio::task::spawn_blocking(move || me.reconcile(&project, true))
                .await
                .expect("reconcile task")
        };
        let name = me.name.lock().expect("name").clone();
        let listener = match first {
            Ok(message) => match bind(&self.home, &name) {
                Ok(l) => {
                    ready(Ok(message));
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
                    tokio::spawn(serve(me.clone(), stream, done_tx.clone()));
                },
                _ = sigchld.recv() => me.reap(),
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
                    let me = me.clone();
                    let _g = me.op.lock().await;
                    let m2 = me.clone();
                    tokio::task::spawn_blocking(move || m2.down_blocking(false)).await.expect("down task");
                    break Exit::Down;
                }
                _ = sigterm.recv() => {
                    if self.foreground {
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

/// What the event loop and the blocking tasks share.
struct Shared {
    home: Home,
    engine: Engine,
    state: Mutex<ProjectState>,
    /// One reconcile or down at a time.
    op: tokio::sync::Mutex<()>,
    name: Mutex<String>,
    /// The stop order of the project as last reconciled.
    stop_layers: Mutex<Vec<Vec<String>>>,
}

impl Shared {
    fn reconcile(&self, pref: &ProjectRef, first: bool) -> Result<String, String> {
        let project = config::load(&pref.options).map_err(|e| e.to_string())?;
        *self.name.lock().expect("name") = project.name.clone();
        *self.stop_layers.lock().expect("layers") = project.graph.stop_layers();
        let state_file = self.home.state_file(&project.name);
        if first {
            let mut saved =
                ProjectState::load(&state_file).map_err(|e| e.to_string())?.unwrap_or_default();
            saved.project = project.name.clone();
            saved.file = project.file.clone();
            saved.dir = project.dir.clone();
            let me = std::process::id() as i32;
            saved.supervisor = process_start_time(me).map(|t| (me, t));
            *self.state.lock().expect("state") = saved;
        }
        let wanted = wanted_services(&project, pref).map_err(|e| e.to_string())?;
        let outcome = self.engine.reconcile(&project, &wanted, &self.state, &state_file);
        let st = self.state.lock().expect("state");
        let _ = st.save(&state_file);
        match outcome {
            Ok(o) => Ok(format!(
                "{} created, {} recreated, {} removed, {} unchanged",
                o.created.len(),
                o.recreated.len(),
                o.removed.len(),
                o.kept.len()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn down_blocking(&self, volumes: bool) -> Vec<String> {
        let name = self.name.lock().expect("name").clone();
        let layers = self.stop_layers.lock().expect("layers").clone();
        let errors: Vec<String> = self
            .engine
            .down(&name, &self.state, &layers, volumes)
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = ProjectState::remove(&self.home.state_file(&name));
        errors
    }

    /// Records the exit status of every container process that has ended.
    fn reap(&self) {
        let mut st = self.state.lock().expect("state");
        let mut changed = false;
        for rec in st.containers.values_mut() {
            let Some(pid) = rec.pid else { continue };
            if !matches!(rec.status, ContainerStatus::Running | ContainerStatus::Created) {
                continue;
            }
            use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
            let status = match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            {
                Ok(WaitStatus::Exited(_, code)) => Some(Some(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(Some(128 + sig as i32)),
                _ => None,
            };
            if let Some(code) = status {
                rec.status = ContainerStatus::Exited { code };
                changed = true;
            }
        }
        if changed {
            let _ = st.save(&self.home.state_file(&st.project));
        }
    }

    /// Once a second: containers that are not our children (adopted after a supervisor crash)
    /// are checked by pid and start time, and large logs are rotated.
    fn housekeeping(&self) {
        // SIGCHLDs coalesce; a periodic reap catches any exit whose signal merged with another.
        self.reap();
        let mut st = self.state.lock().expect("state");
        let project = st.project.clone();
        let mut changed = false;
        for rec in st.containers.values_mut() {
            if rec.status == ContainerStatus::Running && !rec.is_running() {
                rec.status = ContainerStatus::Exited { code: None };
                changed = true;
            }
            let _ = crate::logs::rotate_if_large(&self.home.log_file(&project, &rec.service));
        }
        if changed {
            let _ = st.save(&self.home.state_file(&st.project));
        }
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

async fn serve(me: Arc<Shared>, stream: UnixStream, done: tokio::sync::mpsc::Sender<Exit>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let Ok(Some(line)) = lines.next_line().await else { return };
    let response = match serde_json::from_str::<Request>(&line) {
        Err(e) => Response::Error { message: format!("bad request: {e}") },
        Ok(Request::Ping) => Response::Ok { message: "pong".into() },
        Ok(Request::Reconcile { project }) => {
            let _g = me.op.lock().await;
            let m = me.clone();
            match tokio::task::spawn_blocking(move || m.reconcile(&project, false))
                .await
                .expect("reconcile task")
            {
                Ok(message) => Response::Ok { message },
                Err(message) => Response::Error { message },
            }
        }
        Ok(Request::Down { volumes }) => {
            let _g = me.op.lock().await;
            let m = me.clone();
            let errors = tokio::task::spawn_blocking(move || m.down_blocking(volumes))
                .await
                .expect("down task");
            let response = if errors.is_empty() {
                Response::Ok { message: "removed".into() }
            } else {
                Response::Error { message: errors.join("\n") }
            };
            // Answer before the loop exits and drops this task.
            reply(&mut write, &response).await;
            let _ = done.send(Exit::Down).await;
            return;
        }
    };
    reply(&mut write, &response).await;
}

async fn reply(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) {
    let mut out = serde_json::to_string(response).expect("a response serializes");
    out.push('\n');
    let _ = write.write_all(out.as_bytes()).await;
    let _ = write.shutdown().await;
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
