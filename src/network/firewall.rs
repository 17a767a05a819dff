//! nftables rules of a project, in devenv's own table `inet devenv`: masquerade for egress,
//! DNAT for published ports (prerouting and output hooks, so 127.0.0.1 works too), and the
//! sysctls and Docker accommodations they need.
//!
//! Each project has its own base chains `pre-<hash>`, `out-<hash>`, `post-<hash>` (nftables allows
//! several base chains on one hook), so a project's rules are replaced or deleted without touching
//! another's and without rule handles. A ruleset is applied as one `nft -j` transaction: add the
//! table and chains (no-ops when present), flush the project's chains, add its rules.

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
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
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

fn dnat_rules(chain: &str, ports: &[PublishedPort]) -> Vec<Value> {
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
            json!({"add": {"rule": {"family": "inet", "table": TABLE, "chain": chain, "expr": expr}}})
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
    cmds.extend(dnat_rules(&pre, r.ports));
    cmds.extend(dnat_rules(&out, r.ports));
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

fn firewall_lock() -> Result<std::fs::File> {
    std::fs::create_dir_all("/run/devenv")
        .map_err(|e| NetworkError::io("creating /run/devenv", e))?;
    super::ipam::lock_file(std::path::Path::new(FIREWALL_LOCK))
}

/// Installs or replaces the project's rules; sets `ip_forward` and the bridge's `route_localnet`
/// (DNAT of 127.0.0.1 to another interface is dropped as martian without it); opens Docker's
/// DOCKER-USER chain for the bridge when dockerd has made one.
pub fn apply(r: &ProjectRules) -> Result<()> {
    let _lock = firewall_lock()?;
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
/// pieces: every one is tried, the first error is returned.
pub fn remove(hash: &str, bridge: &str) -> Result<()> {
    let _lock = firewall_lock()?;
    let mut first = docker_user(bridge, false).err();
    let mine = project_chains(hash)?;
    let cmds: Vec<Value> = mine
        .iter()
        .map(|c| json!({"delete": {"chain": {"family": "inet", "table": TABLE, "name": c}}}))
        .collect();
    if !cmds.is_empty() {
        if let Err(e) = nft(&json!({"nftables": cmds}), &format!("deleting the chains of {bridge}"))
        {
            first.get_or_insert(e);
        }
    }
    let out = Command::new("nft").args(["-j", "list", "chains", "inet"]).output();
    let left = out.map(|o| table_chains(&serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)));
    let table_exists = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .output()
        .is_ok_and(|o| o.status.success());
    if table_exists && left.is_ok_and(|l| l.is_empty()) {
        let del = json!({"nftables": [{"delete": {"table": {"family": "inet", "name": TABLE}}}]});
        if let Err(e) = nft(&del, "deleting the empty table inet devenv") {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
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
    let iptables = |args: &[&str]| {
        Command::new(program).args(args).stderr(std::process::Stdio::piped()).output()
    };
    if !iptables(&["-n", "-L", "DOCKER-USER"]).is_ok_and(|o| o.status.success()) {
        return Ok(());
    }
    for dir in ["-i", "-o"] {
        let rule = ["DOCKER-USER", dir, bridge, "-j", "ACCEPT"];
        let with = |cmd: &'static str| -> Vec<&str> { [cmd].into_iter().chain(rule).collect() };
        let present = || iptables(&with("-C")).is_ok_and(|o| o.status.success());
        if add && !present() {
            let out = iptables(&with("-I"))
                .map_err(|e| NetworkError::io(format!("running {program}"), e))?;
            if !out.status.success() {
                return Err(NetworkError::Kernel {
                    op: format!("{program} -I {}", rule.join(" ")),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
        }
        // -D removes one copy a call; repeat in case a crashed run added it twice.
        if !add {
            while present() && iptables(&with("-D")).is_ok_and(|o| o.status.success()) {}
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
}
