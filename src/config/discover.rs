//! Finding the project file and naming the project, as Compose does.

use std::path::{Path, PathBuf};

/// File names looked for in each directory, in order of preference.
pub const FILE_NAMES: &[&str] = &[
    "devenv.yaml",
    "devenv.yml",
    "compose.yaml",
    "compose.yml",
    "docker-compose.yaml",
    "docker-compose.yml",
];

/// The nearest project file, looking in `start` and then each parent directory.
pub fn find_project_file(start: &Path) -> Option<PathBuf> {
    start.ancestors().find_map(|dir| FILE_NAMES.iter().map(|n| dir.join(n)).find(|p| p.is_file()))
}

/// Compose's default project name: the directory name, lowercased, keeping only `[a-z0-9_-]`,
/// without leading `_` or `-`.
pub fn normalize_project_name(raw: &str) -> String {
    let kept: String = raw
        .to_lowercase()
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_owned()
}

/// Checks a name given explicitly (`-p`, `COMPOSE_PROJECT_NAME`, `name:`).
pub fn validate_project_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if first_ok && rest_ok {
        Ok(())
    } else {
        Err(format!(
            "invalid project name {name:?}: use lowercase letters, digits, `-` and `_`, starting with a letter or digit (for example {:?})",
            normalize_project_name(name)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_normalized_like_compose() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("_-web"), "web");
        assert_eq!(normalize_project_name("flask-redis"), "flask-redis");
    }

    #[test]
    fn explicit_names_are_checked() {
        assert!(validate_project_name("web_1-a").is_ok());
        assert!(validate_project_name("Web").is_err());
        assert!(validate_project_name("-web").is_err());
        assert!(validate_project_name("").is_err());
    }

    #[test]
    fn nearest_file_wins_and_devenv_yaml_first() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("a/b");
        std::fs::create_dir_all(&sub).unwrap();
        std::fs::write(dir.path().join("devenv.yaml"), "").unwrap();
        std::fs::write(dir.path().join("a/compose.yaml"), "").unwrap();
        assert_eq!(find_project_file(&sub).unwrap(), dir.path().join("a/compose.yaml"));
        std::fs::write(dir.path().join("a/devenv.yaml"), "").unwrap();
        assert_eq!(find_project_file(&sub).unwrap(), dir.path().join("a/devenv.yaml"));
    }
}
