//! The JSON Schema of the project file, generated from the same types the parser uses.
//!
//! Editors use it for completion and checking (`# yaml-language-server: $schema=...`). Keys of
//! the Compose specification that devenv does not support yet are allowed and described as such,
//! so a Compose file is not flagged where devenv itself only warns.

use schemars::generate::SchemaSettings;
use serde_json::{json, Value};

use super::model::ProjectFile;
use super::unsupported;

pub const SCHEMA_ID: &str = "https://devenv.dev/schema/devenv.schema.json";

pub fn json_schema() -> Value {
    // Draft 7 is what yaml-language-server and most editors understand best.
    let generator = SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<ProjectFile>().to_value();
    schema["$id"] = json!(SCHEMA_ID);
    schema["title"] = json!("devenv project file (devenv.yaml)");
    allow_unsupported(&mut schema, unsupported::TOP_LEVEL);
    schema["properties"]["version"] =
        json!({"description": "Obsolete; accepted and ignored.", "type": "string"});
    allow_unsupported(&mut schema["definitions"]["Service"], unsupported::SERVICE);
    networks(&mut schema);
    deploy(&mut schema);
    schema
}

/// `deploy` holds `resources`, which devenv reads, and the rest of Compose's deployment keys,
/// which it reports as unsupported.
fn deploy(schema: &mut Value) {
    let def = &mut schema["definitions"]["Deploy"];
    let props = def["properties"].as_object_mut().expect("a struct schema");
    for key in unsupported::DEPLOY {
        props.insert(
            (*key).to_owned(),
            json!({"description": "A Compose deploy key devenv does not support yet: read with a warning; `up` refuses a service that sets it."}),
        );
    }
    def["patternProperties"] = json!({"^x-": {}});
}

/// `networks:` holds the supported `default` network and any other, which devenv ignores with
/// a warning; the default network's unsupported keys are allowed too.
fn networks(schema: &mut Value) {
    let ignored = json!({"description": "A Compose network key devenv does not support yet: read with a warning and ignored."});
    let defs = &mut schema["definitions"];
    for (def, keys) in [
        ("NetworkDef", unsupported::NETWORK),
        ("Ipam", unsupported::IPAM),
        ("IpamConfig", unsupported::IPAM_CONFIG),
    ] {
        let props = defs[def]["properties"].as_object_mut().expect("a struct schema");
        for key in keys {
            props.insert((*key).to_owned(), ignored.clone());
        }
        defs[def]["patternProperties"] = json!({"^x-": {}});
    }
    let networks = &mut schema["properties"]["networks"];
    networks["properties"] = json!({
        "default": {
            "description": "The project's own bridge network.",
            "anyOf": [{"$ref": "#/definitions/NetworkDef"}, {"type": "null"}]
        }
    });
    networks["additionalProperties"] = json!({"description": "A network other than `default`: devenv does not support it yet; read with a warning and ignored."});
}

fn allow_unsupported(object: &mut Value, keys: &[&str]) {
    let props = object["properties"].as_object_mut().expect("a struct schema has properties");
    for key in keys {
        props.insert(
            (*key).to_owned(),
            json!({"description": "A Compose key devenv does not support yet: read with a warning; `up` refuses a service that sets it."}),
        );
    }
    object["patternProperties"] = json!({"^x-": {}});
}
