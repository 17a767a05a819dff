//! The network layer against the real kernel, as root: a project bridge, two "containers" (network
//! namespaces of `unshare --net sleep` processes) on veths, checked with real tools, and the
//! teardown checked for leftovers. Parallel-safe: every test has its own project name and home,
//! so its own link names and subnet.

use std::net::Ipv4Addr;
use std::process::{Child, Command, Stdio};

use devenv::network::firewall::{self, Claim, ProjectRules, Protocol, PublishedPort};
use devenv::network::hostports::{self, Holder};
use devenv::network::{
    attach, bridge_name, delete_bridge, detach, ensure_bridge, project_hash, veth_name,
    ContainerAttachment, HostLock, Ipam, Netlink, NetnsRef, RtNetlink, DEFAULT_POOL, HOST_LOCK,
};

fn root() -> bool {
    let ok = nix::unistd::geteuid().is_root();
    if !ok {
        eprintln!("skipped: needs root");
    }
    ok
}

/// A process alone in a new network namespace; killing it removes the namespace.
struct Netns(Child);

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare")
            .args(["--net", "sleep", "300"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        // unshare execs sleep after unsharing; wait until the namespace differs from ours.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        for _ in 0..200 {
            match std::fs::read_link(format!("/proc/{}/ns/net", child.id())) {
                Ok(ns) if ns != ours => return Netns(child),
                _ => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
        panic!("unshare --net did not take effect");
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Runs a command inside the namespace; returns (success, stdout).
    fn run(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.pid()))
            .args(args)
            .output()
            .expect("nsenter");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process killed on drop: a server left running inside a namespace would keep it alive.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Removes the project's nftables chains even when an assertion fails halfway.
struct FirewallGuard(String, String);

impl Drop for FirewallGuard {
    fn drop(&mut self) {
        let _ = firewall::remove(&self.0, &self.1);
    }
}

/// Deletes the test's links even when an assertion fails halfway.
struct LinkGuard(Vec<String>);

impl Drop for LinkGuard {
    fn drop(&mut self) {
        for l in &self.0 {
            let _ = Command::new("ip").args(["link", "del", l]).stderr(Stdio::null()).status();
        }
    }
}

fn links() -> String {
    let out = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    format!("{prefix}-{}-{}", std::process::id(), nanos.subsec_nanos())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bridge_and_veths_connect_two_namespaces() {
    if !root() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let project = unique("nettest");
    let hash = project_hash(&project, home.path());
    let bridge = bridge_name(&hash);
    let nl = RtNetlink::new().unwrap();
    let ipam = Ipam::new(home.path().join("network"), DEFAULT_POOL.parse().unwrap());
    // Other test processes (other homes) choose subnets too: the kernel decides, under the
    // host-wide lock, until our bridge has its address.
    let host_lock = HostLock::acquire(std::path::Path::new(HOST_LOCK)).unwrap();
    let subnet = ipam.lease_subnet(&project, None, &nl.host_networks().await.unwrap()).unwrap();

    let names = ["a", "b"];
    let veths: Vec<String> = names.iter().map(|n| veth_name(&hash, n)).collect();
    let mut guard = LinkGuard(veths.clone());
    guard.0.push(bridge.clone());

    let index = ensure_bridge(&nl, &bridge, subnet).await.unwrap();
    drop(host_lock);
    assert_eq!(ensure_bridge(&nl, &bridge, subnet).await.unwrap(), index, "reused");
    // Another home knows nothing of our leases, but the kernel shows the bridge's address.
    let other_home = tempfile::tempdir().unwrap();
    let other = Ipam::new(other_home.path(), DEFAULT_POOL.parse().unwrap());
    let hosts = nl.host_networks().await.unwrap();
    assert!(hosts.iter().any(|h| h.net == subnet), "{subnet} not among {hosts:?}");
    assert_ne!(other.lease_subnet("other", None, &hosts).unwrap(), subnet);
    let err = other.lease_subnet("fixed", Some(subnet), &hosts).unwrap_err();
    assert!(err.to_string().contains("overlaps host"), "{err}");

    let spaces = [Netns::new(), Netns::new()];
    let mut addrs: Vec<Ipv4Addr> = Vec::new();
    for ((name, veth), ns) in names.iter().zip(&veths).zip(&spaces) {
        let addr = ipam.allocate(&project, name).unwrap();
        let att = ContainerAttachment::new(veth.clone(), NetnsRef::of_pid(ns.pid()), addr, subnet)
            .unwrap();
        attach(&nl, &bridge, &att).await.unwrap();
        addrs.push(addr);
    }

    // Inside: eth0 with the address and the host's default-route MTU, lo up, default route.
    let mtu = nl.default_route_mtu().await.unwrap().unwrap_or(1500);
    let (ok, eth0) = spaces[0].run(&["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(ok && eth0.contains(&format!("{}/{}", addrs[0], subnet.prefix_len())), "{eth0}");
    let (_, link) = spaces[0].run(&["ip", "-o", "link", "show", "dev", "eth0"]);
    assert!(link.contains(&format!("mtu {mtu} ")), "{link}");
    let (_, lo) = spaces[0].run(&["ip", "-o", "link", "show", "dev", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let (_, route) = spaces[0].run(&["ip", "route", "show", "default"]);
    let gw = Ipv4Addr::from(u32::from(subnet.network()) + 1);
    assert!(route.contains(&format!("default via {gw} dev eth0")), "{route}");
    // The container end was created inside: it never existed on the host.
    assert!(!links().contains(": eth0@"), "no eth0 peer on the host");

    // Namespace to namespace across the bridge, and to the gateway.
    for (from, to) in [(0, addrs[1]), (1, addrs[0]), (0, gw)] {
        let to = to.to_string();
        let (ok, _) = spaces[from].run(&["busybox", "ping", "-c", "1", "-W", "2", &to]);
        assert!(ok, "ping {to} from namespace {from}");
    }

    // Teardown: veths, bridge, leases, namespaces; then nothing of the test is left.
    for veth in &veths {
        detach(&nl, veth).await.unwrap();
        detach(&nl, veth).await.unwrap();
    }
    delete_bridge(&nl, &bridge).await.unwrap();
    ipam.release_project(&project).unwrap();
    let pids: Vec<u32> = spaces.iter().map(Netns::pid).collect();
    drop(spaces);
    let left = links();
    for name in veths.iter().chain([&bridge]) {
        assert!(
            !left.contains(&format!(" {name}:")) && !left.contains(&format!(" {name}@")),
            "{name} left: {left}"
        );
    }
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists(),
            "netns of {pid} left"
        );
    }
    assert_eq!(ipam.subnet_of(&project).unwrap(), None);
}

/// The host's first global IPv4 address outside devenv's links.
fn host_address() -> String {
    let out =
        Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line =
        text.lines().find(|l| !l.split_whitespace().nth(1).unwrap_or("dv").starts_with("dv"));
    let cidr = line.and_then(|l| l.split_whitespace().nth(3)).expect("a global IPv4 address");
    cidr.split('/').next().unwrap().to_string()
}

/// GETs `url` from the host or inside a namespace, retrying while the server starts.
async fn curl(from: Option<&Netns>, url: &str) -> String {
    for _ in 0..100 {
        let mut cmd = match from {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/proc/{}/ns/net", ns.pid())).arg("curl");
                c
            }
            None => Command::new("curl"),
        };
        let out = cmd.args(["-sf", "--max-time", "2", url]).output().unwrap();
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    String::new()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_port_reaches_a_namespace_through_loopback() {
    if !root() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let project = unique("fwtest");
    let hash = project_hash(&project, home.path());
    let bridge = bridge_name(&hash);
    let nl = RtNetlink::new().unwrap();
    let ipam = Ipam::new(home.path().join("network"), DEFAULT_POOL.parse().unwrap());
    // Other test processes (other homes) choose subnets too: the kernel decides, under the
    // host-wide lock, until our bridge has its address.
    let host_lock = HostLock::acquire(std::path::Path::new(HOST_LOCK)).unwrap();
    let subnet = ipam.lease_subnet(&project, None, &nl.host_networks().await.unwrap()).unwrap();
    let veth = veth_name(&hash, "web");
    let mut _guard = LinkGuard(vec![veth.clone(), bridge.clone()]);

    ensure_bridge(&nl, &bridge, subnet).await.unwrap();
    drop(host_lock);
    let ns = Netns::new();
    let addr = ipam.allocate(&project, "web").unwrap();
    let att = ContainerAttachment::new(veth.clone(), NetnsRef::of_pid(ns.pid()), addr, subnet);
    attach(&nl, &bridge, &att.unwrap()).await.unwrap();

    // A web server in the namespace, serving a file that names the test.
    let root_dir = tempfile::tempdir().unwrap();
    std::fs::write(root_dir.path().join("who"), &project).unwrap();
    let server = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.pid()))
        .args(["/usr/bin/python3", "-m", "http.server", "8000", "--bind", "0.0.0.0", "-d"])
        .arg(root_dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(Proc)
        .unwrap();

    // And a UDP echo on 9000.
    let udp_echo = "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',9000))\nwhile True:\n d,a=s.recvfrom(100)\n s.sendto(d,a)";
    let echo = Command::new("nsenter")
        .arg(format!("--net=/proc/{}/ns/net", ns.pid()))
        .args(["/usr/bin/python3", "-c", udp_echo])
        .spawn()
        .map(Proc)
        .unwrap();

    let (host_port, udp_port) = (free_port(), free_port());
    let ports = [
        PublishedPort {
            host_ip: None,
            host_port,
            container: addr,
            container_port: 8000,
            protocol: Protocol::Tcp,
        },
        PublishedPort {
            host_ip: Some(std::net::Ipv4Addr::LOCALHOST),
            host_port: udp_port,
            container: addr,
            container_port: 9000,
            protocol: Protocol::Udp,
        },
    ];
    let rules =
        ProjectRules { hash: &hash, project: &project, bridge: &bridge, subnet, ports: &ports };
    let _fw_guard = FirewallGuard(hash.clone(), bridge.clone());
    firewall::apply(&rules).unwrap();
    firewall::apply(&rules).unwrap(); // idempotent: replaces, does not duplicate
    assert_eq!(firewall::project_chains(&hash).unwrap().len(), 3);

    // From the host through loopback and through its own address, and from another container
    // of the project through the host's address (hairpin).
    let client = Netns::new();
    let client_addr = ipam.allocate(&project, "client").unwrap();
    let client_veth = veth_name(&hash, "client");
    _guard.0.push(client_veth.clone());
    let att = ContainerAttachment::new(
        client_veth.clone(),
        NetnsRef::of_pid(client.pid()),
        client_addr,
        subnet,
    );
    attach(&nl, &bridge, &att.unwrap()).await.unwrap();
    let host_addr = host_address();
    for (from, host) in
        [(None, "127.0.0.1".to_string()), (None, host_addr.clone()), (Some(&client), host_addr)]
    {
        let url = format!("http://{host}:{host_port}/who");
        assert_eq!(
            curl(from, &url).await,
            project,
            "curl {url} from {}",
            if from.is_some() { "the client namespace" } else { "the host" }
        );
    }
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(200))).unwrap();
    let mut echoed = None;
    for _ in 0..50 {
        sock.send_to(project.as_bytes(), ("127.0.0.1", udp_port)).unwrap();
        let mut buf = [0u8; 100];
        if let Ok(n) = sock.recv(&mut buf) {
            echoed = Some(String::from_utf8_lossy(&buf[..n]).into_owned());
            break;
        }
    }
    drop(echo);
    assert_eq!(echoed.as_deref(), Some(project.as_str()), "UDP echo through 127.0.0.1:{udp_port}");
    drop(server);

    firewall::remove(&hash, &bridge).unwrap();
    firewall::remove(&hash, &bridge).unwrap();
    assert!(firewall::project_chains(&hash).unwrap().is_empty(), "chains of {hash} left");
    detach(&nl, &veth).await.unwrap();
    detach(&nl, &client_veth).await.unwrap();
    drop(client);
    delete_bridge(&nl, &bridge).await.unwrap();
    ipam.release_project(&project).unwrap();
    let pid = ns.pid();
    drop(ns);
    let left = links();
    assert!(
        !left.contains(&format!(" {bridge}:")) && !left.contains(&format!(" {veth}@")),
        "{left}"
    );
    assert!(!std::path::Path::new(&format!("/proc/{pid}/ns/net")).exists());
}

/// This test process as [`hostports::listener`] should name it.
fn me() -> Holder {
    let comm = std::fs::read_to_string("/proc/self/comm").unwrap();
    Holder { pid: Some(std::process::id() as i32), command: Some(comm.trim_end().to_string()) }
}

#[test]
fn listener_names_the_process_listening_on_a_tcp_port() {
    let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    assert_eq!(hostports::listener(Protocol::Tcp, None, port), Some(me()));
    assert_eq!(hostports::listener(Protocol::Tcp, Some(Ipv4Addr::LOCALHOST), port), Some(me()));
    let elsewhere = Some(Ipv4Addr::new(192, 0, 2, 1));
    assert_eq!(hostports::listener(Protocol::Tcp, elsewhere, port), None, "another address");
    assert_eq!(hostports::listener(Protocol::Udp, None, port), None, "another protocol");
    let taken = hostports::port_taken(Protocol::Tcp, None, port, "").unwrap();
    assert_eq!(taken, Some(me().to_string()));
    drop(sock);
    assert_eq!(hostports::listener(Protocol::Tcp, None, port), None, "closed");
}

#[test]
fn listener_names_the_process_bound_on_a_udp_port() {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = sock.local_addr().unwrap().port();
    assert_eq!(hostports::listener(Protocol::Udp, None, port), Some(me()));
    assert_eq!(hostports::listener(Protocol::Udp, Some(Ipv4Addr::LOCALHOST), port), Some(me()));
    assert_eq!(hostports::listener(Protocol::Tcp, None, port), None, "another protocol");
    drop(sock);
    assert_eq!(hostports::listener(Protocol::Udp, None, port), None, "closed");
}

#[test]
fn free_ports_are_free() {
    for protocol in [Protocol::Tcp, Protocol::Udp] {
        let port = hostports::free_port(protocol, None).unwrap();
        assert_ne!(port, 0);
        assert_eq!(hostports::listener(protocol, None, port), None, "{protocol} {port}");
        let port = hostports::free_port(protocol, Some(Ipv4Addr::LOCALHOST)).unwrap();
        assert_eq!(hostports::listener(protocol, Some(Ipv4Addr::LOCALHOST), port), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_ports_are_claimed_in_the_name_of_their_project() {
    if !root() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let project = unique("claimtest");
    let hash = project_hash(&project, home.path());
    let bridge = bridge_name(&hash);
    let nl = RtNetlink::new().unwrap();
    let ipam = Ipam::new(home.path().join("network"), DEFAULT_POOL.parse().unwrap());
    let host_lock = HostLock::acquire(std::path::Path::new(HOST_LOCK)).unwrap();
    let subnet = ipam.lease_subnet(&project, None, &nl.host_networks().await.unwrap()).unwrap();
    let _guard = LinkGuard(vec![bridge.clone()]);
    ensure_bridge(&nl, &bridge, subnet).await.unwrap();
    drop(host_lock);
    let addr = ipam.allocate(&project, "web").unwrap();

    let lock = firewall::lock().unwrap();
    let tcp = hostports::free_port(Protocol::Tcp, None).unwrap();
    let udp = hostports::free_port(Protocol::Udp, Some(Ipv4Addr::LOCALHOST)).unwrap();
    assert_eq!(hostports::port_taken(Protocol::Tcp, None, tcp, "").unwrap(), None);
    let ports = [
        PublishedPort {
            host_ip: None,
            host_port: tcp,
            container: addr,
            container_port: 80,
            protocol: Protocol::Tcp,
        },
        PublishedPort {
            host_ip: Some(Ipv4Addr::LOCALHOST),
            host_port: udp,
            container: addr,
            container_port: 53,
            protocol: Protocol::Udp,
        },
    ];
    let rules =
        ProjectRules { hash: &hash, project: &project, bridge: &bridge, subnet, ports: &ports };
    let _fw_guard = FirewallGuard(hash.clone(), bridge.clone());
    firewall::apply_locked(&lock, &rules).unwrap();
    drop(lock);

    let claims = firewall::claimed_ports("some-other-hash").unwrap();
    let tcp_claim =
        Claim { protocol: Protocol::Tcp, host_ip: None, port: tcp, project: project.clone() };
    let udp_claim = Claim {
        protocol: Protocol::Udp,
        host_ip: Some(Ipv4Addr::LOCALHOST),
        port: udp,
        project: project.clone(),
    };
    for claim in [&tcp_claim, &udp_claim] {
        assert_eq!(claims.iter().filter(|c| *c == claim).count(), 1, "{claim:?} in {claims:?}");
    }
    let mine = firewall::claimed_ports(&hash).unwrap();
    assert!(!mine.iter().any(|c| c.project == project), "own claims left out: {mine:?}");

    let by_project = Some(format!("devenv project {project:?}"));
    let taken = |protocol, host_ip, port, except: &str| {
        hostports::port_taken(protocol, host_ip, port, except).unwrap()
    };
    assert_eq!(taken(Protocol::Tcp, None, tcp, "x"), by_project);
    assert_eq!(taken(Protocol::Tcp, Some(Ipv4Addr::LOCALHOST), tcp, "x"), by_project);
    assert_eq!(
        taken(Protocol::Tcp, None, tcp, &hash),
        None,
        "a project does not clash with itself"
    );
    assert_eq!(taken(Protocol::Udp, None, udp, "x"), by_project);
    assert_eq!(taken(Protocol::Udp, Some(Ipv4Addr::new(192, 0, 2, 1)), udp, "x"), None);
    assert_eq!(taken(Protocol::Tcp, None, udp, "x"), None, "udp only");
    // No socket holds the port, yet free_port never offers it while the rules are in.
    for _ in 0..20 {
        assert_ne!(hostports::free_port(Protocol::Tcp, None).unwrap(), tcp);
    }

    firewall::remove(&hash, &bridge).unwrap();
    let left = firewall::claimed_ports("").unwrap();
    assert!(!left.iter().any(|c| c.project == project), "claims left: {left:?}");
    delete_bridge(&nl, &bridge).await.unwrap();
    ipam.release_project(&project).unwrap();
}
