//! Finding where in the file a part of the typed model was written, for diagnostics raised after
//! the model is read (unknown services, port clashes, cycles).

use super::yaml::{Mark, Node, Value};

/// One step of a key path.
#[derive(Debug, Clone, Copy)]
pub enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// The mark of the deepest node on `path` that exists: a scalar value itself, or the key that
/// leads to a null, a list or a map (whose own position is usually on the next line).
pub fn mark_of(root: &Node, path: &[Seg]) -> Mark {
    let mut node = root;
    let mut mark = root.mark;
    let mut key_mark = None;
    for seg in path {
        let next = match (seg, &node.value) {
            (Seg::Key(k), Value::Map(entries)) => entries.iter().find(|e| e.key == *k).map(|e| {
                mark = e.key_mark;
                key_mark = Some(e.key_mark);
                &e.value
            }),
            (Seg::Index(i), Value::Seq(items)) => items.get(*i),
            // A list-form `depends_on: [db]` is looked up by name, as its map form would be.
            (Seg::Key(k), Value::Seq(items)) => items.iter().find(|n| n.as_str() == Some(k)),
            _ => None,
        };
        match next {
            Some(n) => {
                node = n;
                let via_key = std::mem::take(&mut key_mark);
                mark = match (&n.value, via_key) {
                    (Value::Scalar(s), _) if !s.is_null() => n.mark,
                    (_, Some(k)) => k,
                    _ => n.mark,
                };
            }
            None => break,
        }
    }
    mark
}

/// Renders a key path as `services.web.ports[1]`.
pub fn path_string(path: &[Seg]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) if s.is_empty() => s.push_str(k),
            Seg::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Seg::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}
