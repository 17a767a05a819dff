//! Service mounts: Compose's short syntax (`./src:/app:ro`, `data:/var/lib/x`, `/cache`) and long
//! syntax (`type: bind | volume | tmpfs`), each normalized to one [`Mount`].
//!
//! Host paths are kept as written: the loader resolves `.` and `~` against the project directory.

use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::forms::Labels;
use super::units::{text_of, ByteSize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    /// A host path.
    Bind,
    /// A named volume, or an anonymous one when there is no source.
    Volume,
    /// An empty in-memory filesystem.
    Tmpfs,
}

impl FromStr for MountType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "bind" => Ok(MountType::Bind),
            "volume" => Ok(MountType::Volume),
            "tmpfs" => Ok(MountType::Tmpfs),
            "npipe" | "cluster" | "image" => Err(format!(
                "mount type {s:?} is not supported: devenv mounts bind, volume and tmpfs, like {{type: bind, source: ./src, target: /app}}"
            )),
            _ => Err(format!("unknown mount type {s:?}: expected bind, volume or tmpfs")),
        }
    }
}

impl fmt::Display for MountType {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = match self {
            MountType::Bind => "bind",
            MountType::Volume => "volume",
            MountType::Tmpfs => "tmpfs",
        };
        f.write_str(name)
    }
}

impl<'de> Deserialize<'de> for MountType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// One entry of a service's `volumes:`, in Compose's long form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    /// The host path of a bind mount (as written, maybe relative), or the volume's name; `None`
    /// for tmpfs and anonymous volumes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The absolute path in the container, cleaned (`/app/` is `/app`).
    pub target: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs: Option<TmpfsOptions>,
    /// Docker Desktop's `cached`, `delegated` or `consistent`; accepted, without effect on Linux.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency: Option<String>,
}

impl Mount {
    pub fn new(kind: MountType, source: Option<String>, target: String) -> Self {
        let (bind, volume, tmpfs, consistency) = (None, None, None, None);
        Mount { kind, source, target, read_only: false, bind, volume, tmpfs, consistency }
    }

    /// Whether a missing bind source is created as a directory (Compose's default).
    pub fn create_host_path(&self) -> bool {
        self.kind == MountType::Bind && self.bind.as_ref().is_none_or(|b| b.create_host_path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindOptions {
    /// Create a missing host path as a directory; true by default in both syntaxes, as in
    /// current Compose.
    #[serde(default = "yes", deserialize_with = "flag")]
    pub create_host_path: bool,
    /// `shared`, `slave`, `private`, `rshared`, `rslave` or `rprivate`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub propagation: Option<String>,
    /// SELinux relabeling: `z` (shared) or `Z` (private).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selinux: Option<String>,
    /// `enabled`, `disabled`, `writable` or `readonly`, for submounts of the source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recursive: Option<String>,
}

impl Default for BindOptions {
    fn default() -> Self {
        BindOptions { create_host_path: true, propagation: None, selinux: None, recursive: None }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeOptions {
    /// Do not copy the image's files at the target into a new, empty volume.
    #[serde(default, deserialize_with = "flag", skip_serializing_if = "std::ops::Not::not")]
    pub nocopy: bool,
    /// Mount this directory of the volume instead of its root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
    /// Labels set on the volume when this mount creates it.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub labels: Labels,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmpfsOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<ByteSize>,
    /// Permission bits. Always read as octal, even unquoted (`1777`, `0755`), since that is how
    /// people write them; written back as an octal string.
    #[serde(default, deserialize_with = "octal", serialize_with = "to_octal")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

fn yes() -> bool {
    true
}

/// A boolean, also as the strings `"true"` / `"false"` that interpolation produces.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = text_of(d, "true or false")?;
    match text.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(de::Error::custom(format!("invalid boolean {text:?}: expected true or false"))),
    }
}

fn octal<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let text = text_of(d, "file mode bits in octal, like \"1777\"")?;
    u32::from_str_radix(&text, 8).ok().filter(|&m| m <= 0o7777).map(Some).ok_or_else(|| {
        de::Error::custom(format!(
            "invalid mode {text:?}: expected permission bits in octal, like \"1777\" or \"0755\""
        ))
    })
}

fn to_octal<S: Serializer>(mode: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&format_args!("{:04o}", mode.unwrap_or_default()))
}

/// Checks a container path and cleans it as Compose does (Go's `path.Clean`).
fn container_path(path: &str) -> Result<String, String> {
    if !path.starts_with('/') {
        let example = format!("/{}", path.trim_start_matches("./"));
        return Err(format!("container path {path:?} must be absolute, like {example}"));
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => _ = parts.pop(),
            _ => parts.push(part),
        }
    }
    match parts.is_empty() {
        true => Err(format!("container path {path:?} is the root: mount below it, like /data")),
        false => Ok(format!("/{}", parts.join("/"))),
    }
}

/// A named volume's name, as Docker allows them; `hint` says how to write a host path instead.
fn check_volume_name(name: &str, hint: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    match valid {
        true => Ok(()),
        false => Err(format!(
            "invalid volume name {name:?}: a name starts with a letter or digit and has only letters, digits, '_', '.' and '-'; {hint}"
        )),
    }
}

const PROPAGATIONS: [&str; 6] = ["shared", "slave", "private", "rshared", "rslave", "rprivate"];
/// Every short-syntax MODE, space-separated.
const MODES: &str =
    "ro rw z Z cached delegated consistent nocopy shared slave private rshared rslave rprivate";

/// Applies a short-syntax MODE list, like `ro,z`.
fn apply_modes(mount: &mut Mount, modes: &str) -> Result<(), String> {
    let (mut ro, mut rw) = (false, false);
    for mode in modes.split(',') {
        let is_bind = mount.kind == MountType::Bind;
        let bind_only = || {
            format!("mode {mode:?} applies only to bind mounts of a host path, like \"./src:/app:{mode}\"")
        };
        match mode {
            "ro" => ro = true,
            "rw" => rw = true,
            "cached" | "delegated" | "consistent" => mount.consistency = Some(mode.into()),
            "nocopy" if is_bind => {
                return Err(
                    "mode \"nocopy\" applies only to named volumes, like \"data:/data:nocopy\""
                        .into(),
                );
            }
            "nocopy" => mount.volume.get_or_insert_with(Default::default).nocopy = true,
            "z" | "Z" if is_bind => {
                mount.bind.get_or_insert_with(Default::default).selinux = Some(mode.into())
            }
            _ if PROPAGATIONS.contains(&mode) && is_bind => {
                mount.bind.get_or_insert_with(Default::default).propagation = Some(mode.into())
            }
            "z" | "Z" => return Err(bind_only()),
            _ if PROPAGATIONS.contains(&mode) => return Err(bind_only()),
            _ => {
                let modes = MODES.replace(' ', ", ");
                return Err(format!(
                    "unknown mount mode {mode:?}: expected a comma-separated list of {modes}"
                ));
            }
        }
    }
    if ro && rw {
        return Err(format!(
            "modes \"ro\" and \"rw\" contradict each other in {modes:?}: keep one"
        ));
    }
    mount.read_only = ro;
    Ok(())
}

/// Parses Compose's short syntax: `SOURCE:TARGET[:MODE]`, or `TARGET` alone for an anonymous
/// volume. A source starting with `.`, `/` or `~` is a host path; anything else names a volume.
pub fn parse_short(spec: &str) -> Result<Mount, String> {
    const SHAPE: &str = "expected SOURCE:TARGET[:MODE], like \"./src:/app:ro\" or \"data:/data\"";
    let parts: Vec<&str> = spec.split(':').collect();
    if spec.is_empty() {
        return Err(format!("empty mount: {SHAPE}"));
    }
    if parts.contains(&"") {
        return Err(format!("empty part between \":\" in {spec:?}: {SHAPE}"));
    }
    let (source, target, modes) = match parts[..] {
        [target] => (None, target, None),
        // `/data:ro` reads as source `/data`, target `ro`: say what is missing.
        [source, modes] if modes.split(',').all(|m| MODES.split(' ').any(|v| v == m)) => {
            let target = if source.starts_with('/') { source } else { "/data" };
            return Err(format!("{spec:?} has no container path: expected SOURCE:TARGET:MODE, like \"{source}:{target}:{modes}\""));
        }
        [source, target] => (Some(source), target, None),
        [source, target, modes] => (Some(source), target, Some(modes)),
        _ => return Err(format!("too many \":\" in {spec:?}: {SHAPE}")),
    };
    let kind = match source {
        Some(s) if s.starts_with(['.', '/', '~']) => MountType::Bind,
        _ => MountType::Volume,
    };
    if let (MountType::Volume, Some(name)) = (kind, source) {
        check_volume_name(
            name,
            &format!("for a path relative to the project directory write \"./{name}\""),
        )?;
    }
    let mut mount = Mount::new(kind, source.map(str::to_owned), container_path(target)?);
    if let Some(modes) = modes {
        apply_modes(&mut mount, modes)?;
    }
    Ok(mount)
}

/// The long syntax as written; [`LongMount::into_mount`] checks and normalizes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongMount {
    #[serde(rename = "type")]
    kind: Option<MountType>,
    source: Option<String>,
    target: Option<String>,
    #[serde(default, deserialize_with = "flag")]
    read_only: bool,
    bind: Option<BindOptions>,
    volume: Option<VolumeOptions>,
    tmpfs: Option<TmpfsOptions>,
    consistency: Option<String>,
}

impl LongMount {
    fn into_mount(self) -> Result<Mount, String> {
        use MountType::*;
        let Some(kind) = self.kind else {
            return Err("a mount needs \"type\": bind, volume or tmpfs, like {type: bind, source: ./src, target: /app}".into());
        };
        let Some(target) = self.target else {
            return Err(format!("a {kind} mount needs \"target\", the path in the container, like {{type: {kind}, target: /data}}"));
        };
        let source = self.source.filter(|s| !s.is_empty());
        match (kind, &source) {
            (Bind, None) => {
                return Err("a bind mount needs \"source\", the host path, like {type: bind, source: ./src, target: /app}".into());
            }
            (Tmpfs, Some(_)) => {
                return Err("a tmpfs mount has no \"source\": it starts empty; remove the key, like {type: tmpfs, target: /tmp}".into());
            }
            (Volume, Some(name)) => check_volume_name(name, "for a host path use type: bind")?,
            _ => {}
        }
        for (given, section) in [
            (self.bind.is_some(), Bind),
            (self.volume.is_some(), Volume),
            (self.tmpfs.is_some(), Tmpfs),
        ] {
            if given && section != kind {
                return Err(format!("\"{section}\" options apply only to type: {section} mounts, and this one is type: {kind}"));
            }
        }
        if let Some(b) = &self.bind {
            let check = |value: &Option<String>, key: &str, valid: &[&str]| match value {
                Some(v) if !valid.contains(&v.as_str()) => {
                    Err(format!("invalid bind {key} {v:?}: expected one of {}", valid.join(", ")))
                }
                _ => Ok(()),
            };
            check(&b.propagation, "propagation", &PROPAGATIONS)?;
            check(&b.selinux, "selinux", &["z", "Z"])?;
            check(&b.recursive, "recursive", &["enabled", "disabled", "writable", "readonly"])?;
        }
        Ok(Mount {
            read_only: self.read_only,
            bind: self.bind,
            volume: self.volume,
            tmpfs: self.tmpfs,
            consistency: self.consistency,
            ..Mount::new(kind, source, container_path(&target)?)
        })
    }
}

impl<'de> Deserialize<'de> for Mount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Mount;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mount: a string like \"./src:/app:ro\" or a map with \"type\" and \"target\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Mount, E> {
                parse_short(s).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Mount, A::Error> {
                let long = LongMount::deserialize(de::value::MapAccessDeserializer::new(map))?;
                long.into_mount().map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Mount {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Mount".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let flag = serde_json::json!({"type": ["boolean", "string"]});
        let object = |properties: serde_json::Value| serde_json::json!({"type": "object", "additionalProperties": false, "properties": properties});
        json_schema!({
            "oneOf": [
                {
                    "type": "string",
                    "description": "SOURCE:TARGET[:MODE] or TARGET; a SOURCE starting with `.`, `/` or `~` is a host path, anything else a volume name.",
                    "examples": ["./src:/app:ro", "data:/var/lib/data", "/cache"]
                },
                {
                    "type": "object",
                    "required": ["type", "target"],
                    "additionalProperties": false,
                    "properties": {
                        "type": {"type": "string", "enum": ["bind", "volume", "tmpfs"]},
                        "source": {"type": "string", "description": "Host path (bind) or volume name (volume)."},
                        "target": {"type": "string", "description": "Absolute path in the container."},
                        "read_only": flag,
                        "consistency": {"type": "string"},
                        "bind": object(serde_json::json!({
                            "create_host_path": flag,
                            "propagation": {"type": "string", "enum": PROPAGATIONS},
                            "selinux": {"type": "string", "enum": ["z", "Z"]},
                            "recursive": {"type": "string", "enum": ["enabled", "disabled", "writable", "readonly"]}
                        })),
                        "volume": object(serde_json::json!({
                            "nocopy": flag,
                            "subpath": {"type": "string"},
                            "labels": {"type": ["object", "array"]}
                        })),
                        "tmpfs": object(serde_json::json!({
                            "size": {"type": ["integer", "string"], "description": "Bytes, or a size like `64m`."},
                            "mode": {"type": ["integer", "string"], "description": "Permission bits in octal, like `1777`."}
                        }))
                    }
                }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use MountType::*;

    fn m(kind: MountType, source: &str, target: &str) -> Mount {
        Mount::new(kind, (!source.is_empty()).then(|| source.to_owned()), target.to_owned())
    }
    fn long(v: serde_json::Value) -> Result<Mount, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn short_syntax() {
        let bind = |selinux: &str, propagation: &str| BindOptions {
            selinux: Some(selinux.into()),
            propagation: Some(propagation.into()),
            ..BindOptions::default()
        };
        let nocopy = VolumeOptions { nocopy: true, ..VolumeOptions::default() };
        for (spec, want) in [
            ("/cache", m(Volume, "", "/cache")),
            ("data:/data", m(Volume, "data", "/data")),
            ("my.vol_1-x:/x", m(Volume, "my.vol_1-x", "/x")),
            ("./src:/app", m(Bind, "./src", "/app")),
            ("../x:/x/", m(Bind, "../x", "/x")),
            ("/a:/app/./b/../c//d", m(Bind, "/a", "/app/c/d")),
            ("~/code:/code:ro", Mount { read_only: true, ..m(Bind, "~/code", "/code") }),
            ("/run/d.sock:/run/d.sock:rw", m(Bind, "/run/d.sock", "/run/d.sock")),
            (
                "./src:/app:ro,z,rshared,cached",
                Mount {
                    read_only: true,
                    bind: Some(bind("z", "rshared")),
                    consistency: Some("cached".into()),
                    ..m(Bind, "./src", "/app")
                },
            ),
            ("data:/data:nocopy", Mount { volume: Some(nocopy), ..m(Volume, "data", "/data") }),
        ] {
            assert_eq!(parse_short(spec), Ok(want.clone()), "{spec}");
            assert_eq!(long(json!(spec)), Ok(want), "{spec} through serde");
        }
    }

    #[test]
    fn short_syntax_errors_explain() {
        let shape = "expected SOURCE:TARGET[:MODE], like \"./src:/app:ro\" or \"data:/data\"";
        let name = |n: &str| {
            format!("invalid volume name {n:?}: a name starts with a letter or digit and has only letters, digits, '_', '.' and '-'; for a path relative to the project directory write \"./{n}\"")
        };
        let bind_only = |mode: &str| {
            format!("mode {mode:?} applies only to bind mounts of a host path, like \"./src:/app:{mode}\"")
        };
        for (spec, want) in [
            ("", format!("empty mount: {shape}")),
            ("a::/b", format!("empty part between \":\" in \"a::/b\": {shape}")),
            ("./a:/b:ro:x", format!("too many \":\" in \"./a:/b:ro:x\": {shape}")),
            ("./src:app", "container path \"app\" must be absolute, like /app".into()),
            ("./src:./app", "container path \"./app\" must be absolute, like /app".into()),
            ("./src:/..", "container path \"/..\" is the root: mount below it, like /data".into()),
            ("/data:ro", "\"/data:ro\" has no container path: expected SOURCE:TARGET:MODE, like \"/data:/data:ro\"".into()),
            ("data:ro,z", "\"data:ro,z\" has no container path: expected SOURCE:TARGET:MODE, like \"data:/data:ro,z\"".into()),
            ("my vol:/x", name("my vol")),
            ("src/app:/app", name("src/app")),
            ("_x:/x", name("_x")),
            ("./s:/a:ro,rw", "modes \"ro\" and \"rw\" contradict each other in \"ro,rw\": keep one".into()),
            ("./s:/a:ro,", "unknown mount mode \"\": expected a comma-separated list of ro, rw, z, Z, cached, delegated, consistent, nocopy, shared, slave, private, rshared, rslave, rprivate".into()),
            ("./s:/a:nocopy", "mode \"nocopy\" applies only to named volumes, like \"data:/data:nocopy\"".into()),
            ("data:/data:z", bind_only("z")),
            ("data:/data:rshared", bind_only("rshared")),
        ] {
            assert_eq!(parse_short(spec), Err(want), "{spec}");
        }
    }

    #[test]
    fn long_syntax() {
        let bind = BindOptions {
            create_host_path: false,
            propagation: Some("rslave".into()),
            selinux: Some("Z".into()),
            recursive: Some("readonly".into()),
        };
        let labels = Labels([("a".to_owned(), "b".to_owned())].into_iter().collect());
        let volume = VolumeOptions { nocopy: true, subpath: Some("sub".into()), labels };
        let tmpfs = |size, mode| TmpfsOptions { size, mode: Some(mode) };
        for (v, want) in [
            (
                json!({"type": "bind", "source": "./src", "target": "/app/", "read_only": "true"}),
                Mount { read_only: true, ..m(Bind, "./src", "/app") },
            ),
            (
                json!({"type": "bind", "source": "src", "target": "/x", "bind": {"create_host_path": false,
                       "propagation": "rslave", "selinux": "Z", "recursive": "readonly"}}),
                Mount { bind: Some(bind), ..m(Bind, "src", "/x") },
            ),
            (
                json!({"type": "bind", "source": "/s", "target": "/x", "bind": {}, "consistency": "delegated"}),
                Mount {
                    bind: Some(BindOptions::default()),
                    consistency: Some("delegated".into()),
                    ..m(Bind, "/s", "/x")
                },
            ),
            (
                json!({"type": "volume", "source": "data", "target": "/data", "read_only": false,
                       "volume": {"nocopy": true, "subpath": "sub", "labels": ["a=b"]}}),
                Mount { volume: Some(volume), ..m(Volume, "data", "/data") },
            ),
            (json!({"type": "volume", "source": "", "target": "/anon"}), m(Volume, "", "/anon")),
            (
                json!({"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "64m", "mode": 1777}}),
                Mount {
                    tmpfs: Some(tmpfs(Some(ByteSize(64 << 20)), 0o1777)),
                    ..m(Tmpfs, "", "/tmp")
                },
            ),
            (
                json!({"type": "tmpfs", "target": "/tmp", "tmpfs": {"mode": "0755"}}),
                Mount { tmpfs: Some(tmpfs(None, 0o755)), ..m(Tmpfs, "", "/tmp") },
            ),
        ] {
            assert_eq!(long(v.clone()), Ok(want), "{v}");
        }
    }

    #[test]
    fn long_syntax_errors_explain() {
        for (v, want) in [
            (json!({"target": "/x"}), "a mount needs \"type\": bind, volume or tmpfs, like {type: bind, source: ./src, target: /app}"),
            (json!({"type": "volume", "source": "d"}), "a volume mount needs \"target\", the path in the container, like {type: volume, target: /data}"),
            (json!({"type": "npipe", "target": "/x"}), "mount type \"npipe\" is not supported: devenv mounts bind, volume and tmpfs, like {type: bind, source: ./src, target: /app}"),
            (json!({"type": "nfs", "target": "/x"}), "unknown mount type \"nfs\": expected bind, volume or tmpfs"),
            (json!({"type": "bind", "target": "/x"}), "a bind mount needs \"source\", the host path, like {type: bind, source: ./src, target: /app}"),
            (json!({"type": "tmpfs", "source": "t", "target": "/x"}), "a tmpfs mount has no \"source\": it starts empty; remove the key, like {type: tmpfs, target: /tmp}"),
            (json!({"type": "volume", "source": "./d", "target": "/x"}), "invalid volume name \"./d\": a name starts with a letter or digit and has only letters, digits, '_', '.' and '-'; for a host path use type: bind"),
            (json!({"type": "volume", "target": "x"}), "container path \"x\" must be absolute, like /x"),
            (json!({"type": "volume", "target": "/x", "bind": {}}), "\"bind\" options apply only to type: bind mounts, and this one is type: volume"),
            (json!({"type": "tmpfs", "target": "/x", "volume": {}}), "\"volume\" options apply only to type: volume mounts, and this one is type: tmpfs"),
            (json!({"type": "bind", "source": "/s", "target": "/x", "tmpfs": {}}), "\"tmpfs\" options apply only to type: tmpfs mounts, and this one is type: bind"),
            (json!({"type": "volume", "sorce": "d", "target": "/x"}), "unknown field `sorce`, expected one of `type`, `source`, `target`, `read_only`, `bind`, `volume`, `tmpfs`, `consistency`"),
            (json!({"type": "bind", "source": "/s", "target": "/x", "bind": {"selinux": "y"}}), "invalid bind selinux \"y\": expected one of z, Z"),
            (json!({"type": "bind", "source": "/s", "target": "/x", "bind": {"propagation": "up"}}), "invalid bind propagation \"up\": expected one of shared, slave, private, rshared, rslave, rprivate"),
            (json!({"type": "bind", "source": "/s", "target": "/x", "bind": {"recursive": "no"}}), "invalid bind recursive \"no\": expected one of enabled, disabled, writable, readonly"),
            (json!({"type": "volume", "target": "/x", "read_only": "yes"}), "invalid boolean \"yes\": expected true or false"),
            (json!({"type": "tmpfs", "target": "/x", "tmpfs": {"mode": "0855"}}), "invalid mode \"0855\": expected permission bits in octal, like \"1777\" or \"0755\""),
            (json!({"type": "tmpfs", "target": "/x", "tmpfs": {"mode": 17777}}), "invalid mode \"17777\": expected permission bits in octal, like \"1777\" or \"0755\""),
            (json!({"type": "tmpfs", "target": "/x", "tmpfs": {"size": "lots"}}), "invalid size \"lots\": expected a number of bytes, optionally with a unit (b, k, m, g, t, p), like \"512m\" or \"1.5g\""),
            (json!(["/x"]), "invalid type: sequence, expected a mount: a string like \"./src:/app:ro\" or a map with \"type\" and \"target\""),
        ] {
            assert_eq!(long(v.clone()), Err(want.to_owned()), "{v}");
        }
    }

    #[test]
    fn serializes_in_the_long_form_and_reads_it_back() {
        let specs = json!(["./src:/app:ro,z", "data:/data:nocopy", "/anon",
                           {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": "1k", "mode": 1777}}]);
        let mounts: Vec<Mount> = serde_json::from_value(specs).unwrap();
        let out = serde_json::to_value(&mounts).unwrap();
        assert_eq!(
            out,
            json!([
                {"type": "bind", "source": "./src", "target": "/app", "read_only": true,
                 "bind": {"create_host_path": true, "selinux": "z"}},
                {"type": "volume", "source": "data", "target": "/data", "volume": {"nocopy": true}},
                {"type": "volume", "target": "/anon"},
                {"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 1024, "mode": "1777"}}
            ])
        );
        assert_eq!(serde_json::from_value::<Vec<Mount>>(out).unwrap(), mounts);
        assert!(mounts[0].create_host_path());
        assert!(!mounts[1].create_host_path());
    }
}
