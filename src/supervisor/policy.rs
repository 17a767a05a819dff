//! Restart policies: when a container's process ends on its own, `restart: always`,
//! `unless-stopped` and `on-failure[:N]` bring it back, in place, after a backoff that starts at
//! 100 ms and doubles up to 10 s (Docker doubles up to a minute; a development environment wants
//! a fixed crash back sooner). A container that ran for 10 s or more starts the backoff again
//! from the beginning. While it waits, `ps` says `restarting (N)`. Services that depend on it
//! with `restart: true` are restarted after it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::shared::Shared;
use crate::config::forms::RestartPolicy;
use crate::config::Project;
use crate::events::EventKind;
use crate::state::{ContainerRecord, ContainerStatus};

const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);
/// A container that ran this long is considered to have recovered.
const RESET_AFTER: Duration = Duration::from_secs(10);

/// Whether `policy` restarts a container that exited with `code` after `restarts` restarts.
pub fn wants_restart(policy: Option<&RestartPolicy>, code: Option<i32>, restarts: u32) -> bool {
    match policy {
        None | Some(RestartPolicy::No) => false,
        Some(RestartPolicy::Always | RestartPolicy::UnlessStopped) => true,
        // An exit devenv did not see is counted as a failure.
        Some(RestartPolicy::OnFailure { max_retries }) => {
            code != Some(0) && max_retries.is_none_or(|n| restarts < n)
        }
    }
}

/// The wait before restart number `attempt` (0-based, since the last recovery).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_DELAY.saturating_mul(1 << attempt.min(16)).min(MAX_DELAY)
}

impl Shared {
    /// Called, with the state locked, for each container the reaper found exited: when its
    /// policy restarts it, marks it `restarting` at once (so that nobody waiting for it takes
    /// the exit as final) and returns the backoff attempt to schedule.
    pub fn plan_restart(
        &self,
        project: Option<&Project>,
        rec: &mut ContainerRecord,
        code: Option<i32>,
    ) -> Option<u32> {
        if self.aborting.load(Ordering::Relaxed) {
            return None;
        }
        let policy = project?.model.services.get(&rec.service).and_then(|s| s.restart);
        if !wants_restart(policy.as_ref(), code, rec.restart_count) {
            return None;
        }
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let ran = Duration::from_secs(now.saturating_sub(rec.started_at.unwrap_or(now)));
        let mut backoff = self.backoff.lock().expect("backoff");
        let attempt = backoff.entry(rec.service.clone()).or_insert(0);
        if ran >= RESET_AFTER {
            *attempt = 0;
        }
        let this = *attempt;
        *attempt += 1;
        rec.status = ContainerStatus::Restarting;
        Some(this)
    }

    /// Restarts container `id` of `service` after the backoff of `attempt`, unless a reconcile
    /// or `down` changed it meanwhile.
    pub fn schedule_restart(self: &Arc<Shared>, service: String, id: String, attempt: u32) {
        let me = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(backoff(attempt)).await;
            // The operations lock keeps this from racing a reconcile or `down`. A reconcile that
            // holds it while it waits for a dependency to be ready may be waiting for this very
            // service: then the restart goes ahead without it (it touches only this container).
            let _guard = loop {
                if let Ok(g) = me.op.try_lock() {
                    break Some(g);
                }
                if me.readiness_waiters.load(Ordering::Relaxed) > 0 {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            let same = me
                .state
                .lock()
                .expect("state")
                .containers
                .get(&service)
                .is_some_and(|r| r.id == id && r.status == ContainerStatus::Restarting);
            if !same || me.aborting.load(Ordering::Relaxed) {
                return;
            }
            let m = me.clone();
            let _ = tokio::task::spawn_blocking(move || m.restart_by_policy(&service)).await;
        });
    }

    fn restart_by_policy(&self, service: &str) {
        let file = self.home.state_file(&self.name.lock().expect("name"));
        // Counted before the restart, which copies the record: the new process may exit, and be
        // reaped and judged by the policy, before `restart` returns, and must be judged with
        // this restart counted (`on-failure:3` restarted a fast crash a fourth time).
        let count = |delta: i32| {
            let mut st = self.state.lock().expect("state");
            if let Some(rec) = st.containers.get_mut(service) {
                rec.restart_count = rec.restart_count.saturating_add_signed(delta);
            }
            let _ = st.save(&file);
        };
        count(1);
        match self.engine.restart(service, &self.state, &file) {
            Ok(_) => self.restart_dependents(service),
            Err(e) => {
                count(-1);
                self.engine.events.emit(EventKind::Error {
                    service: Some(service.to_owned()),
                    message: format!("restart policy: {e}"),
                })
            }
        }
    }

    /// Restarts the running services that depend on `service` with `restart: true`, as
    /// Compose does when a dependency is restarted.
    pub fn restart_dependents(&self, service: &str) {
        let Some(project) = self.project.lock().expect("project").clone() else { return };
        let file = self.home.state_file(&project.name);
        for (name, svc) in &project.model.services {
            let follows = svc.depends_on.0.get(service).is_some_and(|d| d.restart);
            let running = self
                .state
                .lock()
                .expect("state")
                .containers
                .get(name)
                .is_some_and(|r| r.is_running());
            if follows && running {
                if let Err(e) = self.engine.restart(name, &self.state, &file) {
                    self.engine.events.emit(EventKind::Error {
                        service: Some(name.clone()),
                        message: format!("restarting after \"{service}\": {e}"),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_decide_as_docker_does() {
        let on_failure = |n| RestartPolicy::OnFailure { max_retries: n };
        assert!(!wants_restart(None, Some(1), 0));
        assert!(!wants_restart(Some(&RestartPolicy::No), Some(1), 0));
        assert!(wants_restart(Some(&RestartPolicy::Always), Some(0), 99));
        assert!(wants_restart(Some(&RestartPolicy::UnlessStopped), Some(0), 0));
        assert!(!wants_restart(Some(&on_failure(None)), Some(0), 0));
        assert!(wants_restart(Some(&on_failure(None)), Some(2), 50));
        assert!(wants_restart(Some(&on_failure(None)), None, 0));
        assert!(wants_restart(Some(&on_failure(Some(3))), Some(1), 2));
        assert!(!wants_restart(Some(&on_failure(Some(3))), Some(1), 3));
    }

    #[test]
    fn backoff_doubles_from_100_ms_up_to_10_s() {
        let ms: Vec<u128> = (0..10).map(|a| backoff(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
        assert_eq!(backoff(100), MAX_DELAY);
    }
}
