//! The OCI runtime spec (`config.json`) of a service's container.
//!
//! [`build_spec`] turns a normalized [`Service`], its image's config and the paths the caller
//! prepared (rootfs, volume directories, hosts and resolv.conf files, the init binary) into the
//! [`Spec`] that libcontainer (or runc) runs. It does what `docker run` would do for the same
//! service: Docker's default capability set, masked and read-only /proc and /sys paths, a minimal
//! /dev, the device cgroup rules, Compose's rules for the command line, the environment and the
//! user. The lists themselves are in [`defaults`], each with the moby source it comes from.
//!
//! Building a spec creates nothing: it only reads the image's /etc/passwd and /etc/group (to
//! resolve a user name) and, in [`HostFacts::detect`], a few files of /proc and /sys.
//!
//! The service's limits become `linux.resources` (memory, CPU bandwidth, pids) and its `ulimits`
//! `process.rlimits`; `privileged` lifts the hardening as Docker's `--privileged` does (see
//! [`privileged`]).
//!
//! Not set, deliberately: `linux.seccomp` (Docker's default seccomp profile is not applied yet),
//! an AppArmor profile (Docker loads its own `docker-default`), `linux.cgroupsPath` (the runtime
//! helper chooses the cgroup), and the stop signal (not part of an OCI spec; the supervisor
//! sends it).

pub mod defaults;
mod mounts;
mod privileged;
mod process;
mod resources;
mod user;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    LinuxBuilder, LinuxDeviceBuilder, LinuxDeviceType, LinuxNamespaceBuilder, LinuxNamespaceType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};

use crate::config::model::Service;

pub use mounts::anonymous_volume_name;
pub use process::{argv, environment};

/// The network namespace a container gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkNamespace {
    /// The host's (`network_mode: host`): no network namespace in the spec.
    Host,
    /// A new one, created by the runtime (`none`, and `bridge` before the veth is attached).
    New,
    /// An existing one, for example `/proc/<pid>/ns/net` of another service's container.
    Join(PathBuf),
}

/// Everything [`build_spec`] needs to know about one service's container.
pub struct SpecInput<'a> {
    pub service_name: &'a str,
    /// The normalized service: bind sources are absolute.
    pub service: &'a Service,
    /// The `config` section of the image's config (Env, Cmd, Entrypoint, WorkingDir, User...).
    pub image_config: &'a ImageConfig,
    /// The container's root filesystem (the overlay mount point).
    pub rootfs: &'a Path,
    pub network: NetworkNamespace,
    /// The host directory of a named volume, by name. Anonymous volumes are named by
    /// [`anonymous_volume_name`].
    pub volume_dirs: &'a dyn Fn(&str) -> PathBuf,
    /// Bind-mounted read-only at /etc/hosts when given.
    pub hosts_file: Option<&'a Path>,
    /// Bind-mounted read-only at /etc/resolv.conf when given.
    pub resolv_conf: Option<&'a Path>,
    /// The init binary on the host. When given (and `service.init` is not `false`) it is mounted
    /// at [`defaults::INIT_PATH`] and runs as PID 1: `/.devenv/init -- <argv>`.
    pub init: Option<&'a Path>,
    /// Variables added last to the environment; they win over the image's and the service's.
    pub extra_env: &'a [(String, String)],
}

/// What the spec depends on that belongs to the host rather than to the service. Detect it once
/// with [`HostFacts::detect`]; tests use fixed values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    /// The host's hostname: a `network_mode: host` container without a `hostname` of its own gets
    /// it, as Docker does (`daemon/container.go` `newContainer`). It still gets its own UTS
    /// namespace, so nothing in it can rename the host.
    pub hostname: String,
    /// Cgroup v2 in unified mode. Docker's default cgroup namespace mode is `private` there and
    /// `host` on cgroup v1 and hybrid hosts (`daemon/config` `DefaultCgroupNamespaceMode`), where
    /// a cgroup namespace does not give the container a view of its own cgroups anyway.
    pub cgroup_v2: bool,
    /// The memory controller limits swap too (`memory.memsw.*` on v1, `memory.swap.max` on v2).
    /// When it does, a memory limit also sets memory+swap to the same value (see the `resources` module);
    /// when it does not, the swap limit is left out, as Docker does with a warning.
    pub swap_limit: bool,
    /// `/proc/sys/kernel/cap_last_cap`: the highest capability number the kernel knows.
    pub cap_last_cap: u8,
    /// The bounding set of devenv's own process (`CapBnd` in /proc/self/status), bit N for
    /// capability N: `cap_add: [ALL]` and `privileged` grant only what it holds.
    pub cap_bounding: u64,
    /// The per-CPU `thermal_throttle` directories present on the host, masked like moby does.
    pub thermal_throttle: Vec<String>,
}

impl HostFacts {
    /// Reads the facts from /proc and /sys; anything unreadable falls back to the conservative
    /// choice (no cgroup namespace, no swap limit, every capability known).
    pub fn detect() -> HostFacts {
        let read = |p: &str| std::fs::read_to_string(p).map(|s| s.trim().to_owned());
        let cgroup_v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        let swap_limit = if cgroup_v2 {
            // The root cgroup has no memory.swap.max; the devenv process's own cgroup has it when
            // swap accounting is on.
            read("/proc/self/cgroup")
                .ok()
                .and_then(|s| {
                    let own = s.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
                    Some(Path::new("/sys/fs/cgroup").join(own.trim_start_matches('/')))
                })
                .is_some_and(|dir| dir.join("memory.swap.max").exists())
        } else {
            Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
        };
        let mut cpus: Vec<(u32, String)> = std::fs::read_dir("/sys/devices/system/cpu")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.strip_prefix("cpu")?.parse().ok()?;
                let dir = e.path().join("thermal_throttle");
                dir.exists().then(|| (n, dir.to_string_lossy().into_owned()))
            })
            .collect();
        cpus.sort();
        HostFacts {
            hostname: read("/proc/sys/kernel/hostname").unwrap_or_else(|_| "localhost".into()),
            cgroup_v2,
            swap_limit,
            cap_last_cap: read("/proc/sys/kernel/cap_last_cap")
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(40),
            cap_bounding: read("/proc/self/status")
                .ok()
                .and_then(|s| {
                    let hex = s.lines().find_map(|l| l.strip_prefix("CapBnd:"))?.trim().to_owned();
                    u64::from_str_radix(&hex, 16).ok()
                })
                .unwrap_or(u64::MAX),
            thermal_throttle: cpus.into_iter().map(|(_, p)| p).collect(),
        }
    }
}

/// Why a service's spec cannot be built. Every error names the service.
#[derive(Debug, thiserror::Error)]
#[error("service {service:?}: {kind}")]
pub struct SpecError {
    pub service: String,
    pub kind: SpecErrorKind,
}

/// What went wrong, without the service's name.
#[derive(Debug, thiserror::Error)]
pub enum SpecErrorKind {
    #[error("nothing to run: neither the service nor its image sets an entrypoint or a command")]
    EmptyCommand,
    #[error(
        "unknown capability {0:?} (expected a name such as NET_ADMIN or CAP_NET_ADMIN, or ALL)"
    )]
    UnknownCapability(String),
    #[error("invalid user {0:?}: expected user, user:group, uid or uid:gid")]
    InvalidUser(String),
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("cannot read {path} in the image: {source}")]
    ReadImageFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path:?} is not an absolute path")]
    NotAbsolute { what: &'static str, path: String },
    #[error("the bind mount at {0:?} has no source")]
    BindWithoutSource(String),
    #[error("{0:?} is mounted more than once")]
    DuplicateMount(String),
    #[error("invalid tmpfs option {option:?} for {target:?}")]
    TmpfsOption { target: String, option: String },
    #[error("invalid mem_limit of {0} bytes: the minimum is 6 MiB")]
    MemoryTooLow(u64),
    #[error("invalid cpus {0}: expected 0 (no limit) or a number of CPUs from 0.01")]
    InvalidCpus(f64),
    #[error("unknown ulimit {0:?}")]
    UnknownUlimit(String),
    #[error("{0}")]
    Oci(#[from] oci_spec::OciSpecError),
}

impl SpecErrorKind {
    fn of(self, service: &str) -> SpecError {
        SpecError { service: service.to_owned(), kind: self }
    }
}

/// Builds the spec of `input`'s container on this host (see [`HostFacts::detect`]).
pub fn build_spec(input: &SpecInput) -> Result<Spec, SpecError> {
    build_spec_on(input, &HostFacts::detect())
}

/// Builds the spec of `input`'s container for a host described by `host`.
pub fn build_spec_on(input: &SpecInput, host: &HostFacts) -> Result<Spec, SpecError> {
    build(input, host).map_err(|kind| kind.of(input.service_name))
}

fn build(input: &SpecInput, host: &HostFacts) -> Result<Spec, SpecErrorKind> {
    let (service, image) = (input.service, input.image_config);
    let hostname = match (&service.hostname, &input.network) {
        (Some(h), _) => h.clone(),
        (None, NetworkNamespace::Host) => host.hostname.clone(),
        (None, _) => input.service_name.to_owned(),
    };

    let mut args = process::argv_of(service, image)?;
    let init = input.init.filter(|_| service.init != Some(false));
    if init.is_some() {
        // Docker's `--init`: the init runs the program as its child, forwards signals to it and
        // reaps orphans (`daemon/oci_linux.go` `WithCommonOptions`).
        args.splice(0..0, [defaults::INIT_PATH.to_owned(), "--".to_owned()]);
    }

    let user_spec = service.user.as_deref().or(image.user().as_deref()).unwrap_or("");
    let user = user::resolve(input.rootfs, user_spec)?;
    let cwd = match service.working_dir.as_deref().or(image.working_dir().as_deref()) {
        None | Some("") => "/".to_owned(),
        Some(dir) if dir.starts_with('/') => dir.to_owned(),
        Some(dir) => {
            return Err(SpecErrorKind::NotAbsolute { what: "working_dir", path: dir.into() })
        }
    };

    let process = ProcessBuilder::default()
        .terminal(false)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids)
                .build()?,
        )
        .args(args)
        .env(environment(service, image, &hostname, input.extra_env))
        .cwd(cwd)
        .capabilities(process::capabilities(service, host)?)
        .rlimits(process::rlimits(service)?)
        // Docker leaves no_new_privileges off unless `--security-opt no-new-privileges`: setuid
        // programs such as `su` and `ping` in older images keep working.
        .no_new_privileges(false)
        // Docker always writes oom_score_adj (0 by default), so a container never inherits the
        // daemon's own adjustment.
        .oom_score_adj(0)
        .build()?;

    let mut masked: Vec<String> = defaults::MASKED_PATHS.iter().map(|p| p.to_string()).collect();
    masked.extend(host.thermal_throttle.iter().cloned());

    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces(&input.network, host)?)
        .masked_paths(masked)
        .readonly_paths(defaults::READONLY_PATHS.map(String::from).to_vec())
        .devices(
            defaults::DEVICES
                .iter()
                .map(|&(path, major, minor)| {
                    LinuxDeviceBuilder::default()
                        .path(path)
                        .typ(LinuxDeviceType::C)
                        .major(major)
                        .minor(minor)
                        .file_mode(0o666u32)
                        .uid(0u32)
                        .gid(0u32)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .resources(resources::build(service, host)?)
        .build()?;
    // The builder falls back to oci-spec's own defaults for what is not set; make the remaining
    // parts explicit so the spec holds exactly what this module decided.
    linux.set_sysctl(match input.network {
        NetworkNamespace::New => Some(
            defaults::PRIVATE_NETWORK_SYSCTLS
                .iter()
                .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<HashMap<_, _>>(),
        ),
        _ => None,
    });
    linux.set_seccomp(None);
    linux.set_cgroups_path(None);
    linux.set_uid_mappings(None);
    linux.set_gid_mappings(None);

    let mut spec = SpecBuilder::default()
        .version("1.0.2")
        .root(RootBuilder::default().path(input.rootfs).readonly(false).build()?)
        .hostname(hostname)
        .mounts(mounts::build(input, init)?)
        .process(process)
        .linux(linux)
        .build()?;
    spec.set_annotations(None);
    if service.privileged {
        privileged::apply(&mut spec);
    }
    Ok(spec)
}

/// Docker's namespaces (`oci/defaults.go`, order kept): mount, network (per `network`), uts, pid,
/// ipc, and cgroup on a unified cgroup v2 host ([`HostFacts::cgroup_v2`]).
fn namespaces(
    network: &NetworkNamespace,
    host: &HostFacts,
) -> Result<Vec<oci_spec::runtime::LinuxNamespace>, SpecErrorKind> {
    let ns = |typ| LinuxNamespaceBuilder::default().typ(typ).build();
    let mut out = vec![ns(LinuxNamespaceType::Mount)?];
    match network {
        NetworkNamespace::Host => {}
        NetworkNamespace::New => out.push(ns(LinuxNamespaceType::Network)?),
        NetworkNamespace::Join(path) => out.push(
            LinuxNamespaceBuilder::default()
                .typ(LinuxNamespaceType::Network)
                .path(path.clone())
                .build()?,
        ),
    }
    out.push(ns(LinuxNamespaceType::Uts)?);
    out.push(ns(LinuxNamespaceType::Pid)?);
    out.push(ns(LinuxNamespaceType::Ipc)?);
    if host.cgroup_v2 {
        out.push(ns(LinuxNamespaceType::Cgroup)?);
    }
    Ok(out)
}
