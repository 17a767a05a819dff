//! Resolving `user`, `user:group`, `uid` or `uid:gid` against a container's /etc/passwd and
//! /etc/group, with the rules of runc's `user.GetExecUser`, which Docker uses (moby
//! `daemon/oci_linux.go` `getUser`): shared by the container's own user (`spec`) and `exec -u`.
//! Callers read the two files inside the container's root; this module only parses.

/// A resolved identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// The primary gid first, then the supplementary groups (moby's `AdditionalGids`).
    pub groups: Vec<u32>,
    /// The home directory from /etc/passwd, when the user is listed there.
    pub home: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserError {
    Invalid(String),
    UnknownUser(String),
    UnknownGroup(String),
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `spec` (empty means root) against the contents of /etc/passwd and /etc/group.
///
/// - A name must be in /etc/passwd; a numeric uid need not be (its gid is then 0).
/// - A user found in /etc/passwd takes its primary gid from there, and, when no group is given,
///   the groups of /etc/group that list it as a member as supplementary groups.
/// - A group given by name must be in /etc/group; a numeric gid need not be. An explicit group
///   replaces the primary gid and leaves no supplementary groups.
pub fn resolve(spec: &str, passwd: &str, group: &str) -> Result<User, UserError> {
    let invalid = || UserError::Invalid(spec.to_owned());
    let (user, grp) = match spec.split_once(':') {
        Some((_, g)) if g.contains(':') => return Err(invalid()),
        Some((u, "")) => (u, None),
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    // No user means uid 0, looked up like any uid so that root gets its supplementary groups.
    let user = if user.is_empty() { "0" } else { user };
    if user.contains(char::is_whitespace) {
        return Err(invalid());
    }
    let numeric = user.parse::<u32>().ok();
    let entry = parse_passwd(passwd).find(|p| match numeric {
        Some(uid) => p.uid == uid,
        None => p.name == user,
    });
    let (uid, mut gid, name, home) = match (entry, numeric) {
        (Some(p), _) => (p.uid, p.gid, Some(p.name), Some(p.home)),
        (None, Some(uid)) => (uid, 0, None, None),
        (None, None) => return Err(UserError::UnknownUser(user.to_owned())),
    };
    let mut supplementary = Vec::new();
    match grp {
        Some(g) => {
            let found = parse_group(group).find(|e| e.name == g || e.gid.to_string() == g);
            gid = match (found, g.parse::<u32>()) {
                (Some(e), _) => e.gid,
                (None, Ok(id)) => id,
                (None, Err(_)) => return Err(UserError::UnknownGroup(g.to_owned())),
            };
        }
        None => {
            if let Some(name) = &name {
                supplementary = parse_group(group)
                    .filter(|e| e.members.iter().any(|m| m == name))
                    .map(|e| e.gid)
                    .collect();
            }
        }
    }
    let mut groups = vec![gid];
    for g in supplementary {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(User { uid, gid, groups, home })
}

/// The home directory of `uid` in /etc/passwd.
pub fn home_of(passwd: &str, uid: u32) -> Option<String> {
    parse_passwd(passwd).find(|p| p.uid == uid).map(|p| p.home)
}

/// `name:password:uid:gid:gecos:home:shell` lines; comments and malformed lines are skipped.
fn parse_passwd(text: &str) -> impl Iterator<Item = Passwd> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let name = f.first()?.trim().to_owned();
        let uid = f.get(2)?.trim().parse().ok()?;
        let gid = f.get(3)?.trim().parse().ok()?;
        let home = f.get(5).map_or("/", |h| h.trim()).to_owned();
        (!name.is_empty()).then_some(Passwd { name, uid, gid, home })
    })
}

/// `name:password:gid:member,member` lines; comments and malformed lines are skipped.
fn parse_group(text: &str) -> impl Iterator<Item = Group> + '_ {
    text.lines().filter(|l| !l.starts_with('#')).filter_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let name = f.first()?.trim().to_owned();
        let gid = f.get(2)?.trim().parse().ok()?;
        let members = f.get(3).map_or("", |m| m).split(',').map(str::trim);
        let members = members.filter(|m| !m.is_empty()).map(str::to_owned).collect();
        (!name.is_empty()).then_some(Group { name, gid, members })
    })
}
