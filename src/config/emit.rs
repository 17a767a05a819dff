//! Writing the normalized project back out as YAML, for `devenv config`.

use saphyr::{Mapping, Scalar, Yaml, YamlEmitter};
use serde_json::Value;

/// Renders a JSON value as a YAML document (without the leading `---`).
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    let doc = convert(value);
    YamlEmitter::new(&mut out).dump(&doc).expect("writing to a String cannot fail");
    let body = out.strip_prefix("---\n").unwrap_or(&out);
    format!("{body}\n")
}

fn convert(value: &Value) -> Yaml<'_> {
    match value {
        Value::Null => Yaml::Value(Scalar::Null),
        Value::Bool(b) => Yaml::Value(Scalar::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Value(Scalar::Integer(i)),
            None => Yaml::Value(Scalar::FloatingPoint(n.as_f64().unwrap_or_default().into())),
        },
        Value::String(s) => Yaml::Value(Scalar::String(s.as_str().into())),
        Value::Array(items) => Yaml::Sequence(items.iter().map(convert).collect()),
        Value::Object(map) => {
            let mut m = Mapping::new();
            for (k, v) in map {
                m.insert(Yaml::Value(Scalar::String(k.as_str().into())), convert(v));
            }
            Yaml::Mapping(m)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_that_look_like_numbers_stay_strings() {
        let v = serde_json::json!({"a": "8080", "b": 8080, "c": ["x", true], "d": {}});
        let y = to_yaml(&v);
        assert!(y.contains("a: \"8080\""), "{y}");
        assert!(y.contains("b: 8080"), "{y}");
        let back = crate::config::yaml::parse(&y).unwrap();
        assert_eq!(back.get("a").unwrap().value.as_str(), Some("8080"));
    }
}
