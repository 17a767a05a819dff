//! The image store: everything devenv knows about images, under one root directory (the CLI
//! passes `$DEVENV_HOME/images`).
//!
//! ```text
//! <root>/blobs/sha256/<hex>          content-addressed blobs: manifests, configs, layer archives
//! <root>/layers/<diff_id hex>/rootfs the layer unpacked (an overlayfs lower directory)
//! <root>/layers/<diff_id hex>/complete  marker written last: {"diff_id", "blob", "size"}
//! <root>/layers/<diff_id hex>.lock   flock held while that layer is unpacked
//! <root>/index.json                  image names -> manifest digest, replaced atomically
//! <root>/index.lock                  flock held while index.json is modified
//! <root>/tmp/                        blobs and files being written (same filesystem, for rename)
//! ```
//!
//! Blobs are written to a temp file while their SHA-256 is computed and renamed into place only
//! if it matches, so a blob file is always what its name says. A layer directory counts only once
//! its marker exists; one without it (an interrupted unpack) is removed and unpacked again. Renames
//! are not followed by fsync: after a power loss a blob or layer may be missing, never wrong-named,
//! and a missing one is simply fetched or unpacked again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest, MediaType};
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::digest::HashingReader;
use super::unpack::{unpack_layer, UnpackStats};
use super::{platform, Digest, ImageError, Reference, Result};

const INDEX_FILE: &str = "index.json";
const INDEX_LOCK: &str = "index.lock";
const LAYER_ROOTFS: &str = "rootfs";
const LAYER_MARKER: &str = "complete";
/// Manifests, indexes and configs are read into memory; anything bigger is not one.
const MAX_JSON_BLOB: u64 = 16 << 20;
/// Temp files older than this are from a process that died.
const STALE_TMP: Duration = Duration::from_secs(24 * 3600);

/// An image store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// A stored image, ready to run: its layers are unpacked.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    pub reference: Reference,
    /// The image manifest (for a multi-platform image, the host platform's one).
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfiguration,
    /// Unpacked layer directories, lowest first (overlayfs wants them in the opposite order).
    pub layers: Vec<PathBuf>,
    /// Bytes of file content in all layers.
    pub size: u64,
}

/// One line of `devenv images`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageSummary {
    pub name: Reference,
    pub digest: Digest,
    /// Unpacked size of the layers (the compressed size for a layer not unpacked yet).
    pub size: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    images: BTreeMap<String, Digest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LayerMarker {
    diff_id: Digest,
    blob: Digest,
    size: u64,
}

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.root.join("blobs/sha256"), store.root.join("layers"), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(|e| ImageError::io("cannot create store directory", &dir, e))?;
        }
        store.sweep_tmp();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// A fresh name in the store's temp directory.
    fn temp_path(&self, prefix: &str) -> PathBuf {
        self.tmp_dir().join(format!("{prefix}-{}", unique_suffix()))
    }

    /// Removes temp files a crashed process left behind. Only old ones: a younger one may be a
    /// blob another process is writing right now.
    fn sweep_tmp(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else { return };
        let Some(cutoff) = SystemTime::now().checked_sub(STALE_TMP) else { return };
        for entry in entries.flatten() {
            let old = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < cutoff);
            if old {
                tracing::debug!(path = %entry.path().display(), "removing stale temp file");
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Where the blob with this digest is (or would be).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Streams a blob into the store, hashing it on the way. With `expected`, content whose digest
    /// differs is discarded and the store is unchanged; a blob already present is not read again
    /// (the reader is left as it is).
    pub fn put_blob(&self, expected: Option<&Digest>, reader: impl Read) -> Result<Digest> {
        if let Some(d) = expected {
            if self.has_blob(d) {
                tracing::debug!(digest = %d, "blob already in the store");
                return Ok(d.clone());
            }
        }
        let tmp = TempFile::create(self.temp_path("blob"))?;
        let mut hashing = HashingReader::new(reader);
        copy_into(&mut hashing, &tmp)?;
        let (digest, len) =
            hashing.finish().map_err(|e| ImageError::io("cannot read blob for", &tmp.path, e))?;
        if let Some(expected) = expected {
            if *expected != digest {
                return Err(ImageError::DigestMismatch {
                    what: format!("blob {expected}"),
                    expected: expected.clone(),
                    actual: digest,
                });
            }
        }
        tmp.persist(&self.blob_path(&digest))?;
        tracing::debug!(%digest, len, "stored blob");
        Ok(digest)
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                ImageError::MissingBlob { digest: digest.clone(), what: "blob".into() }
            }
            _ => ImageError::io("cannot open blob", path, e),
        })
    }

    /// Reads a small (JSON) blob into memory.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(MAX_JSON_BLOB + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| ImageError::io("cannot read blob", &path, e))?;
        if bytes.len() as u64 > MAX_JSON_BLOB {
            return Err(ImageError::invalid(
                format!("blob {digest}"),
                format!("larger than {MAX_JSON_BLOB} bytes; not a manifest or config"),
            ));
        }
        Ok(bytes)
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// The unpacked tree of a layer (complete or not).
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join(LAYER_ROOTFS)
    }

    /// Whether the layer is unpacked completely.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_marker(diff_id).is_some()
    }

    /// Bytes of file content in an unpacked layer.
    pub(crate) fn layer_size(&self, diff_id: &Digest) -> Option<u64> {
        self.layer_marker(diff_id).map(|m| m.size)
    }

    fn layer_marker(&self, diff_id: &Digest) -> Option<LayerMarker> {
        let bytes = fs::read(self.layer_dir(diff_id).join(LAYER_MARKER)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Makes sure the layer with this `diff_id` is unpacked, from the stored blob `blob`, and
    /// returns its directory. The uncompressed content must hash to `diff_id`.
    pub fn ensure_layer(
        &self,
        diff_id: &Digest,
        blob: &Digest,
        media_type: &MediaType,
    ) -> Result<PathBuf> {
        check_layer_media_type(media_type)?;
        if self.has_layer(diff_id) {
            return Ok(self.layer_path(diff_id));
        }
        let _lock = self.lock_layer(diff_id)?;
        if self.has_layer(diff_id) {
            return Ok(self.layer_path(diff_id));
        }
        let file = self.open_blob(blob)?;
        self.build_layer(diff_id, blob, |rootfs| unpack_layer(BufReader::new(file), rootfs))?;
        Ok(self.layer_path(diff_id))
    }

    /// The streaming way in for a layer (what a registry pull uses): the compressed stream is
    /// written to the blob store and unpacked at the same time, and both are kept only if the
    /// blob hashes to `blob` and its content to `diff_id`. A layer already unpacked is not
    /// unpacked again; its blob is still stored if missing.
    pub fn ingest_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        media_type: &MediaType,
        reader: impl Read,
    ) -> Result<PathBuf> {
        check_layer_media_type(media_type)?;
        let _lock = self.lock_layer(diff_id)?;
        if self.has_layer(diff_id) {
            self.put_blob(Some(blob), reader)?;
            return Ok(self.layer_path(diff_id));
        }
        let tmp = TempFile::create(self.temp_path("blob"))?;
        let file = tmp.file()?;
        let hashing = HashingReader::new(Tee { inner: reader, copy: file, path: &tmp.path });
        self.build_layer(diff_id, blob, move |rootfs| {
            let mut hashing = hashing;
            let stats = unpack_layer(&mut hashing, rootfs)?;
            // The whole blob must be read (compressed streams can have bytes after their end)
            // and verified before the layer is marked complete.
            let (actual, _) = hashing
                .finish()
                .map_err(|e| ImageError::io("cannot read layer blob for", rootfs, e))?;
            if actual != *blob {
                return Err(ImageError::DigestMismatch {
                    what: format!("layer blob {blob}"),
                    expected: blob.clone(),
                    actual,
                });
            }
            Ok(stats)
        })?;
        tmp.persist(&self.blob_path(blob))?;
        Ok(self.layer_path(diff_id))
    }

    /// Unpacks into a fresh layer directory (removing an incomplete one), verifies the diff_id and
    /// writes the marker; on any error the directory is removed. The caller holds the layer lock.
    fn build_layer(
        &self,
        diff_id: &Digest,
        blob: &Digest,
        unpack: impl FnOnce(&Path) -> Result<UnpackStats>,
    ) -> Result<()> {
        let dir = self.layer_dir(diff_id);
        if dir.exists() {
            tracing::debug!(layer = %diff_id, "removing incomplete layer directory");
            fs::remove_dir_all(&dir)
                .map_err(|e| ImageError::io("cannot remove incomplete layer", &dir, e))?;
        }
        let guard = RemoveOnDrop(Some(dir.clone()));
        let rootfs = dir.join(LAYER_ROOTFS);
        fs::create_dir_all(&rootfs)
            .map_err(|e| ImageError::io("cannot create layer directory", &rootfs, e))?;
        // Entry errors get the layer as context; a blob mismatch already names the blob.
        let wrap = |e| match e {
            e @ ImageError::DigestMismatch { .. } => e,
            e => ImageError::Layer { diff_id: diff_id.clone(), source: Box::new(e) },
        };
        let stats = unpack(&rootfs).map_err(wrap)?;
        if stats.diff_id != *diff_id {
            return Err(ImageError::DiffIdMismatch {
                blob: blob.clone(),
                expected: diff_id.clone(),
                actual: stats.diff_id,
            });
        }
        let marker = LayerMarker { diff_id: diff_id.clone(), blob: blob.clone(), size: stats.size };
        let json =
            serde_json::to_vec(&marker).map_err(|e| ImageError::invalid("layer marker", e))?;
        write_atomic(&dir.join(LAYER_MARKER), &json)?;
        std::mem::forget(guard);
        tracing::debug!(layer = %diff_id, %blob, size = stats.size, "layer unpacked");
        Ok(())
    }

    fn lock_layer(&self, diff_id: &Digest) -> Result<File> {
        lock(&self.root.join("layers").join(format!("{}.lock", diff_id.hex())))
    }

    /// Reads a manifest blob; for an index (a multi-platform image), follows the host platform's
    /// entry. Returns the image manifest's own digest with it.
    pub fn image_manifest(&self, digest: &Digest) -> Result<(Digest, ImageManifest)> {
        let mut digest = digest.clone();
        for _ in 0..4 {
            let bytes = self.read_blob(&digest)?;
            let what = || format!("manifest {digest}");
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| ImageError::invalid(what(), e))?;
            if value.get("manifests").is_some() {
                let index = ImageIndex::from_reader(&bytes[..])
                    .map_err(|e| ImageError::invalid(what(), e))?;
                let chosen = platform::select(index.manifests(), &platform::host(), &what())?;
                digest = Digest::from_oci(chosen.digest())?;
                continue;
            }
            let manifest = ImageManifest::from_reader(&bytes[..])
                .map_err(|e| ImageError::invalid(what(), e))?;
            return Ok((digest, manifest));
        }
        Err(ImageError::invalid(format!("manifest {digest}"), "indexes nested too deeply"))
    }

    /// Reads and parses an image config blob.
    pub fn image_config(&self, digest: &Digest) -> Result<ImageConfiguration> {
        let bytes = self.read_blob(digest)?;
        ImageConfiguration::from_reader(&bytes[..])
            .map_err(|e| ImageError::invalid(format!("image config {digest}"), e))
    }

    /// Names an image: `name` now points at the manifest (or index) `manifest`.
    pub fn tag(&self, name: &Reference, manifest: &Digest) -> Result<()> {
        self.image_manifest(manifest)?;
        self.modify_index(|index| {
            index.images.insert(name.to_string(), manifest.clone());
            Ok(())
        })?;
        tracing::debug!(%name, %manifest, "tagged");
        Ok(())
    }

    /// Removes a name. The blobs and layers stay until pruned (other images may share them).
    pub fn remove(&self, name: &Reference) -> Result<Digest> {
        self.modify_index(|index| {
            index
                .images
                .remove(&name.to_string())
                .ok_or_else(|| ImageError::NotFound(name.familiar()))
        })
    }

    /// The image a name points at, with its layers unpacked (unpacking any that are missing).
    /// `None` when the store has no such name. A reference pinned by digest also finds an image
    /// stored under another name.
    pub fn resolve(&self, name: &Reference) -> Result<Option<ImageInfo>> {
        let index = self.read_index()?;
        let digest = match (index.images.get(&name.to_string()), name.digest()) {
            (Some(d), _) => d.clone(),
            (None, Some(d)) if self.has_blob(d) => d.clone(),
            _ => return Ok(None),
        };
        let (manifest_digest, manifest) = self.image_manifest(&digest)?;
        let config_digest = Digest::from_oci(manifest.config().digest())?;
        let config = self.image_config(&config_digest)?;
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(ImageError::invalid(
                format!("image {manifest_digest}"),
                format!(
                    "the manifest has {} layers but the config lists {} diff_ids",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        let mut size = 0;
        for (layer, diff_id) in manifest.layers().iter().zip(&diff_ids) {
            let blob = Digest::from_oci(layer.digest())?;
            layers.push(self.ensure_layer(diff_id, &blob, layer.media_type())?);
            size += self.layer_marker(diff_id).map_or(layer.size(), |m| m.size);
        }
        Ok(Some(ImageInfo {
            reference: name.clone(),
            manifest_digest,
            config_digest,
            config,
            layers,
            size,
        }))
    }

    /// Every named image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        let index = self.read_index()?;
        let mut out = Vec::with_capacity(index.images.len());
        for (name, digest) in index.images {
            let name = Reference::parse(&name)?;
            let size = self.image_size(&digest).unwrap_or_else(|e| {
                tracing::warn!(%name, error = %e, "cannot read image");
                0
            });
            out.push(ImageSummary { name, digest, size });
        }
        Ok(out)
    }

    /// Unpacked size of an image's layers, from their markers; a layer not unpacked counts with
    /// its compressed size.
    fn image_size(&self, digest: &Digest) -> Result<u64> {
        let (_, manifest) = self.image_manifest(digest)?;
        let config_digest = Digest::from_oci(manifest.config().digest())?;
        let diff_ids = diff_ids(&self.image_config(&config_digest)?, &config_digest)?;
        Ok(manifest
            .layers()
            .iter()
            .zip(&diff_ids)
            .map(|(layer, diff_id)| self.layer_marker(diff_id).map_or(layer.size(), |m| m.size))
            .sum())
    }

    fn read_index(&self) -> Result<IndexFile> {
        let path = self.root.join(INDEX_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(format!("image index {}", path.display()), e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexFile::default()),
            Err(e) => Err(ImageError::io("cannot read image index", path, e)),
        }
    }

    /// Read-modify-write of the index under an exclusive flock, so parallel devenv processes do
    /// not lose each other's updates; the file itself is replaced by rename, so readers (which do
    /// not lock) always see a whole one.
    fn modify_index<T>(&self, f: impl FnOnce(&mut IndexFile) -> Result<T>) -> Result<T> {
        let _lock = lock(&self.root.join(INDEX_LOCK))?;
        let mut index = self.read_index()?;
        let out = f(&mut index)?;
        let json =
            serde_json::to_vec_pretty(&index).map_err(|e| ImageError::invalid("image index", e))?;
        write_atomic(&self.root.join(INDEX_FILE), &json)?;
        Ok(out)
    }
}

/// The config's diff_ids as digests.
pub(crate) fn diff_ids(config: &ImageConfiguration, config_digest: &Digest) -> Result<Vec<Digest>> {
    config
        .rootfs()
        .diff_ids()
        .iter()
        .map(|d| {
            d.parse().map_err(|e| {
                ImageError::invalid(
                    format!("image config {config_digest}"),
                    format!("diff_id: {e}"),
                )
            })
        })
        .collect()
}

/// Layers are tar archives, plain, gzip or zstd, in OCI or Docker media types. Anything else (an
/// attestation, a Helm chart) is not something to unpack into a root filesystem.
fn check_layer_media_type(media_type: &MediaType) -> Result<()> {
    match media_type {
        MediaType::ImageLayer
        | MediaType::ImageLayerGzip
        | MediaType::ImageLayerZstd
        | MediaType::ImageLayerNonDistributable
        | MediaType::ImageLayerNonDistributableGzip
        | MediaType::ImageLayerNonDistributableZstd => Ok(()),
        MediaType::Other(s) if s.starts_with("application/vnd.docker.image.rootfs.") => Ok(()),
        other => Err(ImageError::UnsupportedMediaType {
            what: "a layer".into(),
            media_type: other.to_string(),
        }),
    }
}

/// Opens (creating) a lock file and takes an exclusive flock on it; dropping the file unlocks.
fn lock(path: &Path) -> Result<File> {
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
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", unique_suffix()));
    let tmp = TempFile::create(path.with_file_name(name))?;
    tmp.file()?.write_all(bytes).map_err(|e| ImageError::io("cannot write", &tmp.path, e))?;
    tmp.persist(path)
}

/// Unique per process and call, and across processes (pid), even after pid reuse (time).
fn unique_suffix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{}-{n}-{nanos}", std::process::id())
}

fn copy_into(reader: &mut impl Read, tmp: &TempFile) -> Result<()> {
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
struct TempFile {
    path: PathBuf,
    persisted: bool,
}

impl TempFile {
    fn create(path: PathBuf) -> Result<TempFile> {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| ImageError::io("cannot create", &path, e))?;
        Ok(TempFile { path, persisted: false })
    }

    fn file(&self) -> Result<File> {
        OpenOptions::new()
            .append(true)
            .open(&self.path)
            .map_err(|e| ImageError::io("cannot open", &self.path, e))
    }

    fn persist(mut self, to: &Path) -> Result<()> {
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
struct RemoveOnDrop(Option<PathBuf>);

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
struct Tee<'a, R> {
    inner: R,
    copy: File,
    path: &'a Path,
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
