//! Running containers on devenv's own engine.
//!
//! For now this holds [`spec`]: the OCI runtime spec (`config.json`) built from a service and its
//! image, with the hardening Docker applies by default. The rootfs (overlayfs), the helper that
//! drives libcontainer, init, `exec` and `cp` come next, each in its own module.

pub mod cp;
pub mod exec;
pub mod spec;
mod stub;
pub use stub::{init, netns, rootfs, youki, Runtime, RuntimeError, Stdio};
