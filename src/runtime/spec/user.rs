//! The container's user: `user`, `user:group`, `uid` or `uid:gid`, resolved against the image's
//! own /etc/passwd and /etc/group with the rules of runc's `user.GetExecUser`, which Docker uses
//! (moby `daemon/oci_linux.go` `getUser`).
//!
//! The two files are found inside the rootfs the way the container would find them: symlinks are
//! followed relative to the rootfs, so an image whose /etc/passwd points at `/etc/shadow` or
//! `../../..` reads its own files and never the host's.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use super::SpecErrorKind;

/// The resolved identity of the container's process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the supplementary groups (moby's `AdditionalGids`).
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `spec` (empty means root) in the image at `rootfs`.
///
/// - A name must be in /etc/passwd; a numeric uid need not be (its gid is then 0).
/// - A user found in /etc/passwd takes its primary gid from there, and, when no group is given,
///   the groups of /etc/group that list it as a member as supplementary groups.
/// - A group given by name must be in /etc/group; a numeric gid need not be. An explicit group
///   replaces the primary gid and leaves no supplementary groups.
pub(super) fn resolve(rootfs: &Path, spec: &str) -> Result<ResolvedUser, SpecErrorKind> {
    let invalid = || SpecErrorKind::InvalidUser(spec.to_owned());
    let (user, group) = match spec.split_once(':') {
        Some((_, g)) if g.contains(':') => return Err(invalid()),
        Some((u, "")) => (u, None),
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // No user means uid 0, looked up like any uid so that root gets its supplementary groups.
    let user = if user.is_empty() { "0" } else { user };
    if user.contains(|c: char| c.is_whitespace()) {
        return Err(invalid());
    }

    let passwd = read_in_root(rootfs, "etc/passwd")?;
    let numeric_uid = user.parse::<u32>().ok();
    let entry = parse_passwd(&passwd).find(|e| match numeric_uid {
        Some(uid) => e.uid == uid,
        None => e.name == user,
    });
    let (uid, mut gid, name) = match (entry, numeric_uid) {
        (Some(e), _) => (e.uid, e.gid, Some(e.name)),
        (None, Some(uid)) => (uid, 0, None),
        (None, None) => return Err(SpecErrorKind::UnknownUser(user.to_owned())),
    };

    let mut supplementary = Vec::new();
    if group.is_some() || name.is_some() {
        let groups = read_in_root(rootfs, "etc/group")?;
        match group {
            Some(group) => {
                let found =
                    parse_group(&groups).find(|g| g.name == group || g.gid.to_string() == group);
                gid = match (found, group.parse::<u32>()) {
                    (Some(g), _) => g.gid,
                    (None, Ok(n)) => n,
                    (None, Err(_)) => return Err(SpecErrorKind::UnknownGroup(group.to_owned())),
                };
            }
            None => {
                let name = name.as_deref().unwrap_or_default();
                supplementary = parse_group(&groups)
                    .filter(|g| g.members.iter().any(|m| m == name))
                    .map(|g| g.gid)
                    .collect();
            }
        }
    }

    let mut additional_gids = vec![gid];
    for g in supplementary {
        if !additional_gids.contains(&g) {
            additional_gids.push(g);
        }
    }
    Ok(ResolvedUser { uid, gid, additional_gids })
}

/// `name:password:uid:gid:gecos:home:shell` lines; comments and malformed lines are skipped.
fn parse_passwd(text: &str) -> impl Iterator<Item = PasswdEntry> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?.trim().to_owned();
        let uid = f.nth(1)?.trim().parse().ok()?;
        let gid = f.next()?.trim().parse().ok()?;
        (!name.is_empty()).then_some(PasswdEntry { name, uid, gid })
    })
}

/// `name:password:gid:member,member` lines; comments and malformed lines are skipped.
fn parse_group(text: &str) -> impl Iterator<Item = GroupEntry> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?.trim().to_owned();
        let gid = f.nth(1)?.trim().parse().ok()?;
        let members = f
            .next()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|m| !m.is_empty())
            .map(str::to_owned)
            .collect();
        (!name.is_empty()).then_some(GroupEntry { name, gid, members })
    })
}

/// Reads `rel` (relative to the container's root) inside `rootfs`. A missing file reads as empty,
/// as in runc: an image without /etc/passwd can still run as a numeric uid.
fn read_in_root(rootfs: &Path, rel: &str) -> Result<String, SpecErrorKind> {
    let path = resolve_in_root(rootfs, Path::new(rel));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
            Ok(String::new())
        }
        Err(source) => Err(SpecErrorKind::ReadImageFile { path: Path::new("/").join(rel), source }),
    }
}

/// The host path of `rel` in the container whose root is `rootfs`, with every symlink on the way
/// resolved as the container would: absolute targets start again at `rootfs`, `..` never goes
/// above it. After 40 links (the kernel's limit) it gives up and returns a path that does not
/// exist.
pub(super) fn resolve_in_root(rootfs: &Path, rel: &Path) -> PathBuf {
    let mut todo: Vec<PathBuf> =
        rel.components().rev().map(|c| PathBuf::from(c.as_os_str())).collect();
    let mut done: Vec<PathBuf> = Vec::new();
    let mut links = 0;
    while let Some(part) = todo.pop() {
        match Path::new(&part).components().next() {
            None
            | Some(Component::CurDir)
            | Some(Component::RootDir)
            | Some(Component::Prefix(_)) => continue,
            Some(Component::ParentDir) => {
                done.pop();
                continue;
            }
            Some(Component::Normal(_)) => {}
        }
        let here: PathBuf = rootfs.join(done.iter().collect::<PathBuf>()).join(&part);
        match std::fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return rootfs.join(".devenv-symlink-loop");
                }
                let Ok(target) = std::fs::read_link(&here) else {
                    return here;
                };
                if target.is_absolute() {
                    done.clear();
                }
                todo.extend(target.components().rev().map(|c| PathBuf::from(c.as_os_str())));
            }
            _ => done.push(part),
        }
    }
    rootfs.join(done.iter().collect::<PathBuf>())
}
