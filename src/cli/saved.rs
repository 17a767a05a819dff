//! The saved state of the project a command names, as the read-only commands (`ps`, `logs`,
//! `exec`, `cp`, `port`, `inspect`) see it, and service lookup with Compose-like errors.

use anyhow::bail;

use super::down::project_leniently;
use super::ProjectArgs;
use crate::state::{ContainerRecord, Home, ProjectState};
use crate::suggest::nearest;

/// A project's name, DEVENV_HOME, saved state (empty when there is none) and, when the project
/// file loads, the services it declares.
pub(super) struct Saved {
    pub name: String,
    pub home: Home,
    pub state: ProjectState,
    declared: Vec<String>,
}

/// Reads the saved state of the project `project` selects. Works with a broken or missing
/// project file too (the name then comes from `-p` or the directory), like `down`.
pub(super) fn saved(project: &ProjectArgs) -> anyhow::Result<Saved> {
    let (name, loaded) = project_leniently(project)?;
    let home = Home::from_env();
    let state = ProjectState::load(&home.state_file(&name))?.unwrap_or_default();
    let declared = loaded.map(|p| p.model.services.keys().cloned().collect()).unwrap_or_default();
    Ok(Saved { name, home, state, declared })
}

impl Saved {
    /// A service's container. Errors: a service the project does not have (with a "did you
    /// mean"), or one it declares that has no container.
    pub fn record(&self, service: &str) -> anyhow::Result<&ContainerRecord> {
        if let Some(rec) = self.state.containers.get(service) {
            return Ok(rec);
        }
        if self.declared.iter().any(|s| s == service) {
            bail!(
                "service \"{service}\" has no container in project {}; start it with `devenv up`",
                self.name
            );
        }
        let known = self.declared.iter().chain(self.state.containers.keys());
        let hint = nearest(service, known.map(String::as_str))
            .map(|s| format!("; did you mean \"{s}\"?"))
            .unwrap_or_default();
        bail!("no such service \"{service}\" in project {}{hint}", self.name)
    }

    /// A service's container, which must be running (its process alive).
    pub fn running(&self, service: &str) -> anyhow::Result<&ContainerRecord> {
        let rec = self.record(service)?;
        if rec.pid.is_none() || !rec.is_running() {
            bail!("service \"{service}\" is not running");
        }
        Ok(rec)
    }
}
