//! User resolution against the image's /etc/passwd and /etc/group.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use oci_spec::image::ConfigBuilder;

use super::super::user::{resolve, resolve_in_root};
use super::super::*;
use super::Case;

const PASSWD: &str = "\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1::/:/sbin/nologin
# a comment, then a broken line
broken:x:notanumber:1::/:/bin/sh
app:x:1000:1000:App:/home/app:/bin/sh
";

const GROUP: &str = "\
root:x:0:root
bin:x:1:root,daemon
app:x:1000:
staff:x:50:other, app
video:x:44:app
";

fn rootfs() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("etc")).unwrap();
    fs::write(dir.path().join("etc/passwd"), PASSWD).unwrap();
    fs::write(dir.path().join("etc/group"), GROUP).unwrap();
    dir
}

fn ids(root: &Path, spec: &str) -> Result<(u32, u32, Vec<u32>), SpecErrorKind> {
    resolve(root, spec).map(|u| (u.uid, u.gid, u.additional_gids))
}

/// `(user spec, (uid, gid, additional gids))`.
type Row = (&'static str, (u32, u32, &'static [u32]));

#[test]
fn users_resolve_like_docker() {
    let dir = rootfs();
    let root = dir.path();
    let table: [Row; 10] = [
        // No user is root, with root's supplementary groups.
        ("", (0, 0, &[0, 1])),
        ("root", (0, 0, &[0, 1])),
        // A name: its uid and gid from passwd, its groups from group membership.
        ("app", (1000, 1000, &[1000, 50, 44])),
        // A uid found in passwd is the same user.
        ("1000", (1000, 1000, &[1000, 50, 44])),
        // A uid that is not there: gid 0, no groups.
        ("4242", (4242, 0, &[0])),
        ("4242:77", (4242, 77, &[77])),
        // An explicit group replaces the primary gid and the supplementary groups.
        ("app:staff", (1000, 50, &[50])),
        ("app:0", (1000, 0, &[0])),
        ("1000:video", (1000, 44, &[44])),
        ("daemon:", (1, 1, &[1])),
    ];
    for (spec, (uid, gid, gids)) in table {
        let got = ids(root, spec).unwrap_or_else(|e| panic!("{spec:?}: {e}"));
        assert_eq!(got, (uid, gid, gids.to_vec()), "{spec:?}");
    }
}

#[test]
fn unknown_names_and_bad_specs_are_errors() {
    let dir = rootfs();
    let root = dir.path();
    assert!(matches!(ids(root, "nobody"), Err(SpecErrorKind::UnknownUser(u)) if u == "nobody"));
    assert!(matches!(ids(root, "broken"), Err(SpecErrorKind::UnknownUser(_))));
    assert!(matches!(ids(root, "app:wheel"), Err(SpecErrorKind::UnknownGroup(g)) if g == "wheel"));
    assert!(matches!(ids(root, "a:b:c"), Err(SpecErrorKind::InvalidUser(_))));
    assert!(matches!(ids(root, "99999999999"), Err(SpecErrorKind::UnknownUser(_))));
}

#[test]
fn an_image_without_passwd_runs_numeric_ids_only() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(ids(dir.path(), "").unwrap(), (0, 0, vec![0]));
    assert_eq!(ids(dir.path(), "1000:1000").unwrap(), (1000, 1000, vec![1000]));
    assert!(matches!(ids(dir.path(), "app"), Err(SpecErrorKind::UnknownUser(_))));
    assert!(matches!(ids(dir.path(), "1000:staff"), Err(SpecErrorKind::UnknownGroup(_))));
}

#[test]
fn symlinks_in_the_image_stay_inside_the_rootfs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::create_dir_all(root.join("data")).unwrap();
    fs::write(root.join("data/passwd"), "app:x:1234:1234::/:/bin/sh\n").unwrap();
    fs::write(root.join("data/group"), "devs:x:77:app\n").unwrap();
    // An absolute link means the image's /data, not the host's; `..` stops at the root.
    symlink("/data/passwd", root.join("etc/passwd")).unwrap();
    symlink("../../../../../../data/group", root.join("etc/group")).unwrap();
    assert_eq!(ids(root, "app").unwrap(), (1234, 1234, vec![1234, 77]));

    // A directory link on the way, and a loop.
    symlink("/data", root.join("d")).unwrap();
    assert_eq!(resolve_in_root(root, Path::new("d/passwd")), root.join("data/passwd"));
    symlink("loop", root.join("loop")).unwrap();
    assert!(!resolve_in_root(root, Path::new("loop/x")).exists());
}

#[test]
fn the_spec_takes_the_service_user_over_the_image_user() {
    let dir = rootfs();
    let mut case = Case::new();
    case.rootfs = dir.path().to_owned();
    case.image = ConfigBuilder::default().cmd(vec!["sh".to_owned()]).user("app").build().unwrap();
    let user = |case: &Case| case.spec().process().as_ref().unwrap().user().clone();
    let u = user(&case);
    assert_eq!((u.uid(), u.gid()), (1000, 1000));
    assert_eq!(u.additional_gids().clone().unwrap(), [1000, 50, 44]);

    case.service.user = Some("daemon".into());
    assert_eq!(user(&case).uid(), 1);

    case.service.user = Some("ghost".into());
    let err = case.build().unwrap_err();
    assert_eq!(
        err.to_string(),
        "service \"web\": user \"ghost\" is not in the image's /etc/passwd"
    );
}
