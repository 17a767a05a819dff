//! Pure formatting shared by `ps`, `port` and `inspect`: published ports as Docker prints them,
//! RFC 3339 times, and the small Go-template subset of `--format`.

use std::fmt::Write;
use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::config::ports::Protocol;
use crate::state::PortRecord;
use crate::suggest::nearest;

/// `HOST_IP:PORT`, with an IPv6 address in brackets (`[::]:8080`).
pub fn host_addr(ip: IpAddr, port: u16) -> String {
    format!("{}:{port}", ip_text(ip))
}

fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Docker's order for ports: by container port, then protocol (tcp first), then host address
/// and port.
pub fn sort_ports(ports: &mut [PortRecord]) {
    ports.sort_by_key(|p| (p.container_port, p.protocol == Protocol::Udp, p.host_ip, p.host_port));
}

/// The PORTS column: `0.0.0.0:9000-9002->9000-9002/tcp, 127.0.0.1:8080->80/tcp`. Sorted like
/// Docker; mappings on the same host address and protocol whose host ports and container ports
/// are both consecutive are collapsed into one range.
pub fn ports_text(ports: &[PortRecord]) -> String {
    let mut sorted = ports.to_vec();
    sort_ports(&mut sorted);
    // (first mapping, how many follow it consecutively), in the order the runs start.
    let mut runs: Vec<(PortRecord, u32)> = Vec::new();
    for p in sorted {
        let extends = |(first, n): &&mut (PortRecord, u32)| {
            first.host_ip == p.host_ip
                && first.protocol == p.protocol
                && u32::from(first.container_port) + *n + 1 == u32::from(p.container_port)
                && u32::from(first.host_port) + *n + 1 == u32::from(p.host_port)
        };
        match runs.iter_mut().find(|r| extends(r)) {
            Some(run) => run.1 += 1,
            None => runs.push((p, 0)),
        }
    }
    let range = |start: u16, n: u32| match n {
        0 => start.to_string(),
        _ => format!("{start}-{}", u32::from(start) + n),
    };
    runs.iter()
        .map(|(p, n)| {
            format!(
                "{}:{}->{}/{}",
                ip_text(p.host_ip),
                range(p.host_port, *n),
                range(p.container_port, *n),
                p.protocol
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub use crate::clock::rfc3339;

/// A parsed `--format` template: text, `{{.field}}` and `{{json .field}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Part>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `None` for `{{.}}`: the whole object.
    Field {
        name: Option<String>,
        json: bool,
    },
}

impl Template {
    /// Parses `template`, whose fields must be among `fields`.
    pub fn parse(template: &str, fields: &[&str]) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let Some(close) = after.find("}}") else {
                return Err(format!(
                    "--format: `{{{{` at byte {} is never closed",
                    template.len() - rest.len() + open
                ));
            };
            let action = after[..close].trim();
            parts.push(parse_action(action, fields)?);
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Template(parts))
    }

    /// The template applied to one object; a field the object lacks renders as null does.
    pub fn render(&self, object: &Map<String, Value>) -> String {
        let mut out = String::new();
        for part in &self.0 {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Field { name, json } => {
                    let whole;
                    let value = match name {
                        Some(n) => object.get(n).unwrap_or(&Value::Null),
                        None => {
                            whole = Value::Object(object.clone());
                            &whole
                        }
                    };
                    match (json, value) {
                        (true, v) => out.push_str(&v.to_string()),
                        (false, Value::Null) => {}
                        (false, Value::String(s)) => out.push_str(s),
                        (false, v) => {
                            let _ = write!(out, "{v}");
                        }
                    }
                }
            }
        }
        out
    }
}

/// `.field`, `json .field`, `.` or `json .`.
fn parse_action(action: &str, fields: &[&str]) -> Result<Part, String> {
    let (json, path) = match action.strip_prefix("json") {
        Some(p) if p.starts_with(char::is_whitespace) => (true, p.trim_start()),
        _ => (false, action),
    };
    let unsupported = || {
        format!(
            "--format: `{{{{{action}}}}}` is not supported; use `{{{{.field}}}}` or \
             `{{{{json .field}}}}` with one of: {}",
            fields.join(", ")
        )
    };
    let Some(name) = path.strip_prefix('.') else { return Err(unsupported()) };
    if name.is_empty() {
        return Ok(Part::Field { name: None, json });
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(unsupported());
    }
    if !fields.contains(&name) {
        let hint = nearest(name, fields.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(format!(
            "--format: unknown field `{name}`{hint}; valid fields: {}",
            fields.join(", ")
        ));
    }
    Ok(Part::Field { name: Some(name.to_owned()), json })
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use serde_json::json;

    /// A port record from its parts, for the tests of this module and `port.rs`.
    pub(in crate::cli) fn port(
        ip: &str,
        host: u16,
        container: u16,
        protocol: Protocol,
    ) -> PortRecord {
        PortRecord {
            host_ip: ip.parse().unwrap(),
            host_port: host,
            container_port: container,
            protocol,
        }
    }
    use Protocol::{Tcp, Udp};

    #[test]
    fn consecutive_ports_collapse_into_ranges() {
        let ports = [
            port("0.0.0.0", 9001, 9001, Tcp),
            port("127.0.0.1", 8080, 80, Tcp),
            port("0.0.0.0", 9000, 9000, Tcp),
            port("0.0.0.0", 5353, 53, Udp),
            port("0.0.0.0", 9002, 9002, Tcp),
        ];
        assert_eq!(
            ports_text(&ports),
            "0.0.0.0:5353->53/udp, 127.0.0.1:8080->80/tcp, 0.0.0.0:9000-9002->9000-9002/tcp"
        );
        // Host and container ranges need not be the same numbers, only both consecutive.
        let shifted = [port("0.0.0.0", 8000, 80, Tcp), port("0.0.0.0", 8001, 81, Tcp)];
        assert_eq!(ports_text(&shifted), "0.0.0.0:8000-8001->80-81/tcp");
    }

    #[test]
    fn gaps_break_ranges() {
        let ports = [
            port("0.0.0.0", 9000, 9000, Tcp),
            port("0.0.0.0", 9001, 9001, Tcp),
            port("0.0.0.0", 9003, 9003, Tcp),
        ];
        assert_eq!(ports_text(&ports), "0.0.0.0:9000-9001->9000-9001/tcp, 0.0.0.0:9003->9003/tcp");
        // Consecutive container ports on non-consecutive host ports stay apart.
        let ports = [port("0.0.0.0", 8080, 80, Tcp), port("0.0.0.0", 8090, 81, Tcp)];
        assert_eq!(ports_text(&ports), "0.0.0.0:8080->80/tcp, 0.0.0.0:8090->81/tcp");
    }

    #[test]
    fn protocols_and_host_addresses_are_ranged_separately() {
        let ports = [
            port("0.0.0.0", 53, 53, Udp),
            port("0.0.0.0", 53, 53, Tcp),
            port("0.0.0.0", 54, 54, Udp),
            port("0.0.0.0", 54, 54, Tcp),
            port("127.0.0.1", 55, 55, Tcp),
        ];
        assert_eq!(
            ports_text(&ports),
            "0.0.0.0:53-54->53-54/tcp, 0.0.0.0:53-54->53-54/udp, 127.0.0.1:55->55/tcp"
        );
    }

    #[test]
    fn ipv6_addresses_are_bracketed_and_nothing_prints_empty() {
        assert_eq!(ports_text(&[port("::", 8080, 80, Tcp)]), "[::]:8080->80/tcp");
        assert_eq!(ports_text(&[]), "");
        assert_eq!(host_addr("::1".parse().unwrap(), 1), "[::1]:1");
    }

    #[test]
    fn the_last_port_does_not_overflow() {
        let ports = [port("0.0.0.0", 65534, 65534, Tcp), port("0.0.0.0", 65535, 65535, Tcp)];
        assert_eq!(ports_text(&ports), "0.0.0.0:65534-65535->65534-65535/tcp");
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_709_164_799), "2024-02-28T23:59:59Z");
        assert_eq!(rfc3339(1_709_251_199), "2024-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_102_444_800), "2100-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_735_689_599), "2024-12-31T23:59:59Z");
    }

    const FIELDS: &[&str] = &["service", "pid", "ip_address", "ports", "exit_code"];

    fn object() -> Map<String, Value> {
        let v = json!({
            "service": "web",
            "pid": 42,
            "ip_address": null,
            "ports": [{"host_port": 8080, "container_port": 80}],
        });
        v.as_object().unwrap().clone()
    }

    fn render(t: &str) -> Result<String, String> {
        Template::parse(t, FIELDS).map(|t| t.render(&object()))
    }

    #[test]
    fn fields_are_substituted_by_kind() {
        assert_eq!(render("{{.service}} {{ .pid }}").unwrap(), "web 42");
        assert_eq!(render("ip=[{{.ip_address}}]").unwrap(), "ip=[]");
        assert_eq!(render("{{.ports}}").unwrap(), r#"[{"host_port":8080,"container_port":80}]"#);
        assert_eq!(render("{{json .service}}|{{json .ip_address}}").unwrap(), r#""web"|null"#);
        assert_eq!(render("{{ json .pid }}").unwrap(), "42");
        // A valid field this object does not have renders as null.
        assert_eq!(render("[{{.exit_code}}]").unwrap(), "[]");
        assert_eq!(render("no actions").unwrap(), "no actions");
        assert!(render("{{json .}}").unwrap().starts_with(r#"{"service":"web","pid":42"#));
    }

    #[test]
    fn unknown_fields_and_actions_are_errors_naming_the_valid_fields() {
        let e = render("{{.ipaddress}}").unwrap_err();
        assert_eq!(
            e,
            "--format: unknown field `ipaddress` (did you mean `ip_address`?); valid fields: \
             service, pid, ip_address, ports, exit_code"
        );
        let e = render("{{.Zzz}}").unwrap_err();
        assert!(e.starts_with("--format: unknown field `Zzz`; valid fields: service"), "{e}");
        let e = render("{{range .ports}}x{{end}}").unwrap_err();
        assert!(e.starts_with("--format: `{{range .ports}}` is not supported"), "{e}");
        assert!(render("{{.a.b}}").is_err());
        assert_eq!(render("ab {{.pid").unwrap_err(), "--format: `{{` at byte 3 is never closed");
    }
}
