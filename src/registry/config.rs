//! `RegistryConfig::from_env`: `registries.toml` under devenv's config directory, the
//! `DEVENV_REGISTRY_MIRRORS` variable and Docker's auth file.

use std::fs;
use std::io;
use std::path::PathBuf;

use serde::Deserialize;

use super::{authfile, RegistryConfig, RegistryError};

/// Environment variable with docker.io mirrors (comma-separated), tried before the file's.
pub const MIRRORS_ENV: &str = "DEVENV_REGISTRY_MIRRORS";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    mirrors: Vec<String>,
    #[serde(default)]
    insecure: Vec<String>,
}

impl RegistryConfig {
    /// ~/.config/devenv/registries.toml (or $XDG_CONFIG_HOME/devenv/registries.toml):
    /// `mirrors = [...]`, `insecure = [...]`; DEVENV_REGISTRY_MIRRORS (comma-separated) adds
    /// mirrors first; auth file $DOCKER_CONFIG/config.json else ~/.docker/config.json.
    pub fn from_env() -> Result<RegistryConfig, RegistryError> {
        let file = match config_path() {
            Some(p) => read_file(&p)?,
            None => File::default(),
        };
        let env = std::env::var(MIRRORS_ENV).unwrap_or_default();
        Ok(RegistryConfig {
            mirrors: merge_mirrors(&env, file.mirrors),
            insecure: file.insecure,
            auth_file: authfile::default_path(),
        })
    }
}

/// `$XDG_CONFIG_HOME/devenv/registries.toml`, else `~/.config/devenv/registries.toml`.
pub fn config_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("devenv/registries.toml"))
}

fn read_file(path: &std::path::Path) -> Result<File, RegistryError> {
    match fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| RegistryError::invalid(path, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(RegistryError::io("cannot read", path, e)),
    }
}

/// The environment's mirrors first, then the file's, without repeats or empty entries.
fn merge_mirrors(env: &str, file: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for m in env.split(',').map(str::trim).map(str::to_string).chain(file) {
        let m = m.trim().trim_end_matches('/').to_string();
        if !m.is_empty() && !out.contains(&m) {
            out.push(m);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_mirrors_come_first() {
        let file = vec!["https://b.example".to_string(), "c.example".to_string()];
        assert_eq!(
            merge_mirrors(" a.example , ,https://b.example/", file),
            ["a.example", "https://b.example", "c.example"]
        );
        assert!(merge_mirrors("", vec![]).is_empty());
    }

    #[test]
    fn file_parses_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.toml");
        assert!(read_file(&path).unwrap().mirrors.is_empty());
        fs::write(&path, "mirrors = [\"https://m.example\"]\ninsecure = [\"reg.lan:5000\"]\n")
            .unwrap();
        let f = read_file(&path).unwrap();
        assert_eq!((f.mirrors.len(), f.insecure[0].as_str()), (1, "reg.lan:5000"));
        fs::write(&path, "mirror = [\"x\"]\n").unwrap();
        let err = read_file(&path).unwrap_err().to_string();
        assert!(err.contains("registries.toml") && err.contains("mirror"), "{err}");
    }
}
