//! Checks that need the whole project: names, references between services and volumes, host
//! ports published twice, watch rules, and the dependency graph. Every problem is reported, not
//! only the first, each at the place in the file it comes from.

use super::diagnostic::Diagnostic;
use super::forms::NetworkMode;
use super::load::{Project, Source};
use super::locate::{mark_of, path_string, Seg};
use super::model::WatchAction;
use super::volumes::MountType;
use super::yaml::Node;
use crate::graph::{GraphError, ServiceGraph};
use crate::suggest::nearest;

pub(crate) fn validate(project: &Project, root: &Node, src: &Source) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let mut err = |at: &[Seg], msg: String, hint: Option<String>| {
        errors.push(src.error(mark_of(root, at), path_string(at), msg).with_suggestion(hint));
    };
    let model = &project.model;
    let has_build = |name: &str| {
        project.unsupported.iter().any(|u| u.service.as_deref() == Some(name) && u.key == "build")
    };

    for (name, svc) in &model.services {
        let at = |rest: &[Seg<'static>]| {
            let mut v = vec![Seg::Key("services"), Seg::Key(name)];
            v.extend_from_slice(rest);
            v
        };
        if !valid_service_name(name) {
            err(&at(&[]), format!("invalid service name {name:?}: use letters, digits, `_`, `.` and `-`, starting with a letter or digit"), None);
        }
        if svc.image.is_none() && !has_build(name) {
            err(
                &at(&[]),
                format!("service \"{name}\" has no `image`"),
                Some("add one, for example `image: redis:7`".into()),
            );
        }
        if let Some(NetworkMode::Service(other)) = &svc.network_mode {
            if other == name {
                err(
                    &at(&[Seg::Key("network_mode")]),
                    format!("service \"{name}\" cannot share its own network namespace"),
                    None,
                );
            }
        }
        for (i, m) in svc.volumes.iter().enumerate() {
            if m.kind == MountType::Volume {
                if let Some(vol) = &m.source {
                    if !model.volumes.contains_key(vol) {
                        let hint = match nearest(vol, model.volumes.keys().map(String::as_str)) {
                            Some(n) => format!("did you mean `{n}`?"),
                            None => format!("declare it at the top level: `volumes: {{{vol}: {{}}}}`, or write `./{vol}` for a directory of the project"),
                        };
                        err(&at(&[Seg::Key("volumes"), Seg::Index(i)]), format!("service \"{name}\" uses volume \"{vol}\", which is not declared under the top-level `volumes:`"), Some(hint));
                    }
                }
            }
        }
        for (i, t) in svc.tmpfs.0.iter().enumerate() {
            if !t.starts_with('/') {
                err(
                    &at(&[Seg::Key("tmpfs"), Seg::Index(i)]),
                    format!("tmpfs path {t:?} must be absolute, like /tmp"),
                    None,
                );
            }
        }
        if let Some(c) = svc.cpus {
            if !(c > 0.0 && c.is_finite()) {
                err(
                    &at(&[Seg::Key("cpus")]),
                    format!("cpus must be a positive number of cores, like 0.5, not {c}"),
                    None,
                );
            }
        }
        for (i, w) in svc.watch.iter().enumerate() {
            let at_w = |k: &'static str| at(&[Seg::Key("watch"), Seg::Index(i), Seg::Key(k)]);
            let needs_target = matches!(
                w.action,
                WatchAction::Sync | WatchAction::SyncRestart | WatchAction::SyncExec
            );
            if needs_target && w.target.is_none() {
                err(
                    &at_w("action"),
                    "a sync rule needs `target`, the path in the container to copy to".into(),
                    None,
                );
            }
            if w.action == WatchAction::SyncExec && w.exec.is_none() {
                err(
                    &at_w("action"),
                    "a `sync+exec` rule needs `exec: {command: ...}`".into(),
                    None,
                );
            }
            if w.action == WatchAction::Signal && w.signal.is_none() {
                err(
                    &at_w("action"),
                    "a `signal` rule needs `signal`, for example `signal: SIGHUP`".into(),
                    None,
                );
            }
            if w.action == WatchAction::Rebuild {
                err(
                    &at_w("action"),
                    "`rebuild` needs `build`, which devenv does not support yet".into(),
                    Some("use `restart` or `sync+restart`".into()),
                );
            }
        }
    }
    errors
}

fn valid_service_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Builds the dependency graph from `depends_on` and `network_mode: service:NAME`. An optional
/// dependency (`required: false`) on a service that does not exist is dropped with a warning, as
/// Compose does.
pub(crate) fn graph(
    project: &mut Project,
    root: &Node,
    src: &Source,
) -> Result<ServiceGraph, Diagnostic> {
    let services = &mut project.model.services;
    let names: Vec<String> = services.keys().cloned().collect();
    for (name, svc) in services.iter_mut() {
        svc.depends_on.0.retain(|dep, d| {
            let keep = d.required || names.contains(dep);
            if !keep {
                let at =
                    [Seg::Key("services"), Seg::Key(name), Seg::Key("depends_on"), Seg::Key(dep)];
                let msg = format!(
                    "optional dependency \"{dep}\" is not a service in this project; ignored"
                );
                project.warnings.push(
                    Diagnostic::warning(src.file, mark_of(root, &at), path_string(&at), msg)
                        .with_source(src.text),
                );
            }
            keep
        });
    }
    let edges = project.model.services.iter().map(|(name, svc)| {
        let via_network = match &svc.network_mode {
            Some(NetworkMode::Service(other)) => Some(other.as_str()),
            _ => None,
        };
        (name.as_str(), svc.depends_on.0.keys().map(String::as_str).chain(via_network))
    });
    ServiceGraph::new(edges).map_err(|e| {
        let at: Vec<Seg> = match &e {
            GraphError::UnknownDependency { service, dependency, .. } => {
                let svc = &project.model.services[service.as_str()];
                if svc.depends_on.0.contains_key(dependency) {
                    vec![
                        Seg::Key("services"),
                        Seg::Key(service),
                        Seg::Key("depends_on"),
                        Seg::Key(dependency),
                    ]
                } else {
                    vec![Seg::Key("services"), Seg::Key(service), Seg::Key("network_mode")]
                }
            }
            GraphError::Cycle { cycle } => {
                let (from, to) = (&cycle[0], &cycle[1]);
                let svc = &project.model.services[from.as_str()];
                if svc.depends_on.0.contains_key(to) {
                    vec![Seg::Key("services"), Seg::Key(from), Seg::Key("depends_on"), Seg::Key(to)]
                } else {
                    vec![Seg::Key("services"), Seg::Key(from), Seg::Key("network_mode")]
                }
            }
            GraphError::UnknownService { .. } => vec![],
        };
        src.error(mark_of(root, &at), path_string(&at), e.to_string())
    })
}
