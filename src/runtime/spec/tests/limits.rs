//! Limits from `deploy.resources.limits`, `ulimits` as rlimits, and `privileged`.

use indexmap::IndexMap;
use oci_spec::runtime::{Capability, LinuxResources, PosixRlimitType};

use super::super::*;
use super::Case;
use crate::config::limits::{Deploy, DeployResources, ResourceLimits, Ulimit, Ulimits, UNLIMITED};
use crate::config::units::ByteSize;

fn resources(case: &Case) -> LinuxResources {
    case.spec().linux().clone().unwrap().resources().clone().unwrap()
}

fn deploy(limits: ResourceLimits) -> Option<Deploy> {
    Some(Deploy { resources: Some(DeployResources { limits: Some(limits), reservations: None }) })
}

#[test]
fn deploy_resources_limits_set_the_same_resources() {
    let mut case = Case::new();
    case.service.deploy = deploy(ResourceLimits {
        cpus: Some(1.5),
        memory: Some(ByteSize(64 << 20)),
        pids: Some(20),
    });
    let r = resources(&case);
    assert_eq!(r.memory().unwrap().limit(), Some(64 << 20));
    assert_eq!(r.memory().unwrap().swap(), Some(64 << 20));
    let cpu = r.cpu().clone().unwrap();
    assert_eq!((cpu.quota(), cpu.period()), (Some(150_000), Some(100_000)));
    assert_eq!(r.pids().unwrap().limit(), 20);

    // The service's own key wins (validation makes sure both agree when both are set).
    case.service.pids_limit = Some(30);
    assert_eq!(resources(&case).pids().unwrap().limit(), 30);
}

fn rlimits(case: &Case) -> Vec<(PosixRlimitType, u64, u64)> {
    let spec = case.spec();
    let process = spec.process().as_ref().unwrap();
    process.rlimits().clone().unwrap().iter().map(|r| (r.typ(), r.soft(), r.hard())).collect()
}

#[test]
fn ulimits_become_rlimits_and_replace_the_default_nofile() {
    let mut case = Case::new();
    assert_eq!(rlimits(&case), [(PosixRlimitType::RlimitNofile, 1 << 20, 1 << 20)]);

    let mut u = IndexMap::new();
    u.insert("nproc".to_owned(), Ulimit { soft: 100, hard: 200 });
    u.insert("nofile".to_owned(), Ulimit { soft: 512, hard: 4096 });
    u.insert("core".to_owned(), Ulimit { soft: UNLIMITED, hard: UNLIMITED });
    case.service.ulimits = Ulimits(u);
    assert_eq!(
        rlimits(&case),
        [
            (PosixRlimitType::RlimitNofile, 512, 4096),
            (PosixRlimitType::RlimitNproc, 100, 200),
            (PosixRlimitType::RlimitCore, u64::MAX, u64::MAX),
        ]
    );

    // Validation refuses unknown names before a spec is built; the builder says so too.
    case.service.ulimits.0.insert("files".into(), Ulimit { soft: 1, hard: 1 });
    assert!(
        matches!(case.build().unwrap_err().kind, SpecErrorKind::UnknownUlimit(n) if n == "files")
    );
}

#[test]
fn every_ulimit_name_has_an_rlimit() {
    for name in crate::config::limits::ULIMIT_NAMES {
        let mut case = Case::new();
        case.service.ulimits.0.insert(name.to_owned(), Ulimit { soft: 1, hard: 2 });
        let got = rlimits(&case);
        let want = format!("RLIMIT_{}", name.to_ascii_uppercase());
        let last = serde_json::to_value(got.last().unwrap().0).unwrap();
        assert_eq!(last, want.as_str(), "{name}");
    }
}

#[test]
fn privileged_lifts_the_hardening() {
    let mut case = Case::new();
    case.service.privileged = true;
    // cap_drop does not apply to a privileged container, as in moby.
    case.service.cap_drop = vec!["NET_ADMIN".into()];
    let spec = case.spec();
    let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
    let all: std::collections::HashSet<Capability> = defaults::ALL_CAPABILITIES.into();
    assert_eq!(caps.effective().clone().unwrap(), all);
    assert_eq!(caps.bounding(), caps.permitted());
    assert_eq!((caps.inheritable(), caps.ambient()), (&None, &None));

    let linux = spec.linux().clone().unwrap();
    assert_eq!((linux.masked_paths(), linux.readonly_paths()), (&None, &None));
    assert_eq!(linux.seccomp(), &None);
    let devices = linux.resources().clone().unwrap().devices().clone().unwrap();
    let rules: Vec<String> = devices
        .iter()
        .map(|d| format!("{} {:?} {:?} {:?}", d.allow(), d.typ(), d.major(), d.minor()))
        .collect();
    assert_eq!(rules, ["true Some(A) None None"]);
    assert_eq!(devices[0].access().as_deref(), Some("rwm"));

    let opts = |dest: &str| {
        let m = spec.mounts().as_ref().unwrap().iter().find(|m| m.destination() == Path::new(dest));
        m.unwrap().options().clone().unwrap().join(",")
    };
    assert_eq!(opts("/sys"), "nosuid,noexec,nodev");
    assert_eq!(opts("/sys/fs/cgroup"), "nosuid,noexec,nodev");
    assert_eq!(opts("/proc"), "nosuid,noexec,nodev");

    // Not privileged: the defaults stay.
    case.service.privileged = false;
    let spec = case.spec();
    let linux = spec.linux().clone().unwrap();
    assert!(linux.masked_paths().as_ref().is_some_and(|p| p.contains(&"/proc/kcore".into())));
    assert!(linux.readonly_paths().is_some());
}

#[test]
fn all_capabilities_are_those_of_the_kernel_in_devenvs_bounding_set() {
    let mut case = Case::new();
    case.service.privileged = true;
    // A sandbox without CAP_SYS_RESOURCE (24), on a kernel that knows 0..=39.
    case.host.cap_bounding = 0x1ff_feff_ffff;
    case.host.cap_last_cap = 39;
    let spec = case.spec();
    let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
    let effective = caps.effective().clone().unwrap();
    assert_eq!(effective.len(), 39);
    assert!(!effective.contains(&Capability::SysResource));
    assert!(!effective.contains(&Capability::CheckpointRestore));
    assert!(effective.contains(&Capability::Bpf));

    // `cap_add: [ALL]` is bounded the same way.
    case.service.privileged = false;
    case.service.cap_add = vec!["ALL".into()];
    let spec = case.spec();
    let caps = spec.process().as_ref().unwrap().capabilities().clone().unwrap();
    assert_eq!(caps.effective().clone().unwrap(), effective);
}
