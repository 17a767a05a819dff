//! YAML to a small tree that remembers where every node came from.
//!
//! Built from saphyr-parser's events rather than a generic YAML value type because devenv needs
//! three things those types do not give together: the line and column of every key and value
//! (for diagnostics), scalars kept as their source text (Compose reads `1.10` as the string
//! `1.10` wherever a string is expected, and interpolation works on the text), and Compose's
//! merge keys (`<<: *defaults`), which YAML 1.2 parsers leave to the application.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle, ScanError, Span, SpannedEventReceiver};

/// A position in the source: 1-based line and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn from_saphyr(m: saphyr_parser::Marker) -> Mark {
        Mark { line: m.line(), column: m.col() + 1 }
    }
}

impl fmt::Display for Mark {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub mark: Mark,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(Scalar),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A scalar as written. `quoted` covers quoted and block scalars, which are always strings;
/// a plain scalar may also be read as null, a boolean or a number.
#[derive(Debug, Clone, PartialEq)]
pub struct Scalar {
    pub text: String,
    pub quoted: bool,
}

impl Scalar {
    /// YAML 1.2 core schema nulls.
    pub fn is_null(&self) -> bool {
        !self.quoted && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_mark: Mark,
    pub value: Node,
}

impl Node {
    pub fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar(s) if s.is_null())
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_map_mut(&mut self) -> Option<&mut Vec<Entry>> {
        match &mut self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) if !s.is_null() => Some(&s.text),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// A short name for the node's type, for error messages.
    pub fn kind(&self) -> &'static str {
        match &self.value {
            Value::Scalar(s) if s.is_null() => "null",
            Value::Scalar(_) => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a map",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub mark: Mark,
    pub message: String,
}

/// An upper bound on nodes produced by aliases, against "billion laughs" files.
const ALIAS_BUDGET: usize = 100_000;

/// Parses one YAML document. An empty document is an empty map.
pub fn parse(src: &str) -> Result<Node, YamlError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(src);
    let scan = parser.load(&mut builder, false);
    if let Some(e) = builder.error {
        return Err(e);
    }
    scan.map_err(|e: ScanError| YamlError {
        mark: Mark::from_saphyr(*e.marker()),
        message: format!("invalid YAML: {}", e.info()),
    })?;
    Ok(builder
        .root
        .unwrap_or(Node { mark: Mark { line: 1, column: 1 }, value: Value::Map(vec![]) }))
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, Mark)>,
        merges: Vec<Node>,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    alias_nodes: usize,
    root: Option<Node>,
    error: Option<YamlError>,
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(ev, Mark::from_saphyr(span.start)) {
            self.error = Some(e);
        }
    }
}

impl Builder {
    fn event(&mut self, ev: Event<'_>, mark: Mark) -> Result<(), YamlError> {
        match ev {
            Event::SequenceStart(anchor, _) => {
                self.stack.push(Frame::Seq { mark, anchor, items: Vec::new() })
            }
            Event::MappingStart(anchor, _) => self.stack.push(Frame::Map {
                mark,
                anchor,
                entries: Vec::new(),
                key: None,
                merges: Vec::new(),
            }),
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Frame::Seq { mark, anchor, items }) => {
                        (Node { mark, value: Value::Seq(items) }, anchor)
                    }
                    Some(Frame::Map { mark, anchor, entries, merges, .. }) => {
                        check_duplicates(&entries)?;
                        (Node { mark, value: Value::Map(apply_merges(entries, merges)?) }, anchor)
                    }
                    None => return Ok(()),
                };
                self.push(node, anchor)?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                // `!!str 123` is a string however it is written.
                let tagged_str =
                    tag.as_ref().is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "str");
                let quoted = tagged_str || !matches!(style, ScalarStyle::Plain);
                let node =
                    Node { mark, value: Value::Scalar(Scalar { text: text.into_owned(), quoted }) };
                self.push(node, anchor)?;
            }
            Event::Alias(id) => {
                let mut node = self.anchors.get(&id).cloned().ok_or_else(|| YamlError {
                    mark,
                    message: "alias refers to an unknown anchor".into(),
                })?;
                self.alias_nodes += count(&node);
                if self.alias_nodes > ALIAS_BUDGET {
                    return Err(YamlError {
                        mark,
                        message: format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                    });
                }
                node.mark = mark;
                self.push(node, 0)?;
            }
            Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd
            | Event::Nothing => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) -> Result<(), YamlError> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, merges, .. }) => match key.take() {
                None => match node.value {
                    Value::Scalar(s) => *key = Some((s.text, node.mark)),
                    _ => {
                        return Err(YamlError {
                            mark: node.mark,
                            message: "a mapping key must be a string, not a list or a map".into(),
                        })
                    }
                },
                Some((k, key_mark)) if k == "<<" => {
                    let _ = key_mark;
                    merges.push(node);
                }
                // Duplicates are found when the map ends: a scan per key here would make a
                // 500-service file quadratic.
                Some((k, key_mark)) => entries.push(Entry { key: k, key_mark, value: node }),
            },
        }
        Ok(())
    }
}

/// The first key, in file order, written twice in one map.
fn check_duplicates(entries: &[Entry]) -> Result<(), YamlError> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_unstable_by(|&a, &b| entries[a].key.cmp(&entries[b].key).then(a.cmp(&b)));
    let second =
        order.windows(2).filter(|w| entries[w[0]].key == entries[w[1]].key).min_by_key(|w| w[1]);
    match second {
        None => Ok(()),
        Some(w) => {
            let (first, again) = (&entries[w[0]], &entries[w[1]]);
            Err(YamlError {
                mark: again.key_mark,
                message: format!(
                    "duplicate key `{}` (first defined at line {})",
                    again.key, first.key_mark.line
                ),
            })
        }
    }
}

/// Applies `<<` merge keys: entries of the merged maps are added unless the map sets the key
/// itself; with a list of maps, earlier maps win (YAML 1.1 merge key semantics).
fn apply_merges(mut entries: Vec<Entry>, merges: Vec<Node>) -> Result<Vec<Entry>, YamlError> {
    for merge in merges {
        let sources = match merge.value {
            Value::Map(m) => vec![m],
            Value::Seq(items) => items
                .into_iter()
                .map(|n| match n.value {
                    Value::Map(m) => Ok(m),
                    _ => Err(YamlError { mark: n.mark, message: "`<<` merges only maps".into() }),
                })
                .collect::<Result<_, _>>()?,
            _ => {
                return Err(YamlError {
                    mark: merge.mark,
                    message: "`<<` needs a map or a list of maps, like `<<: *defaults`".into(),
                })
            }
        };
        for source in sources {
            for e in source {
                if !entries.iter().any(|x| x.key == e.key) {
                    entries.push(e);
                }
            }
        }
    }
    Ok(entries)
}

fn count(node: &Node) -> usize {
    match &node.value {
        Value::Scalar(_) => 1,
        Value::Seq(items) => 1 + items.iter().map(count).sum::<usize>(),
        Value::Map(entries) => 1 + entries.iter().map(|e| 1 + count(&e.value)).sum::<usize>(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: &Node) -> &str {
        n.as_str().unwrap()
    }

    #[test]
    fn marks_are_one_based_and_point_at_keys_and_values() {
        let root = parse("services:\n  web:\n    image: nginx\n").unwrap();
        let web = &root.get("services").unwrap().value.get("web").unwrap().value;
        let image = web.get("image").unwrap();
        assert_eq!(image.key_mark, Mark { line: 3, column: 5 });
        assert_eq!(image.value.mark, Mark { line: 3, column: 12 });
        assert_eq!(s(&image.value), "nginx");
    }

    #[test]
    fn scalars_keep_their_text_and_quoting() {
        let root = parse("a: 1.10\nb: '1.10'\nc: |\n  x\nd:\ne: !!str 5\n").unwrap();
        let get = |k| match &root.get(k).unwrap().value.value {
            Value::Scalar(s) => s.clone(),
            _ => panic!(),
        };
        assert_eq!(get("a"), Scalar { text: "1.10".into(), quoted: false });
        assert_eq!(get("b"), Scalar { text: "1.10".into(), quoted: true });
        assert_eq!(get("c"), Scalar { text: "x\n".into(), quoted: true });
        assert!(get("d").is_null());
        assert!(get("e").quoted);
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let src = "x-base: &base\n  image: busybox\n  restart: always\nservices:\n  a:\n    <<: *base\n    restart: \"no\"\n";
        let root = parse(src).unwrap();
        let a = &root.get("services").unwrap().value.get("a").unwrap().value;
        assert_eq!(s(&a.get("image").unwrap().value), "busybox");
        assert_eq!(s(&a.get("restart").unwrap().value), "no");
        assert_eq!(a.as_map().unwrap().len(), 2);
    }

    #[test]
    fn merge_of_a_list_prefers_earlier_maps() {
        let src = "a: &a {k: 1}\nb: &b {k: 2, j: 3}\nc:\n  <<: [*a, *b]\n";
        let root = parse(src).unwrap();
        let c = &root.get("c").unwrap().value;
        assert_eq!(s(&c.get("k").unwrap().value), "1");
        assert_eq!(s(&c.get("j").unwrap().value), "3");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(e.mark, Mark { line: 3, column: 1 });
        assert_eq!(e.message, "duplicate key `a` (first defined at line 1)");
    }

    #[test]
    fn syntax_errors_have_a_location() {
        let e = parse("services:\n  web: [a, b\n").unwrap_err();
        assert!(e.message.starts_with("invalid YAML: "), "{e:?}");
        assert!(e.mark.line >= 2, "{e:?}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut src = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..6 {
            let prev = if i == 0 { "a".to_string() } else { format!("l{}", i - 1) };
            src.push_str(&format!("l{i}: &l{i} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"));
        }
        let e = parse(&src).unwrap_err();
        assert!(e.message.contains("aliases expand"), "{e:?}");
    }

    #[test]
    fn empty_document_is_an_empty_map() {
        assert_eq!(parse("").unwrap().as_map().unwrap().len(), 0);
        assert_eq!(parse("# only a comment\n").unwrap().as_map().unwrap().len(), 0);
    }
}
