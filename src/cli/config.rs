//! `devenv config`: validate the project file and print it normalized.

use std::io::Write;

use anyhow::Context;

use super::ProjectArgs;
use crate::config::{emit, load};

#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Yaml)]
    pub format: Format,
    /// Print only the service names, one per line.
    #[arg(long)]
    pub services: bool,
    /// Print only the named volumes, one per line.
    #[arg(long)]
    pub volumes: bool,
    /// Only validate: print nothing but warnings and errors.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Yaml,
    Json,
}

pub fn run(project: &ProjectArgs, args: &ConfigArgs) -> anyhow::Result<()> {
    let opts = project.load_options().context("reading the working directory")?;
    let p = load(&opts)?;
    for w in &p.warnings {
        eprintln!("{w}");
    }
    if args.quiet {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    let profiles = project.active_profiles();
    let active: Vec<&String> = p
        .model
        .services
        .iter()
        .filter(|(_, s)| s.profiles.is_empty() || s.profiles.iter().any(|x| profiles.contains(x)))
        .map(|(n, _)| n)
        .collect();
    if args.services || args.volumes {
        if args.services {
            for name in &active {
                writeln!(out, "{name}")?;
            }
        }
        if args.volumes {
            for name in p.model.volumes.keys() {
                writeln!(out, "{name}")?;
            }
        }
        return Ok(());
    }
    let mut model = p.model.clone();
    model.services.retain(|n, _| active.contains(&n));
    model.name = Some(p.name.clone());
    let value = serde_json::to_value(&model).context("serializing the project")?;
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?,
        Format::Yaml => write!(out, "{}", emit::to_yaml(&value))?,
    }
    Ok(())
}
