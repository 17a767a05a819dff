//! Checks that need the whole project: names, references between services and volumes, host
//! ports published twice, watch rules, and the dependency graph. Every problem is reported, not
//! only the first, each at the place in the file it comes from.

use super::de::{from_node, Path as KeyPath};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;

use super::diagnostic::Diagnostic;
use super::forms::NetworkMode;
use super::load::{Project, Source};
use super::locate::{mark_of, path_string, Seg};
use super::model::{WatchAction, DEFAULT_NETWORK};
use super::ports::{Ports, Protocol};
use super::volumes::MountType;
use super::yaml::{Node, Value};
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
                    Some("remove `network_mode` to give it a network of its own".into()),
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

/// The default network's settings, and published ports against `network_mode`: ports cannot be
/// published by a service in another's network namespace (Docker refuses it), and are ignored,
/// with a warning, on the host's network (as Compose does).
pub(crate) fn networks(project: &mut Project, root: &Node, src: &Source) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let mut err = |at: &[Seg], msg: String, hint: Option<String>| {
        errors.push(src.error(mark_of(root, at), path_string(at), msg).with_suggestion(hint));
    };
    if let Some(net) = project.model.default_network() {
        let at = |rest: &[Seg<'static>]| {
            let mut v = vec![Seg::Key("networks"), Seg::Key(DEFAULT_NETWORK)];
            v.extend_from_slice(rest);
            v
        };
        if let Some(driver) = net.driver.as_deref().filter(|d| *d != "bridge") {
            err(
                &at(&[Seg::Key("driver")]),
                format!("network driver {driver:?} is not supported: the default network is always a bridge"),
                Some("remove `driver`, or write `driver: bridge`".into()),
            );
        }
        let configs = net.ipam.as_ref().map(|i| i.config.as_slice()).unwrap_or_default();
        if configs.len() > 1 {
            err(
                &at(&[Seg::Key("ipam"), Seg::Key("config"), Seg::Index(1)]),
                format!(
                    "the default network takes one `ipam.config` entry, found {}",
                    configs.len()
                ),
                Some("keep one `- subnet: ...` entry".into()),
            );
        }
        for (i, c) in configs.iter().enumerate() {
            let at_c = |k: &'static str| {
                at(&[Seg::Key("ipam"), Seg::Key("config"), Seg::Index(i), Seg::Key(k)])
            };
            let net = c.subnet.trunc();
            if c.subnet.addr() != net.addr() {
                err(
                    &at_c("subnet"),
                    format!(
                        "subnet {} has host bits set: a subnet starts at its network address",
                        c.subnet
                    ),
                    Some(format!("did you mean {net}?")),
                );
            }
            if net.prefix_len() > MAX_PREFIX {
                err(
                    &at_c("subnet"),
                    format!("subnet {net} is too small: devenv needs room for the gateway and at least one container, so at most /{MAX_PREFIX}"),
                    Some(format!("use a shorter prefix, like {}", Ipv4Net::new(net.addr(), 24).map(|n| n.trunc()).unwrap_or(net))),
                );
            } else if let Some(gw) = c.gateway {
                let first = first_host(net);
                if gw != first {
                    err(
                        &at_c("gateway"),
                        format!("gateway {gw} is not {first}: devenv puts the gateway of {net} on its first host address"),
                        Some(format!("write `gateway: {first}`, or leave `gateway` out")),
                    );
                }
            }
        }
    }

    for (name, svc) in &project.model.services {
        if svc.ports.is_empty() {
            continue;
        }
        let at = [Seg::Key("services"), Seg::Key(name), Seg::Key("ports")];
        match &svc.network_mode {
            Some(NetworkMode::Service(other)) => err(
                &at,
                format!("service \"{name}\" cannot publish ports: it shares the network namespace of \"{other}\" (network_mode: service:{other}), and port publishing conflicts with a shared network namespace"),
                Some(format!("publish the ports on service \"{other}\" instead")),
            ),
            Some(NetworkMode::Host) => {
                let msg = "`ports` are ignored with `network_mode: host`: the service listens on the host's own ports";
                project.warnings.push(
                    Diagnostic::warning(src.file, mark_of(root, &at), path_string(&at), msg)
                        .with_source(src.text),
                );
            }
            _ => {}
        }
    }
    errors
}

/// The longest prefix the default network can have: a /30 holds the gateway and one container.
const MAX_PREFIX: u8 = 30;

/// Where devenv puts a network's gateway: the first host address of its subnet.
fn first_host(net: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + 1)
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
) -> Result<ServiceGraph, Box<Diagnostic>> {
    let names: Vec<String> = project.model.services.keys().cloned().collect();
    let services = &mut project.model.services;
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
                    let at = [Seg::Key("services"), Seg::Key(service), Seg::Key("network_mode")];
                    let msg = format!("network_mode refers to service \"{dependency}\", which is not a service in this project");
                    let hint = nearest(dependency, names.iter().map(String::as_str))
                        .map(|n| format!("did you mean `service:{n}`?"));
                    let d = src.error(mark_of(root, &at), path_string(&at), msg);
                    return Box::new(d.with_suggestion(hint));
                }
            }
            GraphError::Cycle { cycle } => {
                let (from, to) = (&cycle[0], &cycle[1]);
                let svc = &project.model.services[from.as_str()];
                if svc.depends_on.0.contains_key(to) {
                    vec![Seg::Key("services"), Seg::Key(from), Seg::Key("depends_on"), Seg::Key(to)]
                } else {
                    let at = [Seg::Key("services"), Seg::Key(from), Seg::Key("network_mode")];
                    let hint = "a service can join another's network namespace only if that one has its own: remove `network_mode: service:...` from one of them";
                    let d = src.error(mark_of(root, &at), path_string(&at), e.to_string());
                    return Box::new(d.with_suggestion(Some(hint.into())));
                }
            }
            GraphError::UnknownService { .. } => vec![],
        };
        Box::new(src.error(mark_of(root, &at), path_string(&at), e.to_string()))
    })
}

/// Two services (or two entries of one) publishing the same host port: each entry's mappings,
/// with where the entry was written.
/// A host IP a port is published on, and the key path where that was written.
type Published = (Option<IpAddr>, String);

pub(crate) fn port_clashes(project: &Project, root: &Node, src: &Source) -> Vec<Diagnostic> {
    // Fixed host ports by (protocol, port), with the host IP and where each was written.
    let mut seen: HashMap<(Protocol, u16), Vec<Published>> = HashMap::new();
    let mut errors = Vec::new();
    for name in project.model.services.keys() {
        let at = [Seg::Key("services"), Seg::Key(name), Seg::Key("ports")];
        let Some(Value::Seq(entries)) = lookup(root, &at).map(|n| &n.value) else { continue };
        for (i, entry) in entries.iter().enumerate() {
            let one = Node { mark: entry.mark, value: Value::Seq(vec![entry.clone()]) };
            let Ok(Ports(mappings)) = from_node::<Ports>(&one, &KeyPath::Root) else { continue };
            let here = [Seg::Key("services"), Seg::Key(name), Seg::Key("ports"), Seg::Index(i)];
            for m in mappings {
                let Some(port) = m.published.filter(|r| r.start == r.end).map(|r| r.start) else {
                    continue;
                };
                let wildcard = |ip: Option<IpAddr>| ip.is_none_or(|ip| ip.is_unspecified());
                let others = seen.entry((m.protocol, port)).or_default();
                let clash = others
                    .iter()
                    .find(|(ip, _)| wildcard(*ip) || wildcard(m.host_ip) || *ip == m.host_ip);
                if let Some((_, first)) = clash {
                    let msg = format!(
                        "host port {port}/{} is already published by {first}; a host port can be published only once",
                        m.protocol
                    );
                    let hint = format!(
                        "publish another host port, like \"{}:{}\"",
                        port.saturating_add(1),
                        m.target
                    );
                    let d = src.error(mark_of(root, &here), path_string(&here), msg);
                    errors.push(d.with_suggestion(Some(hint)));
                }
                others.push((m.host_ip, path_string(&here)));
            }
        }
    }
    errors
}

fn lookup<'a>(root: &'a Node, path: &[Seg]) -> Option<&'a Node> {
    path.iter().try_fold(root, |node, seg| match seg {
        Seg::Key(k) => node.get(k).map(|e| &e.value),
        Seg::Index(i) => match &node.value {
            Value::Seq(items) => items.get(*i),
            _ => None,
        },
    })
}
