//! What an exec'd process must share with the container, read from `/proc/<pid>` before forking:
//! namespace and root descriptors, environment, cgroups, capability bounding set, ids.
//!
//! Everything is gathered in the caller, where errors are ordinary `Result`s, and only
//! descriptors and plain data go to the forked child. The descriptors also pin the container:
//! if its pid is reused meanwhile, they still refer to the namespaces and root read here.

use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;

use super::ExecError;
use crate::runtime::cp::resolve::Side;

/// The namespaces joined, in the order they are joined. The user namespace is last: as host root
/// we may join the others directly (we hold CAP_SYS_ADMIN over every user namespace), and once in
/// the container's user namespace we would no longer be privileged over the host's (the
/// "deprivileging" order of util-linux's nsenter). `time` is left alone, like runc's exec.
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("mnt", CloneFlags::CLONE_NEWNS),
    ("user", CloneFlags::CLONE_NEWUSER),
];

/// A namespace of the container that differs from ours.
pub(super) struct Namespace {
    pub name: &'static str,
    pub flag: CloneFlags,
    pub fd: OwnedFd,
}

/// Ids as `/proc/<pid>/status` shows them (in the host's user namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ids {
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
}

/// The container, as seen from the host.
pub(super) struct Target {
    pub namespaces: Vec<Namespace>,
    /// `/proc/<pid>/root` and `/proc/<pid>/cwd`, `O_PATH` directories.
    pub root: OwnedFd,
    pub cwd: OwnedFd,
    /// `KEY=VALUE` entries of the init's environment, in order.
    pub env: Vec<Vec<u8>>,
    /// `cgroup.procs` files (host paths) of the container's cgroups that are not ours.
    pub cgroup_procs: Vec<PathBuf>,
    pub cap_bnd: u64,
    pub cap_inh: u64,
    pub no_new_privs: bool,
    pub ids: Ids,
    /// `/proc/<pid>/{uid,gid}_map`, to translate host ids when joining a user namespace.
    pub uid_map: String,
    pub gid_map: String,
}

impl Target {
    pub(super) fn inspect(pid: i32) -> Result<Target, ExecError> {
        let proc = PathBuf::from(format!("/proc/{pid}"));
        if !proc.exists() {
            return Err(ExecError::NotRunning { pid });
        }
        let read = |name: &str| {
            std::fs::read(proc.join(name)).map_err(|source| ExecError::Inspect {
                pid,
                what: name.to_owned(),
                source,
            })
        };
        let open_dir = |name: &str| {
            let path = format!("/proc/{pid}/{name}");
            Side::Host
                .open(path.as_bytes(), OFlag::O_PATH | OFlag::O_DIRECTORY)
                .map_err(|source| ExecError::Inspect { pid, what: name.to_owned(), source })
        };

        let mut namespaces = Vec::new();
        for (name, flag) in NAMESPACES {
            let theirs = proc.join("ns").join(name);
            let Ok(their_md) = std::fs::metadata(&theirs) else {
                continue; // a kernel without this namespace type
            };
            let same = std::fs::metadata(format!("/proc/self/ns/{name}"))
                .is_ok_and(|ours| (ours.dev(), ours.ino()) == (their_md.dev(), their_md.ino()));
            if !same {
                namespaces.push(Namespace { name, flag, fd: open_ns(pid, name)? });
            }
        }

        let status = String::from_utf8_lossy(&read("status")?).into_owned();
        let field = |key: &str| {
            status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':')).map(str::trim)
        };
        let hex = |key: &str| field(key).and_then(|v| u64::from_str_radix(v, 16).ok());
        let first = |key: &str| field(key)?.split_whitespace().nth(1)?.parse::<u32>().ok();
        let bad = |what: &str| ExecError::Inspect {
            pid,
            what: format!("status ({what})"),
            source: std::io::Error::from(std::io::ErrorKind::InvalidData),
        };
        let ids = Ids {
            // The effective ids (second column).
            uid: first("Uid").ok_or_else(|| bad("Uid"))?,
            gid: first("Gid").ok_or_else(|| bad("Gid"))?,
            groups: field("Groups")
                .unwrap_or("")
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect(),
        };

        let own_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let their_cgroup = String::from_utf8_lossy(&read("cgroup")?).into_owned();

        Ok(Target {
            namespaces,
            root: open_dir("root")?,
            cwd: open_dir("cwd")?,
            env: read("environ")?
                .split(|&b| b == 0)
                .filter(|e| e.contains(&b'='))
                .map(<[u8]>::to_vec)
                .collect(),
            cgroup_procs: cgroup_procs_paths(&their_cgroup, &own_cgroup, &mountinfo),
            cap_bnd: hex("CapBnd").ok_or_else(|| bad("CapBnd"))?,
            cap_inh: hex("CapInh").unwrap_or(0),
            no_new_privs: field("NoNewPrivs") == Some("1"),
            ids,
            uid_map: String::from_utf8_lossy(&read("uid_map")?).into_owned(),
            gid_map: String::from_utf8_lossy(&read("gid_map")?).into_owned(),
        })
    }

    pub(super) fn joins_userns(&self) -> bool {
        self.namespaces.iter().any(|n| n.flag == CloneFlags::CLONE_NEWUSER)
    }
}

/// `/proc/<pid>/ns/<name>`, opened read-only (setns(2) wants a real descriptor, not `O_PATH`).
fn open_ns(pid: i32, name: &'static str) -> Result<OwnedFd, ExecError> {
    let path = format!("/proc/{pid}/ns/{name}");
    Side::Host.open(path.as_bytes(), OFlag::O_RDONLY).map_err(|source| ExecError::Inspect {
        pid,
        what: format!("ns/{name}"),
        source,
    })
}

/// The `cgroup.procs` files to write a pid into so that it joins the cgroups of the process whose
/// `/proc/<pid>/cgroup` is `theirs`, given our own `/proc/self/cgroup` and `/proc/self/mountinfo`.
///
/// Each line of `theirs` is `id:controllers:path`: a v1 hierarchy (its controllers, or
/// `name=systemd`) or the v2 one (`0::path`). Each is found among our cgroup mounts (for v1,
/// one whose super options list the controllers) and the path taken relative to that mount's
/// root. Hierarchies where the path equals ours are skipped, as are those not mounted here.
/// Both layouts come out of this one rule: unified (v2 only), legacy and hybrid (v1 plus a v2
/// mount at `/sys/fs/cgroup/unified`).
pub(super) fn cgroup_procs_paths(theirs: &str, ours: &str, mountinfo: &str) -> Vec<PathBuf> {
    let mounts: Vec<(String, String, String, Vec<String>)> = mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let left: Vec<&str> = left.split(' ').collect();
            let mut right = right.split(' ');
            let fstype = right.next()?.to_owned();
            let superopts = right.nth(1).unwrap_or("").split(',').map(str::to_owned).collect();
            Some((fstype, unescape(left.get(3)?), unescape(left.get(4)?), superopts))
        })
        .filter(|(fstype, ..)| fstype == "cgroup" || fstype == "cgroup2")
        .collect();
    let own: Vec<(&str, &str)> = ours
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            Some((f.nth(1)?, f.next()?))
        })
        .collect();

    let mut out = Vec::new();
    for line in theirs.lines() {
        let mut f = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if own.contains(&(controllers, path)) {
            continue;
        }
        let v2 = id == "0" && controllers.is_empty();
        let mount = mounts.iter().find(|(fstype, _, _, opts)| {
            if v2 {
                fstype == "cgroup2"
            } else {
                fstype == "cgroup" && controllers.split(',').all(|c| opts.iter().any(|o| o == c))
            }
        });
        let Some((_, root, mountpoint, _)) = mount else { continue };
        let Some(rel) = path.strip_prefix(root.as_str()) else { continue };
        let mut p = PathBuf::from(mountpoint);
        p.push(rel.trim_start_matches('/'));
        p.push("cgroup.procs");
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(o) if b[i] == b'\\' => {
                out.push((o[0] - b'0') * 64 + (o[1] - b'0') * 8 + (o[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "\
30 24 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid - cgroup cgroup rw,xattr,name=systemd
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:9 - cgroup cgroup rw,cpu,cpuacct
36 30 0:32 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    #[test]
    fn hybrid_layout_maps_every_hierarchy() {
        let theirs = "5:pids:/ctr\n3:cpu,cpuacct:/ctr\n1:name=systemd:/\n0::/ctr\n2:rdma:/ctr\n";
        let ours = "5:pids:/\n3:cpu,cpuacct:/\n1:name=systemd:/\n0::/\n";
        let got = cgroup_procs_paths(theirs, ours, HYBRID_MOUNTS);
        let want: Vec<PathBuf> = [
            "/sys/fs/cgroup/pids/ctr/cgroup.procs",
            "/sys/fs/cgroup/cpu,cpuacct/ctr/cgroup.procs",
            "/sys/fs/cgroup/unified/ctr/cgroup.procs",
        ]
        .iter()
        .map(PathBuf::from)
        .collect();
        // systemd is the same as ours; rdma is not mounted.
        assert_eq!(got, want);
    }

    #[test]
    fn unified_layout_and_mount_roots() {
        let mounts = "25 1 0:22 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let got = cgroup_procs_paths("0::/outer/ctr\n", "0::/outer\n", mounts);
        assert_eq!(got, vec![PathBuf::from("/sys/fs/cgroup/ctr/cgroup.procs")]);
        assert!(cgroup_procs_paths("0::/elsewhere\n", "0::/outer\n", mounts).is_empty());
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape(r"/x\9"), r"/x\9");
    }
}
