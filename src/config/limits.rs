//! Resource limits of a service as written: `ulimits`, and `deploy.resources`, Compose's other
//! spelling of `mem_limit`, `cpus` and `pids_limit`. [`Service::limits`] merges the two
//! spellings into the limits the container gets; `validate` checks what needs the whole
//! service (names of ulimits, soft against hard, the two spellings against each other).
//!
//! Of `deploy`, only `resources` is read here: its other keys (`replicas`, `placement`...) are
//! taken out beforehand as unsupported (see [`super::unsupported::DEPLOY`]), and
//! `resources.reservations` is accepted and ignored with a warning, since devenv reserves
//! nothing for a container.

use std::fmt;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::diagnostic::Diagnostic;
use super::load::{Project, Source};
use super::locate::{mark_of, path_string, Seg};
use super::model::Service;
use super::units::ByteSize;
use super::yaml::Node;
use crate::suggest::nearest;

/// The names `ulimits` takes, as Docker's `--ulimit` does (go-units `ulimitNameMapping`); each is
/// `RLIMIT_` + the name in capitals.
pub const ULIMIT_NAMES: [&str; 16] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
    "as",
];

/// Compose's `deploy` section; devenv reads only `resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Deploy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<DeployResources>,
}

/// `deploy.resources`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeployResources {
    /// The same limits as `mem_limit`, `cpus` and `pids_limit`; when both spellings set one,
    /// they must be equal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<ResourceLimits>,
    /// Accepted and ignored with a warning: devenv reserves nothing for a container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "reservations_schema")]
    pub reservations: Option<serde_json::Value>,
}

/// `deploy.resources.limits`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceLimits {
    /// CPU limit in cores, like `0.5` or `"0.5"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit: bytes, or a number with a unit (`512m`, `1g`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Maximum number of processes; -1 or 0 for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<i64>,
}

fn reservations_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "description": "Accepted and ignored with a warning: devenv reserves nothing for a container."
    })
}

/// The limits a service's container gets: each from the service's own key, else from
/// `deploy.resources.limits` (the two must agree when both are set; loading checks it).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    pub memory: Option<ByteSize>,
    pub cpus: Option<f64>,
    pub pids: Option<i64>,
}

impl Service {
    pub fn limits(&self) -> Limits {
        let deploy = self.deploy_limits().cloned().unwrap_or_default();
        Limits {
            memory: self.mem_limit.or(deploy.memory),
            cpus: self.cpus.or(deploy.cpus),
            pids: self.pids_limit.or(deploy.pids),
        }
    }

    fn deploy_limits(&self) -> Option<&ResourceLimits> {
        self.deploy.as_ref()?.resources.as_ref()?.limits.as_ref()
    }
}

/// The `ulimits` of a service, by name, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Ulimits(pub IndexMap<String, Ulimit>);

impl JsonSchema for Ulimits {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ulimits".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "description": "Resource limits by name, as Docker's `--ulimit` names them.",
            "propertyNames": {"enum": ULIMIT_NAMES},
            "additionalProperties": g.subschema_for::<Ulimit>()
        })
    }
}

impl Ulimits {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// One ulimit, soft and hard; `nproc: 65535` sets both. [`UNLIMITED`] is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

/// A ulimit of -1 (or `unlimited`) is no limit (`RLIM_INFINITY`), as in Docker.
pub const UNLIMITED: i64 = -1;

/// `soft` and `hard` of the long form; read through serde so that an unknown key or a bad value
/// is located like any other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftHard {
    soft: UlimitValue,
    hard: UlimitValue,
}

struct UlimitValue(i64);

impl<'de> Deserialize<'de> for UlimitValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = super::units::text_of(d, "a number, or -1 or \"unlimited\" for no limit")?;
        parse_value(&text).map(UlimitValue).map_err(de::Error::custom)
    }
}

fn parse_value(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("unlimited") {
        return Ok(UNLIMITED);
    }
    match t.parse::<i64>() {
        Ok(n) if n >= UNLIMITED => Ok(n),
        _ => Err(format!(
            "invalid ulimit {t:?}: expected a number from 0, or -1 or \"unlimited\" for no limit"
        )),
    }
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ulimit;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, or a map with `soft` and `hard`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Ulimit, E> {
                let n = parse_value(s).map_err(E::custom)?;
                Ok(Ulimit { soft: n, hard: n })
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Ulimit, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Ulimit, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ulimit, A::Error> {
                let p = SoftHard::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Ulimit { soft: p.soft.0, hard: p.hard.0 })
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Ulimit {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ulimit".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "One value for soft and hard, or both; -1 or `unlimited` is no limit.",
            "oneOf": [
                {"oneOf": [{"type": "integer", "minimum": -1}, {"type": "string", "pattern": "^([0-9]+|-1|unlimited)$"}]},
                {
                    "type": "object",
                    "properties": {
                        "soft": {"oneOf": [{"type": "integer", "minimum": -1}, {"type": "string", "pattern": "^([0-9]+|-1|unlimited)$"}]},
                        "hard": {"oneOf": [{"type": "integer", "minimum": -1}, {"type": "string", "pattern": "^([0-9]+|-1|unlimited)$"}]}
                    },
                    "required": ["soft", "hard"],
                    "additionalProperties": false
                }
            ]
        })
    }
}

/// The mark of the last key of `path` itself (`mark_of` gives a scalar's value).
fn key_mark(root: &Node, path: &[Seg]) -> Option<super::yaml::Mark> {
    let (Seg::Key(last), parents) = path.split_last()? else { return None };
    let mut node = root;
    for seg in parents {
        let Seg::Key(k) = seg else { return None };
        node = &node.get(k)?.value;
    }
    Some(node.get(last)?.key_mark)
}

/// Orders ulimit values with [`UNLIMITED`] above every number.
fn rank(v: i64) -> u64 {
    if v == UNLIMITED {
        u64::MAX
    } else {
        v as u64
    }
}

/// Checks the limits of every service: ulimit names and soft against hard, the two spellings of
/// each limit against each other, `deploy.resources.limits.cpus` like `cpus`. A
/// `deploy.resources.reservations` is reported as ignored.
pub(crate) fn validate(project: &mut Project, root: &Node, src: &Source) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    for (name, svc) in &project.model.services {
        let at = |rest: &[Seg<'static>]| {
            let mut v = vec![Seg::Key("services"), Seg::Key(name)];
            v.extend_from_slice(rest);
            v
        };
        let mut err_at = |mark, at: &[Seg], msg: String, hint: Option<String>| {
            errors.push(src.error(mark, path_string(at), msg).with_suggestion(hint));
        };
        for (key, u) in &svc.ulimits.0 {
            let here = [Seg::Key("services"), Seg::Key(name), Seg::Key("ulimits"), Seg::Key(key)];
            if !ULIMIT_NAMES.contains(&key.as_str()) {
                let hint = nearest(key, ULIMIT_NAMES).map(|n| format!("did you mean `{n}`?"));
                let msg =
                    format!("unknown ulimit `{key}`: expected one of {}", ULIMIT_NAMES.join(", "));
                // The name is what is wrong: point at it, not at its value.
                let mark = key_mark(root, &here).unwrap_or_else(|| mark_of(root, &here));
                err_at(mark, &here, msg, hint);
            } else if rank(u.soft) > rank(u.hard) {
                let show =
                    |v: i64| if v == UNLIMITED { "unlimited".to_owned() } else { v.to_string() };
                err_at(
                    mark_of(root, &here),
                    &here,
                    format!(
                        "ulimit `{key}`: the soft limit ({}) is above the hard limit ({})",
                        show(u.soft),
                        show(u.hard)
                    ),
                    Some("raise `hard` or lower `soft`: a process can raise its soft limit only up to the hard one".into()),
                );
            }
        }

        let Some(resources) = svc.deploy.as_ref().and_then(|d| d.resources.as_ref()) else {
            continue;
        };
        let deploy =
            |k: &'static str| at(&[Seg::Key("deploy"), Seg::Key("resources"), Seg::Key(k)]);
        if resources.reservations.is_some() {
            let here = deploy("reservations");
            let msg = "`deploy.resources.reservations` is ignored: devenv reserves no resources for a container";
            warnings.push(
                Diagnostic::warning(src.file, mark_of(root, &here), path_string(&here), msg)
                    .with_source(src.text),
            );
        }
        let Some(limits) = &resources.limits else { continue };
        let mut err = |at: &[Seg], msg, hint| err_at(mark_of(root, at), at, msg, hint);
        let limit = |k: &'static str| {
            at(&[Seg::Key("deploy"), Seg::Key("resources"), Seg::Key("limits"), Seg::Key(k)])
        };
        // Compose refuses two different values rather than choosing one (compose-go's
        // `checkConsistency`), with these words.
        let conflict = |key: &str, other: &str| {
            (
                format!("{key} and deploy.resources.limits.{other} must be equal if both set"),
                Some(format!("remove one of them; `{key}` alone is enough")),
            )
        };
        if let (Some(a), Some(b)) = (svc.mem_limit, limits.memory) {
            if a != b {
                let (msg, hint) = conflict("mem_limit", "memory");
                err(&limit("memory"), msg, hint);
            }
        }
        if let Some(c) = limits.cpus {
            if !(c > 0.0 && c.is_finite()) {
                let msg = format!("cpus must be a positive number of cores, like 0.5, not {c}");
                err(&limit("cpus"), msg, None);
            } else if svc.cpus.is_some_and(|a| a != c) {
                let (msg, hint) = conflict("cpus", "cpus");
                err(&limit("cpus"), msg, hint);
            }
        }
        if let (Some(a), Some(b)) = (svc.pids_limit, limits.pids) {
            if a != b {
                let (msg, hint) = conflict("pids_limit", "pids");
                err(&limit("pids"), msg, hint);
            }
        }
    }
    project.warnings.extend(warnings);
    errors
}

#[cfg(test)]
mod tests;
