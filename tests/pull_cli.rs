//! Pulling from the command line: `devenv pull` names the images it could not pull and exits 1;
//! `up` on an empty store pulls from a registry on loopback (with its progress lines) and runs
//! the services, in the foreground's process and before `up -d` forks its supervisor.

mod support;

use std::process::Command;

use support::env::{eventually, free_port, DevEnv};
use support::images::Fixture;
use support::registry::Registry;

#[test]
fn a_failed_pull_names_the_image_and_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("devenv.yaml"),
        "services:\n  web:\n    image: registry.invalid/team/web:1\n  \
         worker:\n    image: registry.invalid/team/web:1\n    pull_policy: always\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .arg("pull")
        .current_dir(tmp.path())
        .env("DEVENV_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("registry.invalid/team/web:1"), "{stderr}");
    // One image for both services: pulled (and reported) once.
    assert!(stderr.ends_with("error: could not pull registry.invalid/team/web:1\n"), "{stderr}");
}

#[test]
fn pulling_an_unknown_service_fails() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("devenv.yaml"), "services:\n  web:\n    image: nginx\n")
        .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_devenv"))
        .args(["pull", "-q", "db"])
        .current_dir(tmp.path())
        .env("DEVENV_HOME", tmp.path().join("home"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no service \"db\""), "{stderr}");
}

#[test]
fn up_pulls_what_is_missing_then_runs_it_and_image_pull_takes_references() {
    if !support::is_root() {
        eprintln!("skipped: needs root to run containers");
        return;
    }
    let registry = Registry::start();
    registry.push(Fixture::Redis, "library/redis:7");
    registry.push(Fixture::Busybox, "tools/busybox:1");
    let env = DevEnv::new("pull-up");
    let port = free_port().to_string();
    let image = format!("{}/library/redis:7", registry.addr());
    env.write(
        "devenv.yaml",
        &format!("services:\n  redis:\n    image: {image}\n    network_mode: host\n    command: [redis-server, --port, \"{port}\", --save, \"\"]\n"),
    );
    // Not a terminal: one plain line per layer, and one for the image.
    let out = env.run(&["up", "-d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(" done"), "progress lines: {stderr}");
    assert!(stderr.contains("pulled sha256:"), "{stderr}");
    eventually(10, "redis to answer PING", || {
        let out = Command::new("redis-cli").args(["-p", &port, "ping"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim() == "PONG"
    });
    // Already there: `up` (missing policy) pulls nothing the second time.
    env.ok(&["down"]);
    let out = env.run(&["up", "-d"]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("pulled"));
    env.ok(&["down"]);
    // `devenv image pull REF`, then `images` lists it.
    env.ok(&["image", "pull", "-q", &format!("{}/tools/busybox:1", registry.addr())]);
    let images = env.ok(&["images"]);
    assert!(images.contains("tools/busybox:1"), "{images}");
}
