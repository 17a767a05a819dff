//! Keys that Compose accepts in more than one shape (string or list, list or map, short or long),
//! each normalized to one shape when read.

use std::fmt;

use indexmap::IndexMap;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A command line: a list of arguments, or a string split as a POSIX shell would.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Command(pub Vec<String>);

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command as a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Command, E> {
                shlex::split(s).map(Command).ok_or_else(|| {
                    E::custom(format!("cannot split command {s:?}: unbalanced quotes"))
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut args = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    args.push(a);
                }
                Ok(Command(args))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Command {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Command".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A string split as a shell would, or a list of arguments.",
            "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]
        })
    }
}

/// A string or a list of strings, normalized to a list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct StringOrList(pub Vec<String>);

impl StringOrList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for StringOrList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StringOrList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StringOrList, E> {
                Ok(StringOrList(vec![s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StringOrList, A::Error> {
                let mut v = Vec::new();
                while let Some(a) = seq.next_element::<String>()? {
                    v.push(a);
                }
                Ok(StringOrList(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for StringOrList {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StringOrList".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})
    }
}

/// Reads a `KEY: value` map or a `KEY=value` list into an ordered map. In the list form a bare
/// `KEY` has no value (`None`); in the map form `KEY:` (null) has none either.
fn list_or_map<'de, D: Deserializer<'de>>(
    d: D,
    what: &'static str,
) -> Result<IndexMap<String, Option<String>>, D::Error> {
    struct V(&'static str);
    impl<'de> Visitor<'de> for V {
        type Value = IndexMap<String, Option<String>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{} as a map of KEY: value or a list of \"KEY=value\"", self.0)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some((k, v)) = map.next_entry::<String, Option<ScalarString>>()? {
                out.insert(k, v.map(|s| s.0));
            }
            Ok(out)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = IndexMap::new();
            while let Some(item) = seq.next_element::<String>()? {
                match item.split_once('=') {
                    Some((k, v)) => out.insert(k.to_owned(), Some(v.to_owned())),
                    None => out.insert(item, None),
                };
            }
            Ok(out)
        }
    }
    d.deserialize_any(V(what))
}

/// A scalar of any YAML type (string, number, boolean) read as its text, as Compose does for
/// environment values and labels.
struct ScalarString(String);

impl<'de> Deserialize<'de> for ScalarString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ScalarString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string, number or boolean")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ScalarString, E> {
                Ok(ScalarString(s.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, b: bool) -> Result<ScalarString, E> {
                Ok(ScalarString(b.to_string()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ScalarString, E> {
                Ok(ScalarString(n.to_string()))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ScalarString, E> {
                Ok(ScalarString(n.to_string()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<ScalarString, E> {
                Ok(ScalarString(n.to_string()))
            }
        }
        // Our YAML deserializer hands every scalar over as its source text through
        // `deserialize_str`, so `1.10` stays `1.10` rather than becoming the float 1.1.
        d.deserialize_str(V)
    }
}

fn list_or_map_schema(value: serde_json::Value) -> Schema {
    json_schema!({
        "oneOf": [
            {"type": "object", "additionalProperties": value},
            {"type": "array", "items": {"type": "string"}, "uniqueItems": true}
        ]
    })
}

/// Environment variables for the container. `None` means "take it from devenv's own
/// environment if set there", as Compose does for a bare `KEY`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Environment(pub IndexMap<String, Option<String>>);

impl Environment {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        list_or_map(d, "environment").map(Environment)
    }
}

impl JsonSchema for Environment {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Environment".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        list_or_map_schema(serde_json::json!({"type": ["string", "number", "boolean", "null"]}))
    }
}

/// Labels: a map or a `key=value` list. A label without a value is the empty string.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Labels(pub IndexMap<String, String>);

impl Labels {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = list_or_map(d, "labels")?;
        Ok(Labels(m.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect()))
    }
}

impl JsonSchema for Labels {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Labels".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        list_or_map_schema(serde_json::json!({"type": ["string", "number", "boolean", "null"]}))
    }
}

/// One `env_file` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EnvFile {
    pub path: String,
    /// A missing file is an error unless this is false.
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// `env_file`: a path, or a list of paths and `{path, required}` entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct EnvFiles(pub Vec<EnvFile>);

impl EnvFiles {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry(EnvFile);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Entry;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        f.write_str("a path or a map with `path` and `required`")
                    }
                    fn visit_str<E: de::Error>(self, s: &str) -> Result<Entry, E> {
                        Ok(Entry(EnvFile { path: s.to_owned(), required: true }))
                    }
                    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                        EnvFile::deserialize(de::value::MapAccessDeserializer::new(map)).map(Entry)
                    }
                }
                d.deserialize_any(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EnvFiles;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path or a list of paths")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EnvFiles, E> {
                Ok(EnvFiles(vec![EnvFile { path: s.to_owned(), required: true }]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EnvFiles, A::Error> {
                let mut v = Vec::new();
                while let Some(Entry(e)) = seq.next_element()? {
                    v.push(e);
                }
                Ok(EnvFiles(v))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for EnvFiles {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "EnvFiles".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let entry = generator.subschema_for::<EnvFile>();
        json_schema!({
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"oneOf": [{"type": "string"}, entry]}}
            ]
        })
    }
}

/// What a dependent waits for before it starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    #[default]
    ServiceStarted,
    ServiceHealthy,
    ServiceCompletedSuccessfully,
}

/// One dependency in the long form of `depends_on`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Dependency {
    #[serde(default)]
    pub condition: Condition,
    /// When false, a dependency that is missing or fails does not stop the dependent.
    #[serde(default = "yes")]
    pub required: bool,
    /// Restart the dependent when this dependency restarts.
    #[serde(default)]
    pub restart: bool,
}

impl Default for Dependency {
    fn default() -> Self {
        Dependency { condition: Condition::ServiceStarted, required: true, restart: false }
    }
}

/// `depends_on`: a list of service names or a map of name to [`Dependency`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DependsOn(pub IndexMap<String, Dependency>);

impl DependsOn {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for DependsOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DependsOn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of service names or a map of service name to {condition, required, restart}")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DependsOn, A::Error> {
                let mut m = IndexMap::new();
                while let Some(name) = seq.next_element::<String>()? {
                    m.insert(name, Dependency::default());
                }
                Ok(DependsOn(m))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DependsOn, A::Error> {
                let mut m = IndexMap::new();
                while let Some((k, v)) = map.next_entry::<String, Option<Dependency>>()? {
                    m.insert(k, v.unwrap_or_default());
                }
                Ok(DependsOn(m))
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for DependsOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "DependsOn".into()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let dep = generator.subschema_for::<Dependency>();
        json_schema!({
            "oneOf": [
                {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                {"type": "object", "additionalProperties": dep}
            ]
        })
    }
}

/// A service's network: the project's bridge, the host's stack, none, or another service's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetworkMode {
    Bridge,
    Host,
    None,
    Service(String),
}

impl fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            NetworkMode::Bridge => f.write_str("bridge"),
            NetworkMode::Host => f.write_str("host"),
            NetworkMode::None => f.write_str("none"),
            NetworkMode::Service(s) => write!(f, "service:{s}"),
        }
    }
}

impl std::str::FromStr for NetworkMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bridge" | "default" => Ok(NetworkMode::Bridge),
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            _ => match s.strip_prefix("service:") {
                Some(name) if !name.is_empty() => Ok(NetworkMode::Service(name.to_owned())),
                _ if s.starts_with("container:") => Err(format!(
                    "network_mode {s:?} is not supported: devenv only joins services of the same project; use \"service:NAME\""
                )),
                _ => Err(format!(
                    "invalid network_mode {s:?}: expected \"bridge\", \"host\", \"none\" or \"service:NAME\""
                )),
            },
        }
    }
}

impl Serialize for NetworkMode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for NetworkMode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for NetworkMode {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "NetworkMode".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(bridge|default|host|none|service:.+)$",
            "description": "`bridge` (default), `host`, `none` or `service:NAME`."
        })
    }
}

/// When a service's container is restarted after it exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    No,
    Always,
    /// Restart after a non-zero exit, at most `max_retries` times when set.
    OnFailure {
        max_retries: Option<u32>,
    },
    UnlessStopped,
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            RestartPolicy::No => f.write_str("no"),
            RestartPolicy::Always => f.write_str("always"),
            RestartPolicy::OnFailure { max_retries: None } => f.write_str("on-failure"),
            RestartPolicy::OnFailure { max_retries: Some(n) } => write!(f, "on-failure:{n}"),
            RestartPolicy::UnlessStopped => f.write_str("unless-stopped"),
        }
    }
}

impl std::str::FromStr for RestartPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("invalid restart policy {s:?}: expected \"no\", \"always\", \"on-failure[:N]\" or \"unless-stopped\"")
        };
        match s {
            // YAML 1.1 readers turn a bare `no` into false; accept what users write either way.
            "no" | "false" => Ok(RestartPolicy::No),
            "always" => Ok(RestartPolicy::Always),
            "unless-stopped" => Ok(RestartPolicy::UnlessStopped),
            "on-failure" => Ok(RestartPolicy::OnFailure { max_retries: None }),
            _ => match s.strip_prefix("on-failure:") {
                Some(n) => n
                    .parse()
                    .map(|n| RestartPolicy::OnFailure { max_retries: Some(n) })
                    .map_err(|_| bad()),
                None => Err(bad()),
            },
        }
    }
}

impl Serialize for RestartPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RestartPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for RestartPolicy {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RestartPolicy".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": "^(no|always|unless-stopped|on-failure(:[0-9]+)?)$"
        })
    }
}

/// A healthcheck's `test`, normalized to Docker's list form (`CMD`, `CMD-SHELL` or `NONE` first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HealthTest(pub Vec<String>);

impl<'de> Deserialize<'de> for HealthTest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HealthTest;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a shell command string, or a list starting with \"CMD\", \"CMD-SHELL\" or \"NONE\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<HealthTest, E> {
                Ok(HealthTest(vec!["CMD-SHELL".into(), s.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HealthTest, A::Error> {
                let mut v: Vec<String> = Vec::new();
                while let Some(a) = seq.next_element()? {
                    v.push(a);
                }
                match v.first().map(String::as_str) {
                    Some("CMD") | Some("CMD-SHELL") if v.len() >= 2 => Ok(HealthTest(v)),
                    Some("NONE") => Ok(HealthTest(v)),
                    Some("CMD") | Some("CMD-SHELL") => {
                        Err(de::Error::custom(format!("healthcheck test {:?} has no command after it", v[0])))
                    }
                    _ => Err(de::Error::custom(
                        "a healthcheck test list must start with \"CMD\", \"CMD-SHELL\" or \"NONE\"",
                    )),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for HealthTest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HealthTest".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]})
    }
}
