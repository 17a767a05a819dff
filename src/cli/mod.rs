//! The command line: clap definitions and dispatch. One file per command.

mod config;
mod down;
mod events;
mod exec;
mod format;
mod images;
mod inspect;
mod login;
mod logs;
mod port;
mod progress;
mod ps;
mod pull;
mod reload;
mod saved;
mod schema;
mod up;
mod wait;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{ConfigError, LoadOptions};
use crate::engine::Engine;
use crate::image::Store;
use crate::runtime::youki::Youki;
use crate::state::Home;

/// Exit status for a project file that is missing or invalid.
pub const EXIT_INVALID_PROJECT: i32 = 2;
/// Exit status for any other failure.
pub const EXIT_FAILURE: i32 = 1;

#[derive(Debug, Parser)]
#[command(
    name = "devenv",
    version,
    about = "Development environments from a Compose-style project file"
)]
pub struct Cli {
    #[command(flatten)]
    pub project: ProjectArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options that select and read the project, shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct ProjectArgs {
    /// The project file; by default the nearest devenv.yaml, compose.yaml or docker-compose.yml
    /// from the working directory up.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// The project name; by default `name:` in the file, else the directory name.
    #[arg(short = 'p', long = "project-name", value_name = "NAME")]
    pub project_name: Option<String>,
    /// Base directory for relative paths; by default the project file's directory.
    #[arg(long, global = true, value_name = "DIR")]
    pub project_directory: Option<PathBuf>,
    /// Read variables from this file instead of the project's .env.
    #[arg(long, global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,
    /// Activate a profile (repeatable); also COMPOSE_PROFILES or DEVENV_PROFILES, comma-separated.
    #[arg(long = "profile", global = true, value_name = "NAME")]
    pub profiles: Vec<String>,
}

impl ProjectArgs {
    pub fn load_options(&self) -> std::io::Result<LoadOptions> {
        let mut o = LoadOptions::from_process()?;
        o.file = self.file.clone();
        o.project_name = self.project_name.clone();
        o.project_directory = self.project_directory.clone();
        o.env_file = self.env_file.clone();
        Ok(o)
    }

    /// Profiles from the flags, else from the environment.
    pub fn active_profiles(&self) -> Vec<String> {
        if !self.profiles.is_empty() {
            return self.profiles.clone();
        }
        ["DEVENV_PROFILES", "COMPOSE_PROFILES"]
            .iter()
            .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
            .map(|s| s.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default()
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create and start the project's containers, and keep them converged.
    Up(up::UpArgs),
    /// Stop and remove the project's containers.
    Down(down::DownArgs),
    /// Apply the project file now, then restart services (by default those with watch rules).
    Reload(reload::ReloadArgs),
    /// Restart services' containers in place (their files and addresses stay).
    Restart(reload::RestartArgs),
    /// Print the project's events as they happen (starts, exits, restarts, syncs, reloads).
    Events(events::EventsArgs),
    /// List the project's containers.
    Ps(ps::PsArgs),
    /// Print the services' output.
    Logs(logs::LogsArgs),
    /// Print where a service's container port is published on the host.
    Port(port::PortArgs),
    /// Print what devenv knows about services' containers, as JSON.
    Inspect(inspect::InspectArgs),
    /// Run a command in a running service's container.
    Exec(exec::ExecArgs),
    /// Copy files between a service's container and the host (SERVICE:PATH on one side).
    Cp(exec::CpArgs),
    /// Pull the services' images from their registries.
    Pull(pull::PullArgs),
    /// Log in to a registry.
    Login(login::LoginArgs),
    /// List the images in the store.
    Images,
    /// Manage images: load archives, list, remove, prune.
    #[command(subcommand)]
    Image(images::ImageCommand),
    /// Validate the project file and print it normalized and interpolated.
    Config(config::ConfigArgs),
    /// Print the JSON Schema of devenv.yaml.
    Schema,
    /// Print a shell completion script.
    Completion {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Runs the command line and returns the process exit status.
pub fn run(cli: Cli) -> i32 {
    let result = match &cli.command {
        Command::Up(args) => up::run(&cli.project, args),
        Command::Down(args) => down::run(&cli.project, args),
        Command::Reload(args) => reload::reload(&cli.project, args),
        Command::Restart(args) => reload::restart(&cli.project, args),
        Command::Events(args) => events::run(&cli.project, args),
        Command::Ps(args) => ps::run(&cli.project, args),
        Command::Logs(args) => logs::run(&cli.project, args),
        Command::Port(args) => port::run(&cli.project, args),
        Command::Inspect(args) => inspect::run(&cli.project, args),
        Command::Exec(args) => match exec::run_exec(&cli.project, args) {
            Ok(status) => return status,
            Err(e) => Err(e),
        },
        Command::Cp(args) => exec::run_cp(&cli.project, args),
        Command::Pull(args) => pull::run(&cli.project, args),
        Command::Login(args) => login::run(args),
        Command::Images => images::run(&images::ImageCommand::Ls),
        Command::Image(cmd) => images::run(cmd),
        Command::Config(args) => config::run(&cli.project, args),
        Command::Schema => schema::run(),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(*shell, &mut cmd, "devenv", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// The engine on this host: the image store and the embedded runtime under DEVENV_HOME.
pub(crate) fn engine(home: &Home) -> anyhow::Result<Engine> {
    let store = Store::open(home.images())?;
    // The helper that drives libcontainer is this very binary, re-executed.
    let runtime = Youki::new(home.runtime_state(), PathBuf::from("/proc/self/exe"));
    let mut engine = Engine::new(home.clone(), store, Box::new(runtime));
    if let Some(pool) = std::env::var_os(POOL_VAR) {
        let pool = pool.to_string_lossy();
        engine.pool = pool.parse().map_err(|_| {
            anyhow::anyhow!("{POOL_VAR}={pool:?} is not an IPv4 subnet like 10.89.0.0/16")
        })?;
    }
    Ok(engine)
}

/// The pool project subnets are taken from, one /24 each, when not the default 10.89.0.0/16.
const POOL_VAR: &str = "DEVENV_SUBNET_POOL";

fn report(e: &anyhow::Error) -> i32 {
    if let Some(c) = e.downcast_ref::<ConfigError>() {
        eprintln!("{c}");
        return EXIT_INVALID_PROJECT;
    }
    eprintln!("error: {e:#}");
    EXIT_FAILURE
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        <super::Cli as clap::CommandFactory>::command().debug_assert();
    }
}
