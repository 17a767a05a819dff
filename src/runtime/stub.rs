//! Placeholder for the runtime driver being merged; every operation fails plainly.
#![allow(missing_docs)]
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("the container runtime is not available in this build")]
pub struct RuntimeError;

pub struct Stdio {
    pub stdin: Option<OwnedFd>,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

pub trait Runtime: Send + Sync {
    fn create(&self, id: &str, bundle: &Path, stdio: Stdio) -> Result<i32, RuntimeError>;
    fn start(&self, id: &str) -> Result<(), RuntimeError>;
    fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError>;
}

pub struct Youki;
impl Youki {
    pub fn new(_: PathBuf, _: PathBuf) -> Youki {
        Youki
    }
}
impl Runtime for Youki {
    fn create(&self, _: &str, _: &Path, _: Stdio) -> Result<i32, RuntimeError> {
        Err(RuntimeError)
    }
    fn start(&self, _: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError)
    }
    fn delete(&self, _: &str, _: bool) -> Result<(), RuntimeError> {
        Ok(())
    }
}
pub mod rootfs {
    use super::RuntimeError;
    use std::path::{Path, PathBuf};
    pub fn mount_overlay(_: &[PathBuf], _: &Path, _: &Path, _: &Path) -> Result<(), RuntimeError> {
        Err(RuntimeError)
    }
    pub fn unmount(_: &Path) -> Result<(), RuntimeError> {
        Ok(())
    }
}
pub mod netns {
    pub fn loopback_up(_: i32) -> Result<(), super::RuntimeError> {
        Err(super::RuntimeError)
    }
}
pub mod init {
    pub fn init_binary(dir: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
        Ok(dir.join("init"))
    }
}
pub mod youki {
    pub use super::Youki;
}
