//! The kernel calls the network layer makes, behind [`Netlink`]: [`RtNetlink`] speaks rtnetlink,
//! [`RecordingNetlink`] records the calls (and fails on demand) so the setup logic in
//! [`super::bridge`] is tested without root.
//!
//! The calls are coarse on purpose: one per step that can fail on its own and that rollback has to
//! know about, not one per netlink message.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Mutex;

use futures_util::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use super::ipam::HostNet;
use super::{NetworkError, Result};

/// A network namespace by path: `/proc/<pid>/ns/net` of a created container, or a bind mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsRef(pub PathBuf);

impl NetnsRef {
    pub fn of_pid(pid: u32) -> Self {
        NetnsRef(PathBuf::from(format!("/proc/{pid}/ns/net")))
    }
}

/// What the container side of a veth gets, inside its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsConfig {
    /// The interface name inside, `eth0`.
    pub ifname: String,
    pub address: Ipv4Net,
    pub gateway: Ipv4Addr,
}

/// The kernel operations of bridge and veth setup.
pub trait Netlink: Sync {
    /// IPv4 addresses and routes on the host, for IPAM to avoid.
    fn host_networks(&self) -> impl Future<Output = Result<Vec<HostNet>>> + Send;
    /// MTU of the interface the IPv4 default route goes out of, if there is a default route.
    fn default_route_mtu(&self) -> impl Future<Output = Result<Option<u32>>> + Send;
    fn link_index(&self, name: &str) -> impl Future<Output = Result<Option<u32>>> + Send;
    /// Creates a bridge (down) and returns its index.
    fn create_bridge(&self, name: &str) -> impl Future<Output = Result<u32>> + Send;
    /// Adds an address; one already there is not an error.
    fn add_address(&self, index: u32, address: Ipv4Net) -> impl Future<Output = Result<()>> + Send;
    fn set_up(&self, index: u32) -> impl Future<Output = Result<()>> + Send;
    /// Creates a veth pair: `host` attached to the bridge `bridge`, its peer `peer` with hardware
    /// address `mac` created directly in `netns` (never visible on the host). Returns the host
    /// end's index.
    fn create_veth(
        &self,
        host: &str,
        bridge: u32,
        mtu: u32,
        peer: &str,
        mac: [u8; 6],
        netns: &NetnsRef,
    ) -> impl Future<Output = Result<u32>> + Send;
    /// Inside `netns`: the address on `cfg.ifname`, it and `lo` up, default route via the gateway.
    fn configure_netns(
        &self,
        netns: &NetnsRef,
        cfg: &NetnsConfig,
    ) -> impl Future<Output = Result<()>> + Send;
    /// Deletes a link by name; returns whether it existed.
    fn delete_link(&self, name: &str) -> impl Future<Output = Result<bool>> + Send;
    /// Records `address` as reachable at `mac` on link `index` (the bridge), replacing what the
    /// host's neighbour table held.
    fn set_neighbour(
        &self,
        index: u32,
        address: Ipv4Addr,
        mac: [u8; 6],
    ) -> impl Future<Output = Result<()>> + Send;
}

fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

fn nl(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let op = op.into();
    move |source| NetworkError::Netlink { op, source }
}

/// The real thing, over an rtnetlink socket in the caller's network namespace.
pub struct RtNetlink {
    handle: Handle,
}

impl RtNetlink {
    /// Opens the socket; its connection task runs on the current tokio runtime.
    pub fn new() -> Result<Self> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| NetworkError::io("opening an rtnetlink socket", e))?;
        tokio::spawn(conn);
        Ok(RtNetlink { handle })
    }
}

async fn index_of(handle: &Handle, name: &str) -> Result<Option<u32>> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(link)) => Ok(Some(link.header.index)),
        Ok(None) => Ok(None),
        Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(nl(format!("looking up link {name}"))(e)),
    }
}

async fn add_address(handle: &Handle, index: u32, address: Ipv4Net) -> Result<()> {
    let req = handle.address().add(index, IpAddr::V4(address.addr()), address.prefix_len());
    match req.execute().await {
        Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
        r => r.map_err(nl(format!("adding {address} to link #{index}"))),
    }
}

async fn set_up(handle: &Handle, index: u32) -> Result<()> {
    let msg = LinkUnspec::new_with_index(index).up().build();
    handle.link().set(msg).execute().await.map_err(nl(format!("setting link #{index} up")))
}

impl Netlink for RtNetlink {
    async fn host_networks(&self) -> Result<Vec<HostNet>> {
        let mut out = Vec::new();
        let mut addrs = self.handle.address().get().execute();
        while let Some(a) = addrs.try_next().await.map_err(nl("listing addresses"))? {
            for attr in &a.attributes {
                if let AddressAttribute::Address(IpAddr::V4(ip)) = attr {
                    if let Ok(net) = Ipv4Net::new(*ip, a.header.prefix_len) {
                        let what = format!("address {net} on link #{}", a.header.index);
                        out.push(HostNet { net: net.trunc(), what });
                    }
                }
            }
        }
        let mut routes =
            self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
            let len = r.header.destination_prefix_length;
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(net) = dst.and_then(|ip| Ipv4Net::new(ip, len).ok()) {
                out.push(HostNet { net, what: format!("route {net}") });
            }
        }
        Ok(out)
    }

    async fn default_route_mtu(&self) -> Result<Option<u32>> {
        let mut routes =
            self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut oif = None;
        while let Some(r) = routes.try_next().await.map_err(nl("listing routes"))? {
            if r.header.destination_prefix_length == 0 && oif.is_none() {
                oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
            }
        }
        let Some(index) = oif else { return Ok(None) };
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(nl(format!("reading link #{index}")))?;
        Ok(link.and_then(|l| {
            l.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(*m),
                _ => None,
            })
        }))
    }

    async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        index_of(&self.handle, name).await
    }

    async fn create_bridge(&self, name: &str) -> Result<u32> {
        let msg = LinkBridge::new(name).down().build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(nl(format!("creating bridge {name}")))?;
        index_of(&self.handle, name).await?.ok_or_else(|| NetworkError::Kernel {
            op: format!("creating bridge {name}"),
            message: "created, then not found".into(),
        })
    }

    async fn add_address(&self, index: u32, address: Ipv4Net) -> Result<()> {
        add_address(&self.handle, index, address).await
    }

    async fn set_up(&self, index: u32) -> Result<()> {
        set_up(&self.handle, index).await
    }

    async fn create_veth(
        &self,
        host: &str,
        bridge: u32,
        mtu: u32,
        peer: &str,
        mac: [u8; 6],
        netns: &NetnsRef,
    ) -> Result<u32> {
        let op = format!("creating veth {host} with {peer} in {}", netns.0.display());
        let ns = std::fs::File::open(&netns.0)
            .map_err(|e| NetworkError::io(format!("opening {}", netns.0.display()), e))?;
        // The peer message carries the namespace fd: the kernel creates it there, so it never
        // appears on the host (no name clash on `eth0`, no window where it is visible).
        let peer_msg = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .address(mac.to_vec())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .mtu(mtu)
            .controller(bridge)
            .build();
        self.handle.link().add(msg).execute().await.map_err(nl(op.clone()))?;
        drop(ns);
        index_of(&self.handle, host)
            .await?
            .ok_or(NetworkError::Kernel { op, message: "created, then not found".into() })
    }

    async fn configure_netns(&self, netns: &NetnsRef, cfg: &NetnsConfig) -> Result<()> {
        let (netns, cfg) = (netns.clone(), cfg.clone());
        let (tx, rx) = tokio::sync::oneshot::channel();
        // setns changes the calling thread only; a thread of our own, thrown away afterwards,
        // keeps the namespace switch away from the runtime's (reused) threads.
        std::thread::spawn(move || {
            let _ = tx.send(configure_in_netns(&netns, &cfg));
        });
        rx.await.unwrap_or_else(|_| {
            Err(NetworkError::Kernel {
                op: "configuring the container namespace".into(),
                message: "worker thread panicked".into(),
            })
        })
    }

    async fn set_neighbour(&self, index: u32, address: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        use rtnetlink::packet_route::neighbour::NeighbourState;
        self.handle
            .neighbours()
            .add(index, IpAddr::V4(address))
            .link_layer_address(&mac)
            .state(NeighbourState::Reachable)
            .replace()
            .execute()
            .await
            .map_err(nl(format!("setting the neighbour entry of {address}")))
    }

    async fn delete_link(&self, name: &str) -> Result<bool> {
        let Some(index) = index_of(&self.handle, name).await? else { return Ok(false) };
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(libc::ENODEV) => Ok(false),
            Err(e) => Err(nl(format!("deleting link {name}"))(e)),
        }
    }
}

fn configure_in_netns(netns: &NetnsRef, cfg: &NetnsConfig) -> Result<()> {
    let ns = std::fs::File::open(&netns.0)
        .map_err(|e| NetworkError::io(format!("opening {}", netns.0.display()), e))?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
        NetworkError::io(format!("entering {}", netns.0.display()), std::io::Error::from(e))
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| NetworkError::io("starting a runtime in the container namespace", e))?;
    rt.block_on(async {
        // The socket is opened after setns, so it talks to the container's namespace.
        let inner = RtNetlink::new()?;
        let h = &inner.handle;
        let lo = index_of(h, "lo").await?.ok_or_else(|| missing("lo"))?;
        set_up(h, lo).await?;
        let eth = index_of(h, &cfg.ifname).await?.ok_or_else(|| missing(&cfg.ifname))?;
        add_address(h, eth, cfg.address).await?;
        set_up(h, eth).await?;
        let route = RouteMessageBuilder::<Ipv4Addr>::new().gateway(cfg.gateway).build();
        match h.route().add(route).execute().await {
            Err(e) if errno(&e) == Some(libc::EEXIST) => Ok(()),
            r => r.map_err(nl(format!("adding the default route via {}", cfg.gateway))),
        }
    })
}

fn missing(name: &str) -> NetworkError {
    NetworkError::Kernel {
        op: format!("finding {name} in the container namespace"),
        message: "no such link".into(),
    }
}

/// Records every call as a line (`create_bridge dv-1234abcd`) and keeps a fake link table;
/// `fail_on` makes the first call whose line starts with it fail.
#[derive(Default)]
pub struct RecordingNetlink {
    pub calls: Mutex<Vec<String>>,
    pub fail_on: Mutex<Option<String>>,
    pub links: Mutex<BTreeMap<String, u32>>,
    pub mtu: Option<u32>,
    pub host: Vec<HostNet>,
}

impl RecordingNetlink {
    fn record(&self, call: String) -> Result<()> {
        let fail =
            self.fail_on.lock().unwrap().as_ref().is_some_and(|f| call.starts_with(f.as_str()));
        self.calls.lock().unwrap().push(call.clone());
        if fail {
            *self.fail_on.lock().unwrap() = None;
            return Err(NetworkError::Kernel { op: call, message: "injected failure".into() });
        }
        Ok(())
    }

    fn add_link(&self, name: &str) -> u32 {
        let mut links = self.links.lock().unwrap();
        let index = 100 + links.len() as u32;
        links.insert(name.to_string(), index);
        index
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Netlink for RecordingNetlink {
    async fn host_networks(&self) -> Result<Vec<HostNet>> {
        self.record("host_networks".into())?;
        Ok(self.host.clone())
    }
    async fn default_route_mtu(&self) -> Result<Option<u32>> {
        self.record("default_route_mtu".into())?;
        Ok(self.mtu)
    }
    async fn link_index(&self, name: &str) -> Result<Option<u32>> {
        self.record(format!("link_index {name}"))?;
        Ok(self.links.lock().unwrap().get(name).copied())
    }
    async fn create_bridge(&self, name: &str) -> Result<u32> {
        self.record(format!("create_bridge {name}"))?;
        Ok(self.add_link(name))
    }
    async fn add_address(&self, index: u32, address: Ipv4Net) -> Result<()> {
        self.record(format!("add_address #{index} {address}"))
    }
    async fn set_up(&self, index: u32) -> Result<()> {
        self.record(format!("set_up #{index}"))
    }
    async fn create_veth(
        &self,
        host: &str,
        bridge: u32,
        mtu: u32,
        peer: &str,
        mac: [u8; 6],
        netns: &NetnsRef,
    ) -> Result<u32> {
        self.record(format!(
            "create_veth {host} #{bridge} mtu {mtu} {peer} {} in {}",
            super::bridge::mac_string(mac),
            netns.0.display()
        ))?;
        Ok(self.add_link(host))
    }
    async fn configure_netns(&self, netns: &NetnsRef, cfg: &NetnsConfig) -> Result<()> {
        let (ns, c) = (netns.0.display(), cfg);
        self.record(format!("configure_netns {ns} {} {} via {}", c.ifname, c.address, c.gateway))
    }
    async fn set_neighbour(&self, index: u32, address: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        self.record(format!("set_neighbour {index} {address} {}", super::mac_string(mac)))
    }
    async fn delete_link(&self, name: &str) -> Result<bool> {
        self.record(format!("delete_link {name}"))?;
        Ok(self.links.lock().unwrap().remove(name).is_some())
    }
}
