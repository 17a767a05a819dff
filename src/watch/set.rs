//! The compiled watch configuration of a running project: its rules and config inputs, what to
//! give the watcher, and the turning of a batch of changed paths into a [`BatchPlan`].

use std::path::{Path, PathBuf};

use super::rules::{action_name, Rule};
use super::{BatchPlan, Change, RuleInfo, SyncOp, WatchError};
use crate::config::model::WatchAction;
use crate::config::{LoadOptions, Project};

/// The compiled watch configuration of a running project.
pub struct WatchSet {
    /// In the order of the services given, then of each service's `watch` list.
    rules: Vec<Rule>,
    /// Files whose change means "reload the project file"; matched by exact path.
    config_inputs: Vec<PathBuf>,
}

/// The files whose change means "reload the project file": the project file, its `.env` (or
/// `--env-file`), and the `env_file`s of every service (of all of them, not only those running:
/// a needless reload costs little, a missed one leaves a stale environment).
pub fn config_inputs(project: &Project, opts: &LoadOptions) -> Vec<PathBuf> {
    let env = match &opts.env_file {
        Some(p) => opts.cwd.join(p),
        None => project.dir.join(".env"),
    };
    let env_files = project.model.services.values().flat_map(|s| &s.env_file.0);
    let mut out: Vec<PathBuf> = Vec::new();
    for p in [project.file.clone(), env].into_iter().chain(env_files.map(|e| (&e.path).into())) {
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

impl WatchSet {
    /// Compiles the rules of `services` (those of other services are left out) and keeps
    /// `config_inputs` (see [`config_inputs`]). Rule paths are relative to the project
    /// directory; one that does not exist yet is fine (its nearest existing ancestor is watched
    /// so that its creation is seen).
    pub fn new(
        project: &Project,
        services: &[String],
        config_inputs: Vec<PathBuf>,
    ) -> Result<WatchSet, WatchError> {
        let home = project.env.get("HOME").map(PathBuf::from);
        let mut rules = Vec::new();
        let mut seen: Vec<&String> = Vec::new();
        for name in services {
            if seen.contains(&name) {
                continue;
            }
            seen.push(name);
            let Some(svc) = project.model.services.get(name) else {
                tracing::debug!(service = %name, "no such service in the project; no watch rules");
                continue;
            };
            for (i, raw) in svc.watch.iter().enumerate() {
                rules.push(Rule::compile(&project.dir, home.as_deref(), name, svc, i, raw)?);
            }
        }
        Ok(WatchSet { rules, config_inputs })
    }

    /// No rules and no config inputs: nothing to watch.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.config_inputs.is_empty()
    }

    pub fn config_inputs(&self) -> &[PathBuf] {
        &self.config_inputs
    }

    /// What to give the watcher: (path, recursive). A rule's directory recursively; the parent
    /// directory of a file rule or config input, non-recursively (editors replace files by
    /// rename, which a watch on the file itself misses); for a path that does not exist, its
    /// nearest existing ancestor, non-recursively. Deduplicated, and nothing under a recursive
    /// root.
    ///
    /// This reads the filesystem, so it changes as directories come and go: call
    /// `Watcher::set_roots(&set.roots())` again after every batch.
    pub fn roots(&self) -> Vec<(PathBuf, bool)> {
        let mut roots = Vec::new();
        for r in &self.rules {
            if r.path.is_dir() {
                roots.push((r.path.clone(), true));
            } else if let Some(dir) = existing_dir(r.path.parent()) {
                roots.push((dir, false));
            }
        }
        for c in &self.config_inputs {
            if let Some(dir) = existing_dir(c.parent()) {
                roots.push((dir, false));
            }
        }
        dedup_roots(roots)
    }

    /// Turns one debounced batch of changed paths into what to do. Each service appears at most
    /// once, whatever number of its files and rules fired; paused rules never fire.
    pub fn plan(&self, batch: &[Change]) -> BatchPlan {
        let mut plan = BatchPlan::default();
        // Which rule each sync op came from, per service, for pruning below.
        let mut origin: std::collections::BTreeMap<String, Vec<usize>> = Default::default();
        for changed in batch {
            if self.config_inputs.contains(changed) {
                plan.reconcile = true;
            }
            for r in self.rules.iter().filter(|r| !r.paused) {
                let Some(rel) = r.matches(changed) else { continue };
                let sp = plan.services.entry(r.service.clone()).or_default();
                if !sp.rules.contains(&r.index) {
                    sp.rules.push(r.index);
                }
                let syncs = matches!(
                    r.action,
                    WatchAction::Sync | WatchAction::SyncRestart | WatchAction::SyncExec
                );
                if syncs && r.bind_mounted {
                    if !sp.sync_skipped.contains(&r.index) {
                        sp.sync_skipped.push(r.index);
                    }
                } else if syncs {
                    if let Some(container) = r.container_path(&rel) {
                        let op = SyncOp { host: changed.clone(), container };
                        let from = origin.entry(r.service.clone()).or_default();
                        if !sp.sync.iter().zip(from.iter()).any(|(o, &i)| *o == op && i == r.index)
                        {
                            sp.sync.push(op);
                            from.push(r.index);
                        }
                    }
                }
                match r.action {
                    WatchAction::Restart | WatchAction::SyncRestart => sp.restart = true,
                    WatchAction::SyncExec => {
                        let exec = r.exec.clone().expect("checked when compiled");
                        if !sp.exec.contains(&exec) {
                            sp.exec.push(exec);
                        }
                    }
                    WatchAction::Signal => {
                        let sig = r.signal.expect("set when compiled");
                        if !sp.signals.contains(&sig) {
                            sp.signals.push(sig);
                        }
                    }
                    WatchAction::Sync | WatchAction::Rebuild => {}
                }
            }
        }
        for (name, sp) in plan.services.iter_mut() {
            if sp.restart {
                sp.signals.clear();
            }
            let from = origin.remove(name).unwrap_or_default();
            sp.sync = prune(std::mem::take(&mut sp.sync), &from);
        }
        plan
    }

    /// Pauses a rule (loop guard); a paused rule never fires until [`WatchSet::resume_all`].
    pub fn pause(&mut self, service: &str, rule: usize) {
        for r in self.rules.iter_mut().filter(|r| r.service == service && r.index == rule) {
            r.paused = true;
        }
    }

    pub fn resume_all(&mut self) {
        for r in &mut self.rules {
            r.paused = false;
        }
    }

    /// The rules, for status output.
    pub fn describe(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                service: r.service.clone(),
                index: r.index,
                path: r.path.clone(),
                action: action_name(r.action),
                target: r.target.clone(),
                paused: r.paused,
            })
            .collect()
    }
}

/// `dir` if it exists as a directory, else its nearest ancestor that does.
fn existing_dir(dir: Option<&Path>) -> Option<PathBuf> {
    dir?.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
}

/// Drops duplicates, non-recursive roots that a recursive one on the same path replaces, and
/// anything under a recursive root (whose watch covers it already).
pub(crate) fn dedup_roots(mut roots: Vec<(PathBuf, bool)>) -> Vec<(PathBuf, bool)> {
    // Ancestors sort before their descendants, and on one path the recursive watch first.
    roots.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut out: Vec<(PathBuf, bool)> = Vec::new();
    for (p, recursive) in roots {
        if out.iter().any(|(q, q_rec)| *q == p || (*q_rec && p.starts_with(q))) {
            continue;
        }
        out.push((p, recursive));
    }
    out
}

/// Drops sync ops made redundant by an op of the same rule on an ancestor: a directory that
/// exists is copied whole (so its entries that exist need no op of their own), one that is gone
/// is removed whole. What remains is a deletion under a directory that is still there.
fn prune(ops: Vec<SyncOp>, from: &[usize]) -> Vec<SyncOp> {
    let exists = |p: &Path| p.symlink_metadata().is_ok();
    let keep: Vec<bool> = ops
        .iter()
        .zip(from)
        .map(|(op, rule)| {
            !ops.iter().zip(from).any(|(anc, anc_rule)| {
                anc_rule == rule
                    && anc.host != op.host
                    && op.host.starts_with(&anc.host)
                    && (!exists(&anc.host) || exists(&op.host))
            })
        })
        .collect();
    ops.into_iter().zip(keep).filter_map(|(op, k)| k.then_some(op)).collect()
}
