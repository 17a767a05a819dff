//! `devenv schema`: print the JSON Schema of devenv.yaml.

pub fn run() -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(&crate::config::schema::json_schema())?);
    Ok(())
}
