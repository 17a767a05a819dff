//! nftables rules of a project, in devenv's own table `inet devenv`: masquerade for egress,
//! DNAT for published ports (prerouting and output hooks, so 127.0.0.1 works too), and the
//! sysctls and Docker accommodations they need.
//!
//! Each project has its own base chains `pre-<hash>`, `out-<hash>`, `post-<hash>` (nftables allows
//! several base chains on one hook), so a project's rules are replaced or deleted without touching
//! another's and without rule handles. A ruleset is applied as one `nft -j` transaction: add the
//! table and chains (no-ops when present), flush the project's chains, add its rules.
//!
//! Every DNAT rule carries the comment `devenv project NAME`, so another devenv process reading the
//! table ([`claimed_ports`]) can name the project that holds a host port.

use std::net::Ipv4Addr;
use std::process::Command;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use super::{NetworkError, Result};

pub const TABLE: &str = "devenv";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    fn parse(s: &str) -> Option<Protocol> {
        match s {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host port forwarded to a container port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedPort {
    /// Only this host address, or every local address when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub container: Ipv4Addr,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// Everything the firewall needs to know of a project.
#[derive(Debug, Clone)]
pub struct ProjectRules<'a> {
    /// The project hash ([`super::project_hash`]), naming its chains.
    pub hash: &'a str,
    /// The project's name, written in the comment of its DNAT rules for [`claimed_ports`].
    pub project: &'a str,
    pub bridge: &'a str,
    pub subnet: Ipv4Net,
    pub ports: &'a [PublishedPort],
}

/// The names of the project's chains: prerouting, output, postrouting.
pub fn chain_names(hash: &str) -> [String; 3] {
    [format!("pre-{hash}"), format!("out-{hash}"), format!("post-{hash}")]
}

fn matches(protocol: &str, field: &str, right: Value) -> Value {
    json!({"match": {"op": "==", "left": {"payload": {"protocol": protocol, "field": field}}, "right": right}})
}

fn prefix(net: Ipv4Net) -> Value {
    json!({"prefix": {"addr": net.network().to_string(), "len": net.prefix_len()}})
}

/// What a DNAT rule's comment says before the project name.
const COMMENT_PREFIX: &str = "devenv project ";

/// The comment of the project's DNAT rules. nft caps comments at 128 bytes: a longer name is cut
/// (at a character boundary), which only shortens what an error message shows.
fn owner_comment(project: &str) -> String {
    let mut end = project.len().min(128 - COMMENT_PREFIX.len());
    while !project.is_char_boundary(end) {
        end -= 1;
    }
    format!("{COMMENT_PREFIX}{}", &project[..end])
}

fn dnat_rules(chain: &str, project: &str, ports: &[PublishedPort]) -> Vec<Value> {
    let comment = owner_comment(project);
    ports
        .iter()
        .map(|p| {
            let to_host = match p.host_ip {
                Some(ip) => matches("ip", "daddr", json!(ip.to_string())),
                // `fib daddr type local`: any of the host's addresses, 127.0.0.1 included.
                None => json!({"match": {"op": "==", "left": {"fib": {"result": "type", "flags": ["daddr"]}}, "right": "local"}}),
            };
            let expr = json!([
                to_host,
                matches(p.protocol.as_str(), "dport", json!(p.host_port)),
                {"dnat": {"family": "ip", "addr": p.container.to_string(), "port": p.container_port}},
            ]);
            json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "comment": comment, "expr": expr}}})
        })
        .collect()
}

/// The `nft -j` transaction installing (or replacing) the project's rules.
pub fn ruleset(r: &ProjectRules) -> Value {
    let [pre, out, post] = chain_names(r.hash);
    let mut cmds = vec![json!({"add": {"table": {"family": "inet", "name": TABLE}}})];
    for (name, hook, prio) in
        [(&pre, "prerouting", -100), (&out, "output", -100), (&post, "postrouting", 100)]
    {
        let chain = json!({"family": "inet", "table": TABLE, "name": name});
        let mut base = chain.clone();
        base["type"] = json!("nat");
        base["hook"] = json!(hook);
        base["prio"] = json!(prio);
        base["policy"] = json!("accept");
        cmds.push(json!({"add": {"chain": base}}));
        cmds.push(json!({"flush": {"chain": chain}}));
    }
    cmds.extend(dnat_rules(&pre, r.project, r.ports));
    cmds.extend(dnat_rules(&out, r.project, r.ports));
    let masq = |expr: Value| json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": post, "expr": expr}}});
    // Loopback clients of a published port: the reply must come back through the host, and a
    // source of 127.0.0.1 is not routable from the container.
    cmds.push(masq(json!([
        matches("ip", "saddr", prefix("127.0.0.0/8".parse().expect("literal"))),
        matches("ip", "daddr", prefix(r.subnet)),
        {"masquerade": null},
    ])));
    // Hairpin: a container reaching another of the project through a published port on the host's
    // address; without this the reply would go straight back over the bridge, from an address the
    // client never talked to.
    cmds.push(masq(json!([
        matches("ip", "saddr", prefix(r.subnet)),
        matches("ip", "daddr", prefix(r.subnet)),
        {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
        {"masquerade": null},
    ])));
    // Egress: the project's subnet going anywhere but itself.
    cmds.push(masq(json!([
        matches("ip", "saddr", prefix(r.subnet)),
        {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": prefix(r.subnet)}},
        {"masquerade": null},
    ])));
    json!({"nftables": cmds})
}

fn nft(payload: &Value, op: &str) -> Result<String> {
    nftables::helper::apply_ruleset_raw(
        &payload.to_string(),
        nftables::helper::DEFAULT_NFT,
        nftables::helper::DEFAULT_ARGS,
    )
    .map_err(|source| {
        // The crate's error leaves out what nft said, the useful part.
        let stderr = match &source {
            nftables::helper::NftablesError::NftFailed { stderr, .. } => stderr.trim().to_string(),
            _ => String::new(),
        };
        NetworkError::Firewall { op: op.to_string(), stderr, source: Box::new(source) }
    })
}

fn sysctl(path: &str) -> Result<()> {
    std::fs::write(path, "1").map_err(|e| NetworkError::io(format!("writing 1 to {path}"), e))
}

/// Serializes changes to the table between processes: without it, one project's teardown could
/// see the table empty and delete it just as another project's rules go in.
const FIREWALL_LOCK: &str = "/run/devenv/firewall.lock";

/// The host-wide lock on devenv's nftables table (`/run/devenv/firewall.lock`), released on drop.
/// Hold it from checking that host ports are free ([`claimed_ports`],
/// [`super::hostports::port_taken`]) until [`apply_locked`] has installed the rules claiming them,
/// so two projects cannot both see a port free and both take it.
///
/// The lock is an `flock` on a fresh open of the file: [`apply`] or [`remove`] called while this
/// process holds a `FirewallLock` would wait for itself; use the `_locked` variants.
pub struct FirewallLock(#[allow(dead_code)] std::fs::File);

/// Blocks until the firewall lock is ours.
pub fn lock() -> Result<FirewallLock> {
    std::fs::create_dir_all("/run/devenv")
        .map_err(|e| NetworkError::io("creating /run/devenv", e))?;
    super::ipam::lock_file(std::path::Path::new(FIREWALL_LOCK)).map(FirewallLock)
}

/// Installs or replaces the project's rules; sets `ip_forward` and the bridge's `route_localnet`
/// (DNAT of 127.0.0.1 to another interface is dropped as martian without it); opens Docker's
/// DOCKER-USER chain for the bridge when dockerd has made one. Takes the firewall lock.
pub fn apply(r: &ProjectRules) -> Result<()> {
    apply_locked(&lock()?, r)
}

/// [`apply`] under a lock the caller already holds.
pub fn apply_locked(_lock: &FirewallLock, r: &ProjectRules) -> Result<()> {
    sysctl("/proc/sys/net/ipv4/ip_forward")?;
    sysctl(&format!("/proc/sys/net/ipv4/conf/{}/route_localnet", r.bridge))?;
    nft(&ruleset(r), &format!("installing the rules of {}", r.bridge))?;
    docker_user(r.bridge, true)
}

/// The project's chains present in the kernel.
pub fn project_chains(hash: &str) -> Result<Vec<String>> {
    let out = Command::new("nft")
        .args(["-j", "list", "chains", "inet"])
        .output()
        .map_err(|e| NetworkError::io("running nft list chains", e))?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    let wanted = chain_names(hash);
    Ok(table_chains(&v).into_iter().filter(|c| wanted.contains(c)).collect())
}

fn table_chains(v: &Value) -> Vec<String> {
    let items = v["nftables"].as_array().cloned().unwrap_or_default();
    items
        .iter()
        .filter_map(|i| i.get("chain"))
        .filter(|c| c["table"] == TABLE && c["family"] == "inet")
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Deletes the project's chains, and the table when no project has any left. Best effort over the
/// pieces: every one is tried, the first error is returned. Takes the firewall lock.
pub fn remove(hash: &str, bridge: &str) -> Result<()> {
    remove_locked(&lock()?, hash, bridge)
}

/// [`remove`] under a lock the caller already holds.
pub fn remove_locked(_lock: &FirewallLock, hash: &str, bridge: &str) -> Result<()> {
    let mut first = docker_user(bridge, false).err();
    // One listing of the table: no table, nothing to do; only our chains in it, the table goes
    // with them; otherwise just ours.
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .output()
        .map_err(|e| NetworkError::io("running nft list table", e))?;
    if !out.status.success() {
        return first.map_or(Ok(()), Err);
    }
    let chains = table_chains(&serde_json::from_slice(&out.stdout).unwrap_or(Value::Null));
    let wanted = chain_names(hash);
    let (mine, others): (Vec<String>, Vec<String>) =
        chains.into_iter().partition(|c| wanted.contains(c));
    let cmds: Vec<Value> = if others.is_empty() {
        vec![json!({"delete": {"table": {"family": "inet", "name": TABLE}}})]
    } else {
        mine.iter()
            .map(|c| json!({"delete": {"chain": {"family": "inet", "table": TABLE, "name": c}}}))
            .collect()
    };
    if !cmds.is_empty() {
        if let Err(e) = nft(&json!({"nftables": cmds}), &format!("deleting the rules of {bridge}"))
        {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// A host port forwarded by a devenv project's DNAT rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub protocol: Protocol,
    /// Only this host address, or every local address when `None`.
    pub host_ip: Option<Ipv4Addr>,
    pub port: u16,
    /// The project's name from the rule's comment; the project hash when the rule has none.
    pub project: String,
}

/// The host ports claimed by the DNAT rules of every devenv project on the host but the one with
/// `except_hash` (pass `""` to see all). Reads `nft -j list table inet devenv`; no table, no
/// claims. Reading takes no lock: hold [`lock`] to keep the answer true until you apply.
pub fn claimed_ports(except_hash: &str) -> Result<Vec<Claim>> {
    let out = Command::new("nft")
        .args(["-j", "list", "table", "inet", TABLE])
        .output()
        .map_err(|e| NetworkError::io("running nft list table", e))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("No such file or directory") {
            return Ok(Vec::new());
        }
        return Err(NetworkError::Kernel {
            op: format!("nft -j list table inet {TABLE}"),
            message: stderr,
        });
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
        NetworkError::io(format!("reading the JSON of nft list table inet {TABLE}"), e.into())
    })?;
    Ok(parse_claims(&v, except_hash))
}

/// The DNAT claims in `nft -j list table` output, from the chains of projects other than
/// `except_hash`. A port is forwarded in both the prerouting and output chains: one claim each.
pub fn parse_claims(v: &Value, except_hash: &str) -> Vec<Claim> {
    let skip = chain_names(except_hash);
    let mut claims: Vec<Claim> = Vec::new();
    let items = v["nftables"].as_array().map(Vec::as_slice).unwrap_or_default();
    for rule in items.iter().filter_map(|i| i.get("rule")) {
        if rule["table"] != TABLE || rule["family"] != "inet" {
            continue;
        }
        let Some(chain) = rule["chain"].as_str() else { continue };
        if skip.iter().any(|s| s == chain) {
            continue;
        }
        if let Some(claim) = parse_dnat_rule(chain, rule) {
            if !claims.contains(&claim) {
                claims.push(claim);
            }
        }
    }
    claims
}

/// One rule as [`dnat_rules`] writes it: an address match (`ip daddr` or `fib daddr type local`),
/// a `dport` match, a `dnat`. Anything else is not a claim.
fn parse_dnat_rule(chain: &str, rule: &Value) -> Option<Claim> {
    let expr = rule["expr"].as_array()?;
    if !expr.iter().any(|e| e.get("dnat").is_some()) {
        return None;
    }
    let (mut protocol, mut port, mut host_ip) = (None, None, None);
    for m in expr.iter().filter_map(|e| e.get("match")) {
        if m["op"] != "==" {
            continue;
        }
        let payload = &m["left"]["payload"];
        match (payload["protocol"].as_str(), payload["field"].as_str()) {
            (Some(p), Some("dport")) => {
                protocol = Protocol::parse(p);
                port = m["right"].as_u64().and_then(|n| u16::try_from(n).ok());
            }
            (Some("ip"), Some("daddr")) => {
                host_ip = m["right"].as_str().and_then(|a| a.parse().ok());
            }
            _ => {}
        }
    }
    let project = match rule["comment"].as_str().and_then(|c| c.strip_prefix(COMMENT_PREFIX)) {
        Some(name) => name.to_string(),
        None => chain.split_once('-').map_or(chain, |(_, hash)| hash).to_string(),
    };
    Some(Claim { protocol: protocol?, host_ip, port: port?, project })
}

/// Re-adds the bridge's DOCKER-USER rules if they are missing: dockerd may have started (or
/// restarted) after the project came up. Takes the firewall lock; nothing to do without Docker.
pub fn ensure_docker_user(bridge: &str) -> Result<()> {
    let _lock = lock()?;
    docker_user(bridge, true)
}

/// With Docker on the host, its FORWARD policy DROP (and br_netfilter) drops frames between
/// containers of other bridges; an ACCEPT in DOCKER-USER for our bridge restores them. Nothing to
/// do when the chain does not exist (dockerd never ran). Both iptables backends are asked: a
/// dockerd built against the legacy one puts its chains there. (iptables-nft 1.8.9 reports a
/// missing chain as "incompatible": only the exit status is trusted.)
fn docker_user(bridge: &str, add: bool) -> Result<()> {
    for program in ["iptables", "iptables-legacy"] {
        docker_user_with(program, bridge, add)?;
    }
    Ok(())
}

fn docker_user_with(program: &str, bridge: &str, add: bool) -> Result<()> {
    // The legacy backend is only worth a process when its filter table is loaded at all.
    if program.ends_with("legacy")
        && !std::fs::read_to_string("/proc/net/ip_tables_names")
            .is_ok_and(|t| t.lines().any(|l| l == "filter"))
    {
        return Ok(());
    }
    let iptables = |args: &[&str]| {
        Command::new(program).args(args).stderr(std::process::Stdio::piped()).output()
    };
    // One listing says both whether the chain exists and which of our rules it has.
    let listed = match iptables(&["-S", "DOCKER-USER"]) {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        _ => return Ok(()),
    };
    for dir in ["-i", "-o"] {
        let rule = ["DOCKER-USER", dir, bridge, "-j", "ACCEPT"];
        let line = format!("-A {}", rule.join(" "));
        let copies = listed.lines().filter(|l| l.trim() == line).count();
        let with = |cmd: &'static str| -> Vec<&str> { [cmd].into_iter().chain(rule).collect() };
        if add && copies == 0 {
            let out = iptables(&with("-I"))
                .map_err(|e| NetworkError::io(format!("running {program}"), e))?;
            if !out.status.success() {
                return Err(NetworkError::Kernel {
                    op: format!("{program} -I {}", rule.join(" ")),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        // Every copy goes: a crashed run may have added one twice.
        if !add {
            for _ in 0..copies {
                let _ = iptables(&with("-D"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ruleset_has_project_chains_dnat_and_masquerade() {
        let ports = [PublishedPort {
            host_ip: None,
            host_port: 8080,
            container: Ipv4Addr::new(10, 89, 3, 2),
            container_port: 80,
            protocol: Protocol::Tcp,
        }];
        let r = ProjectRules {
            hash: "abcd1234",
            project: "web",
            bridge: "dv-abcd1234",
            subnet: "10.89.3.0/24".parse().unwrap(),
            ports: &ports,
        };
        let v = ruleset(&r);
        let cmds = v["nftables"].as_array().unwrap();
        let chains: Vec<&str> =
            cmds.iter().filter_map(|c| c["add"]["chain"]["name"].as_str()).collect();
        assert_eq!(chains, ["pre-abcd1234", "out-abcd1234", "post-abcd1234"]);
        let flushed = cmds.iter().filter(|c| c.get("flush").is_some()).count();
        assert_eq!(flushed, 3);
        let rules: Vec<&Value> = cmds.iter().filter_map(|c| c["add"].get("rule")).collect();
        assert_eq!(rules.len(), 5);
        let dnat = &rules[0]["expr"][2]["dnat"];
        assert_eq!(dnat, &json!({"family": "ip", "addr": "10.89.3.2", "port": 80}));
        assert_eq!(rules[0]["expr"][1]["match"]["right"], json!(8080));
        assert_eq!(rules[0]["comment"], "devenv project web");
        assert_eq!(rules[1]["comment"], "devenv project web");
        assert!(rules[2].get("comment").is_none(), "masquerade rules own no port");
        assert_eq!(rules[1]["chain"], "out-abcd1234");
        assert_eq!(rules[3]["expr"][2]["match"]["right"], "dnat");
        assert_eq!(rules[4]["expr"][1]["match"]["op"], "!=");
    }

    #[test]
    fn host_ip_and_udp_narrow_the_match() {
        let ports = [PublishedPort {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: 5353,
            container: Ipv4Addr::new(10, 89, 3, 2),
            container_port: 53,
            protocol: Protocol::Udp,
        }];
        let r = ProjectRules {
            hash: "h",
            project: "web",
            bridge: "dv-h",
            subnet: "10.89.3.0/24".parse().unwrap(),
            ports: &ports,
        };
        let v = ruleset(&r);
        let rule =
            v["nftables"].as_array().unwrap().iter().find_map(|c| c["add"].get("rule")).unwrap();
        let by_addr = json!({"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "127.0.0.1"});
        assert_eq!(rule["expr"][0]["match"], by_addr);
        assert_eq!(rule["expr"][1]["match"]["left"]["payload"]["protocol"], "udp");
    }

    /// `nft -j list table` output of nftables 1.0.6, captured from a scratch table holding the
    /// rules as [`ruleset`] writes them (renamed to `devenv`): project "web" (hash abc) publishes
    /// tcp 8080 on every address and udp 5353 on 127.0.0.1; the rule of pre-def has no comment.
    const LISTED: &str = r#"{"nftables":[
    {"metainfo":{"version":"1.0.6","release_name":"Lester Gooch #5","json_schema_version":1}},
    {"table":{"family":"inet","name":"devenv","handle":22}},
    {"chain":{"family":"inet","table":"devenv","name":"pre-abc","handle":1,"type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}},
    {"chain":{"family":"inet","table":"devenv","name":"out-abc","handle":2,"type":"nat","hook":"output","prio":-100,"policy":"accept"}},
    {"chain":{"family":"inet","table":"devenv","name":"post-abc","handle":5,"type":"nat","hook":"postrouting","prio":100,"policy":"accept"}},
    {"chain":{"family":"inet","table":"devenv","name":"pre-def","handle":8,"type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}},
    {"rule":{"family":"inet","table":"devenv","chain":"pre-abc","handle":3,"comment":"devenv project web","expr":[{"match":{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080}},{"dnat":{"family":"ip","addr":"10.89.3.2","port":80}}]}},
    {"rule":{"family":"inet","table":"devenv","chain":"pre-abc","handle":4,"comment":"devenv project web","expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"127.0.0.1"}},{"match":{"op":"==","left":{"payload":{"protocol":"udp","field":"dport"}},"right":5353}},{"dnat":{"family":"ip","addr":"10.89.3.2","port":53}}]}},
    {"rule":{"family":"inet","table":"devenv","chain":"out-abc","handle":7,"comment":"devenv project web","expr":[{"match":{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":8080}},{"dnat":{"family":"ip","addr":"10.89.3.2","port":80}}]}},
    {"rule":{"family":"inet","table":"devenv","chain":"post-abc","handle":6,"expr":[{"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"saddr"}},"right":{"prefix":{"addr":"10.89.3.0","len":24}}}},{"masquerade":null}]}},
    {"rule":{"family":"inet","table":"devenv","chain":"pre-def","handle":9,"expr":[{"match":{"op":"==","left":{"fib":{"result":"type","flags":["daddr"]}},"right":"local"}},{"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":9090}},{"dnat":{"family":"ip","addr":"10.89.3.2","port":80}}]}}
]}"#;

    #[test]
    fn claims_are_read_from_the_listed_dnat_rules() {
        let v: Value = serde_json::from_str(LISTED).unwrap();
        let claim = |protocol, host_ip, port, project: &str| Claim {
            protocol,
            host_ip,
            port,
            project: project.to_string(),
        };
        let web_tcp = claim(Protocol::Tcp, None, 8080, "web");
        let web_udp = claim(Protocol::Udp, Some(Ipv4Addr::LOCALHOST), 5353, "web");
        let def = claim(Protocol::Tcp, None, 9090, "def");
        // out-abc repeats pre-abc's port: one claim.
        assert_eq!(parse_claims(&v, ""), [web_tcp.clone(), web_udp.clone(), def.clone()]);
        assert_eq!(parse_claims(&v, "abc"), [def]);
        assert_eq!(parse_claims(&v, "def"), [web_tcp, web_udp]);
        assert_eq!(parse_claims(&Value::Null, ""), []);
    }

    #[test]
    fn rules_of_other_tables_claim_nothing() {
        let other = LISTED.replace(r#""table":"devenv""#, r#""table":"other""#);
        assert_eq!(parse_claims(&serde_json::from_str(&other).unwrap(), ""), []);
    }

    #[test]
    fn long_project_names_are_cut_to_fit_a_comment() {
        let name = "é".repeat(100);
        let c = owner_comment(&name);
        assert!(c.len() <= 128 && c.starts_with("devenv project éé"), "{c}");
        assert_eq!(owner_comment("web"), "devenv project web");
    }
}
