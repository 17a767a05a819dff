//! Converging a project: resolve images, plan, then remove, recreate and create containers in
//! dependency order (independent services of a layer in parallel), saving the state after every
//! step. Also taking a whole project down. Blocking; the supervisor runs it off its event loop.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use super::plan::{config_hash, plan, Action};
use super::{CreateRequest, Engine, EngineError};
use crate::config::forms::NetworkMode;
use crate::config::Project;
use crate::image::{ImageInfo, Reference};
use crate::state::{ContainerRecord, ProjectState, StateError};

/// What a reconcile did, for the user.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub created: Vec<String>,
    pub recreated: Vec<String>,
    pub removed: Vec<String>,
    pub kept: Vec<String>,
}

impl Engine {
    /// Makes the containers of `wanted` services match `project`, and removes the containers of
    /// services that are no longer in it. Nothing is created when an image is missing or a
    /// service is refused; when a container fails to start, the ones this call created are
    /// removed again, and the saved state says what remains.
    pub fn reconcile(
        &self,
        project: &Project,
        wanted: &[String],
        state: &Mutex<ProjectState>,
        state_file: &Path,
    ) -> Result<Outcome, EngineError> {
        for name in wanted {
            if let Some(u) = project.unsupported.iter().find(|u| u.service.as_deref() == Some(name))
            {
                return Err(EngineError::Refused { service: name.clone(), message: u.message() });
            }
        }
        let images = self.resolve_images(project, wanted)?;
        let hashes: BTreeMap<String, String> = wanted
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    config_hash(&project.model.services[n], &images[n].manifest_digest.to_string()),
                )
            })
            .collect();
        let actions = {
            let st = state.lock().expect("state lock");
            let running = |s: &str| st.containers.get(s).is_some_and(ContainerRecord::is_running);
            plan(&project.graph, wanted, &hashes, &st, &running)
        };
        let save = |st: &ProjectState| {
            st.save(state_file)
                .map_err(|source: StateError| EngineError::State { service: String::new(), source })
        };

        let mut outcome = Outcome::default();
        for a in &actions {
            if let Action::Remove(s) | Action::Recreate(s) = a {
                let rec = state.lock().expect("state lock").containers.get(s).cloned();
                if let Some(rec) = rec {
                    for e in self.remove(&rec) {
                        tracing::warn!(service = %s, error = %e, "removing the old container");
                    }
                    let mut st = state.lock().expect("state lock");
                    st.containers.remove(s);
                    save(&st)?;
                }
                if let Action::Remove(s) = a {
                    outcome.removed.push(s.clone());
                }
            }
        }

        let mut created_now: Vec<String> = Vec::new();
        let result = (|| {
            for layer in project.graph.start_layers() {
                let todo: Vec<&Action> = actions
                    .iter()
                    .filter(|a| matches!(a, Action::Create(s) | Action::Recreate(s) if layer.contains(s)))
                    .collect();
                let results: Vec<(String, Result<ContainerRecord, EngineError>)> =
                    std::thread::scope(|scope| {
                        let handles: Vec<_> = todo
                            .iter()
                            .map(|a| {
                                let (Action::Create(s) | Action::Recreate(s)) = a else {
                                    unreachable!()
                                };
                                let req = CreateRequest {
                                    project,
                                    service: s,
                                    image: &images[s.as_str()],
                                    config_hash: hashes[s.as_str()].clone(),
                                    join_pid: join_pid(project, s, state),
                                };
                                scope.spawn(move || {
                                    let mut record = |rec: &ContainerRecord| {
                                        let mut st = state.lock().expect("state lock");
                                        st.containers.insert(rec.service.clone(), rec.clone());
                                        save(&st)
                                    };
                                    (s.clone(), self.create(&req, &mut record))
                                })
                            })
                            .collect();
                        handles.into_iter().map(|h| h.join().expect("create thread")).collect()
                    });
                let mut first_error = None;
                for (s, r) in results {
                    match r {
                        Ok(_) => created_now.push(s),
                        Err(e) => {
                            let mut st = state.lock().expect("state lock");
                            st.containers.remove(&s);
                            save(&st)?;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    return Err(e);
                }
            }
            Ok(())
        })();
        if let Err(e) = result {
            // Undo this attempt: nothing it started stays behind.
            for s in created_now.iter().rev() {
                let rec = state.lock().expect("state lock").containers.remove(s);
                if let Some(rec) = rec {
                    for undo in self.remove(&rec) {
                        tracing::warn!(service = %s, error = %undo, "rolling back");
                    }
                }
            }
            save(&state.lock().expect("state lock"))?;
            return Err(e);
        }
        for a in actions {
            match a {
                Action::Keep(s) => outcome.kept.push(s),
                Action::Create(s) => outcome.created.push(s),
                Action::Recreate(s) => outcome.recreated.push(s),
                Action::Remove(_) => {}
            }
        }
        Ok(outcome)
    }

    /// Every wanted service's image, from the store; an error before anything is created if one
    /// is missing.
    pub fn resolve_images(
        &self,
        project: &Project,
        wanted: &[String],
    ) -> Result<BTreeMap<String, ImageInfo>, EngineError> {
        let mut out = BTreeMap::new();
        for name in wanted {
            let svc = &project.model.services[name];
            let image = svc.image.as_deref().ok_or_else(|| EngineError::Refused {
                service: name.clone(),
                message: "has no `image`".into(),
            })?;
            let image_err = |source| EngineError::Image { service: name.clone(), source };
            let reference = Reference::parse(image).map_err(image_err)?;
            match self.store.resolve(&reference).map_err(image_err)? {
                Some(info) => out.insert(name.clone(), info),
                None => {
                    return Err(EngineError::ImageMissing {
                        service: name.clone(),
                        image: reference.to_string(),
                        familiar: reference.familiar(),
                    })
                }
            };
        }
        Ok(out)
    }

    /// Stops and removes every container of the project, in reverse dependency order, and the
    /// named volumes too when asked. Best-effort: all errors are returned, none stops the rest.
    pub fn down(
        &self,
        project_name: &str,
        state: &Mutex<ProjectState>,
        stop_layers: &[Vec<String>],
        volumes: bool,
    ) -> Vec<EngineError> {
        // Containers of services the graph does not know (removed from the file, or no file to
        // read) go first; then the graph's stop layers, each layer's containers in parallel.
        let saved: Vec<String> =
            state.lock().expect("state lock").containers.keys().cloned().collect();
        let known: Vec<&String> = stop_layers.iter().flatten().collect();
        let mut layers: Vec<Vec<String>> =
            vec![saved.iter().filter(|s| !known.contains(s)).cloned().collect()];
        layers.extend(
            stop_layers.iter().map(|l| l.iter().filter(|s| saved.contains(s)).cloned().collect()),
        );
        let mut errors = Vec::new();
        for layer in layers.into_iter().filter(|l| !l.is_empty()) {
            let records: Vec<_> = {
                let st = state.lock().expect("state lock");
                layer.iter().filter_map(|s| st.containers.get(s).cloned()).collect()
            };
            let results: Vec<Vec<EngineError>> = std::thread::scope(|scope| {
                let handles: Vec<_> =
                    records.iter().map(|rec| scope.spawn(|| self.remove(rec))).collect();
                handles.into_iter().map(|h| h.join().expect("remove thread")).collect()
            });
            errors.extend(results.into_iter().flatten());
            let mut st = state.lock().expect("state lock");
            for s in &layer {
                st.containers.remove(s);
            }
        }
        if let Err(source) = crate::runtime::remove_project_cgroups(project_name) {
            errors.push(EngineError::Runtime { service: String::new(), source });
        }
        if volumes {
            let prefix = format!("{project_name}_");
            if let Ok(entries) = std::fs::read_dir(self.home.root().join("volumes")) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with(&prefix) {
                        if let Err(source) = std::fs::remove_dir_all(e.path()) {
                            errors.push(EngineError::Io {
                                service: String::new(),
                                what: "cannot remove volume",
                                path: e.path(),
                                source,
                            });
                        }
                    }
                }
            }
        }
        errors
    }
}

fn join_pid(project: &Project, service: &str, state: &Mutex<ProjectState>) -> Option<i32> {
    match &project.model.services[service].network_mode {
        Some(NetworkMode::Service(other)) => {
            state.lock().expect("state lock").containers.get(other).and_then(|r| r.pid)
        }
        _ => None,
    }
}
