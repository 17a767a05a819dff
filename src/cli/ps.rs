//! `devenv ps`: the project's containers, from the saved state checked against the kernel.

use std::io::Write;

use serde::Serialize;

use super::down::project_name;
use super::ProjectArgs;
use crate::state::{ContainerRecord, ContainerStatus, Home, ProjectState};

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
    pid: Option<i32>,
    ip: String,
    ports: String,
}

/// `running`, `exited (0)`, `exited (?)` when devenv did not see the exit code.
pub fn state_text(rec: &ContainerRecord) -> (String, Option<i32>) {
    match rec.status {
        ContainerStatus::Running if rec.is_running() => ("running".into(), None),
        ContainerStatus::Exited { code: Some(c) } => (format!("exited ({c})"), Some(c)),
        ContainerStatus::Creating => ("creating".into(), None),
        ContainerStatus::Created if rec.is_running() => ("created".into(), None),
        _ => ("exited (?)".into(), None),
    }
}

pub fn run(project: &ProjectArgs, args: &PsArgs) -> anyhow::Result<()> {
    let name = project_name(project)?;
    let home = Home::from_env();
    let state = ProjectState::load(&home.state_file(&name))?.unwrap_or_default();
    let rows: Vec<Row> = state
        .containers
        .values()
        .map(|r| {
            let (state, exit_code) = state_text(r);
            let live = state == "running";
            Row {
                service: r.service.clone(),
                container: r.id.clone(),
                image: r.image.clone(),
                state,
                exit_code,
                pid: r.pid.filter(|_| live),
                ip: "-".into(),
                ports: String::new(),
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
                r.state.clone(),
                pid,
                r.ip.clone(),
                r.ports.clone(),
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
