//! The test harness of `tests/runtime.rs`: a runtime per test ([`Kind`]) and a container built
//! the way the supervisor will build one ([`TestContainer`]): overlay over the busybox fixture,
//! spec from a `Service`, bundle with a devenv cgroup, log file for stdout and stderr.

use std::cell::Cell;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use devenv::config::forms::Command as Cmd;
use devenv::config::model::Service;
use devenv::runtime::spec::{build_spec, NetworkNamespace, SpecInput};
use devenv::runtime::{
    cgroups_path, init_binary, netns, remove_project_cgroups, rootfs, set_child_subreaper,
    try_wait_exit, write_bundle, Runc, Runtime, Stdio, Youki,
};
use oci_spec::image::Config as ImageConfig;

use crate::support::images::{oci_layout, rootfs_dir, Fixture};
use crate::support::{blob_path, is_root, manifest_digest, read_json};

/// A runtime with its own state root.
pub struct Kind {
    pub name: &'static str,
    pub runtime: Arc<dyn Runtime>,
    pub root: PathBuf,
    _dir: tempfile::TempDir,
}

impl Kind {
    /// `None` (the test is skipped) when not root: containers need it.
    pub fn youki() -> Option<Kind> {
        Kind::new("youki", |root| Arc::new(Youki::new(root, env!("CARGO_BIN_EXE_devenv"))))
    }

    pub fn runc() -> Option<Kind> {
        let found = std::process::Command::new("runc").arg("--version").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "runc is not installed: `apt-get install runc` (scripts/install-test-deps.sh)"
        );
        Kind::new("runc", |root| Arc::new(Runc::new(root, "runc")))
    }

    fn new(name: &'static str, make: impl FnOnce(PathBuf) -> Arc<dyn Runtime>) -> Option<Kind> {
        if !is_root() {
            eprintln!("skipped: containers need root");
            return None;
        }
        // As the supervisor does: container inits become our children once the helper exits.
        set_child_subreaper().expect("PR_SET_CHILD_SUBREAPER");
        let dir = tempfile::tempdir().expect("state root");
        let root = dir.path().join("state");
        Some(Kind { name, runtime: make(root.clone()), root, _dir: dir })
    }
}

/// Unique within the machine: tests of several processes run at once.
fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

pub fn service(command: &[&str]) -> Service {
    Service {
        command: Some(Cmd(command.iter().map(|s| s.to_string()).collect())),
        ..Service::default()
    }
}

fn busybox_config() -> ImageConfig {
    let layout = oci_layout(Fixture::Busybox);
    let manifest = read_json(&blob_path(&layout, &manifest_digest(&layout)));
    let digest = manifest["config"]["digest"].as_str().expect("config digest");
    let config = read_json(&blob_path(&layout, digest));
    serde_json::from_value(config["config"].clone()).expect("image config")
}

/// Waits for the child `pid` to exit, polling; `None` if it still runs after `timeout`.
pub fn exited_within(pid: i32, timeout: Duration) -> Option<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(code) = try_wait_exit(pid).expect("waitpid") {
            return Some(code);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reaps `pid` if it is still an unreaped child, waiting up to 5 s; errors are ignored (it may
/// have been reaped by the test already).
fn reap_quietly(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while matches!(try_wait_exit(pid), Ok(None)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// One container of a one-service project, torn down on drop if the test did not.
pub struct TestContainer {
    pub id: String,
    project: String,
    runtime: Arc<dyn Runtime>,
    root: PathBuf,
    network: NetworkNamespace,
    dir: tempfile::TempDir,
    pid: Cell<Option<i32>>,
    torn_down: Cell<bool>,
}

impl TestContainer {
    pub fn new(kind: &Kind, service: Service, network: NetworkNamespace) -> TestContainer {
        let dir = tempfile::tempdir().expect("container dir");
        let (project, id) = (unique("rtp"), unique(&format!("{}-", kind.name)));
        let rootfs = dir.path().join("rootfs");
        rootfs::mount_overlay(
            &[rootfs_dir(Fixture::Busybox)],
            &dir.path().join("upper"),
            &dir.path().join("work"),
            &rootfs,
        )
        .expect("mount the rootfs");
        let c = TestContainer {
            id,
            project,
            runtime: kind.runtime.clone(),
            root: kind.root.clone(),
            network: network.clone(),
            dir,
            pid: Cell::new(None),
            torn_down: Cell::new(false),
        };
        let init = init_binary(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("init")).expect("init");
        let image = busybox_config();
        let volume_dirs = |name: &str| c.dir.path().join("volumes").join(name);
        let input = SpecInput {
            service_name: "svc",
            service: &service,
            image_config: &image,
            rootfs: &rootfs,
            network,
            volume_dirs: &volume_dirs,
            hosts_file: None,
            resolv_conf: None,
            init: Some(&init),
            extra_env: &[],
        };
        let mut spec = build_spec(&input).expect("spec");
        write_bundle(&c.bundle(), &mut spec, &cgroups_path(&c.project, &c.id)).expect("bundle");
        c
    }

    pub fn runtime(&self) -> &dyn Runtime {
        &*self.runtime
    }

    pub fn bundle(&self) -> PathBuf {
        self.dir.path().join("bundle")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("container.log")
    }

    /// stdout and stderr appended to one log file, as the supervisor opens it.
    pub fn stdio(&self) -> Stdio {
        let open = || {
            let file = File::options().append(true).create(true).open(self.log_path());
            file.expect("open the log").into()
        };
        Stdio { stdin: None, stdout: open(), stderr: open() }
    }

    pub fn create(&self) -> i32 {
        let pid = self.runtime.create(&self.id, &self.bundle(), self.stdio()).expect("create");
        self.pid.set(Some(pid));
        if self.network == NetworkNamespace::New {
            netns::loopback_up(pid).expect("lo up");
        }
        pid
    }

    pub fn start(&self) {
        self.runtime.start(&self.id).expect("start");
    }

    pub fn run_to_start(&self) -> i32 {
        let pid = self.create();
        self.start();
        pid
    }

    pub fn wait(&self, timeout: Duration) -> i32 {
        let pid = self.pid.get().expect("created");

        exited_within(pid, timeout)
            .unwrap_or_else(|| panic!("{} still runs: {}", self.id, self.log()))
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root.join(&self.id)
    }

    /// The container's cgroup directories, in every hierarchy.
    pub fn cgroup_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        cgroup_trees()
            .map(|t| t.join("devenv").join(&self.project).join(&self.id))
            .filter(|d| d.exists())
    }

    /// What `down` does: delete the container, unmount its rootfs, remove the project's cgroups.
    pub fn teardown(&self) {
        let deleted = self.runtime.delete(&self.id, true);
        if let Some(pid) = self.pid.get() {
            reap_quietly(pid);
        }
        deleted.expect("delete");
        rootfs::unmount(&self.dir.path().join("rootfs")).expect("unmount");
        remove_project_cgroups(&self.project).expect("remove the project's cgroups");
        self.torn_down.set(true);
    }

    /// No process, state, cgroup or mount of the container remains.
    pub fn assert_nothing_left(&self, pid: i32) {
        if pid > 0 {
            assert!(!Path::new(&format!("/proc/{pid}")).exists(), "process {pid} is gone");
        }
        assert_eq!(self.runtime.state(&self.id).expect("state"), None);
        assert!(!self.state_dir().exists(), "state dir {:?} removed", self.state_dir());
        let left: Vec<PathBuf> = cgroup_trees()
            .map(|t| t.join("devenv").join(&self.project))
            .filter(|d| d.exists())
            .collect();
        assert!(left.is_empty(), "cgroups left: {left:?}");
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let dir = self.dir.path().to_string_lossy();
        assert!(!mountinfo.contains(dir.as_ref()), "a mount under {dir} remains");
    }
}

impl Drop for TestContainer {
    fn drop(&mut self) {
        if !self.torn_down.get() {
            let _ = self.runtime.delete(&self.id, true);
            if let Some(pid) = self.pid.get() {
                reap_quietly(pid);
            }
            let _ = rootfs::unmount(&self.dir.path().join("rootfs"));
            let _ = remove_project_cgroups(&self.project);
        }
    }
}

/// `/sys/fs/cgroup` (unified) and each hierarchy under it (legacy and hybrid).
fn cgroup_trees() -> impl Iterator<Item = PathBuf> {
    let root = PathBuf::from("/sys/fs/cgroup");
    let subdirs: Vec<PathBuf> = fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    std::iter::once(root).chain(subdirs)
}

/// Mount and unmount of an overlay over the busybox rootfs.
pub fn time_overlay_mount() -> Duration {
    let dir = tempfile::tempdir().expect("temp dir");
    let (upper, work, target) = (dir.path().join("u"), dir.path().join("w"), dir.path().join("t"));
    let lower = [rootfs_dir(Fixture::Busybox)];
    let started = Instant::now();
    rootfs::mount_overlay(&lower, &upper, &work, &target).expect("mount");
    rootfs::unmount(&target).expect("unmount");
    started.elapsed()
}

/// Two layers, base first: the upper one wins, writes go to `upper`, both calls idempotent.
pub fn check_overlay_layers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let p = |n: &str| dir.path().join(n);
    for (layer, files) in
        [("base", [("a", "base"), ("b", "base")]), ("top", [("b", "top"), ("c", "top")])]
    {
        fs::create_dir_all(p(layer)).expect("layer dir");
        for (name, text) in files {
            fs::write(p(layer).join(name), text).expect("layer file");
        }
    }
    let lower = [p("base"), p("top")];
    rootfs::mount_overlay(&lower, &p("upper"), &p("work"), &p("merged")).expect("mount");
    rootfs::mount_overlay(&lower, &p("upper"), &p("work"), &p("merged")).expect("mount again");
    let read = |n: &str| fs::read_to_string(p("merged").join(n)).expect("read merged");
    assert_eq!((read("a"), read("b"), read("c")), ("base".into(), "top".into(), "top".into()));
    fs::write(p("merged").join("new"), "x").expect("write through the overlay");
    assert!(p("upper").join("new").exists() && !p("top").join("new").exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert_eq!(mounts.matches(&*p("merged").to_string_lossy()).count(), 1, "mounted once");
    rootfs::unmount(&p("merged")).expect("unmount");
    rootfs::unmount(&p("merged")).expect("unmount again");
    assert!(!p("merged").join("a").exists());
    // One lower directory is an overlay too.
    rootfs::mount_overlay(&lower[..1], &p("upper2"), &p("work2"), &p("merged")).expect("one layer");
    assert_eq!(read("b"), "base");
    rootfs::unmount(&p("merged")).expect("unmount");
}

/// More layers than the kernel's page of mount options can name by path.
pub fn check_many_layers(name: &Path) {
    let dir = tempfile::tempdir().expect("temp dir");
    let layers: Vec<PathBuf> =
        (0..80).map(|i| dir.path().join(format!("{}-{i:03}", name.display()))).collect();
    for (i, layer) in layers.iter().enumerate() {
        fs::create_dir_all(layer).expect("layer");
        fs::write(layer.join("which"), i.to_string()).expect("file");
    }
    let total: usize = layers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(total > 4096, "the paths alone overflow a page: {total}");
    let merged = dir.path().join("merged");
    rootfs::mount_overlay(&layers, &dir.path().join("u"), &dir.path().join("w"), &merged)
        .expect("mount 80 layers");
    assert_eq!(fs::read_to_string(merged.join("which")).expect("read"), "79", "the top layer wins");
    rootfs::unmount(&merged).expect("unmount");
}
