//! `linux.resources`: the device cgroup rules and the service's limits (memory, CPU bandwidth,
//! pids), which the runtime writes to the container's cgroup on v1 and v2 alike.

use oci_spec::runtime::{
    LinuxCpuBuilder, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder,
};

use super::{defaults, HostFacts, SpecErrorKind};
use crate::config::model::Service;

/// The device cgroup rules plus the service's limits ([`Service::limits`]: `mem_limit`, `cpus`
/// and `pids_limit`, or their `deploy.resources.limits` spelling), mapped as moby's
/// `WithResources` maps `--memory`, `--cpus` and `--pids-limit`, except for swap.
///
/// Swap: Docker sets memory+swap to twice `--memory` when `--memory-swap` is not given, so a
/// container over its limit first swaps and is OOM-killed only at twice the limit, and then only
/// if the host has swap at all. devenv sets memory+swap equal to the memory limit instead (no
/// swap for the container, as `--memory-swap` equal to `--memory` does): the limit written is the
/// point where the kernel's OOM killer stops the service, on every host, which is what a
/// developer testing under a limit wants to see.
pub(super) fn build(service: &Service, host: &HostFacts) -> Result<LinuxResources, SpecErrorKind> {
    let rules = if service.privileged {
        // moby gives a privileged container every device: `a *:* rwm`.
        vec![LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::A)
            .access("rwm")
            .build()?]
    } else {
        defaults::DEVICE_RULES
            .iter()
            .map(|&(allow, typ, major, minor)| {
                let mut b = LinuxDeviceCgroupBuilder::default().allow(allow).typ(typ).access("rwm");
                if let Some(major) = major {
                    b = b.major(major);
                }
                if let Some(minor) = minor {
                    b = b.minor(minor);
                }
                b.build()
            })
            .collect::<Result<Vec<_>, _>>()?
    };
    let mut r = LinuxResourcesBuilder::default().devices(rules).build()?;
    let limits = service.limits();

    // 0 means no limit, as in Docker; below 6 MiB Docker refuses (`daemon/daemon_unix.go`
    // `linuxMinMemory`), because the container could not even start.
    if let Some(limit) = limits.memory.map(|b| b.0).filter(|&b| b > 0) {
        if limit < 6 << 20 {
            return Err(SpecErrorKind::MemoryTooLow(limit));
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut memory = LinuxMemoryBuilder::default().limit(limit);
        if host.swap_limit {
            memory = memory.swap(limit);
        }
        r.set_memory(Some(memory.build()?));
    }

    // `--cpus` is CFS bandwidth over Docker's fixed 100 ms period (`daemon/oci_linux.go`
    // `getCPUResources`, NanoCPUs); Docker accepts 0.01 CPU at the least.
    if let Some(cpus) = limits.cpus.filter(|&c| c != 0.0) {
        if !cpus.is_finite() || cpus < 0.01 {
            return Err(SpecErrorKind::InvalidCpus(cpus));
        }
        const PERIOD: u64 = 100_000;
        let quota = (cpus * PERIOD as f64).round() as i64;
        r.set_cpu(Some(LinuxCpuBuilder::default().period(PERIOD).quota(quota).build()?));
    }

    // Docker's API takes 0 and negative values as "unlimited", which is also what no pids
    // section means.
    if let Some(limit) = limits.pids.filter(|&l| l > 0) {
        r.set_pids(Some(LinuxPidsBuilder::default().limit(limit).build()?));
    }
    Ok(r)
}
