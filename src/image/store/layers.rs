//! Layers in the store: each unpacked once into `layers/<diff_id hex>/rootfs`, complete only once
//! its marker is written, built under a per-layer flock so parallel processes unpacking the same
//! layer wait for each other instead of racing.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::MediaType;
use serde::{Deserialize, Serialize};

use super::files::{lock, write_atomic, RemoveOnDrop, Tee, TempFile};
use super::Store;
use crate::image::digest::HashingReader;
use crate::image::unpack::{unpack_layer, UnpackStats};
use crate::image::{Digest, ImageError, Result};

const LAYER_ROOTFS: &str = "rootfs";
const LAYER_MARKER: &str = "complete";

/// Written last into a layer directory: its presence means the tree is complete.
#[derive(Debug, Serialize, Deserialize)]
struct LayerMarker {
    diff_id: Digest,
    blob: Digest,
    size: u64,
}

impl Store {
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
        let guard = RemoveOnDrop::new(dir.clone());
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
        guard.keep();
        tracing::debug!(layer = %diff_id, %blob, size = stats.size, "layer unpacked");
        Ok(())
    }

    fn lock_layer(&self, diff_id: &Digest) -> Result<File> {
        lock(&self.root.join("layers").join(format!("{}.lock", diff_id.hex())))
    }
}

/// Layers are tar archives, plain, gzip or zstd, in OCI or Docker media types. Anything else (an
/// attestation, a Helm chart) is not something to unpack into a root filesystem.
pub(super) fn check_layer_media_type(media_type: &MediaType) -> Result<()> {
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
