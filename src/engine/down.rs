//! Taking a whole project down: its containers in reverse dependency order (each stop layer in
//! parallel), its cgroups, its network and, when asked, its named volumes. Best-effort: every
//! error is collected, none stops the rest.

use std::sync::Mutex;

use super::{Engine, EngineError};
use crate::state::ProjectState;

impl Engine {
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
        let network = state.lock().expect("state lock").network.take();
        if let Some(net) = network {
            errors.extend(self.teardown_network(project_name, &net));
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
