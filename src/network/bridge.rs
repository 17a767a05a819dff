//! The project bridge and the container veths, as sequences of [`Netlink`] calls: names, order,
//! idempotence, and the rollback of a half-done setup.
//!
//! The bridge is `dv-<hash>` and each container's host end `dv<hash>`, hashes of the project and
//! DEVENV_HOME, so two homes (two test processes) never share a link; interface names stay within
//! the kernel's 15 characters.

use std::net::Ipv4Addr;
use std::path::Path;

use ipnet::Ipv4Net;
use sha2::{Digest, Sha256};

use super::ipam::gateway;
use super::netlink::{Netlink, NetnsConfig, NetnsRef};
use super::{NetworkError, Result};

/// MTU when the host has no default route to copy it from.
const FALLBACK_MTU: u32 = 1500;

fn hex8(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    h.finalize()[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// 8 hex digits naming a project of one DEVENV_HOME on the host (links, nftables chains).
pub fn project_hash(project: &str, home: &Path) -> String {
    hex8(&[home.as_os_str().as_encoded_bytes(), project.as_bytes()])
}

/// `dv-<project hash>`.
pub fn bridge_name(project_hash: &str) -> String {
    format!("dv-{project_hash}")
}

/// `dv<8 hex>` for a container of the project: the host end of its veth.
pub fn veth_name(project_hash: &str, container: &str) -> String {
    format!("dv{}", hex8(&[project_hash.as_bytes(), container.as_bytes()]))
}

/// Creates the bridge with the subnet's gateway address and sets it up; an existing bridge is
/// reused (and its address and state re-asserted). Returns the bridge's index. A bridge this call
/// created is deleted again if a later step fails.
pub async fn ensure_bridge<N: Netlink>(nl: &N, name: &str, subnet: Ipv4Net) -> Result<u32> {
    let (index, created) = match nl.link_index(name).await? {
        Some(i) => (i, false),
        None => (nl.create_bridge(name).await?, true),
    };
    let gw = Ipv4Net::new(gateway(subnet), subnet.prefix_len()).expect("prefix from a subnet");
    let rest = async {
        nl.add_address(index, gw).await?;
        nl.set_up(index).await
    };
    if let Err(e) = rest.await {
        if created {
            // Best effort: the original error is the one worth reporting.
            let _ = nl.delete_link(name).await;
        }
        return Err(e);
    }
    Ok(index)
}

/// Deletes the bridge; a bridge already gone is fine.
pub async fn delete_bridge<N: Netlink>(nl: &N, name: &str) -> Result<()> {
    nl.delete_link(name).await.map(drop)
}

/// A locally administered hardware address derived from the IPv4 address, as Docker does
/// (`02:42` then the address): stable across restarts, unique within the subnet.
pub fn mac_for(address: Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

pub fn mac_string(mac: [u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// One container's attachment to the project bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerAttachment {
    /// Host end of the veth, `dv<hash>`.
    pub veth: String,
    pub netns: NetnsRef,
    /// The container's address with the subnet's prefix length.
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl ContainerAttachment {
    pub fn new(veth: String, netns: NetnsRef, address: Ipv4Addr, subnet: Ipv4Net) -> Result<Self> {
        if !subnet.contains(&address) || address == gateway(subnet) {
            return Err(NetworkError::BadAddress { address, subnet });
        }
        let address = Ipv4Net::new(address, subnet.prefix_len()).expect("prefix from a subnet");
        Ok(ContainerAttachment { veth, netns, address, gateway: gateway(subnet) })
    }
}

/// Connects a container's namespace to the bridge: the veth (peer `eth0` created inside), host end
/// up, and inside the address, `lo`, the default route. A stale host end of the same name (a run
/// that crashed) is removed first. On failure the veth is deleted, which removes both ends.
pub async fn attach<N: Netlink>(nl: &N, bridge: &str, c: &ContainerAttachment) -> Result<()> {
    let bridge_index = nl.link_index(bridge).await?.ok_or_else(|| NetworkError::Kernel {
        op: format!("attaching {} to {bridge}", c.veth),
        message: "the bridge does not exist".into(),
    })?;
    let mtu = nl.default_route_mtu().await?.unwrap_or(FALLBACK_MTU);
    if nl.link_index(&c.veth).await?.is_some() {
        nl.delete_link(&c.veth).await?;
    }
    let mac = mac_for(c.address.addr());
    let index = nl.create_veth(&c.veth, bridge_index, mtu, "eth0", mac, &c.netns).await?;
    let cfg = NetnsConfig { ifname: "eth0".into(), address: c.address, gateway: c.gateway };
    let rest = async {
        nl.set_up(index).await?;
        nl.configure_netns(&c.netns, &cfg).await
    };
    if let Err(e) = rest.await {
        let _ = nl.delete_link(&c.veth).await;
        return Err(e);
    }
    // A container restarted at the same address: a packet sent to it while its old veth was
    // gone left the host's entry INCOMPLETE, and the kernel would ask again only a second
    // later (retrans_time), holding every connection meanwhile. Its MAC is known: say so.
    if let Err(e) = nl.set_neighbour(bridge_index, c.address.addr(), mac).await {
        tracing::warn!(error = %e, "setting the neighbour entry; the first packets may wait");
    }
    Ok(())
}

/// Removes the container's veth (both ends); already gone is fine.
pub async fn detach<N: Netlink>(nl: &N, veth: &str) -> Result<()> {
    nl.delete_link(veth).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::super::netlink::RecordingNetlink;
    use super::*;

    fn block<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    fn subnet() -> Ipv4Net {
        "10.89.7.0/24".parse().unwrap()
    }

    fn attachment() -> ContainerAttachment {
        let ns = NetnsRef("/proc/42/ns/net".into());
        ContainerAttachment::new("dv0000beef".into(), ns, Ipv4Addr::new(10, 89, 7, 2), subnet())
            .unwrap()
    }

    #[test]
    fn names_fit_the_kernel_and_differ_per_home() {
        let a = project_hash("web", Path::new("/home/a/.devenv"));
        let b = project_hash("web", Path::new("/home/b/.devenv"));
        assert_ne!(a, b);
        assert_eq!(bridge_name(&a).len(), 11);
        assert!(veth_name(&a, "db").starts_with("dv") && veth_name(&a, "db").len() == 10);
        assert_ne!(veth_name(&a, "db"), veth_name(&b, "db"));
    }

    #[test]
    fn bridge_created_then_reused() {
        let nl = RecordingNetlink::default();
        let i = block(ensure_bridge(&nl, "dv-1", subnet())).unwrap();
        assert_eq!(block(ensure_bridge(&nl, "dv-1", subnet())).unwrap(), i);
        assert_eq!(
            nl.calls(),
            [
                "link_index dv-1",
                "create_bridge dv-1",
                "add_address #100 10.89.7.1/24",
                "set_up #100",
                "link_index dv-1",
                "add_address #100 10.89.7.1/24",
                "set_up #100",
            ]
        );
    }

    #[test]
    fn bridge_rolled_back_when_it_cannot_come_up() {
        let nl = RecordingNetlink::default();
        *nl.fail_on.lock().unwrap() = Some("set_up".into());
        assert!(block(ensure_bridge(&nl, "dv-1", subnet())).is_err());
        assert_eq!(nl.calls().last().unwrap(), "delete_link dv-1");
        assert!(nl.links.lock().unwrap().is_empty());
    }

    #[test]
    fn attach_order_and_mtu() {
        let nl = RecordingNetlink { mtu: Some(1450), ..Default::default() };
        block(ensure_bridge(&nl, "dv-1", subnet())).unwrap();
        nl.calls.lock().unwrap().clear();
        block(attach(&nl, "dv-1", &attachment())).unwrap();
        assert_eq!(
            nl.calls(),
            [
                "link_index dv-1",
                "default_route_mtu",
                "link_index dv0000beef",
                "create_veth dv0000beef #100 mtu 1450 eth0 02:42:0a:59:07:02 in /proc/42/ns/net",
                "set_up #101",
                "configure_netns /proc/42/ns/net eth0 10.89.7.2/24 via 10.89.7.1",
                "set_neighbour 100 10.89.7.2 02:42:0a:59:07:02",
            ]
        );
    }

    #[test]
    fn attach_rolls_back_the_veth_and_replaces_a_stale_one() {
        let nl = RecordingNetlink::default();
        block(ensure_bridge(&nl, "dv-1", subnet())).unwrap();
        nl.links.lock().unwrap().insert("dv0000beef".into(), 7);
        *nl.fail_on.lock().unwrap() = Some("configure_netns".into());
        assert!(block(attach(&nl, "dv-1", &attachment())).is_err());
        let calls = nl.calls();
        assert!(calls.contains(&"delete_link dv0000beef".to_string()));
        assert!(calls.iter().any(|c| c.starts_with("create_veth dv0000beef #100 mtu 1500")));
        assert_eq!(calls.last().unwrap(), "delete_link dv0000beef");
        assert_eq!(nl.links.lock().unwrap().keys().collect::<Vec<_>>(), ["dv-1"]);
    }

    #[test]
    fn attach_needs_the_bridge_and_a_host_address() {
        let nl = RecordingNetlink::default();
        assert!(block(attach(&nl, "dv-1", &attachment())).is_err());
        let ns = NetnsRef("/x".into());
        let gw = ContainerAttachment::new("dv1".into(), ns, Ipv4Addr::new(10, 89, 7, 1), subnet());
        assert!(matches!(gw, Err(NetworkError::BadAddress { .. })));
    }
}
