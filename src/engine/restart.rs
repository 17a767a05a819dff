//! Starting a container's process from its bundle (`launch`, the last step of `create`), and
//! restarting a service in place, as `docker restart` does: the process is stopped and started
//! again from the same bundle and root filesystem, so files synced into the container survive,
//! and it keeps its address, published ports and /etc/hosts. Only the process, its namespaces
//! and its veth are new.

use std::fs::OpenOptions;
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{Engine, EngineError};
use crate::events::EventKind;
use crate::runtime::{netns, Stdio};
use crate::state::{process_start_time, ContainerRecord, ContainerStatus, NetworkRecord};
use crate::state::{ProjectState, StateError};

impl Engine {
    /// Creates the container's process from the bundle in its directory, connects it (to the
    /// bridge at `bridge`'s address, or only `lo` with `network_mode: none`) and starts it.
    /// `record` is called after every step that changes what exists.
    pub(super) fn launch(
        &self,
        project: &str,
        rec: &mut ContainerRecord,
        bridge: Option<(&NetworkRecord, Ipv4Addr)>,
        loopback_only: bool,
        record: &mut dyn FnMut(&ContainerRecord) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let service = rec.service.clone();
        let dir = self.home.container(&rec.id);
        let log = self.home.log_file(project, &service);
        let io = |what: &'static str, path: &Path| {
            let (service, path) = (service.clone(), path.to_path_buf());
            move |source| EngineError::Io { service, what, path, source }
        };
        if let Some(parent) = log.parent() {
            std::fs::create_dir_all(parent).map_err(io("cannot create", parent))?;
        }
        let open_log = || {
            OpenOptions::new().create(true).append(true).open(&log).map_err(io("cannot open", &log))
        };
        let stdio = Stdio { stdin: None, stdout: open_log()?.into(), stderr: open_log()?.into() };
        let rt = |source| EngineError::Runtime { service: service.clone(), source };
        let pid = self.runtime.create(&rec.id, &dir, stdio).map_err(rt)?;
        rec.status = ContainerStatus::Created;
        rec.pid = Some(pid);
        rec.pid_start = process_start_time(pid);
        record(rec)?;
        if let Some((net, address)) = bridge {
            rec.endpoint = Some(self.attach_endpoint(net, &rec.id, address, pid)?);
            record(rec)?;
        } else if loopback_only {
            netns::loopback_up(pid).map_err(rt)?;
        }
        self.runtime.start(&rec.id).map_err(rt)?;
        rec.status = ContainerStatus::Running;
        rec.started_at = SystemTime::now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
        record(rec)?;
        self.events.emit(EventKind::Running { service, pid });
        Ok(())
    }

    /// Restarts `service`'s container in place and returns how long it took. Containers that
    /// share its network namespace (`network_mode: service:NAME`) lose their network with it,
    /// so they are restarted after it, joined to the new namespace. A container whose restart
    /// fails is left stopped, with its record: the next reconcile recreates it.
    pub fn restart(
        &self,
        service: &str,
        state: &Mutex<ProjectState>,
        state_file: &Path,
    ) -> Result<u64, EngineError> {
        let started = Instant::now();
        let save = |st: &ProjectState| {
            st.save(state_file).map_err(|source: StateError| EngineError::State {
                service: service.to_owned(),
                source,
            })
        };
        let (rec, net, sidecars) = {
            let mut st = state.lock().expect("state lock");
            let Some(rec) = st.containers.get_mut(service) else {
                return Err(EngineError::Refused {
                    service: service.to_owned(),
                    message: "has no container; `devenv up` creates it".into(),
                });
            };
            // The supervisor's reaper leaves a restarting container alone.
            rec.status = ContainerStatus::Restarting;
            rec.oom_killed = false;
            let rec = rec.clone();
            let shares = format!("service:{service}");
            let sidecars: Vec<String> = st
                .containers
                .values()
                .filter(|r| r.network_mode == shares)
                .map(|r| r.service.clone())
                .collect();
            save(&st)?;
            (rec, st.network.clone(), sidecars)
        };
        let result = self.restart_one(rec, net.as_ref(), state, &save);
        if let Err(e) = &result {
            tracing::warn!(service, error = %e, "restart failed; the container stays stopped");
        }
        result?;
        let ms = started.elapsed().as_millis() as u64;
        self.events.emit(EventKind::Restarted { service: service.to_owned(), ms });
        for sidecar in sidecars {
            self.restart(&sidecar, state, state_file)?;
        }
        Ok(ms)
    }

    fn restart_one(
        &self,
        mut rec: ContainerRecord,
        net: Option<&NetworkRecord>,
        state: &Mutex<ProjectState>,
        save: &dyn Fn(&ProjectState) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let service = rec.service.clone();
        let mut record = |r: &ContainerRecord| {
            let mut st = state.lock().expect("state lock");
            st.record_step(r);
            save(&st)
        };
        let fail = |rec: &mut ContainerRecord, e: EngineError| {
            rec.status = ContainerStatus::Exited { code: None };
            let mut st = state.lock().expect("state lock");
            st.containers.insert(rec.service.clone(), rec.clone());
            let _ = save(&st);
            e
        };
        self.stop(&rec);
        let rt = |source| EngineError::Runtime { service: service.clone(), source };
        // The runtime's container and the old veth are independent: both go at once (each is
        // a process or a netlink round trip of several ms, on the path of every restart).
        let own_veth = rec.endpoint.as_ref().filter(|ep| !ep.veth.is_empty() && net.is_some());
        let (deleted, detached) = std::thread::scope(|scope| {
            let detach = own_veth.map(|ep| scope.spawn(|| self.detach_endpoint(ep)));
            let deleted = self.runtime.delete(&rec.id, true).map_err(rt);
            (deleted, detach.map(|t| t.join().expect("detach thread")))
        });
        if let Err(e) = deleted.and(detached.unwrap_or(Ok(()))) {
            return Err(fail(&mut rec, e));
        }
        // A container sharing another's namespace joins it by pid, which may be new.
        if let Some(target) = rec.network_mode.strip_prefix("service:") {
            let pid = state.lock().expect("state lock").containers.get(target).and_then(|r| r.pid);
            let joined = match pid {
                Some(pid) => rejoin_network(&self.home.container(&rec.id), pid),
                None => {
                    Err(format!("service \"{target}\", whose network it shares, is not running"))
                }
            };
            if let Err(message) = joined {
                return Err(fail(&mut rec, EngineError::Refused { service, message }));
            }
        }
        let bridge = match (&rec.endpoint, net) {
            (Some(ep), Some(net)) if !ep.veth.is_empty() => Some((net, ep.ip_address)),
            _ => None,
        };
        let loopback_only = rec.network_mode == "none";
        let project = state.lock().expect("state lock").project.clone();
        match self.launch(&project, &mut rec, bridge, loopback_only, &mut record) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Some(pid) = rec.pid.filter(|_| rec.is_running()) {
                    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                }
                let _ = self.runtime.delete(&rec.id, true);
                Err(fail(&mut rec, e))
            }
        }
    }

    /// Sends `signal` to the service's container (its init passes it on to the command).
    pub fn signal(&self, rec: &ContainerRecord, signal: Signal) -> Result<(), EngineError> {
        match rec.pid.filter(|_| rec.is_running()) {
            Some(pid) => kill(Pid::from_raw(pid), signal).map_err(|e| EngineError::Refused {
                service: rec.service.clone(),
                message: format!("cannot send {signal}: {e}"),
            }),
            None => Err(EngineError::Refused {
                service: rec.service.clone(),
                message: format!("is not running; cannot send {signal}"),
            }),
        }
    }
}

/// Points the bundle's network namespace at process `pid`'s.
fn rejoin_network(bundle: &Path, pid: i32) -> Result<(), String> {
    use oci_spec::runtime::{LinuxNamespaceType, Spec};
    let file = bundle.join("config.json");
    let mut spec = Spec::load(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
    let namespaces = spec
        .linux_mut()
        .as_mut()
        .and_then(|l| l.namespaces_mut().as_mut())
        .ok_or_else(|| format!("{} has no namespaces", file.display()))?;
    for ns in namespaces.iter_mut() {
        if ns.typ() == LinuxNamespaceType::Network {
            ns.set_path(Some(format!("/proc/{pid}/ns/net").into()));
        }
    }
    spec.save(&file).map_err(|e| format!("writing {}: {e}", file.display()))
}
