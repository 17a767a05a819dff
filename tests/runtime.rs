//! The container runtime drivers end to end, as root: real containers from the fixture images,
//! run by both `Youki` (libcontainer through the devenv helper) and `Runc` (Debian's runc) from
//! the same spec, with the same expectations. Every test uses its own ids, project, state root
//! and temporary directories, so tests run in parallel.
//!
//! The test process makes itself a child subreaper, as the supervisor does: container inits
//! become its children once the helper (or `runc create`) exits, and it reaps them itself.

mod support;

#[path = "runtime/harness.rs"]
mod harness;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use devenv::config::volumes::{Mount, MountType};
use devenv::runtime::spec::NetworkNamespace;
use devenv::runtime::{ContainerStatus, Signal};
use harness::{exited_within, service, Kind, TestContainer};

/// Both runtimes run the same test body.
macro_rules! both_runtimes {
    ($($name:ident),* $(,)?) => {
        mod youki {
            $( #[test] fn $name() { if let Some(kind) = super::Kind::youki() { super::$name(kind) } } )*
        }
        mod runc {
            $( #[test] fn $name() { if let Some(kind) = super::Kind::runc() { super::$name(kind) } } )*
        }
    };
}

both_runtimes!(
    echo_to_the_log_and_exit_zero,
    exit_code_is_passed_through,
    stdin_is_passed,
    network_none_has_only_lo_and_it_is_up,
    network_host_sees_the_host_interfaces,
    read_only_bind_mount_is_enforced,
    init_stops_sleep_at_once_on_sigterm,
    init_reaps_orphaned_zombies,
    kill_and_delete_leave_nothing_behind,
    missing_command_exits_127_under_init,
    missing_command_without_init_fails_create,
    unknown_containers_are_fine_to_delete,
    a_created_container_can_be_deleted,
    median_create_and_start,
);

fn echo_to_the_log_and_exit_zero(kind: Kind) {
    let b = TestContainer::new(&kind, service(&["echo", "hello"]), NetworkNamespace::New);
    let pid = b.create();
    let state = b.runtime().state(&b.id).expect("state").expect("known after create");
    assert_eq!((state.status, state.pid), (ContainerStatus::Created, Some(pid)));
    // CVE-2019-5736: until start, the init is the runtime's own program; it must not run from
    // the host's binary file, which a process in the container could then overwrite. youki (our
    // helper) runs from a sealed memfd, Debian's runc from a detached read-only bind mount.
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("the init's exe");
    assert!(!exe.is_file(), "{}: the init runs from the host file {exe:?}", kind.name);
    if kind.name == "youki" {
        assert!(exe.to_string_lossy().starts_with("/memfd:"), "{exe:?}");
    }
    assert_eq!(b.log(), "", "nothing runs before start");
    b.start();
    assert_eq!(b.wait(Duration::from_secs(10)), 0);
    assert_eq!(b.log(), "hello\n");
    let state = b.runtime().state(&b.id).expect("state").expect("known until deleted");
    assert_eq!(state.status, ContainerStatus::Stopped);
}

fn exit_code_is_passed_through(kind: Kind) {
    let b = TestContainer::new(
        &kind,
        service(&["sh", "-c", "echo out; echo err >&2; exit 3"]),
        NetworkNamespace::New,
    );
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 3);
    let log = b.log();
    assert!(
        log.contains("out\n") && log.contains("err\n"),
        "stdout and stderr in the log: {log:?}"
    );
}

fn stdin_is_passed(kind: Kind) {
    let input = tempfile::NamedTempFile::new().expect("temp file");
    fs::write(input.path(), "from stdin\n").expect("write the input");
    let b = TestContainer::new(&kind, service(&["cat"]), NetworkNamespace::New);
    let mut stdio = b.stdio();
    stdio.stdin = Some(fs::File::open(input.path()).expect("open the input").into());
    let pid = b.runtime().create(&b.id, &b.bundle(), stdio).expect("create");
    b.runtime().start(&b.id).expect("start");
    assert_eq!(exited_within(pid, Duration::from_secs(10)), Some(0));
    assert_eq!(b.log(), "from stdin\n");
}

fn network_none_has_only_lo_and_it_is_up(kind: Kind) {
    let script = "ls /sys/class/net; cat /sys/class/net/lo/flags; ip addr";
    let b = TestContainer::new(&kind, service(&["sh", "-c", script]), NetworkNamespace::New);
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 0);
    let log = b.log();
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("lo"), "only lo: {log}");
    // IFF_UP | IFF_LOOPBACK (0x8), plus IFF_RUNNING (0x40) and IFF_LOWER_UP (0x10000) once up.
    let flags = lines.next().and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok());
    assert!(flags.is_some_and(|f| f & 1 == 1), "lo is up: {log}");
    assert!(log.contains("127.0.0.1/8"), "lo has its address: {log}");
    assert!(!log.contains("eth") && !log.contains("veth"), "no other interface: {log}");
}

fn network_host_sees_the_host_interfaces(kind: Kind) {
    let host_names = || -> BTreeSet<String> {
        fs::read_dir("/sys/class/net")
            .expect("list host interfaces")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    let before = host_names();
    let b = TestContainer::new(&kind, service(&["ls", "/sys/class/net"]), NetworkNamespace::Host);
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 0);
    let inside: BTreeSet<String> = b.log().lines().map(str::to_owned).collect();
    // Other tests on this machine may add or remove links meanwhile: compare the stable ones.
    let stable: BTreeSet<String> = before.intersection(&host_names()).cloned().collect();
    assert!(stable.len() > 1, "the host has more than lo: {stable:?}");
    assert!(inside.is_superset(&stable), "inside {inside:?} lacks some of {stable:?}");
}

fn read_only_bind_mount_is_enforced(kind: Kind) {
    let data = tempfile::tempdir().expect("temp dir");
    fs::write(data.path().join("f"), "original\n").expect("write the file");
    let mut svc = service(&[
        "sh",
        "-c",
        "cat /data/f; if echo changed > /data/f; then echo WROTE; else echo DENIED; fi",
    ]);
    let mut mount =
        Mount::new(MountType::Bind, Some(data.path().display().to_string()), "/data".into());
    mount.read_only = true;
    svc.volumes.push(mount);
    let b = TestContainer::new(&kind, svc, NetworkNamespace::New);
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 0);
    let log = b.log();
    assert!(log.starts_with("original\n") && log.contains("DENIED"), "write refused: {log}");
    assert!(log.contains("Read-only file system"), "{log}");
    assert_eq!(fs::read_to_string(data.path().join("f")).expect("read"), "original\n");
}

fn init_stops_sleep_at_once_on_sigterm(kind: Kind) {
    let b = TestContainer::new(&kind, service(&["sleep", "1000"]), NetworkNamespace::New);
    let pid = b.run_to_start();
    std::thread::sleep(Duration::from_millis(100));
    let sent = Instant::now();
    b.runtime().kill(&b.id, Signal::SIGTERM).expect("kill");
    let code = exited_within(pid, Duration::from_secs(1));
    assert_eq!(code, Some(128 + 15), "stopped by SIGTERM within 1 s ({:?})", sent.elapsed());

    // The contrast: busybox sleep as PID 1 (no init) gets no default action for SIGTERM.
    let mut svc = service(&["sleep", "1000"]);
    svc.init = Some(false);
    let bare = TestContainer::new(&kind, svc, NetworkNamespace::New);
    let pid = bare.run_to_start();
    std::thread::sleep(Duration::from_millis(100));
    bare.runtime().kill(&bare.id, Signal::SIGTERM).expect("kill");
    assert_eq!(exited_within(pid, Duration::from_millis(500)), None, "PID 1 ignores SIGTERM");
    bare.runtime().kill(&bare.id, Signal::SIGKILL).expect("kill -9");
    assert_eq!(exited_within(pid, Duration::from_secs(5)), Some(128 + 9));
}

fn init_reaps_orphaned_zombies(kind: Kind) {
    // The inner shell leaves `sleep 0.1` orphaned: it is reparented to PID 1 (the init), which
    // must reap it when it exits. Then list the states of every process in the container.
    let script = "sh -c 'sleep 0.1 &'; sleep 0.6; cat /proc/[0-9]*/stat";
    let b = TestContainer::new(&kind, service(&["sh", "-c", script]), NetworkNamespace::New);
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 0);
    let log = b.log();
    // stat: `pid (comm) state ...`
    let states: Vec<(&str, &str)> = log
        .lines()
        .filter_map(|l| {
            let (comm, rest) = l.split_once(") ")?;
            Some((comm.split_once(" (")?.1, rest.split(' ').next()?))
        })
        .collect();
    assert!(states.iter().any(|(comm, _)| *comm == "init"), "init is PID 1: {log}");
    assert!(!states.iter().any(|(_, s)| *s == "Z"), "no zombie left: {states:?}");
    assert!(!states.iter().any(|(comm, _)| *comm == "sleep"), "the orphan is gone: {states:?}");
}

fn kill_and_delete_leave_nothing_behind(kind: Kind) {
    let b = TestContainer::new(&kind, service(&["sleep", "1000"]), NetworkNamespace::New);
    let pid = b.run_to_start();
    assert!(b.cgroup_dirs().next().is_some(), "the container has its cgroup");
    assert!(b.state_dir().exists());
    b.runtime().kill(&b.id, Signal::SIGKILL).expect("kill");
    assert_eq!(exited_within(pid, Duration::from_secs(5)), Some(128 + 9));
    b.runtime().delete(&b.id, false).expect("delete");
    b.teardown();
    b.assert_nothing_left(pid);

    // A running container goes with a forced delete too.
    let b = TestContainer::new(&kind, service(&["sleep", "1000"]), NetworkNamespace::New);
    let pid = b.run_to_start();
    assert!(b.runtime().delete(&b.id, false).is_err(), "a running container needs force");
    b.runtime().delete(&b.id, true).expect("forced delete");
    assert_eq!(exited_within(pid, Duration::from_secs(5)), Some(128 + 9));
    b.teardown();
    b.assert_nothing_left(pid);
}

fn missing_command_exits_127_under_init(kind: Kind) {
    let b = TestContainer::new(&kind, service(&["no-such-program", "x"]), NetworkNamespace::New);
    b.run_to_start();
    assert_eq!(b.wait(Duration::from_secs(10)), 127);
    let log = b.log();
    assert!(log.contains("cannot run \"no-such-program\""), "{log}");
}

fn missing_command_without_init_fails_create(kind: Kind) {
    let mut svc = service(&["no-such-program"]);
    svc.init = Some(false);
    let b = TestContainer::new(&kind, svc, NetworkNamespace::New);
    let err = b.runtime().create(&b.id, &b.bundle(), b.stdio()).expect_err("create fails");
    let message = err.to_string();
    assert!(message.contains(&b.id) && message.contains("create"), "{message}");
    assert!(message.contains("no-such-program"), "names the program: {message}");
    eprintln!("{}: {message}", kind.name);
    assert_eq!(b.runtime().state(&b.id).expect("state"), None, "nothing left of it");
    b.teardown();
    b.assert_nothing_left(0);
}

fn unknown_containers_are_fine_to_delete(kind: Kind) {
    let b = TestContainer::new(&kind, service(&["true"]), NetworkNamespace::New);
    assert_eq!(b.runtime().state(&b.id).expect("state"), None);
    b.runtime().delete(&b.id, false).expect("delete of an unknown container");
    b.runtime().delete(&b.id, true).expect("again, forced");
}

fn a_created_container_can_be_deleted(kind: Kind) {
    // What a rollback does when something fails between create and start.
    let b = TestContainer::new(&kind, service(&["echo", "never"]), NetworkNamespace::New);
    let pid = b.create();
    b.runtime().delete(&b.id, false).expect("delete a created container");
    assert_eq!(exited_within(pid, Duration::from_secs(5)), Some(128 + 9));
    assert_eq!(b.log(), "", "the program never ran");
    b.teardown();
    b.assert_nothing_left(pid);
}

fn median_create_and_start(kind: Kind) {
    // One rootfs and bundle, twenty containers in turn: what `up` pays per container once the
    // image is unpacked (the overlay mount is measured apart, below).
    let b = TestContainer::new(&kind, service(&["true"]), NetworkNamespace::New);
    let mut times = Vec::new();
    for i in 0..21 {
        let id = format!("{}-{i}", b.id);
        let started = Instant::now();
        let pid = b.runtime().create(&id, &b.bundle(), b.stdio()).expect("create");
        b.runtime().start(&id).expect("start");
        times.push(started.elapsed());
        assert_eq!(exited_within(pid, Duration::from_secs(10)), Some(0));
        b.runtime().delete(&id, true).expect("delete");
    }
    // The first includes one-time work: Youki's sealed copy of the helper binary.
    let first = times.remove(0);
    times.sort();
    let median = times[times.len() / 2];
    let t = Instant::now();
    let mount = harness::time_overlay_mount();
    eprintln!(
        "{}: create+start of busybox `true`: median {median:?} (min {:?}, max {:?}) over {} \
         runs after a first one of {first:?}; overlay mount+unmount {mount:?} ({:?} with setup)",
        kind.name,
        times[0],
        times[times.len() - 1],
        times.len(),
        t.elapsed()
    );
    b.teardown();
    b.assert_nothing_left(0);
}

#[test]
fn init_binary_is_written_once_and_executable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = devenv::runtime::init_binary(dir.path()).expect("write init");
    let meta = fs::metadata(&path).expect("stat");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755);
    assert_eq!(meta.len(), devenv::runtime::init::INIT.len() as u64);
    assert_eq!(devenv::runtime::init_binary(dir.path()).expect("again"), path);
    assert_eq!(fs::read_dir(dir.path()).expect("list").count(), 1, "no temporary file left");
    // It is a static executable: it runs with no library around it.
    let out = std::process::Command::new(&path).args(["--", "sh", "-c", "exit 7"]).status();
    assert_eq!(out.expect("run init").code(), Some(7));
}

#[test]
fn overlay_mounts_layers_in_order_and_is_idempotent() {
    if !support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    harness::check_overlay_layers();
}

#[test]
fn many_long_layers_fit_in_one_mount() {
    if !support::is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    harness::check_many_layers(Path::new("layer-with-a-rather-long-name-like-a-sha256-digest"));
}
