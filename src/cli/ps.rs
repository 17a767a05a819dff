//! `devenv ps`: the project's containers, from the saved state checked against the kernel.

use std::io::Write;
use std::net::Ipv4Addr;

use serde::Serialize;

use super::format::{ports_text, sort_ports};
use super::saved::saved;
use super::ProjectArgs;
use crate::state::{ContainerRecord, PortRecord};

#[derive(Debug, clap::Args)]
pub struct PsArgs {
    /// `json` for machine-readable output.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Debug, Serialize)]
struct Row {
    service: String,
    container: String,
    image: String,
    state: String,
    exit_code: Option<i32>,
    /// `starting`, `healthy` or `unhealthy`, while it runs, for a service with a healthcheck.
    health: Option<String>,
    /// How many times its restart policy restarted it.
    restart_count: u32,
    pid: Option<i32>,
    /// On the project network, while the container runs.
    ip_address: Option<Ipv4Addr>,
    /// Published, while the container runs; in Docker's order.
    ports: Vec<PortRecord>,
}

/// `running`, `exited (0)`, `exited (?)` when devenv did not see the exit code, `oom` after
/// either when the OOM killer killed a process of the container (`exited (137) oom`), and
/// `restarting (N)` while the restart policy waits to restart it for the Nth time.
pub fn state_text(rec: &ContainerRecord) -> (String, Option<i32>) {
    let oom = if rec.oom_killed { " oom" } else { "" };
    match rec.state() {
        ("exited", Some(c)) => (format!("exited ({c}){oom}"), Some(c)),
        ("exited", None) => (format!("exited (?){oom}"), None),
        ("restarting", code) => (format!("restarting ({})", rec.restart_count + 1), code),
        (word, code) => (word.into(), code),
    }
}

pub fn run(project: &ProjectArgs, args: &PsArgs) -> anyhow::Result<()> {
    let state = saved(project)?.state;
    let rows: Vec<Row> = state
        .containers
        .values()
        .map(|r| {
            let (state, exit_code) = state_text(r);
            let live = state == "running";
            let health = r.health.as_ref().filter(|_| live).map(|h| h.status.as_str().to_owned());
            let mut ports = if live { r.ports.clone() } else { vec![] };
            sort_ports(&mut ports);
            Row {
                service: r.service.clone(),
                container: r.id.clone(),
                image: r.image.clone(),
                state,
                exit_code,
                health,
                restart_count: r.restart_count,
                pid: r.pid.filter(|_| live),
                ip_address: r.endpoint.as_ref().filter(|_| live).map(|e| e.ip_address),
                ports,
            }
        })
        .collect();
    let mut out = std::io::stdout().lock();
    if matches!(args.format, Format::Json) {
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    let head = ["SERVICE", "IMAGE", "STATE", "PID", "IP", "PORTS"];
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            let pid = r.pid.map_or("-".into(), |p| p.to_string());
            [
                r.service.clone(),
                r.image.clone(),
                match &r.health {
                    Some(h) => format!("{} ({h})", r.state),
                    None => r.state.clone(),
                },
                pid,
                r.ip_address.map_or("-".into(), |ip| ip.to_string()),
                ports_text(&r.ports),
            ]
        })
        .collect();
    let width =
        |i: usize| table.iter().map(|r| r[i].len()).chain([head[i].len()]).max().unwrap_or(0);
    let widths: Vec<usize> = (0..6).map(width).collect();
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            s.push_str(&format!("{c:<w$}   ", w = widths[i]));
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(head))?;
    for r in &table {
        writeln!(out, "{}", line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ContainerStatus;

    #[test]
    fn an_oom_kill_is_said_after_the_exit_code() {
        let mut rec: ContainerRecord = serde_json::from_value(serde_json::json!({
            "id": "p-web-1", "service": "web", "image": "busybox", "image_digest": "sha256:00",
            "config_hash": "h", "status": {"state": "exited", "code": 137},
            "network_mode": "none", "stop_signal": "SIGTERM", "stop_grace_ms": 10000,
            "oom_killed": true
        }))
        .unwrap();
        assert_eq!(state_text(&rec), ("exited (137) oom".to_owned(), Some(137)));
        rec.oom_killed = false;
        assert_eq!(state_text(&rec), ("exited (137)".to_owned(), Some(137)));
        rec.status = ContainerStatus::Exited { code: None };
        rec.oom_killed = true;
        assert_eq!(state_text(&rec).0, "exited (?) oom");
    }
}
