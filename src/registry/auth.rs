//! Answering a registry's 401: a Bearer token from the challenge's realm (the Docker Hub flow:
//! `GET realm?service=..&scope=repository:NAME:pull`, anonymous or with the user's credentials as
//! Basic auth, `token` or `access_token` in the JSON answer), or Basic auth itself when the
//! challenge is Basic. Tokens are kept per registry and scope for the client's lifetime (one
//! pull), so parallel layers and images from one repository share one token.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine;
use reqwest::header::{HeaderValue, WWW_AUTHENTICATE};
use serde::Deserialize;

use super::challenge::{self, Challenge};
use super::retry::{self, Class};
use super::{Credentials, Endpoint, RegistryError};

/// The `Authorization` header values obtained so far, per (registry host, scope).
#[derive(Debug, Default)]
pub struct TokenCache {
    map: Mutex<HashMap<(String, String), HeaderValue>>,
}

impl TokenCache {
    pub fn get(&self, host: &str, scope: &str) -> Option<HeaderValue> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(host.into(), scope.into()))
            .cloned()
    }

    pub fn put(&self, host: &str, scope: &str, value: HeaderValue) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((host.into(), scope.into()), value);
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

pub fn basic(creds: &Credentials) -> HeaderValue {
    let b64 = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", creds.user, creds.password));
    let mut v =
        HeaderValue::from_str(&format!("Basic {b64}")).expect("base64 is a valid header value");
    v.set_sensitive(true);
    v
}

fn bearer(token: &str, registry: &str) -> Result<HeaderValue, RegistryError> {
    let mut v =
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| RegistryError::Protocol {
            registry: registry.into(),
            reason: "the token server's token is not a valid header value".into(),
        })?;
    v.set_sensitive(true);
    Ok(v)
}

/// The `Authorization` value answering the 401 whose headers are `headers`. `scope` is empty for
/// a login check (no repository).
pub async fn authenticate(
    http: &reqwest::Client,
    ep: &Endpoint,
    headers: &reqwest::header::HeaderMap,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<HeaderValue, RegistryError> {
    let challenges: Vec<Challenge> = headers
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(challenge::parse)
        .collect();
    let unauthorized = |message: String| RegistryError::Unauthorized {
        registry: ep.host.clone(),
        login: super::authfile::normalize_key(&ep.host),
        status: 401,
        message,
        with_credentials: creds.is_some(),
    };
    if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
        let realm = c.param("realm").ok_or_else(|| RegistryError::Protocol {
            registry: ep.host.clone(),
            reason: "a Bearer challenge without a realm".into(),
        })?;
        return token(http, ep, realm, c.param("service"), scope, creds).await;
    }
    if challenges.iter().any(|c| c.scheme == "basic") {
        return match creds {
            Some(creds) => Ok(basic(creds)),
            None => Err(unauthorized("the registry wants a user name and password".into())),
        };
    }
    Err(RegistryError::Protocol {
        registry: ep.host.clone(),
        reason: format!(
            "401 without a Bearer or Basic challenge (WWW-Authenticate: {:?})",
            headers.get(WWW_AUTHENTICATE)
        ),
    })
}

async fn token(
    http: &reqwest::Client,
    ep: &Endpoint,
    realm: &str,
    service: Option<&str>,
    scope: &str,
    creds: Option<&Credentials>,
) -> Result<HeaderValue, RegistryError> {
    let url = reqwest::Url::parse(realm).map_err(|e| RegistryError::Protocol {
        registry: ep.host.clone(),
        reason: format!("token realm \"{realm}\" is not a URL: {e}"),
    })?;
    let auth_host = url.host_str().unwrap_or(realm).to_string();
    let mut url = url;
    {
        let mut query = url.query_pairs_mut();
        if let Some(s) = service {
            query.append_pair("service", s);
        }
        if !scope.is_empty() {
            query.append_pair("scope", scope);
        }
        if let Some(c) = creds {
            query.append_pair("account", &c.user);
        }
    }
    let mut attempt = 1;
    loop {
        let mut req = http.get(url.clone());
        if let Some(c) = creds {
            req = req.header(reqwest::header::AUTHORIZATION, basic(c));
        }
        let result = req.send().await;
        let resp = match result {
            Ok(r) => r,
            Err(e) => match retry::classify_error(&e) {
                Class::Retry if attempt < retry::ATTEMPTS => {
                    tokio::time::sleep(retry::delay(attempt)).await;
                    attempt += 1;
                    continue;
                }
                Class::Unreachable => {
                    return Err(RegistryError::Unreachable {
                        address: format!("{auth_host} (token server of {})", ep.host),
                        reason: retry::root_cause(&e),
                    })
                }
                _ => {
                    return Err(RegistryError::Network {
                        registry: auth_host,
                        what: "the token request".into(),
                        reason: retry::root_cause(&e),
                    })
                }
            },
        };
        let status = resp.status().as_u16();
        if retry::classify_status(status) == Class::Retry && attempt < retry::ATTEMPTS {
            tokio::time::sleep(retry::delay(attempt)).await;
            attempt += 1;
            continue;
        }
        let body = resp.bytes().await.unwrap_or_default();
        if status == 401 || status == 403 {
            return Err(RegistryError::Unauthorized {
                registry: ep.host.clone(),
                login: super::authfile::normalize_key(&ep.host),
                status,
                message: super::client::error_message(&body, status),
                with_credentials: creds.is_some(),
            });
        }
        if !(200..300).contains(&status) {
            return Err(RegistryError::Http {
                registry: auth_host,
                what: "a token".into(),
                status,
                message: super::client::error_message(&body, status),
            });
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
                registry: auth_host.clone(),
                reason: format!("token answer is not JSON: {e}"),
            })?;
        let token =
            answer.token.or(answer.access_token).filter(|t| !t.is_empty()).ok_or_else(|| {
                RegistryError::Protocol {
                    registry: auth_host.clone(),
                    reason: "token answer has no token".into(),
                }
            })?;
        return bearer(&token, &auth_host);
    }
}
