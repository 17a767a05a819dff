//! `privileged: true`: what `docker run --privileged` undoes of the default hardening (moby
//! `daemon/oci_linux.go`: `WithCapabilities`, `WithDevices`, `WithMounts`, and the masked and
//! read-only paths left empty).
//!
//! Two parts are decided where the rest of their kind is: every capability in
//! [`super::process::capabilities`], and the device cgroup rule allowing every device
//! (`a *:* rwm`) in [`super::resources`]. This module clears the rest on the built spec: the
//! masked and read-only paths, and the `ro` of /sys and /sys/fs/cgroup. There is no seccomp
//! filter to remove (devenv applies none yet) nor AppArmor profile.
//!
//! Left out, deliberately: moby also creates a node in the container's /dev for every device of
//! the host. devenv does not: a development service rarely needs the host's disks or ttys, and a
//! privileged container can still make the node it needs with `mknod` (it has CAP_MKNOD and the
//! device cgroup allows every device).

use oci_spec::runtime::Spec;

pub(super) fn apply(spec: &mut Spec) {
    if let Some(linux) = spec.linux_mut() {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    }
    if let Some(mounts) = spec.mounts_mut() {
        for m in mounts.iter_mut() {
            // moby clears the read-only flag of /sys and, for a privileged container, of the
            // cgroup mount, so that the container can write kernel and cgroup knobs.
            let writable =
                m.destination().as_os_str() == "/sys" || m.typ().as_deref() == Some("cgroup");
            if writable {
                if let Some(options) = m.options().clone() {
                    let kept: Vec<String> = options.into_iter().filter(|o| o != "ro").collect();
                    m.set_options(Some(kept));
                }
            }
        }
    }
}
