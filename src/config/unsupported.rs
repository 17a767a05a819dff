//! Compose keys that devenv reads but does not act on yet.
//!
//! They are taken out of the tree before the typed model is read, each with a warning that names
//! it and its line; `up` later refuses a service that still sets one, with the same words. The
//! lists cover the whole Compose specification, which a test checks against its JSON Schema.

use super::diagnostic::Diagnostic;
use super::yaml::{Mark, Node, Value};

/// Top-level keys of the Compose specification that devenv does not support yet.
pub const TOP_LEVEL: &[&str] = &["configs", "include", "models", "secrets"];

/// Keys of a network that devenv does not support yet, on the one network it supports:
/// `networks.default`. Every network other than `default` is unsupported as a whole.
pub const NETWORK: &[&str] =
    &["attachable", "driver_opts", "enable_ipv4", "enable_ipv6", "external", "internal", "name"];

/// Keys of a network's `ipam` that devenv does not support yet.
pub const IPAM: &[&str] = &["driver", "options"];

/// Keys of an `ipam.config` entry that devenv does not support yet.
pub const IPAM_CONFIG: &[&str] = &["aux_addresses", "ip_range"];

/// Service keys of the Compose specification that devenv does not support yet.
pub const SERVICE: &[&str] = &[
    "annotations",
    "attach",
    "blkio_config",
    "build",
    "cgroup",
    "cgroup_parent",
    "configs",
    "container_name",
    "cpu_count",
    "cpu_percent",
    "cpu_period",
    "cpu_quota",
    "cpu_rt_period",
    "cpu_rt_runtime",
    "cpu_shares",
    "cpuset",
    "credential_spec",
    "device_cgroup_rules",
    "devices",
    "dns",
    "dns_opt",
    "dns_search",
    "domainname",
    "extends",
    "external_links",
    "extra_hosts",
    "gpus",
    "group_add",
    "ipc",
    "isolation",
    "label_file",
    "links",
    "logging",
    "mac_address",
    "mem_reservation",
    "mem_swappiness",
    "memswap_limit",
    "models",
    "networks",
    "oom_kill_disable",
    "oom_score_adj",
    "pid",
    "platform",
    "post_start",
    "pre_stop",
    "provider",
    "pull_refresh_after",
    "read_only",
    "runtime",
    "scale",
    "secrets",
    "security_opt",
    "shm_size",
    "stdin_open",
    "storage_opt",
    "sysctls",
    "tty",
    "use_api_socket",
    "userns_mode",
    "uts",
    "volumes_from",
];

/// Keys of a service's `deploy` that devenv does not support yet: all but `resources`.
pub const DEPLOY: &[&str] = &[
    "endpoint_mode",
    "labels",
    "mode",
    "placement",
    "replicas",
    "restart_policy",
    "rollback_config",
    "update_config",
];

/// One unsupported key found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    /// The service that sets it, or `None` at the top level.
    pub service: Option<String>,
    pub key: String,
    pub path: String,
    pub mark: Mark,
}

impl Unsupported {
    pub fn message(&self) -> String {
        match &self.service {
            Some(s) => format!(
                "`{}` is not supported by devenv yet (line {}); service \"{s}\" cannot start while it is set",
                self.key, self.mark.line
            ),
            None => format!(
                "`{}` is not supported by devenv yet (line {}); it is ignored",
                self.key, self.mark.line
            ),
        }
    }

    pub fn diagnostic(&self, file: &std::path::Path) -> Diagnostic {
        Diagnostic::warning(file, self.mark, self.path.clone(), self.message())
    }
}

/// Removes unsupported keys from the document, returning what was removed.
pub fn strip(root: &mut Node) -> Vec<Unsupported> {
    let mut found = Vec::new();
    let Some(top) = root.as_map_mut() else { return found };
    take(top, TOP_LEVEL, None, "", &mut found);
    if let Some(networks) = top.iter_mut().find(|e| e.key == "networks") {
        if let Some(networks) = networks.value.as_map_mut() {
            strip_networks(networks, &mut found);
        }
    }
    if let Some(services) = top.iter_mut().find(|e| e.key == "services") {
        if let Some(services) = services.value.as_map_mut() {
            for svc in services.iter_mut() {
                let name = svc.key.clone();
                if let Some(keys) = svc.value.as_map_mut() {
                    // Joining only the project's default network is what every service does.
                    keys.retain(|e| !(e.key == "networks" && only_default_network(&e.value)));
                    take(keys, SERVICE, Some(&name), &format!("services.{name}."), &mut found);
                    strip_deploy(keys, &name, &mut found);
                }
            }
        }
    }
    found
}

fn take(
    entries: &mut Vec<super::yaml::Entry>,
    keys: &[&str],
    service: Option<&str>,
    prefix: &str,
    found: &mut Vec<Unsupported>,
) {
    entries.retain(|e| {
        if keys.contains(&e.key.as_str()) {
            found.push(Unsupported {
                service: service.map(str::to_owned),
                key: e.key.clone(),
                path: format!("{prefix}{}", e.key),
                mark: e.key_mark,
            });
            false
        } else {
            true
        }
    });
}

/// Takes the keys of `deploy` other than `resources` out; each is named by its path under the
/// service (`deploy.replicas`), so that `up` refuses the service with that name.
fn strip_deploy(keys: &mut [super::yaml::Entry], service: &str, found: &mut Vec<Unsupported>) {
    let Some(deploy) = keys.iter_mut().find(|e| e.key == "deploy") else { return };
    let Some(entries) = deploy.value.as_map_mut() else { return };
    let start = found.len();
    take(entries, DEPLOY, Some(service), &format!("services.{service}.deploy."), found);
    for u in &mut found[start..] {
        u.key = format!("deploy.{}", u.key);
    }
}

/// Keeps only the `default` network, and of it only what devenv acts on. Each key taken out is
/// named by its whole path (`networks.backend`, `networks.default.ipam.options`).
fn strip_networks(networks: &mut Vec<super::yaml::Entry>, found: &mut Vec<Unsupported>) {
    let start = found.len();
    networks.retain(|e| {
        if e.key == super::model::DEFAULT_NETWORK {
            return true;
        }
        found.push(Unsupported {
            service: None,
            key: format!("networks.{}", e.key),
            path: format!("networks.{}", e.key),
            mark: e.key_mark,
        });
        false
    });
    let default = networks.iter_mut().find(|e| e.key == super::model::DEFAULT_NETWORK);
    if let Some(default) = default.and_then(|e| e.value.as_map_mut()) {
        take(default, NETWORK, None, "networks.default.", found);
        if let Some(ipam) = default.iter_mut().find(|e| e.key == "ipam") {
            if let Some(ipam) = ipam.value.as_map_mut() {
                take(ipam, IPAM, None, "networks.default.ipam.", found);
                if let Some(config) = ipam.iter_mut().find(|e| e.key == "config") {
                    if let Value::Seq(items) = &mut config.value.value {
                        for (i, item) in items.iter_mut().enumerate() {
                            if let Some(entry) = item.as_map_mut() {
                                let prefix = format!("networks.default.ipam.config[{i}].");
                                take(entry, IPAM_CONFIG, None, &prefix, found);
                            }
                        }
                    }
                }
            }
        }
    }
    for u in &mut found[start..] {
        u.key = u.path.clone();
    }
}

fn only_default_network(v: &Node) -> bool {
    match &v.value {
        Value::Seq(items) => items.iter().all(|n| n.as_str() == Some("default")),
        Value::Map(entries) => entries.iter().all(|e| e.key == "default"),
        Value::Scalar(_) => false,
    }
}
