//! The container's mounts: Docker's default set (/proc, /dev, /dev/pts, /sys, /sys/fs/cgroup,
//! /dev/mqueue, /dev/shm), the init binary, then the service's bind mounts, named and anonymous
//! volumes (including the image's `VOLUME`s), tmpfs mounts and the hosts and resolv.conf files.
//!
//! The order and the overriding follow moby's `daemon/oci_linux.go` `WithMounts`: a service mount
//! replaces the default mount at the same place (a mount on /dev replaces everything under it),
//! and the service's mounts come last, parents before children.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, MountBuilder};

use super::defaults;
use super::{SpecErrorKind, SpecInput};
use crate::config::volumes::MountType;

/// The name of the anonymous volume a service gets at `target` (a `volumes` entry without a
/// source, or an image `VOLUME` the service does not mount): readable (`anon-db-var-lib-data-…`)
/// and the same on every run, so a recreated container finds its data again. The hash keeps
/// `/a/b` and `/a-b` apart.
pub fn anonymous_volume_name(service: &str, target: &str) -> String {
    let mut slug = String::new();
    for c in target.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == '.' { c } else { '-' };
        if !(c == '-' && slug.ends_with('-')) {
            slug.push(c);
        }
    }
    // FNV-1a: tiny and stable across Rust releases, unlike `DefaultHasher`.
    let hash =
        target.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("anon-{service}-{}-{hash:08x}", slug.trim_matches('-'))
}

pub(super) fn build(input: &SpecInput, init: Option<&Path>) -> Result<Vec<Mount>, SpecErrorKind> {
    let service = input.service;
    let mut user: Vec<Mount> = Vec::new();
    let mut targets: HashSet<String> = HashSet::new();
    let mut claim = |target: &str| -> Result<String, SpecErrorKind> {
        let target = clean_target("mount target", target)?;
        if !targets.insert(target.clone()) {
            return Err(SpecErrorKind::DuplicateMount(target));
        }
        Ok(target)
    };

    for m in &service.volumes {
        let target = claim(&m.target)?;
        let ro = m.read_only.then_some("ro");
        user.push(match m.kind {
            MountType::Bind => {
                let source = m.source.as_deref().filter(|s| !s.is_empty());
                let source =
                    source.ok_or_else(|| SpecErrorKind::BindWithoutSource(target.clone()))?;
                if !source.starts_with('/') {
                    return Err(SpecErrorKind::NotAbsolute {
                        what: "bind source",
                        path: source.into(),
                    });
                }
                // Docker's binds are recursive and private (its default propagation, `rprivate`).
                bind(
                    &target,
                    Path::new(source),
                    ["rbind"].into_iter().chain(ro).chain(["rprivate"]),
                )?
            }
            MountType::Volume => {
                let name = match m.source.as_deref().filter(|s| !s.is_empty()) {
                    Some(name) => name.to_owned(),
                    None => anonymous_volume_name(input.service_name, &target),
                };
                bind(&target, &(input.volume_dirs)(&name), ["rbind"].into_iter().chain(ro))?
            }
            MountType::Tmpfs => tmpfs(&target, ro.into_iter())?,
        });
    }
    for entry in &service.tmpfs.0 {
        // `tmpfs: /run:size=64m,uid=1000`, as `docker run --tmpfs` takes it.
        let (path, options) = entry.split_once(':').unwrap_or((entry, ""));
        let target = claim(path)?;
        user.push(tmpfs(&target, options.split(',').filter(|o| !o.is_empty()))?);
    }
    // The image's `VOLUME`s that the service does not mount itself become anonymous volumes.
    let mut image_volumes: Vec<&String> = input.image_config.volumes().iter().flatten().collect();
    image_volumes.sort();
    for path in image_volumes {
        let target = clean_target("image VOLUME", path)?;
        if targets.insert(target.clone()) {
            let dir = (input.volume_dirs)(&anonymous_volume_name(input.service_name, &target));
            user.push(bind(&target, &dir, ["rbind"].into_iter())?);
        }
    }
    // Docker leaves its own /etc/hosts and /etc/resolv.conf out when the service mounts them.
    for (file, target) in
        [(input.hosts_file, "/etc/hosts"), (input.resolv_conf, "/etc/resolv.conf")]
    {
        if let Some(file) = file.filter(|_| !targets.contains(target)) {
            user.push(bind(target, file, ["rbind", "ro", "rprivate"].into_iter())?);
        }
    }
    // Parents before children (moby sorts by the number of path components).
    user.sort_by_key(|m| m.destination().components().count());

    let dev_replaced = targets.contains("/dev");
    let mut out = Vec::new();
    for d in &defaults::MOUNTS {
        if targets.contains(d.destination) || (dev_replaced && d.destination.starts_with("/dev/")) {
            continue;
        }
        let mut options: Vec<String> = d.options.iter().map(|o| o.to_string()).collect();
        if d.destination == "/dev/shm" {
            options.push(format!("size={}", defaults::SHM_SIZE));
        }
        out.push(
            MountBuilder::default()
                .destination(d.destination)
                .typ(d.typ)
                .source(d.source)
                .options(options)
                .build()?,
        );
    }
    if let Some(init) = init {
        out.push(bind(defaults::INIT_PATH, init, ["bind", "ro"].into_iter())?);
    }
    out.extend(user);
    Ok(out)
}

fn bind<'o>(
    target: &str,
    source: &Path,
    options: impl Iterator<Item = &'o str>,
) -> Result<Mount, SpecErrorKind> {
    Ok(MountBuilder::default()
        .destination(target)
        .typ("bind")
        .source(PathBuf::from(source))
        .options(options.map(str::to_owned).collect::<Vec<_>>())
        .build()?)
}

/// A tmpfs with Docker's options (`noexec,nosuid,nodev,rprivate`, then the given ones merged over
/// them). No `mode=` unless given: the kernel's default for a tmpfs root is 1777, as Docker
/// relies on too.
fn tmpfs<'o>(target: &str, options: impl Iterator<Item = &'o str>) -> Result<Mount, SpecErrorKind> {
    let all: Vec<&str> =
        ["noexec", "nosuid", "nodev", "rprivate"].into_iter().chain(options).collect();
    let merged = merge_tmpfs_options(&all).map_err(|option| SpecErrorKind::TmpfsOption {
        target: target.into(),
        option: option.into(),
    })?;
    Ok(MountBuilder::default()
        .destination(target)
        .typ("tmpfs")
        .source("tmpfs")
        .options(merged)
        .build()?)
}

/// Mount flags that cancel each other, by family: the last one given wins.
const FLAG_FAMILIES: [&[&str]; 11] = [
    &["ro", "rw"],
    &["suid", "nosuid"],
    &["dev", "nodev"],
    &["exec", "noexec"],
    &["sync", "async"],
    &["atime", "noatime"],
    &["diratime", "nodiratime"],
    &["relatime", "norelatime"],
    &["strictatime", "nostrictatime"],
    &["dirsync"],
    &["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"],
];

/// The `key=value` options tmpfs takes (moby/sys/mount `validFlags`).
const TMPFS_DATA: [&str; 7] = ["size", "mode", "uid", "gid", "nr_inodes", "nr_blocks", "mpol"];

/// moby/sys/mount `MergeTmpfsOptions`: later options win over earlier ones of the same family
/// (`exec` over `noexec`, a second `size=`...); order is kept otherwise. An unknown option is
/// returned as the error.
fn merge_tmpfs_options<'o>(options: &[&'o str]) -> Result<Vec<String>, &'o str> {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out: Vec<String> = Vec::new();
    for &option in options.iter().rev() {
        if option == "defaults" {
            continue;
        }
        let family = match FLAG_FAMILIES.iter().find(|f| f.contains(&option)) {
            Some(family) => family[0],
            None => match option.split_once('=') {
                Some((key, _)) if TMPFS_DATA.contains(&key) => key,
                _ => return Err(option),
            },
        };
        if seen.insert(family) {
            out.push(option.to_owned());
        }
    }
    out.reverse();
    Ok(out)
}

/// `path` made canonical (`//`, `.` and `..` resolved lexically, no trailing `/`); it must be
/// absolute, since a container path has no working directory to be relative to.
fn clean_target(what: &'static str, path: &str) -> Result<String, SpecErrorKind> {
    if !path.starts_with('/') {
        return Err(SpecErrorKind::NotAbsolute { what, path: path.into() });
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Ok(format!("/{}", parts.join("/")))
}
