//! Published ports: Compose's short syntax (`"127.0.0.1:8080:80/udp"`, ranges) and long syntax,
//! normalized to one [`PortMapping`] per container port.
//! PLACEHOLDER: to be written in full.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `ports:` of a service, every entry expanded to one mapping per container port.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Ports(pub Vec<PortMapping>);

impl Ports {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

/// One container port and where it is published on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PortMapping {
    pub target: u16,
    pub published: Option<String>,
    pub host_ip: Option<std::net::IpAddr>,
    pub protocol: Protocol,
}
