//! One compiled watch rule: which changed paths fire it (its path, `ignore`, `include`, and the
//! files that are always ignored), where a changed path goes in the container, and whether its
//! sync is pointless because the path is bind-mounted at the target already.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};
use nix::sys::signal::Signal;

use super::WatchError;
use crate::config::model::{Service, WatchAction, WatchExec, WatchRule};
use crate::config::normalize::resolve_host_path;
use crate::config::volumes::MountType;

pub(crate) struct Rule {
    pub service: String,
    pub index: usize,
    /// Absolute host path.
    pub path: PathBuf,
    pub action: WatchAction,
    pub target: Option<String>,
    pub exec: Option<WatchExec>,
    pub signal: Option<Signal>,
    /// `ignore` patterns, rooted at `path`.
    ignore: Gitignore,
    /// `include` patterns, rooted at `path`; `None` when there are none (everything counts).
    include: Option<Gitignore>,
    /// The path is bind-mounted at exactly `target`: the container sees the change already.
    pub bind_mounted: bool,
    pub paused: bool,
}

impl Rule {
    pub fn compile(
        dir: &Path,
        home: Option<&Path>,
        service: &str,
        svc: &Service,
        index: usize,
        raw: &WatchRule,
    ) -> Result<Rule, WatchError> {
        let service_name = || service.to_string();
        let path = resolve_host_path(dir, home, &raw.path);
        let syncs = matches!(
            raw.action,
            WatchAction::Sync | WatchAction::SyncRestart | WatchAction::SyncExec
        );
        match raw.action {
            WatchAction::Rebuild => {
                return Err(WatchError::Rebuild { service: service_name(), rule: index })
            }
            _ if syncs && raw.target.is_none() => {
                return Err(WatchError::NoTarget { service: service_name(), rule: index })
            }
            WatchAction::SyncExec if raw.exec.is_none() => {
                return Err(WatchError::NoExec { service: service_name(), rule: index })
            }
            _ => {}
        }
        let signal = match (raw.action, &raw.signal) {
            (WatchAction::Signal, None) => Some(Signal::SIGHUP),
            (WatchAction::Signal, Some(s)) => Some(parse_signal(s).ok_or_else(|| {
                WatchError::BadSignal { service: service_name(), rule: index, signal: s.clone() }
            })?),
            _ => None,
        };
        let patterns = |list: &[String]| -> Result<Gitignore, WatchError> {
            let bad = |pattern: &str, e: ignore::Error| WatchError::BadPattern {
                service: service_name(),
                rule: index,
                pattern: pattern.to_string(),
                message: e.to_string(),
            };
            let mut b = GitignoreBuilder::new(&path);
            for p in list {
                b.add_line(None, p).map_err(|e| bad(p, e))?;
            }
            b.build().map_err(|e| bad(&list.join(", "), e))
        };
        let ignore = patterns(&raw.ignore.0)?;
        let include = if raw.include.0.is_empty() { None } else { Some(patterns(&raw.include.0)?) };
        let bind_mounted =
            syncs && raw.target.as_deref().is_some_and(|t| bind_mounted(svc, &path, t));
        Ok(Rule {
            service: service.to_string(),
            index,
            path,
            action: raw.action,
            target: raw.target.clone(),
            exec: raw.exec.clone(),
            signal,
            ignore,
            include,
            bind_mounted,
            paused: false,
        })
    }

    /// Whether `changed` fires this rule; if so, its path relative to the rule's path (empty for
    /// the rule's path itself).
    pub fn matches(&self, changed: &Path) -> Option<PathBuf> {
        let rel = changed.strip_prefix(&self.path).ok()?;
        // Not followed: a symlink is synced as a symlink, never as what it points to.
        let is_dir = changed.symlink_metadata().is_ok_and(|m| m.is_dir());
        if rel.as_os_str().is_empty() {
            // The rule's own path: a file rule fires. A directory's own changes (its mtime moving
            // as entries come and go) say nothing that the entries' own events do not.
            return (!is_dir).then(PathBuf::new);
        }
        if always_ignored(rel) || self.ignore.matched_path_or_any_parents(rel, is_dir).is_ignore() {
            return None;
        }
        if let Some(include) = &self.include {
            if !include.matched_path_or_any_parents(rel, is_dir).is_ignore() {
                return None;
            }
        }
        Some(rel.to_path_buf())
    }

    /// Where `rel` (from [`Rule::matches`]) goes in the container: the target joined with it.
    /// `None` for a rule without a target, or a name that is not UTF-8 (container paths are
    /// strings here).
    pub fn container_path(&self, rel: &Path) -> Option<String> {
        let target = self.target.as_deref()?;
        if rel.as_os_str().is_empty() {
            return Some(target.to_string());
        }
        let Some(rel) = rel.to_str() else {
            tracing::warn!(path = %rel.display(), "not syncing a file whose name is not UTF-8");
            return None;
        };
        Some(format!("{}/{rel}", target.trim_end_matches('/')))
    }
}

/// What editors, version control and macOS leave around and nobody means to sync: anything
/// under a `.git` directory, and editors' temporary and lock files.
pub(crate) fn always_ignored(rel: &Path) -> bool {
    rel.components().any(|c| c.as_os_str() == ".git") || rel.file_name().is_some_and(editor_temp)
}

fn editor_temp(name: &OsStr) -> bool {
    let Some(n) = name.to_str() else { return false };
    n.ends_with('~')
        || n.ends_with(".tmp")
        || n == "4913" // vim writes it to probe whether it may create files in a directory
        || n == ".DS_Store"
        || (n.starts_with('.') && [".swp", ".swx", ".swo"].iter().any(|s| n.ends_with(s)))
        || n.starts_with(".#") // emacs lock files
        || (n.len() >= 2 && n.starts_with('#') && n.ends_with('#')) // emacs auto-saves
        || n.ends_with("___jb_tmp___")
        || n.ends_with("___jb_old___")
}

/// Whether a bind mount of the service puts `path` at exactly `target` in the container.
fn bind_mounted(svc: &Service, path: &Path, target: &str) -> bool {
    svc.volumes.iter().filter(|m| m.kind == MountType::Bind).any(|m| {
        let Some(source) = &m.source else { return false };
        let Ok(rel) = path.strip_prefix(source) else { return false };
        // Components compare equal whatever the trailing slashes (`/app/` is `/app`).
        Path::new(&m.target).join(rel) == Path::new(target)
    })
}

/// `SIGHUP`, `HUP`, `hup` or `1`.
pub(crate) fn parse_signal(s: &str) -> Option<Signal> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).ok();
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
    name.parse().ok()
}

/// The action as a project file spells it.
pub(crate) fn action_name(a: WatchAction) -> &'static str {
    match a {
        WatchAction::Restart => "restart",
        WatchAction::Sync => "sync",
        WatchAction::SyncRestart => "sync+restart",
        WatchAction::SyncExec => "sync+exec",
        WatchAction::Signal => "signal",
        WatchAction::Rebuild => "rebuild",
    }
}
