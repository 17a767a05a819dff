//! File helpers of the store: temp files that vanish unless renamed into place, atomic writes,
//! flock-based locks, and a reader that copies a stream to a file as it is read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::fs::FlockOperation;

use crate::image::{ImageError, Result};

/// Opens (creating) a lock file and takes an exclusive flock on it; dropping the file unlocks.
pub(super) fn lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ImageError::io("cannot open lock file", path, e))?;
    rustix::fs::flock(&file, FlockOperation::LockExclusive)
        .map_err(|e| ImageError::io("cannot lock", path, e.into()))?;
    Ok(file)
}

/// Writes a file by writing a sibling temp file and renaming it over the target.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", unique_suffix()));
    let tmp = TempFile::create(path.with_file_name(name))?;
    tmp.file()?.write_all(bytes).map_err(|e| ImageError::io("cannot write", &tmp.path, e))?;
    tmp.persist(path)
}

/// Unique per process and call, and across processes (pid), even after pid reuse (time).
pub(super) fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

pub(super) fn copy_into(reader: &mut impl Read, tmp: &TempFile) -> Result<()> {
    let mut file = tmp.file()?;
    let mut buf = vec![0; 256 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ImageError::io("cannot read blob content for", &tmp.path, e)),
        };
        file.write_all(&buf[..n]).map_err(|e| ImageError::io("cannot write", &tmp.path, e))?;
    }
}

/// A temp file removed on drop unless persisted (renamed into place).
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    persisted: bool,
}

impl TempFile {
    pub(super) fn create(path: PathBuf) -> Result<TempFile> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ImageError::io("cannot create", &path, e))?;
        Ok(TempFile { path, persisted: false })
    }

    pub(super) fn file(&self) -> Result<File> {
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| ImageError::io("cannot open", &self.path, e))
    }

    pub(super) fn persist(mut self, to: &Path) -> Result<()> {
        fs::rename(&self.path, to).map_err(|e| ImageError::io("cannot move blob into", to, e))?;
        self.persisted = true;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.persisted {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Removes a directory tree on drop (a layer that failed half-way).
pub(super) struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    pub(super) fn new(dir: PathBuf) -> Self {
        RemoveOnDrop(Some(dir))
    }

    /// The directory is complete: keep it.
    pub(super) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove failed layer");
            }
        }
    }
}

/// Copies everything read through it into a file (the blob being stored while it is unpacked).
pub(super) struct Tee<'a, R> {
    pub(super) inner: R,
    pub(super) copy: File,
    pub(super) path: &'a Path,
}

impl<R: Read> Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.copy.write_all(&buf[..n]).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot write {}: {e}", self.path.display()))
        })?;
        Ok(n)
    }
}
