//! Host ports: who already holds a port a project wants to publish, and a free one for a port
//! published without a host side (`"80"`).
//!
//! Two kinds of holder: a program with a socket on the port, read from `/proc/net/{tcp,udp}{,6}`
//! (the kernel's own tables, so no tool is needed) and traced to its process through the socket's
//! inode in `/proc/PID/fd`; and another devenv project, whose DNAT rules claim the port without any
//! socket ([`super::firewall::claimed_ports`]). Only the caller's network namespace is seen, which
//! is the host's for devenv.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};

use super::firewall::{self, Protocol};
use super::Result;

/// The process holding a socket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// `None` when no process could be seen holding it (another user's process without root, or
    /// a socket held only by the kernel).
    pub pid: Option<i32>,
    /// The process's `comm` (at most 15 characters).
    pub command: Option<String>,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.pid, &self.command) {
            (Some(pid), Some(cmd)) => write!(f, "pid {pid} ({cmd})"),
            (Some(pid), None) => write!(f, "pid {pid}"),
            (None, _) => f.write_str("an unknown process"),
        }
    }
}

/// One line of `/proc/net/{tcp,udp}{,6}`: the local address, its state and the socket's inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Socket {
    pub addr: IpAddr,
    pub port: u16,
    /// The kernel's state number (`0x0A` is TCP LISTEN).
    pub state: u8,
    pub inode: u64,
}

const TCP_LISTEN: u8 = 0x0A;

/// The sockets of a `/proc/net/tcp`-format table (tcp, tcp6, udp, udp6 share it). The header and
/// malformed lines are skipped.
pub fn parse_proc_net(text: &str) -> Vec<Socket> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Socket> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let (addr, port) = fields.get(1)?.split_once(':')?;
    let state = u8::from_str_radix(fields.get(3)?, 16).ok()?;
    let inode = fields.get(9)?.parse().ok()?;
    Some(Socket {
        addr: parse_addr(addr)?,
        port: u16::from_str_radix(port, 16).ok()?,
        state,
        inode,
    })
}

/// The kernel prints an address as 32-bit words (`%08X`) in host byte order: one word for IPv4,
/// four for IPv6.
fn parse_addr(hex: &str) -> Option<IpAddr> {
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    match hex.len() {
        8 => Some(IpAddr::V4(Ipv4Addr::from(word(0)?))),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            Some(IpAddr::V6(Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// Whether a socket bound on `addr` takes connections a publication on `host_ip` would also want.
/// `None` (every address) overlaps everything, as does a wildcard socket (`0.0.0.0`, `::`); an
/// IPv4-mapped IPv6 address counts as its IPv4 address; a specific address overlaps only itself.
pub fn overlaps(addr: IpAddr, host_ip: Option<Ipv4Addr>) -> bool {
    let Some(host_ip) = host_ip.filter(|ip| !ip.is_unspecified()) else { return true };
    if addr.is_unspecified() {
        return true;
    }
    match addr {
        IpAddr::V4(a) => a == host_ip,
        IpAddr::V6(a) => a.to_ipv4_mapped() == Some(host_ip),
    }
}

/// The sockets of `sockets` in the way of publishing `port` on `host_ip`: a TCP socket in LISTEN,
/// or any bound UDP socket (UDP has no listening state).
pub fn clashing<'a>(
    sockets: &'a [Socket],
    protocol: Protocol,
    host_ip: Option<Ipv4Addr>,
    port: u16,
) -> impl Iterator<Item = &'a Socket> + 'a {
    sockets.iter().filter(move |s| {
        s.port == port
            && (protocol == Protocol::Udp || s.state == TCP_LISTEN)
            && overlaps(s.addr, host_ip)
    })
}

/// The process holding a socket on `port` that overlaps `host_ip` (every address when `None`), or
/// `None` when the port is free for it. TCP counts listening sockets; UDP any bound one.
pub fn listener(protocol: Protocol, host_ip: Option<Ipv4Addr>, port: u16) -> Option<Holder> {
    let tables = match protocol {
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
    };
    // A missing table (IPv6 disabled) has no sockets.
    let sockets: Vec<Socket> = tables
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|text| parse_proc_net(&text))
        .collect();
    let inodes: Vec<u64> = clashing(&sockets, protocol, host_ip, port).map(|s| s.inode).collect();
    if inodes.is_empty() {
        return None;
    }
    // Several sockets may share the port (SO_REUSEPORT, a v4 and a v6 one): any holder will do.
    let pid = inodes.iter().filter(|&&i| i != 0).find_map(|&i| socket_owner(i));
    let command = pid.and_then(|pid| {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        Some(comm.trim_end().to_string())
    });
    Some(Holder { pid, command })
}

/// The first process with a descriptor on the socket `inode`, found by the `socket:[INODE]`
/// links in `/proc/PID/fd`. Processes that vanish or are unreadable are skipped.
fn socket_owner(inode: u64) -> Option<i32> {
    let wanted = format!("socket:[{inode}]");
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
        fds.filter_map(|fd| fd.ok())
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()))
    })
}

/// How many ports [`free_port`] tries before giving up on ports the kernel offers but devenv
/// projects claim.
const FREE_PORT_TRIES: usize = 16;

/// A host port free for `protocol` on `host_ip` (every address when `None`): one the kernel
/// chooses for a socket bound on port 0, that no devenv project's rules claim. The socket is closed
/// before returning, so hold [`firewall::lock`] and re-check when the port is taken for good.
pub fn free_port(protocol: Protocol, host_ip: Option<Ipv4Addr>) -> std::io::Result<u16> {
    let ip = host_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
    let claims = firewall::claimed_ports("").map_err(std::io::Error::other)?;
    // Rejected sockets stay bound until the end, so the kernel never offers their port again.
    let mut rejected: Vec<Box<dyn std::any::Any>> = Vec::new();
    for _ in 0..FREE_PORT_TRIES {
        let (port, socket): (u16, Box<dyn std::any::Any>) = match protocol {
            Protocol::Tcp => {
                let s = TcpListener::bind((ip, 0))?;
                (s.local_addr()?.port(), Box::new(s))
            }
            Protocol::Udp => {
                let s = UdpSocket::bind((ip, 0))?;
                (s.local_addr()?.port(), Box::new(s))
            }
        };
        let claimed = claims.iter().any(|c| {
            c.protocol == protocol && c.port == port && claim_overlaps(c.host_ip, host_ip)
        });
        if !claimed {
            return Ok(port);
        }
        rejected.push(socket);
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AddrInUse,
        format!(
            "no free {protocol} port on {ip}: the {FREE_PORT_TRIES} the kernel offered are all \
             published by devenv projects"
        ),
    ))
}

/// Whether two publications' host addresses overlap (`None` is every address).
fn claim_overlaps(a: Option<Ipv4Addr>, b: Option<Ipv4Addr>) -> bool {
    let a = a.filter(|ip| !ip.is_unspecified());
    let b = b.filter(|ip| !ip.is_unspecified());
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Who holds `port` for `protocol` on `host_ip`, in words for an error message: a program
/// (`pid 1234 (nginx)`, or `an unknown process`) or a devenv project other than the one with
/// `except_hash` (`devenv project "web"`). `None` when the port is free.
pub fn port_taken(
    protocol: Protocol,
    host_ip: Option<Ipv4Addr>,
    port: u16,
    except_hash: &str,
) -> Result<Option<String>> {
    if let Some(holder) = listener(protocol, host_ip, port) {
        return Ok(Some(holder.to_string()));
    }
    let claims = firewall::claimed_ports(except_hash)?;
    Ok(claims
        .into_iter()
        .find(|c| c.protocol == protocol && c.port == port && claim_overlaps(c.host_ip, host_ip))
        .map(|c| format!("devenv project {:?}", c.project)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured on x86_64 (addresses are host byte order, so these samples are little-endian):
    // 0.0.0.0:2024 LISTEN, 127.0.0.1:8080 LISTEN, 10.0.0.5:5432 LISTEN, and an established
    // connection from 127.0.0.1:8080.
    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 45 1 000000005769dccd 100 0 0 10 0
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4711 1 0000000000000000 100 0 0 10 0
   2: 0500000A:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   102        0 300 1 0000000000000000 100 0 0 10 0
   3: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 4712 1 0000000000000000 20 4 30 10 -1
";

    // :: port 80 LISTEN, ::ffff:127.0.0.1 port 8443 LISTEN, ::1 port 631 LISTEN.
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 900 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:20FB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 901 1 0000000000000000 100 0 0 10 0
   2: 00000000000000000000000001000000:0277 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 902 1 0000000000000000 100 0 0 10 0
";

    // 127.0.0.53:53 (state 07, unconnected).
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  791: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 777 2 0000000000000000 0
";

    const NONE: [u64; 0] = [];

    fn ports(text: &str, protocol: Protocol, host_ip: Option<Ipv4Addr>, port: u16) -> Vec<u64> {
        let sockets = parse_proc_net(text);
        clashing(&sockets, protocol, host_ip, port).map(|s| s.inode).collect()
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn parses_tcp_and_tcp6_lines() {
        let tcp = parse_proc_net(TCP);
        assert_eq!(tcp.len(), 4, "header skipped");
        assert_eq!(
            tcp[1],
            Socket { addr: Ipv4Addr::LOCALHOST.into(), port: 8080, state: 0x0A, inode: 4711 }
        );
        assert_eq!(tcp[2].addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)));
        assert_eq!(tcp[3].state, 1);
        let tcp6 = parse_proc_net(TCP6);
        assert_eq!(tcp6[0].addr, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(tcp6[0].port, 80);
        assert_eq!(tcp6[1].addr, "::ffff:127.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(tcp6[2].addr, IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(tcp6[2].port, 631);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn wildcard_sockets_and_wildcard_publications_overlap_everything() {
        let other = Some(Ipv4Addr::new(192, 168, 1, 9));
        assert_eq!(ports(TCP, Protocol::Tcp, None, 2024), [45]);
        assert_eq!(ports(TCP, Protocol::Tcp, other, 2024), [45]);
        assert_eq!(ports(TCP6, Protocol::Tcp, other, 80), [900]);
        assert_eq!(ports(TCP, Protocol::Tcp, Some(Ipv4Addr::UNSPECIFIED), 5432), [300]);
        assert_eq!(ports(TCP6, Protocol::Tcp, None, 631), [902], "::1 is one of every address");
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn specific_addresses_clash_only_with_themselves() {
        let lo = Some(Ipv4Addr::LOCALHOST);
        assert_eq!(ports(TCP, Protocol::Tcp, lo, 8080), [4711], "the listener, not the connection");
        assert_eq!(ports(TCP, Protocol::Tcp, Some(Ipv4Addr::new(10, 0, 0, 6)), 5432), NONE);
        assert_eq!(ports(TCP, Protocol::Tcp, lo, 5432), NONE);
        assert_eq!(ports(TCP6, Protocol::Tcp, lo, 8443), [901], "IPv4-mapped");
        assert_eq!(ports(TCP6, Protocol::Tcp, Some(Ipv4Addr::new(10, 0, 0, 1)), 8443), NONE);
        assert_eq!(ports(TCP6, Protocol::Tcp, lo, 631), NONE, "::1 is not 127.0.0.1");
        assert_eq!(ports(TCP, Protocol::Tcp, None, 9999), NONE);
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn any_bound_udp_socket_counts() {
        assert_eq!(ports(UDP, Protocol::Udp, None, 53), [777]);
        assert_eq!(ports(UDP, Protocol::Udp, Some(Ipv4Addr::new(127, 0, 0, 53)), 53), [777]);
        assert_eq!(ports(UDP, Protocol::Udp, Some(Ipv4Addr::LOCALHOST), 53), NONE);
        // Connected TCP sockets are not listeners; UDP has no such distinction.
        assert_eq!(ports(TCP, Protocol::Udp, Some(Ipv4Addr::LOCALHOST), 8080), [4711, 4712]);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert!(parse_proc_net("garbage\n  0: 0100007F 00 0A\n\n").is_empty());
        assert_eq!(parse_addr("0100007"), None);
        assert_eq!(parse_addr("ZZ00007F"), None);
    }

    #[test]
    fn holders_read_as_words() {
        let h = Holder { pid: Some(1234), command: Some("nginx".into()) };
        assert_eq!(h.to_string(), "pid 1234 (nginx)");
        assert_eq!(Holder { pid: Some(7), command: None }.to_string(), "pid 7");
        assert_eq!(Holder { pid: None, command: None }.to_string(), "an unknown process");
    }

    #[test]
    fn publications_overlap_unless_both_name_different_addresses() {
        let (a, b) = (Some(Ipv4Addr::LOCALHOST), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(claim_overlaps(None, a) && claim_overlaps(b, None) && claim_overlaps(a, a));
        assert!(claim_overlaps(Some(Ipv4Addr::UNSPECIFIED), b));
        assert!(!claim_overlaps(a, b));
    }
}
