//! Project networking: the per-project bridge, a veth per container, addresses (IPAM) and the
//! nftables rules for egress and published ports.
//!
//! Everything that talks to the kernel sits behind [`netlink::Netlink`] so the setup logic (the
//! order of calls, and the rollback of partial work) is tested without root; the real
//! implementation speaks rtnetlink. Names on the host follow DESIGN.md: bridges `dv-<hash>`, host
//! veth ends `dv<hash>`, rules in the nftables table `inet devenv`. [`hostports`] says who holds a
//! host port before a project publishes it.

pub mod bridge;
pub mod firewall;
pub mod hostports;
pub mod ipam;
pub mod netlink;

use std::net::Ipv4Addr;
use std::path::PathBuf;

pub use bridge::{
    attach, bridge_name, delete_bridge, detach, ensure_bridge, mac_for, mac_string, project_hash,
    veth_name, ContainerAttachment,
};
pub use firewall::{claimed_ports, Claim, FirewallLock, ProjectRules, Protocol, PublishedPort};
pub use hostports::{free_port, listener, port_taken, Holder};
pub use ipam::{HostLock, HostNet, Ipam, DEFAULT_POOL, HOST_LOCK};
pub use ipnet::Ipv4Net;
pub use netlink::{Netlink, NetnsConfig, NetnsRef, RecordingNetlink, RtNetlink};

/// Errors of the network layer. Each names the object it was working on, so a message read
/// without the code still says what failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("no free /24 left in the pool {pool}: every subnet overlaps the host or is leased by another project")]
    PoolExhausted { pool: Ipv4Net },
    #[error("subnet {subnet} overlaps {what}")]
    Overlap { subnet: Ipv4Net, what: String },
    #[error("subnet {subnet} is already leased by project {project:?}")]
    SubnetTaken { subnet: Ipv4Net, project: String },
    #[error("subnet {subnet} has no free address left")]
    SubnetFull { subnet: Ipv4Net },
    #[error("project {project:?} has no subnet leased")]
    NoLease { project: String },
    #[error("address {address} is not usable in subnet {subnet}")]
    BadAddress { address: Ipv4Addr, subnet: Ipv4Net },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lease file {path}: {source}")]
    LeaseFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("nftables: {op}: {source}: {stderr}")]
    Firewall {
        op: String,
        stderr: String,
        #[source]
        source: Box<nftables::helper::NftablesError>,
    },
    #[error("netlink: {op}: {message}")]
    Kernel { op: String, message: String },
}

impl NetworkError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NetworkError::Io { context: context.into(), source }
    }
}

pub type Result<T, E = NetworkError> = std::result::Result<T, E>;
