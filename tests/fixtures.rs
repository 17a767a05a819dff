//! Checks the test fixtures themselves against real tools: the OCI layouts are
//! well formed and reproducible, their programs run in a chroot, and they
//! round-trip through a real registry (docker-registry, skopeo, curl).

mod support;

use std::collections::BTreeSet;
use std::fs::File;
use std::path::Path;
use std::process::{Command, Output};

use flate2::read::GzDecoder;
use serde_json::Value;

use support::images::{self, oci_layout, rootfs_dir, Fixture};
use support::registry::Registry;
use support::{blob_path, manifest_digest, read_json, sha256_file, sha256_reader};

/// Checks that the blob a descriptor points at exists with that digest and size.
fn check_blob(layout: &Path, desc: &Value) -> std::path::PathBuf {
    let digest = desc["digest"].as_str().expect("descriptor digest");
    let path = blob_path(layout, digest);
    let (hex, size) = sha256_file(&path);
    assert_eq!(format!("sha256:{hex}"), digest, "{} content", path.display());
    assert_eq!(Some(size), desc["size"].as_u64(), "{} size", path.display());
    path
}

#[test]
fn layouts_are_valid_and_share_the_base_layer() {
    let mut bases = BTreeSet::new();
    for f in Fixture::ALL {
        let layout = oci_layout(f);
        let what = format!("{} ({})", f.name(), layout.display());
        let marker = read_json(&layout.join("oci-layout"));
        assert_eq!(marker["imageLayoutVersion"], "1.0.0", "{what}");

        let index = read_json(&layout.join("index.json"));
        assert_eq!(index["schemaVersion"], 2, "{what}");
        let manifests = index["manifests"].as_array().expect("index manifests");
        assert_eq!(manifests.len(), 1, "{what}");
        let desc = &manifests[0];
        assert_eq!(desc["mediaType"], images::MANIFEST_TYPE, "{what}");
        assert_eq!(desc["annotations"]["org.opencontainers.image.ref.name"], images::REF_NAME);

        let manifest = read_json(&check_blob(&layout, desc));
        assert_eq!(manifest["mediaType"], images::MANIFEST_TYPE, "{what}");
        assert_eq!(manifest["config"]["mediaType"], images::CONFIG_TYPE, "{what}");
        let config = read_json(&check_blob(&layout, &manifest["config"]));
        assert_eq!(config["architecture"], "amd64", "{what}");
        assert_eq!(config["os"], "linux", "{what}");

        let layers = manifest["layers"].as_array().expect("manifest layers");
        let diff_ids = config["rootfs"]["diff_ids"].as_array().expect("diff_ids");
        let expected_layers = if f == Fixture::Busybox { 1 } else { 2 };
        assert_eq!(layers.len(), expected_layers, "{what}");
        assert_eq!(diff_ids.len(), layers.len(), "{what}");
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            assert_eq!(layer["mediaType"], images::LAYER_TYPE, "{what}");
            let blob = File::open(check_blob(&layout, layer)).unwrap();
            let (hex, _) = sha256_reader(GzDecoder::new(blob)).expect("gunzip layer");
            assert_eq!(diff_id.as_str(), Some(format!("sha256:{hex}").as_str()), "{what}");
        }
        bases.insert(layers[0]["digest"].as_str().unwrap().to_string());

        let c = &config["config"];
        assert!(c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().starts_with("PATH=/")));
        let cmd: Vec<&str> =
            c["Cmd"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        match f {
            Fixture::Busybox => assert_eq!(cmd, ["sh"]),
            Fixture::Redis => {
                assert_eq!(cmd, ["redis-server", "--protected-mode", "no"]);
                assert_eq!(c["WorkingDir"], "/data");
                assert!(c["ExposedPorts"]["6379/tcp"].is_object());
            }
            Fixture::Nginx => {
                assert_eq!(cmd, ["nginx", "-g", "daemon off;"]);
                assert!(c["ExposedPorts"]["80/tcp"].is_object());
                assert_eq!(c["StopSignal"], "SIGQUIT");
            }
            Fixture::Python => {
                assert_eq!(cmd, ["python3"]);
                assert!(c["Env"].as_array().unwrap().contains(&Value::from("LANG=C.UTF-8")));
            }
        }
    }
    assert_eq!(bases.len(), 1, "base layer differs between images: {bases:?}");
}

#[test]
fn builds_are_reproducible() {
    // busybox is the cheapest image; a fresh uncached build must hash the same.
    let dir = tempfile::tempdir().unwrap();
    images::build_layout(Fixture::Busybox, dir.path());
    let cached = oci_layout(Fixture::Busybox);
    assert_eq!(manifest_digest(dir.path()), manifest_digest(&cached));
}

/// Runs `argv` chrooted into `rootfs`, inside a private mount namespace where the
/// host's /dev and /proc are bind-mounted (nginx opens /dev/stdout, which links
/// to /proc/self/fd/1); the mounts vanish with the namespace.
fn run_chrooted(rootfs: &Path, argv: &[&str]) -> Output {
    const SCRIPT: &str = r#"root=$1; shift
        mount --rbind /dev "$root/dev" && mount --rbind /proc "$root/proc" && exec chroot "$root" "$@""#;
    Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--fork", "sh", "-c", SCRIPT, "sh"])
        .arg(rootfs)
        .args(argv)
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LANG", "C.UTF-8")
        // The rootfs is a shared cache: keep python from writing __pycache__ into it.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run unshare (util-linux)")
}

/// Runs a command in the fixture's rootfs, asserts success and returns stdout+stderr.
fn check_runs(f: Fixture, argv: &[&str]) -> String {
    let out = run_chrooted(&rootfs_dir(f), argv);
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {argv:?} failed ({}):\n{text}", f.name(), out.status);
    text
}

#[test]
fn programs_run_in_a_chroot() {
    if !support::is_root() {
        eprintln!("SKIP programs_run_in_a_chroot: needs root for unshare --mount and chroot");
        return;
    }
    assert_eq!(check_runs(Fixture::Busybox, &["busybox", "echo", "ok"]), "ok\n");
    // Applet symlinks, shell arithmetic and /etc/passwd lookups all work.
    let out = check_runs(Fixture::Busybox, &["sh", "-c", "echo $((6 * 7)); id -un; ls -d /tmp"]);
    assert_eq!(out, "42\nroot\n/tmp\n");
    assert!(check_runs(Fixture::Redis, &["redis-server", "--version"]).contains("Redis server v="));
    assert!(check_runs(Fixture::Redis, &["redis-cli", "--version"]).contains("redis-cli "));
    assert!(check_runs(Fixture::Nginx, &["nginx", "-t"]).contains("test is successful"));
    let import = "import json, http.server, os, socket, subprocess, sqlite3; print('ok')";
    assert_eq!(check_runs(Fixture::Python, &["python3", "-c", import]), "ok\n");
}

/// Runs curl (the real client, proxies disabled for loopback) and returns stdout.
fn curl(args: &[&str]) -> String {
    let out = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--noproxy", "*", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    assert!(out.status.success(), "curl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("curl output is UTF-8")
}

#[test]
fn registry_serves_pushed_fixtures() {
    let reg = Registry::start();
    for f in Fixture::ALL {
        reg.push(f, &format!("devenv-test/{}:latest", f.name()));
    }
    for f in Fixture::ALL {
        let url = format!("http://{}/v2/devenv-test/{}/manifests/latest", reg.addr(), f.name());
        let headers = curl(&["--head", "-H", &format!("Accept: {}", images::MANIFEST_TYPE), &url]);
        let digest = headers
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("docker-content-digest").then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no Docker-Content-Digest in:\n{headers}"));
        assert_eq!(digest, manifest_digest(&oci_layout(f)), "{}", f.name());
    }
    let catalog: Value =
        serde_json::from_str(&curl(&[&format!("http://{}/v2/_catalog", reg.addr())])).unwrap();
    let repos: BTreeSet<&str> =
        catalog["repositories"].as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    let want: BTreeSet<String> =
        Fixture::ALL.iter().map(|f| format!("devenv-test/{}", f.name())).collect();
    assert_eq!(repos, want.iter().map(String::as_str).collect());
}

#[test]
fn registry_process_is_gone_after_drop() {
    let reg = Registry::start();
    let pid = reg.pid();
    let dir = reg.log_path().parent().unwrap().to_path_buf();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(reg);
    // Reaped, not just killed: a zombie would still have a /proc entry.
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "registry pid {pid} still exists");
    assert!(!dir.exists(), "registry tempdir {} not removed", dir.display());
}

/// Not a check: builds the fixture images and prints `NAME PATH` for each OCI layout, for
/// scripts (`scripts/quickstart.sh`, benchmarks) that load them into devenv or Docker.
#[test]
#[ignore = "a tool for scripts, run with --ignored"]
fn export_layouts() {
    for f in Fixture::ALL {
        println!("fixture-layout {} {}", f.name(), oci_layout(f).display());
    }
}
