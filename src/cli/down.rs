//! `devenv down`: stop and remove the project's containers (and its named volumes with `-v`).
//! Through the supervisor when one runs; from the saved state when none does, so `down` always
//! works, even after a crash or with a broken project file.

use anyhow::Context;

use super::{engine, ProjectArgs};
use crate::config::{self, discover};
use crate::state::{process_start_time, Home, ProjectLock, ProjectState};
use crate::supervisor::protocol::{self, Request, Response};

#[derive(Debug, clap::Args)]
pub struct DownArgs {
    /// Also remove the named volumes declared in the project file.
    #[arg(short, long)]
    pub volumes: bool,
}

/// The name, and the stop order when the file loads (else none: any order will do).
fn project_and_order(project: &ProjectArgs) -> anyhow::Result<(String, Vec<Vec<String>>)> {
    let (name, loaded) = project_leniently(project)?;
    Ok((name, loaded.map(|p| p.graph.stop_layers()).unwrap_or_default()))
}

/// The project's name and, when the file loads, the project. When it does not, the name comes
/// from `-p` or the directory name: a project whose file became invalid can still be taken down
/// (and looked at).
pub(super) fn project_leniently(
    project: &ProjectArgs,
) -> anyhow::Result<(String, Option<config::Project>)> {
    let opts = project.load_options().context("reading the working directory")?;
    match config::load(&opts) {
        Ok(p) => Ok((p.name.clone(), Some(p))),
        Err(e) => match &opts.project_name {
            Some(n) => Ok((n.clone(), None)),
            None => {
                // A project up from this very file (its name may come from its `name:`, which
                // an edit then broke) is found by its saved state.
                if let Some(n) = saved_project_of(&opts) {
                    return Ok((n, None));
                }
                let dir = opts
                    .cwd
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let n = discover::normalize_project_name(&dir);
                if n.is_empty() {
                    Err(e.into())
                } else {
                    Ok((n, None))
                }
            }
        },
    }
}

/// The project whose saved state says it was brought up from the project file `opts` selects.
fn saved_project_of(opts: &config::LoadOptions) -> Option<String> {
    let file = match &opts.file {
        Some(f) => opts.cwd.join(f),
        None => discover::find_project_file(&opts.cwd)?,
    };
    let file = std::fs::canonicalize(&file).unwrap_or(file);
    let projects = Home::from_env().root().join("projects");
    std::fs::read_dir(projects).ok()?.flatten().find_map(|entry| {
        let state = ProjectState::load(&entry.path().join("state.json")).ok()??;
        (std::fs::canonicalize(&state.file).unwrap_or(state.file.clone()) == file)
            .then(|| state.project.clone())
            .filter(|p| !p.is_empty())
    })
}

pub fn run(project: &ProjectArgs, args: &DownArgs) -> anyhow::Result<()> {
    let (name, layers) = project_and_order(project)?;
    let home = Home::from_env();
    let _lock = ProjectLock::acquire(&home.project(&name), "down", |holder| {
        eprintln!("waiting for {holder} to finish with project {name}...")
    })?;
    match down_via_supervisor(&home, &name, args.volumes)? {
        Some(Response::Ok { .. }) => {}
        Some(Response::Error { message }) => anyhow::bail!(message),
        None => {
            let state_file = home.state_file(&name);
            let Some(state) = ProjectState::load(&state_file)? else {
                eprintln!("{name}: nothing to remove");
                return Ok(());
            };
            let state = std::sync::Mutex::new(state);
            let errors = engine(&home)?.down(&name, &state, &layers, args.volumes);
            let left = state.into_inner().expect("state");
            if errors.is_empty() {
                ProjectState::remove(&state_file)?;
            } else {
                left.save(&state_file)?;
                let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::bail!("some of project {name} could not be removed:\n{}", all.join("\n"));
            }
        }
    }
    let _ = std::fs::remove_dir_all(home.run_dir(&name));
    eprintln!("{name}: stopped and removed");
    Ok(())
}

/// Asks the project's supervisor, if one runs, to take the project down, and returns once it has
/// exited, so that nothing of the project runs afterwards. `None` when no supervisor answers.
pub(super) fn down_via_supervisor(
    home: &Home,
    name: &str,
    volumes: bool,
) -> anyhow::Result<Option<Response>> {
    let supervisor =
        ProjectState::load(&home.state_file(name)).ok().flatten().and_then(|s| s.supervisor);
    let response = protocol::call(&home.socket(name), &Request::Down { volumes }, None)?;
    if let (Some(Response::Ok { .. }), Some((pid, start))) = (&response, supervisor) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while process_start_time(pid) == Some(start) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    Ok(response)
}
