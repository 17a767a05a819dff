//! `devenv exec` and `devenv cp`: run a command in, or copy files into and out of, a running
//! service's container. Neither needs the supervisor: the container's pid comes from the saved
//! state (checked against the kernel), and everything else from /proc.

use anyhow::{bail, Context};

use super::saved::saved;
use super::ProjectArgs;
use crate::runtime::cp::{copy_in, copy_out};
use crate::runtime::exec::{exec, ExecOptions};

#[derive(Debug, clap::Args)]
#[command(trailing_var_arg = true)]
pub struct ExecArgs {
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Run as this user (name or uid[:gid]).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Working directory inside the container.
    #[arg(short, long)]
    pub workdir: Option<String>,
    /// Set an environment variable (repeatable).
    #[arg(short, long = "env", value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    pub service: String,
    /// The command and its arguments.
    #[arg(required = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct CpArgs {
    /// A host path or SERVICE:PATH.
    pub src: String,
    /// A host path or SERVICE:PATH.
    pub dst: String,
}

/// The host pid of a running service's container.
fn service_pid(project: &ProjectArgs, service: &str) -> anyhow::Result<i32> {
    Ok(saved(project)?.running(service)?.pid.expect("a running container has a pid"))
}

/// Runs the command and returns its exit status, which becomes devenv's.
pub fn run_exec(project: &ProjectArgs, args: &ExecArgs) -> anyhow::Result<i32> {
    let pid = service_pid(project, &args.service)?;
    let env = args
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => Ok((k.to_owned(), v.to_owned())),
            None => std::env::var(kv)
                .map(|v| (kv.clone(), v))
                .with_context(|| format!("-e {kv}: not set here")),
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let opts = ExecOptions {
        argv: args.command.clone(),
        env,
        user: args.user.clone(),
        workdir: args.workdir.clone(),
        tty: args.tty,
        interactive: args.interactive,
    };
    Ok(exec(pid, &opts)?)
}

/// `SERVICE:PATH` or a host path. A path with a `/` before any `:` is a host path, as in
/// `docker cp`.
fn split(arg: &str) -> Option<(&str, &str)> {
    let (service, path) = arg.split_once(':')?;
    (!service.is_empty() && !service.contains('/')).then_some((service, path))
}

pub fn run_cp(project: &ProjectArgs, args: &CpArgs) -> anyhow::Result<()> {
    match (split(&args.src), split(&args.dst)) {
        (Some(_), Some(_)) => {
            bail!("copying between two containers is not supported; copy through the host")
        }
        (None, None) => bail!("one of SRC and DST must be SERVICE:PATH"),
        (Some((service, path)), None) => {
            let pid = service_pid(project, service)?;
            copy_out(pid, path, std::path::Path::new(&args.dst))?;
        }
        (None, Some((service, path))) => {
            let pid = service_pid(project, service)?;
            copy_in(pid, std::path::Path::new(&args.src), path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn container_paths_are_told_from_host_paths() {
        assert_eq!(split("web:/tmp/x"), Some(("web", "/tmp/x")));
        assert_eq!(split("./a:b"), None);
        assert_eq!(split("/tmp/x"), None);
        assert_eq!(split(":x"), None);
    }
}
