//! Unit tests of the spec builder: no root needed, every host fact fixed.

mod limits;
mod mounts;
mod process;
mod user;

use std::path::{Path, PathBuf};

use oci_spec::image::{Config as ImageConfig, ConfigBuilder};
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde_json::json;

use super::*;
use crate::config::forms::Command;

/// A fixed host: hybrid cgroups (no cgroup namespace), swap accounting, a kernel that knows every
/// capability and a bounding set that holds them all.
pub(super) fn host() -> HostFacts {
    HostFacts {
        hostname: "the-host".into(),
        cgroup_v2: false,
        swap_limit: true,
        cap_last_cap: 40,
        cap_bounding: u64::MAX,
        thermal_throttle: vec![],
    }
}

/// One container to build a spec for; the fields start with a runnable busybox-like service.
pub(super) struct Case {
    pub service: Service,
    pub image: ImageConfig,
    pub rootfs: PathBuf,
    pub network: NetworkNamespace,
    pub hosts: Option<PathBuf>,
    pub resolv: Option<PathBuf>,
    pub init: Option<PathBuf>,
    pub extra_env: Vec<(String, String)>,
    pub host: HostFacts,
}

impl Case {
    pub fn new() -> Case {
        Case {
            service: Service::default(),
            image: ConfigBuilder::default().cmd(vec!["sh".to_owned()]).build().unwrap(),
            rootfs: PathBuf::from("/nonexistent/rootfs"),
            network: NetworkNamespace::New,
            hosts: None,
            resolv: None,
            init: None,
            extra_env: vec![],
            host: host(),
        }
    }

    pub fn build(&self) -> Result<Spec, SpecError> {
        let volume_dirs = |name: &str| Path::new("/volumes").join(name);
        let input = SpecInput {
            service_name: "web",
            service: &self.service,
            image_config: &self.image,
            rootfs: &self.rootfs,
            network: self.network.clone(),
            volume_dirs: &volume_dirs,
            hosts_file: self.hosts.as_deref(),
            resolv_conf: self.resolv.as_deref(),
            init: self.init.as_deref(),
            extra_env: &self.extra_env,
        };
        build_spec_on(&input, &self.host)
    }

    pub fn spec(&self) -> Spec {
        self.build().unwrap()
    }
}

pub(super) fn cmd(args: &[&str]) -> Option<Command> {
    Some(Command(args.iter().map(|s| s.to_string()).collect()))
}

fn namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, Option<PathBuf>)> {
    let linux = spec.linux().as_ref().unwrap();
    linux.namespaces().as_ref().unwrap().iter().map(|n| (n.typ(), n.path().clone())).collect()
}

#[test]
fn network_modes_map_to_namespaces_and_sysctls() {
    use LinuxNamespaceType::*;
    let mut case = Case::new();

    case.network = NetworkNamespace::New;
    let spec = case.spec();
    assert_eq!(
        namespaces(&spec),
        vec![(Mount, None), (Network, None), (Uts, None), (Pid, None), (Ipc, None)]
    );
    let sysctl = spec.linux().as_ref().unwrap().sysctl().clone().unwrap();
    assert_eq!(sysctl["net.ipv4.ping_group_range"], "0 2147483647");
    assert_eq!(sysctl["net.ipv4.ip_unprivileged_port_start"], "0");
    assert_eq!(spec.hostname().as_deref(), Some("web"));

    case.network = NetworkNamespace::Host;
    let spec = case.spec();
    assert_eq!(namespaces(&spec), vec![(Mount, None), (Uts, None), (Pid, None), (Ipc, None)]);
    // Network sysctls would change the host's; the hostname is the host's, in a UTS namespace of
    // the container's own.
    assert_eq!(spec.linux().as_ref().unwrap().sysctl(), &None);
    assert_eq!(spec.hostname().as_deref(), Some("the-host"));

    case.network = NetworkNamespace::Join("/proc/42/ns/net".into());
    let spec = case.spec();
    assert_eq!(namespaces(&spec)[1], (Network, Some(PathBuf::from("/proc/42/ns/net"))));
    assert_eq!(spec.linux().as_ref().unwrap().sysctl(), &None);

    case.host.cgroup_v2 = true;
    assert_eq!(namespaces(&case.spec()).last().unwrap(), &(Cgroup, None));
}

#[test]
fn hostname_comes_from_the_service_first() {
    let mut case = Case::new();
    case.service.hostname = Some("box".into());
    case.network = NetworkNamespace::Host;
    let spec = case.spec();
    assert_eq!(spec.hostname().as_deref(), Some("box"));
    let env = spec.process().as_ref().unwrap().env().clone().unwrap();
    assert!(env.contains(&"HOSTNAME=box".to_owned()), "{env:?}");
}

#[test]
fn masked_and_readonly_paths_are_dockers() {
    let mut case = Case::new();
    case.host.thermal_throttle = vec!["/sys/devices/system/cpu/cpu0/thermal_throttle".into()];
    let spec = case.spec();
    let linux = spec.linux().as_ref().unwrap();
    let masked = linux.masked_paths().clone().unwrap();
    for path in [
        "/proc/asound",
        "/proc/acpi",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/proc/scsi",
        "/sys/firmware",
        "/sys/devices/virtual/powercap",
        "/sys/devices/system/cpu/cpu0/thermal_throttle",
    ] {
        assert!(masked.iter().any(|m| m == path), "{path} not masked");
    }
    assert_eq!(
        linux.readonly_paths().clone().unwrap(),
        ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
    );
    let devices: Vec<_> =
        linux.devices().as_ref().unwrap().iter().map(|d| d.path().clone()).collect();
    for dev in ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"] {
        assert!(devices.contains(&PathBuf::from(dev)), "{dev} missing");
    }
    let rules: Vec<String> = linux
        .resources()
        .as_ref()
        .unwrap()
        .devices()
        .as_ref()
        .unwrap()
        .iter()
        .map(|r| format!("{} {r}", if r.allow() { "allow" } else { "deny" }))
        .collect();
    assert_eq!(rules.first().unwrap(), "deny a *:* rwm");
    assert!(rules.contains(&"allow c 1:3 rwm".to_owned()));
    assert_eq!(rules.last().unwrap(), "deny c 10:229 rwm");
    assert_eq!(linux.seccomp(), &None);
}

#[test]
fn resources_map_mem_limit_cpus_and_pids_limit() {
    use crate::config::units::ByteSize;
    let mut case = Case::new();
    let resources = |case: &Case| case.spec().linux().clone().unwrap().resources().clone().unwrap();
    let r = resources(&case);
    assert!(r.memory().is_none() && r.cpu().is_none() && r.pids().is_none());

    case.service.mem_limit = Some(ByteSize(512 << 20));
    case.service.cpus = Some(0.5);
    case.service.pids_limit = Some(100);
    let r = resources(&case);
    let memory = r.memory().unwrap();
    assert_eq!(memory.limit(), Some(512 << 20));
    // No swap on top of the limit: the limit is where the OOM killer acts.
    assert_eq!(memory.swap(), Some(512 << 20));
    let cpu = r.cpu().clone().unwrap();
    assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
    assert_eq!(r.pids().unwrap().limit(), 100);

    case.host.swap_limit = false;
    case.service.pids_limit = Some(-1);
    case.service.cpus = Some(0.0);
    let r = resources(&case);
    assert_eq!(r.memory().unwrap().swap(), None);
    assert!(r.pids().is_none() && r.cpu().is_none());

    case.service.mem_limit = Some(ByteSize(1 << 20));
    assert!(matches!(case.build().unwrap_err().kind, SpecErrorKind::MemoryTooLow(_)));
    case.service.mem_limit = None;
    case.service.cpus = Some(-2.0);
    assert!(matches!(case.build().unwrap_err().kind, SpecErrorKind::InvalidCpus(_)));
}

#[test]
fn process_defaults_follow_docker() {
    let mut case = Case::new();
    case.image =
        ConfigBuilder::default().cmd(vec!["sh".to_owned()]).working_dir("/srv").build().unwrap();
    let spec = case.spec();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.terminal(), Some(false));
    assert_eq!(p.no_new_privileges(), Some(false));
    assert_eq!(p.oom_score_adj(), Some(0));
    assert_eq!(p.cwd(), Path::new("/srv"));
    let rlimits = p.rlimits().clone().unwrap();
    assert_eq!(rlimits.len(), 1);
    assert_eq!((rlimits[0].soft(), rlimits[0].hard()), (1 << 20, 1 << 20));
    assert_eq!(spec.root().as_ref().unwrap().path(), Path::new("/nonexistent/rootfs"));

    case.service.working_dir = Some("/app".into());
    assert_eq!(case.spec().process().as_ref().unwrap().cwd(), Path::new("/app"));
    case.service.working_dir = Some("app".into());
    let err = case.build().unwrap_err();
    assert!(err.to_string().contains("working_dir"), "{err}");
    case.service.working_dir = None;
    case.image = ConfigBuilder::default().cmd(vec!["sh".to_owned()]).build().unwrap();
    assert_eq!(case.spec().process().as_ref().unwrap().cwd(), Path::new("/"));
}

#[test]
fn init_wraps_the_command_unless_turned_off() {
    let mut case = Case::new();
    case.service.command = cmd(&["httpd", "-f"]);
    let args = |case: &Case| case.spec().process().as_ref().unwrap().args().clone().unwrap();
    assert_eq!(args(&case), ["httpd", "-f"]);

    case.init = Some("/usr/libexec/devenv/init".into());
    assert_eq!(args(&case), ["/.devenv/init", "--", "httpd", "-f"]);
    let spec = case.spec();
    let init = spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == Path::new("/.devenv/init"))
        .expect("init mount");
    assert_eq!(init.source().as_deref(), Some(Path::new("/usr/libexec/devenv/init")));
    assert_eq!(init.options().clone().unwrap(), ["bind", "ro"]);

    case.service.init = Some(false);
    assert_eq!(args(&case), ["httpd", "-f"]);
    assert!(!case
        .spec()
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .any(|m| m.destination() == Path::new("/.devenv/init")));
}

#[test]
fn spec_round_trips_through_config_json() {
    let mut case = Case::new();
    case.service.cap_add = vec!["NET_ADMIN".into()];
    case.init = Some("/opt/init".into());
    case.network = NetworkNamespace::Join("/proc/7/ns/net".into());
    let spec = case.spec();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    spec.save(&path).unwrap();
    assert_eq!(Spec::load(&path).unwrap(), spec);

    // The names libcontainer and runc read.
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(value["ociVersion"], "1.0.2");
    assert_eq!(value["process"]["user"], json!({"uid": 0, "gid": 0, "additionalGids": [0]}));
    assert!(value["process"]["capabilities"]["bounding"]
        .as_array()
        .unwrap()
        .contains(&json!("CAP_NET_ADMIN")));
    assert!(value["process"]["capabilities"].get("inheritable").is_none());
    assert_eq!(value["process"]["noNewPrivileges"], false);
    assert_eq!(
        value["linux"]["namespaces"][1],
        json!({"type": "network", "path": "/proc/7/ns/net"})
    );
    assert_eq!(value["linux"]["maskedPaths"][0], "/proc/asound");
    assert_eq!(
        value["mounts"][0],
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]})
    );
    assert!(value.get("annotations").is_none());
}

#[test]
fn errors_name_the_service() {
    let mut case = Case::new();
    case.service.cap_add = vec!["FLY".into()];
    let err = case.build().unwrap_err();
    assert_eq!(err.service, "web");
    assert!(err.to_string().starts_with("service \"web\": unknown capability \"FLY\""), "{err}");
}

#[test]
fn host_facts_are_detected_on_this_machine() {
    let facts = HostFacts::detect();
    assert!(!facts.hostname.is_empty());
    assert!(facts.cap_last_cap >= 36, "{facts:?}");
    // The detected facts build a spec too.
    let case = Case::new();
    let volume_dirs = |name: &str| Path::new("/volumes").join(name);
    let input = SpecInput {
        service_name: "web",
        service: &case.service,
        image_config: &case.image,
        rootfs: &case.rootfs,
        network: NetworkNamespace::Host,
        volume_dirs: &volume_dirs,
        hosts_file: None,
        resolv_conf: None,
        init: None,
        extra_env: &[],
    };
    assert_eq!(build_spec(&input).unwrap().hostname().as_deref(), Some(facts.hostname.as_str()));
}
