//! Durations (`1m30s`, Go's syntax as Compose reads it), byte sizes (`512m`, `1.5g`, Docker's
//! binary units), and [`text_of`], which reads any scalar as its text for the other config
//! modules.

use std::fmt;
use std::str::FromStr;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A length of time, as Compose reads `stop_grace_period` and healthcheck intervals: a Go duration
/// (`1h2m3s`, `1.5s`, `500ms`, `10us`) with Compose's extra `d` (day) and `w` (week) units.
///
/// Like Compose, a number without a unit is rejected ("missing unit"), except `0`, which Go
/// accepts. Negative durations, which Go parses, mean nothing in a project file and are rejected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

/// Units and their length in nanoseconds; `µs` (micro sign) and `μs` (Greek mu) are Go's.
const UNITS: [(&str, u128); 10] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("μs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
    ("w", 604_800_000_000_000),
];

/// Go durations are signed 64-bit nanosecond counts; Compose cannot express anything longer.
const MAX_NANOS: u128 = i64::MAX as u128;

impl FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || {
            format!(
                "invalid duration {s:?}: expected a number with a unit, like \"10s\" or \"1m30s\""
            )
        };
        let too_long =
            || format!("duration {s:?} is too long: the longest is 2562047h (292 years)");
        let (negative, mut rest) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        if rest == "0" {
            return Ok(Duration::default());
        }
        if rest.is_empty() {
            return Err(invalid());
        }
        let mut nanos: u128 = 0;
        // Each round reads one `NUMBER[.FRACTION]UNIT` group, as Go's time.ParseDuration does.
        while !rest.is_empty() {
            let end = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
            let (number, after) = rest.split_at(end);
            let end = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
            let (unit, after) = after.split_at(end);
            rest = after;
            let (int, frac) = number.split_once('.').unwrap_or((number, ""));
            if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
                return Err(invalid());
            }
            if unit.is_empty() {
                return Err(format!(
                    "duration {s:?} has no unit: expected one of ns, us, ms, s, m, h, d, w after each number, like \"10s\""
                ));
            }
            let Some(&(_, scale)) = UNITS.iter().find(|(name, _)| *name == unit) else {
                return Err(format!(
                    "unknown unit {unit:?} in duration {s:?}: expected ns, us, ms, s, m, h, d or w, like \"10s\""
                ));
            };
            let int: u128 = if int.is_empty() { 0 } else { int.parse().map_err(|_| too_long())? };
            // The fraction is exact to the nanosecond; digits beyond 18 cannot matter.
            let (mut f, mut div) = (0u128, 1u128);
            for digit in frac.bytes().take(18) {
                f = f * 10 + u128::from(digit - b'0');
                div *= 10;
            }
            nanos = int
                .checked_mul(scale)
                .and_then(|n| n.checked_add(nanos))
                .and_then(|n| n.checked_add(f * scale / div))
                .filter(|&n| n <= MAX_NANOS)
                .ok_or_else(too_long)?;
        }
        if negative && nanos != 0 {
            return Err(format!("negative duration {s:?}: expected 0 or more, like \"10s\""));
        }
        Ok(Duration(std::time::Duration::from_nanos(nanos as u64)))
    }
}

/// `n / 10^digits` with its fraction, trailing zeros dropped: `decimal(1500, 3)` is `1.5`.
fn decimal(n: u128, digits: usize) -> String {
    let p = 10u128.pow(digits as u32);
    match n % p {
        0 => (n / p).to_string(),
        frac => {
            let frac = format!("{frac:0digits$}");
            format!("{}.{}", n / p, frac.trim_end_matches('0'))
        }
    }
}

/// Go's `time.Duration.String()`, which `docker compose config` prints: `1h0m0s`, `1m30s`,
/// `1.5s`, `500ms`, `10µs`, `0s`.
impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let n = self.0.as_nanos();
        match n {
            0 => f.write_str("0s"),
            1..1_000 => write!(f, "{n}ns"),
            1_000..1_000_000 => write!(f, "{}µs", decimal(n, 3)),
            1_000_000..1_000_000_000 => write!(f, "{}ms", decimal(n, 6)),
            _ => {
                let (secs, minutes, hours) =
                    (n % 60_000_000_000, n / 60_000_000_000 % 60, n / 3_600_000_000_000);
                if hours > 0 {
                    write!(f, "{hours}h{minutes}m")?;
                } else if minutes > 0 {
                    write!(f, "{minutes}m")?;
                }
                write!(f, "{}s", decimal(secs, 9))
            }
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // A plain `0` arrives as a number; other numbers get the "no unit" message.
        text_of(d, "a duration with a unit, like \"10s\" or \"1m30s\"")?
            .parse()
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration with units (ns, us, ms, s, m, h, d, w), like `10s` or `1m30s`.",
            "anyOf": [
                {
                    "type": "string",
                    "pattern": "^\\+?(0|(([0-9]+(\\.[0-9]*)?|\\.[0-9]+)(ns|us|µs|μs|ms|s|m|h|d|w))+)$"
                },
                {"type": "integer", "const": 0}
            ]
        })
    }
}

/// A number of bytes: an integer, or a number with a unit as Docker reads `mem_limit`.
///
/// Units are case-insensitive and binary whatever their spelling, as in Docker (`1k` = `1kb` =
/// `1KiB` = 1024): b, k, m, g, t, p, each optionally followed by `i` and/or `b`. A fraction is
/// truncated to whole bytes (`1.5k` = 1536, `0.5b` = 0), as Docker does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Docker stores sizes as signed 64-bit integers.
const MAX_BYTES: u128 = i64::MAX as u128;

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let invalid = || {
            format!("invalid size {s:?}: expected a number of bytes, optionally with a unit (b, k, m, g, t, p), like \"512m\" or \"1.5g\"")
        };
        let lower = s.to_ascii_lowercase();
        let end = lower.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(lower.len());
        let (number, unit) = lower.split_at(end);
        let unit = unit.strip_prefix(' ').unwrap_or(unit);
        let unit = unit.strip_suffix('b').unwrap_or(unit);
        let shift = match unit {
            "" => 0,
            "k" | "ki" => 10,
            "m" | "mi" => 20,
            "g" | "gi" => 30,
            "t" | "ti" => 40,
            "p" | "pi" => 50,
            _ => return Err(invalid()),
        };
        let (int, frac) = number.split_once('.').unwrap_or((number, "0"));
        if int.is_empty() || frac.is_empty() || frac.contains('.') {
            return Err(invalid());
        }
        let too_large = || {
            format!("size {s:?} is too large: the largest is {MAX_BYTES} bytes (just under 8192p)")
        };
        let int: u128 = int.parse().ok().filter(|&n| n <= MAX_BYTES).ok_or_else(too_large)?;
        let (mut f, mut div) = (0u128, 1u128);
        for digit in frac.bytes().take(18) {
            f = f * 10 + u128::from(digit - b'0');
            div *= 10;
        }
        let bytes = (int << shift) + (f << shift) / div;
        if bytes > MAX_BYTES {
            return Err(too_large());
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `1e9` is a float in YAML; Rust prints floats without exponents, so its text parses
        // like the string a user would have quoted.
        text_of(d, "a number of bytes or a size with a unit, like \"512m\"")?
            .parse()
            .map_err(de::Error::custom)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Bytes, or a number with a binary unit (b, k, m, g, t, p), like `512m`.",
            "oneOf": [
                {"type": "number", "minimum": 0},
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)? ?([kKmMgGtTpP][iI]?)?[bB]?$"}
            ]
        })
    }
}

/// Reads any scalar (string, number or boolean) as its text, for values that Compose accepts
/// both quoted and unquoted, like `published: 8080` and `published: "8000-8010"`.
pub(super) fn text_of<'de, D: Deserializer<'de>>(
    d: D,
    expecting: &'static str,
) -> Result<String, D::Error> {
    struct V(&'static str);
    impl Visitor<'_> for V {
        type Value = String;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str(self.0)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<String, E> {
            Ok(s.to_owned())
        }
        fn visit_bool<E: de::Error>(self, b: bool) -> Result<String, E> {
            Ok(b.to_string())
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<String, E> {
            Ok(n.to_string())
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<String, E> {
            Ok(n.to_string())
        }
    }
    d.deserialize_any(V(expecting))
}

/// A scalar read as its text; see [`text_of`].
pub(super) struct ScalarText(pub String);

impl<'de> Deserialize<'de> for ScalarText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        text_of(d, "a string or a number").map(ScalarText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dur(s: &str) -> Result<std::time::Duration, String> {
        s.parse::<Duration>().map(|d| d.0)
    }

    #[test]
    fn durations_parse_like_compose() {
        let ms = std::time::Duration::from_millis;
        for (input, want) in [
            ("0", ms(0)),
            ("+0", ms(0)),
            ("-0", ms(0)),
            ("0s", ms(0)),
            ("10s", ms(10_000)),
            ("1.5s", ms(1_500)),
            (".5s", ms(500)),
            ("1.s", ms(1_000)),
            ("500ms", ms(500)),
            ("10us", std::time::Duration::from_micros(10)),
            ("10µs", std::time::Duration::from_micros(10)),
            ("10μs", std::time::Duration::from_micros(10)),
            ("7ns", std::time::Duration::from_nanos(7)),
            ("1h2m3s", ms(3_723_000)),
            ("1m30s", ms(90_000)),
            ("1h30m", ms(5_400_000)),
            ("1.5h", ms(5_400_000)),
            ("2d", ms(172_800_000)),
            ("1w", ms(604_800_000)),
            ("1s500ms", ms(1_500)),
            ("0.000000001s", std::time::Duration::from_nanos(1)),
            ("2562047h", ms(2_562_047 * 3_600_000)),
        ] {
            assert_eq!(dur(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn duration_errors_explain() {
        for (input, want) in [
            ("", "invalid duration \"\": expected a number with a unit, like \"10s\" or \"1m30s\""),
            ("abc", "invalid duration \"abc\": expected a number with a unit, like \"10s\" or \"1m30s\""),
            ("1.2.3s", "invalid duration \"1.2.3s\": expected a number with a unit, like \"10s\" or \"1m30s\""),
            ("10", "duration \"10\" has no unit: expected one of ns, us, ms, s, m, h, d, w after each number, like \"10s\""),
            ("1m30", "duration \"1m30\" has no unit: expected one of ns, us, ms, s, m, h, d, w after each number, like \"10s\""),
            ("10sec", "unknown unit \"sec\" in duration \"10sec\": expected ns, us, ms, s, m, h, d or w, like \"10s\""),
            ("10 s", "unknown unit \" s\" in duration \"10 s\": expected ns, us, ms, s, m, h, d or w, like \"10s\""),
            ("-5s", "negative duration \"-5s\": expected 0 or more, like \"10s\""),
            ("2562048h", "duration \"2562048h\" is too long: the longest is 2562047h (292 years)"),
        ] {
            assert_eq!(dur(input), Err(want.to_owned()), "{input}");
        }
    }

    #[test]
    fn durations_print_like_go() {
        for (nanos, want) in [
            (0, "0s"),
            (7, "7ns"),
            (10_000, "10µs"),
            (1_500, "1.5µs"),
            (500_000_000, "500ms"),
            (1_500_000, "1.5ms"),
            (1_500_000_000, "1.5s"),
            (90_000_000_000, "1m30s"),
            (60_000_000_000, "1m0s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
        ] {
            let d = Duration(std::time::Duration::from_nanos(nanos));
            assert_eq!(d.to_string(), want);
            assert_eq!(serde_json::to_value(d).unwrap(), json!(want));
            assert_eq!(want.parse::<Duration>(), Ok(d), "round trip of {want}");
        }
    }

    #[test]
    fn durations_deserialize_from_any_scalar() {
        let de =
            |v: serde_json::Value| serde_json::from_value::<Duration>(v).map_err(|e| e.to_string());
        assert_eq!(de(json!("1m30s")), Ok(Duration(std::time::Duration::from_secs(90))));
        assert_eq!(de(json!(0)), Ok(Duration::default()));
        let no_unit = |n: &str| {
            format!("duration \"{n}\" has no unit: expected one of ns, us, ms, s, m, h, d, w after each number, like \"10s\"")
        };
        assert_eq!(de(json!(10)), Err(no_unit("10")));
        assert_eq!(de(json!(1.5)), Err(no_unit("1.5")));
        assert_eq!(de(json!(-3)), Err(no_unit("-3")));
        assert_eq!(
            de(json!({"s": 1})),
            Err("invalid type: map, expected a duration with a unit, like \"10s\" or \"1m30s\""
                .into())
        );
    }

    #[test]
    fn byte_sizes_use_binary_units() {
        for (input, want) in [
            ("0", 0),
            ("100", 100),
            ("100b", 100),
            ("100B", 100),
            ("1k", 1024),
            ("1kb", 1024),
            ("1KiB", 1024),
            ("512m", 512 << 20),
            ("512MB", 512 << 20),
            ("1g", 1 << 30),
            ("1 GB", 1 << 30),
            ("1.5g", 3 << 29),
            ("1.5k", 1536),
            ("0.5b", 0),
            ("2t", 2 << 40),
            ("1p", 1 << 50),
            ("8191p", 8191 << 50),
        ] {
            assert_eq!(input.parse::<ByteSize>(), Ok(ByteSize(want)), "{input}");
        }
    }

    #[test]
    fn byte_size_errors_explain() {
        let invalid = |s: &str| {
            format!("invalid size {s:?}: expected a number of bytes, optionally with a unit (b, k, m, g, t, p), like \"512m\" or \"1.5g\"")
        };
        for input in ["", "m", "12x", "1.5.5g", "1.g", ".5g", "-1", "1  g", "1gbb", "1ib"] {
            assert_eq!(input.parse::<ByteSize>(), Err(invalid(input)), "{input}");
        }
        assert_eq!(
            "8192p".parse::<ByteSize>(),
            Err("size \"8192p\" is too large: the largest is 9223372036854775807 bytes (just under 8192p)".into())
        );
    }

    #[test]
    fn byte_sizes_deserialize_from_any_scalar_and_serialize_as_bytes() {
        let de =
            |v: serde_json::Value| serde_json::from_value::<ByteSize>(v).map_err(|e| e.to_string());
        assert_eq!(de(json!("512m")), Ok(ByteSize(512 << 20)));
        assert_eq!(de(json!(1024)), Ok(ByteSize(1024)));
        assert_eq!(de(json!(1e9)), Ok(ByteSize(1_000_000_000)));
        assert_eq!(de(json!(2.5)), Ok(ByteSize(2)));
        let invalid = |n: &str| {
            format!("invalid size \"{n}\": expected a number of bytes, optionally with a unit (b, k, m, g, t, p), like \"512m\" or \"1.5g\"")
        };
        assert_eq!(de(json!(-1)), Err(invalid("-1")));
        assert_eq!(de(json!(-0.5)), Err(invalid("-0.5")));
        assert_eq!(de(json!(true)), Err(invalid("true")));
        assert_eq!(
            de(json!([1])),
            Err("invalid type: sequence, expected a number of bytes or a size with a unit, like \"512m\"".into())
        );
        assert_eq!(serde_json::to_value(ByteSize(1 << 30)).unwrap(), json!(1073741824));
    }
}
