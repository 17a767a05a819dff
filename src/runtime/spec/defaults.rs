//! Docker's defaults for a non-privileged container, as data: the capability set, the masked and
//! read-only paths, the mounts every container gets, the devices and the device cgroup rules.
//!
//! The source of each list is moby's `oci/defaults.go` (`DefaultLinuxSpec`) and
//! `oci/caps/defaults.go`, plus the adjustments `daemon/oci_linux.go` makes to them (the size of
//! /dev/shm, the sysctls of a private network namespace).

use oci_spec::runtime::{Capability, LinuxDeviceType};

/// moby `oci/caps/defaults.go` `DefaultCapabilities()`: what a container keeps when neither
/// `cap_add` nor `cap_drop` says otherwise.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability, indexed by its number in the kernel (`CAP_CHOWN` is 0,
/// `CAP_CHECKPOINT_RESTORE` is 40). `cap_add: [ALL]` grants the ones the running kernel knows,
/// `ALL_CAPABILITIES[..=cap_last_cap]`, as moby's `caps.GetAllCapabilities()` does: asking an
/// older kernel for a capability it does not have makes the runtime fail.
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// moby `oci/defaults.go` `defaultLinuxMaskedPaths`: kernel information a container has no
/// business reading (or, for /proc/interrupts and powercap, that leaks host activity:
/// GHSA-6fw5-f8r9-fgfm and GHSA-jq35-85cj-fj4p). moby also masks each CPU's
/// `/sys/devices/system/cpu/cpuN/thermal_throttle` that exists on the host; those come from
/// [`super::HostFacts::thermal_throttle`].
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// moby `oci/defaults.go`: kernel knobs that stay readable but must not be written.
pub const READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Docker's default `--shm-size` (64 MiB), which `daemon/oci_linux.go` `WithMounts` appends to the
/// /dev/shm mount as `size=`.
pub const SHM_SIZE: u64 = 64 << 20;

/// One mount of the default set: destination, filesystem type (also used as the source, except
/// for /dev and /dev/shm as in moby), options.
pub struct DefaultMount {
    pub destination: &'static str,
    pub typ: &'static str,
    pub source: &'static str,
    pub options: &'static [&'static str],
}

/// moby `oci/defaults.go` `DefaultLinuxSpec().Mounts`, in its order. /dev/shm gets its size
/// ([`SHM_SIZE`]) when the mounts are built. `/sys/fs/cgroup` has the type `cgroup`, which runc
/// and libcontainer turn into the right thing for the host: cgroup2 on a unified host, a tmpfs of
/// per-controller bind mounts on cgroup v1 and hybrid hosts.
pub const MOUNTS: [DefaultMount; 7] = [
    DefaultMount {
        destination: "/proc",
        typ: "proc",
        source: "proc",
        options: &["nosuid", "noexec", "nodev"],
    },
    DefaultMount {
        destination: "/dev",
        typ: "tmpfs",
        source: "tmpfs",
        options: &["nosuid", "strictatime", "mode=755", "size=65536k"],
    },
    DefaultMount {
        destination: "/dev/pts",
        typ: "devpts",
        source: "devpts",
        options: &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
    },
    DefaultMount {
        destination: "/sys",
        typ: "sysfs",
        source: "sysfs",
        options: &["nosuid", "noexec", "nodev", "ro"],
    },
    DefaultMount {
        destination: "/sys/fs/cgroup",
        typ: "cgroup",
        source: "cgroup",
        options: &["ro", "nosuid", "noexec", "nodev"],
    },
    DefaultMount {
        destination: "/dev/mqueue",
        typ: "mqueue",
        source: "mqueue",
        options: &["nosuid", "noexec", "nodev"],
    },
    DefaultMount {
        destination: "/dev/shm",
        typ: "tmpfs",
        source: "shm",
        options: &["nosuid", "noexec", "nodev", "mode=1777"],
    },
];

/// The device nodes created in the container's /dev: `(path, major, minor)`, all character
/// devices with mode 0666. moby leaves `linux.devices` empty and relies on the runtime's implicit
/// set (runtime-spec "default devices"); listing them makes the spec say what the container gets,
/// whichever runtime reads it (libcontainer and runc skip their own entry for a listed path).
pub const DEVICES: [(&str, i64, i64); 6] = [
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/random", 1, 8),
    ("/dev/urandom", 1, 9),
    ("/dev/tty", 5, 0),
];

/// moby `oci/defaults.go` `Resources.Devices`, in order: deny everything, allow the basic
/// character devices, and deny /dev/fuse (10:229) explicitly. `(allow, type, major, minor)`
/// with access `rwm`; `None` is a wildcard. The runtime appends its own allow rules for what it
/// creates itself (/dev/full, /dev/pts/*, /dev/ptmx), as runc does.
pub const DEVICE_RULES: [(bool, LinuxDeviceType, Option<i64>, Option<i64>); 8] = [
    (false, LinuxDeviceType::A, None, None),
    (true, LinuxDeviceType::C, Some(1), Some(5)),
    (true, LinuxDeviceType::C, Some(1), Some(3)),
    (true, LinuxDeviceType::C, Some(1), Some(9)),
    (true, LinuxDeviceType::C, Some(1), Some(8)),
    (true, LinuxDeviceType::C, Some(5), Some(0)),
    (true, LinuxDeviceType::C, Some(5), Some(1)),
    (false, LinuxDeviceType::C, Some(10), Some(229)),
];

/// moby `daemon/oci_linux.go` `WithCommonOptions`: sysctls set when the container gets a network
/// namespace of its own (never for the host's or a joined one, whose owner decides): ping without
/// CAP_NET_RAW, and ports below 1024 without CAP_NET_BIND_SERVICE.
pub const PRIVATE_NETWORK_SYSCTLS: [(&str, &str); 2] =
    [("net.ipv4.ping_group_range", "0 2147483647"), ("net.ipv4.ip_unprivileged_port_start", "0")];

/// The `PATH` a container gets when its image sets none (moby `oci.DefaultPathEnv`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker sets no rlimits of its own, so a container inherits the daemon's: with the
/// `LimitNOFILE=infinity` that containerd's and (before v25) Docker's systemd units carry, that is
/// 1048576 soft and hard on most systems. Setting it here pins that value instead of inheriting
/// whatever limit the devenv supervisor happens to run with.
pub const NOFILE_LIMIT: u64 = 1 << 20;

/// Where the init binary is bind-mounted in the container (Docker uses `/sbin/docker-init`; a
/// directory of devenv's own never shadows a file of the image).
pub const INIT_PATH: &str = "/.devenv/init";
