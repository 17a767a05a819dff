//! The OCI distribution protocol, client side: where registries are reached ([`endpoint`]), who
//! we are to them ([`authfile`], [`challenge`], [`auth`]), HTTP with retries ([`client`],
//! [`retry`]) and the bridge from a downloading body to the store's blocking readers
//! ([`stream`]). `crate::image::pull` puts these together.
//!
//! HTTP is reqwest on tokio, with rustls and its *ring* provider: no OpenSSL (nothing to link
//! against on the host, and the binary stays self-contained), and no aws-lc (a C and assembly
//! build that ring does not need). reqwest streams bodies, takes `Range` requests as they are,
//! and does connection pooling and timeouts; the registry protocol on top is small enough that
//! a client crate (oci-client) would add another layer of types without streaming layers into
//! the store the way it works (sync readers, verified while written).

pub mod auth;
pub mod authfile;
pub mod challenge;
pub mod client;
mod config;
pub mod endpoint;
pub mod retry;
pub mod stream;

use std::io;
use std::path::{Path, PathBuf};

pub use authfile::Credentials;
pub use client::Client;
pub use endpoint::Endpoint;

/// How registries are reached: mirrors, insecure hosts and where credentials are.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Mirrors for docker.io, tried in order, then docker.io itself. `host[:port]` or a URL.
    pub mirrors: Vec<String>,
    /// `host[:port]` allowed over plain HTTP (loopback always is).
    pub insecure: Vec<String>,
    /// Docker's `config.json`, whose `auths` hold credentials.
    pub auth_file: Option<PathBuf>,
}

/// Errors talking to a registry, or reading the files that say how to.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{context} {}: {source}", path.display())]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("invalid {}: {reason}", path.display())]
    InvalidFile { path: PathBuf, reason: String },

    /// The registry refused us (401/403 after the auth flow).
    #[error(
        "unauthorized: {registry} answered {status}{}: {message}; check `devenv login {login}`",
        if *.with_credentials { " to the stored credentials" } else { " without credentials" }
    )]
    Unauthorized {
        registry: String,
        login: String,
        status: u16,
        message: String,
        with_credentials: bool,
    },

    /// 404: no such repository, tag or blob.
    #[error("{registry} answered {status} for {what}: {message}")]
    NotFound { registry: String, what: String, status: u16, message: String },

    /// Any other HTTP error (5xx and 429 once retries are spent).
    #[error("{registry} answered {status} for {what}: {message}")]
    Http { registry: String, what: String, status: u16, message: String },

    /// Could not connect at all (refused, no route, DNS, TLS handshake, connect timeout).
    #[error("cannot reach registry {address}: {reason}")]
    Unreachable { address: String, reason: String },

    /// A connection broke or timed out during a transfer, after retries.
    #[error("connection to {registry} failed during {what}: {reason}")]
    Network { registry: String, what: String, reason: String },

    /// An answer that does not follow the protocol (bad token JSON, unknown challenge, ...).
    #[error("unexpected answer from {registry}: {reason}")]
    Protocol { registry: String, reason: String },
}

impl RegistryError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        RegistryError::Io { context, path: path.into(), source }
    }

    pub(crate) fn invalid(path: &Path, reason: impl ToString) -> Self {
        RegistryError::InvalidFile { path: path.to_path_buf(), reason: reason.to_string() }
    }

    /// The HTTP status the registry answered, if that is what this error is.
    pub fn status(&self) -> Option<u16> {
        match self {
            RegistryError::Unauthorized { status, .. }
            | RegistryError::NotFound { status, .. }
            | RegistryError::Http { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Checks the credentials against the registry (GET /v2/ with the auth flow) and stores them in
/// the auth file's `auths` (base64 "user:password" in `auth`, as docker login does), creating it
/// 0600 if needed.
pub fn login(
    registry: &str,
    user: &str,
    password: &str,
    config: &RegistryConfig,
) -> Result<(), RegistryError> {
    let path = match &config.auth_file {
        Some(p) => p.clone(),
        None => authfile::default_path().ok_or_else(|| {
            RegistryError::invalid(
                Path::new("~/.docker/config.json"),
                "neither DOCKER_CONFIG nor HOME is set",
            )
        })?,
    };
    let creds = Credentials { user: user.to_string(), password: password.to_string() };
    let registry = registry.trim().trim_end_matches('/');
    // `devenv login` alone, or Docker Hub's old URL, means docker.io.
    let name = match authfile::normalize_key(registry).as_str() {
        "" | "docker.io" => "docker.io".to_string(),
        host => host.to_string(),
    };
    let endpoint = Endpoint::for_registry(&name, config);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RegistryError::io("cannot start the network runtime", &path, e))?;
    let client = Client::new(config)?;
    runtime.block_on(client.check_login(&endpoint, &name, &creds))?;
    drop(runtime);
    authfile::store(&path, &name, &creds)
}
