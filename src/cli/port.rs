//! `devenv port`: where a service's container port is published on the host, as
//! `docker compose port` (one port) and `docker port` (all of them) print it.

use std::io::Write;

use anyhow::{bail, Context};

use super::format::{host_addr, sort_ports};
use super::saved::saved;
use super::ProjectArgs;
use crate::config::ports::Protocol;
use crate::state::PortRecord;

#[derive(Debug, clap::Args)]
pub struct PortArgs {
    /// tcp or udp, for a PRIVATE_PORT given without one.
    #[arg(long, value_name = "PROTO")]
    pub protocol: Option<String>,
    /// The service.
    pub service: String,
    /// The container port, optionally with its protocol (`80`, `53/udp`). Without it, every
    /// published port is listed as `80/tcp -> 0.0.0.0:8080`.
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub private_port: Option<String>,
}

/// `80`, `80/tcp`, `53/udp`; the protocol defaults to `default` (tcp unless `--protocol`).
fn parse_private_port(s: &str, default: Protocol) -> anyhow::Result<(u16, Protocol)> {
    let (port, protocol) = match s.split_once('/') {
        Some((p, proto)) => (p, proto.parse().map_err(anyhow::Error::msg)?),
        None => (s, default),
    };
    let port =
        port.parse::<u16>().ok().filter(|p| *p != 0).with_context(|| {
            format!("invalid port {s:?}: expected PORT[/PROTOCOL], like 80/tcp")
        })?;
    Ok((port, protocol))
}

/// The output lines: `HOST_IP:HOST_PORT` for each mapping of `port`, or, without one,
/// `80/tcp -> 0.0.0.0:8080` for every published port. `None` when `port` is not published.
fn port_lines(ports: &[PortRecord], port: Option<(u16, Protocol)>) -> Option<Vec<String>> {
    let mut ports = ports.to_vec();
    sort_ports(&mut ports);
    let Some((port, protocol)) = port else {
        return Some(
            ports
                .iter()
                .map(|p| {
                    let host = host_addr(p.host_ip, p.host_port);
                    format!("{}/{} -> {host}", p.container_port, p.protocol)
                })
                .collect(),
        );
    };
    let lines: Vec<String> = ports
        .iter()
        .filter(|p| p.container_port == port && p.protocol == protocol)
        .map(|p| host_addr(p.host_ip, p.host_port))
        .collect();
    (!lines.is_empty()).then_some(lines)
}

pub fn run(project: &ProjectArgs, args: &PortArgs) -> anyhow::Result<()> {
    let default = match &args.protocol {
        Some(p) => p.parse().map_err(anyhow::Error::msg)?,
        None => Protocol::Tcp,
    };
    let wanted =
        args.private_port.as_deref().map(|p| parse_private_port(p, default)).transpose()?;
    let saved = saved(project)?;
    let rec = saved.running(&args.service)?;
    let Some(lines) = port_lines(&rec.ports, wanted) else {
        let (port, protocol) = wanted.expect("only a given port can be missing");
        bail!("no public port {port}/{protocol} published for service {}", args.service);
    };
    let mut out = std::io::stdout().lock();
    for l in lines {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Protocol::{Tcp, Udp};

    use crate::cli::format::tests::port;

    #[test]
    fn private_ports_parse_with_a_default_protocol() {
        assert_eq!(parse_private_port("80", Tcp).unwrap(), (80, Tcp));
        assert_eq!(parse_private_port("53/udp", Tcp).unwrap(), (53, Udp));
        assert_eq!(parse_private_port("53", Udp).unwrap(), (53, Udp));
        assert_eq!(parse_private_port("80/TCP", Udp).unwrap(), (80, Tcp));
        let e = parse_private_port("http", Tcp).unwrap_err().to_string();
        assert_eq!(e, "invalid port \"http\": expected PORT[/PROTOCOL], like 80/tcp");
        assert!(parse_private_port("0", Tcp).is_err());
        assert!(parse_private_port("80/sctp", Tcp).unwrap_err().to_string().contains("sctp"));
    }

    #[test]
    fn one_port_prints_each_host_address_and_all_ports_print_docker_port_lines() {
        let ports = [
            port("0.0.0.0", 5353, 53, Udp),
            port("127.0.0.1", 8080, 80, Tcp),
            port("::", 8080, 80, Tcp),
            port("0.0.0.0", 8443, 443, Tcp),
        ];
        assert_eq!(port_lines(&ports, Some((80, Tcp))).unwrap(), ["127.0.0.1:8080", "[::]:8080"]);
        assert_eq!(port_lines(&ports, Some((53, Udp))).unwrap(), ["0.0.0.0:5353"]);
        assert_eq!(port_lines(&ports, Some((53, Tcp))), None);
        assert_eq!(port_lines(&ports, Some((81, Tcp))), None);
        assert_eq!(
            port_lines(&ports, None).unwrap(),
            [
                "53/udp -> 0.0.0.0:5353",
                "80/tcp -> 127.0.0.1:8080",
                "80/tcp -> [::]:8080",
                "443/tcp -> 0.0.0.0:8443"
            ]
        );
        assert_eq!(port_lines(&[], None).unwrap(), Vec::<String>::new());
    }
}
