//! `up --wait`: after the supervisor converged, wait until every service runs (and is healthy,
//! if it has a healthcheck) or has completed successfully (exit 0, and its restart policy will
//! not start it again); fail as soon as one exits for good with an error or turns unhealthy, or
//! when the time is up.

use std::time::{Duration, Instant};

use anyhow::bail;

use crate::config::Project;
use crate::health::{self, Status};
use crate::image::Store;
use crate::state::{ContainerStatus, Home, ProjectState};
use crate::supervisor::wants_restart;

/// How often the saved state is read again.
const POLL: Duration = Duration::from_millis(20);

pub(super) fn wait_ready(
    home: &Home,
    project: &Project,
    wanted: &[String],
    timeout: Option<Duration>,
) -> anyhow::Result<()> {
    let store = Store::open(home.images())?;
    let checked: Vec<bool> = wanted
        .iter()
        .map(|s| health::of_service(&store, &project.model.services[s]).is_some())
        .collect();
    let started = Instant::now();
    loop {
        let state = ProjectState::load(&home.state_file(&project.name))?.unwrap_or_default();
        let mut waiting = Vec::new();
        for (service, has_check) in wanted.iter().zip(&checked) {
            let policy = project.model.services[service].restart.as_ref();
            let Some(rec) = state.containers.get(service) else {
                bail!("service \"{service}\" has no container");
            };
            let health = rec.health.as_ref();
            match (rec.status, rec.is_running()) {
                (ContainerStatus::Running, true) if !has_check => {}
                (ContainerStatus::Running, true) => match health.map(|h| h.status) {
                    Some(Status::Healthy) => {}
                    Some(Status::Unhealthy) => {
                        let last = health
                            .and_then(|h| h.log.last())
                            .map_or(String::new(), crate::health::last_check_text);
                        bail!("service \"{service}\" is unhealthy{last}");
                    }
                    _ => waiting.push(format!("{service} (starting)")),
                },
                // Exited for good: its restart policy will not bring it back.
                (ContainerStatus::Exited { code }, _)
                    if !wants_restart(policy, code, rec.restart_count) =>
                {
                    if code != Some(0) {
                        let code = code.map_or("?".into(), |c| c.to_string());
                        bail!("service \"{service}\" exited with code {code}");
                    }
                }
                _ => waiting.push(service.clone()),
            }
        }
        if waiting.is_empty() {
            return Ok(());
        }
        if timeout.is_some_and(|t| started.elapsed() >= t) {
            bail!("timed out waiting for {}", waiting.join(", "));
        }
        std::thread::sleep(POLL);
    }
}
