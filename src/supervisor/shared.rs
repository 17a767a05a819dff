//! What the supervisor's event loop, its connections and its watcher share: the engine, the
//! project state, and the blocking operations on them (reconcile, restart, reload, down, reap),
//! one at a time under `op`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Instant;

use super::protocol::{ProjectRef, RuleStatus, ServiceStatus, StatusReport};
use super::wanted_services;
use crate::config::{self, LoadOptions, Project};
use crate::engine::{Engine, Outcome};
use crate::events::EventKind;
use crate::image::{pull, Reference};
use crate::state::{process_start_time, ContainerStatus, Home, ProjectState};

/// The project as last applied: what the watcher watches.
pub(super) struct Applied {
    /// Counts the reconciles applied; the watcher says which one it watches for.
    pub generation: u64,
    pub project: Arc<Project>,
    pub wanted: Vec<String>,
    pub options: LoadOptions,
    pub no_watch: bool,
}

pub(super) struct Shared {
    /// Itself, for the tasks its blocking operations start.
    me: Weak<Shared>,
    pub home: Home,
    pub engine: Engine,
    pub state: Mutex<ProjectState>,
    /// One reconcile, restart, watch action or down at a time.
    pub op: tokio::sync::Mutex<()>,
    pub name: Mutex<String>,
    /// The stop order of the project as last reconciled.
    pub stop_layers: Mutex<Vec<Vec<String>>>,
    /// How the project was last asked for (by `up`): live edits reload it the same way.
    pub pref: Mutex<ProjectRef>,
    pub applied: tokio::sync::watch::Sender<Option<Arc<Applied>>>,
    /// The watch rules, as the watcher last compiled them.
    pub rules: Mutex<Vec<RuleStatus>>,
    /// The project being (or last) reconciled: healthchecks and restart policies come from it.
    pub project: Mutex<Option<Arc<Project>>>,
    /// Bumped, and notified, whenever a container's health or exit changes.
    pub ready: (Mutex<u64>, Condvar),
    /// Set when `down` (or Ctrl-C) is on its way: dependency waits give up.
    pub aborting: AtomicBool,
    /// Per service, the restart policy's attempt number since it last recovered.
    pub backoff: Mutex<BTreeMap<String, u32>>,
    /// The container processes (pids) whose healthcheck loop runs.
    pub probing: Mutex<HashSet<i32>>,
    /// How many threads wait in `Readiness::wait_for` (holding up a reconcile).
    pub readiness_waiters: AtomicUsize,
    /// The generation of the last `Applied`, and the one whose files the watcher watches.
    pub applied_generation: AtomicU64,
    pub watched_generation: AtomicU64,
}

impl Shared {
    pub fn new(home: Home, engine: Engine, pref: ProjectRef) -> Arc<Shared> {
        Arc::new_cyclic(|me| Shared {
            me: me.clone(),
            home,
            engine,
            state: Mutex::new(ProjectState::default()),
            op: tokio::sync::Mutex::new(()),
            name: Mutex::new(String::new()),
            stop_layers: Mutex::new(Vec::new()),
            pref: Mutex::new(pref),
            applied: tokio::sync::watch::Sender::new(None),
            rules: Mutex::new(Vec::new()),
            project: Mutex::new(None),
            ready: (Mutex::new(0), Condvar::new()),
            aborting: AtomicBool::new(false),
            backoff: Mutex::new(BTreeMap::new()),
            probing: Mutex::new(HashSet::new()),
            readiness_waiters: AtomicUsize::new(0),
            applied_generation: AtomicU64::new(0),
            watched_generation: AtomicU64::new(0),
        })
    }

    fn state_file(&self) -> std::path::PathBuf {
        self.home.state_file(&self.name.lock().expect("name"))
    }

    /// Loads the project (as `pref` says, else as last asked) and converges to it. `first`:
    /// this supervisor's first reconcile, which adopts the saved state. `pull`: a live
    /// reconcile (an edit, `reload`): fetch images that are not stored first (`up` pulls
    /// before it asks), and leave exited containers alone (`up` starts them again).
    pub fn reconcile(
        &self,
        pref: Option<&ProjectRef>,
        first: bool,
        pull: bool,
    ) -> Result<Outcome, String> {
        let started = Instant::now();
        let pref = match pref {
            Some(p) => {
                *self.pref.lock().expect("pref") = p.clone();
                p.clone()
            }
            None => self.pref.lock().expect("pref").clone(),
        };
        let result = self.reconcile_as(&pref, first, pull);
        match &result {
            Ok(o) => self.engine.events.emit(EventKind::Reconciled {
                created: o.created.clone(),
                recreated: o.recreated.clone(),
                removed: o.removed.clone(),
                ms: started.elapsed().as_millis() as u64,
            }),
            Err(message) => self
                .engine
                .events
                .emit(EventKind::Error { service: None, message: message.clone() }),
        }
        result
    }

    fn reconcile_as(&self, pref: &ProjectRef, first: bool, pull: bool) -> Result<Outcome, String> {
        let project = Arc::new(config::load(&pref.options).map_err(|e| e.to_string())?);
        *self.name.lock().expect("name") = project.name.clone();
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
            *self.project.lock().expect("project") = Some(project.clone());
            // Containers that still run from before (a crashed supervisor's) are checked from
            // now on: dependents may wait for their health during this very reconcile.
            if let Some(me) = self.me.upgrade() {
                super::health::check_running(&me);
            }
        }
        *self.stop_layers.lock().expect("layers") = project.graph.stop_layers();
        let wanted = wanted_services(&project, pref).map_err(|e| e.to_string())?;
        if pull {
            self.pull_missing(&project, &wanted)?;
        }
        *self.project.lock().expect("project") = Some(project.clone());
        let outcome =
            self.engine.reconcile(&project, &wanted, &self.state, &state_file, self, pull);
        let _ = self.state.lock().expect("state").save(&state_file);
        let outcome = outcome.map_err(|e| e.to_string())?;
        let generation = self.applied_generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.applied.send_replace(Some(Arc::new(Applied {
            generation,
            project,
            wanted,
            options: pref.options.clone(),
            no_watch: pref.no_watch,
        })));
        Ok(outcome)
    }

    /// Pulls the images of `wanted` that are not in the store (unless their policy is `never`):
    /// an edit that adds a service or changes an image works as `up` would.
    fn pull_missing(&self, project: &Project, wanted: &[String]) -> Result<(), String> {
        let store = &self.engine.store;
        let mut missing: Vec<Reference> = Vec::new();
        for name in wanted {
            let svc = &project.model.services[name];
            let Some(Ok(r)) = svc.image.as_deref().map(Reference::parse) else { continue };
            let never = svc.pull_policy() == config::model::PullPolicy::Never;
            if !never && !matches!(store.resolve(&r), Ok(Some(_))) && !missing.contains(&r) {
                missing.push(r);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let registries = crate::registry::RegistryConfig::from_env().map_err(|e| e.to_string())?;
        let results = pull::pull(store, &missing, &registries, &pull::NoProgress);
        let errors: Vec<String> =
            results.into_iter().filter_map(|r| r.err()).map(|e| e.to_string()).collect();
        match errors.is_empty() {
            true => Ok(()),
            false => Err(errors.join("\n")),
        }
    }

    /// Restarts the services in place, in the order given; stops at the first failure.
    pub fn restart(&self, services: &[String]) -> Result<Vec<(String, u64)>, String> {
        {
            let st = self.state.lock().expect("state");
            if let Some(s) = services.iter().find(|s| !st.containers.contains_key(*s)) {
                let known: Vec<&str> = st.containers.keys().map(String::as_str).collect();
                return Err(format!(
                    "no container for service {s:?}; running: {}",
                    if known.is_empty() { "none".into() } else { known.join(", ") }
                ));
            }
        }
        let file = self.state_file();
        let mut done = Vec::new();
        for s in services {
            match self.engine.restart(s, &self.state, &file) {
                Ok(ms) => {
                    done.push((s.clone(), ms));
                    self.restart_dependents(s);
                }
                Err(e) => {
                    let message = e.to_string();
                    self.engine.events.emit(EventKind::Error {
                        service: Some(s.clone()),
                        message: message.clone(),
                    });
                    return Err(message);
                }
            }
        }
        Ok(done)
    }

    /// `reload`: apply the project file, then restart `services` (every service with watch
    /// rules when empty), except those the reconcile just (re)created.
    pub fn reload(&self, services: &[String]) -> Result<String, String> {
        let outcome = self.reconcile(None, false, true)?;
        let fresh: BTreeSet<&String> = outcome.created.iter().chain(&outcome.recreated).collect();
        let targets: Vec<String> = match services.is_empty() {
            true => {
                let applied = self.applied.borrow().clone();
                let watched = |s: &String| {
                    applied.as_ref().is_some_and(|a| !a.project.model.services[s].watch.is_empty())
                };
                let wanted = applied.as_ref().map(|a| a.wanted.clone()).unwrap_or_default();
                wanted.into_iter().filter(watched).collect()
            }
            false => services.to_vec(),
        };
        let targets: Vec<String> = targets.into_iter().filter(|s| !fresh.contains(s)).collect();
        let restarted = self.restart(&targets)?;
        let mut message = summary(&outcome);
        for (s, ms) in restarted {
            message.push_str(&format!("; {s} restarted in {ms} ms"));
        }
        Ok(message)
    }

    /// Waits (a second at most) until the watcher watches what the last reconcile applied, so
    /// that `up` and `reload` return with their edits' successors already seen.
    pub async fn watcher_caught_up(&self) {
        let target = self.applied_generation.load(Ordering::Relaxed);
        for _ in 0..500 {
            if self.watched_generation.load(Ordering::Relaxed) >= target {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        tracing::warn!("the watcher has not caught up with the project after 1 s");
    }

    pub fn down_blocking(&self, volumes: bool) -> Vec<String> {
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
    pub fn reap(self: &Arc<Self>) {
        use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
        let config = self.project.lock().expect("project").clone();
        let mut restarts = Vec::new();
        let mut st = self.state.lock().expect("state");
        let project = st.project.clone();
        let mut exited = Vec::new();
        for rec in st.containers.values_mut() {
            let Some(pid) = rec.pid else { continue };
            if !matches!(rec.status, ContainerStatus::Running | ContainerStatus::Created) {
                continue;
            }
            let status = match waitpid(nix::unistd::Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
            {
                Ok(WaitStatus::Exited(_, code)) => Some(Some(code)),
                Ok(WaitStatus::Signaled(_, sig, _)) => Some(Some(128 + sig as i32)),
                _ => None,
            };
            if let Some(code) = status {
                rec.status = ContainerStatus::Exited { code };
                // Read before anything deletes the container (and its cgroup with it).
                let cgroup = crate::runtime::cgroups_path(&project, &rec.id);
                rec.oom_killed = crate::runtime::oom_killed(&cgroup);
                exited.push((rec.service.clone(), code));
                if let Some(attempt) = self.plan_restart(config.as_deref(), rec, code) {
                    restarts.push((rec.service.clone(), rec.id.clone(), attempt));
                }
            }
        }
        if !exited.is_empty() {
            let _ = st.save(&self.home.state_file(&st.project));
            drop(st);
            self.notify_ready();
        }
        for (service, code) in exited {
            self.engine.events.emit(EventKind::Exited { service, code });
        }
        for (service, id, attempt) in restarts {
            self.schedule_restart(service, id, attempt);
        }
    }

    /// Once a second: containers that are not our children (adopted after a supervisor crash)
    /// are checked by pid and start time, and large logs are rotated.
    pub fn housekeeping(self: &Arc<Self>) {
        // SIGCHLDs coalesce; a periodic reap catches any exit whose signal merged with another.
        self.reap();
        let config = self.project.lock().expect("project").clone();
        let mut restarts = Vec::new();
        let mut st = self.state.lock().expect("state");
        let project = st.project.clone();
        let mut exited = Vec::new();
        for rec in st.containers.values_mut() {
            // Only a process that is not our child goes unseen by the reaper (one adopted after
            // a supervisor crash); ours may have ended since `reap` above, and `reap` will see
            // it with its status.
            let ours = rec.pid.is_some_and(|pid| {
                use nix::sys::wait::{waitid, Id, WaitPidFlag};
                let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
                waitid(Id::Pid(nix::unistd::Pid::from_raw(pid)), flags).is_ok()
            });
            if rec.status == ContainerStatus::Running && !rec.is_running() && !ours {
                rec.status = ContainerStatus::Exited { code: None };
                exited.push(rec.service.clone());
                if let Some(attempt) = self.plan_restart(config.as_deref(), rec, None) {
                    restarts.push((rec.service.clone(), rec.id.clone(), attempt));
                }
            }
            let _ = crate::logs::rotate_if_large(&self.home.log_file(&project, &rec.service));
        }
        if !exited.is_empty() {
            let _ = st.save(&self.home.state_file(&st.project));
            drop(st);
            self.notify_ready();
        }
        for service in exited {
            self.engine.events.emit(EventKind::Exited { service, code: None });
        }
        for (service, id, attempt) in restarts {
            self.schedule_restart(service, id, attempt);
        }
    }

    pub fn status(&self) -> StatusReport {
        let st = self.state.lock().expect("state");
        let services = st
            .containers
            .values()
            .map(|rec| {
                let (state, exit_code) = rec.state();
                ServiceStatus {
                    service: rec.service.clone(),
                    state: state.into(),
                    exit_code,
                    pid: rec.pid.filter(|_| state == "running"),
                    ip_address: rec.endpoint.as_ref().map(|e| e.ip_address.to_string()),
                }
            })
            .collect();
        let watching = self.applied.borrow().as_ref().is_some_and(|a| !a.no_watch);
        StatusReport {
            project: st.project.clone(),
            watching,
            services,
            rules: self.rules.lock().expect("rules").clone(),
        }
    }
}

/// `1 created, 0 recreated, 0 removed, 2 unchanged`.
pub(super) fn summary(o: &Outcome) -> String {
    format!(
        "{} created, {} recreated, {} removed, {} unchanged",
        o.created.len(),
        o.recreated.len(),
        o.removed.len(),
        o.kept.len()
    )
}
