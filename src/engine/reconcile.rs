//! Converging a project: resolve images, plan, then remove, recreate and create containers in
//! dependency order (independent services of a layer in parallel), saving the state after every
//! step. Blocking; the supervisor runs it off its event loop.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;

use super::network::{hosts_text, mode, resolve_ports, rewrite_in_place, PortsByAddress};
use super::plan::{config_hash, follow_shared_namespaces, plan, Action};
use super::start::{Readiness, StartPlan};
use super::{Engine, EngineError};
use crate::config::forms::NetworkMode;
use crate::config::Project;
use crate::image::{ImageInfo, Reference};
use crate::network::{firewall, project_hash};
use crate::state::{ContainerRecord, NetworkRecord, PortRecord, ProjectState, StateError};

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
        readiness: &dyn Readiness,
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
            let mut actions = plan(&project.graph, wanted, &hashes, &st, &running);
            follow_shared_namespaces(&mut actions, &|s| match mode(project, s) {
                NetworkMode::Service(target) => Some(target),
                _ => None,
            });
            actions
        };
        let save = |st: &ProjectState| {
            st.save(state_file)
                .map_err(|source: StateError| EngineError::State { service: String::new(), source })
        };

        let bridged = wanted.iter().any(|s| mode(project, s) == NetworkMode::Bridge);
        let had_network = state.lock().expect("state lock").network.is_some();
        // Host ports are chosen and checked before anything changes, and held (the firewall
        // lock) until the rules claiming them are in, so two projects cannot both take one.
        let fw_lock = match bridged || had_network {
            true => Some(firewall::lock().map_err(|source| EngineError::Network { source })?),
            false => None,
        };
        let own_hash = project_hash(&project.name, self.home.root());
        let mut ports: BTreeMap<String, Vec<PortRecord>> = BTreeMap::new();
        for a in &actions {
            if let Action::Create(s) | Action::Recreate(s) = a {
                // Compose ignores `ports` with network_mode: host, as Docker does.
                if mode(project, s) == NetworkMode::Bridge {
                    ports.insert(s.clone(), resolve_ports(project, s, &own_hash)?);
                }
            }
        }
        let result = self.converge(
            project, &actions, &images, &hashes, ports, bridged, fw_lock, state, &save, readiness,
        );
        if result.is_err() && !had_network {
            // A first attempt that failed leaves no network behind either.
            let mut st = state.lock().expect("state lock");
            if st.containers.is_empty() {
                if let Some(net) = st.network.take() {
                    for e in self.teardown_network(&project.name, &net) {
                        tracing::warn!(error = %e, "removing the network of a failed start");
                    }
                }
                save(&st)?;
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn converge(
        &self,
        project: &Project,
        actions: &[Action],
        images: &BTreeMap<String, ImageInfo>,
        hashes: &BTreeMap<String, String>,
        ports: BTreeMap<String, Vec<PortRecord>>,
        bridged: bool,
        fw_lock: Option<firewall::FirewallLock>,
        state: &Mutex<ProjectState>,
        save: &(dyn Fn(&ProjectState) -> Result<(), EngineError> + Sync),
        readiness: &dyn Readiness,
    ) -> Result<Outcome, EngineError> {
        let net = match bridged || state.lock().expect("state lock").network.is_some() {
            true => Some(self.ensure_network(project, state, save)?),
            false => None,
        };
        let wanted: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Remove(_) => None,
                Action::Keep(s) | Action::Create(s) | Action::Recreate(s) => Some(s.clone()),
            })
            .collect();
        let addresses = match &net {
            Some(_) => self.allocate_addresses(project, &wanted)?,
            None => BTreeMap::new(),
        };

        // Rules for what is kept and what is about to run (a recreated service keeps its
        // address): DNAT to an address whose container is not there yet is harmless. They go in
        // on a thread of their own, beside the containers' creation (nft and iptables are
        // separate programs, a few ms each), and are in before `up` returns.
        let rules: Option<(NetworkRecord, PortsByAddress)> = net.clone().map(|net| {
            let replaced = |s: &String| {
                actions
                    .iter()
                    .any(|a| matches!(a, Action::Remove(x) | Action::Recreate(x) if x == s))
            };
            let st = state.lock().expect("state lock");
            let mut all: PortsByAddress = st
                .containers
                .values()
                .filter(|r| !replaced(&r.service))
                .filter_map(|r| Some((r.endpoint.as_ref()?.ip_address, r.ports.clone())))
                .collect();
            all.extend(ports.iter().filter_map(|(s, p)| Some((*addresses.get(s)?, p.clone()))));
            (net, all)
        });
        std::thread::scope(|scope| {
            let firewall = scope.spawn(move || {
                let result = match &rules {
                    Some((net, ports)) => {
                        self.apply_firewall(fw_lock.as_ref(), &project.name, net, ports)
                    }
                    None => Ok(()),
                };
                drop(fw_lock);
                result
            });
            let result = self.replace_containers(
                project,
                actions,
                images,
                hashes,
                ports,
                net.as_ref(),
                &addresses,
                state,
                save,
                readiness,
            );
            let firewall = firewall.join().expect("firewall thread");
            match (result, firewall) {
                (Ok(outcome), Ok(())) => Ok(outcome),
                (Ok(outcome), Err(e)) => {
                    let started: Vec<String> =
                        outcome.created.iter().chain(&outcome.recreated).cloned().collect();
                    self.roll_back(project, net.as_ref(), &started, state, save)?;
                    Err(e)
                }
                (Err(e), _) => Err(e),
            }
        })
    }

    /// Removes what left the file and what changed, then creates the new containers layer by
    /// layer; when one fails, the ones this call started are removed again.
    #[allow(clippy::too_many_arguments)]
    fn replace_containers(
        &self,
        project: &Project,
        actions: &[Action],
        images: &BTreeMap<String, ImageInfo>,
        hashes: &BTreeMap<String, String>,
        ports: BTreeMap<String, Vec<PortRecord>>,
        net: Option<&NetworkRecord>,
        addresses: &BTreeMap<String, Ipv4Addr>,
        state: &Mutex<ProjectState>,
        save: &(dyn Fn(&ProjectState) -> Result<(), EngineError> + Sync),
        readiness: &dyn Readiness,
    ) -> Result<Outcome, EngineError> {
        let mut outcome = Outcome::default();
        for a in actions {
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
                    if let Err(e) = self.ipam().release(&project.name, s) {
                        tracing::warn!(service = %s, error = %e, "releasing the address");
                    }
                    outcome.removed.push(s.clone());
                }
            }
        }

        let todo: Vec<String> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Create(s) | Action::Recreate(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        let plan = StartPlan { project, images, hashes, net, addresses, state, save, readiness };
        let (created_now, error) = self.start_services(&plan, &todo, ports);
        if let Some(e) = error {
            self.roll_back(project, net, &created_now, state, save)?;
            return Err(e);
        }
        if net.is_some() {
            self.refresh_hosts(project, &state.lock().expect("state lock"));
        }
        for a in actions {
            match a.clone() {
                Action::Keep(s) => outcome.kept.push(s),
                Action::Create(s) => outcome.created.push(s),
                Action::Recreate(s) => outcome.recreated.push(s),
                Action::Remove(_) => {}
            }
        }
        Ok(outcome)
    }

    /// Undoes an attempt: the containers it started are removed, and the rules go back to what
    /// still runs.
    fn roll_back(
        &self,
        project: &Project,
        net: Option<&NetworkRecord>,
        started: &[String],
        state: &Mutex<ProjectState>,
        save: &(dyn Fn(&ProjectState) -> Result<(), EngineError> + Sync),
    ) -> Result<(), EngineError> {
        for s in started.iter().rev() {
            let rec = state.lock().expect("state lock").containers.remove(s);
            if let Some(rec) = rec {
                for undo in self.remove(&rec) {
                    tracing::warn!(service = %s, error = %undo, "rolling back");
                }
            }
        }
        save(&state.lock().expect("state lock"))?;
        if let Some(net) = net {
            let ports: PortsByAddress = state
                .lock()
                .expect("state lock")
                .containers
                .values()
                .filter_map(|r| Some((r.endpoint.as_ref()?.ip_address, r.ports.clone())))
                .collect();
            if let Err(undo) = self.apply_firewall(None, &project.name, net, &ports) {
                tracing::warn!(error = %undo, "restoring the rules of what still runs");
            }
        }
        Ok(())
    }

    /// Brings every running container's /etc/hosts up to date with the project's addresses, so
    /// a service added later resolves in containers that were already running.
    fn refresh_hosts(&self, project: &Project, st: &ProjectState) {
        let addresses = match self.ipam().addresses(&project.name) {
            Ok(a) => a,
            Err(e) => return tracing::warn!(error = %e, "reading the project's addresses"),
        };
        let mut addresses = addresses;
        for (name, rec) in &st.containers {
            if let (Some(ep), false) = (&rec.endpoint, addresses.contains_key(name)) {
                addresses.insert(name.clone(), ep.ip_address);
            }
        }
        for (name, rec) in &st.containers {
            let own_network = matches!(rec.network_mode.as_str(), "host" | "none");
            if own_network || !project.model.services.contains_key(name) {
                continue;
            }
            let svc = &project.model.services[name];
            let hostname = svc.hostname.clone().unwrap_or_else(|| name.clone());
            let text = hosts_text(&project.name, name, &hostname, &addresses);
            let path = self.home.container(&rec.id).join("hosts");
            if let Err(e) = rewrite_in_place(&path, &text) {
                tracing::warn!(service = %name, error = %e, "updating /etc/hosts");
            }
        }
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
}

/// For `network_mode: service:NAME`: the pid of NAME's container and its endpoint.
pub(super) fn joined(
    project: &Project,
    service: &str,
    state: &Mutex<ProjectState>,
) -> (Option<i32>, Option<crate::state::EndpointRecord>) {
    match &project.model.services[service].network_mode {
        Some(NetworkMode::Service(other)) => {
            let st = state.lock().expect("state lock");
            let Some(rec) = st.containers.get(other) else { return (None, None) };
            let endpoint = rec.endpoint.clone().map(|mut e| {
                // The veth belongs to NAME's container; removing this one must leave it.
                e.veth.clear();
                e
            });
            (rec.pid, endpoint)
        }
        _ => None.unzip(),
    }
}
