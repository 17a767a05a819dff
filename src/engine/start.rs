//! Starting a reconcile's new containers: each service on a thread of its own that waits for
//! its dependencies (created, then as `depends_on`'s condition says: started, healthy, or
//! completed successfully) and then creates its container. Independent branches start in
//! parallel, and a service waits for nothing but what it depends on. A dependency that fails
//! stops its dependents, and the error names the chain.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::{Condvar, Mutex};

use super::network::mode;
use super::reconcile::joined;
use super::{CreateRequest, Engine, EngineError};
use crate::config::forms::{Condition, NetworkMode};
use crate::config::Project;
use crate::image::ImageInfo;
use crate::state::{ContainerRecord, NetworkRecord, PortRecord, ProjectState};

/// Tells when a running service satisfies a dependency condition. The supervisor's answers
/// come from its healthchecks and the exits it reaps.
pub trait Readiness: Sync {
    /// Blocks until `service` satisfies `condition`; `Err` says why it never will (it exited,
    /// it is unhealthy, with the last check's output).
    fn wait_for(&self, service: &str, condition: Condition) -> Result<(), String>;
}

/// What the start threads share: each service's outcome once it is known.
struct Board {
    done: Mutex<BTreeMap<String, Result<(), String>>>,
    changed: Condvar,
}

impl Board {
    fn wait(&self, service: &str) -> Result<(), String> {
        let mut done = self.done.lock().expect("board");
        loop {
            if let Some(r) = done.get(service) {
                return r.clone();
            }
            done = self.changed.wait(done).expect("board");
        }
    }

    fn set(&self, service: &str, result: Result<(), String>) {
        self.done.lock().expect("board").insert(service.to_owned(), result);
        self.changed.notify_all();
    }
}

/// The inputs of [`Engine::start_services`] that every service's thread reads.
pub(super) struct StartPlan<'a> {
    pub project: &'a Project,
    pub images: &'a BTreeMap<String, ImageInfo>,
    pub hashes: &'a BTreeMap<String, String>,
    pub net: Option<&'a NetworkRecord>,
    pub addresses: &'a BTreeMap<String, Ipv4Addr>,
    pub state: &'a Mutex<ProjectState>,
    pub save: &'a (dyn Fn(&ProjectState) -> Result<(), EngineError> + Sync),
    pub readiness: &'a dyn Readiness,
}

impl Engine {
    /// Creates `todo` (in start order), each once its dependencies are ready. Returns the
    /// services it created and the first error (in start order), if any; a failed service's
    /// record is removed from the state.
    pub(super) fn start_services(
        &self,
        plan: &StartPlan,
        todo: &[String],
        mut ports: BTreeMap<String, Vec<PortRecord>>,
    ) -> (Vec<String>, Option<EngineError>) {
        let board = Board { done: Mutex::new(BTreeMap::new()), changed: Condvar::new() };
        let results: Vec<(String, Result<ContainerRecord, EngineError>)> =
            std::thread::scope(|scope| {
                let handles: Vec<_> = todo
                    .iter()
                    .map(|s| {
                        let ports = ports.remove(s.as_str()).unwrap_or_default();
                        let board = &board;
                        scope.spawn(move || {
                            let result = self.start_one(plan, todo, board, s, ports);
                            board.set(s, result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
                            (s.clone(), result)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().expect("start thread")).collect()
            });
        let mut created = Vec::new();
        let mut first_error = None;
        for (s, r) in results {
            match r {
                Ok(_) => created.push(s),
                Err(e) => {
                    let mut st = plan.state.lock().expect("state lock");
                    if st.containers.remove(&s).is_some() {
                        if let Err(e) = (plan.save)(&st) {
                            tracing::warn!(service = %s, error = %e, "saving the state");
                        }
                    }
                    first_error.get_or_insert(e);
                }
            }
        }
        (created, first_error)
    }

    fn start_one(
        &self,
        plan: &StartPlan,
        todo: &[String],
        board: &Board,
        service: &str,
        ports: Vec<PortRecord>,
    ) -> Result<ContainerRecord, EngineError> {
        let project = plan.project;
        let svc = &project.model.services[service];
        // The graph's edges: `depends_on`, and the service whose network namespace it joins.
        for dep in project.graph.dependencies(service) {
            let d = svc.depends_on.0.get(&dep).cloned().unwrap_or_default();
            let dep = &dep;
            let refused =
                |message: String| EngineError::Refused { service: service.to_owned(), message };
            // Created by this reconcile: wait for that first.
            if todo.iter().any(|t| t == dep) {
                if let Err(e) = board.wait(dep) {
                    if !d.required {
                        tracing::warn!(service, dependency = %dep, "optional dependency failed");
                        continue;
                    }
                    return Err(refused(format!("not started: its dependency failed: {e}")));
                }
            } else if !plan.state.lock().expect("state lock").containers.contains_key(dep) {
                if d.required {
                    return Err(refused(format!("depends on \"{dep}\", which is not running")));
                }
                continue;
            }
            if let Err(why) = plan.readiness.wait_for(dep, d.condition) {
                if !d.required {
                    tracing::warn!(service, dependency = %dep, %why, "optional dependency not ready");
                    continue;
                }
                let what = match d.condition {
                    Condition::ServiceStarted => "to start",
                    Condition::ServiceHealthy => "to be healthy",
                    Condition::ServiceCompletedSuccessfully => "to complete successfully",
                };
                return Err(refused(format!(
                    "not started: it waits for \"{dep}\" {what}, but {why}"
                )));
            }
        }
        let (join_pid, shared_endpoint) = joined(project, service, plan.state);
        let req = CreateRequest {
            project,
            service,
            image: &plan.images[service],
            config_hash: plan.hashes[service].clone(),
            join_pid,
            shared_endpoint,
            bridge: match (plan.net, mode(project, service)) {
                (Some(n), NetworkMode::Bridge) => plan.addresses.get(service).map(|a| (n, *a)),
                _ => None,
            },
            ports,
            addresses: plan.addresses,
        };
        let mut record = |rec: &ContainerRecord| {
            let mut st = plan.state.lock().expect("state lock");
            st.record_step(rec);
            (plan.save)(&st)
        };
        self.create(&req, &mut record)
    }
}
