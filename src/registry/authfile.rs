//! Credentials in Docker's `config.json` (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `{"auths": {"KEY": {"auth": base64("user:password")}}}`, so logins
//! made with `docker login` work here and `devenv login` ones work for docker. Keys are written in
//! several ways (`https://index.docker.io/v1/`, `docker.io`, `host:port`, `https://host:port`);
//! all name the same registry. Credential helpers (`credsStore`, `credHelpers`) are not run.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::{Map, Value};

use super::RegistryError;

/// The key `docker login` uses for Docker Hub.
pub const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, <hidden>)", self.user)
    }
}

/// The default auth file: `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn default_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".docker/config.json"))
}

/// The registry a key or host names, in one form: no scheme, no path, lowercase, and Docker Hub's
/// many names (`index.docker.io`, `registry-1.docker.io`) as `docker.io`.
pub fn normalize_key(key: &str) -> String {
    let key = key.trim();
    let rest = key.split_once("://").map_or(key, |(_, r)| r);
    let host = rest.split('/').next().unwrap_or(rest).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".into()
        }
        _ => host,
    }
}

/// The key `devenv login` writes for a registry (the one `docker login` writes).
pub fn key_for(registry: &str) -> String {
    match normalize_key(registry).as_str() {
        "docker.io" => DOCKER_HUB_KEY.to_string(),
        host => host.to_string(),
    }
}

fn read(path: &Path) -> Result<Option<Map<String, Value>>, RegistryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(RegistryError::io("cannot read auth file", path, e)),
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(RegistryError::invalid(path, "not a JSON object")),
        Err(e) => Err(RegistryError::invalid(path, e)),
    }
}

/// The credentials stored for a registry (`docker.io`, `host:port`, or an endpoint host such as
/// `registry-1.docker.io`). A missing file or entry is `None`; an unreadable one is an error.
pub fn lookup(path: &Path, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let Some(config) = read(path)? else { return Ok(None) };
    let want = normalize_key(registry);
    let Some(Value::Object(auths)) = config.get("auths") else { return Ok(None) };
    for (key, entry) in auths {
        if normalize_key(key) != want {
            continue;
        }
        if let Some(auth) = entry.get("auth").and_then(Value::as_str).filter(|a| !a.is_empty()) {
            return decode_auth(auth).map(Some).map_err(|reason| {
                RegistryError::invalid(path, format!("auths.\"{key}\".auth: {reason}"))
            });
        }
        let user = entry.get("username").and_then(Value::as_str);
        let password = entry.get("password").and_then(Value::as_str);
        if let (Some(user), Some(password)) = (user, password) {
            return Ok(Some(Credentials { user: user.into(), password: password.into() }));
        }
    }
    Ok(None)
}

/// `base64("user:password")` as Docker writes it.
pub fn decode_auth(auth: &str) -> Result<Credentials, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.trim())
        .map_err(|e| format!("not base64: {e}"))?;
    let text = String::from_utf8(bytes).map_err(|_| "not UTF-8 once decoded".to_string())?;
    let (user, password) =
        text.split_once(':').ok_or_else(|| "not \"user:password\" once decoded".to_string())?;
    Ok(Credentials { user: user.into(), password: password.into() })
}

pub fn encode_auth(user: &str, password: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// Stores credentials under the registry's key, keeping everything else in the file. The file is
/// created 0600 (its directory 0700) and replaced atomically.
pub fn store(path: &Path, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
    let mut config = read(path)?.unwrap_or_default();
    let auths = config.entry("auths").or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths.as_object_mut().expect("an object");
    // One entry per registry: drop other spellings of the same key.
    let want = normalize_key(registry);
    auths.retain(|k, _| normalize_key(k) != want);
    let mut entry = Map::new();
    entry.insert("auth".into(), Value::String(encode_auth(&creds.user, &creds.password)));
    auths.insert(key_for(registry), Value::Object(entry));

    let dir = path.parent().unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| RegistryError::io("cannot create", dir, e))?;
    let json = serde_json::to_vec_pretty(&Value::Object(config)).expect("JSON values serialize");
    let tmp = dir.join(format!(".config.json.{}.tmp", std::process::id()));
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&json)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        RegistryError::io("cannot write auth file", path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn file(json: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, json).unwrap();
        (dir, path)
    }

    #[test]
    fn docker_hub_key_variants() {
        let auth = encode_auth("alice", "s3cret:with:colons");
        for key in [
            "https://index.docker.io/v1/",
            "docker.io",
            "index.docker.io",
            "https://registry-1.docker.io",
        ] {
            let (_d, path) = file(&format!(r#"{{"auths": {{"{key}": {{"auth": "{auth}"}}}}}}"#));
            for registry in ["docker.io", "registry-1.docker.io"] {
                let c =
                    lookup(&path, registry).unwrap().unwrap_or_else(|| panic!("{key} {registry}"));
                assert_eq!((c.user.as_str(), c.password.as_str()), ("alice", "s3cret:with:colons"));
            }
            assert_eq!(lookup(&path, "ghcr.io").unwrap(), None);
        }
    }

    #[test]
    fn host_port_keys_with_and_without_scheme() {
        let auth = encode_auth("bob", "pw");
        let (_d, path) = file(&format!(
            r#"{{"auths": {{"https://reg.example:5000": {{"auth": "{auth}"}}, "localhost:5001": {{"username": "u", "password": "p"}}}}}}"#
        ));
        assert_eq!(lookup(&path, "reg.example:5000").unwrap().unwrap().user, "bob");
        assert_eq!(lookup(&path, "reg.example").unwrap(), None);
        assert_eq!(lookup(&path, "localhost:5001").unwrap().unwrap().password, "p");
    }

    #[test]
    fn missing_file_and_bad_entries() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(lookup(&dir.path().join("nope.json"), "docker.io").unwrap(), None);
        let (_d, path) = file(r#"{"auths": {"docker.io": {"auth": "%%%"}}}"#);
        let err = lookup(&path, "docker.io").unwrap_err().to_string();
        assert!(err.contains("not base64") && err.contains("config.json"), "{err}");
        let (_d, path) = file("{not json");
        assert!(lookup(&path, "docker.io").is_err());
        let (_d, path) = file(r#"{"credsStore": "desktop"}"#);
        assert_eq!(lookup(&path, "docker.io").unwrap(), None);
        assert!(decode_auth(&base64::engine::general_purpose::STANDARD.encode("nocolon")).is_err());
    }

    #[test]
    fn store_creates_0600_and_keeps_other_fields() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/config.json");
        let creds = Credentials { user: "u".into(), password: "p".into() };
        store(&path, "docker.io", &creds).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["auths"][DOCKER_HUB_KEY]["auth"], encode_auth("u", "p"));

        fs::write(&path, r#"{"auths": {"docker.io": {"auth": "x"}}, "credHelpers": {"a": "b"}}"#)
            .unwrap();
        store(&path, "index.docker.io", &creds).unwrap();
        store(&path, "localhost:5000", &creds).unwrap();
        let v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["credHelpers"]["a"], "b");
        let keys: Vec<&String> = v["auths"].as_object().unwrap().keys().collect();
        assert_eq!(keys, [DOCKER_HUB_KEY, "localhost:5000"]);
        assert_eq!(lookup(&path, "localhost:5000").unwrap(), Some(creds));
    }
}
