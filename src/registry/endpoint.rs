//! Where a registry name is reached: `docker.io` is `registry-1.docker.io`, plain HTTP only for
//! loopback hosts and the ones the user lists as insecure, and docker.io's mirrors first.

use std::net::IpAddr;

use super::RegistryConfig;

/// The registry Docker Hub's API is served from.
pub const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// One place to fetch a repository from: `base` is `scheme://host[:port]`, `host` the
/// `host[:port]` that credentials and tokens are keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub base: String,
    pub host: String,
    /// A mirror (its failures fall through to the next endpoint).
    pub mirror: bool,
}

impl Endpoint {
    /// The endpoint for a registry name (`docker.io`, `ghcr.io`, `localhost:5000`, or a URL as
    /// mirrors are usually written: `https://mirror.gcr.io`).
    pub fn for_registry(registry: &str, config: &RegistryConfig) -> Endpoint {
        let (scheme, rest) = match registry.split_once("://") {
            Some((s, r)) => (Some(s.to_ascii_lowercase()), r),
            None => (None, registry),
        };
        let host = rest.trim_end_matches('/');
        let host =
            if host == "docker.io" || host == "index.docker.io" { DOCKER_HUB_API } else { host };
        let plain = match scheme.as_deref() {
            Some("http") => true,
            Some(_) => false,
            None => allows_plain_http(host, config),
        };
        let scheme = if plain { "http" } else { "https" };
        Endpoint { base: format!("{scheme}://{host}"), host: host.to_string(), mirror: false }
    }
}

/// The endpoints to try for a registry, in order: for docker.io its mirrors, then Docker Hub.
pub fn endpoints(registry: &str, config: &RegistryConfig) -> Vec<Endpoint> {
    let mut out = Vec::new();
    if registry == "docker.io" {
        for m in &config.mirrors {
            let e = Endpoint { mirror: true, ..Endpoint::for_registry(m, config) };
            if !out.contains(&e) {
                out.push(e);
            }
        }
    }
    out.push(Endpoint::for_registry(registry, config));
    out
}

/// Plain HTTP is allowed for loopback (127.0.0.0/8, ::1, localhost) and hosts listed insecure
/// (matched as `host[:port]` or as the bare host).
pub fn allows_plain_http(host_port: &str, config: &RegistryConfig) -> bool {
    let host = split_host(host_port);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    loopback
        || config.insecure.iter().any(|i| {
            let i = i.trim_start_matches("http://").trim_start_matches("https://");
            let i = i.trim_end_matches('/');
            i.eq_ignore_ascii_case(host_port) || i.eq_ignore_ascii_case(host)
        })
}

/// `host` of `host[:port]`, IPv6 brackets removed.
fn split_host(host_port: &str) -> &str {
    if let Some(rest) = host_port.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host_port.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host_port,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(mirrors: &[&str], insecure: &[&str]) -> RegistryConfig {
        RegistryConfig {
            mirrors: mirrors.iter().map(|s| s.to_string()).collect(),
            insecure: insecure.iter().map(|s| s.to_string()).collect(),
            auth_file: None,
        }
    }

    #[test]
    fn docker_hub_and_https_by_default() {
        let c = cfg(&[], &[]);
        assert_eq!(Endpoint::for_registry("docker.io", &c).base, "https://registry-1.docker.io");
        assert_eq!(Endpoint::for_registry("ghcr.io", &c).base, "https://ghcr.io");
        assert_eq!(Endpoint::for_registry("reg.example:5000", &c).base, "https://reg.example:5000");
    }

    #[test]
    fn plain_http_only_for_loopback_and_insecure() {
        let c = cfg(&[], &["reg.lan:5000", "other.lan"]);
        for host in ["localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000", "localhost"] {
            assert!(Endpoint::for_registry(host, &c).base.starts_with("http://"), "{host}");
        }
        assert_eq!(Endpoint::for_registry("reg.lan:5000", &c).base, "http://reg.lan:5000");
        assert_eq!(Endpoint::for_registry("other.lan:8443", &c).base, "http://other.lan:8443");
        for host in
            ["reg.lan:5001", "reg.lan", "10.0.0.1:5000", "localhost.example.com", "128.0.0.1"]
        {
            assert!(Endpoint::for_registry(host, &c).base.starts_with("https://"), "{host}");
        }
    }

    #[test]
    fn mirrors_first_in_order_only_for_docker_hub() {
        let c = cfg(&["https://mirror.a", "mirror.b:5000", "http://127.0.0.1:5001/"], &[]);
        let e = endpoints("docker.io", &c);
        let bases: Vec<&str> = e.iter().map(|e| e.base.as_str()).collect();
        assert_eq!(
            bases,
            [
                "https://mirror.a",
                "https://mirror.b:5000",
                "http://127.0.0.1:5001",
                "https://registry-1.docker.io"
            ]
        );
        assert_eq!(e.iter().map(|e| e.mirror).collect::<Vec<_>>(), [true, true, true, false]);
        assert_eq!(endpoints("ghcr.io", &c).len(), 1);
    }
}
