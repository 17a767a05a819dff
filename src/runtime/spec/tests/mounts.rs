//! Default mounts, bind mounts, volumes, tmpfs, hosts and resolv.conf.

use std::path::Path;

use oci_spec::image::ConfigBuilder;
use oci_spec::runtime::{Mount, Spec};

use super::super::*;
use super::Case;
use crate::config::forms::StringOrList;
use crate::config::volumes::{Mount as ServiceMount, MountType};

fn mount(kind: MountType, source: Option<&str>, target: &str, read_only: bool) -> ServiceMount {
    ServiceMount {
        read_only,
        ..ServiceMount::new(kind, source.map(str::to_owned), target.to_owned())
    }
}

/// `(type, source, options)` of the mount at `destination`.
fn at(spec: &Spec, destination: &str) -> Option<(String, String, Vec<String>)> {
    let m: &Mount =
        spec.mounts().as_ref()?.iter().find(|m| m.destination() == Path::new(destination))?;
    Some((
        m.typ().clone().unwrap_or_default(),
        m.source().as_ref().map(|s| s.display().to_string()).unwrap_or_default(),
        m.options().clone().unwrap_or_default(),
    ))
}

fn destinations(spec: &Spec) -> Vec<String> {
    spec.mounts().as_ref().unwrap().iter().map(|m| m.destination().display().to_string()).collect()
}

#[test]
fn default_mounts_are_dockers() {
    let spec = Case::new().spec();
    assert_eq!(
        destinations(&spec),
        ["/proc", "/dev", "/dev/pts", "/sys", "/sys/fs/cgroup", "/dev/mqueue", "/dev/shm"]
    );
    let opts = |d| at(&spec, d).unwrap().2.join(",");
    assert_eq!(opts("/dev"), "nosuid,strictatime,mode=755,size=65536k");
    assert_eq!(opts("/dev/pts"), "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620,gid=5");
    assert_eq!(opts("/dev/shm"), "nosuid,noexec,nodev,mode=1777,size=67108864");
    assert_eq!(opts("/sys"), "nosuid,noexec,nodev,ro");
    assert_eq!(at(&spec, "/sys/fs/cgroup").unwrap().0, "cgroup");
    assert_eq!(opts("/sys/fs/cgroup"), "ro,nosuid,noexec,nodev");
}

#[test]
fn binds_volumes_and_tmpfs() {
    let mut case = Case::new();
    case.service.volumes = vec![
        mount(MountType::Bind, Some("/home/me/src"), "/app", false),
        mount(MountType::Bind, Some("/etc/ssl/certs"), "/certs/", true),
        mount(MountType::Volume, Some("data"), "/var/lib/data", false),
        mount(MountType::Volume, Some("cache"), "/cache", true),
        mount(MountType::Volume, None, "/var/lib/anon", false),
        mount(MountType::Tmpfs, None, "/scratch", false),
    ];
    case.service.tmpfs = StringOrList(vec!["/run".into(), "/tmp:size=64m,exec,mode=1700".into()]);
    let spec = case.spec();

    let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        at(&spec, "/app").unwrap(),
        ("bind".into(), "/home/me/src".into(), s(&["rbind", "rprivate"]))
    );
    assert_eq!(
        at(&spec, "/certs").unwrap(),
        ("bind".into(), "/etc/ssl/certs".into(), s(&["rbind", "ro", "rprivate"]))
    );
    assert_eq!(
        at(&spec, "/var/lib/data").unwrap(),
        ("bind".into(), "/volumes/data".into(), s(&["rbind"]))
    );
    assert_eq!(at(&spec, "/cache").unwrap().2, s(&["rbind", "ro"]));
    let anon = anonymous_volume_name("web", "/var/lib/anon");
    assert!(anon.starts_with("anon-web-var-lib-anon-"), "{anon}");
    assert_eq!(at(&spec, "/var/lib/anon").unwrap().1, format!("/volumes/{anon}"));
    let tmpfs = |opts: &[&str]| ("tmpfs".to_owned(), "tmpfs".to_owned(), s(opts));
    assert_eq!(at(&spec, "/scratch").unwrap(), tmpfs(&["noexec", "nosuid", "nodev", "rprivate"]));
    assert_eq!(at(&spec, "/run").unwrap(), tmpfs(&["noexec", "nosuid", "nodev", "rprivate"]));
    // Options given win over Docker's defaults of the same family.
    assert_eq!(
        at(&spec, "/tmp").unwrap(),
        tmpfs(&["nosuid", "nodev", "rprivate", "size=64m", "exec", "mode=1700"])
    );
}

#[test]
fn user_mounts_come_after_the_defaults_parents_first() {
    let mut case = Case::new();
    case.service.volumes = vec![
        mount(MountType::Bind, Some("/h/deep"), "/app/node_modules/.bin", false),
        mount(MountType::Volume, Some("nm"), "/app/node_modules", false),
        mount(MountType::Bind, Some("/h/app"), "/app", false),
    ];
    case.hosts = Some("/run/devenv/hosts".into());
    case.resolv = Some("/run/devenv/resolv.conf".into());
    let spec = case.spec();
    assert_eq!(
        destinations(&spec)[7..],
        ["/app", "/app/node_modules", "/etc/hosts", "/etc/resolv.conf", "/app/node_modules/.bin"]
    );
    assert_eq!(
        at(&spec, "/etc/hosts").unwrap(),
        (
            "bind".into(),
            "/run/devenv/hosts".into(),
            vec!["rbind".into(), "ro".into(), "rprivate".into()]
        )
    );
}

#[test]
fn service_mounts_replace_defaults_and_generated_files() {
    let mut case = Case::new();
    case.service.volumes = vec![
        mount(MountType::Bind, Some("/srv/hosts"), "/etc/hosts", true),
        mount(MountType::Tmpfs, None, "/dev/shm", false),
    ];
    case.hosts = Some("/run/devenv/hosts".into());
    let spec = case.spec();
    assert_eq!(at(&spec, "/etc/hosts").unwrap().1, "/srv/hosts");
    assert_eq!(destinations(&spec).iter().filter(|d| *d == "/dev/shm").count(), 1);
    assert_eq!(at(&spec, "/dev/shm").unwrap().1, "tmpfs");

    // A /dev of the service's own replaces everything under it.
    case.service.volumes = vec![mount(MountType::Bind, Some("/dev"), "/dev", false)];
    let d = destinations(&case.spec());
    assert!(!d.iter().any(|d| d.starts_with("/dev/")), "{d:?}");
}

#[test]
fn image_volumes_become_anonymous_volumes_unless_mounted() {
    let mut case = Case::new();
    case.image = ConfigBuilder::default()
        .cmd(vec!["redis-server".to_owned()])
        .volumes(vec!["/data".to_owned(), "/logs/".to_owned()])
        .build()
        .unwrap();
    case.service.volumes = vec![mount(MountType::Volume, Some("redis"), "/data", false)];
    let spec = case.spec();
    assert_eq!(at(&spec, "/data").unwrap().1, "/volumes/redis");
    let logs = format!("/volumes/{}", anonymous_volume_name("web", "/logs"));
    assert_eq!(at(&spec, "/logs").unwrap(), ("bind".into(), logs, vec!["rbind".into()]));
}

#[test]
fn anonymous_volume_names_are_stable_and_distinct() {
    let a = anonymous_volume_name("web", "/a/b");
    assert_eq!(a, anonymous_volume_name("web", "/a/b"));
    assert_ne!(a, anonymous_volume_name("web", "/a-b"));
    assert_ne!(a, anonymous_volume_name("api", "/a/b"));
    assert!(a.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "{a}");
}

#[test]
fn bad_mounts_are_errors() {
    let check = |volumes: Vec<ServiceMount>, tmpfs: &[&str]| {
        let mut case = Case::new();
        case.service.volumes = volumes;
        case.service.tmpfs = StringOrList(tmpfs.iter().map(|s| s.to_string()).collect());
        case.build().unwrap_err().kind
    };
    assert!(matches!(
        check(vec![mount(MountType::Bind, None, "/x", false)], &[]),
        SpecErrorKind::BindWithoutSource(t) if t == "/x"
    ));
    assert!(matches!(
        check(vec![mount(MountType::Bind, Some("rel/dir"), "/x", false)], &[]),
        SpecErrorKind::NotAbsolute { what: "bind source", .. }
    ));
    assert!(matches!(
        check(vec![mount(MountType::Volume, Some("v"), "x", false)], &[]),
        SpecErrorKind::NotAbsolute { what: "mount target", .. }
    ));
    assert!(matches!(
        check(vec![mount(MountType::Volume, Some("v"), "/x/", false)], &["/x"]),
        SpecErrorKind::DuplicateMount(t) if t == "/x"
    ));
    assert!(matches!(
        check(vec![], &["/t:size=1m,bogus"]),
        SpecErrorKind::TmpfsOption { option, .. } if option == "bogus"
    ));
}
