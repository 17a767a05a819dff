//! The container init binary (`devenv-init`, PID 1 of a service with `init: true`, the default).
//!
//! `build.rs` compiles `init_program.rs` into a static executable and this module embeds it; see
//! that file for what the init does. [`init_binary`] writes it to the host once, for the caller to
//! pass as [`SpecInput::init`](super::spec::SpecInput::init): the spec bind-mounts it read-only at
//! `/.devenv/init`, so it needs nothing from the image.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// The init executable's bytes.
pub const INIT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/devenv-init"));

/// The file name [`init_binary`] uses: content-addressed (FNV-1a of [`INIT`], computed by
/// `build.rs`), so devenv versions with different inits never overwrite each other's file while
/// a container of the other version has it mounted.
pub fn init_file_name() -> String {
    format!("devenv-init-{}", env!("DEVENV_INIT_HASH"))
}

/// Writes the init to `dir` (created if missing) unless it is there already, and returns its
/// path. The file appears whole or not at all (written to a temporary name, then renamed), with
/// mode 0755, so concurrent callers (two supervisors) are safe.
pub fn init_binary(dir: &Path) -> io::Result<PathBuf> {
    let path = dir.join(init_file_name());
    if fs::metadata(&path).is_ok_and(|m| m.len() == INIT.len() as u64) {
        return Ok(path);
    }
    fs::create_dir_all(dir)?;
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        init_file_name(),
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let write = || -> io::Result<()> {
        let mut file =
            fs::OpenOptions::new().write(true).create_new(true).mode(0o755).open(&tmp)?;
        file.write_all(INIT)?;
        // The umask may have taken bits away from `mode` above.
        file.set_permissions(fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })?;
    tracing::debug!(path = %path.display(), "wrote the container init");
    Ok(path)
}
