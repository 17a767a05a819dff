//! Creating and starting one service's container: directories, overlay rootfs, volumes, hosts
//! and resolv.conf, the OCI spec, then the runtime's create and start. Each step is recorded;
//! when one fails, everything done so far is undone before the error is returned.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::network::hosts_text;
use super::volumes::{prepare_mounts, volume_dir};
use super::{Engine, EngineError};
use crate::config::forms::NetworkMode;
use crate::config::model::Service;
use crate::config::volumes::MountType;
use crate::config::Project;
use crate::events::EventKind;
use crate::image::ImageInfo;
use crate::runtime::driver::fit_rlimits;
use crate::runtime::spec::{build_spec, NetworkNamespace, SpecInput};
use crate::runtime::{cgroups_path, init, rootfs, write_bundle};
use crate::state::{
    ContainerRecord, ContainerStatus, EndpointRecord, MountRecord, NetworkRecord, PortRecord,
};

/// Everything needed to create one service's container.
pub struct CreateRequest<'a> {
    pub project: &'a Project,
    pub service: &'a str,
    pub image: &'a ImageInfo,
    pub config_hash: String,
    /// For `network_mode: service:NAME`: the pid of that service's container, and its endpoint,
    /// which this one shares.
    pub join_pid: Option<i32>,
    pub shared_endpoint: Option<EndpointRecord>,
    /// On the bridge: the project network and this service's address.
    pub bridge: Option<(&'a NetworkRecord, Ipv4Addr)>,
    /// Published ports, host ports already chosen and checked.
    pub ports: Vec<PortRecord>,
    /// Every address of the project, for /etc/hosts.
    pub addresses: &'a BTreeMap<String, Ipv4Addr>,
}

impl Engine {
    /// Creates and starts the container. `record` is called with the container's record after
    /// every step that changes what exists on the host, so the caller can save it.
    pub fn create(
        &self,
        req: &CreateRequest,
        record: &mut dyn FnMut(&ContainerRecord) -> Result<(), EngineError>,
    ) -> Result<ContainerRecord, EngineError> {
        let svc = &req.project.model.services[req.service];
        let id = container_id(&req.project.name, req.service);
        let mut rec = ContainerRecord {
            id: id.clone(),
            service: req.service.to_owned(),
            image: svc.image.clone().unwrap_or_default(),
            image_digest: req.image.manifest_digest.to_string(),
            config_hash: req.config_hash.clone(),
            status: ContainerStatus::Creating,
            pid: None,
            pid_start: None,
            started_at: None,
            network_mode: svc.network_mode.clone().unwrap_or(NetworkMode::Bridge).to_string(),
            rootfs_mounted: false,
            stop_signal: stop_signal(svc, req.image),
            stop_grace_ms: svc.stop_grace_period.map_or(10_000, |d| d.0.as_millis() as u64),
            endpoint: req.shared_endpoint.clone(),
            ports: req.ports.clone(),
            mounts: mount_records(svc, |name| {
                volume_dir(&self.home, &req.project.name, name, &req.project.model)
            }),
            health: None,
            restart_count: 0,
        };
        record(&rec)?;
        self.events.emit(EventKind::Starting { service: req.service.to_owned() });
        match self.create_steps(req, svc, &mut rec, record) {
            Ok(()) => Ok(rec),
            Err(e) => {
                tracing::debug!(container = %rec.id, error = %e, "create failed; rolling back");
                for undo in self.remove(&rec) {
                    tracing::warn!(container = %rec.id, error = %undo, "rollback step failed");
                }
                Err(e)
            }
        }
    }

    fn create_steps(
        &self,
        req: &CreateRequest,
        svc: &Service,
        rec: &mut ContainerRecord,
        record: &mut dyn FnMut(&ContainerRecord) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let service = req.service;
        let io = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| EngineError::Io { service: service.to_owned(), what, path, source }
        };
        let network = match svc.network_mode.clone().unwrap_or(NetworkMode::Bridge) {
            NetworkMode::Host => NetworkNamespace::Host,
            NetworkMode::None => NetworkNamespace::New,
            NetworkMode::Service(other) => match req.join_pid {
                Some(pid) => NetworkNamespace::Join(PathBuf::from(format!("/proc/{pid}/ns/net"))),
                None => {
                    return Err(EngineError::Refused {
                        service: service.into(),
                        message: format!(
                            "service \"{other}\", whose network it shares, is not running"
                        ),
                    })
                }
            },
            NetworkMode::Bridge => NetworkNamespace::New,
        };

        let dir = self.home.container(&rec.id);
        let (root, upper, work) = (dir.join("rootfs"), dir.join("upper"), dir.join("work"));
        for d in [&root, &upper, &work] {
            std::fs::create_dir_all(d).map_err(io("cannot create", d))?;
        }
        rootfs::mount_overlay(&req.image.layers, &upper, &work, &root)
            .map_err(|source| EngineError::Runtime { service: service.into(), source })?;
        rec.rootfs_mounted = true;
        record(rec)?;

        let volumes_root =
            |name: &str| volume_dir(&self.home, &req.project.name, name, &req.project.model);
        prepare_mounts(service, svc, &root, &volumes_root)?;
        let (hosts, resolv) = (dir.join("hosts"), dir.join("resolv.conf"));
        let hostname = svc.hostname.clone().unwrap_or_else(|| service.to_owned());
        let hosts_text = match network {
            NetworkNamespace::Host => std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
            // Only `lo` with network_mode: none: no other service is reachable.
            NetworkNamespace::New if svc.network_mode == Some(NetworkMode::None) => {
                hosts_text(&req.project.name, service, &hostname, &BTreeMap::new())
            }
            _ => hosts_text(&req.project.name, service, &hostname, req.addresses),
        };
        std::fs::write(&hosts, hosts_text).map_err(io("cannot write", &hosts))?;
        let resolv_text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        std::fs::write(&resolv, resolv_text).map_err(io("cannot write", &resolv))?;
        let init_bin = init::init_binary(&self.home.bin())
            .map_err(io("cannot write the init binary to", &self.home.bin()))?;
        let image_config = req.image.config.config().clone().unwrap_or_default();
        let volume_dirs = |name: &str| volumes_root(name);
        let spec = build_spec(&SpecInput {
            service_name: service,
            service: svc,
            image_config: &image_config,
            rootfs: &root,
            network,
            volume_dirs: &volume_dirs,
            hosts_file: Some(&hosts),
            resolv_conf: Some(&resolv),
            init: Some(&init_bin),
            extra_env: &[],
        })
        .map_err(|source| EngineError::Spec { service: service.into(), source })?;
        let mut spec = spec;
        fit_rlimits(&mut spec);
        write_bundle(&dir, &mut spec, &cgroups_path(&req.project.name, &rec.id))
            .map_err(|source| EngineError::Runtime { service: service.into(), source })?;

        let bridge = req.bridge;
        let none = matches!(svc.network_mode, Some(NetworkMode::None));
        self.launch(&req.project.name, rec, bridge, none, record)
    }
}

/// What `inspect` shows of the service's mounts: binds and volumes with their host source.
fn mount_records(svc: &Service, volume_dir: impl Fn(&str) -> PathBuf) -> Vec<MountRecord> {
    svc.volumes
        .iter()
        .map(|m| {
            let source = match (m.kind, m.source.as_deref()) {
                (MountType::Volume, Some(name)) => volume_dir(name).display().to_string(),
                (_, Some(s)) => s.to_string(),
                (_, None) => String::new(),
            };
            MountRecord {
                kind: m.kind.to_string(),
                source,
                destination: m.target.clone(),
                mode: if m.read_only { "ro" } else { "rw" }.into(),
            }
        })
        .chain(svc.tmpfs.0.iter().map(|t| MountRecord {
            kind: "tmpfs".into(),
            source: String::new(),
            destination: t.clone(),
            mode: "rw".into(),
        }))
        .collect()
}

/// A container id unique on the host: cgroup paths are shared by every DEVENV_HOME.
fn container_id(project: &str, service: &str) -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{project}-{service}-{:08x}", nanos ^ std::process::id().rotate_left(16))
}

/// The service's stop signal, else the image's, else SIGTERM.
fn stop_signal(svc: &Service, image: &ImageInfo) -> String {
    svc.stop_signal
        .clone()
        .or_else(|| image.config.config().as_ref().and_then(|c| c.stop_signal().clone()))
        .unwrap_or_else(|| "SIGTERM".into())
}
