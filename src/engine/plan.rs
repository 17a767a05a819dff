//! The reconcile plan: what must change to turn the saved state into the desired project.
//! Pure: it reads no files and touches nothing, so it is tested without root.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::model::Service;
use crate::graph::ServiceGraph;
use crate::state::ProjectState;

/// What to do with one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing: it runs with the wanted config.
    Keep(String),
    /// It does not exist yet.
    Create(String),
    /// It exists with another config, or has stopped: remove it, then create it.
    Recreate(String),
    /// It is no longer in the project: stop and remove it.
    Remove(String),
}

/// Hash of a service's effective config: the normalized service and the image digest it runs.
/// Watch rules are left out: they change what the supervisor watches, not the container.
pub fn config_hash(service: &Service, image_digest: &str) -> String {
    let mut h = Sha256::new();
    let container = Service { watch: Vec::new(), ..service.clone() };
    h.update(serde_json::to_vec(&container).expect("a service serializes"));
    h.update(b"\0");
    h.update(image_digest.as_bytes());
    format!("{:x}", h.finalize())
}

/// The actions, in order: removals first (stop order), then the wanted services in start order.
/// Containers of services no longer in the project (`graph`) are removed; those of services that
/// are only not wanted this time (`up web` while `db` runs) are left alone, as Compose does.
/// `hashes` holds the config hash of every wanted service; `running` says whether a saved
/// container's process is alive.
pub fn plan(
    graph: &ServiceGraph,
    wanted: &[String],
    hashes: &BTreeMap<String, String>,
    state: &ProjectState,
    running: &dyn Fn(&str) -> bool,
) -> Vec<Action> {
    let mut actions: Vec<Action> = state
        .containers
        .keys()
        .filter(|s| !graph.contains(s))
        .map(|s| Action::Remove(s.clone()))
        .collect();
    // Remove dependents before what they depend on.
    let stop_order: Vec<String> = graph.stop_layers().into_iter().flatten().collect();
    actions.sort_by_key(|a| match a {
        Action::Remove(s) => stop_order.iter().position(|x| x == s).unwrap_or(usize::MAX),
        _ => 0,
    });
    for layer in graph.start_layers() {
        for name in layer.into_iter().filter(|n| wanted.contains(n)) {
            let action = match state.containers.get(&name) {
                None => Action::Create(name),
                Some(c) if Some(&c.config_hash) == hashes.get(&name) && running(&name) => {
                    Action::Keep(name)
                }
                Some(_) => Action::Recreate(name),
            };
            actions.push(action);
        }
    }
    actions
}

/// A container that shares another's network namespace (`network_mode: service:NAME`) loses its
/// network when NAME's container is replaced: it is recreated too, as Compose does. `shares`
/// says which service a service's namespace comes from. Actions are in start order, so NAME's
/// action comes first and chains (a sidecar of a sidecar) follow.
pub fn follow_shared_namespaces(actions: &mut [Action], shares: &dyn Fn(&str) -> Option<String>) {
    for i in 0..actions.len() {
        let Action::Keep(s) = &actions[i] else { continue };
        let Some(target) = shares(s) else { continue };
        let replaced = actions[..i]
            .iter()
            .any(|a| matches!(a, Action::Recreate(t) | Action::Create(t) if *t == target));
        if replaced {
            actions[i] = Action::Recreate(s.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ContainerRecord, ContainerStatus};

    fn record(service: &str, hash: &str) -> ContainerRecord {
        ContainerRecord {
            id: format!("p-{service}"),
            service: service.into(),
            image: "busybox".into(),
            image_digest: "sha256:1".into(),
            config_hash: hash.into(),
            status: ContainerStatus::Running,
            pid: Some(1),
            pid_start: Some(1),
            started_at: None,
            network_mode: "none".into(),
            rootfs_mounted: true,
            stop_signal: "SIGTERM".into(),
            stop_grace_ms: 10_000,
            endpoint: None,
            ports: vec![],
            mounts: vec![],
            health: None,
            restart_count: 0,
        }
    }

    fn graph() -> ServiceGraph {
        ServiceGraph::new([("db", vec![]), ("web", vec!["db"]), ("worker", vec!["db"])]).unwrap()
    }

    #[test]
    fn watch_rules_do_not_change_the_config_hash_but_the_command_does() {
        let load = |text: &str| {
            let dir = std::path::Path::new("/nonexistent/p");
            crate::config::load_str(&dir.join("devenv.yaml"), text, dir, Default::default(), None)
                .unwrap()
        };
        let hash = |text: &str| config_hash(&load(text).model.services["a"], "sha256:1");
        let plain = hash("services:\n  a:\n    image: busybox\n");
        let watched = hash(
            "services:\n  a:\n    image: busybox\n    watch:\n      - path: .\n        action: restart\n",
        );
        let other = hash("services:\n  a:\n    image: busybox\n    command: sleep 1\n");
        assert_eq!(plain, watched);
        assert_ne!(plain, other);
    }

    #[test]
    fn an_up_to_date_project_keeps_everything() {
        let mut state = ProjectState::default();
        let mut hashes = BTreeMap::new();
        for s in ["db", "web", "worker"] {
            state.containers.insert(s.into(), record(s, "h"));
            hashes.insert(s.to_string(), "h".to_string());
        }
        let wanted: Vec<String> = ["db", "web", "worker"].map(String::from).into();
        let actions = plan(&graph(), &wanted, &hashes, &state, &|_| true);
        assert!(actions.iter().all(|a| matches!(a, Action::Keep(_))), "{actions:?}");
    }

    #[test]
    fn changed_stopped_new_and_removed_services() {
        let mut state = ProjectState::default();
        state.containers.insert("db".into(), record("db", "old"));
        state.containers.insert("web".into(), record("web", "h"));
        state.containers.insert("gone".into(), record("gone", "h"));
        let hashes: BTreeMap<String, String> = [("db", "new"), ("web", "h"), ("worker", "h")]
            .map(|(a, b)| (a.into(), b.into()))
            .into();
        let wanted: Vec<String> = ["db", "web", "worker"].map(String::from).into();
        let actions = plan(&graph(), &wanted, &hashes, &state, &|s| s != "web");
        // `up db` leaves web alone.
        let only_db = plan(&graph(), &["db".to_string()], &hashes, &state, &|_| true);
        assert_eq!(only_db, vec![Action::Remove("gone".into()), Action::Recreate("db".into())]);
        assert_eq!(
            actions,
            vec![
                Action::Remove("gone".into()),
                Action::Recreate("db".into()),
                Action::Recreate("web".into()),
                Action::Create("worker".into()),
            ]
        );
    }

    #[test]
    fn a_sidecar_follows_the_service_whose_network_it_shares() {
        let mut actions = vec![
            Action::Recreate("web".into()),
            Action::Keep("side".into()),
            Action::Keep("side2".into()),
            Action::Keep("other".into()),
        ];
        let shares = |s: &str| match s {
            "side" => Some("web".to_string()),
            "side2" => Some("side".to_string()),
            _ => None,
        };
        follow_shared_namespaces(&mut actions, &shares);
        assert_eq!(
            actions,
            vec![
                Action::Recreate("web".into()),
                Action::Recreate("side".into()),
                Action::Recreate("side2".into()),
                Action::Keep("other".into()),
            ]
        );
    }
}
