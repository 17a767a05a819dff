//! Running containers on devenv's own engine: everything between "a service and its image
//! layers" and "a process runs in a container".
//!
//! - [`spec`]: the OCI runtime spec (`config.json`) of a service's container, with Docker's
//!   default hardening.
//! - [`rootfs`]: the overlayfs root file system over the image's layers.
//! - [`init`]: the static init binary (PID 1 with `init: true`) embedded in devenv.
//! - [`driver`]: the [`Runtime`] trait, its errors, the bundle and cgroup path, and how the
//!   supervisor learns of a container's exit (read its docs before using a runtime).
//! - [`youki`] (libcontainer, through the single-threaded [`helper`] process) and [`runc`]
//!   (Debian's binary): the two implementations.
//! - [`netns`]: bring `lo` up in a new network namespace between create and start.
//! - [`oom`]: whether the OOM killer killed a process of a container (read before delete).
//! - [`exec`] and [`cp`]: run a command in, and copy files into and out of, a running container.
//!
//! A container's life, as the supervisor drives it (every call blocking, from `spawn_blocking`):
//!
//! ```text
//! set_child_subreaper()                      once per supervisor process
//! rootfs::mount_overlay(layers, upper, work, rootfs)
//! spec::build_spec(input with init_binary(dir)) -> write_bundle(bundle, spec, cgroups_path(..))
//! pid = runtime.create(id, bundle, stdio)    the init waits in its namespaces
//! netns::loopback_up(pid)                    for a new network namespace
//! runtime.start(id)
//! wait_exit(pid)                             exit code, 128 + signal when killed
//! oom_killed(cgroups_path(..))               before delete, which removes the cgroup
//! runtime.delete(id, force); rootfs::unmount(rootfs); remove_project_cgroups(project) on down
//! ```

pub mod cp;
pub mod driver;
pub mod exec;
pub mod helper;
pub mod init;
pub mod netns;
pub mod oom;
pub mod rootfs;
pub mod runc;
pub mod spec;
pub mod user;
pub mod youki;

pub use driver::{
    cgroups_path, remove_project_cgroups, set_child_subreaper, try_wait_exit, wait_exit,
    write_bundle, ContainerState, ContainerStatus, Runtime, RuntimeError, Signal, Stdio,
};
pub use init::init_binary;
pub use oom::oom_killed;
pub use runc::Runc;
pub use youki::Youki;
