//! `runtime::cp::sync_in`, live-edit sync: creating, replacing, merging and deleting paths in a
//! running container, and the container's symlinks never reaching the host's files.

use std::fs;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::PathBuf;

use devenv::runtime::cp::{sync_in, CpError};

use super::container::Container;

fn ops(list: &[(&PathBuf, &str)]) -> Vec<(PathBuf, String)> {
    list.iter().map(|(h, c)| ((*h).clone(), c.to_string())).collect()
}

#[test]
fn sync_creates_replaces_merges_and_deletes() {
    crate::require_root!();
    let c = Container::start();
    let host = c.dir.path().join("host");
    fs::create_dir_all(host.join("tree/sub")).unwrap();
    fs::write(host.join("a.txt"), "one\n").unwrap();
    fs::set_permissions(host.join("a.txt"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(host.join("tree/sub/b.txt"), "bee\n").unwrap();
    symlink("sub/b.txt", host.join("tree/link")).unwrap();

    // A file into directories that do not exist yet, a directory merged into an existing one.
    fs::create_dir_all(c.path("/app/tree")).unwrap();
    fs::write(c.path("/app/tree/kept.txt"), "kept\n").unwrap();
    let n = sync_in(
        c.pid,
        &ops(&[(&host.join("a.txt"), "/app/new/deep/a.txt"), (&host.join("tree"), "/app/tree")]),
    )
    .unwrap();
    assert_eq!(n, 2);
    assert_eq!(fs::read_to_string(c.path("/app/new/deep/a.txt")).unwrap(), "one\n");
    assert_eq!(fs::metadata(c.path("/app/new/deep/a.txt")).unwrap().mode() & 0o7777, 0o640);
    let made = fs::metadata(c.path("/app/new/deep")).unwrap();
    assert_eq!((made.mode() & 0o7777, made.uid(), made.gid()), (0o755, 0, 0));
    assert_eq!(fs::read_to_string(c.path("/app/tree/sub/b.txt")).unwrap(), "bee\n");
    assert_eq!(fs::read_to_string(c.path("/app/tree/kept.txt")).unwrap(), "kept\n");
    assert_eq!(fs::read_link(c.path("/app/tree/link")).unwrap(), PathBuf::from("sub/b.txt"));

    // Overwrite a file; a file where a directory is replaces the directory.
    fs::write(host.join("a.txt"), "two\n").unwrap();
    fs::create_dir_all(c.path("/app/was-dir/inner")).unwrap();
    let a = host.join("a.txt");
    sync_in(c.pid, &ops(&[(&a, "/app/new/deep/a.txt"), (&a, "/app/was-dir")])).unwrap();
    assert_eq!(fs::read_to_string(c.path("/app/new/deep/a.txt")).unwrap(), "two\n");
    assert_eq!(fs::read_to_string(c.path("/app/was-dir")).unwrap(), "two\n");

    // Gone on the host: removed in the container, a directory with all in it; already absent,
    // or under a parent that is not there, is fine.
    fs::remove_file(host.join("a.txt")).unwrap();
    fs::remove_dir_all(host.join("tree")).unwrap();
    let n = sync_in(
        c.pid,
        &ops(&[
            (&host.join("a.txt"), "/app/new/deep/a.txt"),
            (&host.join("tree"), "/app/tree"),
            (&host.join("a.txt"), "/app/never-was"),
            (&host.join("tree/sub/b.txt"), "/app/no/such/dir/b.txt"),
        ]),
    )
    .unwrap();
    assert_eq!(n, 4);
    assert!(!c.path("/app/new/deep/a.txt").exists());
    assert!(c.path("/app/new/deep").is_dir());
    assert!(fs::symlink_metadata(c.path("/app/tree")).is_err());
}

#[test]
fn sync_never_follows_the_containers_symlinks_to_the_host() {
    crate::require_root!();
    let c = Container::start();
    // Host files that the container's links name by their host paths.
    let outside = c.dir.path().join("outside");
    fs::create_dir_all(outside.join("dir")).unwrap();
    fs::write(outside.join("dir/precious.txt"), "host\n").unwrap();
    fs::write(outside.join("file.txt"), "host\n").unwrap();
    fs::create_dir_all(c.path("/app")).unwrap();
    symlink(&outside, c.path("/app/esc")).unwrap();
    symlink(outside.join("file.txt"), c.path("/app/file-link")).unwrap();
    symlink(outside.join("dir"), c.path("/app/dir-link")).unwrap();

    let src = c.dir.path().join("new.txt");
    fs::write(&src, "synced\n").unwrap();
    let gone = c.dir.path().join("gone");
    // Through a link in the parent path that leads nowhere inside the container: refused (as
    // `mkdir -p` refuses a dangling link), never resolved on the host.
    let through = ops(&[(&src, "/app/esc/dir/precious.txt")]);
    let e = sync_in(c.pid, &through).unwrap_err();
    assert!(matches!(&e, CpError::NotADirectory { path } if path.ends_with("app/esc")), "{e}");
    // Once the link's target exists inside the container's root, that is where it leads.
    let inside = c.rootfs.join(outside.strip_prefix("/").unwrap()).join("dir");
    fs::create_dir_all(&inside).unwrap();
    sync_in(c.pid, &through).unwrap();
    assert_eq!(fs::read_to_string(inside.join("precious.txt")).unwrap(), "synced\n");
    sync_in(
        c.pid,
        &ops(&[
            // The final name a link: the link is replaced, not written through.
            (&src, "/app/file-link"),
            // Deleting a link to a directory removes the link only.
            (&gone, "/app/dir-link"),
        ]),
    )
    .unwrap();
    assert_eq!(fs::read_to_string(outside.join("dir/precious.txt")).unwrap(), "host\n");
    assert_eq!(fs::read_to_string(outside.join("file.txt")).unwrap(), "host\n");
    assert!(outside.join("dir").is_dir());
    assert!(fs::symlink_metadata(c.path("/app/file-link")).unwrap().is_file());
    assert!(fs::symlink_metadata(c.path("/app/dir-link")).is_err());
}

#[test]
fn sync_stops_at_the_first_error_naming_the_path() {
    crate::require_root!();
    let c = Container::start();
    let src = c.dir.path().join("f.txt");
    fs::write(&src, "x\n").unwrap();
    let e = sync_in(
        c.pid,
        &ops(&[(&src, "/tmp/ok.txt"), (&src, "/etc/passwd/x"), (&src, "/tmp/after")]),
    )
    .unwrap_err();
    assert!(
        matches!(&e, CpError::NotADirectory { path } if path == &PathBuf::from("/etc/passwd")),
        "{e}"
    );
    assert!(c.path("/tmp/ok.txt").exists());
    assert!(!c.path("/tmp/after").exists());
    let e = sync_in(c.pid, &ops(&[(&src, "/")])).unwrap_err();
    assert!(matches!(e, CpError::SyncTarget { .. }), "{e}");
    let e = sync_in(c.pid, &ops(&[(&src, "relative")])).unwrap_err();
    assert!(matches!(e, CpError::SyncTarget { .. }), "{e}");
}
