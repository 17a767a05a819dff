//! The recursive copy itself, from one directory descriptor to another, the same code for both
//! directions.
//!
//! Nothing here takes a path with more than one component: entries are named by what `readdir`
//! returned (never `/`, never `..`), opened relative to their parent's descriptor with
//! `O_NOFOLLOW`, and checked with `fstat` on the descriptor actually opened, not on the name.
//! So a container that swaps a directory for a symlink mid-copy (CVE-2018-15664) makes an open
//! fail with `ELOOP`/`ENOTDIR` instead of steering it anywhere; there is no path string that
//! could be resolved a second time.
//!
//! - Reading: an entry is opened `O_PATH | O_NOFOLLOW` and `fstat`-ed; a regular file is then
//!   reopened for reading through `/proc/self/fd/N`, which reopens that very inode (this is how
//!   libpathrs reopens handles), so a device node swapped in is never opened.
//! - Writing: files and symlinks are made under a fresh temporary name (`O_CREAT | O_EXCL`,
//!   `symlinkat`) and then `renameat`-ed over the target name, which replaces the entry itself
//!   and never follows what was there. Directories are `mkdirat`-ed and opened
//!   `O_DIRECTORY | O_NOFOLLOW`. Modes, owners and times are set on descriptors (`fchmod`,
//!   `fchown`, `futimens`) or with `AT_SYMLINK_NOFOLLOW`, never through a name that could follow.
//!
//! Regular files, directories and symlinks are copied; FIFOs, sockets and device nodes are
//! skipped with a warning (creating them would need name-based calls that follow symlinks, and a
//! device node from a container has no business on the host). Hard links become separate files.

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

use super::CpError;

/// What the written copies should look like.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Policy {
    /// Owner to give every written entry; `None` keeps the copying process's own (root).
    pub owner: Option<(u32, u32)>,
    /// Clear set-user-ID and set-group-ID bits of regular files (copies out of a container,
    /// which would otherwise plant root-owned setuid programs on the host).
    pub strip_setid: bool,
}

/// A copy in progress: where messages say things happen.
pub(crate) struct Walk {
    pub policy: Policy,
    /// Display path of the entry being read and of the one being written.
    pub src: PathBuf,
    pub dst: PathBuf,
}

fn nix_io(e: nix::Error) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

fn io_err(op: &'static str, path: &Path, source: io::Error) -> CpError {
    CpError::Io { op, path: path.to_path_buf(), source }
}

/// `openat(dir, name, flags | O_CLOEXEC)`, as an owned fd.
pub(crate) fn openat(dir: BorrowedFd<'_>, name: &CStr, flags: OFlag) -> io::Result<OwnedFd> {
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        flags | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )
    .map_err(nix_io)?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<FileStat> {
    nix::sys::stat::fstat(fd.as_raw_fd()).map_err(nix_io)
}

pub(crate) fn kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

/// Reopens an `O_PATH` descriptor with real access `flags`, through its `/proc/self/fd` magic
/// link: the same inode, whatever its name now points to.
pub(crate) fn reopen(fd: BorrowedFd<'_>, flags: OFlag) -> io::Result<OwnedFd> {
    let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let c = CString::new(path).expect("no NUL in a number");
    let raw =
        nix::fcntl::open(c.as_c_str(), flags | OFlag::O_CLOEXEC, Mode::empty()).map_err(nix_io)?;
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Opens an `O_PATH` directory descriptor for reading its entries.
pub(crate) fn open_dir_for_read(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    openat(fd, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)
}

/// The names in a directory, without `.` and `..`, sorted (a stable order for errors and tests).
pub(crate) fn list(dir: BorrowedFd<'_>) -> io::Result<Vec<CString>> {
    // Dir takes ownership of (and closes) the descriptor it reads, so give it its own.
    let own = openat(dir, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
    let mut d = Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(own)).map_err(nix_io)?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let name = entry.map_err(nix_io)?.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

impl Walk {
    /// Copies the contents of directory `src` into directory `dst` (both readable dir fds).
    pub(crate) fn contents(
        &mut self,
        src: BorrowedFd<'_>,
        dst: BorrowedFd<'_>,
    ) -> Result<(), CpError> {
        let names = list(src).map_err(|e| io_err("read directory", &self.src, e))?;
        for name in names {
            let os = OsStr::from_bytes(name.as_bytes()).to_owned();
            self.src.push(&os);
            self.dst.push(&os);
            let res = openat(src, &name, OFlag::O_PATH | OFlag::O_NOFOLLOW)
                .map_err(|e| io_err("open", &self.src, e))
                .and_then(|fd| self.entry(fd.as_fd(), dst, &name));
            self.src.pop();
            self.dst.pop();
            res?;
        }
        Ok(())
    }

    /// Copies the entry open as `src` (an `O_PATH` fd; a symlink is copied as a symlink) to the
    /// name `name` in directory `dst_dir`, replacing a non-directory already there and merging
    /// into a directory already there.
    pub(crate) fn entry(
        &mut self,
        src: BorrowedFd<'_>,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(), CpError> {
        let st = fstat(src).map_err(|e| io_err("stat", &self.src, e))?;
        let k = kind(&st);
        if k == SFlag::S_IFDIR {
            self.dir(src, &st, dst_dir, name)
        } else if k == SFlag::S_IFREG {
            self.file(src, &st, dst_dir, name)
        } else if k == SFlag::S_IFLNK {
            self.symlink(src, &st, dst_dir, name)
        } else {
            tracing::warn!(path = %self.src.display(), "skipping: not a file, directory or symlink");
            Ok(())
        }
    }

    fn dir(
        &mut self,
        src: BorrowedFd<'_>,
        st: &FileStat,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(), CpError> {
        let reader = open_dir_for_read(src).map_err(|e| io_err("open directory", &self.src, e))?;
        let dst = self.make_dir(dst_dir, name)?;
        self.contents(reader.as_fd(), dst.as_fd())?;
        // Last, so that writing the entries does not move the mtime and a read-only mode does not
        // lock us out of our own copy.
        self.set_meta(dst.as_fd(), st, st.st_mode & 0o7777)
    }

    /// The directory `name` in `parent`, made if missing, replacing a non-directory.
    fn make_dir(&self, parent: BorrowedFd<'_>, name: &CStr) -> Result<OwnedFd, CpError> {
        let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
        match nix::sys::stat::fstatat(Some(parent.as_raw_fd()), name, nofollow) {
            Ok(st) if kind(&st) == SFlag::S_IFDIR => {}
            Ok(_) => {
                // A file, symlink or other where a directory goes: replace it, as tar does.
                nix::unistd::unlinkat(
                    Some(parent.as_raw_fd()),
                    name,
                    nix::unistd::UnlinkatFlags::NoRemoveDir,
                )
                .map_err(|e| io_err("replace", &self.dst, nix_io(e)))?;
                self.mkdir(parent, name)?;
            }
            Err(nix::Error::ENOENT) => self.mkdir(parent, name)?,
            Err(e) => return Err(io_err("stat", &self.dst, nix_io(e))),
        }
        // Whatever is at `name` now (the container may have swapped it), only a real directory
        // opens: a symlink fails with ELOOP, anything else with ENOTDIR.
        openat(parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW)
            .map_err(|e| io_err("open directory", &self.dst, e))
    }

    fn mkdir(&self, parent: BorrowedFd<'_>, name: &CStr) -> Result<(), CpError> {
        match nix::sys::stat::mkdirat(
            Some(parent.as_raw_fd()),
            name,
            Mode::from_bits_truncate(0o700),
        ) {
            Ok(()) | Err(nix::Error::EEXIST) => Ok(()),
            Err(e) => Err(io_err("create directory", &self.dst, nix_io(e))),
        }
    }

    fn file(
        &mut self,
        src: BorrowedFd<'_>,
        st: &FileStat,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(), CpError> {
        let reader = reopen(src, OFlag::O_RDONLY | OFlag::O_NOCTTY)
            .map_err(|e| io_err("open", &self.src, e))?;
        let (tmp, fd) = self.temp_file(dst_dir)?;
        let res = (|| {
            let mut out = File::from(fd);
            io::copy(&mut File::from(reader), &mut out)
                .map_err(|e| io_err("copy", &self.src, e))?;
            let mut mode = st.st_mode & 0o7777;
            if self.policy.strip_setid {
                mode &= !(libc::S_ISUID | libc::S_ISGID);
            }
            self.set_meta(out.as_fd(), st, mode)?;
            self.rename(dst_dir, &tmp, name)
        })();
        if res.is_err() {
            let _ = nix::unistd::unlinkat(
                Some(dst_dir.as_raw_fd()),
                tmp.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        res
    }

    fn symlink(
        &mut self,
        src: BorrowedFd<'_>,
        st: &FileStat,
        dst_dir: BorrowedFd<'_>,
        name: &CStr,
    ) -> Result<(), CpError> {
        let target = read_link(src).map_err(|e| io_err("read symlink", &self.src, e))?;
        let mut res = Err(io::Error::from_raw_os_error(libc::EEXIST));
        let mut tmp = CString::default();
        for _ in 0..100 {
            tmp = temp_name();
            res = nix::unistd::symlinkat(
                target.as_c_str(),
                Some(dst_dir.as_raw_fd()),
                tmp.as_c_str(),
            )
            .map_err(nix_io);
            if !matches!(&res, Err(e) if e.raw_os_error() == Some(libc::EEXIST)) {
                break;
            }
        }
        res.map_err(|e| io_err("create symlink", &self.dst, e))?;
        let res = (|| {
            let nofollow = AtFlags::AT_SYMLINK_NOFOLLOW;
            if let Some((uid, gid)) = self.policy.owner {
                nix::unistd::fchownat(
                    Some(dst_dir.as_raw_fd()),
                    tmp.as_c_str(),
                    Some(Uid::from_raw(uid)),
                    Some(Gid::from_raw(gid)),
                    nofollow,
                )
                .map_err(|e| io_err("chown", &self.dst, nix_io(e)))?;
            }
            let (atime, mtime) = times(st);
            nix::sys::stat::utimensat(
                Some(dst_dir.as_raw_fd()),
                tmp.as_c_str(),
                &atime,
                &mtime,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| io_err("set times", &self.dst, nix_io(e)))?;
            self.rename(dst_dir, &tmp, name)
        })();
        if res.is_err() {
            let _ = nix::unistd::unlinkat(
                Some(dst_dir.as_raw_fd()),
                tmp.as_c_str(),
                nix::unistd::UnlinkatFlags::NoRemoveDir,
            );
        }
        res
    }

    /// A new empty file under a temporary name in `dir`: `O_EXCL` never opens anything that was
    /// already there, symlink or not.
    fn temp_file(&self, dir: BorrowedFd<'_>) -> Result<(CString, OwnedFd), CpError> {
        for _ in 0..100 {
            let tmp = temp_name();
            let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
            match openat(dir, &tmp, flags) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => continue,
                Err(e) => return Err(io_err("create", &self.dst, e)),
            }
        }
        Err(io_err("create", &self.dst, io::Error::from_raw_os_error(libc::EEXIST)))
    }

    /// Moves the finished temporary entry over `name` (replacing a non-directory).
    fn rename(&self, dir: BorrowedFd<'_>, tmp: &CStr, name: &CStr) -> Result<(), CpError> {
        let d = Some(dir.as_raw_fd());
        nix::fcntl::renameat(d, tmp, d, name).map_err(|e| match e {
            nix::Error::EISDIR | nix::Error::ENOTEMPTY | nix::Error::EEXIST => {
                CpError::OverwriteDir { path: self.dst.clone() }
            }
            e => io_err("rename into place", &self.dst, nix_io(e)),
        })
    }

    /// Owner (if the policy says), then mode (chown clears setuid bits, so after it), then times.
    fn set_meta(&self, fd: BorrowedFd<'_>, st: &FileStat, mode: u32) -> Result<(), CpError> {
        if let Some((uid, gid)) = self.policy.owner {
            nix::unistd::fchown(fd.as_raw_fd(), Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| io_err("chown", &self.dst, nix_io(e)))?;
        }
        nix::sys::stat::fchmod(fd.as_raw_fd(), Mode::from_bits_truncate(mode))
            .map_err(|e| io_err("chmod", &self.dst, nix_io(e)))?;
        let (atime, mtime) = times(st);
        nix::sys::stat::futimens(fd.as_raw_fd(), &atime, &mtime)
            .map_err(|e| io_err("set times", &self.dst, nix_io(e)))
    }
}

fn times(st: &FileStat) -> (TimeSpec, TimeSpec) {
    (TimeSpec::new(st.st_atime, st.st_atime_nsec), TimeSpec::new(st.st_mtime, st.st_mtime_nsec))
}

/// The target of the symlink open as `fd` (`O_PATH | O_NOFOLLOW`): readlinkat with an empty
/// name reads the link the descriptor refers to.
fn read_link(fd: BorrowedFd<'_>) -> io::Result<CString> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: valid fd, empty C string, buffer of the given length.
    let n = unsafe {
        libc::readlinkat(fd.as_raw_fd(), c"".as_ptr(), buf.as_mut_ptr().cast(), buf.len())
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    CString::new(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))
}

/// `.devenv-cp-<pid>-<n>`: short (names near NAME_MAX must still fit), unlikely to be taken, and
/// `O_EXCL` copes if it is.
fn temp_name() -> CString {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    CString::new(format!(".devenv-cp-{}-{n}", std::process::id())).expect("no NUL")
}
