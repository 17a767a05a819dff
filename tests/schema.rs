//! The committed JSON Schema is what the parser's types generate, and the project files this
//! repository ships validate against it (as an editor would check them).

use std::path::Path;

use devenv::config::de::{from_node, Path as KeyPath};
use devenv::config::{schema, yaml};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn committed_schema_is_up_to_date() {
    let generated = serde_json::to_string_pretty(&schema::json_schema()).unwrap() + "\n";
    let committed =
        std::fs::read_to_string(root().join("schema/devenv.schema.json")).unwrap_or_default();
    assert!(
        generated == committed,
        "schema/devenv.schema.json is stale: run `cargo run -q -- schema > schema/devenv.schema.json`"
    );
}

fn as_json(file: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(file).unwrap();
    let node = yaml::parse(&text).unwrap();
    from_node(&node, &KeyPath::Root).unwrap()
}

#[test]
fn shipped_project_files_validate_against_the_schema() {
    let validator = jsonschema::validator_for(&schema::json_schema()).unwrap();
    let mut files = vec![root().join("devenv.yaml")];
    for e in std::fs::read_dir(root().join("examples")).unwrap() {
        files.push(e.unwrap().path().join("devenv.yaml"));
    }
    for f in files {
        let doc = as_json(&f);
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", f.display());
    }
}

#[test]
fn schema_rejects_a_misspelled_key() {
    let validator = jsonschema::validator_for(&schema::json_schema()).unwrap();
    let doc = serde_json::json!({"services": {"web": {"image": "nginx", "prots": ["80:80"]}}});
    assert!(!validator.is_valid(&doc));
    let ok = serde_json::json!({"services": {"web": {"image": "nginx", "build": ".", "x-note": 1}}, "x-top": {}});
    assert!(validator.is_valid(&ok), "unsupported Compose keys and x- extensions are allowed");
}

#[test]
fn schema_describes_the_default_network_and_allows_others() {
    let validator = jsonschema::validator_for(&schema::json_schema()).unwrap();
    let ok = serde_json::json!({
        "services": {"web": {"image": "nginx"}},
        "networks": {
            "default": {"driver": "bridge", "ipam": {"driver": "default", "config": [{"subnet": "10.123.0.0/24", "gateway": "10.123.0.1"}]}},
            "backend": null,
            "frontend": {"driver": "bridge"}
        }
    });
    assert!(validator.is_valid(&ok), "other networks and Compose's network keys are allowed");
    let typo = serde_json::json!({"networks": {"default": {"ipam": {"config": [{"subnet": "10.123.0.0/24", "gatway": "10.123.0.1"}]}}}});
    assert!(!validator.is_valid(&typo));
    let bad = serde_json::json!({"networks": {"default": {"ipam": {"config": [{"subnet": "fd00::/64"}]}}}});
    assert!(!validator.is_valid(&bad));
}
