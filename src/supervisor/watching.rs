//! The supervisor's watcher: it watches the project file (and its `.env` and env_files) and the
//! services' `watch` paths, and turns each debounced batch of changes into at most one action
//! per service: reconcile the project, sync files into containers, run `sync+exec` commands,
//! restart, or signal. It runs beside the socket in `up` and `up -d` alike.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::protocol::RuleStatus;
use super::shared::{Applied, Shared};
use crate::events::EventKind;
use crate::runtime::cp;
use crate::runtime::exec::{exec_from_threads, ExecOptions};
use crate::watch::{config_inputs, next_batch, Batch, LoopGuard, ServicePlan, WatchSet, Watcher};

/// Without `up --debounce`.
const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(50);

pub(super) fn spawn(me: Arc<Shared>) {
    tokio::spawn(run(me));
}

async fn run(me: Arc<Shared>) {
    let error = |message: String| EventKind::Error { service: None, message };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = match Watcher::new(tx) {
        Ok(w) => w,
        Err(e) => return me.engine.events.emit(error(format!("cannot watch files: {e}"))),
    };
    let mut applied = me.applied.subscribe();
    applied.mark_changed();
    let mut set: Option<WatchSet> = None;
    let mut guard = LoopGuard::new(debounce(&me));
    // Rules whose skipped sync was already told about.
    let mut noted: HashSet<(String, usize)> = HashSet::new();
    loop {
        if applied.has_changed().unwrap_or(false) {
            let now = applied.borrow_and_update().clone();
            if let Some(a) = now {
                set = compile(&me, &a, &mut watcher);
                me.watched_generation.store(a.generation, std::sync::atomic::Ordering::Relaxed);
                guard = LoopGuard::new(debounce(&me));
                noted.clear();
            }
        }
        // A batch being collected when the project changes (an `up` from another terminal) is
        // dropped; the next change is seen with the new rules.
        let batch = tokio::select! {
            changed = applied.changed() => match changed {
                // `changed` marked the new value as seen: mark it again for the top of the loop.
                Ok(()) => {
                    applied.mark_changed();
                    continue;
                }
                Err(_) => return,
            },
            batch = next_batch(&mut rx, debounce(&me)) => match batch {
                Some(b) => b,
                None => return,
            },
        };
        let Some(ws) = set.as_mut() else { continue };
        handle(&me, ws, &mut guard, &mut noted, batch).await;
        // A rule path that did not exist is watched through its nearest existing ancestor:
        // once it appears, it is watched itself.
        if let Err(e) = watcher.set_roots(&ws.roots()) {
            me.engine
                .events
                .emit(EventKind::Error { service: None, message: format!("cannot watch: {e}") });
        }
    }
}

fn debounce(me: &Shared) -> Duration {
    me.pref.lock().expect("pref").debounce_ms.map_or(DEFAULT_DEBOUNCE, Duration::from_millis)
}

/// The rules of the project as applied, and the watcher pointed at their paths. A rule that
/// does not compile is reported, and the project file is still watched, so that the next edit
/// can fix it.
fn compile(me: &Shared, a: &Applied, watcher: &mut Watcher) -> Option<WatchSet> {
    let emit = |message: String| me.engine.events.emit(EventKind::Error { service: None, message });
    if a.no_watch {
        *me.rules.lock().expect("rules") = Vec::new();
        if let Err(e) = watcher.set_roots(&[]) {
            emit(format!("cannot stop watching: {e}"));
        }
        return None;
    }
    let inputs = config_inputs(&a.project, &a.options);
    let set = match WatchSet::new(&a.project, &a.wanted, inputs.clone()) {
        Ok(s) => s,
        Err(e) => {
            emit(format!("watch rules not applied: {e}"));
            WatchSet::new(&a.project, &[], inputs).ok()?
        }
    };
    if let Err(e) = watcher.set_roots(&set.roots()) {
        emit(format!("cannot watch: {e}"));
    }
    publish_rules(me, &set);
    Some(set)
}

fn publish_rules(me: &Shared, set: &WatchSet) {
    *me.rules.lock().expect("rules") = set
        .describe()
        .into_iter()
        .map(|r| RuleStatus {
            service: r.service,
            rule: r.index,
            path: r.path.display().to_string(),
            action: r.action.to_owned(),
            paused: r.paused,
        })
        .collect();
}

async fn handle(
    me: &Arc<Shared>,
    set: &mut WatchSet,
    guard: &mut LoopGuard,
    noted: &mut HashSet<(String, usize)>,
    batch: Batch,
) {
    let mut plan = set.plan(&batch.paths);
    if plan.reconcile {
        let _g = me.op.lock().await;
        // `down` took (or is taking) the project away while this batch waited for the lock:
        // applying the file now would start its containers again, with no supervisor left.
        if me.aborting.load(Ordering::Relaxed) {
            return;
        }
        let m = me.clone();
        // Its outcome (or the invalid file's error, the running project left as it was) is
        // published as an event by `reconcile`.
        let _ = tokio::task::spawn_blocking(move || m.reconcile(None, false, true)).await;
    }
    // A rule that keeps firing right after its own action is a loop: pause it. A plain `sync`
    // changes nothing the service runs, so it cannot loop, and quick saves must not pause it.
    let only_sync: HashSet<(String, usize)> = set
        .describe()
        .into_iter()
        .filter(|r| r.action == "sync")
        .map(|r| (r.service, r.index))
        .collect();
    let mut paused = false;
    for (service, sp) in &plan.services {
        for &rule in &sp.rules {
            if only_sync.contains(&(service.clone(), rule)) {
                continue;
            }
            if guard.check(service, rule, batch.first_event) {
                set.pause(service, rule);
                paused = true;
                me.engine.events.emit(EventKind::Error {
                    service: Some(service.clone()),
                    message: format!(
                        "watch rule {rule} fired again right after each of its last actions: \
                         the service seems to write into its own watched path. The rule is \
                         paused until the project file changes or `devenv reload`; add the \
                         files it writes to the rule's `ignore`"
                    ),
                });
            }
        }
    }
    if paused {
        plan.services = set.plan(&batch.paths).services;
        publish_rules(me, set);
    }
    for (service, sp) in &plan.services {
        for &rule in &sp.sync_skipped {
            if noted.insert((service.clone(), rule)) {
                me.engine.events.emit(EventKind::Note {
                    service: Some(service.clone()),
                    message: format!(
                        "watch rule {rule}: the path is bind-mounted at the target, so changes \
                         are already in the container; sync skipped"
                    ),
                });
            }
        }
    }
    if plan.services.is_empty() {
        return;
    }
    let services = plan.services;
    let fired: Vec<(String, usize)> =
        services.iter().flat_map(|(s, sp)| sp.rules.iter().map(|r| (s.clone(), *r))).collect();
    {
        let _g = me.op.lock().await;
        if me.aborting.load(Ordering::Relaxed) {
            return;
        }
        let m = me.clone();
        let _ = tokio::task::spawn_blocking(move || act(&m, &services)).await;
    }
    let now = Instant::now();
    for (service, rule) in fired {
        guard.finished(&service, rule, now);
    }
}

/// Every service's actions, services in parallel.
fn act(me: &Shared, services: &BTreeMap<String, ServicePlan>) {
    std::thread::scope(|scope| {
        for (service, plan) in services {
            scope.spawn(move || act_on(me, service, plan));
        }
    });
}

/// One service's actions for a batch: sync, then exec, then restart or signal.
fn act_on(me: &Shared, service: &str, plan: &ServicePlan) {
    let events = &me.engine.events;
    let fail = |message: String| {
        events.emit(EventKind::Error { service: Some(service.to_owned()), message })
    };
    let rec = me.state.lock().expect("state").containers.get(service).cloned();
    let Some(rec) = rec else { return fail("has no container; changes not applied".into()) };
    let pid = rec.pid.filter(|_| rec.is_running());
    if !plan.sync.is_empty() {
        let Some(pid) = pid else {
            return fail("is not running; changed files not synced".into());
        };
        let started = Instant::now();
        let ops: Vec<(PathBuf, String)> =
            plan.sync.iter().map(|op| (op.host.clone(), op.container.clone())).collect();
        match cp::sync_in(pid, &ops) {
            Ok(files) => events.emit(EventKind::Synced {
                service: service.to_owned(),
                files,
                ms: started.elapsed().as_millis() as u64,
            }),
            Err(e) => return fail(format!("sync: {e}")),
        }
    }
    for exec in &plan.exec {
        let Some(pid) = pid else { return fail("is not running; command not run".into()) };
        let opts = ExecOptions {
            argv: exec.command.0.clone(),
            env: exec
                .environment
                .0
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), v.clone()?)))
                .collect(),
            user: exec.user.clone(),
            workdir: exec.working_dir.clone(),
            ..Default::default()
        };
        let log = me.home.log_file(&me.name.lock().expect("name"), service);
        let output = std::fs::OpenOptions::new().create(true).append(true).open(&log);
        let started = Instant::now();
        let command = shlex::try_join(opts.argv.iter().map(String::as_str)).unwrap_or_default();
        match output.and_then(|out| exec_from_threads(pid, &opts, out)) {
            Ok(code) => events.emit(EventKind::Executed {
                service: service.to_owned(),
                command,
                code,
                ms: started.elapsed().as_millis() as u64,
            }),
            Err(e) => return fail(format!("cannot run `{command}`: {e}")),
        }
    }
    if plan.restart {
        // Errors are published by `restart`.
        let _ = me.restart(&[service.to_owned()]);
        return;
    }
    for &signal in &plan.signals {
        match me.engine.signal(&rec, signal) {
            Ok(()) => events.emit(EventKind::Signaled {
                service: service.to_owned(),
                signal: signal.as_str().to_owned(),
            }),
            Err(e) => fail(e.to_string()),
        }
    }
}
