//! devenv's state on disk, under `DEVENV_HOME` (default `/var/lib/devenv`): where everything
//! lives, the per-project lock, and the saved record of each project's containers, written after
//! every step so that a run killed at any point leaves enough to finish or undo it.

mod lock;
mod record;

use std::path::{Path, PathBuf};

pub use lock::{LockError, ProjectLock};
pub use record::{
    process_start_time, ContainerRecord, ContainerStatus, EndpointRecord, HealthRecord,
    MountRecord, NetworkRecord, PortRecord, ProjectState, StateError,
};

/// The default state directory when `DEVENV_HOME` is not set.
pub const DEFAULT_HOME: &str = "/var/lib/devenv";

/// The layout of `DEVENV_HOME`.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// `DEVENV_HOME`, or the default. A relative path is taken from the working directory now:
    /// the supervisor and mount options must not depend on where they run from.
    pub fn from_env() -> Home {
        let root =
            std::env::var_os("DEVENV_HOME").map(PathBuf::from).unwrap_or(DEFAULT_HOME.into());
        let root = match std::env::current_dir() {
            Ok(cwd) if root.is_relative() => cwd.join(root),
            _ => root,
        };
        Home::new(root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The image store.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// A project's saved state, lock and logs.
    pub fn project(&self, project: &str) -> PathBuf {
        self.root.join("projects").join(project)
    }

    pub fn state_file(&self, project: &str) -> PathBuf {
        self.project(project).join("state.json")
    }

    pub fn log_file(&self, project: &str, service: &str) -> PathBuf {
        self.project(project).join("logs").join(format!("{service}.log"))
    }

    /// The supervisor's control socket and its own log.
    pub fn run_dir(&self, project: &str) -> PathBuf {
        self.root.join("run").join(project)
    }

    pub fn socket(&self, project: &str) -> PathBuf {
        self.run_dir(project).join("control.sock")
    }

    /// A container's bundle: config.json, rootfs mount point, overlay upper and work dirs.
    pub fn container(&self, id: &str) -> PathBuf {
        self.root.join("containers").join(id)
    }

    /// The OCI runtime's own state (libcontainer's root path).
    pub fn runtime_state(&self) -> PathBuf {
        self.root.join("run").join("runtime")
    }

    /// A named volume's data directory.
    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name).join("_data")
    }

    /// Helper binaries devenv writes out (the container init).
    pub fn bin(&self) -> PathBuf {
        self.root.join("bin")
    }
}
