//! `devenv events`: the supervisor's event stream (containers starting, exiting, restarting,
//! files synced, reconciles, errors) until Ctrl-C, one line each, or the JSON lines editor
//! plugins read with `--format json`.

use std::io::Write;

use anyhow::{bail, Context};

use super::down::project_leniently;
use super::ProjectArgs;
use crate::events::Event;
use crate::state::Home;
use crate::supervisor::protocol::{self, Request};

#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    /// `text` (default) or `json`: one JSON object per line, as on the socket.
    #[arg(long, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub format: String,
}

pub fn run(project: &ProjectArgs, args: &EventsArgs) -> anyhow::Result<()> {
    let (name, _) = project_leniently(project)?;
    let home = Home::from_env();
    let json = args.format == "json";
    let mut out = std::io::stdout().lock();
    let connected = protocol::stream(&home.socket(&name), &Request::Events, &mut |line| {
        let written = if json {
            writeln!(out, "{line}")
        } else {
            match serde_json::from_str::<Event>(line) {
                Ok(e) => writeln!(out, "{} {}", e.time, e.kind),
                Err(_) => writeln!(out, "{line}"),
            }
        };
        // A closed stdout (`devenv events | head`) ends the stream.
        written.and_then(|()| out.flush()).is_ok()
    })
    .context("reading the event stream")?;
    if !connected {
        bail!("project {name} is not up (no supervisor answers); start it with `devenv up`");
    }
    Ok(())
}
