//! A serde `Deserializer` over the located YAML tree.
//!
//! Every error leaves here with the line and column of the node it concerns and the key path
//! that leads to it (`services.web.ports[1]`), and an unknown key comes with the nearest valid
//! one. Typed fields read scalars leniently, as Compose does after interpolation: `"8080"` is a
//! valid port number and `yes` a valid boolean where a boolean is expected.

use std::fmt::{self, Display};

use serde::de::{self, DeserializeSeed, Error as _, IntoDeserializer, Visitor};

use super::unsupported;
use super::yaml::{Entry, Mark, Node, Scalar, Value};
use crate::suggest::nearest;

/// A key path from the document root, built on the stack as the deserializer descends.
#[derive(Clone, Copy)]
pub enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        match self {
            Path::Root => Ok(()),
            Path::Key(Path::Root, k) => f.write_str(k),
            Path::Key(p, k) => write!(f, "{p}.{k}"),
            Path::Index(p, i) => write!(f, "{p}[{i}]"),
        }
    }
}

/// A deserialization failure, located once it has passed through the node it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeError {
    pub message: String,
    pub mark: Option<Mark>,
    pub path: Option<String>,
    pub suggestion: Option<String>,
}

impl DeError {
    fn locate(mut self, mark: Mark, path: &Path) -> DeError {
        if self.mark.is_none() {
            self.mark = Some(mark);
            self.path = Some(path.to_string());
        }
        self
    }
}

impl Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: Display>(msg: T) -> Self {
        DeError { message: msg.to_string(), mark: None, path: None, suggestion: None }
    }

    fn invalid_type(unexp: de::Unexpected, exp: &dyn de::Expected) -> Self {
        let found = match unexp {
            de::Unexpected::Unit => "null".to_string(),
            de::Unexpected::Seq => "a list".to_string(),
            de::Unexpected::Map => "a map".to_string(),
            other => other.to_string(),
        };
        // serde's own wording names Rust types; say it in YAML's terms.
        let exp = exp.to_string();
        let exp = match exp.as_str() {
            e if e.starts_with("struct ") => "a map",
            "a sequence" => "a list",
            e => e,
        };
        DeError::custom(format_args!("expected {exp}, found {found}"))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        let mut e = DeError::custom(format_args!(
            "unknown key `{field}`; valid keys here: {}",
            expected.join(", ")
        ));
        // Keys devenv does not support yet are suggested too: `biuld` is most likely `build`.
        let candidates = expected.iter().chain(unsupported::SERVICE).chain(unsupported::TOP_LEVEL);
        e.suggestion = nearest(field, candidates.copied()).map(|s| format!("did you mean `{s}`?"));
        e
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        let list: Vec<String> = expected.iter().map(|v| format!("`{v}`")).collect();
        let mut e = DeError::custom(format_args!(
            "unknown value `{variant}`, expected one of {}",
            list.join(", ")
        ));
        e.suggestion =
            nearest(variant, expected.iter().copied()).map(|s| format!("did you mean `{s}`?"));
        e
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::custom(format_args!("missing required key `{field}`"))
    }
}

/// Deserializes `T` from `node`, the node found at `path`.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node, path: &Path) -> Result<T, DeError> {
    T::deserialize(NodeDe { node, path })
}

#[derive(Clone, Copy)]
struct NodeDe<'a, 'p> {
    node: &'a Node,
    path: &'p Path<'p>,
}

impl<'a> NodeDe<'a, '_> {
    fn scalar(&self) -> Option<&'a Scalar> {
        match &self.node.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// The text of a scalar for a typed (number, boolean) field, or a type error.
    fn text(&self, exp: &dyn de::Expected) -> Result<&'a str, DeError> {
        match &self.node.value {
            Value::Scalar(s) if !s.is_null() => Ok(s.text.trim()),
            Value::Scalar(_) => Err(de::Error::invalid_type(de::Unexpected::Unit, exp)),
            Value::Seq(_) => Err(de::Error::invalid_type(de::Unexpected::Seq, exp)),
            Value::Map(_) => Err(de::Error::invalid_type(de::Unexpected::Map, exp)),
        }
    }

    fn fail(&self, e: DeError) -> DeError {
        e.locate(self.node.mark, self.path)
    }
}

/// Reads an integer as YAML 1.2 does: decimal, `0o` octal, `0x` hex, with `_` separators
/// tolerated as YAML 1.1 writers produce them.
fn parse_int(text: &str) -> Option<i128> {
    let t = text.replace('_', "");
    let (neg, digits) = match t.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, t.strip_prefix('+').unwrap_or(&t)),
    };
    let v = if let Some(h) = digits.strip_prefix("0x") {
        i128::from_str_radix(h, 16).ok()?
    } else if let Some(o) = digits.strip_prefix("0o") {
        i128::from_str_radix(o, 8).ok()?
    } else if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()?
    } else {
        return None;
    };
    Some(if neg { -v } else { v })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ if text.bytes().any(|b| b.is_ascii_digit()) => text.parse().ok(),
        _ => None,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

macro_rules! integer {
    ($name:ident, $visit:ident, $ty:ty) => {
        fn $name<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            let exp = concat!("an integer (", stringify!($ty), ")");
            let r = self.text(&exp).and_then(|t| match parse_int(t) {
                Some(n) => <$ty>::try_from(n).map_err(|_| {
                    DeError::custom(format_args!(
                        "{n} is out of range: expected {} to {}",
                        <$ty>::MIN,
                        <$ty>::MAX
                    ))
                }),
                None => Err(DeError::custom(format_args!("expected an integer, found {t:?}"))),
            });
            r.and_then(|n| v.$visit(n)).map_err(|e| self.fail(e))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = match &self.node.value {
            Value::Seq(items) => {
                v.visit_seq(SeqDe { items: items.iter(), index: 0, path: self.path })
            }
            Value::Map(entries) => v.visit_map(MapDe::new(entries, self.path, false)),
            Value::Scalar(s) if s.quoted => v.visit_borrowed_str(&s.text),
            Value::Scalar(s) if s.is_null() => v.visit_unit(),
            Value::Scalar(s) => {
                let t = s.text.as_str();
                if let Some(b) = matches!(t, "true" | "True" | "TRUE" | "false" | "False" | "FALSE")
                    .then(|| t.starts_with(['t', 'T']))
                {
                    v.visit_bool(b)
                } else if let Some(n) = parse_int(t) {
                    match (u64::try_from(n), i64::try_from(n)) {
                        (Ok(u), _) => v.visit_u64(u),
                        (_, Ok(i)) => v.visit_i64(i),
                        _ => v.visit_borrowed_str(t),
                    }
                } else if let Some(f) = parse_float(t) {
                    v.visit_f64(f)
                } else {
                    v.visit_borrowed_str(t)
                }
            }
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = self.text(&"a boolean (true or false)").and_then(|t| {
            parse_bool(t).ok_or_else(|| {
                DeError::custom(format_args!("expected a boolean (true or false), found {t:?}"))
            })
        });
        r.and_then(|b| v.visit_bool(b)).map_err(|e| self.fail(e))
    }

    integer!(deserialize_i8, visit_i8, i8);
    integer!(deserialize_i16, visit_i16, i16);
    integer!(deserialize_i32, visit_i32, i32);
    integer!(deserialize_i64, visit_i64, i64);
    integer!(deserialize_u8, visit_u8, u8);
    integer!(deserialize_u16, visit_u16, u16);
    integer!(deserialize_u32, visit_u32, u32);
    integer!(deserialize_u64, visit_u64, u64);

    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(v)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        let r = self.text(&"a number").and_then(|t| {
            parse_float(t)
                .ok_or_else(|| DeError::custom(format_args!("expected a number, found {t:?}")))
        });
        r.and_then(|f| v.visit_f64(f)).map_err(|e| self.fail(e))
    }

    fn deserialize_char<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match self.scalar() {
            Some(s) if !s.is_null() => v.visit_borrowed_str(&s.text),
            _ => self.deserialize_any(v),
        }
        .map_err(|e| self.fail(e))
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        if self.node.is_null() {
            v.visit_none()
        } else {
            v.visit_some(NodeDe { node: self.node, path: self.path })
        }
        .map_err(|e| self.fail(e))
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path;
        let node = self.node;
        v.visit_newtype_struct(self).map_err(|e| e.locate(node.mark, path))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(v)
    }

    fn deserialize_map<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        match &self.node.value {
            // `key:` with nothing under it is an empty map, as Compose reads `volumes: {db: }`.
            Value::Scalar(s) if s.is_null() => v.visit_map(MapDe::new(&[], self.path, false)),
            _ => return self.deserialize_any(v),
        }
        .map_err(|e| self.fail(e))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        // Extension keys (`x-*`) are allowed in every Compose object and mean nothing to devenv.
        match &self.node.value {
            Value::Map(entries) => v.visit_map(MapDe::new(entries, self.path, true)),
            Value::Scalar(s) if s.is_null() => v.visit_map(MapDe::new(&[], self.path, true)),
            _ => return self.deserialize_any(v),
        }
        .map_err(|e| self.fail(e))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, DeError> {
        let r = match self.scalar() {
            Some(s) if !s.is_null() => {
                let d: de::value::StrDeserializer<DeError> = s.text.as_str().into_deserializer();
                v.visit_enum(d)
            }
            _ => {
                Err(DeError::custom(format_args!("expected a string, found {}", self.node.kind())))
            }
        };
        r.map_err(|e| self.fail(e))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        self.deserialize_str(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
        v.visit_unit()
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p Path<'p>,
}

impl<'de> de::SeqAccess<'de> for SeqDe<'de, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else { return Ok(None) };
        let path = Path::Index(self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path: &path })
            .map(Some)
            .map_err(|e| e.locate(node.mark, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, Entry>,
    current: Option<&'a Entry>,
    path: &'p Path<'p>,
    skip_extensions: bool,
}

impl<'a, 'p> MapDe<'a, 'p> {
    fn new(entries: &'a [Entry], path: &'p Path<'p>, skip_extensions: bool) -> Self {
        MapDe { entries: entries.iter(), current: None, path, skip_extensions }
    }
}

impl<'de> de::MapAccess<'de> for MapDe<'de, '_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let entry = loop {
            match self.entries.next() {
                Some(e) if self.skip_extensions && e.key.starts_with("x-") => continue,
                Some(e) => break e,
                None => return Ok(None),
            }
        };
        self.current = Some(entry);
        let path = Path::Key(self.path, &entry.key);
        let key: de::value::StrDeserializer<DeError> = entry.key.as_str().into_deserializer();
        seed.deserialize(key).map(Some).map_err(|e| e.locate(entry.key_mark, &path))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let entry = self.current.take().expect("next_value called before next_key");
        let path = Path::Key(self.path, &entry.key);
        let node = &entry.value;
        seed.deserialize(NodeDe { node, path: &path }).map_err(|e| e.locate(node.mark, &path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}
