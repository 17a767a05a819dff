//! The project bridge network end to end, as root, through the `devenv` binary and real clients:
//! curl to published ports on 127.0.0.1 and on the host's own address, redis-cli to a container
//! address from `devenv inspect`, services reaching each other by name, a UDP port map, a random
//! host port found with `devenv port`, a sidecar on `service:NAME`, and the errors for a host port
//! already taken. Every test checks on drop that no link, rule, lease or process is left.

mod support;

use std::net::{Ipv4Addr, TcpListener};
use std::process::Command;

use support::env::{eventually, free_port, DevEnv};
use support::images::Fixture;

fn root() -> bool {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
    }
    support::is_root()
}

/// `curl -s URL` (the body), or None when it fails.
fn curl(url: &str) -> Option<String> {
    let out = Command::new("curl").args(["-s", "--max-time", "2", url]).output().unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A global IPv4 address of this host, not loopback, if it has one.
fn host_address() -> Option<Ipv4Addr> {
    let out = Command::new("ip").args(["-4", "-o", "addr", "show", "scope", "global"]).output();
    let text = String::from_utf8_lossy(&out.ok()?.stdout).into_owned();
    text.lines()
        .filter(|l| !l.split_whitespace().nth(1).unwrap_or("").starts_with("dv"))
        .filter_map(|l| l.split_whitespace().nth(3)?.split('/').next()?.parse().ok())
        .find(|ip: &Ipv4Addr| !ip.is_loopback() && !ip.octets().starts_with(&[10, 89]))
}

/// `port` if nothing listens on it now, else one the kernel says is free.
fn port_or_free(port: u16) -> u16 {
    match TcpListener::bind(("0.0.0.0", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

fn inspect(env: &DevEnv, service: &str, field: &str) -> String {
    env.ok(&["inspect", "--format", &format!("{{{{.{field}}}}}"), service]).trim().to_owned()
}

#[test]
fn two_nginx_on_container_port_80_published_on_two_host_ports() {
    if !root() {
        return;
    }
    let env = DevEnv::new("two-nginx")
        .with_images(&[(Fixture::Nginx, "nginx:1.22"), (Fixture::Busybox, "busybox")]);
    // The walkthrough uses 80 and 8080; a machine where either is busy gets free ones.
    let (a, b) = (port_or_free(80), port_or_free(8080));
    env.write("a/index.html", "site a\n");
    env.write("b/index.html", "site b\n");
    env.write(
        "devenv.yaml",
        &format!(
            "services:\n  a:\n    image: nginx:1.22\n    ports: [\"{a}:80\"]\n    volumes: [\"./a:/usr/share/nginx/html:ro\"]\n  b:\n    image: nginx:1.22\n    ports: [\"{b}:80\"]\n    volumes: [\"./b:/usr/share/nginx/html:ro\"]\n  client:\n    image: busybox\n    command: [sleep, \"300\"]\n"
        ),
    );
    env.ok(&["up", "-d"]);
    let ip_a: Ipv4Addr = inspect(&env, "a", "ip_address").parse().unwrap();
    let ip_b: Ipv4Addr = inspect(&env, "b", "ip_address").parse().unwrap();
    assert_ne!(ip_a, ip_b);
    let gw: Ipv4Addr = inspect(&env, "a", "gateway").parse().unwrap();
    assert_eq!(ip_a.octets()[..3], gw.octets()[..3], "same /24 as the gateway");
    eventually(10, "nginx a on 127.0.0.1", || {
        curl(&format!("http://127.0.0.1:{a}/")).as_deref() == Some("site a\n")
    });
    assert_eq!(curl(&format!("http://127.0.0.1:{b}/")).as_deref(), Some("site b\n"));
    assert_eq!(curl(&format!("http://localhost:{a}/")).as_deref(), Some("site a\n"));
    assert_eq!(curl(&format!("http://{ip_b}/")).as_deref(), Some("site b\n"), "direct path");
    if let Some(host) = host_address() {
        assert_eq!(curl(&format!("http://{host}:{a}/")).as_deref(), Some("site a\n"));
        assert_eq!(curl(&format!("http://{host}:{b}/")).as_deref(), Some("site b\n"));
        // From another container, through the host's address (DNAT back onto the bridge).
        let out = env.ok(&["exec", "client", "wget", "-qO-", &format!("http://{host}:{b}/")]);
        assert_eq!(out, "site b\n");
    }
    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{a}->80/tcp")), "{ps}");
    assert!(ps.contains(&format!("0.0.0.0:{b}->80/tcp")), "{ps}");
    env.ok(&["down"]);
    assert_eq!(curl(&format!("http://127.0.0.1:{a}/")), None);
}

#[test]
fn redis_answers_on_its_container_address_from_inspect() {
    if !root() {
        return;
    }
    let env = DevEnv::new("redis-ip").with_images(&[(Fixture::Redis, "redis:7")]);
    env.write(
        "devenv.yaml",
        "services:\n  redis:\n    image: redis:7\n    command: [redis-server, --save, \"\", --protected-mode, \"no\"]\n",
    );
    env.ok(&["up", "-d"]);
    let ip = inspect(&env, "redis", "ip_address");
    let mac = inspect(&env, "redis", "mac_address");
    assert!(mac.starts_with("02:42:"), "{mac}");
    eventually(10, "redis to answer PING on its address", || {
        let out = Command::new("redis-cli").args(["-h", &ip, "ping"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "PONG"
    });
}

#[test]
fn services_reach_each_other_by_name_and_a_service_added_later_resolves() {
    if !root() {
        return;
    }
    let env = DevEnv::new("names")
        .with_images(&[(Fixture::Nginx, "nginx:1.22"), (Fixture::Busybox, "busybox")]);
    let base = "services:\n  web:\n    image: nginx:1.22\n  client:\n    image: busybox\n    command: [sleep, \"300\"]\n";
    env.write("devenv.yaml", base);
    env.ok(&["up", "-d"]);
    let fetch = |url: &str| env.run(&["exec", "client", "wget", "-qO-", url]);
    eventually(10, "client to fetch http://web/", || {
        let out = fetch("http://web/");
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("devenv nginx")
    });
    let project = env.project.clone();
    let out = fetch(&format!("http://web.{project}/"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, client_pid) = env.service("client");

    env.write("devenv.yaml", &format!("{base}  api:\n    image: nginx:1.22\n"));
    env.ok(&["up", "-d"]);
    assert_eq!(env.service("client").1, client_pid, "client kept running");
    eventually(10, "client to fetch http://api/", || fetch("http://api/").status.success());
    // The default route: the gateway on the host answers.
    let gw = inspect(&env, "client", "gateway");
    assert!(env.run(&["exec", "client", "ping", "-c1", "-W2", &gw]).status.success());
}

#[test]
fn a_udp_port_map_delivers_datagrams() {
    if !root() {
        return;
    }
    // Debian's busybox nc has no -u: a few lines of Python listen instead.
    let env = DevEnv::new("udp").with_images(&[(Fixture::Python, "python:3.11")]);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    env.write(
        "listen.py",
        "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0', 9999))\nwhile True:\n    data, peer = s.recvfrom(2048)\n    print('got', data.decode().strip(), flush=True)\n    s.sendto(b'pong', peer)\n",
    );
    env.write(
        "devenv.yaml",
        &format!("services:\n  listener:\n    image: python:3.11\n    ports: [\"{port}:9999/udp\"]\n    volumes: [\"./listen.py:/listen.py:ro\"]\n    command: [python3, /listen.py]\n"),
    );
    env.ok(&["up", "-d"]);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_millis(300))).unwrap();
    eventually(10, "a datagram to arrive and the reply to come back", || {
        sock.send_to(b"hello over udp\n", ("127.0.0.1", port)).unwrap();
        let mut buf = [0u8; 16];
        matches!(sock.recv(&mut buf), Ok(4) if &buf[..4] == b"pong")
    });
    assert!(env.ok(&["logs", "--no-color", "listener"]).contains("got hello over udp"));
    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{port}->9999/udp")), "{ps}");
}

#[test]
fn a_random_host_port_is_shown_by_port_and_answers() {
    if !root() {
        return;
    }
    let env = DevEnv::new("random").with_images(&[(Fixture::Nginx, "nginx:1.22")]);
    env.write("devenv.yaml", "services:\n  web:\n    image: nginx:1.22\n    ports: [\"80\"]\n");
    env.ok(&["up", "-d"]);
    let hostport = env.ok(&["port", "web", "80"]).trim().to_owned();
    let port: u16 = hostport.rsplit(':').next().unwrap().parse().unwrap();
    assert!(port > 0);
    eventually(10, "nginx on the chosen port", || {
        curl(&format!("http://127.0.0.1:{port}/")).is_some_and(|b| b.contains("devenv nginx"))
    });
}

#[test]
fn a_sidecar_shares_the_network_of_its_service() {
    if !root() {
        return;
    }
    let env = DevEnv::new("sidecar")
        .with_images(&[(Fixture::Nginx, "nginx:1.22"), (Fixture::Busybox, "busybox")]);
    env.write(
        "devenv.yaml",
        "services:\n  side:\n    image: busybox\n    network_mode: service:web\n    command: [sleep, \"300\"]\n  web:\n    image: nginx:1.22\n",
    );
    env.ok(&["up", "-d"]);
    assert_eq!(inspect(&env, "side", "ip_address"), inspect(&env, "web", "ip_address"));
    let reach = || {
        let out = env.run(&["exec", "side", "wget", "-qO-", "http://127.0.0.1/"]);
        String::from_utf8_lossy(&out.stdout).contains("devenv nginx")
    };
    eventually(10, "the sidecar to reach nginx on its own loopback", reach);
    // Replacing web replaces the namespace the sidecar lives in: it is recreated with it.
    let (_, side_pid) = env.service("side");
    env.write(
        "devenv.yaml",
        "services:\n  side:\n    image: busybox\n    network_mode: service:web\n    command: [sleep, \"300\"]\n  web:\n    image: nginx:1.22\n    environment: {CHANGED: \"1\"}\n",
    );
    env.ok(&["up", "-d"]);
    assert_ne!(env.service("side").1, side_pid);
    eventually(10, "the recreated sidecar to reach the new nginx", reach);
}

#[test]
fn a_host_port_held_by_a_program_is_refused_naming_it_and_nothing_is_created() {
    if !root() {
        return;
    }
    let env = DevEnv::new("taken").with_images(&[(Fixture::Nginx, "nginx:1.22")]);
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    env.write(
        "devenv.yaml",
        &format!("services:\n  web:\n    image: nginx:1.22\n    ports: [\"{port}:80\"]\n"),
    );
    let (_, err) = env.fails(&["up", "-d"]);
    assert!(err.contains(&format!("host port {port}/tcp is already in use")), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
    assert!(env.ps().is_empty());
    assert!(!std::path::Path::new("/sys/class/net")
        .join(format!("dv-{}", env.project_hash()))
        .exists());
}

#[test]
fn a_host_port_published_by_another_project_is_refused_naming_it() {
    if !root() {
        return;
    }
    let first = DevEnv::new("owner").with_images(&[(Fixture::Busybox, "busybox")]);
    let second = DevEnv::new("late").with_images(&[(Fixture::Busybox, "busybox")]);
    let port = free_port();
    let file = format!(
        "services:\n  s:\n    image: busybox\n    ports: [\"{port}:80\"]\n    command: [sleep, \"300\"]\n"
    );
    first.write("devenv.yaml", &file);
    second.write("devenv.yaml", &file);
    first.ok(&["up", "-d"]);
    let (_, err) = second.fails(&["up", "-d"]);
    assert!(err.contains(&format!("host port {port}/tcp")), "{err}");
    assert!(err.contains(&first.project), "names the project holding it: {err}");
    assert!(second.ps().is_empty());
}

#[test]
fn a_subnet_overlapping_the_host_or_an_exhausted_pool_is_refused_before_anything_is_created() {
    if !root() {
        return;
    }
    let env = DevEnv::new("subnet").with_images(&[(Fixture::Busybox, "busybox")]);
    // 127.0.0.0/8 is on lo on every host.
    env.write(
        "devenv.yaml",
        "services:\n  s:\n    image: busybox\n    command: [sleep, \"300\"]\nnetworks:\n  default:\n    ipam:\n      config:\n        - subnet: 127.0.5.0/24\n",
    );
    let (_, err) = env.fails(&["up", "-d"]);
    assert!(err.contains("subnet 127.0.5.0/24 overlaps host"), "{err}");
    assert!(env.ps().is_empty());

    env.write(
        "devenv.yaml",
        "services:\n  s:\n    image: busybox\n    command: [sleep, \"300\"]\n",
    );
    let out =
        env.command(&["up", "-d"]).env("DEVENV_SUBNET_POOL", "127.0.0.0/23").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no free /24 left in the pool 127.0.0.0/23"), "{err}");
    assert!(env.ps().is_empty());
}

/// Kills the supervisor and every container process at once, as a crash or an OOM kill would.
fn crash(env: &DevEnv) {
    let state = env.home.path().join("projects").join(&env.project).join("state.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state).unwrap()).unwrap();
    let mut pids: Vec<i64> =
        v["containers"].as_object().unwrap().values().filter_map(|c| c["pid"].as_i64()).collect();
    pids.extend(v["supervisor"][0].as_i64());
    for pid in pids {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

#[test]
fn after_a_crash_the_next_up_reuses_the_network_and_down_removes_it_all() {
    if !root() {
        return;
    }
    let env = DevEnv::new("crash").with_images(&[(Fixture::Nginx, "nginx:1.22")]);
    let port = free_port();
    env.write(
        "devenv.yaml",
        &format!("services:\n  web:\n    image: nginx:1.22\n    ports: [\"{port}:80\"]\n"),
    );
    env.ok(&["up", "-d"]);
    let ip = inspect(&env, "web", "ip_address");
    crash(&env);
    let bridge = std::path::Path::new("/sys/class/net").join(format!("dv-{}", env.project_hash()));
    assert!(bridge.exists(), "a crash leaves the bridge");
    // The next up finds the saved network: same subnet, rules put back, the port answers again.
    env.ok(&["up", "-d"]);
    assert_eq!(inspect(&env, "web", "ip_address"), ip);
    eventually(10, "nginx after the restart", || {
        curl(&format!("http://127.0.0.1:{port}/")).is_some_and(|b| b.contains("devenv nginx"))
    });
    crash(&env);
    // down with no supervisor and no container left: from the saved state alone.
    env.ok(&["down"]);
    assert!(!bridge.exists());
    assert_eq!(curl(&format!("http://127.0.0.1:{port}/")), None);
}

/// Three consecutive TCP ports nothing listens on.
fn free_range() -> u16 {
    loop {
        let p = free_port();
        if p < 65000 && (1..3).all(|i| TcpListener::bind(("0.0.0.0", p + i)).is_ok()) {
            return p;
        }
    }
}

#[test]
fn port_ranges_host_addresses_and_the_long_syntax() {
    if !root() {
        return;
    }
    let env = DevEnv::new("syntax").with_images(&[(Fixture::Busybox, "busybox")]);
    let range = free_range();
    let (local, long) = (free_port(), free_port());
    // `$$`: a literal `$` after interpolation, as in Compose.
    let serve = "for p in 9000 9001 9002 80; do mkdir -p /w$$p; echo port $$p > /w$$p/index.html; httpd -p $$p -h /w$$p; done; exec sleep 300";
    env.write(
        "devenv.yaml",
        &format!(
            "services:\n  s:\n    image: busybox\n    command: [sh, -c, \"{serve}\"]\n    ports:\n      - \"{range}-{}:9000-9002\"\n      - \"127.0.0.1:{local}:80\"\n      - target: 9001\n        published: \"{long}\"\n        protocol: tcp\n",
            range + 2
        ),
    );
    env.ok(&["up", "-d"]);
    for i in 0..3u16 {
        let want = format!("port {}\n", 9000 + i);
        eventually(10, "each port of the range", || {
            curl(&format!("http://127.0.0.1:{}/", range + i)).as_deref() == Some(want.as_str())
        });
    }
    assert_eq!(curl(&format!("http://127.0.0.1:{local}/")).as_deref(), Some("port 80\n"));
    assert_eq!(curl(&format!("http://127.0.0.1:{long}/")).as_deref(), Some("port 9001\n"));
    if let Some(host) = host_address() {
        // Published on 127.0.0.1 only: not on the host's other addresses.
        assert_eq!(curl(&format!("http://{host}:{local}/")), None);
        assert!(curl(&format!("http://{host}:{range}/")).is_some());
    }
    let ps = env.ok(&["ps"]);
    assert!(ps.contains(&format!("0.0.0.0:{range}-{}->9000-9002/tcp", range + 2)), "{ps}");
    assert!(ps.contains(&format!("127.0.0.1:{local}->80/tcp")), "{ps}");
    assert_eq!(env.ok(&["port", "s", "80"]).trim(), format!("127.0.0.1:{local}"));
}

/// A network namespace of the test's own standing in for "the outside": reachable from the host
/// over a veth, with no route back to any project subnet, so only masquerade lets a container's
/// traffic come back.
struct Outside {
    ns: String,
    link: String,
    addr: String,
}

impl Outside {
    fn new() -> Outside {
        let tag = std::process::id() % 250 + 1;
        let ns = format!("dvtest-out-{}", std::process::id());
        let link = format!("dvto{}", std::process::id() % 100000);
        let sh = |cmd: &str| {
            let ok = Command::new("sh").args(["-c", cmd]).status().unwrap().success();
            assert!(ok, "{cmd}");
        };
        let (host, addr) = (format!("198.18.{tag}.1"), format!("198.18.{tag}.2"));
        sh(&format!("ip netns add {ns}"));
        sh(&format!("ip link add {link} type veth peer name eth0 netns {ns}"));
        sh(&format!("ip addr add {host}/30 dev {link} && ip link set {link} up"));
        sh(&format!("ip -n {ns} addr add {addr}/30 dev eth0 && ip -n {ns} link set eth0 up && ip -n {ns} link set lo up"));
        Outside { ns, link, addr }
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.link]).status();
        let _ = Command::new("ip").args(["netns", "pids", &self.ns]).output().map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").arg(pid).status();
            }
        });
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn containers_reach_the_outside_through_masquerade() {
    if !root() {
        return;
    }
    let outside = Outside::new();
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "outside\n").unwrap();
    let mut server = Command::new("ip")
        .args(["netns", "exec", &outside.ns, "busybox", "httpd", "-f", "-p", "80", "-h"])
        .arg(site.path())
        .spawn()
        .unwrap();
    let env = DevEnv::new("egress").with_images(&[(Fixture::Busybox, "busybox")]);
    env.write(
        "devenv.yaml",
        "services:\n  c:\n    image: busybox\n    command: [sleep, \"300\"]\n",
    );
    env.ok(&["up", "-d"]);
    let url = format!("http://{}/", outside.addr);
    eventually(10, "the container to fetch a page from outside", || {
        let out = env.run(&["exec", "c", "wget", "-qO-", &url]);
        String::from_utf8_lossy(&out.stdout) == "outside\n"
    });
    env.ok(&["down"]);
    let _ = server.kill();
    let _ = server.wait();
}
