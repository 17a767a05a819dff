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
    schema
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
