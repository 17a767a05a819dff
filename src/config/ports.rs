//! Published ports: Compose's short syntax (`"127.0.0.1:8080:80/udp"`, `"9000-9002:9000-9002"`),
//! bare numbers and the long syntax, normalized to one [`PortMapping`] per container port.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::RangeInclusive;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::units::ScalarText;

/// `ports:` of a service, every entry expanded to one mapping per container port, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Ports(pub Vec<PortMapping>);

impl Ports {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if *self == Protocol::Tcp { "tcp" } else { "udp" })
    }
}

impl FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            _ => Err(format!(
                "protocol {s:?} is not supported: expected tcp or udp, like \"8080:80/udp\""
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// The host side of a mapping: one port, or a range meaning "any free port in it" (Compose's
/// meaning of a host range for a single container port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublishedRange {
    pub start: u16,
    pub end: u16,
}

impl PublishedRange {
    pub fn single(port: u16) -> Self {
        PublishedRange { start: port, end: port }
    }

    pub fn ports(&self) -> RangeInclusive<u16> {
        self.start..=self.end
    }
}

impl fmt::Display for PublishedRange {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.start == self.end {
            true => write!(f, "{}", self.start),
            false => write!(f, "{}-{}", self.start, self.end),
        }
    }
}

impl Serialize for PublishedRange {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One container port and where it is published on the host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct PortMapping {
    pub target: u16,
    /// `None`: a free host port chosen at start.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published: Option<PublishedRange>,
    /// `None`: every host address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
    pub protocol: Protocol,
    /// Compose's `host` or `ingress`; kept as written, it changes nothing on one machine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An informational hint such as `http`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

impl PortMapping {
    /// `target/tcp`, published on a free port of every host address.
    pub fn new(target: u16) -> Self {
        PortMapping { target, ..Default::default() }
    }

    /// The host ports this mapping may use; `None` when any free port will do.
    pub fn host_ports(&self) -> Option<RangeInclusive<u16>> {
        self.published.map(|p| p.ports())
    }
}

/// Docker's `ps` style: `127.0.0.1:8080->80/tcp`, `[::1]:8080->80/udp`, and `0.0.0.0:*->80/tcp`
/// while the host port is still to be chosen.
impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)) {
            IpAddr::V4(ip) => write!(f, "{ip}:")?,
            IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
        }
        match self.published {
            Some(p) => write!(f, "{p}->{}/{}", self.target, self.protocol),
            None => write!(f, "*->{}/{}", self.target, self.protocol),
        }
    }
}

/// A port number as text: digits only, at most 65535; 0 is left to the caller.
fn parse_port(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid port {text:?}: expected a number from 1 to 65535, like 8080"));
    }
    text.parse().ok().filter(|&n| n <= 65535).ok_or_else(|| out_of_range(text))
}

fn out_of_range(port: impl fmt::Display) -> String {
    format!("port {port} is out of range: ports are 1-65535")
}

/// `PORT` or `START-END`.
fn parse_range(text: &str) -> Result<(u32, u32), String> {
    let Some((start, end)) = text.split_once('-') else {
        return parse_port(text).map(|p| (p, p));
    };
    if start.is_empty() {
        return parse_port(text).map(|p| (p, p)); // a negative number: "invalid port"
    }
    if end.is_empty() {
        return Err(format!(
            "port range {text:?} is incomplete: expected START-END, like 9000-9002"
        ));
    }
    let (start, end) = (parse_port(start)?, parse_port(end)?);
    if start > end {
        return Err(format!(
            "port range {text} is reversed: write the lower port first, like {end}-{start}"
        ));
    }
    Ok((start, end))
}

fn container_ports(text: &str) -> Result<(u16, u16), String> {
    match parse_range(text)? {
        (0, _) => Err(out_of_range(0)),
        (start, end) => Ok((start as u16, end as u16)),
    }
}

/// A host port or range; `0` (Docker's "any port") and the empty string mean "any free port".
fn host_ports(text: &str) -> Result<Option<PublishedRange>, String> {
    match parse_range(text)? {
        (0, 0) => Ok(None),
        (0, _) => Err(out_of_range(0)),
        (start, end) => Ok(Some(PublishedRange { start: start as u16, end: end as u16 })),
    }
}

fn parse_host_ip(text: &str) -> Result<IpAddr, String> {
    let bare = text.strip_prefix('[').and_then(|t| t.strip_suffix(']')).unwrap_or(text);
    bare.parse().map_err(|_| {
        format!("invalid host IP {text:?}: expected an IPv4 or IPv6 address, like 127.0.0.1 or ::1")
    })
}

/// Splits `[IP:][HOST:]CONTAINER` (an IPv6 address in brackets); `spec` is the whole entry, for
/// messages.
fn split_parts<'a>(
    addr: &'a str,
    spec: &str,
) -> Result<(Option<&'a str>, &'a str, &'a str), String> {
    if let Some(rest) = addr.strip_prefix('[') {
        let bad = || {
            format!("invalid port mapping {spec:?}: an IPv6 host IP in brackets must be followed by both ports, like \"[::1]:8080:80\"")
        };
        let (ip, rest) = rest.split_once("]:").ok_or_else(bad)?;
        let (host, container) = rest.split_once(':').ok_or_else(bad)?;
        return Ok((Some(ip), host, container));
    }
    match addr.split(':').collect::<Vec<_>>()[..] {
        [container] => Ok((None, "", container)),
        ["", _] => Err(format!("empty host port in {spec:?}: leave it out, like \"80\", or give one, like \"8080:80\"")),
        [host, container] => Ok((None, host, container)),
        ["", _, _] => Err(format!("empty host IP in {spec:?}: leave it out, like \"8080:80\", or give one, like \"127.0.0.1:8080:80\"")),
        [ip, host, container] => Ok((Some(ip), host, container)),
        _ => Err(format!("too many \":\" in {spec:?}: expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT, with an IPv6 host IP in brackets, like \"[::1]:8080:80\"")),
    }
}

/// Parses Compose's short syntax, `[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]`, where both
/// ports may be ranges. A container range expands to one mapping per port, paired with the host
/// range in order; a host range with a single container port means "any free port in it". An
/// empty host port (`127.0.0.1::80`) or `0` means any free port, as in Docker.
pub fn parse_short(spec: &str) -> Result<Vec<PortMapping>, String> {
    const SHAPE: &str =
        "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], like \"8080:80\"";
    if spec.is_empty() {
        return Err(format!("empty port mapping: {SHAPE}"));
    }
    let (addr, protocol) = match spec.split_once('/') {
        Some((_, "")) => {
            return Err(format!("missing protocol after \"/\" in {spec:?}: expected tcp or udp, like \"8080:80/udp\""));
        }
        Some((addr, proto)) => (addr, proto.parse()?),
        None => (spec, Protocol::Tcp),
    };
    let (ip, host, container) = split_parts(addr, spec)?;
    if container.is_empty() {
        return Err(format!("missing container port in {spec:?}: {SHAPE}"));
    }
    let host_ip = ip.map(parse_host_ip).transpose()?;
    let (start, end) = container_ports(container)?;
    let published = if host.is_empty() { None } else { host_ports(host)? };
    if let Some(p) = published.filter(|p| start != end && p.end - p.start != end - start) {
        let host = match p.start == p.end {
            true => format!("host port {p} is a single port"),
            false => format!("host range {p} has {} ports", p.end - p.start + 1),
        };
        return Err(format!(
            "{host} but container range {container} has {}; use ranges of the same length, like \"{container}:{container}\"",
            end - start + 1
        ));
    }
    Ok((start..=end)
        .map(|target| PortMapping {
            published: published.map(|p| match start == end {
                true => p,
                false => PublishedRange::single(p.start + (target - start)),
            }),
            host_ip,
            protocol,
            ..PortMapping::new(target)
        })
        .collect())
}

/// The long syntax as written; [`LongPort::into_mapping`] checks and normalizes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongPort {
    target: Option<ScalarText>,
    published: Option<ScalarText>,
    host_ip: Option<String>,
    protocol: Option<Protocol>,
    mode: Option<String>,
    name: Option<String>,
    app_protocol: Option<String>,
}

impl LongPort {
    fn into_mapping(self) -> Result<PortMapping, String> {
        let Some(ScalarText(target)) = self.target else {
            return Err("a port mapping needs \"target\", the container port, like {target: 80, published: \"8080\"}".into());
        };
        Ok(PortMapping {
            target: match container_ports(&target)? {
                (port, end) if port == end => port,
                _ => return Err(format!("target {target:?} must be one port, like 80; for a range use the short syntax, like \"{target}:{target}\"")),
            },
            published: match self.published {
                Some(ScalarText(p)) if !p.is_empty() => host_ports(&p)?,
                _ => None,
            },
            host_ip: self.host_ip.filter(|ip| !ip.is_empty()).as_deref().map(parse_host_ip).transpose()?,
            protocol: self.protocol.unwrap_or_default(),
            mode: self.mode,
            name: self.name,
            app_protocol: self.app_protocol,
        })
    }
}

/// One entry of `ports:`: a short-syntax string, a bare container port or a long-syntax map.
struct Entry(Vec<PortMapping>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entry;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port mapping: a string like \"8080:80\", a container port like 80, or a map with \"target\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Entry, E> {
                parse_short(s).map(Entry).map_err(E::custom)
            }
            // A bare number is a container port, which the short syntax reads the same way.
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Entry, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Entry, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
                let long = LongPort::deserialize(de::value::MapAccessDeserializer::new(map))?;
                long.into_mapping().map(|m| Entry(vec![m])).map_err(de::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ports;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of port mappings, like [\"8080:80\"]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ports, A::Error> {
                let mut ports = Vec::new();
                while let Some(Entry(entry)) = seq.next_element()? {
                    ports.extend(entry);
                }
                Ok(Ports(ports))
            }
            // `ports:` with nothing after it.
            fn visit_unit<E: de::Error>(self) -> Result<Ports, E> {
                Ok(Ports::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl JsonSchema for Ports {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Ports".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        let string =
            |description: &str| serde_json::json!({"type": "string", "description": description});
        json_schema!({
            "type": "array",
            "items": {"oneOf": [
                {
                    "type": "string",
                    "description": "[HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL]; ports may be ranges.",
                    "examples": ["8080:80", "127.0.0.1:8080:80/udp", "9000-9002:9000-9002", "[::1]:8080:80"]
                },
                {"type": "integer", "minimum": 1, "maximum": 65535, "description": "A container port."},
                {
                    "type": "object",
                    "required": ["target"],
                    "additionalProperties": false,
                    "properties": {
                        "target": {"type": ["integer", "string"], "description": "The container port."},
                        "published": {"type": ["string", "integer"], "description": "The host port or range; a free port when unset."},
                        "host_ip": string("The host address to bind, IPv4 or IPv6."),
                        "protocol": {"type": "string", "enum": ["tcp", "udp"]},
                        "mode": string("Compose's `host` or `ingress`; accepted and ignored."),
                        "name": string("A name for this port."),
                        "app_protocol": string("The application protocol, like `http`.")
                    }
                }
            ]}
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `target` published on `host` (`"8080"`, `"8000-8010"` or `""` for none) of `ip`.
    fn map(target: u16, host: &str, ip: &str, protocol: Protocol) -> PortMapping {
        PortMapping {
            published: (!host.is_empty()).then(|| host_ports(host).unwrap().unwrap()),
            host_ip: (!ip.is_empty()).then(|| ip.parse().unwrap()),
            protocol,
            ..PortMapping::new(target)
        }
    }
    const TCP: Protocol = Protocol::Tcp;

    #[test]
    fn short_syntax_expands_to_one_mapping_per_container_port() {
        for (spec, want) in [
            ("80", vec![map(80, "", "", TCP)]),
            ("8080:80", vec![map(80, "8080", "", TCP)]),
            ("0:80", vec![map(80, "", "", TCP)]),
            ("127.0.0.1:8080:80", vec![map(80, "8080", "127.0.0.1", TCP)]),
            ("127.0.0.1::80", vec![map(80, "", "127.0.0.1", TCP)]),
            ("8080:80/udp", vec![map(80, "8080", "", Protocol::Udp)]),
            ("8080:80/TCP", vec![map(80, "8080", "", TCP)]),
            ("[::1]:8080:80", vec![map(80, "8080", "::1", TCP)]),
            ("[::]::80/udp", vec![map(80, "", "::", Protocol::Udp)]),
            ("8000-8010:80", vec![map(80, "8000-8010", "", TCP)]),
            ("9000-9000:9000", vec![map(9000, "9000", "", TCP)]),
            (
                "9000-9002:9000-9002",
                vec![
                    map(9000, "9000", "", TCP),
                    map(9001, "9001", "", TCP),
                    map(9002, "9002", "", TCP),
                ],
            ),
            ("9000-9001", vec![map(9000, "", "", TCP), map(9001, "", "", TCP)]),
            ("1:65535", vec![map(65535, "1", "", TCP)]),
        ] {
            assert_eq!(parse_short(spec), Ok(want), "{spec}");
        }
    }

    #[test]
    fn short_syntax_errors_explain() {
        let shape = "expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT[/PROTOCOL], like \"8080:80\"";
        let invalid =
            |p: &str| format!("invalid port {p:?}: expected a number from 1 to 65535, like 8080");
        for (spec, want) in [
            ("", format!("empty port mapping: {shape}")),
            ("/udp", format!("missing container port in \"/udp\": {shape}")),
            ("0", "port 0 is out of range: ports are 1-65535".into()),
            ("70000", "port 70000 is out of range: ports are 1-65535".into()),
            ("99999999999:80", "port 99999999999 is out of range: ports are 1-65535".into()),
            ("0-5:80", "port 0 is out of range: ports are 1-65535".into()),
            ("http", invalid("http")),
            ("8080:x80", invalid("x80")),
            ("-1", invalid("-1")),
            ("9000-", "port range \"9000-\" is incomplete: expected START-END, like 9000-9002".into()),
            ("9002-9000", "port range 9002-9000 is reversed: write the lower port first, like 9000-9002".into()),
            (
                "9000-9001:9000-9002",
                "host range 9000-9001 has 2 ports but container range 9000-9002 has 3; use ranges of the same length, like \"9000-9002:9000-9002\"".into(),
            ),
            (
                "8080:80-81",
                "host port 8080 is a single port but container range 80-81 has 2; use ranges of the same length, like \"80-81:80-81\"".into(),
            ),
            ("8080:", format!("missing container port in \"8080:\": {shape}")),
            (":80", "empty host port in \":80\": leave it out, like \"80\", or give one, like \"8080:80\"".into()),
            (
                ":8080:80",
                "empty host IP in \":8080:80\": leave it out, like \"8080:80\", or give one, like \"127.0.0.1:8080:80\"".into(),
            ),
            (
                "::1:8080:80",
                "too many \":\" in \"::1:8080:80\": expected [HOST_IP:][HOST_PORT:]CONTAINER_PORT, with an IPv6 host IP in brackets, like \"[::1]:8080:80\"".into(),
            ),
            (
                "[::1]:80",
                "invalid port mapping \"[::1]:80\": an IPv6 host IP in brackets must be followed by both ports, like \"[::1]:8080:80\"".into(),
            ),
            (
                "localhost:8080:80",
                "invalid host IP \"localhost\": expected an IPv4 or IPv6 address, like 127.0.0.1 or ::1".into(),
            ),
            ("[1.2.3]:1:2", "invalid host IP \"1.2.3\": expected an IPv4 or IPv6 address, like 127.0.0.1 or ::1".into()),
            ("80/sctp", "protocol \"sctp\" is not supported: expected tcp or udp, like \"8080:80/udp\"".into()),
            ("80/", "missing protocol after \"/\" in \"80/\": expected tcp or udp, like \"8080:80/udp\"".into()),
        ] {
            assert_eq!(parse_short(spec), Err(want), "{spec}");
        }
    }

    fn ports(v: serde_json::Value) -> Result<Vec<PortMapping>, String> {
        serde_json::from_value::<Ports>(v).map(|p| p.0).map_err(|e| e.to_string())
    }

    #[test]
    fn entries_of_every_shape_are_appended_in_order() {
        let long = json!({"target": "53", "published": 5353, "host_ip": "[::1]", "protocol": "udp",
                          "mode": "host", "name": "dns", "app_protocol": "dns"});
        let got = ports(
            json!([80, "9000-9001:9000-9001", long, {"target": 80, "published": "8000-8010"},
                               {"target": 81, "published": ""}, {"target": 82, "published": 0}]),
        );
        let dns = PortMapping {
            mode: Some("host".into()),
            name: Some("dns".into()),
            app_protocol: Some("dns".into()),
            ..map(53, "5353", "::1", Protocol::Udp)
        };
        let want = vec![
            map(80, "", "", TCP),
            map(9000, "9000", "", TCP),
            map(9001, "9001", "", TCP),
            dns,
            map(80, "8000-8010", "", TCP),
            map(81, "", "", TCP),
            map(82, "", "", TCP),
        ];
        assert_eq!(got, Ok(want));
        assert_eq!(ports(json!(null)), Ok(vec![]));
    }

    #[test]
    fn entry_errors_explain() {
        for (v, want) in [
            (json!([{"published": 80}]), "a port mapping needs \"target\", the container port, like {target: 80, published: \"8080\"}"),
            (json!([{"target": 80, "publish": 80}]), "unknown field `publish`, expected one of `target`, `published`, `host_ip`, `protocol`, `mode`, `name`, `app_protocol`"),
            (json!([{"target": "80-81"}]), "target \"80-81\" must be one port, like 80; for a range use the short syntax, like \"80-81:80-81\""),
            (json!([{"target": 0}]), "port 0 is out of range: ports are 1-65535"),
            (json!([{"target": 80, "published": -1}]), "invalid port \"-1\": expected a number from 1 to 65535, like 8080"),
            (json!([{"target": 80, "host_ip": "nope"}]), "invalid host IP \"nope\": expected an IPv4 or IPv6 address, like 127.0.0.1 or ::1"),
            (json!([{"target": 80, "protocol": "sctp"}]), "protocol \"sctp\" is not supported: expected tcp or udp, like \"8080:80/udp\""),
            (json!([70000]), "port 70000 is out of range: ports are 1-65535"),
            (json!([-80]), "invalid port \"-80\": expected a number from 1 to 65535, like 8080"),
            (json!([true]), "invalid type: boolean `true`, expected a port mapping: a string like \"8080:80\", a container port like 80, or a map with \"target\""),
            (json!("8080:80"), "invalid type: string \"8080:80\", expected a list of port mappings, like [\"8080:80\"]"),
        ] {
            assert_eq!(ports(v.clone()), Err(want.to_owned()), "{v}");
        }
    }

    #[test]
    fn reads_scalars_through_deserialize_any() {
        use serde::de::value::{Error, SeqDeserializer};
        use serde::de::IntoDeserializer;
        let seq: SeqDeserializer<_, Error> = vec!["8080:80", "53/udp"].into_deserializer();
        let want = vec![map(80, "8080", "", TCP), map(53, "", "", Protocol::Udp)];
        assert_eq!(Ports::deserialize(seq).map(|p| p.0), Ok(want));
        let seq: SeqDeserializer<_, Error> = vec![80u64].into_deserializer();
        assert_eq!(Ports::deserialize(seq).map(|p| p.0), Ok(vec![map(80, "", "", TCP)]));
    }

    #[test]
    fn serializes_in_the_long_form_and_reads_it_back() {
        let all = ports(json!(["127.0.0.1:8000-8010:80", "[::1]:53:53/udp", 9000])).unwrap();
        let out = serde_json::to_value(Ports(all.clone())).unwrap();
        assert_eq!(
            out,
            json!([
                {"target": 80, "published": "8000-8010", "host_ip": "127.0.0.1", "protocol": "tcp"},
                {"target": 53, "published": "53", "host_ip": "::1", "protocol": "udp"},
                {"target": 9000, "protocol": "tcp"}
            ])
        );
        assert_eq!(ports(out), Ok(all.clone()));
        let shown: Vec<_> = all.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["127.0.0.1:8000-8010->80/tcp", "[::1]:53->53/udp", "0.0.0.0:*->9000/tcp"]
        );
        assert_eq!(all[0].host_ports(), Some(8000..=8010));
        assert_eq!(all[2].host_ports(), None);
    }
}
