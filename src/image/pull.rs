//! `devenv pull`: images from OCI registries into the store.
//!
//! For each image: the manifest (or index, resolved to the host's platform) is fetched and its
//! digest checked (against the pinned one, and against `Docker-Content-Digest`), the config is
//! stored, and the layers the store lacks download in parallel (3 at a time per image), each
//! streamed straight into [`Store::ingest_layer`] on a thread of its own: download, decompress,
//! untar and both digest checks overlap, and nothing is kept unless it all verifies. A broken
//! connection resumes with a `Range` request (or restarts the blob if the server ignores ranges).
//! Last, the image is tagged under the reference as written.
//!
//! Threads: a current-thread tokio runtime made here drives all HTTP; unpacking runs on scoped
//! std threads. All are joined before [`pull`] returns (the scope joins the unpackers, dropping
//! the runtime joins its blocking pool), so the caller may `fork()` afterwards.

// A PullError carries the full reference in every variant and is built at most once per image:
// its size costs nothing measurable, boxing it would only make it clumsier to match.
#![allow(clippy::result_large_err)]

use std::thread::Scope;

use futures_util::stream::{self, TryStreamExt};
use oci_spec::image::{ImageConfiguration, ImageIndex};

use super::store::diff_ids;
use super::{platform, Digest, ImageError, ImageInfo, Reference, Store};
use crate::registry::client::OnRetry;
use crate::registry::endpoint::{endpoints, Endpoint};
use crate::registry::{Client, RegistryConfig, RegistryError};
use manifest::{is_index, parse_manifest, verify_manifest};

mod layer;
use layer::Layer;
mod manifest;

/// Layers of one image downloading at once.
pub const LAYER_CONCURRENCY: usize = 3;

/// What a pull reports as it goes. Every method has an empty default.
pub trait PullProgress: Send + Sync {
    fn resolved(&self, _image: &Reference, _manifest: &Digest, _layers: &[(Digest, u64)]) {}
    /// Already in the store, not fetched.
    fn layer_cached(&self, _image: &Reference, _layer: &Digest) {}
    /// More bytes downloaded (a delta).
    fn layer_bytes(&self, _image: &Reference, _layer: &Digest, _bytes: u64) {}
    /// Downloaded, verified, unpacked.
    fn layer_done(&self, _image: &Reference, _layer: &Digest) {}
    fn retry(&self, _image: &Reference, _what: &str, _attempt: u32, _error: &str) {}
    fn done(&self, _image: &Reference, _info: &ImageInfo) {}
}

/// Reports nothing.
pub struct NoProgress;
impl PullProgress for NoProgress {}

/// Why a pull failed. Every message names the full reference.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The registry has no such repository, tag or digest.
    #[error("image {reference} not found: {source}")]
    NotFound {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },

    /// Wrong or missing credentials.
    #[error("cannot pull {reference}: {source}")]
    Unauthorized {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },

    /// Any other registry failure: down, 5xx after retries, broken connections, bad answers.
    #[error("cannot pull {reference}: {source}")]
    Registry {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },

    /// The manifest served is not the one the reference pins (or the registry says it is).
    #[error("cannot pull {reference}: the registry served a manifest with digest {actual}, expected {expected}")]
    ManifestDigest { reference: Reference, expected: Digest, actual: Digest },

    /// Storing, verifying or unpacking failed (a blob digest mismatch names the blob).
    #[error("cannot pull {reference}: {source}")]
    Store {
        reference: Reference,
        #[source]
        source: Box<ImageError>,
    },

    /// A manifest devenv cannot use (schema 1, an artifact, no entry for this platform...).
    #[error("cannot pull {reference}: {reason}")]
    Unsupported { reference: Reference, reason: String },

    #[error("cannot pull {reference}: cannot start the network runtime: {reason}")]
    Runtime { reference: Reference, reason: String },
}

impl PullError {
    pub fn reference(&self) -> &Reference {
        match self {
            PullError::NotFound { reference, .. }
            | PullError::Unauthorized { reference, .. }
            | PullError::Registry { reference, .. }
            | PullError::ManifestDigest { reference, .. }
            | PullError::Store { reference, .. }
            | PullError::Unsupported { reference, .. }
            | PullError::Runtime { reference, .. } => reference,
        }
    }

    fn registry(reference: &Reference, source: RegistryError) -> PullError {
        let reference = reference.clone();
        match source {
            e @ RegistryError::NotFound { .. } => {
                PullError::NotFound { reference, source: Box::new(e) }
            }
            e @ RegistryError::Unauthorized { .. } => {
                PullError::Unauthorized { reference, source: Box::new(e) }
            }
            e => PullError::Registry { reference, source: Box::new(e) },
        }
    }

    fn store(reference: &Reference, source: ImageError) -> PullError {
        match source {
            ImageError::NoMatchingPlatform { .. } | ImageError::UnsupportedMediaType { .. } => {
                PullError::Unsupported { reference: reference.clone(), reason: source.to_string() }
            }
            source => PullError::Store { reference: reference.clone(), source: Box::new(source) },
        }
    }
}

/// Pulls every reference (images in parallel, layers in parallel), verifies, unpacks, tags them
/// in the store under the reference as written (normalized). Runs on a tokio runtime of its own
/// and joins every thread it started before returning, so a caller may fork() afterwards (`up -d`
/// forks its supervisor after pulling). Results in input order.
pub fn pull(
    store: &Store,
    images: &[Reference],
    config: &RegistryConfig,
    progress: &dyn PullProgress,
) -> Vec<Result<ImageInfo, PullError>> {
    let fail_all = |reason: String| {
        images
            .iter()
            .map(|r| Err(PullError::Runtime { reference: r.clone(), reason: reason.clone() }))
            .collect()
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => return fail_all(e.to_string()),
    };
    let client = match Client::new(config) {
        Ok(c) => c,
        Err(e) => return fail_all(e.to_string()),
    };
    let results = std::thread::scope(|scope| {
        let puller = Puller { scope, store, client: &client, config, progress };
        runtime.block_on(futures_util::future::join_all(images.iter().map(|r| puller.image(r))))
    });
    drop(client);
    // Waits for the blocking pool (DNS lookups) to finish: no thread outlives the pull.
    drop(runtime);
    results
}

struct Puller<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    store: &'env Store,
    client: &'env Client,
    config: &'env RegistryConfig,
    progress: &'env dyn PullProgress,
}

impl<'scope, 'env> Puller<'scope, 'env> {
    async fn image(&self, reference: &Reference) -> Result<ImageInfo, PullError> {
        let eps = endpoints(reference.domain(), self.config);
        let last = eps.len() - 1;
        for (i, ep) in eps.iter().enumerate() {
            match self.pull_from(reference, ep).await {
                Ok(info) => {
                    self.progress.done(reference, &info);
                    return Ok(info);
                }
                Err(e) if ep.mirror && i < last && falls_through(&e) => {
                    tracing::debug!(mirror = %ep.base, error = %e, "mirror failed, trying the next");
                    self.progress.retry(
                        reference,
                        &format!("mirror {}", ep.base),
                        1,
                        &e.to_string(),
                    );
                }
                Err(e) => return Err(e),
            }
        }
        unreachable!("the last endpoint returns")
    }

    async fn pull_from(
        &self,
        reference: &Reference,
        ep: &Endpoint,
    ) -> Result<ImageInfo, PullError> {
        let repo = reference.path();
        let on_retry = |what: &str, attempt: u32, error: &str| {
            self.progress.retry(reference, what, attempt, error)
        };
        let on_retry: OnRetry<'_> = &on_retry;
        let reg = |e| PullError::registry(reference, e);
        let st = |e| PullError::store(reference, e);

        // The manifest, or the index and the host platform's manifest from it.
        let wanted = match (reference.digest(), reference.tag()) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        };
        let top = self.client.manifest(ep, repo, &wanted, on_retry).await.map_err(reg)?;
        let top_digest = verify_manifest(reference, &top, reference.digest())?;
        let (manifest_digest, manifest_bytes) = if is_index(&top.bytes, top.content_type.as_deref())
        {
            let index = ImageIndex::from_reader(&top.bytes[..])
                .map_err(|e| st(ImageError::invalid(format!("image index {top_digest}"), e)))?;
            let chosen = platform::select(
                index.manifests(),
                &platform::host(),
                &format!("image index {top_digest}"),
            )
            .map_err(st)?;
            let digest = Digest::from_oci(chosen.digest()).map_err(st)?;
            let inner =
                self.client.manifest(ep, repo, &digest.to_string(), on_retry).await.map_err(reg)?;
            verify_manifest(reference, &inner, Some(&digest))?;
            if is_index(&inner.bytes, inner.content_type.as_deref()) {
                return Err(PullError::Unsupported {
                    reference: reference.clone(),
                    reason: format!("image index {top_digest} points at another index"),
                });
            }
            (digest, inner.bytes)
        } else {
            (top_digest.clone(), top.bytes.clone())
        };
        let manifest = parse_manifest(reference, &manifest_digest, &manifest_bytes)?;

        // The config, then the layers with their diff_ids.
        // Checked here but stored only with the manifest, once every layer is in: a failed pull
        // leaves no blob behind.
        let config_digest = Digest::from_oci(manifest.config().digest()).map_err(st)?;
        let (config, config_bytes) = if self.store.has_blob(&config_digest) {
            (self.store.image_config(&config_digest).map_err(st)?, None)
        } else {
            let bytes =
                self.client.small_blob(ep, repo, &config_digest, on_retry).await.map_err(reg)?;
            let actual = Digest::of(&bytes);
            if actual != config_digest {
                return Err(st(ImageError::DigestMismatch {
                    what: format!("blob {config_digest}"),
                    expected: config_digest,
                    actual,
                }));
            }
            let config = ImageConfiguration::from_reader(&bytes[..])
                .map_err(|e| st(ImageError::invalid(format!("image config {config_digest}"), e)))?;
            (config, Some(bytes))
        };
        let diff_ids = diff_ids(&config, &config_digest).map_err(st)?;
        if diff_ids.len() != manifest.layers().len() {
            return Err(st(ImageError::invalid(
                format!("image {manifest_digest}"),
                format!(
                    "{} layers but {} diff_ids in its config",
                    manifest.layers().len(),
                    diff_ids.len()
                ),
            )));
        }
        let layers = manifest
            .layers()
            .iter()
            .zip(diff_ids)
            .map(|(l, diff_id)| {
                Ok(Layer {
                    blob: Digest::from_oci(l.digest())?,
                    diff_id,
                    media_type: l.media_type().clone(),
                    size: l.size(),
                })
            })
            .collect::<Result<Vec<_>, ImageError>>()
            .map_err(st)?;
        let sizes: Vec<(Digest, u64)> = layers.iter().map(|l| (l.blob.clone(), l.size)).collect();
        self.progress.resolved(reference, &manifest_digest, &sizes);

        stream::iter(layers.iter().map(Ok))
            .try_for_each_concurrent(LAYER_CONCURRENCY, |layer| {
                self.layer(reference, ep, layer, on_retry)
            })
            .await?;

        if let Some(bytes) = config_bytes {
            self.store.put_blob(Some(&config_digest), &bytes[..]).map_err(st)?;
        }
        self.store.put_blob(Some(&manifest_digest), &manifest_bytes[..]).map_err(st)?;
        if top_digest != manifest_digest {
            // The index, last: a name pinned to its digest resolves only once all is there.
            self.store.put_blob(Some(&top_digest), &top.bytes[..]).map_err(st)?;
        }
        self.store.tag(reference, &top_digest).map_err(st)?;
        match self.store.resolve(reference).map_err(st)? {
            Some(info) => Ok(info),
            None => Err(st(ImageError::NotFound(reference.to_string()))),
        }
    }
}

fn is_mismatch(e: &ImageError) -> bool {
    matches!(e, ImageError::DigestMismatch { .. } | ImageError::DiffIdMismatch { .. })
}

/// Whether a failure at a mirror should move on to the next endpoint: any registry failure or
/// bad content, but not a local one (disk full) that the next endpoint would hit too.
fn falls_through(e: &PullError) -> bool {
    match e {
        PullError::Store { source, .. } => {
            matches!(
                **source,
                ImageError::DigestMismatch { .. }
                    | ImageError::DiffIdMismatch { .. }
                    | ImageError::Invalid { .. }
            )
        }
        PullError::Runtime { .. } => false,
        _ => true,
    }
}
