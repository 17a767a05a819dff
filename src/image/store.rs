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

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};
use serde::{Deserialize, Serialize};

use super::digest::HashingReader;
use super::{platform, Digest, ImageError, Reference, Result};
use files::{copy_into, lock, unique_suffix, write_atomic, TempFile};

mod files;
mod layers;

const INDEX_FILE: &str = "index.json";
const INDEX_LOCK: &str = "index.lock";
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

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    pub layers: usize,
    pub blobs: usize,
    /// Bytes of the removed blobs plus the unpacked size of the removed layers.
    pub bytes: u64,
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

impl Store {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let store = Store { root: root.into() };
        for dir in [store.root.join("blobs/sha256"), store.root.join("layers"), store.tmp_dir()] {
            fs::create_dir_all(&dir)
                .map_err(|e| ImageError::io("cannot create store directory", &dir, e))?;
        }
        // Unpacked layers hold images' setuid binaries and device nodes: only root may reach
        // them (Docker keeps its overlay2 directory 0700 for the same reason).
        let layers = store.root.join("layers");
        fs::set_permissions(&layers, fs::Permissions::from_mode(0o700))
            .map_err(|e| ImageError::io("cannot restrict permissions of", &layers, e))?;
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
            io::ErrorKind::NotFound => ImageError::MissingBlob { digest: digest.clone() },
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
            size += self.layer_size(diff_id).unwrap_or(layer.size());
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
            let name = match Reference::parse(&name) {
                Ok(name) => name,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping a name in the image index");
                    continue;
                }
            };
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
            .map(|(layer, diff_id)| self.layer_size(diff_id).unwrap_or(layer.size()))
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

impl Store {
    /// Removes the blobs and unpacked layers that no named image references, nor any of `keep`
    /// (manifests that containers were created from: an untagged image may still be running).
    /// Whatever was written less than `grace` ago stays, since a pull may not have named its image
    /// yet, and so does a layer being unpacked right now. Names cannot change meanwhile: the
    /// index is locked throughout.
    pub fn prune(&self, keep: &[Digest], grace: Duration) -> Result<Pruned> {
        let _lock = lock(&self.root.join(INDEX_LOCK))?;
        let roots = self.read_index()?.images.into_values().chain(keep.iter().cloned());
        let (blobs, layers) = self.referenced(roots);
        let recent = |path: &Path| {
            let modified = fs::symlink_metadata(path).and_then(|m| m.modified());
            modified.map_or(true, |t| t.elapsed().map_or(true, |age| age < grace))
        };
        let mut pruned = Pruned::default();

        let layers_dir = self.root.join("layers");
        for entry in read_dir(&layers_dir)? {
            let Ok(diff_id) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                continue; // a lock file
            };
            let dir = entry.path();
            if layers.contains(&diff_id) || recent(&dir) {
                continue;
            }
            let Some(_busy) = try_lock(&layers_dir.join(format!("{}.lock", diff_id.hex()))) else {
                continue;
            };
            let size = self.layer_size(&diff_id).unwrap_or(0);
            fs::remove_dir_all(&dir).map_err(|e| ImageError::io("cannot remove layer", &dir, e))?;
            tracing::debug!(layer = %diff_id, "pruned layer");
            pruned.layers += 1;
            pruned.bytes += size;
        }

        for entry in read_dir(&self.root.join("blobs/sha256"))? {
            let Ok(digest) = Digest::from_hex(&entry.file_name().to_string_lossy()) else {
                continue;
            };
            let path = entry.path();
            if blobs.contains(&digest) || recent(&path) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(|e| ImageError::io("cannot remove blob", &path, e))?;
            tracing::debug!(%digest, "pruned blob");
            pruned.blobs += 1;
            pruned.bytes += size;
        }
        Ok(pruned)
    }

    /// The blobs and layers (by diff_id) reachable from these manifests or indexes. For an index,
    /// every platform's manifest that is in the store counts. A blob that is missing or does not
    /// parse references nothing further.
    fn referenced(
        &self,
        roots: impl Iterator<Item = Digest>,
    ) -> (BTreeSet<Digest>, BTreeSet<Digest>) {
        let (mut blobs, mut layers) = (BTreeSet::new(), BTreeSet::new());
        let mut todo: Vec<Digest> = roots.collect();
        while let Some(digest) = todo.pop() {
            if !blobs.insert(digest.clone()) {
                continue;
            }
            let Ok(bytes) = self.read_blob(&digest) else { continue };
            if let Ok(index) = ImageIndex::from_reader(&bytes[..]) {
                todo.extend(
                    index.manifests().iter().filter_map(|m| Digest::from_oci(m.digest()).ok()),
                );
                continue;
            }
            let Ok(manifest) = ImageManifest::from_reader(&bytes[..]) else { continue };
            blobs
                .extend(manifest.layers().iter().filter_map(|l| Digest::from_oci(l.digest()).ok()));
            let Ok(config_digest) = Digest::from_oci(manifest.config().digest()) else { continue };
            blobs.insert(config_digest.clone());
            if let Ok(config) = self.image_config(&config_digest) {
                layers.extend(diff_ids(&config, &config_digest).unwrap_or_default());
            }
        }
        (blobs, layers)
    }
}

fn read_dir(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    fs::read_dir(dir)
        .and_then(|entries| entries.collect())
        .map_err(|e| ImageError::io("cannot list", dir, e))
}

/// The layer's lock if nobody holds it; `None` while it is being unpacked.
fn try_lock(path: &Path) -> Option<File> {
    let file = fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).ok()?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).ok()?;
    Some(file)
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
