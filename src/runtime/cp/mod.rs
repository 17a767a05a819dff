//! `devenv cp`: copying files and directories into and out of a running container, with the
//! rules of `docker cp`, without ever touching the host's files through the container's paths.
//!
//! A container is named by the host pid of its init; its files are reached through
//! `/proc/<pid>/root`, which sees the container's own mounts (volumes, bind mounts) too. No
//! supervisor or runtime is involved.
//!
//! Semantics (Docker's `docker cp` reference):
//! - `SRC` a file: to `DST` if it does not exist (its parent must; a `DST` ending in `/` must be
//!   an existing directory), over `DST` if it is a file, into `DST/<name>` if it is a directory.
//! - `SRC` a directory: created as `DST` if that does not exist, copied into `DST/<name>` if it is
//!   a directory, an error if it is a file. `SRC/.` copies the directory's contents into `DST`.
//! - Modes and times are kept. Owners: what is written into a container belongs to the
//!   container's root (the host ids its user namespace maps uid/gid 0 to), what is written out
//!   belongs to the caller; copies out lose setuid/setgid bits.
//! - Inside directories, symlinks are copied as symlinks, never followed. A symlink named by
//!   `SRC` or `DST` itself is followed, inside the container's root for its side (as
//!   `docker cp -L`): copying out a link to `/etc/shadow` copies the container's file, not a link
//!   that would read the host's one once on the host.
//!
//! Safety (CVE-2018-15664): container paths are resolved by the kernel inside the container's
//! root ([`resolve`]), and from there on all work is relative to directory descriptors, one
//! component at a time with `O_NOFOLLOW` ([`tree`]). The container may rename, swap or replace
//! anything at any moment: the copy may then fail or copy the container's other files, but it
//! cannot read or write a host file through the container's paths.
//!
//! Live-edit sync ([`sync_in`], in `sync.rs`) writes single paths into a container with the same
//! machinery, creating parents and deleting what the host no longer has.

pub(crate) mod resolve;
mod sync;
mod tree;

pub use sync::sync_in;

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::SFlag;

use resolve::Side;
use tree::{Policy, Walk};

/// Why a copy failed. Every variant names the path concerned, as the user wrote it or as it is
/// inside the container.
#[derive(Debug, thiserror::Error)]
pub enum CpError {
    #[error("cannot open the root of container process {pid} (is it still running?): {source}")]
    Root { pid: i32, source: io::Error },
    #[error("cannot read the user namespace mapping of container process {pid}: {source}")]
    IdMap { pid: i32, source: io::Error },
    #[error("{path}: no such file or directory")]
    NotFound { path: PathBuf },
    #[error("{path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error("cannot copy directory {src} to {dst}: it is a file")]
    DirToFile { src: PathBuf, dst: PathBuf },
    #[error("destination directory {path} does not exist")]
    NoDestDir { path: PathBuf },
    #[error("cannot overwrite directory {path} with a non-directory")]
    OverwriteDir { path: PathBuf },
    /// Includes magic links such as `/proc/<pid>/root` inside the container, which are refused.
    #[error("{path}: too many levels of symbolic links, or a /proc magic link")]
    SymlinkLoop { path: PathBuf },
    #[error("cannot copy {path}: only files, directories and symlinks can be copied")]
    Unsupported { path: PathBuf },
    #[error("cannot sync to {path}: not an absolute container path with a name")]
    SyncTarget { path: PathBuf },
    #[error("cannot {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: io::Error },
}

/// Copies `host_src` (a file or directory on the host) to `container_dst` in the running
/// container whose init has host pid `pid`, as `docker cp SRC CONTAINER:DST` does.
pub fn copy_in(pid: i32, host_src: &Path, container_dst: &str) -> Result<(), CpError> {
    let root = resolve::open_root(pid)?;
    let owner = container_root_owner(pid)?;
    let policy = Policy { owner, strip_setid: false };
    let src = host_src.as_os_str().as_bytes();
    copy(Side::Host, src, Side::Container(root.as_fd()), container_dst.as_bytes(), policy)
}

/// Copies `container_src` (a file or directory in the running container whose init has host
/// pid `pid`) to `host_dst`, as `docker cp CONTAINER:SRC DST` does.
pub fn copy_out(pid: i32, container_src: &str, host_dst: &Path) -> Result<(), CpError> {
    let root = resolve::open_root(pid)?;
    let policy = Policy { owner: None, strip_setid: true };
    let dst = host_dst.as_os_str().as_bytes();
    copy(Side::Container(root.as_fd()), container_src.as_bytes(), Side::Host, dst, policy)
}

fn copy(
    src_side: Side<'_>,
    src: &[u8],
    dst_side: Side<'_>,
    dst: &[u8],
    policy: Policy,
) -> Result<(), CpError> {
    let src_show = src_side.show(src);
    let dst_show = dst_side.show(dst);
    let (_, name) = split_last(src);
    // `SRC/.`, and paths like `/` or `..` that have no name of their own: copy what is inside.
    let contents_only = src.ends_with(b"/.") || name.is_none();
    let must_be_dir = contents_only || src.ends_with(b"/");

    let src_fd = src_side.open(src, OFlag::O_PATH).map_err(|e| match e.raw_os_error() {
        Some(libc::ENOENT) => CpError::NotFound { path: src_show.clone() },
        Some(libc::ENOTDIR) => CpError::NotADirectory { path: src_show.clone() },
        Some(libc::ELOOP) => CpError::SymlinkLoop { path: src_show.clone() },
        _ => CpError::Io { op: "open", path: src_show.clone(), source: e },
    })?;
    let st = tree::fstat(src_fd.as_fd()).map_err(|e| io_err("stat", &src_show, e))?;
    let k = tree::kind(&st);
    let is_dir = k == SFlag::S_IFDIR;
    if must_be_dir && !is_dir {
        return Err(CpError::NotADirectory { path: src_show });
    }
    if !is_dir && k != SFlag::S_IFREG {
        return Err(CpError::Unsupported { path: src_show });
    }

    let mut walk = Walk { policy, src: src_show.clone(), dst: dst_show.clone() };
    match resolve_target(dst_side, dst, &dst_show)? {
        Target::Dir(dir) => {
            if is_dir && contents_only {
                let reader = tree::open_dir_for_read(src_fd.as_fd())
                    .map_err(|e| io_err("open directory", &src_show, e))?;
                walk.contents(reader.as_fd(), dir.as_fd())
            } else {
                let name = name.unwrap_or_default();
                walk.dst.push(OsStr::from_bytes(&name));
                walk.entry(src_fd.as_fd(), dir.as_fd(), &cstring(name, &src_show)?)
            }
        }
        Target::Missing { parent, name } => {
            if !is_dir && dst.ends_with(b"/") {
                return Err(CpError::NoDestDir { path: dst_show });
            }
            walk.entry(src_fd.as_fd(), parent.as_fd(), &cstring(name, &dst_show)?)
        }
        Target::NonDir { parent, name } => {
            if is_dir {
                return Err(CpError::DirToFile { src: src_show, dst: dst_show });
            }
            if dst.ends_with(b"/") {
                return Err(CpError::NotADirectory { path: dst_show });
            }
            walk.entry(src_fd.as_fd(), parent.as_fd(), &cstring(name, &dst_show)?)
        }
    }
}

/// What a destination path names, symlinks followed (inside the root for a container).
enum Target {
    /// An existing directory, open for writing entries into it.
    Dir(OwnedFd),
    /// Nothing yet: `name` in the existing directory `parent`.
    Missing { parent: OwnedFd, name: Vec<u8> },
    /// An existing file (or other non-directory): `name` in directory `parent`.
    NonDir { parent: OwnedFd, name: Vec<u8> },
}

/// Finds what `path` names on `side`. The last component is examined from its parent's
/// descriptor (`fstatat` without following) so that a missing entry can be created and a file
/// replaced in that very directory; when it is a symlink, its target is looked up in turn,
/// relative to the parent or, if absolute, to the side's root (40 links at most, as the kernel).
fn resolve_target(side: Side<'_>, path: &[u8], show: &Path) -> Result<Target, CpError> {
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
    let mut path = path.to_vec();
    for _ in 0..40 {
        let (parent_path, last) = split_last(&path);
        let Some(last) = last else {
            // `/`, `.`, `..`, `x/..`: only ever a directory.
            return side.open(&path, dir_flags).map(Target::Dir).map_err(|e| open_err(e, show));
        };
        let parent = side.open(&parent_path, dir_flags).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => CpError::NoDestDir { path: side.show(&parent_path) },
            _ => open_err(e, show),
        })?;
        let c = cstring(last.clone(), show)?;
        let st = match nix::sys::stat::fstatat(
            Some(raw(parent.as_fd())),
            c.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        ) {
            Err(nix::Error::ENOENT) => return Ok(Target::Missing { parent, name: last }),
            Err(e) => return Err(io_err("stat", show, io::Error::from_raw_os_error(e as i32))),
            Ok(st) => st,
        };
        let k = tree::kind(&st);
        if k == SFlag::S_IFDIR {
            let fd = tree::openat(parent.as_fd(), &c, dir_flags | OFlag::O_NOFOLLOW)
                .map_err(|e| open_err(e, show))?;
            return Ok(Target::Dir(fd));
        }
        if k != SFlag::S_IFLNK {
            return Ok(Target::NonDir { parent, name: last });
        }
        let target = nix::fcntl::readlinkat(Some(raw(parent.as_fd())), c.as_c_str())
            .map_err(|e| io_err("read symlink", show, io::Error::from_raw_os_error(e as i32)))?;
        let target = target.as_bytes();
        path = if target.starts_with(b"/") {
            target.to_vec()
        } else {
            let mut p = parent_path;
            p.push(b'/');
            p.extend_from_slice(target);
            p
        };
    }
    Err(CpError::SymlinkLoop { path: show.to_path_buf() })
}

fn raw(fd: BorrowedFd<'_>) -> i32 {
    std::os::fd::AsRawFd::as_raw_fd(&fd)
}

fn open_err(e: io::Error, show: &Path) -> CpError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => CpError::NoDestDir { path: show.to_path_buf() },
        Some(libc::ENOTDIR) => CpError::NotADirectory { path: show.to_path_buf() },
        Some(libc::ELOOP) => CpError::SymlinkLoop { path: show.to_path_buf() },
        _ => io_err("open", show, e),
    }
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> CpError {
    CpError::Io { op, path: path.to_path_buf(), source }
}

fn cstring(bytes: Vec<u8>, show: &Path) -> Result<CString, CpError> {
    CString::new(bytes)
        .map_err(|_| io_err("use", show, io::Error::from(io::ErrorKind::InvalidInput)))
}

/// Splits a path into its parent and its last component, trailing slashes ignored. The last
/// component is `None` when the path has no name of its own (`/`, `.`, `..`, `a/..`, empty),
/// and then the parent is the whole path. `a` -> (`.`, `a`); `/a` -> (`/`, `a`); `a/b/` ->
/// (`a`, `b`).
fn split_last(path: &[u8]) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut end = path.len();
    while end > 1 && path[end - 1] == b'/' {
        end -= 1;
    }
    let trimmed = &path[..end];
    let (parent, last) = match trimmed.iter().rposition(|&b| b == b'/') {
        Some(0) => (&b"/"[..], &trimmed[1..]),
        Some(i) => (&trimmed[..i], &trimmed[i + 1..]),
        None => (&b"."[..], trimmed),
    };
    if last.is_empty() || last == b"." || last == b".." {
        let whole = if trimmed.is_empty() { b".".to_vec() } else { trimmed.to_vec() };
        return (whole, None);
    }
    (parent.to_vec(), Some(last.to_vec()))
}

/// The host ids that a container's uid and gid 0 are, when it has its own user namespace
/// (`/proc/<pid>/{uid,gid}_map`); `None` when they are ours already (no user namespace).
fn container_root_owner(pid: i32) -> Result<Option<(u32, u32)>, CpError> {
    let map = |file: &str| -> Result<u32, CpError> {
        let path = format!("/proc/{pid}/{file}");
        let text =
            std::fs::read_to_string(&path).map_err(|source| CpError::IdMap { pid, source })?;
        host_id_of(&text, 0).ok_or_else(|| CpError::IdMap {
            pid,
            source: io::Error::new(io::ErrorKind::NotFound, format!("{path} does not map id 0")),
        })
    };
    let (uid, gid) = (map("uid_map")?, map("gid_map")?);
    let ours = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    Ok(((uid, gid) != ours).then_some((uid, gid)))
}

/// The id outside a user namespace of `inside`, from a `uid_map`/`gid_map` text read from
/// outside: lines of `inside-start outside-start count`.
pub(crate) fn host_id_of(map: &str, inside: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|n| n.parse::<u64>().ok());
        let (start, host, count) = (f.next()??, f.next()??, f.next()??);
        let inside = u64::from(inside);
        (inside >= start && inside - start < count).then(|| (host + inside - start) as u32)
    })
}

/// The inverse of [`host_id_of`]: the id inside the namespace of host id `outside`.
pub(crate) fn inside_id_of(map: &str, outside: u32) -> Option<u32> {
    map.lines().find_map(|line| {
        let mut f = line.split_whitespace().map(|n| n.parse::<u64>().ok());
        let (start, host, count) = (f.next()??, f.next()??, f.next()??);
        let outside = u64::from(outside);
        (outside >= host && outside - host < count).then(|| (start + outside - host) as u32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(p: &str) -> (String, Option<String>) {
        let (a, b) = split_last(p.as_bytes());
        (String::from_utf8(a).unwrap(), b.map(|b| String::from_utf8(b).unwrap()))
    }

    #[test]
    fn split_last_names_the_final_component() {
        assert_eq!(split("a"), (".".into(), Some("a".into())));
        assert_eq!(split("/a"), ("/".into(), Some("a".into())));
        assert_eq!(split("/a/b/"), ("/a".into(), Some("b".into())));
        assert_eq!(split("a//b"), ("a/".into(), Some("b".into())));
        assert_eq!(split("/"), ("/".into(), None));
        assert_eq!(split(""), (".".into(), None));
        assert_eq!(split("a/."), ("a/.".into(), None));
        assert_eq!(split("a/.."), ("a/..".into(), None));
        assert_eq!(split("//"), ("/".into(), None));
    }

    #[test]
    fn id_maps_translate_both_ways() {
        let map = "         0     100000      65536\n";
        assert_eq!(host_id_of(map, 0), Some(100000));
        assert_eq!(host_id_of(map, 65535), Some(165535));
        assert_eq!(host_id_of(map, 65536), None);
        assert_eq!(inside_id_of(map, 100033), Some(33));
        assert_eq!(inside_id_of(map, 5), None);
        let identity = "0 0 4294967295\n";
        assert_eq!(host_id_of(identity, 0), Some(0));
        assert_eq!(inside_id_of(identity, 65534), Some(65534));
    }
}
