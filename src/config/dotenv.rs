//! Dotenv files (the project's `.env`, a service's `env_file`), read as Compose reads them
//! (compose-go's `dotenv` package): `KEY=VALUE` or `KEY: VALUE` statements, an optional
//! `export`, comments, single-quoted (literal) and double-quoted (escapes, interpolation,
//! possibly multi-line) values, and bare `KEY`s inherited from the environment.

use std::borrow::Cow;
use std::iter::Peekable;

use indexmap::IndexMap;

use super::interpolate::interpolate;

/// A dotenv file that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    /// 1-based line of the statement at fault.
    pub line: usize,
    pub message: String,
}

/// Parses a dotenv file (`.env` or an `env_file`) as Compose does: `KEY=VALUE` lines,
/// `export KEY=VALUE`, comments (`#` at line start, and ` #` after an unquoted value), blank
/// lines, single-quoted values (literal), double-quoted values (escapes \n \t \" \\ and
/// interpolation), unquoted values (trimmed, interpolated), `KEY` alone (no value: taken from
/// `lookup` if set there, else skipped).
/// Values may interpolate variables defined earlier in the same file or found by `lookup`.
/// Returns the variables in file order; errors carry the 1-based line number.
///
/// Double quotes take compose-go's escapes, `\a \b \f \n \r \t \v \\ \" \$` and `\0NNN` (octal);
/// others stay as written. As in Compose, `lookup` wins over earlier definitions in the file
/// when interpolating, and a key defined twice keeps its first position and its last value.
pub fn parse_dotenv(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    // Editors on Windows like to start files with a byte-order mark; Compose skips it too.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut vars: IndexMap<String, String> = IndexMap::new();
    let mut p = Parser { text, pos: 0, line: 1, counted: 0 };
    while p.skip_blanks_and_comments() {
        let line = p.line_at(p.pos);
        let fail = |message: String| DotenvError { line, message };
        let (key, inherited) = p.key().map_err(fail)?;
        if inherited {
            if let Some(value) = lookup(&key) {
                vars.insert(key, value);
            }
            continue;
        }
        let raw = p.value().map_err(fail)?;
        let value = match raw {
            Raw::Literal(v) => v,
            Raw::Template(t) => {
                let known = |name: &str| lookup(name).or_else(|| vars.get(name).cloned());
                match interpolate(&t, &known).map_err(|e| fail(e.message))? {
                    Cow::Borrowed(_) => t,
                    Cow::Owned(expanded) => expanded,
                }
            }
        };
        vars.insert(key, value);
    }
    Ok(vars.into_iter().collect())
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    /// Line number at byte `counted`; lines are counted lazily, only where an error could point.
    line: usize,
    counted: usize,
}

/// A value before interpolation.
enum Raw {
    Literal(String),
    Template(String),
}

/// Compose's blanks inside a statement: white space that does not end the line.
fn is_blank(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{85}' | '\u{a0}')
}

impl<'a> Parser<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn line_at(&mut self, pos: usize) -> usize {
        self.line += self.text[self.counted..pos].bytes().filter(|&b| b == b'\n').count();
        self.counted = pos;
        self.line
    }

    fn skip_blanks(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start_matches(is_blank).len();
    }

    /// Moves to the start of the next statement; false at the end of the text.
    fn skip_blanks_and_comments(&mut self) -> bool {
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.pos += rest.len() - trimmed.len();
            if !trimmed.starts_with('#') {
                return !trimmed.is_empty();
            }
            self.pos += trimmed.find('\n').unwrap_or(trimmed.len());
        }
    }

    /// Reads `[export] KEY` and its separator; `true` when the key stands alone on its line.
    fn key(&mut self) -> Result<(String, bool), String> {
        if let Some(after) = self.rest().strip_prefix("export") {
            // `exportFOO=1` and `export=1` name keys; only `export` and a blank is the keyword.
            if after.starts_with(is_blank) {
                self.pos += "export".len();
                self.skip_blanks();
            }
        }
        let rest = self.rest();
        let mut end = rest.len();
        let mut inherited = true;
        for (i, c) in rest.char_indices() {
            match c {
                '=' | ':' => {
                    (end, inherited) = (i, false);
                    break;
                }
                '\n' => {
                    end = i;
                    break;
                }
                '_' | '.' | '-' | '[' | ']' => {}
                c if c.is_alphanumeric() || is_blank(c) => {}
                c => {
                    let first_line = rest.lines().next().unwrap_or_default();
                    return Err(format!(
                        "unexpected character {:?} in variable name {first_line:?}",
                        c.to_string()
                    ));
                }
            }
        }
        let key = rest[..end].trim_end();
        if key.contains(char::is_whitespace) {
            return Err(format!("key cannot contain a space: {key:?}"));
        }
        // Compose accepts `=value` with an empty name; no process could receive it.
        if key.is_empty() {
            return Err("missing variable name before '='".to_string());
        }
        let key = key.to_string();
        // Skip the separator, or the newline after a bare key.
        self.pos += (end + 1).min(rest.len());
        Ok((key, inherited))
    }

    fn value(&mut self) -> Result<Raw, String> {
        self.skip_blanks();
        let rest = self.rest();
        let Some(quote @ ('"' | '\'')) = rest.chars().next() else {
            let line = &rest[..rest.find('\n').unwrap_or(rest.len())];
            self.pos += line.len();
            // An inline comment needs a blank before its `#`: `a#b` is a value.
            let value = line.split(" #").next().unwrap_or_default().trim_end();
            return Ok(Raw::Template(value.to_string()));
        };
        let mut value = String::new();
        let mut chars = rest.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let Some((_, next)) = chars.next() else { break };
                    if quote == '\'' {
                        // Only the quote itself is escaped in single quotes.
                        if next != '\'' {
                            value.push('\\');
                        }
                        value.push(next);
                    } else {
                        unescape(next, &mut chars, &mut value);
                    }
                }
                c if c == quote => {
                    // What follows the closing quote is read as the next statement, as Compose
                    // does; normally it is nothing, or a comment.
                    self.pos += i + 1;
                    return Ok(if quote == '"' {
                        Raw::Template(value)
                    } else {
                        Raw::Literal(value)
                    });
                }
                c => value.push(c),
            }
        }
        let first_line = rest.lines().next().unwrap_or_default();
        Err(format!("unterminated quoted value {first_line}"))
    }
}

/// Appends the meaning of the escape `\c` in a double-quoted value (compose-go's set: the XSI
/// `echo` escapes plus `\"` and `\$`); an unknown escape stays as written.
fn unescape<I: Iterator<Item = (usize, char)>>(
    c: char,
    chars: &mut Peekable<I>,
    value: &mut String,
) {
    let plain = match c {
        'a' => '\u{7}',
        'b' => '\u{8}',
        'f' => '\u{c}',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\u{b}',
        '\\' | '"' => c,
        // Interpolation comes next, and `$$` is its literal `$`.
        '$' => {
            value.push_str("$$");
            return;
        }
        // `\0NNN`, three octal digits: a byte value, like `echo`.
        '0' => {
            let mut digits = String::new();
            while digits.len() < 3 {
                match chars.next_if(|(_, d)| d.is_digit(8)) {
                    Some((_, d)) => digits.push(d),
                    None => break,
                }
            }
            match u8::from_str_radix(&digits, 8) {
                Ok(byte) if digits.len() == 3 => value.push(char::from(byte)),
                _ => {
                    value.push_str("\\0");
                    value.push_str(&digits);
                }
            }
            return;
        }
        _ => {
            value.push('\\');
            c
        }
    };
    value.push(plain);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(text: &str) -> Vec<(String, String)> {
        parse_with(text, &no_env)
    }

    fn parse_with(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<(String, String)> {
        parse_dotenv(text, lookup).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Single statements, each checked against the one variable it defines.
    #[test]
    fn values() {
        let cases = [
            ("FOO=bar", "FOO", "bar"),
            ("FOO =bar", "FOO", "bar"),
            ("FOO= bar", "FOO", "bar"),
            ("FOO=bar ", "FOO", "bar"),
            ("FOO=foobar=", "FOO", "foobar="),
            ("FOO=", "FOO", ""),
            (" KEY =value", "KEY", "value"),
            ("\tKEY=value", "KEY", "value"),
            // Keys: letters of any script, digits, `_`, `.`, `-` and brackets.
            ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
            ("a[1]=c", "a[1]", "c"),
            ("VAR-WITH-DASHES=dashes", "VAR-WITH-DASHES", "dashes"),
            ("árvíztűrő-TÜKÖR=ÁRVÍZTŰRŐ-tükör", "árvíztűrő-TÜKÖR", "ÁRVÍZTŰRŐ-tükör"),
            // YAML-style statements.
            ("OPTION_A: 1", "OPTION_A", "1"),
            ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
            ("OPTION_A=1:B", "OPTION_A", "1:B"),
            // `export`, only as a keyword followed by a blank.
            ("export OPTION_A=2", "OPTION_A", "2"),
            ("export\tOPTION_A=2", "OPTION_A", "2"),
            ("  export OPTION_A=2", "OPTION_A", "2"),
            ("export exportFoo=2", "exportFoo", "2"),
            ("exportFOO=2", "exportFOO", "2"),
            ("export_FOO =2", "export_FOO", "2"),
            ("export.FOO= 2", "export.FOO", "2"),
            ("export=2", "export", "2"),
            (r#"export OPTION_A="export A""#, "OPTION_A", "export A"),
            // Inline comments need a blank before the `#`, and never apply inside quotes.
            ("FOO=bar # this is foo", "FOO", "bar"),
            ("FOO=bar #this is foo", "FOO", "bar"),
            ("FOO=bar #", "FOO", "bar"),
            ("FOO=123#not-an-inline-comment", "FOO", "123#not-an-inline-comment"),
            ("FOO=a\t#b", "FOO", "a\t#b"),
            // Leading blanks are dropped before the value, so this `#` starts it (as in Compose).
            ("FOO= # comment", "FOO", "# comment"),
            (r##"FOO="bar#baz""##, "FOO", "bar#baz"),
            (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
            (r##"FOO="bar#baz" # comment"##, "FOO", "bar#baz"),
            ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
            // Single quotes are literal but for an escaped single quote.
            ("FOO='bar'", "FOO", "bar"),
            ("FOO=''", "FOO", ""),
            (r"FOO='\n'", "FOO", r"\n"),
            (r"FOO='a\'b'", "FOO", "a'b"),
            (r"FOO='a\\'", "FOO", r"a\\"),
            ("FOO='$BAR ${X:?never}'", "FOO", "$BAR ${X:?never}"),
            // Double quotes take compose-go's escapes; unknown ones stay as written.
            (r#"FOO="bar""#, "FOO", "bar"),
            (r#"FOO="""#, "FOO", ""),
            (r#"FOO="escaped\"bar""#, "FOO", "escaped\"bar"),
            (r#"FOO="\"quoted\"""#, "FOO", "\"quoted\""),
            (r#"FOO="'d'""#, "FOO", "'d'"),
            (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
            (r#"FOO="a\tb""#, "FOO", "a\tb"),
            (
                r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
                "KEY",
                "Z\x07Z\x08Z\x0cZ\nZ\rZ\tZ\x0bZ\\ZSZ",
            ),
            (r#"KEY="\x07\u12e4\q\01""#, "KEY", r"\x07\u12e4\q\01"),
            (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\x07z"),
            (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
            // Unquoted values take no escapes.
            (r"FOO=a\tb", "FOO", r"a\tb"),
            // Multi-line quoted values.
            ("FOO=\"a:3333\nb:443\"", "FOO", "a:3333\nb:443"),
            ("FOO='first line\nsecond line'", "FOO", "first line\nsecond line"),
            // Interpolation, not in single quotes, and not of escaped `$`.
            ("FOO=$UNSET", "FOO", ""),
            ("FOO=\"quote ${UNSET:-x}\"", "FOO", "quote x"),
            (r#"FOO="foo\$BAR""#, "FOO", "foo$BAR"),
            (r#"FOO="foo\${BAR}""#, "FOO", "foo${BAR}"),
            ("FOO=a$$b", "FOO", "a$b"),
        ];
        for (text, key, value) in cases {
            assert_eq!(parse(text), pairs(&[(key, value)]), "text {text:?}");
        }
    }

    #[test]
    fn compose_fixtures() {
        let plain = "OPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\nOPTION_F = \n\
                     OPTION_G=\nOPTION_H = my string # Inline comment\n";
        assert_eq!(
            parse(plain),
            pairs(&[
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", "3"),
                ("OPTION_D", "4"),
                ("OPTION_E", "5"),
                ("OPTION_F", ""),
                ("OPTION_G", ""),
                ("OPTION_H", "my string"),
            ])
        );
        let quoted = "OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\n\
                      OPTION_F=\"2\"\nOPTION_G=\"\"\nOPTION_H=\"\\n\"\nOPTION_I = \"echo 'asd'\"\n\
                      OPTION_J = 'first line\nsecond line\nthird line\nand so on'\n\
                      OPTION_Z = \"last value\"\n";
        assert_eq!(
            parse(quoted),
            pairs(&[
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", ""),
                ("OPTION_D", "\\n"),
                ("OPTION_E", "1"),
                ("OPTION_F", "2"),
                ("OPTION_G", ""),
                ("OPTION_H", "\n"),
                ("OPTION_I", "echo 'asd'"),
                ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
                ("OPTION_Z", "last value"),
            ])
        );
    }

    #[test]
    fn interpolation_sees_the_environment_first_then_earlier_lines() {
        let text = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\n\
                    OPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n\
                    OPTION_F=\"foo\\${OPTION_A} ${OPTION_A}\"\n";
        let want = |a: &str| {
            pairs(&[
                ("OPTION_A", "1"),
                ("OPTION_B", a),
                ("OPTION_C", a),
                ("OPTION_D", &format!("{a}_{a}")),
                ("OPTION_E", ""),
                ("OPTION_F", &format!("foo${{OPTION_A}} {a}")),
            ])
        };
        assert_eq!(parse(text), want("1"));
        let env = |name: &str| (name == "OPTION_A").then(|| "5".to_string());
        assert_eq!(parse_with(text, &env), want("5"));
        // A variable defined later is not visible.
        assert_eq!(parse("A=$B\nB=1"), pairs(&[("A", ""), ("B", "1")]));
    }

    #[test]
    fn bare_keys_come_from_the_environment_or_nowhere() {
        let env = |name: &str| match name {
            "FOO" => Some("x".to_string()),
            "LAST" => Some("y".to_string()),
            _ => None,
        };
        let text = "FOO\nBAR=1\nMISSING\n  LAST  ";
        assert_eq!(parse_with(text, &env), pairs(&[("FOO", "x"), ("BAR", "1"), ("LAST", "y")]));
    }

    #[test]
    fn layout() {
        // Blank lines, comments, CRLF, a byte-order mark, repeated keys, a statement after a
        // closing quote on the same line (read as Compose reads it).
        let text = "\u{feff}# header\n\n\t # indented comment\r\nA=1\r\nB='2'\r\nC=\"3\" D=4\n\
                    A=5 # again\n";
        assert_eq!(parse(text), pairs(&[("A", "5"), ("B", "2"), ("C", "3"), ("D", "4")]));
        for blank in ["", "\n", "\r\n", "\t\t ", "# Comment", "\t # comment"] {
            assert_eq!(parse(blank), pairs(&[]), "text {blank:?}");
        }
    }

    #[test]
    fn errors() {
        let cases = [
            ("lol$wut", 1, r#"unexpected character "$" in variable name "lol$wut""#),
            (
                "A=1\n%!(EXTRA string)=foo",
                2,
                r#"unexpected character "%" in variable name "%!(EXTRA string)=foo""#,
            ),
            ("A=1\n\nKEY WITH SPACE=1", 3, r#"key cannot contain a space: "KEY WITH SPACE""#),
            ("=value", 1, "missing variable name before '='"),
            (r#"KEY=""#, 1, r#"unterminated quoted value ""#),
            (r#"KEY="value"#, 1, r#"unterminated quoted value "value"#),
            (r#"KEY="value\""#, 1, r#"unterminated quoted value "value\""#),
            (r#"KEY="value'"#, 1, r#"unterminated quoted value "value'"#),
            ("KEY='", 1, "unterminated quoted value '"),
            ("KEY='value", 1, "unterminated quoted value 'value"),
            (r"KEY='value\'", 1, r"unterminated quoted value 'value\'"),
            ("A=1\nKEY='value\"\nB=2", 2, "unterminated quoted value 'value\""),
            // Interpolation errors carry the statement's line, counting multi-line values.
            (
                "A=\"x\ny\"\n# c\nB=${X:?need X}",
                4,
                "required variable X is missing a value: need X",
            ),
            (
                "A=${1}",
                1,
                "invalid interpolation format for \"${1}\": \"1\" is not a valid variable name \
                 (letters, digits and _, not starting with a digit); you may need to escape any \
                 $ with another $",
            ),
        ];
        for (text, line, message) in cases {
            let want = DotenvError { line, message: message.to_string() };
            assert_eq!(parse_dotenv(text, &no_env), Err(want), "text {text:?}");
        }
    }
}
