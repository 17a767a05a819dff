//! Real Compose files written by other people: `devenv config --quiet` accepts every file of the
//! awesome-compose corpus (warnings allowed for keys devenv does not support yet), and devenv's
//! list of supported and unsupported keys covers the whole Compose specification.

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

#[test]
fn every_awesome_compose_file_is_accepted() {
    let dir = corpus().join("awesome-compose");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| {
            let d = e.ok()?.path();
            ["compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"]
                .iter()
                .map(|n| d.join(n))
                .find(|p| p.is_file())
        })
        .collect();
    files.sort();
    assert!(files.len() >= 39, "found only {} files in {}", files.len(), dir.display());
    let mut failures = Vec::new();
    for f in &files {
        let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
            .arg("-f")
            .arg(f)
            .args(["config", "--quiet"])
            .env_remove("COMPOSE_PROJECT_NAME")
            // plex's README asks the user to set this; unset, its volume is `:/media/`, which
            // Compose rejects as well.
            .env("PLEX_MEDIA_PATH", "/srv/media")
            .output()
            .unwrap();
        if !out.status.success() {
            failures.push(format!("{}:\n{}", f.display(), String::from_utf8_lossy(&out.stderr)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} files rejected:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn supported_and_unsupported_keys_cover_the_compose_spec() {
    let spec: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(corpus().join("compose-spec/compose-spec.json")).unwrap(),
    )
    .unwrap();
    let ours = devenv::config::schema::json_schema();
    for (theirs, mine) in [
        (&spec["properties"], &ours["properties"]),
        (
            &spec["definitions"]["service"]["properties"],
            &ours["definitions"]["Service"]["properties"],
        ),
        (
            &spec["definitions"]["deployment"]["properties"],
            &ours["definitions"]["Deploy"]["properties"],
        ),
        (
            &spec["definitions"]["deployment"]["properties"]["resources"]["properties"],
            &ours["definitions"]["DeployResources"]["properties"],
        ),
        (
            &spec["definitions"]["deployment"]["properties"]["resources"]["properties"]["limits"]
                ["properties"],
            &ours["definitions"]["ResourceLimits"]["properties"],
        ),
        (
            &spec["definitions"]["network"]["properties"],
            &ours["definitions"]["NetworkDef"]["properties"],
        ),
        (
            &spec["definitions"]["network"]["properties"]["ipam"]["properties"],
            &ours["definitions"]["Ipam"]["properties"],
        ),
        (
            &spec["definitions"]["network"]["properties"]["ipam"]["properties"]["config"]["items"]
                ["properties"],
            &ours["definitions"]["IpamConfig"]["properties"],
        ),
    ] {
        let missing: Vec<&String> =
            theirs.as_object().unwrap().keys().filter(|k| mine.get(k.as_str()).is_none()).collect();
        assert!(
            missing.is_empty(),
            "Compose keys devenv neither supports nor lists as unsupported: {missing:?}"
        );
    }
}
