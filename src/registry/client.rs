//! HTTP to registries: one reqwest client for a pull, the auth flow on 401, retries with backoff
//! for 5xx, 429 and broken connections, and registry errors turned into messages that carry the
//! registry's own words (`{"errors": [{"code", "message"}]}`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, Once};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RANGE};
use reqwest::{RequestBuilder, Response, StatusCode};

use super::auth::{self, TokenCache};
use super::retry::{self, Class};
use super::{authfile, Credentials, Endpoint, RegistryConfig, RegistryError};
use crate::image::Digest;

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// No byte for this long on an open connection counts as a broken one (and is retried).
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The manifest types a pull accepts, as Docker sends them.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
     application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, \
     application/vnd.docker.distribution.manifest.v2+json";

/// Called before each retry: what is retried, the attempt that failed (from 1), the error.
pub type OnRetry<'a> = &'a (dyn Fn(&str, u32, &str) + Sync);

/// A manifest as the registry served it.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
    /// `Docker-Content-Digest`, when the registry sent it.
    pub digest_header: Option<String>,
}

pub struct Client {
    http: reqwest::Client,
    auth_file: Option<PathBuf>,
    tokens: TokenCache,
    creds: Mutex<HashMap<String, Option<Credentials>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("auth_file", &self.auth_file).finish_non_exhaustive()
    }
}

/// rustls takes its crypto from a process-wide provider; reqwest is built without one (so
/// aws-lc is not compiled in) and this installs *ring* once.
fn install_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl Client {
    pub fn new(config: &RegistryConfig) -> Result<Client, RegistryError> {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .user_agent(concat!("devenv/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| RegistryError::Protocol {
                registry: "-".into(),
                reason: format!("cannot build the HTTP client: {}", retry::root_cause(&e)),
            })?;
        Ok(Client {
            http,
            auth_file: config.auth_file.clone(),
            tokens: TokenCache::default(),
            creds: Mutex::new(HashMap::new()),
        })
    }

    /// Stored credentials for an endpoint's host (read once per client).
    fn credentials(&self, host: &str) -> Result<Option<Credentials>, RegistryError> {
        let mut cache = self.creds.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cache.get(host) {
            return Ok(c.clone());
        }
        let found = match &self.auth_file {
            Some(path) => authfile::lookup(path, host)?,
            None => None,
        };
        cache.insert(host.to_string(), found.clone());
        Ok(found)
    }

    /// Sends a request (rebuilt by `build` for each try), answering a 401 with the auth flow
    /// once, and retrying what [`retry`] says is transient. Non-2xx answers become errors.
    async fn send(
        &self,
        ep: &Endpoint,
        scope: &str,
        what: &str,
        creds: Option<&Credentials>,
        on_retry: OnRetry<'_>,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, RegistryError> {
        let mut attempt = 1;
        let mut authenticated = false;
        loop {
            let mut req = build(&self.http);
            if let Some(h) = self.tokens.get(&ep.host, scope) {
                req = req.header(AUTHORIZATION, h);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let reason = retry::root_cause(&e);
                    match retry::classify_error(&e) {
                        Class::Unreachable => {
                            return Err(RegistryError::Unreachable {
                                address: ep.base.clone(),
                                reason,
                            })
                        }
                        Class::Retry if attempt < retry::ATTEMPTS => {
                            on_retry(what, attempt, &reason);
                            tokio::time::sleep(retry::delay(attempt)).await;
                            attempt += 1;
                            continue;
                        }
                        _ => {
                            return Err(RegistryError::Network {
                                registry: ep.host.clone(),
                                what: what.into(),
                                reason,
                            })
                        }
                    }
                }
            };
            let status = resp.status();
            if status == StatusCode::UNAUTHORIZED && !authenticated {
                authenticated = true;
                let header =
                    auth::authenticate(&self.http, ep, resp.headers(), scope, creds).await?;
                self.tokens.put(&ep.host, scope, header);
                continue;
            }
            if status.is_success() {
                return Ok(resp);
            }
            let code = status.as_u16();
            let retry_after =
                resp.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_string);
            let body = resp.bytes().await.unwrap_or_default();
            let message = error_message(&body, code);
            if retry::classify_status(code) == Class::Retry && attempt < retry::ATTEMPTS {
                on_retry(what, attempt, &format!("{} answered {code}: {message}", ep.host));
                tokio::time::sleep(retry::delay_with(attempt, retry_after.as_deref())).await;
                attempt += 1;
                continue;
            }
            return Err(match code {
                401 | 403 => RegistryError::Unauthorized {
                    registry: ep.host.clone(),
                    login: authfile::normalize_key(&ep.host),
                    status: code,
                    message,
                    with_credentials: creds.is_some(),
                },
                404 => RegistryError::NotFound {
                    registry: ep.host.clone(),
                    what: what.into(),
                    status: code,
                    message,
                },
                _ => RegistryError::Http {
                    registry: ep.host.clone(),
                    what: what.into(),
                    status: code,
                    message,
                },
            });
        }
    }

    fn scope(repo: &str) -> String {
        format!("repository:{repo}:pull")
    }

    /// `GET /v2/<repo>/manifests/<tag or digest>`.
    pub async fn manifest(
        &self,
        ep: &Endpoint,
        repo: &str,
        reference: &str,
        on_retry: OnRetry<'_>,
    ) -> Result<FetchedManifest, RegistryError> {
        let creds = self.credentials(&ep.host)?;
        let url = format!("{}/v2/{repo}/manifests/{reference}", ep.base);
        let what = format!("manifest {repo}:{reference}");
        let what = if reference.contains(':') { what.replacen(':', "@", 1) } else { what };
        let mut attempt = 1;
        loop {
            let resp = self
                .send(ep, &Self::scope(repo), &what, creds.as_ref(), on_retry, |http| {
                    http.get(&url).header(ACCEPT, MANIFEST_ACCEPT)
                })
                .await?;
            let header = |name: &str| {
                resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
            };
            let content_type = header("content-type");
            let digest_header = header("docker-content-digest");
            match read_limited(resp, MAX_MANIFEST, ep, &what).await {
                Ok(bytes) => return Ok(FetchedManifest { bytes, content_type, digest_header }),
                Err(e) => retry_broken_body(e, &what, &mut attempt, on_retry).await?,
            }
        }
    }

    /// `GET /v2/<repo>/blobs/<digest>`, from byte `offset` on (a `Range` request) when not 0.
    /// The answer is 206 if the server honoured the range, 200 if it sent the whole blob.
    pub async fn blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        digest: &Digest,
        offset: u64,
        on_retry: OnRetry<'_>,
    ) -> Result<Response, RegistryError> {
        let creds = self.credentials(&ep.host)?;
        let url = format!("{}/v2/{repo}/blobs/{digest}", ep.base);
        let what = format!("blob {digest}");
        self.send(ep, &Self::scope(repo), &what, creds.as_ref(), on_retry, |http| {
            let req = http.get(&url);
            if offset > 0 {
                req.header(
                    RANGE,
                    HeaderValue::from_str(&format!("bytes={offset}-")).expect("ascii"),
                )
            } else {
                req
            }
        })
        .await
    }

    /// A small blob (an image config) read whole.
    pub async fn small_blob(
        &self,
        ep: &Endpoint,
        repo: &str,
        digest: &Digest,
        on_retry: OnRetry<'_>,
    ) -> Result<Vec<u8>, RegistryError> {
        let what = format!("blob {digest}");
        let mut attempt = 1;
        loop {
            let resp = self.blob(ep, repo, digest, 0, on_retry).await?;
            match read_limited(resp, MAX_MANIFEST, ep, &what).await {
                Ok(bytes) => return Ok(bytes),
                Err(e) => retry_broken_body(e, &what, &mut attempt, on_retry).await?,
            }
        }
    }

    /// `GET /v2/` with these credentials, through the auth flow: what `devenv login` checks.
    pub async fn check_login(
        &self,
        ep: &Endpoint,
        _name: &str,
        creds: &Credentials,
    ) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", ep.base);
        let no_retry_report = |_: &str, _: u32, _: &str| {};
        self.send(ep, "", "the login check", Some(creds), &no_retry_report, |http| http.get(&url))
            .await?;
        Ok(())
    }
}

/// After a small answer's body broke off (a [`RegistryError::Network`] from [`read_limited`]):
/// waits and returns `Ok` to have the request sent again, or returns the error once the tries
/// are spent (or if it is of another kind).
async fn retry_broken_body(
    e: RegistryError,
    what: &str,
    attempt: &mut u32,
    on_retry: OnRetry<'_>,
) -> Result<(), RegistryError> {
    match &e {
        RegistryError::Network { reason, .. } if *attempt < retry::ATTEMPTS => {
            on_retry(what, *attempt, reason);
            tokio::time::sleep(retry::delay(*attempt)).await;
            *attempt += 1;
            Ok(())
        }
        _ => Err(e),
    }
}

/// Manifests and configs are small; a bigger answer is not one.
const MAX_MANIFEST: usize = 16 << 20;

async fn read_limited(
    mut resp: Response,
    max: usize,
    ep: &Endpoint,
    what: &str,
) -> Result<Vec<u8>, RegistryError> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                out.extend_from_slice(&chunk);
                if out.len() > max {
                    return Err(RegistryError::Protocol {
                        registry: ep.host.clone(),
                        reason: format!("{what} is larger than {max} bytes"),
                    });
                }
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(RegistryError::Network {
                    registry: ep.host.clone(),
                    what: what.into(),
                    reason: retry::root_cause(&e),
                })
            }
        }
    }
}

/// The registry's explanation of an error: `CODE: message` for each entry of the distribution
/// spec's `{"errors": [...]}`, Docker Hub's token server `details`, else the start of the body,
/// else the status's reason.
pub fn error_message(body: &[u8], status: u16) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(errors) = v.get("errors").and_then(|e| e.as_array()).filter(|e| !e.is_empty()) {
            let parts: Vec<String> = errors
                .iter()
                .map(|e| {
                    let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("");
                    let msg = e.get("message").and_then(|c| c.as_str()).unwrap_or("");
                    match (code, msg) {
                        ("", m) => m.to_string(),
                        (c, "") => c.to_string(),
                        (c, m) => format!("{c}: {m}"),
                    }
                })
                .collect();
            return parts.join("; ");
        }
        for key in ["details", "detail", "message", "error"] {
            if let Some(s) = v.get(key).and_then(|d| d.as_str()).filter(|s| !s.is_empty()) {
                return s.to_string();
            }
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if !text.is_empty() && !text.starts_with('<') {
        return text.chars().take(200).collect();
    }
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("no explanation")
        .to_string()
}

/// Headers of an answer, for callers that check `Content-Range`.
pub fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let v = headers.get("content-range")?.to_str().ok()?;
    let range = v.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_error_messages() {
        let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"nope"}}]}"#;
        assert_eq!(error_message(body, 404), "MANIFEST_UNKNOWN: manifest unknown");
        assert_eq!(
            error_message(br#"{"details":"incorrect username or password"}"#, 401),
            "incorrect username or password"
        );
        assert_eq!(error_message(b"upstream exploded\n", 502), "upstream exploded");
        assert_eq!(error_message(b"<html>bad gateway</html>", 502), "Bad Gateway");
        assert_eq!(error_message(b"", 503), "Service Unavailable");
    }

    #[test]
    fn content_range() {
        let mut h = HeaderMap::new();
        h.insert("content-range", HeaderValue::from_static("bytes 100-199/200"));
        assert_eq!(content_range_start(&h), Some(100));
        assert_eq!(content_range_start(&HeaderMap::new()), None);
    }
}
