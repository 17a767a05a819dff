//! Live edits: the project's watch rules compiled ([`WatchSet`]), the file watcher feeding them
//! ([`Watcher`]), the debounce that groups its events into batches ([`next_batch`]) and the guard
//! against rules that re-trigger themselves ([`LoopGuard`]). This module decides *what* to do
//! about changed files; the supervisor does it (syncing with [`crate::runtime::cp::sync_in`],
//! restarting, signalling, reloading the project).
//!
//! Matching follows Compose's `develop.watch`: a changed path fires a rule when it is the rule's
//! path or under it, and is not ignored (`ignore`, the rule's `include`, and the temporary files
//! of editors and `.git`, always).

mod debounce;
mod guard;
mod rules;
mod set;
mod watcher;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::model::WatchExec;

pub use debounce::{next_batch, Batch};
pub use guard::{LoopGuard, LIMIT};
pub use set::{config_inputs, WatchSet};
pub use watcher::Watcher;

/// Why the watch rules cannot be used, or the watcher cannot start. Rule errors name the service
/// and the rule's index in its `watch` list, as `services.NAME.watch[N]`.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("services.{service}.watch[{rule}]: invalid pattern {pattern:?}: {message}")]
    BadPattern { service: String, rule: usize, pattern: String, message: String },
    #[error(
        "services.{service}.watch[{rule}]: `rebuild` needs `build`, which devenv does not \
         support yet; use `restart` or `sync+restart`"
    )]
    Rebuild { service: String, rule: usize },
    #[error("services.{service}.watch[{rule}]: a sync rule needs `target`, the path in the container to copy to")]
    NoTarget { service: String, rule: usize },
    #[error("services.{service}.watch[{rule}]: a `sync+exec` rule needs `exec: {{command: ...}}`")]
    NoExec { service: String, rule: usize },
    #[error("services.{service}.watch[{rule}]: unknown signal {signal:?}: expected a name like SIGHUP or HUP, or a number")]
    BadSignal { service: String, rule: usize, signal: String },
    #[error("cannot start the file watcher: {0}")]
    Start(#[source] notify::Error),
    #[error("cannot watch {}: {source}", path.display())]
    Notify { path: PathBuf, source: notify::Error },
}

/// One changed path as the watcher saw it (absolute). Whether it was deleted is decided when
/// acting (does it exist now?), since editors save by rename and events arrive out of order.
pub type Change = PathBuf;

/// What one debounced batch of changes asks for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct BatchPlan {
    /// A config input changed: reload the project file and reconcile (done before any service
    /// action).
    pub reconcile: bool,
    pub services: BTreeMap<String, ServicePlan>,
}

/// What one service gets from a batch, whatever number of its files and rules fired.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ServicePlan {
    /// Files to copy into the container, in order; a `host` path that no longer exists means
    /// delete `container` in the container.
    pub sync: Vec<SyncOp>,
    /// Commands of sync+exec rules to run after syncing (deduplicated).
    pub exec: Vec<WatchExec>,
    pub restart: bool,
    /// Signals of `signal` rules, each once; empty when `restart` (a restart makes them moot).
    pub signals: Vec<nix::sys::signal::Signal>,
    /// Indices of the rules that fired (for the loop guard and events).
    pub rules: Vec<usize>,
    /// Rules whose sync was skipped because the rule path is bind-mounted at exactly the target
    /// (for a note to the user: "sync skipped, ./src is bind-mounted at /app").
    pub sync_skipped: Vec<usize>,
}

/// One file or directory to bring up to date in the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncOp {
    pub host: PathBuf,
    pub container: String,
}

/// One rule as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    pub service: String,
    /// Index in the service's `watch` list.
    pub index: usize,
    /// The watched host path, absolute.
    pub path: PathBuf,
    /// The action as written, e.g. `sync+restart`.
    pub action: &'static str,
    pub target: Option<String>,
    /// Paused by the loop guard until `resume_all`.
    pub paused: bool,
}
