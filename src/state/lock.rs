//! One `up` or `down` at a time per project: an exclusive `flock` on the project's lock file.
//! The holder writes its pid and command next to it so a waiting command can say whom it waits
//! for. The kernel drops the lock when the holder dies, so a crash never leaves it stuck.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("cannot open lock file {}: {source}", path.display())]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot lock {}: {source}", path.display())]
    Lock { path: PathBuf, source: nix::Error },
}

/// Held until dropped.
#[derive(Debug)]
pub struct ProjectLock {
    _lock: Flock<File>,
}

impl ProjectLock {
    /// Takes the lock in `dir`, calling `waiting` with the holder's description if another
    /// process has it, then blocking until it is released.
    pub fn acquire(
        dir: &Path,
        what: &str,
        waiting: impl FnOnce(&str),
    ) -> Result<ProjectLock, LockError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| LockError::Open { path: dir.into(), source })?;
        let path = dir.join("lock");
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|source| LockError::Open { path: path.clone(), source })
        };
        let lock = match Flock::lock(open()?, FlockArg::LockExclusiveNonblock) {
            Ok(l) => l,
            Err((file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = (&file).read_to_string(&mut holder);
                let holder = holder.trim();
                waiting(if holder.is_empty() { "another devenv command" } else { holder });
                Flock::lock(file, FlockArg::LockExclusive)
                    .map_err(|(_, source)| LockError::Lock { path: path.clone(), source })?
            }
            Err((_, source)) => return Err(LockError::Lock { path, source }),
        };
        // Whom a later command waits for. Best effort: the lock itself is what matters.
        let mut f: &File = &lock;
        let _ = f
            .set_len(0)
            .and_then(|()| f.rewind())
            .and_then(|()| write!(f, "`devenv {what}` (pid {})", std::process::id()));
        Ok(ProjectLock { _lock: lock })
    }
}
