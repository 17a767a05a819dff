//! Who the exec'd process runs as: `-u name|uid[:group|gid]` resolved against the container's
//! own /etc/passwd and /etc/group, or, without `-u`, the ids of the container's init.
//!
//! The rules are runc's `user.GetExecUser`, shared with the container's own user in
//! [`crate::runtime::user`].
//!
//! The files are read through the container's root with `openat2(RESOLVE_IN_ROOT)`, so an
//! /etc/passwd that is a symlink to `/etc/shadow` or `../../..` reads the container's file.

use std::os::fd::AsFd;

use super::target::Target;
use super::ExecError;
use crate::runtime::cp::{inside_id_of, resolve::read_in_root};
use crate::runtime::user::{self, UserError};

/// Ids inside the container's user namespace, and the home directory for `HOME`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Identity {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary gid included, as `id` shows them).
    pub groups: Vec<u32>,
    pub home: Option<String>,
}

/// Resolves `user` (or the init's ids when `None`) for the container `t`.
pub(super) fn identity(t: &Target, user: Option<&str>) -> Result<Identity, ExecError> {
    let read = |path: &str| -> Result<String, ExecError> {
        match read_in_root(t.root.as_fd(), path) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes.unwrap_or_default()).into_owned()),
            Err(source) => Err(ExecError::ReadContainerFile { path: path.to_owned(), source }),
        }
    };
    let passwd = read("/etc/passwd")?;
    let Some(spec) = user else {
        return init_identity(t, &passwd);
    };
    let groups = read("/etc/group")?;
    resolve(spec, &passwd, &groups)
}

/// The container init's effective ids, translated into its user namespace if we join one.
fn init_identity(t: &Target, passwd: &str) -> Result<Identity, ExecError> {
    let (uid_map, gid_map) = if t.joins_userns() {
        (t.uid_map.as_str(), t.gid_map.as_str())
    } else {
        ("0 0 4294967295", "0 0 4294967295")
    };
    let unmapped = |id: u32| ExecError::UnmappedId(id);
    let uid = inside_id_of(uid_map, t.ids.uid).ok_or_else(|| unmapped(t.ids.uid))?;
    let gid = inside_id_of(gid_map, t.ids.gid).ok_or_else(|| unmapped(t.ids.gid))?;
    let groups = t.ids.groups.iter().filter_map(|&g| inside_id_of(gid_map, g)).collect();
    Ok(Identity { uid, gid, groups, home: user::home_of(passwd, uid) })
}

/// `user`, `user:group`, `uid`, `uid:gid` (or mixed) against the two files' contents.
pub(super) fn resolve(spec: &str, passwd: &str, group: &str) -> Result<Identity, ExecError> {
    match user::resolve(spec, passwd, group) {
        Ok(u) => Ok(Identity { uid: u.uid, gid: u.gid, groups: u.groups, home: u.home }),
        Err(UserError::Invalid(s)) => Err(ExecError::InvalidUser(s)),
        Err(UserError::UnknownUser(s)) => Err(ExecError::UnknownUser(s)),
        Err(UserError::UnknownGroup(s)) => Err(ExecError::UnknownGroup(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n# comment\n\
        nobody:x:65534:65534:nobody:/nonexistent:/bin/false\nweb:x:33:33::/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nwww:x:33:\nextra:x:1000:web,other\n";

    fn id(uid: u32, gid: u32, groups: &[u32], home: Option<&str>) -> Identity {
        Identity { uid, gid, groups: groups.to_vec(), home: home.map(str::to_owned) }
    }

    #[test]
    fn names_and_numbers() {
        assert_eq!(
            resolve("nobody", PASSWD, GROUP).unwrap(),
            id(65534, 65534, &[65534], Some("/nonexistent"))
        );
        assert_eq!(
            resolve("web", PASSWD, GROUP).unwrap(),
            id(33, 33, &[33, 1000], Some("/var/www"))
        );
        assert_eq!(resolve("33:0", PASSWD, GROUP).unwrap(), id(33, 0, &[0], Some("/var/www")));
        assert_eq!(
            resolve("web:nogroup", PASSWD, GROUP).unwrap(),
            id(33, 65534, &[65534], Some("/var/www"))
        );
        assert_eq!(resolve("4242", PASSWD, GROUP).unwrap(), id(4242, 0, &[0], None));
        assert_eq!(resolve("4242:77", PASSWD, GROUP).unwrap(), id(4242, 77, &[77], None));
        assert_eq!(resolve("", PASSWD, GROUP).unwrap(), id(0, 0, &[0], Some("/root")));
    }

    #[test]
    fn unknown_names_and_bad_specs() {
        assert!(
            matches!(resolve("ghost", PASSWD, GROUP), Err(ExecError::UnknownUser(u)) if u == "ghost")
        );
        assert!(
            matches!(resolve("root:ghosts", PASSWD, GROUP), Err(ExecError::UnknownGroup(g)) if g == "ghosts")
        );
        assert!(matches!(resolve("a:b:c", PASSWD, GROUP), Err(ExecError::InvalidUser(_))));
        assert!(matches!(resolve("a b", PASSWD, GROUP), Err(ExecError::InvalidUser(_))));
    }
}
