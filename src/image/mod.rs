//! Images: how they are named, stored, unpacked and brought in.
//!
//! - [`reference`]: Docker-style image references and their normalization (`redis:7` is
//!   `docker.io/library/redis:7`).
//! - [`digest`]: SHA-256 content digests and hashing readers.
//! - [`store`]: the content store under `$DEVENV_HOME/images`: verified blobs, layers unpacked once
//!   each and shared between images, and the index of image names.
//! - [`unpack`]: safe layer unpacking (never writes outside the layer directory) with OCI whiteouts
//!   turned into overlayfs whiteouts.
//! - [`load`]: `devenv image load`, importing OCI layouts, OCI archives and `docker save` tarballs.
//!
//! Every way into the store (load today, registry pulls later) goes through the same two entry
//! points: [`Store::put_blob`] for any blob and [`Store::ensure_layer`] /
//! [`Store::ingest_layer`] for layers, both of which work from a `Read` stream and verify digests
//! while the bytes go by.

pub mod digest;
pub mod load;
pub mod platform;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

use std::io;
use std::path::PathBuf;

pub use digest::Digest;
pub use load::{load, LoadedImage};
pub use reference::Reference;
pub use store::{ImageInfo, ImageSummary, Store};
pub use unpack::{unpack_layer, Compression, UnpackStats};

/// Errors from the image store, unpacking and loading. Each carries the path, digest or entry it
/// is about, so the message alone says what went wrong where.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid image reference \"{reference}\": {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("invalid digest \"{digest}\": {reason}")]
    InvalidDigest { digest: String, reason: String },

    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("{what}: content has digest {actual}, expected {expected}")]
    DigestMismatch { what: String, expected: Digest, actual: Digest },

    #[error(
        "layer {blob}: the uncompressed layer has digest {actual}, but the image config lists \
         {expected}"
    )]
    DiffIdMismatch { blob: Digest, expected: Digest, actual: Digest },

    #[error("refusing layer entry \"{entry}\": {reason}")]
    UnsafeEntry { entry: String, reason: String },

    #[error("cannot unpack layer entry \"{entry}\": {source}")]
    Unpack {
        entry: String,
        #[source]
        source: io::Error,
    },

    #[error("layer {diff_id}: {source}")]
    Layer {
        diff_id: Digest,
        #[source]
        source: Box<ImageError>,
    },

    #[error("invalid {what}: {reason}")]
    Invalid { what: String, reason: String },

    #[error("blob {digest} is not in the store; load or pull the image again")]
    MissingBlob { digest: Digest },

    #[error("unsupported media type \"{media_type}\" for {what}")]
    UnsupportedMediaType { what: String, media_type: String },

    #[error("no image for {wanted} in {what} (it has: {})", if .available.is_empty() { "none".to_string() } else { .available.join(", ") })]
    NoMatchingPlatform { wanted: String, what: String, available: Vec<String> },

    #[error("{} holds an image without a usable name{}; name it with --tag NAME", path.display(), .detail)]
    NoName { path: PathBuf, detail: String },

    #[error("--tag names one image, but {} holds {count}", path.display())]
    AmbiguousTag { path: PathBuf, count: usize },

    #[error("{} is not an OCI image layout, OCI archive or docker save tarball: {reason}", path.display())]
    UnknownFormat { path: PathBuf, reason: String },

    #[error("image {0} is not in the store")]
    NotFound(String),
}

/// Result with [`ImageError`] as the default error.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

impl ImageError {
    /// An I/O error with what was being done and on which path.
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io { context, path: path.into(), source }
    }

    pub(crate) fn invalid(what: impl Into<String>, reason: impl ToString) -> Self {
        ImageError::Invalid { what: what.into(), reason: reason.to_string() }
    }
}
