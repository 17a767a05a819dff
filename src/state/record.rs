//! The saved record of a project: which containers exist, their pids (with the process start
//! time, so a reused pid is never mistaken for the container), the hash of each service's
//! effective config, and what was set up for them.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{} is corrupt: {source}", path.display())]
    Parse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProjectState {
    pub project: String,
    /// The project file and directory the containers were made from.
    pub file: PathBuf,
    pub dir: PathBuf,
    /// The supervisor that owns the containers, if one runs: pid and start time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub supervisor: Option<(i32, u64)>,
    /// By service name.
    pub containers: BTreeMap<String, ContainerRecord>,
    /// The project bridge, once created: what `down` (or the next run after a crash) removes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetworkRecord>,
}

/// The project's bridge network as set up on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Names the project's links and nftables chains (`network::project_hash`).
    pub hash: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// A container's place on the project bridge. A `service:NAME` container copies its target's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointRecord {
    /// The host end of the veth; empty for a container sharing another's namespace.
    pub veth: String,
    pub ip_address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Ipv4Addr,
    pub mac_address: String,
}

/// A published port as set up: the host port is concrete (a chosen one for `"80"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortRecord {
    /// `0.0.0.0` for every host address.
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: crate::config::ports::Protocol,
}

/// A bind mount or volume as set up for the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountRecord {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "type")]
    pub kind: String,
    pub source: String,
    pub destination: String,
    /// `rw` or `ro`.
    pub mode: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum ContainerStatus {
    /// Directories and mounts being made; no process yet.
    Creating,
    /// The runtime created it; user code not started.
    Created,
    Running,
    /// Being stopped and started again; the supervisor's reaper leaves it alone.
    Restarting,
    /// `code` is None when devenv did not see the exit (it was not the process's parent).
    Exited {
        code: Option<i32>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub service: String,
    /// The image as written and the manifest digest it resolved to.
    pub image: String,
    pub image_digest: String,
    /// Hash of the service's effective config; a change means the container is recreated.
    pub config_hash: String,
    pub status: ContainerStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Start time of `pid` in clock ticks since boot (/proc/PID/stat field 22).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// Seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    pub network_mode: String,
    /// Whether the overlay rootfs is mounted (to unmount it on removal).
    #[serde(default)]
    pub rootfs_mounted: bool,
    /// The signal and grace period `down` uses.
    pub stop_signal: String,
    pub stop_grace_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortRecord>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<MountRecord>,
    /// The healthcheck's status and last results, when the service has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthRecord>,
    /// How many times the restart policy restarted it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub restart_count: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A container's health, as `ps` and `inspect` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    pub status: crate::health::Status,
    pub failing_streak: u32,
    /// The last results, oldest first.
    pub log: Vec<crate::health::Probe>,
}

impl ContainerRecord {
    /// The container's state in one word (`running`, `created`, `creating`, `exited`), checked
    /// against the kernel, and its exit code when devenv saw it.
    pub fn state(&self) -> (&'static str, Option<i32>) {
        match self.status {
            ContainerStatus::Running if self.is_running() => ("running", None),
            ContainerStatus::Exited { code } => ("exited", code),
            ContainerStatus::Creating => ("creating", None),
            ContainerStatus::Restarting => ("restarting", None),
            ContainerStatus::Created if self.is_running() => ("created", None),
            _ => ("exited", None),
        }
    }

    /// Whether the recorded process still runs: same pid and same start time.
    pub fn is_running(&self) -> bool {
        match (self.pid, self.pid_start) {
            (Some(pid), Some(start)) => process_start_time(pid) == Some(start),
            _ => false,
        }
    }
}

/// A process's start time in clock ticks since boot, if it exists.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    let state = rest.split(' ').next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

impl ProjectState {
    /// The saved state, or `None` if the project has none.
    pub fn load(path: &Path) -> Result<Option<ProjectState>, StateError> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StateError::Parse { path: path.into(), source }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StateError::Read { path: path.into(), source }),
        }
    }

    /// Writes the state atomically: a crash leaves the old file or the new one, never half.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write { path: path.into(), source };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let tmp = path.with_extension("json.tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(self).expect("state serializes")).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }

    /// Removes the state file (the project has nothing left).
    pub fn remove(path: &Path) -> Result<(), StateError> {
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StateError::Write { path: path.into(), source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_has_a_start_time_and_a_dead_pid_has_none() {
        assert!(process_start_time(std::process::id() as i32).is_some());
        assert_eq!(process_start_time(i32::MAX), None);
    }

    #[test]
    fn state_round_trips_and_saves_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p/state.json");
        assert_eq!(ProjectState::load(&path).unwrap(), None);
        let mut s = ProjectState { project: "p".into(), ..Default::default() };
        s.containers.insert(
            "web".into(),
            ContainerRecord {
                id: "p-web-1".into(),
                service: "web".into(),
                image: "nginx".into(),
                image_digest: "sha256:00".into(),
                config_hash: "h".into(),
                status: ContainerStatus::Exited { code: Some(3) },
                pid: None,
                pid_start: None,
                started_at: None,
                network_mode: "host".into(),
                rootfs_mounted: false,
                stop_signal: "SIGTERM".into(),
                stop_grace_ms: 10_000,
                endpoint: None,
                ports: vec![],
                mounts: vec![],
                health: None,
                restart_count: 0,
            },
        );
        s.save(&path).unwrap();
        assert_eq!(ProjectState::load(&path).unwrap(), Some(s));
        assert!(!path.with_extension("json.tmp").exists());
    }
}
