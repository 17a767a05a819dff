//! The typed project: what a project file means once it is read, interpolated and normalized.
//!
//! The same types drive parsing (serde), the JSON Schema (`schemars`) and `devenv config`'s
//! output, so the three cannot drift apart. Fields accept every form Compose accepts (short and
//! long syntax) and always serialize in the long, normalized form.

use std::net::Ipv4Addr;

use indexmap::IndexMap;
use ipnet::Ipv4Net;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::forms::{
    Command, DependsOn, EnvFiles, Environment, Labels, NetworkMode, RestartPolicy, StringOrList,
};
use super::ports::Ports;
use super::units::{ByteSize, Duration};
use super::volumes::Mount;

/// A whole project file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectFile {
    /// The project's name; `-p` and `COMPOSE_PROJECT_NAME` take precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Obsolete in Compose; accepted and ignored.
    #[serde(default, skip_serializing)]
    #[schemars(skip)]
    pub version: Option<serde::de::IgnoredAny>,
    /// The services, by name, in file order.
    #[serde(default)]
    pub services: IndexMap<String, Service>,
    /// Named volumes, created under DEVENV_HOME on first use and kept across `down`.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub volumes: IndexMap<String, VolumeDef>,
    /// Networks, by name. Only `default`, the project's own bridge, is supported; any other is
    /// ignored with a warning.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub networks: IndexMap<String, NetworkDef>,
}

impl ProjectFile {
    /// The project's default network as written under `networks.default`, if it is.
    pub fn default_network(&self) -> Option<&NetworkDef> {
        self.networks.get(DEFAULT_NETWORK)
    }

    /// The subnet the file asks for the default network
    /// (`networks.default.ipam.config[0].subnet`); `None` lets devenv pick a /24 from its pool.
    pub fn default_subnet(&self) -> Option<Ipv4Net> {
        self.default_network().and_then(NetworkDef::subnet)
    }
}

/// One service: a container and everything devenv needs to run it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Image reference, for example `redis:7` or `registry.local:5000/app@sha256:...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// When `up` pulls the image: `missing` (default), `always` or `never`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Overrides the image's Cmd. A string is split as a shell would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Overrides the image's Entrypoint. A string is split as a shell would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Command>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// Variables set in the container: a map, or a list of `KEY=VALUE` / `KEY`.
    #[serde(default, skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
    /// Files of `KEY=VALUE` lines whose variables are added to `environment`.
    #[serde(default, skip_serializing_if = "EnvFiles::is_empty")]
    pub env_file: EnvFiles,
    /// `user`, `user:group`, `uid` or `uid:gid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The container's hostname; the service name when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// `bridge` (default), `host`, `none` or `service:NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<NetworkMode>,
    /// Published ports: `"8080:80"`, `"127.0.0.1:8080:80/udp"`, `"9000-9002:9000-9002"`, `"80"` or
    /// the long form.
    #[serde(default, skip_serializing_if = "Ports::is_empty")]
    pub ports: Ports,
    /// Ports the service listens on, for documentation; every port is reachable on the project's
    /// network anyway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose: Vec<StringOrNumber>,
    /// Bind mounts, named volumes and tmpfs: `./src:/app:ro`, `data:/var/lib/x` or the long form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Mount>,
    /// Paths mounted as tmpfs, as a string or a list.
    #[serde(default, skip_serializing_if = "StringOrList::is_empty")]
    pub tmpfs: StringOrList,
    /// Services this one waits for: a list of names, or a map with `condition`, `required`,
    /// `restart`.
    #[serde(default, skip_serializing_if = "DependsOn::is_empty")]
    pub depends_on: DependsOn,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Healthcheck>,
    /// `no` (default), `always`, `on-failure[:N]` or `unless-stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
    /// Signal sent on stop; the image's StopSignal or SIGTERM when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Time to wait after the stop signal before SIGKILL (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_grace_period: Option<Duration>,
    /// Run an init as PID 1 that forwards signals and reaps zombies (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<bool>,
    /// Memory limit: bytes, or a number with a unit (`512m`, `1g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem_limit: Option<ByteSize>,
    /// CPU limit in cores, for example `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Maximum number of processes; -1 or 0 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cap_drop: Vec<String>,
    /// The service starts only when one of these profiles is active.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Live-edit rules (devenv's name for Compose's `develop.watch`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watch: Vec<WatchRule>,
    /// Compose's spelling of `watch`; merged into it.
    #[serde(default, skip_serializing)]
    pub develop: Option<Develop>,
}

impl Service {
    /// The service's pull policy, `missing` when unset.
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull_policy.unwrap_or_default()
    }
}

/// When `up` pulls a service's image from its registry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PullPolicy {
    /// Only when the image is not in the store (Compose's `if_not_present` and `build` too).
    #[default]
    Missing,
    /// On every `up`.
    Always,
    /// Never: the image must be in the store already.
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Missing => "missing",
            PullPolicy::Always => "always",
            PullPolicy::Never => "never",
        }
    }
}

impl std::fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for PullPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "missing" | "if_not_present" | "build" => Ok(PullPolicy::Missing),
            "always" => Ok(PullPolicy::Always),
            "never" => Ok(PullPolicy::Never),
            _ => Err(format!(
                "invalid pull policy {s:?}: expected \"missing\", \"always\" or \"never\""
            )),
        }
    }
}

impl Serialize for PullPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for PullPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for PullPolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "PullPolicy".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "`missing` (default; Compose's `if_not_present` and `build` mean the same), `always` or `never`.",
            "enum": ["missing", "always", "never", "if_not_present", "build"]
        })
    }
}

/// Compose's `develop` section; only `watch` is meaningful.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Develop {
    #[serde(default)]
    pub watch: Vec<WatchRule>,
}

/// A port listed under `expose`: a number or a `PORT[/PROTO]` / range string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum StringOrNumber {
    Number(u32),
    String(String),
}

/// How devenv decides a service is healthy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    /// `["CMD", "prog", "arg"]`, `["CMD-SHELL", "cmd"]`, `["NONE"]`, or a string run by the shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<super::forms::HealthTest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<Duration>,
    /// Disables the image's healthcheck (same as `test: ["NONE"]`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disable: bool,
}

/// One live-edit rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchRule {
    /// Host path to watch, relative to the project directory.
    pub path: String,
    pub action: WatchAction,
    /// Path in the container that `sync` copies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Patterns (gitignore syntax) whose changes are ignored.
    #[serde(default, skip_serializing_if = "StringOrList::is_empty")]
    pub ignore: StringOrList,
    /// Only changes matching these patterns count.
    #[serde(default, skip_serializing_if = "StringOrList::is_empty")]
    pub include: StringOrList,
    /// The command of a `sync+exec` rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<WatchExec>,
    /// The signal of a `signal` rule: `SIGHUP` (the default), `HUP` or a number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// Compose's `initial_sync`; accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_sync: Option<bool>,
}

/// What a watch rule does when its files change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WatchAction {
    #[serde(rename = "restart")]
    Restart,
    #[serde(rename = "sync")]
    Sync,
    #[serde(rename = "sync+restart")]
    SyncRestart,
    #[serde(rename = "sync+exec")]
    SyncExec,
    #[serde(rename = "signal")]
    Signal,
    /// Compose's `rebuild` needs `build`, which devenv does not support yet.
    #[serde(rename = "rebuild")]
    Rebuild,
}

/// The command a `sync+exec` rule runs in the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchExec {
    pub command: Command,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Environment::is_empty")]
    pub environment: Environment,
}

/// A named volume declared at the top level.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeDef {
    /// The name on the host; `<project>_<key>` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Created outside devenv; never created nor removed by it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub external: bool,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
    /// Only the `local` driver exists in devenv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
}

/// The name of the project's own network in `networks:`.
pub const DEFAULT_NETWORK: &str = "default";

/// A network declared at the top level; only `default` is kept in the model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NetworkDef {
    /// Only `bridge` exists in devenv.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub driver: Option<String>,
    /// Addressing: the subnet of the project's bridge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipam: Option<Ipam>,
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

impl NetworkDef {
    /// The subnet of the first (and only) `ipam.config` entry.
    pub fn subnet(&self) -> Option<Ipv4Net> {
        self.ipam.as_ref()?.config.first().map(|c| c.subnet)
    }
}

/// A network's address management.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Ipam {
    /// At most one entry: the network's subnet and, optionally, its gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config: Vec<IpamConfig>,
}

/// One address range of a network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IpamConfig {
    /// An IPv4 subnet such as `10.89.5.0/24`, at most /30.
    #[serde(deserialize_with = "de_subnet")]
    #[schemars(schema_with = "subnet_schema")]
    pub subnet: Ipv4Net,
    /// The bridge's address; devenv always puts it on the subnet's first host address.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de_gateway")]
    #[schemars(schema_with = "gateway_schema")]
    pub gateway: Option<Ipv4Addr>,
}

/// Parses `ipam.config[].subnet`: an IPv4 network in CIDR notation. Whether its host bits are
/// clear and it has room for a container is checked with the rest of the project.
pub fn parse_subnet(text: &str) -> Result<Ipv4Net, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<Ipv4Net>() {
        return Ok(net);
    }
    if text.parse::<ipnet::Ipv6Net>().is_ok() {
        return Err(format!(
            "IPv6 subnet {text:?} is not supported yet: expected an IPv4 subnet like 10.89.5.0/24"
        ));
    }
    Err(format!("invalid subnet {text:?}: expected an IPv4 subnet like 10.89.5.0/24"))
}

fn de_subnet<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Ipv4Net, D::Error> {
    parse_subnet(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

fn de_gateway<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Ipv4Addr>, D::Error> {
    let text = String::deserialize(d)?;
    let text = text.trim();
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid gateway {text:?}: expected an IPv4 address like 10.89.5.1"
        ))
    })
}

fn subnet_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "description": "An IPv4 subnet such as `10.89.5.0/24`, at most /30.",
        "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$"
    })
}

fn gateway_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "description": "The bridge's address; devenv always puts it on the subnet's first host address.",
        "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}$"
    })
}
