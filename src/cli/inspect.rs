//! `devenv inspect`: everything devenv recorded about services' containers, as JSON or through a
//! `--format` template.

use std::io::Write;
use std::net::Ipv4Addr;

use anyhow::Context;
use serde::Serialize;

use super::format::{rfc3339, sort_ports, Template};
use super::saved::saved;
use super::ProjectArgs;
use crate::state::{ContainerRecord, MountRecord, PortRecord};

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// Print each service through a template instead of JSON: `{{.field}}` is replaced by the
    /// field (strings as they are, lists and objects as JSON, null as nothing), `{{json .field}}`
    /// by its JSON; one line per service. Example: --format '{{.service}} {{.ip_address}}'.
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
    /// The services; all of the project's containers when none is given.
    pub services: Vec<String>,
}

/// One service's container, as printed. Field names are the template's.
#[derive(Debug, Serialize)]
struct Inspected<'a> {
    service: &'a str,
    project: &'a str,
    container: &'a str,
    image: &'a str,
    image_digest: &'a str,
    /// `running`, `created`, `creating` or `exited`, checked against the kernel.
    state: &'static str,
    exit_code: Option<i32>,
    /// While it runs.
    pid: Option<i32>,
    started_at: Option<String>,
    network_mode: &'a str,
    ip_address: Option<Ipv4Addr>,
    gateway: Option<Ipv4Addr>,
    mac_address: Option<&'a str>,
    ports: Vec<PortRecord>,
    mounts: &'a [MountRecord],
}

/// The names of the fields, for `--format` (in output order).
fn fields() -> Vec<&'static str> {
    vec![
        "service",
        "project",
        "container",
        "image",
        "image_digest",
        "state",
        "exit_code",
        "pid",
        "started_at",
        "network_mode",
        "ip_address",
        "gateway",
        "mac_address",
        "ports",
        "mounts",
    ]
}

fn inspected<'a>(project: &'a str, rec: &'a ContainerRecord) -> Inspected<'a> {
    let (state, exit_code) = rec.state();
    let live = matches!(state, "running" | "created");
    let mut ports = rec.ports.clone();
    sort_ports(&mut ports);
    let endpoint = rec.endpoint.as_ref();
    Inspected {
        service: &rec.service,
        project,
        container: &rec.id,
        image: &rec.image,
        image_digest: &rec.image_digest,
        state,
        exit_code,
        pid: rec.pid.filter(|_| live),
        started_at: rec.started_at.map(rfc3339),
        network_mode: &rec.network_mode,
        ip_address: endpoint.map(|e| e.ip_address),
        gateway: endpoint.map(|e| e.gateway),
        mac_address: endpoint.map(|e| e.mac_address.as_str()),
        ports,
        mounts: &rec.mounts,
    }
}

pub fn run(project: &ProjectArgs, args: &InspectArgs) -> anyhow::Result<()> {
    // A bad template is reported before anything else, and before any output.
    let template = args.format.as_deref().map(|t| Template::parse(t, &fields())).transpose();
    let template = template.map_err(anyhow::Error::msg)?;
    let saved = saved(project)?;
    let records: Vec<&ContainerRecord> = if args.services.is_empty() {
        saved.state.containers.values().collect()
    } else {
        args.services.iter().map(|s| saved.record(s)).collect::<anyhow::Result<_>>()?
    };
    let objects: Vec<Inspected> = records.iter().map(|r| inspected(&saved.name, r)).collect();
    let mut out = std::io::stdout().lock();
    match template {
        None => writeln!(out, "{}", serde_json::to_string_pretty(&objects)?)?,
        Some(t) => {
            for o in &objects {
                let value = serde_json::to_value(o).context("serializing the container")?;
                let object = value.as_object().expect("a struct serializes to an object");
                writeln!(out, "{}", t.render(object))?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ContainerStatus, EndpointRecord};

    #[test]
    fn the_template_fields_are_the_json_fields_in_order() {
        let rec = ContainerRecord {
            id: "p-web-1".into(),
            service: "web".into(),
            image: "nginx:1.22".into(),
            image_digest: "sha256:00".into(),
            config_hash: "h".into(),
            status: ContainerStatus::Exited { code: Some(3) },
            pid: Some(i32::MAX),
            pid_start: Some(1),
            started_at: Some(1_704_067_200),
            network_mode: "bridge".into(),
            rootfs_mounted: false,
            stop_signal: "SIGTERM".into(),
            stop_grace_ms: 10_000,
            endpoint: Some(EndpointRecord {
                veth: "veth0".into(),
                ip_address: Ipv4Addr::new(10, 0, 0, 2),
                prefix_len: 24,
                gateway: Ipv4Addr::new(10, 0, 0, 1),
                mac_address: "02:42:0a:00:00:02".into(),
            }),
            ports: vec![],
            mounts: vec![MountRecord {
                kind: "bind".into(),
                source: "/src".into(),
                destination: "/app".into(),
                mode: "ro".into(),
            }],
            health: None,
            restart_count: 0,
        };
        let v = serde_json::to_value(inspected("p", &rec)).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, fields());
        assert_eq!(v["state"], "exited");
        assert_eq!(v["exit_code"], 3);
        assert_eq!(v["pid"], serde_json::Value::Null, "no pid once exited");
        assert_eq!(v["started_at"], "2024-01-01T00:00:00Z");
        assert_eq!(v["ip_address"], "10.0.0.2");
        assert_eq!(v["gateway"], "10.0.0.1");
        assert_eq!(
            v["mounts"],
            serde_json::json!([{"type": "bind", "source": "/src", "destination": "/app", "mode": "ro"}])
        );
        let t =
            Template::parse("{{.service}} {{.ip_address}} {{json .mounts}}", &fields()).unwrap();
        assert_eq!(
            t.render(v.as_object().unwrap()),
            r#"web 10.0.0.2 [{"type":"bind","source":"/src","destination":"/app","mode":"ro"}]"#
        );
    }
}
