//! `devenv inspect` and `devenv port` on real containers, through the `devenv` binary. The
//! project network is not wired into `up` yet, so these run on the host network and with
//! `network_mode: none`, without published ports.

mod support;

use serde_json::{json, Value};
use support::env::{eventually, DevEnv};
use support::images::Fixture;

fn root() -> bool {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
    }
    support::is_root()
}

const PROJECT: &str = "services:
  svc:
    image: busybox:1.35
    network_mode: host
    command: sleep 1000
    volumes: [\"./data:/data:ro\"]
  once:
    image: busybox:1.35
    network_mode: none
    command: \"true\"
";

fn up(tag: &str) -> DevEnv {
    let env = DevEnv::new(tag).with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write("data/hello.txt", "hi\n");
    env.write("devenv.yaml", PROJECT);
    env.ok(&["up", "-d"]);
    eventually(10, "once to exit", || env.service("once").0 == "exited (0)");
    env
}

#[test]
fn inspect_prints_the_running_container_as_json_and_through_a_template() {
    if !root() {
        return;
    }
    let env = up("inspect");
    let (state, pid) = env.service("svc");
    assert_eq!(state, "running");
    let pid = pid.expect("a running service has a pid");

    let all: Value = serde_json::from_str(&env.ok(&["inspect", "svc"])).unwrap();
    let all = all.as_array().expect("an array");
    assert_eq!(all.len(), 1);
    let svc = &all[0];
    assert_eq!(svc["service"], "svc");
    assert_eq!(svc["project"], env.project.as_str());
    assert_eq!(svc["image"], "busybox:1.35");
    assert!(svc["image_digest"].as_str().unwrap().starts_with("sha256:"), "{svc}");
    assert_eq!(svc["state"], "running");
    assert_eq!(svc["exit_code"], Value::Null);
    assert_eq!(svc["pid"], pid);
    assert_eq!(svc["network_mode"], "host");
    assert_eq!(svc["ip_address"], Value::Null, "no address of its own on the host network");
    assert_eq!(svc["ports"], json!([]));
    let started = svc["started_at"].as_str().expect("started_at");
    assert!(
        started.len() == 20 && started.ends_with('Z') && started.starts_with("20"),
        "{started}"
    );
    let container = svc["container"].as_str().unwrap();
    let ps = env.ps();
    assert_eq!(ps.iter().find(|r| r["service"] == "svc").unwrap()["container"], container);

    let once: Value = serde_json::from_str(&env.ok(&["inspect", "once"])).unwrap();
    assert_eq!(once[0]["state"], "exited");
    assert_eq!(once[0]["exit_code"], 0);
    assert_eq!(once[0]["pid"], Value::Null);
    assert_eq!(once[0]["network_mode"], "none");

    // No service: every container, in name order.
    let both: Value = serde_json::from_str(&env.ok(&["inspect"])).unwrap();
    let names: Vec<&str> =
        both.as_array().unwrap().iter().map(|o| o["service"].as_str().unwrap()).collect();
    assert_eq!(names, ["once", "svc"]);

    assert_eq!(env.ok(&["inspect", "--format", "{{.pid}}", "svc"]), format!("{pid}\n"));
    assert_eq!(
        env.ok(&[
            "inspect",
            "-f",
            "{{ .service }}={{.state}} ip=[{{.ip_address}}] {{json .ports}}",
            "svc",
            "once"
        ]),
        "svc=running ip=[] []\nonce=exited ip=[] []\n"
    );

    let (code, err) = env.fails(&["inspect", "--format", "{{.ipaddress}}", "svc"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("unknown field `ipaddress` (did you mean `ip_address`?)"), "{err}");
    assert!(err.contains("valid fields: service, project, container"), "{err}");
    let (_, err) = env.fails(&["inspect", "svc", "scv"]);
    assert!(err.contains("no such service \"scv\""), "{err}");
    assert!(err.contains("did you mean \"svc\"?"), "{err}");

    // ps: no address and no published ports on the host network.
    let table = env.ok(&["ps"]);
    let row = table.lines().find(|l| l.starts_with("svc ")).expect(&table);
    assert!(row.trim_end().ends_with(" -"), "IP is - and PORTS empty: {table}");
    let svc_row = ps.iter().find(|r| r["service"] == "svc").unwrap();
    assert_eq!(svc_row["ip_address"], Value::Null);
    assert_eq!(svc_row["ports"], json!([]));
}

#[test]
fn inspect_lists_a_bind_mount() {
    if !root() {
        return;
    }
    let env = up("inspect-mounts");
    let all: Value = serde_json::from_str(&env.ok(&["inspect", "svc"])).unwrap();
    let source = env.path("data").canonicalize().unwrap();
    let mounts = all[0]["mounts"].as_array().expect("mounts");
    let data: Vec<&Value> = mounts.iter().filter(|m| m["destination"] == "/data").collect();
    assert_eq!(
        data,
        [
            &json!({"type": "bind", "source": source.to_str().unwrap(), "destination": "/data", "mode": "ro"})
        ],
        "{mounts:?}"
    );
}

#[test]
fn port_reports_what_is_not_published_or_not_running() {
    if !root() {
        return;
    }
    let env = up("port");
    // Nothing is published on the host network: no lines, and no mapping for any port.
    assert_eq!(env.ok(&["port", "svc"]), "");
    let (code, err) = env.fails(&["port", "svc", "80"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("no public port 80/tcp published for service svc"), "{err}");
    let (_, err) = env.fails(&["port", "--protocol", "udp", "svc", "53"]);
    assert!(err.contains("no public port 53/udp published for service svc"), "{err}");
    let (_, err) = env.fails(&["port", "once", "80"]);
    assert!(err.contains("service \"once\" is not running"), "{err}");
    let (_, err) = env.fails(&["port", "sv", "80"]);
    assert!(err.contains("no such service \"sv\""), "{err}");
    let (_, err) = env.fails(&["port", "svc", "http"]);
    assert!(err.contains("invalid port \"http\""), "{err}");

    env.ok(&["down"]);
    let (_, err) = env.fails(&["port", "svc", "80"]);
    assert!(err.contains("service \"svc\" has no container in project"), "{err}");
}
