//! Resource limits and privileges on real containers (as root), read back from the kernel: the
//! container's cgroups under /sys/fs/cgroup, its processes' /proc/PID/limits and status, and what
//! its programs report. Each test leaves the host clean (checked by the harness on drop).

mod support;

use std::path::PathBuf;

use devenv::runtime::{cgroups_path, oom::oom_kills, oom_killed};
use support::env::{eventually, DevEnv};
use support::images::Fixture;

fn root() -> bool {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
    }
    support::is_root()
}

/// The cgroup path devenv gives the service's container (from `ps`'s container id).
fn cgroup_of(env: &DevEnv, service: &str) -> String {
    let row = env.ps().into_iter().find(|r| r["service"] == service).expect("service in ps");
    cgroups_path(&env.project, row["container"].as_str().unwrap())
}

/// A file of the container's cgroup in the v1 hierarchy of `controller` (this host is hybrid),
/// or in the unified tree on a cgroup v2 host.
fn cgroup_file(cgroup: &str, controller: &str, v1: &str, v2: &str) -> PathBuf {
    let root = PathBuf::from("/sys/fs/cgroup");
    let rel = cgroup.trim_start_matches('/');
    if root.join("cgroup.controllers").exists() {
        root.join(rel).join(v2)
    } else {
        root.join(controller).join(rel).join(v1)
    }
}

fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .into()
}

/// The service's state once the supervisor has recorded its exit. Until then `ps` may show
/// `exited (?)`: the process is gone (a zombie) but its exit status is not saved yet.
fn exit_of(env: &DevEnv, service: &str) -> String {
    let mut state = String::new();
    eventually(30, "the exit to be recorded", || {
        state = env.service(service).0;
        state.starts_with("exited (") && !state.starts_with("exited (?)")
    });
    state
}

/// Python filling 200 MB under a 64 MB limit is killed by the kernel, with SIGKILL (137), and the
/// container's memory cgroup counts the OOM kill until the container is deleted.
fn oom_kill_under(env: &DevEnv, limit_yaml: &str) {
    env.write(
        "devenv.yaml",
        &format!("services:\n  hog:\n    image: python:3.11\n    network_mode: none\n{limit_yaml}    command: [python3, -c, \"b = b'x' * (200 << 20); print('survived')\"]\n"),
    );
    env.ok(&["up", "-d"]);
    let state = exit_of(env, "hog");
    assert!(state.starts_with("exited (137)"), "{state}");
    let logs = env.ok(&["logs", "--no-color", "hog"]);
    assert!(!logs.contains("survived"), "{logs}");
    // The cgroup outlives the container's processes: the count is there until `down`.
    let cgroup = cgroup_of(env, "hog");
    assert!(oom_kills(&cgroup).is_some_and(|n| n >= 1), "{cgroup}: {:?}", oom_kills(&cgroup));
    assert!(oom_killed(&cgroup));
    let limit = cgroup_file(&cgroup, "memory", "memory.limit_in_bytes", "memory.max");
    assert_eq!(read(&limit), (64u64 << 20).to_string());
    env.ok(&["down"]);
    assert!(!oom_killed(&cgroup), "the cgroup is removed with the container");
}

#[test]
fn a_process_over_mem_limit_is_oom_killed() {
    if !root() {
        return;
    }
    let env = DevEnv::new("oom").with_images(&[(Fixture::Python, "python:3.11")]);
    oom_kill_under(&env, "    mem_limit: 64m\n");
}

#[test]
fn deploy_resources_limits_memory_works_like_mem_limit() {
    if !root() {
        return;
    }
    let env = DevEnv::new("oomdeploy").with_images(&[(Fixture::Python, "python:3.11")]);
    oom_kill_under(&env, "    deploy:\n      resources:\n        limits:\n          memory: 64M\n");
}

/// `ps` and `inspect` say the container was OOM-killed. Needs the supervisor's reaper to record
/// `runtime::oom_killed` when the container exits (src/supervisor/shared.rs `reap`).
#[test]
fn ps_and_inspect_say_oom() {
    if !root() {
        return;
    }
    let env = DevEnv::new("oomps").with_images(&[(Fixture::Python, "python:3.11")]);
    env.write(
        "devenv.yaml",
        "services:\n  hog:\n    image: python:3.11\n    network_mode: none\n    mem_limit: 64m\n    command: [python3, -c, \"b = b'x' * (200 << 20)\"]\n",
    );
    env.ok(&["up", "-d"]);
    assert_eq!(exit_of(&env, "hog"), "exited (137) oom");
    let inspected: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "hog"])).unwrap();
    assert_eq!(inspected[0]["oom_killed"], true, "{inspected:#}");
}

/// busybox sh gives up at its first failed fork (status 2); the cgroup says the limit was hit and
/// never passed.
#[test]
fn a_fork_loop_stops_at_pids_limit() {
    if !root() {
        return;
    }
    let env = DevEnv::new("pids").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  forker:\n    image: busybox:1.35\n    network_mode: none\n    pids_limit: 20\n    command: [sh, -c, \"for i in $$(seq 100); do sleep 100 & done; wait\"]\n",
    );
    env.ok(&["up", "-d"]);
    assert_eq!(exit_of(&env, "forker"), "exited (2)");
    let logs = env.ok(&["logs", "--no-color", "forker"]);
    assert!(logs.contains("forker | sh: can't fork: Resource temporarily unavailable"), "{logs}");
    let cgroup = cgroup_of(&env, "forker");
    assert_eq!(read(&cgroup_file(&cgroup, "pids", "pids.max", "pids.max")), "20");
    // `max N`: how many forks the limit refused.
    let events = read(&cgroup_file(&cgroup, "pids", "pids.events", "pids.events"));
    let refused: u64 = events.strip_prefix("max ").and_then(|n| n.parse().ok()).unwrap();
    assert!(refused >= 1, "{events}");
    // The high-water mark, on kernels that keep one.
    let peak = cgroup_file(&cgroup, "pids", "pids.peak", "pids.peak");
    if peak.exists() {
        assert_eq!(read(&peak), "20");
    }
}

#[test]
fn cpus_set_the_cfs_quota() {
    if !root() {
        return;
    }
    let env = DevEnv::new("cpus").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  box:\n    image: busybox:1.35\n    network_mode: none\n    cpus: 0.5\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    let cgroup = cgroup_of(&env, "box");
    if PathBuf::from("/sys/fs/cgroup/cgroup.controllers").exists() {
        assert_eq!(read(&cgroup_file(&cgroup, "cpu", "", "cpu.max")), "50000 100000");
    } else {
        assert_eq!(read(&cgroup_file(&cgroup, "cpu", "cpu.cfs_quota_us", "")), "50000");
        assert_eq!(read(&cgroup_file(&cgroup, "cpu", "cpu.cfs_period_us", "")), "100000");
    }
}

/// The soft and hard limits of `name` (as /proc/PID/limits words it) in a limits file.
fn limit(limits: &str, name: &str) -> (String, String) {
    let line = limits.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{limits}"));
    let fields: Vec<&str> = line[name.len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

#[test]
fn ulimits_reach_the_containers_processes() {
    if !root() {
        return;
    }
    let env = DevEnv::new("ulimits").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    // Below this host's own hard limits: without CAP_SYS_RESOURCE devenv cannot raise them.
    env.write(
        "devenv.yaml",
        "services:\n  box:\n    image: busybox:1.35\n    network_mode: none\n    ulimits:\n      nofile: {soft: 512, hard: 4096}\n      nproc: 300\n    command: [sh, -c, \"echo soft=$$(ulimit -n) hard=$$(ulimit -Hn); sleep 1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    eventually(10, "the limits to be printed", || {
        env.ok(&["logs", "--no-color", "box"]).contains("soft=")
    });
    let logs = env.ok(&["logs", "--no-color", "box"]);
    assert!(logs.contains("box | soft=512 hard=4096"), "{logs}");
    let limits = env.ok(&["exec", "box", "cat", "/proc/1/limits"]);
    assert_eq!(limit(&limits, "Max open files"), ("512".into(), "4096".into()));
    assert_eq!(limit(&limits, "Max processes"), ("300".into(), "300".into()));
}

/// The CapEff line of a status file, as a number.
fn cap_eff(status: &str) -> u64 {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:")).expect("CapEff");
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

#[test]
fn privileged_gets_every_capability_and_may_change_the_network() {
    if !root() {
        return;
    }
    let env = DevEnv::new("priv").with_images(&[(Fixture::Busybox, "busybox:1.35")]);
    env.write(
        "devenv.yaml",
        "services:\n  priv:\n    image: busybox:1.35\n    network_mode: none\n    privileged: true\n    command: [sleep, \"1000\"]\n  plain:\n    image: busybox:1.35\n    network_mode: none\n    command: [sleep, \"1000\"]\n",
    );
    env.ok(&["up", "-d"]);
    // Every capability this (root) test process holds: all that devenv can pass on.
    let host = std::fs::read_to_string("/proc/self/status").unwrap();
    let host_bounding = host.lines().find_map(|l| l.strip_prefix("CapBnd:")).unwrap();
    let host_bounding = u64::from_str_radix(host_bounding.trim(), 16).unwrap();

    let privileged = cap_eff(&env.ok(&["exec", "priv", "cat", "/proc/self/status"]));
    assert_eq!(privileged, host_bounding, "{privileged:x} != {host_bounding:x}");
    let plain = cap_eff(&env.ok(&["exec", "plain", "cat", "/proc/self/status"]));
    assert_ne!(plain, host_bounding);
    assert_eq!(plain & (1 << 12), 0, "no CAP_NET_ADMIN without privileged: {plain:x}");

    let add = ["ip", "link", "add", "dvtest0", "type", "bridge"];
    let out = env.ok(&[&["exec", "priv"][..], &add[..]].concat());
    assert_eq!(out, "");
    let links = env.ok(&["exec", "priv", "ip", "-o", "link"]);
    assert!(links.contains("dvtest0"), "{links}");
    let (_, err) = env.fails(&[&["exec", "plain"][..], &add[..]].concat());
    assert!(err.contains("Operation not permitted"), "{err}");

    // /sys is writable, and nothing of /proc is masked.
    let mounts = env.ok(&["exec", "priv", "grep", " /sys ", "/proc/self/mounts"]);
    assert!(mounts.contains(" rw,"), "{mounts}");
    let kcore = env.run(&["exec", "priv", "grep", "-c", " /proc/kcore ", "/proc/self/mounts"]);
    assert_eq!(String::from_utf8_lossy(&kcore.stdout).trim(), "0");
}
