//! The command line, the environment and the capabilities.

use std::collections::HashSet;

use indexmap::IndexMap;
use oci_spec::image::ConfigBuilder;
use oci_spec::runtime::Capability;
use serde_json::json;

use super::super::process::capabilities;
use super::super::*;
use super::Case;
use crate::config::forms::{Command, Environment};

/// A command as the project file may write it: `json!("a 'b c'")` or `json!(["a", "b c"])`.
fn command(v: serde_json::Value) -> Option<Command> {
    Some(serde_json::from_value(v).unwrap())
}

#[test]
fn argv_follows_compose_rules() {
    let image = ConfigBuilder::default()
        .entrypoint(vec!["docker-entrypoint.sh".to_owned()])
        .cmd(vec!["redis-server".to_owned()])
        .build()
        .unwrap();
    let none = serde_json::Value::Null;
    // (entrypoint, command, expected argv)
    let table: [(serde_json::Value, serde_json::Value, &[&str]); 7] = [
        (none.clone(), none.clone(), &["docker-entrypoint.sh", "redis-server"]),
        // A new entrypoint drops the image's Cmd.
        (json!(["/bin/sh", "-c"]), none.clone(), &["/bin/sh", "-c"]),
        (json!("/bin/sh -c"), none.clone(), &["/bin/sh", "-c"]),
        (
            none.clone(),
            json!("redis-server --appendonly 'yes please'"),
            &["docker-entrypoint.sh", "redis-server", "--appendonly", "yes please"],
        ),
        (
            none.clone(),
            json!(["redis-server", "--port", "7000"]),
            &["docker-entrypoint.sh", "redis-server", "--port", "7000"],
        ),
        (json!("sh -c"), json!(["echo hi"]), &["sh", "-c", "echo hi"]),
        // An empty entrypoint clears the image's only; its Cmd stays.
        (json!([]), none.clone(), &["redis-server"]),
    ];
    for (entrypoint, cmd, expected) in table {
        let service = Service {
            entrypoint: (!entrypoint.is_null()).then(|| command(entrypoint.clone()).unwrap()),
            command: (!cmd.is_null()).then(|| command(cmd.clone()).unwrap()),
            ..Default::default()
        };
        assert_eq!(argv("db", &service, &image).unwrap(), expected, "{entrypoint} / {cmd}");
    }
}

#[test]
fn empty_argv_is_an_error_naming_the_service() {
    let bare = ConfigBuilder::default().build().unwrap();
    let err = argv("worker", &Service::default(), &bare).unwrap_err();
    assert!(matches!(err.kind, SpecErrorKind::EmptyCommand));
    assert!(err.to_string().contains("\"worker\""), "{err}");

    // `command: ""` clears the image's Cmd; with no entrypoint nothing is left.
    let image = ConfigBuilder::default().cmd(vec!["sh".to_owned()]).build().unwrap();
    let service = Service { command: command(json!("")), ..Default::default() };
    assert!(argv("worker", &service, &image).is_err());
}

#[test]
fn environment_merges_image_service_extra_in_order() {
    let image = ConfigBuilder::default()
        .env(vec!["PATH=/opt/bin:/bin".to_owned(), "A=image".to_owned(), "B=image".to_owned()])
        .build()
        .unwrap();
    let mut vars = IndexMap::new();
    vars.insert("A".to_owned(), Some("service".to_owned()));
    vars.insert("UNSET".to_owned(), None);
    vars.insert("D".to_owned(), Some("service".to_owned()));
    vars.insert("EQ".to_owned(), Some("x=y".to_owned()));
    let service = Service { environment: Environment(vars), ..Default::default() };
    let extra = [("D".to_owned(), "extra".to_owned()), ("E".to_owned(), "extra".to_owned())];
    assert_eq!(
        environment(&service, &image, "web", &extra),
        [
            "PATH=/opt/bin:/bin",
            "HOSTNAME=web",
            "A=service",
            "B=image",
            "D=extra",
            "EQ=x=y",
            "E=extra",
        ]
    );

    let bare = ConfigBuilder::default().build().unwrap();
    assert_eq!(
        environment(&Service::default(), &bare, "h", &[]),
        ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOSTNAME=h"]
    );
}

fn caps(add: &[&str], drop: &[&str], last: u8) -> Result<HashSet<Capability>, SpecErrorKind> {
    let service = Service {
        cap_add: add.iter().map(|s| s.to_string()).collect(),
        cap_drop: drop.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let host = HostFacts { cap_last_cap: last, ..super::host() };
    let c = capabilities(&service, &host)?;
    // One set for bounding, effective and permitted; none inherited, none ambient (moby since
    // CVE-2022-24769).
    assert_eq!(c.bounding(), c.effective());
    assert_eq!(c.bounding(), c.permitted());
    assert_eq!((c.inheritable(), c.ambient()), (&None, &None));
    Ok(c.bounding().clone().unwrap())
}

#[test]
fn capabilities_adjust_dockers_default_set() {
    use Capability::*;
    let defaults = caps(&[], &[], 40).unwrap();
    assert_eq!(defaults, defaults::DEFAULT_CAPABILITIES.into_iter().collect());
    assert!(defaults.contains(&NetBindService) && !defaults.contains(&SysAdmin));

    let added = caps(&["NET_ADMIN", "cap_sys_ptrace", "CAP_CHOWN"], &[], 40).unwrap();
    assert_eq!(added.len(), 16);
    assert!(added.contains(&NetAdmin) && added.contains(&SysPtrace));

    let dropped = caps(&[], &["chown", "CAP_KILL"], 40).unwrap();
    assert_eq!(dropped.len(), 12);
    assert!(!dropped.contains(&Chown) && !dropped.contains(&Kill));

    // ALL: every capability the kernel knows, minus what is dropped.
    assert_eq!(caps(&["ALL"], &[], 40).unwrap().len(), 41);
    let all_but_raw = caps(&["all"], &["NET_RAW"], 40).unwrap();
    assert_eq!(all_but_raw.len(), 40);
    assert!(!all_but_raw.contains(&NetRaw));
    let old_kernel = caps(&["ALL"], &[], 37).unwrap();
    assert_eq!(old_kernel.len(), 38);
    assert!(!old_kernel.contains(&Bpf) && old_kernel.contains(&AuditRead));

    // Drop ALL: only what is added.
    assert_eq!(caps(&["NET_BIND_SERVICE"], &["ALL"], 40).unwrap(), [NetBindService].into());
    assert!(caps(&[], &["ALL"], 40).unwrap().is_empty());

    assert!(
        matches!(caps(&["FLY"], &[], 40), Err(SpecErrorKind::UnknownCapability(n)) if n == "FLY")
    );
    assert!(matches!(caps(&[], &["CAP_"], 40), Err(SpecErrorKind::UnknownCapability(_))));
}

#[test]
fn capability_names_parse_for_every_kernel_capability() {
    let names = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    // Kernel order: the name at index n is capability number n.
    for (n, name) in names.iter().enumerate() {
        let got = caps(&[name], &["ALL"], 40).unwrap();
        assert_eq!(got, [defaults::ALL_CAPABILITIES[n]].into(), "{name}");
    }
}

#[test]
fn spec_carries_the_capabilities() {
    let mut case = Case::new();
    case.service.cap_drop = vec!["ALL".into()];
    case.service.cap_add = vec!["KILL".into()];
    let spec = case.spec();
    let c = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
    assert_eq!(c.effective().clone().unwrap(), [Capability::Kill].into());
}
