//! Image references as Docker parses and normalizes them: `redis` is
//! `docker.io/library/redis:latest`, `user/app:1.2` is `docker.io/user/app:1.2`, and a first
//! component with a `.` or `:`, or `localhost`, is a registry host (`localhost:5000/x/y`).
//!
//! The grammar is the one of Docker's `distribution/reference` package:
//!
//! ```text
//! reference      := name [ ":" tag ] [ "@" digest ]
//! name           := [domain "/"] path-component ["/" path-component]*
//! domain         := host [":" port]
//! path-component := [a-z0-9]+ (separator [a-z0-9]+)*     separator := "." | "_" | "__" | "-"+
//! tag            := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
//! ```

use std::fmt;
use std::str::FromStr;

use super::{Digest, ImageError, Result};

/// The registry Docker uses for names without a domain.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// Docker Hub's namespace for official images (`redis` is `library/redis`).
const OFFICIAL_NAMESPACE: &str = "library";
const DEFAULT_TAG: &str = "latest";
/// Docker's limit on the length of `domain/path`.
const MAX_NAME_LEN: usize = 255;

/// A normalized image reference. `Display` gives the full form
/// (`docker.io/library/redis:7`), [`Reference::familiar`] the short one (`redis:7`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalizes a reference, as `docker pull` would.
    pub fn parse(s: &str) -> Result<Reference> {
        let fail = |reason: String| ImageError::InvalidReference { reference: s.into(), reason };
        if s.is_empty() {
            return Err(fail("the reference is empty".into()));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(fail("a 64-digit hex string is an image ID, not a name".into()));
        }

        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let digest = d.parse::<Digest>().map_err(|e| match e {
                    ImageError::InvalidDigest { reason, .. } => {
                        fail(format!("invalid digest \"{d}\": {reason}"))
                    }
                    other => other,
                })?;
                (n, Some(digest))
            }
            None => (s, None),
        };
        // The tag is after the last ':' that follows the last '/' (a ':' before that is a port).
        let last_slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[last_slash..].rfind(':') {
            Some(i) => {
                let at = last_slash + i;
                (&name_tag[..at], Some(&name_tag[at + 1..]))
            }
            None => (name_tag, None),
        };
        if let Some(tag) = tag {
            check_tag(tag).map_err(|r| fail(format!("invalid tag \"{tag}\": {r}")))?;
        }
        if name.is_empty() {
            return Err(fail("the repository name is empty".into()));
        }

        let (domain, path) = split_domain(name);
        check_domain(domain).map_err(|r| fail(format!("invalid registry \"{domain}\": {r}")))?;
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(fail(format!("repository name \"{path}\" must be lowercase")));
        }
        if path.is_empty() {
            return Err(fail("the repository name is empty".into()));
        }
        for component in path.split('/') {
            check_path_component(component).map_err(|r| {
                fail(format!("invalid repository path component \"{component}\": {r}"))
            })?;
        }

        let domain = if domain == "index.docker.io" { DEFAULT_DOMAIN } else { domain };
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_NAMESPACE}/{path}")
        } else {
            path.to_string()
        };
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(fail(format!("the name is longer than {MAX_NAME_LEN} characters")));
        }
        let tag = match (tag, &digest) {
            (Some(t), _) => Some(t.to_string()),
            (None, None) => Some(DEFAULT_TAG.to_string()),
            (None, Some(_)) => None,
        };
        Ok(Reference { domain: domain.to_string(), path, tag, digest })
    }

    /// The registry host (and port), e.g. `docker.io`, `localhost:5000`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry, e.g. `library/redis`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `domain/path`, the repository's full name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference> {
        check_tag(tag).map_err(|reason| ImageError::InvalidReference {
            reference: format!("{}:{tag}", self.name()),
            reason: format!("invalid tag \"{tag}\": {reason}"),
        })?;
        Ok(Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() })
    }

    /// The same repository pinned to a digest (any tag is kept, as Docker shows it).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference { digest: Some(digest), ..self.clone() }
    }

    /// The short form Docker shows: `redis:7`, `user/app:1.2`, `localhost:5000/x/y:latest`.
    pub fn familiar(&self) -> String {
        let mut s = if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix("library/") {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.name()
        };
        self.push_suffix(&mut s);
        s
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(tag) = &self.tag {
            s.push(':');
            s.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            s.push('@');
            s.push_str(&digest.to_string());
        }
    }
}

/// Docker's rule: the first component is a registry if it has a `.` or `:`, is `localhost`, or
/// has an uppercase letter (repository paths cannot); otherwise the name is on Docker Hub.
fn split_domain(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first, rest)
        }
        _ => (DEFAULT_DOMAIN, name),
    }
}

fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut chars = tag.chars();
    match chars.next() {
        None => Err("the tag is empty".into()),
        Some(c) if !word(c) => Err("a tag starts with a letter, digit or _".into()),
        _ if tag.len() > 128 => Err("a tag has at most 128 characters".into()),
        _ if !chars.all(|c| word(c) || c == '.' || c == '-') => {
            Err("a tag has only letters, digits, _ . and -".into())
        }
        _ => Ok(()),
    }
}

fn check_domain(domain: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(rest) = domain.strip_prefix('[') {
        // IPv6 literal: [addr] or [addr]:port
        let (addr, after) = rest.split_once(']').ok_or("unclosed [ in an IPv6 address")?;
        if addr.is_empty() || !addr.chars().all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.') {
            return Err(format!("\"{addr}\" is not an IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            _ => match after.strip_prefix(':') {
                Some(port) => (None, Some(port)),
                None => return Err("unexpected characters after the IPv6 address".into()),
            },
        }
    } else {
        match domain.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(domain), None),
        }
    };
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("the port \"{port}\" is not a number"));
        }
    }
    if let Some(host) = host {
        for label in host.split('.') {
            let ok = !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "\"{host}\" is not a host name (labels of letters, digits and inner -)"
                ));
            }
        }
    }
    Ok(())
}

/// `[a-z0-9]+ (("." | "_" | "__" | "-"+) [a-z0-9]+)*`
fn check_path_component(component: &str) -> std::result::Result<(), String> {
    const RULE: &str =
        "lowercase letters and digits, with single separators (. _ __ or dashes) between them";
    if component.is_empty() {
        return Err("empty component (double or trailing /)".into());
    }
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(format!("must start and end with a letter or digit; {RULE}"));
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return Err(format!("\"{sep}\" is not allowed; {RULE}"));
        }
    }
    Ok(())
}

impl FromStr for Reference {
    type Err = ImageError;

    fn from_str(s: &str) -> Result<Reference> {
        Reference::parse(s)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.name();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl fmt::Debug for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Reference({self})")
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Reference {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Reference::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}")).to_string()
    }

    fn err(s: &str) -> String {
        match Reference::parse(s) {
            Ok(r) => panic!("{s} parsed as {r}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(norm("redis"), "docker.io/library/redis:latest");
        assert_eq!(norm("redis:7"), "docker.io/library/redis:7");
        assert_eq!(norm("user/app:1.2"), "docker.io/user/app:1.2");
        assert_eq!(norm("docker.io/redis"), "docker.io/library/redis:latest");
        assert_eq!(norm("index.docker.io/library/redis:7"), "docker.io/library/redis:7");
        assert_eq!(norm("localhost/x"), "localhost/x:latest");
        assert_eq!(norm("localhost:5000/x/y"), "localhost:5000/x/y:latest");
        assert_eq!(norm("ghcr.io/a/b/c:v1.0-rc_1"), "ghcr.io/a/b/c:v1.0-rc_1");
        assert_eq!(
            norm(&format!("127.0.0.1:5000/x@sha256:{HEX}")),
            format!("127.0.0.1:5000/x@sha256:{HEX}")
        );
        assert_eq!(
            norm(&format!("host.io/x:tag@sha256:{HEX}")),
            format!("host.io/x:tag@sha256:{HEX}")
        );
        assert_eq!(norm("[::1]:5000/x"), "[::1]:5000/x:latest");
        assert_eq!(norm("a__b/c-d--e.f_g"), "docker.io/a__b/c-d--e.f_g:latest");
        // An uppercase first component is a registry host, as in Docker.
        assert_eq!(norm("Registry/x"), "Registry/x:latest");
    }

    #[test]
    fn parts_and_familiar_form() {
        let r = Reference::parse("redis:7").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag(), r.digest()),
            ("docker.io", "library/redis", Some("7"), None)
        );
        assert_eq!(r.name(), "docker.io/library/redis");
        assert_eq!(r.familiar(), "redis:7");
        assert_eq!(Reference::parse("user/app:1.2").unwrap().familiar(), "user/app:1.2");
        assert_eq!(
            Reference::parse("docker.io/library/a/b").unwrap().familiar(),
            "library/a/b:latest"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x/y").unwrap().familiar(),
            "localhost:5000/x/y:latest"
        );
        let pinned = Reference::parse(&format!("redis@sha256:{HEX}")).unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.familiar(), format!("redis@sha256:{HEX}"));
        assert_eq!(r.with_tag("8").unwrap().to_string(), "docker.io/library/redis:8");
        assert_eq!(r.to_string().parse::<Reference>().unwrap(), r);
    }

    #[test]
    fn malformed_references_say_what_is_wrong() {
        assert!(err("").contains("empty"));
        assert!(err("Redis").contains("must be lowercase"));
        assert!(err("user/App").contains("must be lowercase"));
        assert!(err("redis:-bad").contains("invalid tag"));
        assert!(err("redis:a/b").contains("not a number"));
        assert!(err(&format!("redis:{}", "a".repeat(129))).contains("at most 128"));
        assert!(err("redis@sha256:abc").contains("invalid digest"));
        assert!(err(&format!("redis@md5:{HEX}")).contains("only sha256"));
        assert!(err("re..dis").contains("\"..\" is not allowed"));
        assert!(err("-redis").contains("start and end"));
        assert!(err("a//b").contains("empty component"));
        assert!(err("redis:").contains("tag is empty"));
        assert!(err("localhost:port/x").contains("not a number"));
        assert!(err("bad_host.io/x").contains("not a host name"));
        assert!(err(HEX).contains("image ID"));
        assert!(err(&format!("x/{}", "a".repeat(260))).contains("longer than"));
    }
}
