//! `runtime::cp`: `docker cp` semantics both ways, and the container's symlinks (static or
//! swapped in mid-copy, CVE-2018-15664) never reaching the host's files.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use devenv::runtime::cp::{copy_in, copy_out, CpError};

use super::container::{cmd, run, Container};

fn write(path: &Path, content: &str, mode: u32) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mkdir(path: &Path, mode: u32) {
    fs::create_dir_all(path).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// Asserts that two trees have the same entries, types, permission bits, contents and link
/// targets (and, for files, mtimes).
fn assert_same_tree(a: &Path, b: &Path) {
    let (ma, mb) = (fs::symlink_metadata(a).unwrap(), fs::symlink_metadata(b).unwrap());
    let what = format!("{} vs {}", a.display(), b.display());
    assert_eq!(ma.file_type(), mb.file_type(), "{what}");
    if ma.file_type().is_symlink() {
        assert_eq!(fs::read_link(a).unwrap(), fs::read_link(b).unwrap(), "{what}");
        return;
    }
    assert_eq!(ma.mode() & 0o7777, mb.mode() & 0o7777, "{what}");
    if ma.is_file() {
        assert_eq!(fs::read(a).unwrap(), fs::read(b).unwrap(), "{what}");
        assert_eq!(ma.mtime(), mb.mtime(), "{what}");
        return;
    }
    let names = |p: &Path| {
        let mut v: Vec<_> = fs::read_dir(p).unwrap().map(|e| e.unwrap().file_name()).collect();
        v.sort();
        v
    };
    assert_eq!(names(a), names(b), "{what}");
    for n in names(a) {
        assert_same_tree(&a.join(&n), &b.join(&n));
    }
}

/// Every regular file's content under `p` (not following symlinks).
fn contents(p: &Path) -> Vec<String> {
    let md = fs::symlink_metadata(p).unwrap();
    if md.is_file() {
        return vec![fs::read_to_string(p).unwrap()];
    }
    if !md.is_dir() {
        return Vec::new();
    }
    fs::read_dir(p).unwrap().flat_map(|e| contents(&e.unwrap().path())).collect()
}

/// A source tree: an executable, a private subdirectory, an empty directory and a symlink.
fn make_tree(root: &Path) {
    write(&root.join("a.sh"), "#!/bin/sh\necho from-a\n", 0o755);
    mkdir(&root.join("sub"), 0o750);
    write(&root.join("sub/b.txt"), "bee\n", 0o640);
    mkdir(&root.join("empty"), 0o700);
    symlink("a.sh", root.join("link")).unwrap();
    // An old mtime and a non-root owner: the first is kept, the second is not.
    let old = nix::sys::time::TimeSpec::new(1_000_000_000, 0);
    let flag = nix::sys::stat::UtimensatFlags::FollowSymlink;
    nix::sys::stat::utimensat(None, &root.join("a.sh"), &old, &old, flag).unwrap();
    std::os::unix::fs::chown(root.join("sub/b.txt"), Some(1000), Some(1000)).unwrap();
}

#[test]
fn cp_copies_files_and_directories_both_ways() {
    crate::require_root!();
    let c = Container::start();
    let host = c.dir.path().join("host");
    let tree = host.join("tree");
    make_tree(&tree);

    // A file into an existing directory keeps its name, mode, mtime; it belongs to root.
    copy_in(c.pid, &tree.join("a.sh"), "/tmp").unwrap();
    assert_same_tree(&tree.join("a.sh"), &c.path("tmp/a.sh"));
    assert_eq!(fs::metadata(c.path("tmp/a.sh")).unwrap().uid(), 0);
    assert_eq!(run(c.pid, &cmd(&["/tmp/a.sh"])).stdout, "from-a\n");
    // To a new name, and over an existing file.
    copy_in(c.pid, &tree.join("a.sh"), "/tmp/renamed.sh").unwrap();
    assert_same_tree(&tree.join("a.sh"), &c.path("tmp/renamed.sh"));
    write(&c.path("tmp/over"), "old", 0o600);
    copy_in(c.pid, &tree.join("sub/b.txt"), "/tmp/over").unwrap();
    assert_eq!(
        (fs::read_to_string(c.path("tmp/over")).unwrap(), mode(&c.path("tmp/over"))),
        ("bee\n".into(), 0o640)
    );
    assert_eq!(fs::metadata(c.path("tmp/over")).unwrap().uid(), 0);

    // A directory into an existing one, to a new name, and its contents with `/.`.
    copy_in(c.pid, &tree, "/tmp").unwrap();
    assert_same_tree(&tree, &c.path("tmp/tree"));
    assert_eq!(fs::metadata(c.path("tmp/tree/sub/b.txt")).unwrap().uid(), 0);
    copy_in(c.pid, &tree, "/newtree").unwrap();
    assert_same_tree(&tree, &c.path("newtree"));
    write(&c.path("merge/keep"), "kept", 0o644);
    copy_in(c.pid, &tree.join("."), "/merge").unwrap();
    assert_same_tree(&tree.join("sub"), &c.path("merge/sub"));
    assert_eq!(fs::read_to_string(c.path("merge/keep")).unwrap(), "kept");
    let r = run(c.pid, &cmd(&["cat", "/tmp/tree/sub/b.txt", "/merge/link"]));
    assert_eq!(r.stdout, "bee\n#!/bin/sh\necho from-a\n");

    // Docker's error cases.
    let err = copy_in(c.pid, &tree.join("a.sh"), "/no-such-dir/").unwrap_err();
    assert!(matches!(err, CpError::NoDestDir { .. }), "{err}");
    let err = copy_in(c.pid, &tree.join("a.sh"), "/no/such/parent").unwrap_err();
    assert!(matches!(err, CpError::NoDestDir { .. }), "{err}");
    let err = copy_in(c.pid, &tree, "/etc/passwd").unwrap_err();
    assert!(matches!(err, CpError::DirToFile { .. }), "{err}");
    let err = copy_in(c.pid, &host.join("missing"), "/tmp").unwrap_err();
    assert!(matches!(err, CpError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("missing: no such file or directory"), "{err}");

    // And back out: the walkthrough's "copy it back out under another name".
    copy_out(c.pid, "/tmp/a.sh", &host.join("other-name")).unwrap();
    assert_same_tree(&tree.join("a.sh"), &host.join("other-name"));
    copy_out(c.pid, "/tmp/tree", &host.join("out")).unwrap();
    assert_same_tree(&tree, &host.join("out"));
    mkdir(&host.join("into"), 0o755);
    copy_out(c.pid, "/tmp/tree", &host.join("into")).unwrap();
    assert_same_tree(&tree, &host.join("into/tree"));
    copy_out(c.pid, "/tmp/tree/.", &host.join("into")).unwrap();
    assert_same_tree(&tree.join("sub"), &host.join("into/sub"));
    copy_out(c.pid, "etc/passwd", &host.join("into")).unwrap();
    assert!(fs::read_to_string(host.join("into/passwd")).unwrap().contains("nobody:x:65534"));

    let err = copy_out(c.pid, "/etc/nothing", &host.join("x")).unwrap_err();
    assert!(
        matches!(&err, CpError::NotFound { path } if path == Path::new("/etc/nothing")),
        "{err}"
    );
    let err = copy_out(c.pid, "/etc/passwd/", &host.join("x")).unwrap_err();
    assert!(matches!(err, CpError::NotADirectory { .. }), "{err}");
    // Out of a container, setuid and setgid bits are dropped (root would own the copy).
    write(&c.path("tmp/suid"), "x", 0o6755);
    copy_out(c.pid, "/tmp/suid", &host.join("suid")).unwrap();
    assert_eq!(mode(&host.join("suid")), 0o755);
}

/// A host directory with a secret, and the same path inside the container with a decoy, so that
/// a container link to that path has something to resolve to in the container.
fn sentinel(c: &Container) -> (PathBuf, String) {
    let h = c.dir.path().join("host-sentinel");
    write(&h.join("secret"), "HOST-SECRET", 0o644);
    write(&c.path(h.to_str().unwrap()).join("secret"), "container-decoy", 0o644);
    (h.clone(), h.to_str().unwrap().to_owned())
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    v.sort();
    v
}

#[test]
fn cp_resolves_container_symlinks_inside_the_container() {
    crate::require_root!();
    let c = Container::start();
    let host = c.dir.path().join("host");
    mkdir(&host, 0o755);
    let (h, hs) = sentinel(&c);

    // Out: links to /etc/shadow, absolute or climbing, read the container's file.
    write(&c.path("etc/shadow"), "container-shadow\n", 0o640);
    symlink("/etc/shadow", c.path("abs-shadow")).unwrap();
    symlink("../../../../../../etc/shadow", c.path("tmp/rel-shadow")).unwrap();
    for (src, name) in [("/abs-shadow", "x"), ("/tmp/rel-shadow", "y")] {
        copy_out(c.pid, src, &host.join(name)).unwrap();
        let md = fs::symlink_metadata(host.join(name)).unwrap();
        assert!(md.is_file());
        assert_eq!(fs::read_to_string(host.join(name)).unwrap(), "container-shadow\n");
    }
    // /proc magic links lead out of any root: refused.
    let err = copy_out(c.pid, "/proc/1/root/etc/passwd", &host.join("m")).unwrap_err();
    assert!(matches!(err, CpError::SymlinkLoop { .. }), "{err}");
    symlink("/", c.path("evil")).unwrap();
    copy_out(c.pid, &format!("/evil{hs}/secret"), &host.join("z")).unwrap();
    assert_eq!(fs::read_to_string(host.join("z")).unwrap(), "container-decoy");

    // Inside a copied directory, links are copied as links, never followed.
    mkdir(&c.path("d"), 0o755);
    symlink("../../../../../../etc", c.path("d/up")).unwrap();
    symlink("/etc", c.path("d/abs")).unwrap();
    copy_out(c.pid, "/d", &host.join("dout")).unwrap();
    assert_eq!(fs::read_link(host.join("dout/up")).unwrap(), Path::new("../../../../../../etc"));
    assert_eq!(fs::read_link(host.join("dout/abs")).unwrap(), Path::new("/etc"));
    assert_eq!(names(&host.join("dout")), ["abs", "up"]);

    // In: a destination that is (or goes through) a link to `/` or to a host path writes inside
    // the container.
    let payload = format!("payload-{}", std::process::id());
    write(&host.join(&payload), "new", 0o644);
    copy_in(c.pid, &host.join(&payload), "/evil/tmp/").unwrap();
    assert_eq!(fs::read_to_string(c.path("tmp").join(&payload)).unwrap(), "new");
    assert!(!Path::new("/tmp").join(&payload).exists(), "written to the host's /tmp");
    write(&host.join("secret"), "OVERWRITTEN", 0o644);
    copy_in(c.pid, &host.join("secret"), &format!("/evil{hs}/secret")).unwrap();
    assert_eq!(fs::read_to_string(c.path(&hs).join("secret")).unwrap(), "OVERWRITTEN");
    symlink(&hs, c.path("to-h")).unwrap();
    copy_in(c.pid, &host.join(&payload), "/to-h").unwrap();
    copy_in(c.pid, &host.join(&payload), "/to-h/renamed").unwrap();
    assert!(c.path(&hs).join(&payload).exists() && c.path(&hs).join("renamed").exists());
    // The host's sentinel is untouched.
    assert_eq!(names(&h), ["secret"]);
    assert_eq!(fs::read_to_string(h.join("secret")).unwrap(), "HOST-SECRET");
}

#[test]
fn cp_racing_a_container_that_swaps_in_symlinks_never_reaches_the_host() {
    crate::require_root!();
    let c = Container::start();
    let host = c.dir.path().join("host");
    mkdir(&host, 0o755);
    let (h, hs) = sentinel(&c);
    write(&c.path("race/secret"), "container", 0o644);
    write(&c.path("race/sub/file"), "container", 0o644);
    symlink(&hs, c.path("race-alt")).unwrap();
    write(&host.join("payload"), "payload", 0o644);
    write(&host.join("pdir/inner"), "payload", 0o644);

    // What the container would do: keep exchanging its directory with a link to a host path.
    let swapper = Swapper::start(c.path("race"), c.path("race-alt"));
    let (mut copied, mut failed) = (0, 0);
    for i in 0..150 {
        let out = host.join(format!("out-{i}"));
        match copy_out(c.pid, "/race/secret", &out) {
            Ok(()) => {
                copied += 1;
                // The container's files (or what we copied in): never the host's.
                let got = fs::read_to_string(&out).unwrap();
                assert!(
                    ["container", "container-decoy", "payload"].contains(&got.as_str()),
                    "{got:?}"
                );
            }
            Err(_) => failed += 1,
        }
        let dir = host.join(format!("dir-{i}"));
        let _ = copy_out(c.pid, "/race", &dir);
        if dir.exists() {
            assert!(!contents(&dir).iter().any(|s| s.contains("HOST")), "host file read");
            fs::remove_dir_all(&dir).unwrap();
        }
        let _ = copy_in(c.pid, &host.join("payload"), "/race/");
        let _ = copy_in(c.pid, &host.join("pdir"), "/race/sub");
        let _ = copy_in(c.pid, &host.join("payload"), "/race/secret");
        assert_eq!(names(&h), ["secret"], "a host directory was written");
        assert_eq!(fs::read_to_string(h.join("secret")).unwrap(), "HOST-SECRET");
    }
    let swaps = swapper.stop();
    assert!(swaps > 100, "the race did not run ({swaps} swaps)");
    assert!(copied > 0, "no copy succeeded ({failed} failed)");
}

/// A thread exchanging two paths (`renameat2(RENAME_EXCHANGE)`) until stopped; stopped when
/// dropped too, so that a failing test can still remove its files.
struct Swapper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Swapper {
    fn start(a: PathBuf, b: PathBuf) -> Swapper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let exchange = nix::fcntl::RenameFlags::RENAME_EXCHANGE;
                nix::fcntl::renameat2(None, &a, None, &b, exchange).expect("exchange");
                swaps += 1;
            }
            swaps
        });
        Swapper { stop, thread: Some(thread) }
    }

    /// Stops the thread; the number of exchanges it made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().expect("swapper thread"))
    }
}

impl Drop for Swapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
