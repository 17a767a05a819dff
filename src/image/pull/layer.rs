//! One layer of a pull: taken from the store when it is there, else downloaded and streamed
//! into the store on a scoped thread (download, decompression, untar and both digests
//! overlapped), resumed with a `Range` request when the connection breaks.

use oci_spec::image::MediaType;
use tokio::sync::oneshot;

use super::{is_mismatch, PullError, Puller};
use crate::image::digest::HashingReader;
use crate::image::{Digest, ImageError, Reference};
use crate::registry::client::{content_range_start, OnRetry};
use crate::registry::endpoint::Endpoint;
use crate::registry::retry::{self, Class};
use crate::registry::stream::{self as bridge, Msg};
use crate::registry::RegistryError;

/// One layer to fetch: its blob, its diff_id, its media type and size.
#[derive(Clone)]
pub(super) struct Layer {
    pub(super) blob: Digest,
    pub(super) diff_id: Digest,
    pub(super) media_type: MediaType,
    pub(super) size: u64,
}

impl<'scope, 'env> Puller<'scope, 'env> {
    /// Makes sure one layer is unpacked: from the store if it is there, else downloaded.
    pub(super) async fn layer(
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
