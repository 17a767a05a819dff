//! Variable interpolation in project-file values, with Docker Compose's rules (compose-go's
//! `template` package): `$VAR`, `${VAR}`, the `:-` `-` `:?` `?` `:+` `+` modifiers whose words
//! may hold further interpolations, and `$$` for a literal `$`.
//!
//! A hand-written scanner rather than Compose's regular expression: it runs on every scalar of
//! the project file, allocates nothing for the (common) values without a `$`, and knows where
//! each expression starts so errors can point at a column.

use std::borrow::Cow;

/// A malformed interpolation, or a `?`-form whose variable is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InterpolationError {
    /// Byte offset in the input of the `$` that starts the offending expression.
    pub offset: usize,
    pub message: String,
}

/// Replaces every interpolation in `input`, looking variables up with `lookup`.
/// Returns `Cow::Borrowed` when the input has no `$` at all (the common case; keep it
/// allocation-free).
///
/// An unset variable without a modifier becomes the empty string, as in Compose; a caller that
/// wants Compose's "variable is not set" warning can emit it from `lookup`.
pub fn interpolate<'a>(
    input: &'a str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, InterpolationError> {
    if !input.contains('$') {
        return Ok(Cow::Borrowed(input));
    }
    let mut out = String::with_capacity(input.len() + 16);
    expand(input, 0, input.len(), lookup, &mut out, 0)?;
    Ok(Cow::Owned(out))
}

/// Deeper nesting than this is certainly a mistake, and recursing without bound on a hostile
/// file could overflow the stack.
const MAX_DEPTH: usize = 64;

const ESCAPE_HINT: &str = "you may need to escape any $ with another $";
const FORMS_HINT: &str = "use ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, \
                          ${VAR:+replacement} or ${VAR+replacement}";

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Expands `input[start..end]` onto `out`. The bound matters for words: Compose interpolates a
/// default, replacement or message as a template of its own, so an expression inside a word can
/// never reach past the word's closing brace.
fn expand(
    input: &str,
    start: usize,
    end: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    depth: usize,
) -> Result<(), InterpolationError> {
    let b = &input.as_bytes()[..end];
    let mut pos = start;
    // Every index compared or sliced at below sits next to an ASCII byte, hence on a char
    // boundary, and ASCII bytes never occur inside a multi-byte UTF-8 sequence.
    while let Some(rel) = input[pos..end].find('$') {
        let dollar = pos + rel;
        out.push_str(&input[pos..dollar]);
        pos = match b.get(dollar + 1) {
            Some(b'$') => {
                out.push('$');
                dollar + 2
            }
            Some(b'{') => braced(input, dollar, end, lookup, out, depth)?,
            Some(&c) if is_name_start(c) => {
                let name_end = scan_name(b, dollar + 1);
                out.push_str(&lookup(&input[dollar + 1..name_end]).unwrap_or_default());
                name_end
            }
            // Compose leaves a `$` that starts nothing (`$1`, `a $ b`, a trailing `$`) as it is.
            _ => {
                out.push('$');
                dollar + 1
            }
        };
    }
    out.push_str(&input[pos..end]);
    Ok(())
}

fn scan_name(b: &[u8], from: usize) -> usize {
    from + b[from..].iter().take_while(|&&c| is_name_char(c)).count()
}

/// Expands the `${...}` starting at `dollar` and returns the index just past its closing brace.
fn braced(
    input: &str,
    dollar: usize,
    end: usize,
    lookup: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    depth: usize,
) -> Result<usize, InterpolationError> {
    let b = &input.as_bytes()[..end];
    // Compose matches `${...}` with a regular expression whose `.` stops at a newline, so an
    // expression never spans lines.
    let line_end = b[dollar..].iter().position(|&c| c == b'\n').map_or(end, |i| dollar + i);
    let last_close = b[dollar..line_end].iter().rposition(|&c| c == b'}').map(|i| dollar + i);
    let err = |reason: String| {
        let shown = match b[dollar..line_end].iter().position(|&c| c == b'}') {
            Some(i) => &input[dollar..=dollar + i],
            None => &input[dollar..line_end],
        };
        Err(InterpolationError {
            offset: dollar,
            message: format!("invalid interpolation format for {shown:?}: {reason}"),
        })
    };
    let unterminated = || {
        let why = if input[line_end..end].contains('}') {
            " (an interpolation must end on the line it starts on)"
        } else {
            ""
        };
        err(format!("missing closing }}{why}; {ESCAPE_HINT}"))
    };

    let name_start = dollar + 2;
    let name_end = if b.get(name_start).is_some_and(|&c| is_name_start(c)) {
        scan_name(b, name_start)
    } else {
        name_start
    };
    let name = &input[name_start..name_end];
    if !name.is_empty() && b.get(name_end) == Some(&b'}') {
        out.push_str(&lookup(name).unwrap_or_default());
        return Ok(name_end + 1);
    }
    let Some(last_close) = last_close else { return unterminated() };
    let (colon, op) = match (b.get(name_end), b.get(name_end + 1)) {
        (Some(b':' | b'-' | b'?' | b'+' | b'}'), _) if name.is_empty() => {
            return err(format!("missing variable name; {ESCAPE_HINT}"));
        }
        (Some(b':'), Some(&op @ (b'-' | b'?' | b'+'))) => (true, op),
        (Some(&op @ (b'-' | b'?' | b'+')), _) => (false, op),
        (Some(b':'), _) => {
            let shown = input[name_end + 1..end].chars().next().filter(|&c| c != '}');
            let shown = format!(":{}", shown.map(String::from).unwrap_or_default());
            return err(format!("unknown modifier {shown:?}; {FORMS_HINT}"));
        }
        _ => {
            // A character no name may hold: quote the whole would-be name, which reads better
            // than the single character (`"FOO.BAR"`, `"1A"`, `" foo"`).
            let token_end = b[name_start..line_end]
                .iter()
                .position(|c| b"}:-?+".contains(c))
                .map_or(line_end, |i| name_start + i);
            let token = &input[name_start..token_end];
            return err(format!(
                "{token:?} is not a valid variable name (letters, digits and _, not starting \
                 with a digit); {ESCAPE_HINT}"
            ));
        }
    };
    if depth >= MAX_DEPTH {
        return err(format!("interpolations are nested more than {MAX_DEPTH} deep"));
    }

    // Where the word ends, as Compose finds it: the brace that balances the opening one, counting
    // every `{` and `}` (so `${JSON:-{"a":1}}` keeps its braces); failing that, the last `}` on
    // the line, where Compose's greedy `(.*)}` stops.
    let word_start = name_end + 1 + usize::from(colon);
    let mut open = 0usize;
    let close = (dollar + 1..=last_close)
        .find(|&i| {
            match b[i] {
                b'{' => open += 1,
                b'}' => open -= 1,
                _ => return false,
            }
            open == 0
        })
        .unwrap_or(last_close);

    // Compose interpolates the word before it looks at the variable, so an error in a word (a
    // malformed expression, a missing required variable) is reported even when the word ends up
    // unused. Expanding it straight onto `out` and truncating when unused saves a buffer.
    let mark = out.len();
    expand(input, word_start, close, lookup, out, depth + 1)?;
    let value = lookup(name);
    let usable = value.as_deref().filter(|v| !colon || !v.is_empty());
    match (op, usable) {
        // `-` and `?` yield the variable when usable; `+` yields the word when usable.
        (b'-' | b'?', Some(v)) => {
            out.truncate(mark);
            out.push_str(v);
        }
        (b'+', None) => out.truncate(mark),
        (b'-', None) | (_, Some(_)) => {}
        (_, None) => {
            let reason = out.split_off(mark);
            let message = if reason.is_empty() {
                format!(
                    "required variable {name} is missing a value: set it in the environment or \
                     in .env"
                )
            } else {
                format!("required variable {name} is missing a value: {reason}")
            };
            return Err(InterpolationError { offset: dollar, message });
        }
    }
    Ok(close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// FOO is set, BAR is set but empty, everything else is unset.
    fn env(name: &str) -> Option<String> {
        match name {
            "FOO" => Some("first".into()),
            "BAR" => Some(String::new()),
            "UNI" => Some("ünï".into()),
            _ => None,
        }
    }

    fn ok(input: &str) -> String {
        match interpolate(input, &env) {
            Ok(out) => out.into_owned(),
            Err(e) => panic!("{input:?}: unexpected error {e:?}"),
        }
    }

    #[test]
    fn without_dollar_borrows() {
        for input in ["", "plain", "héllo wörld {x}", "a\nb"] {
            assert!(matches!(interpolate(input, &env), Ok(Cow::Borrowed(s)) if s == input));
        }
        assert!(matches!(interpolate("$FOO", &env), Ok(Cow::Owned(_))));
    }

    #[test]
    fn expands() {
        let cases = [
            // Plain and braced names; a `$NAME` ends at the first non-name character.
            ("$FOO", "first"),
            ("${FOO}", "first"),
            ("x$FOO-bar", "xfirst-bar"),
            ("$FOO_BAR", ""),
            ("${FOO}_BAR", "first_BAR"),
            ("$foo ${foo}", " "),
            ("$UNSET|${UNSET}|$BAR|${BAR}", "|||"),
            ("${FOO}/${BAR:-b}/$FOO", "first/b/first"),
            ("a\n${FOO}\n$FOO", "a\nfirst\nfirst"),
            // Unicode around variables and in values.
            ("é$FOOé", "éfirsté"),
            ("日本${FOO}日本", "日本first日本"),
            ("«$UNI»", "«ünï»"),
            // A `$` that starts nothing stays, as in compose-go.
            ("$é", "$é"),
            ("$1", "$1"),
            ("a $ string", "a $ string"),
            ("^REGEX$", "^REGEX$"),
            ("$}", "$}"),
            ("$", "$"),
            ("$-{FOO}", "$-{FOO}"),
            // `$$` is a literal `$` and starts nothing.
            ("$$", "$"),
            ("$${FOO}", "${FOO}"),
            ("$$FOO", "$FOO"),
            ("$$$FOO", "$first"),
            ("$$$$", "$$"),
            ("${UNSET:-$$}", "$"),
            ("${UNSET:-$${FOO}}", "${FOO}"),
            ("${UNSET:-$}", "$"),
            // Defaults.
            ("${UNSET:-def}", "def"),
            ("${UNSET-def}", "def"),
            ("${BAR:-def}", "def"),
            ("${BAR-def}", ""),
            ("${FOO:-def}", "first"),
            ("${FOO-def}", "first"),
            ("${UNSET:-}", ""),
            ("${UNSET:-a b\tc é}", "a b\tc é"),
            ("${BAR:-/non:-alphanumeric}", "/non:-alphanumeric"),
            ("${UNSET-myerror?msg}", "myerror?msg"),
            ("${UNSET:-x:+y}", "x:+y"),
            // Replacements.
            ("${UNSET:+r}", ""),
            ("${UNSET+r}", ""),
            ("${BAR:+r}", ""),
            ("${BAR+r}", "r"),
            ("${FOO:+r}", "r"),
            ("${FOO+r}", "r"),
            // Required forms that are satisfied.
            ("${FOO:?err}", "first"),
            ("${FOO?err}", "first"),
            ("${BAR?err}", ""),
            ("${FOO?bar-baz}", "first"),
            // Nesting.
            ("ok ${UNSET-$FOO}", "ok first"),
            ("ok ${UNSET-${FOO}}", "ok first"),
            ("ok ${UNSET-${FOO} ${FOO}}", "ok first first"),
            ("ok ${BAR:-${FOO}}", "ok first"),
            ("ok ${BAR+$FOO ${FOO:+second}}", "ok first second"),
            ("${A:-${B:-${C:-deep}}}", "deep"),
            ("${A:-${B:-${FOO}}}!", "first!"),
            ("${FOO:+[${UNI}]}", "[ünï]"),
            // Text around the expression does not change which modifier applies.
            ("-ok ${BAR:-defaultValue}", "-ok defaultValue"),
            ("+ok ${UNSET:-${BAR-defaultValue}}", "+ok "),
            (":-ok ${UNSET-defaultValue}", ":-ok defaultValue"),
            (":?ok ${BAR-defaultValue}", ":?ok "),
            ("?ok ${BAR:-defaultValue}", "?ok defaultValue"),
            // Braces in words balance as in Compose, falling back to the line's last `}`.
            (r#"${UNSET:-{"a":1}}"#, r#"{"a":1}"#),
            (r#"${FOO:-{"a":1}}"#, "first"),
            ("${UNSET:-{x}", "{x"),
            ("${UNSET:-a}b}", "ab}"),
            ("${FOO:-a}b}", "firstb}"),
            ("{${FOO}}", "{first}"),
        ];
        for (input, want) in cases {
            assert_eq!(ok(input), want, "input {input:?}");
        }
    }

    #[test]
    fn errors() {
        const ESC: &str = "you may need to escape any $ with another $";
        let bad_name = |name: &str| {
            format!(
                "{name:?} is not a valid variable name (letters, digits and _, not starting \
                 with a digit); {ESC}"
            )
        };
        let invalid = |expr: &str, reason: &str| {
            format!("invalid interpolation format for {expr:?}: {reason}")
        };
        let unterminated = format!("missing closing }}; {ESC}");
        let modifier = |m: &str| format!("unknown modifier {m:?}; {FORMS_HINT}");
        let cases = [
            ("${", 0, invalid("${", &unterminated)),
            ("ab${FOO", 2, invalid("${FOO", &unterminated)),
            ("${FOO:-x", 0, invalid("${FOO:-x", &unterminated)),
            // The outer `${` has no balancing brace, so (as in Compose) its word runs to the last
            // `}` and the unterminated expression is the inner one.
            ("${FOO:-${BAR}", 7, invalid("${BAR", &unterminated)),
            ("${}", 0, invalid("${}", &format!("missing variable name; {ESC}"))),
            ("${:-x}", 0, invalid("${:-x}", &format!("missing variable name; {ESC}"))),
            ("${ }", 0, invalid("${ }", &bad_name(" "))),
            ("${ foo}", 0, invalid("${ foo}", &bad_name(" foo"))),
            ("${foo }", 0, invalid("${foo }", &bad_name("foo "))),
            ("${foo!}", 0, invalid("${foo!}", &bad_name("foo!"))),
            ("${1A}", 0, invalid("${1A}", &bad_name("1A"))),
            ("é ${FOO.BAR:-x}", 3, invalid("${FOO.BAR:-x}", &bad_name("FOO.BAR"))),
            ("${VAR:x}", 0, invalid("${VAR:x}", &modifier(":x"))),
            ("${VAR:}", 0, invalid("${VAR:}", &modifier(":"))),
            ("${VAR:é}", 0, invalid("${VAR:é}", &modifier(":é"))),
            (
                "x ${FOO:-a\n}",
                2,
                invalid(
                    "${FOO:-a",
                    &format!(
                        "missing closing }} (an interpolation must end on the line it starts \
                         on); {ESC}"
                    ),
                ),
            ),
            // A malformed expression inside a word is reported at its own `$`.
            ("a ${UNSET:-${1}}", 11, invalid("${1}", &bad_name("1"))),
            // Required variables; the offset is that of the `$` starting the expression.
            ("é${UNSET:?boom}", 2, "required variable UNSET is missing a value: boom".into()),
            (
                "${UNSET:?}",
                0,
                "required variable UNSET is missing a value: set it in the environment or in \
                 .env"
                    .into(),
            ),
            (
                "${BAR:?must be set}",
                0,
                "required variable BAR is missing a value: must be set".into(),
            ),
            ("${UNSET?x}", 0, "required variable UNSET is missing a value: x".into()),
            ("${UNSET?bar-baz}", 0, "required variable UNSET is missing a value: bar-baz".into()),
            (
                "${UNSET:?Mandatory ${FOO}}",
                0,
                "required variable UNSET is missing a value: Mandatory first".into(),
            ),
            // Words are interpolated before the variable is looked at, as in Compose.
            (
                "${FOO:-${BAR:?need bar}}",
                7,
                "required variable BAR is missing a value: need bar".into(),
            ),
            (
                "${UNSET:+${BAR:?need bar}}",
                9,
                "required variable BAR is missing a value: need bar".into(),
            ),
            // The first error wins.
            ("${A:?one} ${B:?two}", 0, "required variable A is missing a value: one".into()),
        ];
        for (input, offset, message) in cases {
            let want = InterpolationError { offset, message };
            assert_eq!(interpolate(input, &env), Err(want), "input {input:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}x{}", "${A:-".repeat(n), "}".repeat(n));
        assert_eq!(ok(&deep(MAX_DEPTH)), "x");
        let err = interpolate(&deep(MAX_DEPTH + 1), &env).unwrap_err();
        assert_eq!(err.offset, 5 * MAX_DEPTH);
        assert!(err.message.ends_with("interpolations are nested more than 64 deep"), "{err}");
    }

    #[test]
    fn looks_up_words_before_variables() {
        let seen = std::cell::RefCell::new(Vec::new());
        let lookup = |name: &str| {
            seen.borrow_mut().push(name.to_string());
            env(name)
        };
        let out = interpolate("$FOO ${UNSET:-$BAR} $$X", &lookup).unwrap();
        assert_eq!(out, "first  $X");
        assert_eq!(*seen.borrow(), ["FOO", "BAR", "UNSET"]);
    }
}
