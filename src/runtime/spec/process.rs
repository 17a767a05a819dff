//! The container's process: its command line (Compose's entrypoint/command rules), its
//! environment (Docker's merge order), its capabilities (`cap_add`/`cap_drop` over Docker's
//! default set, or all of them for `privileged`) and its rlimits (`ulimits`).

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxCapabilitiesBuilder, PosixRlimit,
    PosixRlimitBuilder, PosixRlimitType,
};

use super::defaults;
use super::{HostFacts, SpecError, SpecErrorKind};
use crate::config::limits::UNLIMITED;
use crate::config::model::Service;

/// The container's command line, as Compose and Docker decide it:
///
/// - `entrypoint` in the service replaces the image's Entrypoint; `command` replaces its Cmd.
/// - A non-empty `entrypoint` in the service also drops the image's Cmd, unless `command` is set
///   too: the image's arguments were meant for the image's entrypoint (Docker's
///   `daemon/create.go` merge of the image config).
/// - An empty `entrypoint` (`[]` or `""`) only clears the image's Entrypoint; the Cmd stays, as in
///   Docker, where an empty entrypoint does not count as set. An empty `command` clears the Cmd
///   (Compose's spec: `[]` or `""` overrides the image's command with nothing).
///
/// An empty result is an error naming the service.
pub fn argv(
    service_name: &str,
    service: &Service,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecError> {
    argv_of(service, image).map_err(|k| k.of(service_name))
}

pub(super) fn argv_of(
    service: &Service,
    image: &ImageConfig,
) -> Result<Vec<String>, SpecErrorKind> {
    let image_entrypoint = image.entrypoint().clone().unwrap_or_default();
    let image_cmd = image.cmd().clone().unwrap_or_default();
    let entrypoint = match &service.entrypoint {
        Some(e) => e.0.clone(),
        None => image_entrypoint,
    };
    let overrides_entrypoint = service.entrypoint.as_ref().is_some_and(|e| !e.0.is_empty());
    let cmd = match &service.command {
        Some(c) => c.0.clone(),
        None if overrides_entrypoint => Vec::new(),
        None => image_cmd,
    };
    let argv: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(SpecErrorKind::EmptyCommand);
    }
    Ok(argv)
}

/// The container's environment as `KEY=value` strings, in Docker's order
/// (`container.CreateDaemonEnvironment`): `PATH` (the default one) and `HOSTNAME` first, then the
/// image's Env, the service's `environment` and `extra_env`. A later value for a key replaces the
/// earlier one in place, so the image's `PATH` replaces the default. Service variables without a
/// value (`KEY` alone, meant to come from devenv's own environment) are skipped: resolving them is
/// the config loader's job.
pub fn environment(
    service: &Service,
    image: &ImageConfig,
    hostname: &str,
    extra_env: &[(String, String)],
) -> Vec<String> {
    let mut env: Vec<(String, String)> =
        vec![("PATH".into(), defaults::DEFAULT_PATH.into()), ("HOSTNAME".into(), hostname.into())];
    let mut set = |key: &str, value: &str| match env.iter_mut().find(|(k, _)| k == key) {
        Some(slot) => slot.1 = value.to_owned(),
        None => env.push((key.to_owned(), value.to_owned())),
    };
    for entry in image.env().iter().flatten() {
        // An image entry without `=` is malformed; Docker would pass it through as is, but it sets
        // nothing either way.
        if let Some((k, v)) = entry.split_once('=') {
            set(k, v);
        }
    }
    for (k, v) in &service.environment.0 {
        if let Some(v) = v {
            set(k, v);
        }
    }
    for (k, v) in extra_env {
        set(k, v);
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Docker's default capabilities adjusted by `cap_add` and `cap_drop` (moby
/// `oci/caps/utils.go` `TweakCapabilities`):
///
/// - `privileged` gives every capability [`all_capabilities`] holds, whatever the other two say;
/// - `cap_add: [ALL]` gives the same, minus `cap_drop`;
/// - otherwise `cap_drop: [ALL]` gives exactly `cap_add`;
/// - otherwise the defaults minus `cap_drop`, plus `cap_add`.
///
/// Names are case-insensitive and the `CAP_` prefix is optional; an unknown name is an error
/// (checked even when `privileged` makes them moot, so a typo does not wait for the day
/// `privileged` is removed). The set goes into the bounding, effective and permitted sets only.
/// Inheritable and ambient stay empty, as in moby since the fix for CVE-2022-24769: a process
/// that is not root loses its capabilities on exec instead of keeping them through the
/// inheritable set. moby does the same for a privileged container.
pub(super) fn capabilities(
    service: &Service,
    host: &HostFacts,
) -> Result<LinuxCapabilities, SpecErrorKind> {
    let (add, add_all) = parse_capabilities(&service.cap_add)?;
    let (drop, drop_all) = parse_capabilities(&service.cap_drop)?;
    let all = all_capabilities(host);
    let caps: Capabilities = if service.privileged {
        all.into_iter().collect()
    } else if add_all {
        all.into_iter().filter(|c| !drop.contains(c)).collect()
    } else if drop_all {
        add.into_iter().collect()
    } else {
        defaults::DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| !drop.contains(c))
            .copied()
            .chain(add)
            .collect()
    };
    let mut out = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .build()?;
    // The builder fills what is not set from oci-spec's defaults, which put three capabilities
    // in these two sets.
    out.set_inheritable(None);
    out.set_ambient(None);
    Ok(out)
}

/// What `ALL` and `privileged` grant: every capability the running kernel knows
/// (`ALL_CAPABILITIES[..=cap_last_cap]`, as moby's `caps.GetAllCapabilities()`), that devenv's
/// own bounding set still holds ([`HostFacts::cap_bounding`]). The runtime cannot give a
/// container a capability it lacks itself (setting it fails the whole create with EPERM), which
/// happens when devenv runs in a container or a sandbox that dropped some.
pub(super) fn all_capabilities(host: &HostFacts) -> Vec<Capability> {
    let known = &defaults::ALL_CAPABILITIES[..=usize::from(host.cap_last_cap).min(40)];
    known
        .iter()
        .enumerate()
        .filter(|(bit, _)| host.cap_bounding & (1 << bit) != 0)
        .map(|(_, c)| *c)
        .collect()
}

/// Parses capability names; the flag says whether `ALL` was among them.
fn parse_capabilities(names: &[String]) -> Result<(Vec<Capability>, bool), SpecErrorKind> {
    let mut caps = Vec::new();
    let mut all = false;
    for name in names {
        let upper = name.trim().to_ascii_uppercase();
        if upper == "ALL" {
            all = true;
            continue;
        }
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        let cap = bare
            .parse::<Capability>()
            .map_err(|_| SpecErrorKind::UnknownCapability(name.clone()))?;
        caps.push(cap);
    }
    Ok((caps, all))
}

/// `RLIMIT_NOFILE` at [`defaults::NOFILE_LIMIT`], soft and hard, then the service's `ulimits`
/// in file order; a ulimit of the service replaces the default of the same kind. The write of
/// the bundle may still lower hard limits this host cannot grant (`driver::fit_rlimits`).
pub(super) fn rlimits(service: &Service) -> Result<Vec<PosixRlimit>, SpecErrorKind> {
    let mut out: Vec<PosixRlimit> = vec![PosixRlimitBuilder::default()
        .typ(PosixRlimitType::RlimitNofile)
        .soft(defaults::NOFILE_LIMIT)
        .hard(defaults::NOFILE_LIMIT)
        .build()?];
    for (name, u) in &service.ulimits.0 {
        let typ = rlimit_type(name).ok_or_else(|| SpecErrorKind::UnknownUlimit(name.clone()))?;
        // -1 is RLIM_INFINITY, all ones, as Docker passes it on.
        let value = |v: i64| if v == UNLIMITED { u64::MAX } else { v as u64 };
        let rlimit = PosixRlimitBuilder::default()
            .typ(typ)
            .soft(value(u.soft))
            .hard(value(u.hard))
            .build()?;
        match out.iter_mut().find(|r| r.typ() == typ) {
            Some(slot) => *slot = rlimit,
            None => out.push(rlimit),
        }
    }
    Ok(out)
}

/// The rlimit a `ulimits` name sets (the names of [`crate::config::limits::ULIMIT_NAMES`]).
fn rlimit_type(name: &str) -> Option<PosixRlimitType> {
    use PosixRlimitType::*;
    Some(match name {
        "core" => RlimitCore,
        "cpu" => RlimitCpu,
        "data" => RlimitData,
        "fsize" => RlimitFsize,
        "locks" => RlimitLocks,
        "memlock" => RlimitMemlock,
        "msgqueue" => RlimitMsgqueue,
        "nice" => RlimitNice,
        "nofile" => RlimitNofile,
        "nproc" => RlimitNproc,
        "rss" => RlimitRss,
        "rtprio" => RlimitRtprio,
        "rttime" => RlimitRttime,
        "sigpending" => RlimitSigpending,
        "stack" => RlimitStack,
        "as" => RlimitAs,
        _ => return None,
    })
}
