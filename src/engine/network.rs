//! The project network from the engine's side: the bridge and subnet lease before the first
//! bridged container, an address per service, published ports resolved and checked before
//! anything is created, the nftables rules, /etc/hosts for service discovery, and teardown.
//!
//! Addresses are leased per service rather than per container, so every address of a reconcile
//! is known before its first container starts: each container's /etc/hosts lists all of its
//! project's services from the start, and a recreated service keeps its address.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use super::{Engine, EngineError};
use crate::config::forms::NetworkMode;
use crate::config::ports::Protocol;
use crate::config::Project;
use crate::network::{
    self, bridge_name, firewall, hostports, ipam, project_hash, veth_name, ContainerAttachment,
    HostLock, Ipam, NetnsRef, NetworkError, ProjectRules, PublishedPort, RtNetlink,
};
use crate::state::{EndpointRecord, NetworkRecord, PortRecord, ProjectState};

/// Runs rtnetlink calls from the engine's blocking code on a current-thread runtime of their
/// own: it works the same from plain threads and from the supervisor's blocking pool, and costs
/// well under a millisecond.
fn with_netlink<T>(f: impl AsyncFnOnce(&RtNetlink) -> network::Result<T>) -> network::Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetworkError::io("starting a runtime for netlink", e))?;
    rt.block_on(async {
        let nl = RtNetlink::new()?;
        f(&nl).await
    })
}

/// Published ports by the container address they go to: what the project's rules are made of.
pub(super) type PortsByAddress = Vec<(Ipv4Addr, Vec<PortRecord>)>;

fn net_err(source: NetworkError) -> EngineError {
    EngineError::Network { source }
}

/// The network mode of a service, bridge when it sets none.
pub(super) fn mode(project: &Project, service: &str) -> NetworkMode {
    project.model.services[service].network_mode.clone().unwrap_or(NetworkMode::Bridge)
}

impl Engine {
    pub(super) fn ipam(&self) -> Ipam {
        Ipam::new(self.home.root().join("network"), self.pool)
    }

    /// The project's bridge with its subnet, created if needed. The record is saved in the
    /// state before the bridge exists, so a crash at any point leaves something `down` can find.
    pub(super) fn ensure_network(
        &self,
        project: &Project,
        state: &std::sync::Mutex<ProjectState>,
        save: &dyn Fn(&ProjectState) -> Result<(), EngineError>,
    ) -> Result<NetworkRecord, EngineError> {
        let hash = project_hash(&project.name, self.home.root());
        let bridge = bridge_name(&hash);
        let requested = project.default_subnet();
        let ipam = self.ipam();
        // From reading the host's networks until the bridge carries its address: another home
        // choosing at the same time must see this subnet as taken.
        let _host = HostLock::acquire(Path::new(network::HOST_LOCK)).map_err(net_err)?;
        // (An existing lease of this project is returned before the host is consulted, so our own
        // bridge from an earlier run is no conflict.)
        let host = with_netlink(async |nl| {
            use network::Netlink;
            nl.host_networks().await
        })
        .map_err(net_err)?;
        let saved = state.lock().expect("state lock").network.clone();
        if let (Some(saved), Some(req)) = (&saved, requested) {
            if saved.subnet != req.trunc() {
                return Err(EngineError::Project {
                    message: format!(
                        "the project's subnet changed from {} to {req} while it runs; run `devenv down` first to move it",
                        saved.subnet
                    ),
                });
            }
        }
        let subnet = match &saved {
            Some(s) => s.subnet,
            None => ipam.lease_subnet(&project.name, requested, &host).map_err(net_err)?,
        };
        let record = NetworkRecord { hash, bridge, subnet, gateway: ipam::gateway(subnet) };
        {
            let mut st = state.lock().expect("state lock");
            st.network = Some(record.clone());
            save(&st)?;
        }
        with_netlink(async |nl| network::ensure_bridge(nl, &record.bridge, subnet).await)
            .map_err(net_err)?;
        Ok(record)
    }

    /// An address for each bridged service of `services` (the one it has, if any), and the
    /// address map of the whole project for /etc/hosts.
    pub(super) fn allocate_addresses(
        &self,
        project: &Project,
        services: &[String],
    ) -> Result<BTreeMap<String, Ipv4Addr>, EngineError> {
        let ipam = self.ipam();
        for s in services.iter().filter(|s| mode(project, s) == NetworkMode::Bridge) {
            ipam.allocate(&project.name, s).map_err(net_err)?;
        }
        let mut addrs = ipam.addresses(&project.name).map_err(net_err)?;
        // A sidecar answers on its target's address.
        for name in project.model.services.keys() {
            if let NetworkMode::Service(target) = mode(project, name) {
                if let Some(ip) = addrs.get(&target).copied() {
                    addrs.insert(name.clone(), ip);
                }
            }
        }
        Ok(addrs)
    }

    /// Connects a created (not yet started) container to the bridge at `address`.
    pub(super) fn attach_endpoint(
        &self,
        net: &NetworkRecord,
        container: &str,
        address: Ipv4Addr,
        pid: i32,
    ) -> Result<EndpointRecord, EngineError> {
        let veth = veth_name(&net.hash, container);
        let netns = NetnsRef::of_pid(pid as u32);
        let att =
            ContainerAttachment::new(veth.clone(), netns, address, net.subnet).map_err(net_err)?;
        with_netlink(async |nl| network::attach(nl, &net.bridge, &att).await).map_err(net_err)?;
        Ok(EndpointRecord {
            veth,
            ip_address: address,
            prefix_len: net.subnet.prefix_len(),
            gateway: net.gateway,
            mac_address: network::mac_string(network::mac_for(address)),
        })
    }

    /// Deletes a container's veth if it is still there (its namespace normally took it along).
    pub(super) fn detach_endpoint(&self, endpoint: &EndpointRecord) -> Result<(), EngineError> {
        if endpoint.veth.is_empty() {
            return Ok(());
        }
        with_netlink(async |nl| network::detach(nl, &endpoint.veth).await).map_err(net_err)
    }

    /// Installs the project's rules for `ports`, each list with the container address it goes
    /// to. With `lock`, under that hold of the firewall lock.
    pub(super) fn apply_firewall(
        &self,
        lock: Option<&firewall::FirewallLock>,
        project: &str,
        net: &NetworkRecord,
        ports: &PortsByAddress,
    ) -> Result<(), EngineError> {
        let mut published = Vec::new();
        for (ip, list) in ports {
            for p in list {
                published.push(PublishedPort {
                    host_ip: match p.host_ip {
                        IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
                        _ => None,
                    },
                    host_port: p.host_port,
                    container: *ip,
                    container_port: p.container_port,
                    protocol: fw_protocol(p.protocol),
                });
            }
        }
        let rules = ProjectRules {
            project,
            hash: &net.hash,
            bridge: &net.bridge,
            subnet: net.subnet,
            ports: &published,
        };
        match lock {
            Some(l) => firewall::apply_locked(l, &rules),
            None => firewall::apply(&rules),
        }
        .map_err(net_err)
    }

    /// Removes the project's rules, bridge and leases. Best effort: every step is tried.
    pub(super) fn teardown_network(&self, project: &str, net: &NetworkRecord) -> Vec<EngineError> {
        let mut errors = Vec::new();
        if let Err(e) = firewall::remove(&net.hash, &net.bridge) {
            errors.push(net_err(e));
        }
        if let Err(e) = with_netlink(async |nl| network::delete_bridge(nl, &net.bridge).await) {
            errors.push(net_err(e));
        }
        if let Err(e) = self.ipam().release_project(project) {
            errors.push(net_err(e));
        }
        errors
    }
}

fn fw_protocol(p: Protocol) -> network::Protocol {
    match p {
        Protocol::Tcp => network::Protocol::Tcp,
        Protocol::Udp => network::Protocol::Udp,
    }
}

/// The concrete host ports of a service: fixed ones checked against what holds them (another
/// program, or another devenv project), `"80"` given a port the kernel says is free, a host range
/// for one container port the first free port in it. Called before anything is created.
pub(super) fn resolve_ports(
    project: &Project,
    service: &str,
    own_hash: &str,
) -> Result<Vec<PortRecord>, EngineError> {
    let svc = &project.model.services[service];
    let refuse = |message: String| EngineError::Refused { service: service.into(), message };
    let mut out = Vec::new();
    for m in &svc.ports.0 {
        let host_ip = match m.host_ip {
            None => None,
            Some(IpAddr::V4(ip)) if ip.is_unspecified() => None,
            Some(IpAddr::V4(ip)) => Some(ip),
            Some(IpAddr::V6(ip)) => {
                return Err(refuse(format!(
                    "publishing on the IPv6 address {ip} is not supported yet; publish on an IPv4 address or on all (\"{}\")",
                    m.target
                )))
            }
        };
        let proto = fw_protocol(m.protocol);
        let taken = |port: u16| {
            hostports::port_taken(proto, host_ip, port, own_hash).map_err(|e| refuse(e.to_string()))
        };
        let host_port = match m.published {
            None => hostports::free_port(proto, host_ip).map_err(|e| {
                refuse(format!("cannot find a free host port for {}: {e}", m.target))
            })?,
            Some(range) if range.start == range.end => {
                if let Some(holder) = taken(range.start)? {
                    return Err(EngineError::PortTaken {
                        service: service.into(),
                        port: range.start,
                        protocol: m.protocol.to_string(),
                        holder,
                        target: m.target,
                    });
                }
                range.start
            }
            Some(range) => {
                let mut free = None;
                for p in range.ports() {
                    if taken(p)?.is_none() {
                        free = Some(p);
                        break;
                    }
                }
                free.ok_or_else(|| {
                    refuse(format!("every host port in {range}/{} is in use", m.protocol))
                })?
            }
        };
        out.push(PortRecord {
            host_ip: IpAddr::V4(host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)),
            host_port,
            container_port: m.target,
            protocol: m.protocol,
        });
    }
    Ok(out)
}

/// The /etc/hosts of a container: localhost, then every service of the project that has an
/// address as `NAME` and `NAME.PROJECT`, its own hostname on its own address.
pub(super) fn hosts_text(
    project: &str,
    service: &str,
    hostname: &str,
    addrs: &BTreeMap<String, Ipv4Addr>,
) -> String {
    let mut out = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    match addrs.get(service) {
        Some(_) => {}
        None => out.push_str(&format!("127.0.1.1\t{hostname}\n")),
    }
    for (name, ip) in addrs {
        out.push_str(&format!("{ip}\t{name} {name}.{project}"));
        if name == service && hostname != service {
            out.push_str(&format!(" {hostname}"));
        }
        out.push('\n');
    }
    out
}

/// Rewrites a running container's hosts file in place: it is bind-mounted, so the same inode must
/// change (a rename would leave the container with the old file).
pub(super) fn rewrite_in_place(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).truncate(true).open(path)?;
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_list_every_service_and_the_own_hostname() {
        let addrs: BTreeMap<String, Ipv4Addr> = [
            ("db".to_string(), Ipv4Addr::new(10, 89, 0, 2)),
            ("web".to_string(), Ipv4Addr::new(10, 89, 0, 3)),
        ]
        .into();
        let t = hosts_text("shop", "web", "frontend", &addrs);
        assert!(t.contains("10.89.0.2\tdb db.shop\n"));
        assert!(t.contains("10.89.0.3\tweb web.shop frontend\n"));
        assert!(!t.contains("127.0.1.1"));
        let none = hosts_text("shop", "job", "job", &addrs);
        assert!(none.contains("127.0.1.1\tjob\n"));
    }
}
