//! `devenv logs`: the services' output, kept on disk per service.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use super::saved::{saved, Saved};
use super::ProjectArgs;
use crate::logs::{tail_lines, Follower, Prefixer};

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// Keep printing new output.
    #[arg(short, long)]
    pub follow: bool,
    /// Only the last N lines of each service.
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    #[arg(long)]
    pub no_color: bool,
    /// Only these services.
    pub services: Vec<String>,
}

pub fn run(project: &ProjectArgs, args: &LogsArgs) -> anyhow::Result<()> {
    let Saved { name, home, state, .. } = saved(project)?;
    let mut services: Vec<String> = if args.services.is_empty() {
        state.containers.keys().cloned().collect()
    } else {
        args.services.clone()
    };
    services.retain(|s| home.log_file(&name, s).exists() || state.containers.contains_key(s));
    let colour = !args.no_color && std::io::stdout().is_terminal();
    let prefixer = Prefixer::new(services.iter().map(String::as_str), colour);
    let mut out = std::io::stdout().lock();
    let mut files = Vec::new();
    for (i, s) in services.iter().enumerate() {
        let path = home.log_file(&name, s);
        let (lines, end) = tail_lines(&path, args.tail)?;
        for l in lines {
            writeln!(out, "{}{l}", prefixer.prefix(i, s))?;
        }
        files.push((s.clone(), path, end));
    }
    if args.follow {
        Follower::new(files, colour).follow(&mut out, Duration::from_millis(50), &|| false)?;
    }
    Ok(())
}
