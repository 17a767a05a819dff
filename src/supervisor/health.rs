//! Healthchecks of the running containers, and the answers to "is this dependency ready?" that
//! the engine asks before starting a dependent (`depends_on` conditions).
//!
//! Each container with a check gets a task once it runs (the `running` event): it runs the check
//! inside the container with `devenv __exec` (a single-threaded helper process; exec forks and
//! joins namespaces) on the schedule of [`crate::health::Tracker`], saves the status and the last
//! results in the container's record (for `ps`, `inspect` and `up --wait`), and wakes whoever
//! waits. It ends when that container is gone or restarted (a new task follows its new process).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::process::Command;
use tokio::sync::broadcast::error::RecvError;

use super::shared::Shared;
use crate::clock::rfc3339_millis;
use crate::config::forms::Condition;
use crate::engine::Readiness;
use crate::events::EventKind;
use crate::health::{self, Check, Probe, Status, Tracker};
use crate::runtime::exec::{ExecOptions, HELPER_ARG};
use crate::state::{ContainerStatus, HealthRecord};

/// Starts a check task for every container that starts running.
pub(super) fn spawn(me: Arc<Shared>) {
    let Some(mut events) = me.engine.events.subscribe() else { return };
    tokio::spawn(async move {
        loop {
            match events.recv().await {
                Ok(e) => {
                    if let EventKind::Running { service, pid } = e.kind {
                        if let Some(check) = me.check_of(&service) {
                            tokio::spawn(probe_loop(me.clone(), service, pid, check));
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "health: events missed; some checks may not run")
                }
                Err(RecvError::Closed) => return,
            }
        }
    });
}

/// Starts checks for the containers that already run when the supervisor starts (adopted after
/// a crash of the previous one, or kept by the first reconcile): no `running` event announces
/// them.
pub(super) fn check_running(me: &Arc<Shared>) {
    let running: Vec<(String, i32)> = me
        .state
        .lock()
        .expect("state")
        .containers
        .values()
        .filter(|r| r.status == ContainerStatus::Running && r.is_running())
        .filter_map(|r| Some((r.service.clone(), r.pid?)))
        .collect();
    for (service, pid) in running {
        if let Some(check) = me.check_of(&service) {
            tokio::spawn(probe_loop(me.clone(), service, pid, check));
        }
    }
}

impl Shared {
    /// The service's effective healthcheck: its own over its image's.
    pub fn check_of(&self, service: &str) -> Option<Check> {
        let project = self.project.lock().expect("project").clone()?;
        health::of_service(&self.engine.store, project.model.services.get(service)?)
    }

    /// Wakes the threads waiting in [`Readiness::wait_for`].
    pub fn notify_ready(&self) {
        let (lock, cond) = &self.ready;
        *lock.lock().expect("ready") += 1;
        cond.notify_all();
    }

    /// Saves a container's health, if the container is still `pid`'s.
    fn save_health(&self, service: &str, pid: i32, tracker: &Tracker) -> bool {
        let mut st = self.state.lock().expect("state");
        let project = st.project.clone();
        let Some(rec) = st.containers.get_mut(service).filter(|r| r.pid == Some(pid)) else {
            return false;
        };
        rec.health = Some(HealthRecord {
            status: tracker.status,
            failing_streak: tracker.failing_streak,
            log: tracker.log.iter().cloned().collect(),
        });
        let _ = st.save(&self.home.state_file(&project));
        drop(st);
        self.notify_ready();
        true
    }
}

async fn probe_loop(me: Arc<Shared>, service: String, pid: i32, check: Check) {
    // One loop per container process.
    if !me.probing.lock().expect("probing").insert(pid) {
        return;
    }
    probe(&me, &service, pid, &check).await;
    me.probing.lock().expect("probing").remove(&pid);
}

async fn probe(me: &Shared, service: &str, pid: i32, check: &Check) {
    let service = service.to_owned();
    let mut tracker = Tracker::new(Instant::now());
    if !me.save_health(&service, pid, &tracker) {
        return;
    }
    loop {
        tokio::time::sleep(tracker.next_delay(check)).await;
        let live = me
            .state
            .lock()
            .expect("state")
            .containers
            .get(&service)
            .is_some_and(|r| r.pid == Some(pid) && r.status == ContainerStatus::Running);
        if !live {
            return;
        }
        let probe = run_probe(pid, check).await;
        let changed = tracker.record(check, probe, Instant::now());
        if !me.save_health(&service, pid, &tracker) {
            return;
        }
        if let Some(status) = changed {
            me.engine.events.emit(EventKind::Health {
                service: service.clone(),
                status: status.as_str().into(),
            });
        }
    }
}

/// Runs the check once in the container; exit code -1 when it timed out or could not run.
async fn run_probe(pid: i32, check: &Check) -> Probe {
    let start = rfc3339_millis(SystemTime::now());
    let opts = ExecOptions { argv: check.argv.clone(), ..Default::default() };
    let child = Command::new("/proc/self/exe")
        .arg(HELPER_ARG)
        .arg(pid.to_string())
        .arg(serde_json::to_string(&opts).expect("options serialize"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let (exit_code, output) = match child {
        Err(e) => (-1, format!("cannot run the check: {e}")),
        Ok(child) => match tokio::time::timeout(check.timeout, child.wait_with_output()).await {
            Err(_) => (-1, format!("timed out after {:?}", check.timeout)),
            Ok(Err(e)) => (-1, format!("cannot run the check: {e}")),
            Ok(Ok(out)) => {
                let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&out.stderr));
                (out.status.code().unwrap_or(-1), truncate(text))
            }
        },
    };
    Probe { start, end: rfc3339_millis(SystemTime::now()), exit_code, output }
}

fn truncate(mut s: String) -> String {
    if s.len() > health::OUTPUT_LIMIT {
        let mut end = health::OUTPUT_LIMIT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// How often a waiting dependent looks again, besides being woken.
const RECHECK: Duration = Duration::from_millis(50);

impl Readiness for Shared {
    fn wait_for(&self, service: &str, condition: Condition) -> Result<(), String> {
        let has_check = condition == Condition::ServiceHealthy && self.check_of(service).is_some();
        self.readiness_waiters.fetch_add(1, Ordering::Relaxed);
        let answer = self.wait_ready(service, condition, has_check);
        self.readiness_waiters.fetch_sub(1, Ordering::Relaxed);
        answer
    }
}

impl Shared {
    fn wait_ready(
        &self,
        service: &str,
        condition: Condition,
        has_check: bool,
    ) -> Result<(), String> {
        loop {
            if self.aborting.load(Ordering::Relaxed) {
                return Err("the project is being taken down".into());
            }
            if let Some(answer) = self.ready_now(service, condition, has_check) {
                return answer;
            }
            let (lock, cond) = &self.ready;
            let generation = lock.lock().expect("ready");
            let _ = cond.wait_timeout(generation, RECHECK).expect("ready");
        }
    }
}

impl Shared {
    /// Whether `service` satisfies `condition` now: `None` while it may still.
    fn ready_now(
        &self,
        service: &str,
        condition: Condition,
        has_check: bool,
    ) -> Option<Result<(), String>> {
        let st = self.state.lock().expect("state");
        let Some(rec) = st.containers.get(service) else {
            return Some(Err(format!("\"{service}\" has no container")));
        };
        // A process that is gone but not yet reaped is waited for: the reaper (or, for a
        // container that is not our child, housekeeping) records its exit within a second.
        let exited = match rec.status {
            ContainerStatus::Exited { code } => Some(code),
            _ => None,
        };
        let code_text = |code: Option<i32>| code.map_or("?".to_owned(), |c| c.to_string());
        match condition {
            Condition::ServiceStarted => Some(Ok(())),
            Condition::ServiceCompletedSuccessfully => match exited {
                Some(Some(0)) => Some(Ok(())),
                Some(code) => {
                    Some(Err(format!("\"{service}\" exited with code {}", code_text(code))))
                }
                None => None,
            },
            Condition::ServiceHealthy if !has_check => Some(Err(format!(
                "\"{service}\" has no healthcheck (add one, or depend on it with \
                 `condition: service_started`)"
            ))),
            Condition::ServiceHealthy => {
                if let Some(code) = exited {
                    return Some(Err(format!(
                        "\"{service}\" exited (code {}) before it was healthy",
                        code_text(code)
                    )));
                }
                let health = rec.health.as_ref()?;
                match health.status {
                    Status::Healthy => Some(Ok(())),
                    Status::Starting => None,
                    Status::Unhealthy => {
                        let last =
                            health.log.last().map_or(String::new(), crate::health::last_check_text);
                        Some(Err(format!("\"{service}\" is unhealthy{last}")))
                    }
                }
            }
        }
    }
}
