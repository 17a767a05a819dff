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
use oci_spec::image::{ImageConfiguration, ImageIndex, MediaType};
use tokio::sync::oneshot;

use super::digest::HashingReader;
use super::store::diff_ids;
use super::{platform, Digest, ImageError, ImageInfo, Reference, Store};
use crate::registry::client::{content_range_start, OnRetry};
use crate::registry::endpoint::{endpoints, Endpoint};
use crate::registry::retry::{self, Class};
use crate::registry::stream::{self as bridge, Msg};
use crate::registry::{Client, RegistryConfig, RegistryError};
use manifest::{is_index, parse_manifest, verify_manifest};

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

/// One layer to fetch: its blob, its diff_id, its media type and size.
#[derive(Clone)]
struct Layer {
    blob: Digest,
    diff_id: Digest,
    media_type: MediaType,
    size: u64,
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

    /// Makes sure one layer is unpacked: from the store if it is there, else downloaded.
    async fn layer(
        &self,
        reference: &Reference,
        ep: &Endpoint,
        layer: &Layer,
        on_retry: OnRetry<'_>,
    ) -> Result<(), PullError> {
        let st = |e| PullError::store(reference, e);
        if self.store.has_layer(&layer.diff_id) {
            self.progress.layer_cached(reference, &layer.blob);
            return Ok(());
        }
        if self.store.has_blob(&layer.blob) {
            // Unpacked from the stored blob, on a thread (unpacking blocks).
            let (store, l) = (self.store, layer.clone());
            let path = self
                .on_thread(move || store.ensure_layer(&l.diff_id, &l.blob, &l.media_type))
                .await;
            path.map_err(st)?;
            self.progress.layer_cached(reference, &layer.blob);
            return Ok(());
        }
        let mut attempt = 1;
        loop {
            let (tx, reader) = bridge::channel();
            let (store, l) = (self.store, layer.clone());
            let unpacked = self.on_thread(move || {
                // Hashed here too: when the unpacker gives up on the content (a gzip checksum
                // error, a broken tar), a download corrupted on the way is the error to report,
                // naming the blob, so the rest is read and the digest checked before saying why.
                let mut hashing = HashingReader::new(reader);
                match store.ingest_layer(&l.blob, &l.diff_id, &l.media_type, &mut hashing) {
                    Err(e) if !is_mismatch(&e) => match hashing.finish() {
                        Ok((actual, _)) if actual != l.blob => Err(ImageError::DigestMismatch {
                            what: format!("layer blob {}", l.blob),
                            expected: l.blob,
                            actual,
                        }),
                        _ => Err(e),
                    },
                    r => r,
                }
            });
            let (fed, unpacked) =
                futures_util::join!(self.feed(reference, ep, layer, tx, on_retry), unpacked);
            match (fed, unpacked) {
                (Ok(()), Ok(_)) => {
                    self.progress.layer_done(reference, &layer.blob);
                    return Ok(());
                }
                // The content is wrong: another try would fetch the same.
                (_, Err(e @ ImageError::DigestMismatch { .. }))
                | (_, Err(e @ ImageError::DiffIdMismatch { .. })) => return Err(st(e)),
                (Err(Feed::Restart(why)), _) if attempt < retry::ATTEMPTS => {
                    let what = format!("blob {}", layer.blob);
                    on_retry(&what, attempt, &why);
                    tokio::time::sleep(retry::delay(attempt)).await;
                    attempt += 1;
                }
                (Err(Feed::Restart(why)), _) => {
                    return Err(PullError::registry(
                        reference,
                        RegistryError::Network {
                            registry: ep.host.clone(),
                            what: format!("blob {}", layer.blob),
                            reason: why,
                        },
                    ))
                }
                (Err(Feed::Registry(e)), _) => return Err(PullError::registry(reference, e)),
                // The unpacker stopped reading: its error says why.
                (Err(Feed::ReaderGone), Err(e)) | (Ok(()), Err(e)) => return Err(st(e)),
                (Err(Feed::ReaderGone), Ok(_)) => {
                    self.progress.layer_done(reference, &layer.blob);
                    return Ok(());
                }
            }
        }
    }

    /// Runs `f` on a scoped thread and awaits its result without blocking the runtime.
    fn on_thread<T: Send + 'scope>(
        &self,
        f: impl FnOnce() -> Result<T, ImageError> + Send + 'scope,
    ) -> impl std::future::Future<Output = Result<T, ImageError>> + 'scope {
        let (tx, rx) = oneshot::channel();
        self.scope.spawn(move || {
            let _ = tx.send(f());
        });
        async move {
            rx.await.unwrap_or_else(|_| {
                Err(ImageError::invalid("layer", "the unpacking thread panicked"))
            })
        }
    }

    /// Downloads a blob into the bridge, resuming with `Range` after a broken connection; sends
    /// the end mark only once every byte went through.
    async fn feed(
        &self,
        reference: &Reference,
        ep: &Endpoint,
        layer: &Layer,
        tx: bridge::Sender,
        on_retry: OnRetry<'_>,
    ) -> Result<(), Feed> {
        let what = format!("blob {}", layer.blob);
        let mut offset = 0u64;
        let mut breaks = 0;
        loop {
            let mut resp = self
                .client
                .blob(ep, reference.path(), &layer.blob, offset, on_retry)
                .await
                .map_err(Feed::Registry)?;
            if offset > 0 {
                let honoured = resp.status() == reqwest::StatusCode::PARTIAL_CONTENT
                    && content_range_start(resp.headers()) == Some(offset);
                if !honoured {
                    return Err(Feed::Restart(format!(
                        "the connection broke after {offset} bytes and {} does not resume downloads",
                        ep.host
                    )));
                }
            }
            let broke = loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        let n = chunk.len() as u64;
                        offset += n;
                        self.progress.layer_bytes(reference, &layer.blob, n);
                        if tx.send(Msg::Data(chunk)).await.is_err() {
                            return Err(Feed::ReaderGone);
                        }
                    }
                    Ok(None) if offset < layer.size => {
                        break format!("the body ended after {offset} of {} bytes", layer.size)
                    }
                    Ok(None) => {
                        // More bytes than the manifest says fails the digest check.
                        return tx.send(Msg::End).await.map_err(|_| Feed::ReaderGone);
                    }
                    Err(e) => {
                        let reason = retry::root_cause(&e);
                        if retry::classify_error(&e) == Class::Fatal {
                            return Err(Feed::Registry(RegistryError::Network {
                                registry: ep.host.clone(),
                                what,
                                reason,
                            }));
                        }
                        break reason;
                    }
                }
            };
            breaks += 1;
            if breaks >= retry::ATTEMPTS {
                return Err(Feed::Registry(RegistryError::Network {
                    registry: ep.host.clone(),
                    what,
                    reason: broke,
                }));
            }
            on_retry(&what, breaks, &broke);
            tokio::time::sleep(retry::delay(breaks)).await;
        }
    }
}

/// How a download into the bridge ended, when not with every byte.
enum Feed {
    /// The registry failed (after retries).
    Registry(RegistryError),
    /// Must start over: the connection broke and the server ignores `Range`.
    Restart(String),
    /// The unpacker stopped reading (it failed; its error is the one to report).
    ReaderGone,
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
