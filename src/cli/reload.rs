//! `devenv reload` and `devenv restart`: requests to the project's supervisor, which owns the
//! containers. Editors bind `reload` to save (README.md shows how).

use anyhow::bail;

use super::down::project_leniently;
use super::ProjectArgs;
use crate::state::Home;
use crate::supervisor::protocol::{self, Request, Response};

#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    /// Services to restart after applying the project file; by default every service with
    /// watch rules.
    pub services: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct RestartArgs {
    /// The services to restart, in this order.
    #[arg(required = true)]
    pub services: Vec<String>,
}

pub fn reload(project: &ProjectArgs, args: &ReloadArgs) -> anyhow::Result<()> {
    ask(project, &Request::Reload { services: args.services.clone() })
}

pub fn restart(project: &ProjectArgs, args: &RestartArgs) -> anyhow::Result<()> {
    ask(project, &Request::Restart { services: args.services.clone() })
}

/// Sends the request to the project's supervisor and prints its answer.
fn ask(project: &ProjectArgs, request: &Request) -> anyhow::Result<()> {
    let (name, _) = project_leniently(project)?;
    match call(&Home::from_env(), &name, request)? {
        Response::Ok { message, .. } => {
            eprintln!("{name}: {message}");
            Ok(())
        }
        Response::Error { message } => bail!(message),
    }
}

/// One request to the supervisor of project `name`; an error saying so when none runs.
pub(super) fn call(home: &Home, name: &str, request: &Request) -> anyhow::Result<Response> {
    match protocol::call(&home.socket(name), request, None)? {
        Some(r) => Ok(r),
        None => {
            bail!("project {name} is not up (no supervisor answers); start it with `devenv up`")
        }
    }
}
