//! Safe layer unpacking: a layer tar (gzip, zstd or plain, sniffed from its first bytes) becomes a
//! directory tree that overlayfs can use as a lower layer, and nothing is ever written outside
//! that directory, whatever the archive says.
//!
//! # Safety discipline
//!
//! Every entry is written relative to a directory file descriptor, never through a path string:
//!
//! - Entry paths are cleaned lexically first: a leading `/` is stripped (absolute paths are
//!   relative to the layer root, as in Docker), `.` and empty components are dropped, and a `..`
//!   component makes the entry (and so the layer) fail.
//! - The parent directory of an entry is opened with `openat2(RESOLVE_BENEATH |
//!   RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)` relative to the layer root.
//!   A parent that is missing is created one component at a time with `mkdirat` + `openat(O_NOFOLLOW
//!   | O_DIRECTORY)`; the same walk is used when the kernel has no `openat2` (before 5.6, or a
//!   seccomp filter returning ENOSYS/EPERM). Either way no symlink is ever followed on the way to
//!   an entry, so `evil -> /etc` followed by `evil/passwd` fails instead of writing `/etc/passwd`.
//!   `RESOLVE_IN_ROOT` (follow symlinks, scoped to the root) was not chosen: each layer is unpacked
//!   on its own, so a symlink's target usually lives in another layer, and following it inside
//!   this layer's directory would give a tree that differs from the merged view anyway. A layer
//!   built by a real tool never writes through a symlink, so refusing costs nothing.
//! - The last component is created with `*at` calls that do not follow it (`O_CREAT|O_EXCL|
//!   O_NOFOLLOW`, `mkdirat`, `symlinkat`, `mknodat`, `linkat` without `AT_SYMLINK_FOLLOW`), after
//!   removing whatever the same layer had there (tar semantics: the last entry wins).
//! - Hard link targets are resolved with the same rules, so a hard link can only point at a file
//!   of this layer: not outside it, and not through a symlink.
//! - Symlinks are created as the archive says and never followed: their targets are the
//!   container's business.
//! - Extended attributes from the archive are limited to `user.*` and `security.capability`, so an
//!   archive cannot plant overlayfs's own `trusted.overlay.*` attributes (redirects, opaque dirs)
//!   except through the OCI whiteout files below.
//!
//! OCI whiteouts become overlayfs whiteouts: `.wh.NAME` is a 0/0 character device `NAME`, and
//! `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory. Ownership, modes (with setuid
//! bits, applied after chown), mtimes (directories last, once their children are written), device
//! nodes and fifos are kept.

use std::cell::Cell;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{
    self as rfs, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid,
    XattrFlags,
};
use rustix::io::Errno;
use tar::EntryType;

use super::digest::HashingReader;
use super::{Digest, ImageError, Result};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const COPY_BUFFER: usize = 256 * 1024;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From the first bytes of a stream (gzip `1f 8b`, zstd `28 b5 2f fd`, else a plain tar).
    pub fn sniff(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if prefix.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// Reads the first bytes of `reader` to sniff its compression, and returns a reader that
    /// yields the decompressed stream from the start.
    pub fn decompress<'a>(reader: impl Read + 'a) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
        let mut reader = reader;
        let mut prefix = Vec::with_capacity(4);
        (&mut reader).take(4).read_to_end(&mut prefix)?;
        let compression = Compression::sniff(&prefix);
        let whole = io::Cursor::new(prefix).chain(reader);
        let decoded: Box<dyn Read + 'a> = match compression {
            Compression::None => Box::new(whole),
            Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(whole)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(whole)?),
        };
        Ok((compression, decoded))
    }
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    /// SHA-256 of the uncompressed tar stream: the layer's `diff_id`.
    pub diff_id: Digest,
    pub compression: Compression,
    /// Bytes of regular file content written.
    pub size: u64,
    pub entries: u64,
}

/// Unpacks a layer stream into `dest`, an existing (normally empty) directory. See the module
/// documentation for what is refused and how whiteouts are written. On error, `dest` holds a
/// partial tree that the caller must discard.
pub fn unpack_layer(reader: impl Read, dest: &Path) -> Result<UnpackStats> {
    unpack_with(reader, dest, OPENAT2_WORKS.load(Ordering::Relaxed))
}

fn unpack_with(reader: impl Read, dest: &Path, openat2: bool) -> Result<UnpackStats> {
    let io_err = |source| ImageError::io("cannot read layer stream for", dest, source);
    let (compression, decoded) = Compression::decompress(reader).map_err(io_err)?;
    let mut hashing = HashingReader::new(decoded);
    let root = rfs::open(dest, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ImageError::io("cannot open layer directory", dest, e.into()))?;
    let mut unpacker = Unpacker::new(root, openat2);
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for entry in archive.entries().map_err(io_err)? {
            unpacker.entry(entry.map_err(io_err)?)?;
        }
    }
    unpacker.finish();
    // The tar reader stops at the end-of-archive marker; the diff_id covers the padding after it.
    let (diff_id, _) = hashing.finish().map_err(io_err)?;
    tracing::debug!(dest = %dest.display(), %diff_id, entries = unpacker.entries, "unpacked layer");
    Ok(UnpackStats { diff_id, compression, size: unpacker.size, entries: unpacker.entries })
}

/// Set to false once `openat2` turns out to be unavailable, so the fallback walk is used directly.
static OPENAT2_WORKS: AtomicBool = AtomicBool::new(true);

/// Owner, mode, time and extended attributes of an entry, PAX records applied.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    /// Whether to try `openat2` (false once it failed with ENOSYS/EPERM, or in tests of the
    /// fallback).
    openat2: Cell<bool>,
    /// The last parent directory opened, by cleaned path: tar entries come grouped by directory,
    /// so this saves most lookups.
    cache: Option<(Vec<u8>, OwnedFd)>,
    /// Directories whose mtime is set at the end, after their children are written.
    dir_times: Vec<(Vec<u8>, i64)>,
    buf: Vec<u8>,
    size: u64,
    entries: u64,
}

fn unsafe_entry(entry: &str, reason: impl Into<String>) -> ImageError {
    ImageError::UnsafeEntry { entry: entry.to_string(), reason: reason.into() }
}

/// Splits an entry path into clean components: no leading `/`, no `.` or empty components; a `..`
/// component is refused rather than resolved, since a real layer never needs one.
fn clean(raw: &[u8], entry: &str) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(unsafe_entry(entry, "the path has a \"..\" component")),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
        let h = entry.header();
        let bad = |what: &str, e: io::Error| unsafe_entry(name, format!("bad {what} field: {e}"));
        let mut meta = Meta {
            uid: h.uid().map_err(|e| bad("uid", e))? as u32,
            gid: h.gid().map_err(|e| bad("gid", e))? as u32,
            mode: h.mode().map_err(|e| bad("mode", e))? & 0o7777,
            mtime: h.mtime().map_err(|e| bad("mtime", e))? as i64,
            xattrs: Vec::new(),
        };
        let Some(pax) = entry.pax_extensions().map_err(|e| bad("PAX", e))? else {
            return Ok(meta);
        };
        for ext in pax {
            let ext = ext.map_err(|e| bad("PAX", e))?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let number =
                || std::str::from_utf8(value).ok().and_then(|v| v.split('.').next()?.parse().ok());
            match key {
                "uid" => meta.uid = number().unwrap_or(meta.uid as i64) as u32,
                "gid" => meta.gid = number().unwrap_or(meta.gid as i64) as u32,
                "mtime" => meta.mtime = number().unwrap_or(meta.mtime),
                _ => {
                    if let Some(attr) = key.strip_prefix("SCHILY.xattr.") {
                        if attr.starts_with("user.") || attr == "security.capability" {
                            meta.xattrs.push((attr.to_string(), value.to_vec()));
                        } else {
                            tracing::debug!(entry = name, attr, "dropping extended attribute");
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// chown, then chmod (chown clears setuid bits), then xattrs, on an open file or directory.
    fn apply(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        rfs::fchown(
            fd,
            Some(Uid::from_raw_unchecked(self.uid)),
            Some(Gid::from_raw_unchecked(self.gid)),
        )?;
        rfs::fchmod(fd, Mode::from_raw_mode(self.mode))?;
        for (name, value) in &self.xattrs {
            match rfs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
                Ok(()) => {}
                // A filesystem without xattrs loses them, as with `tar --xattrs` on such a disk.
                Err(Errno::NOTSUP) => tracing::debug!(name, "filesystem does not support xattr"),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

impl Unpacker {
    fn new(root: OwnedFd, openat2: bool) -> Self {
        Unpacker {
            root,
            openat2: Cell::new(openat2),
            cache: None,
            dir_times: Vec::new(),
            buf: vec![0; COPY_BUFFER],
            size: 0,
            entries: 0,
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean(&raw, &name)?;
        let kind = entry.header().entry_type();
        let Some((last, parent)) = comps.split_last() else {
            // The layer root itself ("./"): its directory is ours, not the archive's.
            return Ok(());
        };
        self.entries += 1;
        // This entry may replace the cached parent directory or one of its ancestors: drop the
        // cached fd so later entries do not land in a directory that is no longer in the tree.
        let joined = comps.join(&b'/');
        if let Some((cached, _)) = &self.cache {
            if cached.starts_with(&joined)
                && (cached.len() == joined.len() || cached[joined.len()] == b'/')
            {
                self.cache = None;
            }
        }
        let meta = Meta::read(&mut entry, &name)?;
        let fail = |source: io::Error| ImageError::Unpack { entry: name.clone(), source };

        if last.starts_with(WHITEOUT_PREFIX) {
            let dir = self.parent(parent, &name)?;
            if last.as_slice() == OPAQUE_MARKER {
                rfs::fsetxattr(dir, OVERLAY_OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(|e| fail(e.into()))?;
            } else if last.starts_with(b".wh..wh.") {
                // Other `.wh..wh.` names are aufs bookkeeping (hard link dirs): not content.
                tracing::debug!(entry = name, "skipping aufs metadata");
            } else {
                let target = &last[WHITEOUT_PREFIX.len()..];
                if target.is_empty() || target == b"." || target == b".." {
                    return Err(unsafe_entry(&name, "a whiteout must name a file"));
                }
                remove_at(dir, target).map_err(fail)?;
                rfs::mknodat(dir, os(target), FileType::CharacterDevice, Mode::empty(), 0)
                    .map_err(|e| fail(e.into()))?;
            }
            return Ok(());
        }

        match kind {
            EntryType::Directory => {
                let dir = self.parent(parent, &name)?;
                let existing = rfs::statat(dir, os(last), AtFlags::SYMLINK_NOFOLLOW);
                match existing {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                    Ok(_) => {
                        remove_at(dir, last).map_err(fail)?;
                        rfs::mkdirat(dir, os(last), Mode::from_raw_mode(0o700))
                            .map_err(|e| fail(e.into()))?;
                    }
                    Err(Errno::NOENT) => rfs::mkdirat(dir, os(last), Mode::from_raw_mode(0o700))
                        .map_err(|e| fail(e.into()))?,
                    Err(e) => return Err(fail(e.into())),
                }
                let fd = rfs::openat(dir, os(last), dir_flags(), Mode::empty())
                    .map_err(|e| fail(e.into()))?;
                meta.apply(fd.as_fd()).map_err(fail)?;
                self.dir_times.push((joined, meta.mtime));
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let dir = self.parent(parent, &name)?;
                remove_at(dir, last).map_err(fail)?;
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rfs::openat(dir, os(last), flags, Mode::from_raw_mode(0o600))
                    .map_err(|e| fail(e.into()))?;
                let mut file = File::from(fd);
                let written = copy(&mut entry, &mut file, &mut self.buf).map_err(fail)?;
                self.size += written;
                meta.apply(file.as_fd()).map_err(fail)?;
                rfs::futimens(&file, &timestamps(meta.mtime)).map_err(|e| fail(e.into()))?;
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "symlink without a target"))?
                    .into_owned();
                let dir = self.parent(parent, &name)?;
                remove_at(dir, last).map_err(fail)?;
                rfs::symlinkat(os(&target), dir, os(last)).map_err(|e| fail(e.into()))?;
                set_owner_time_at(dir, last, &meta).map_err(fail)?;
            }
            EntryType::Link => {
                let raw_target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unsafe_entry(&name, "hard link without a target"))?
                    .into_owned();
                let target = clean(&raw_target, &name)?;
                let Some((tlast, tparent)) = target.split_last() else {
                    return Err(unsafe_entry(&name, "hard link to the layer root"));
                };
                if target == comps {
                    return Ok(());
                }
                let not_here = |e: Errno| {
                    let target = String::from_utf8_lossy(&raw_target);
                    unsafe_entry(
                        &name,
                        format!("hard link target \"{target}\" is not in this layer ({e})"),
                    )
                };
                let tdir = self.open_dir(tparent, false).map_err(|e| match e {
                    Errno::NOENT => not_here(e),
                    e => self.resolve_error(e, &name, "the hard link target's directory"),
                })?;
                rfs::statat(&tdir, os(tlast), AtFlags::SYMLINK_NOFOLLOW).map_err(not_here)?;
                let dir = self.parent(parent, &name)?;
                remove_at(dir, last).map_err(fail)?;
                rfs::linkat(&tdir, os(tlast), dir, os(last), AtFlags::empty())
                    .map_err(|e| fail(e.into()))?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let file_type = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let h = entry.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let dir = self.parent(parent, &name)?;
                remove_at(dir, last).map_err(fail)?;
                rfs::mknodat(
                    dir,
                    os(last),
                    file_type,
                    Mode::from_raw_mode(meta.mode),
                    rfs::makedev(major, minor),
                )
                .map_err(|e| fail(e.into()))?;
                set_owner_time_at(dir, last, &meta).map_err(fail)?;
                // mknod applies the umask; chown may clear setuid. Set the mode last.
                rfs::chmodat(dir, os(last), Mode::from_raw_mode(meta.mode), AtFlags::empty())
                    .map_err(|e| fail(e.into()))?;
            }
            other => {
                tracing::debug!(entry = name, kind = ?other, "skipping unsupported tar entry type");
                self.entries -= 1;
            }
        }
        Ok(())
    }

    /// The directory that holds an entry, created if missing, never through a symlink.
    fn parent(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<BorrowedFd<'_>> {
        if comps.is_empty() {
            return Ok(self.root.as_fd());
        }
        let joined = comps.join(&b'/');
        let cached = matches!(&self.cache, Some((p, _)) if *p == joined);
        if !cached {
            let fd = self
                .open_dir(comps, true)
                .map_err(|e| self.resolve_error(e, entry, "its directory"))?;
            self.cache = Some((joined, fd));
        }
        match &self.cache {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => unreachable!("the cache was just filled"),
        }
    }

    fn resolve_error(&self, e: Errno, entry: &str, what: &str) -> ImageError {
        match e {
            Errno::LOOP => unsafe_entry(entry, format!("{what} is reached through a symlink")),
            Errno::XDEV => unsafe_entry(entry, format!("{what} is outside the layer")),
            Errno::NOTDIR => unsafe_entry(entry, format!("{what} is not a directory")),
            e => ImageError::Unpack { entry: entry.to_string(), source: e.into() },
        }
    }

    /// Opens the directory `comps` under the root without following any symlink, with `openat2`
    /// where the kernel has it; creates missing components when `create`.
    fn open_dir(&self, comps: &[Vec<u8>], create: bool) -> rustix::io::Result<OwnedFd> {
        if comps.is_empty() {
            return rfs::openat(&self.root, ".", dir_flags(), Mode::empty());
        }
        if self.openat2.get() {
            let resolve = ResolveFlags::BENEATH
                | ResolveFlags::NO_SYMLINKS
                | ResolveFlags::NO_MAGICLINKS
                | ResolveFlags::NO_XDEV;
            let path = comps.join(&b'/');
            for _ in 0..16 {
                match rfs::openat2(&self.root, os(&path), dir_flags(), Mode::empty(), resolve) {
                    // EAGAIN: a concurrent rename somewhere on the system; the kernel asks to retry.
                    Err(Errno::AGAIN) => continue,
                    Err(Errno::NOENT) if create => break,
                    Err(Errno::NOSYS | Errno::PERM) => {
                        tracing::debug!(
                            "openat2 unavailable; resolving paths one component at a time"
                        );
                        OPENAT2_WORKS.store(false, Ordering::Relaxed);
                        self.openat2.set(false);
                        break;
                    }
                    other => return other,
                }
            }
        }
        walk(self.root.as_fd(), comps, create)
    }

    /// Sets the deferred directory mtimes, deepest first so a child's update does not touch its
    /// parent after the parent was set. A directory replaced later in the archive is skipped.
    fn finish(&mut self) {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dir_times);
        for (path, mtime) in dirs.iter().rev() {
            let comps: Vec<Vec<u8>> = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
            match self.open_dir(&comps, false) {
                Ok(fd) => {
                    if let Err(e) = rfs::futimens(&fd, &timestamps(*mtime)) {
                        tracing::debug!(dir = %String::from_utf8_lossy(path), %e, "cannot set mtime");
                    }
                }
                Err(e) => {
                    tracing::debug!(dir = %String::from_utf8_lossy(path), %e, "directory gone")
                }
            }
        }
    }
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

/// The fallback resolution: one component at a time, `O_NOFOLLOW | O_DIRECTORY` at each step, so
/// a symlink anywhere on the way fails with ELOOP (or ENOTDIR) instead of being followed.
fn walk(root: BorrowedFd<'_>, comps: &[Vec<u8>], create: bool) -> rustix::io::Result<OwnedFd> {
    let mut cur = rfs::openat(root, ".", dir_flags(), Mode::empty())?;
    for c in comps {
        let next = match rfs::openat(&cur, os(c), dir_flags(), Mode::empty()) {
            Err(Errno::NOENT) if create => {
                match rfs::mkdirat(&cur, os(c), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(e),
                }
                rfs::openat(&cur, os(c), dir_flags(), Mode::empty())?
            }
            other => other?,
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` (a directory with all its content), without following
/// symlinks; nothing there is fine.
fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    match rfs::unlinkat(dir, os(name), AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) => {
            let sub = rfs::openat(dir, os(name), dir_flags(), Mode::empty())?;
            let entries: Vec<Vec<u8>> = rfs::Dir::read_from(&sub)?
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_bytes().to_vec())
                .filter(|n| n != b"." && n != b"..")
                .collect();
            for child in entries {
                remove_at(sub.as_fd(), &child)?;
            }
            rfs::unlinkat(dir, os(name), AtFlags::REMOVEDIR)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// Owner and mtime of something that must not be opened (a symlink, a device node).
fn set_owner_time_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> io::Result<()> {
    rfs::chownat(
        dir,
        os(name),
        Some(Uid::from_raw_unchecked(meta.uid)),
        Some(Gid::from_raw_unchecked(meta.gid)),
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    rfs::utimensat(dir, os(name), &timestamps(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

fn copy(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    let mut total = 0;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths() {
        let c = |s: &str| {
            clean(s.as_bytes(), s).map(|v| {
                v.iter().map(|c| String::from_utf8(c.clone()).unwrap()).collect::<Vec<_>>()
            })
        };
        assert_eq!(c("/etc//passwd").unwrap(), ["etc", "passwd"]);
        assert_eq!(c("./a/./b/").unwrap(), ["a", "b"]);
        assert!(c("./").unwrap().is_empty());
        assert!(c("a/../../b").unwrap_err().to_string().contains(".."));
    }

    /// The fallback walk (kernels without openat2) refuses the same hostile layers as openat2.
    #[test]
    fn hostile_layers_are_refused_with_either_resolver() {
        if !std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false)
        {
            eprintln!("skipping: needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"secret").unwrap();
        let out = outside.to_str().unwrap();
        let cases: &[&[(&str, EntryType, &str)]] = &[
            &[("evil", EntryType::Symlink, out), ("evil/pwned", EntryType::Regular, "")],
            &[("evil", EntryType::Symlink, out), ("evil/a/b/c", EntryType::Regular, "")],
            &[("up", EntryType::Symlink, ".."), ("up/pwned", EntryType::Regular, "")],
            &[("o", EntryType::Symlink, out), ("x", EntryType::Link, "o/secret")],
            &[("w", EntryType::Symlink, out), ("w/.wh.secret", EntryType::Regular, "")],
            &[("a/../../pwned", EntryType::Regular, "")],
        ];
        for (i, case) in cases.iter().enumerate() {
            let mut b = tar::Builder::new(Vec::new());
            for (name, kind, link) in case.iter() {
                let mut h = tar::Header::new_gnu();
                h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
                h.set_entry_type(*kind);
                h.set_size(if *kind == EntryType::Regular { 1 } else { 0 });
                h.set_mode(0o644);
                h.set_cksum();
                let data: &[u8] = if *kind == EntryType::Regular { b"x" } else { b"" };
                b.append(&h, data).unwrap();
            }
            let layer = b.into_inner().unwrap();
            for openat2 in [true, false] {
                let dest = tmp.path().join(format!("l{i}-{openat2}"));
                std::fs::create_dir(&dest).unwrap();
                let err = unpack_with(&layer[..], &dest, openat2).unwrap_err();
                assert!(
                    matches!(err, ImageError::UnsafeEntry { .. }),
                    "case {i} openat2={openat2}: {err}"
                );
            }
        }
        let names: Vec<_> =
            std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret"]);
        assert_eq!(std::fs::read(outside.join("secret")).unwrap(), b"secret");
    }

    #[test]
    fn sniffing() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(Compression::sniff(b"etc/"), Compression::None);
        assert_eq!(Compression::sniff(b""), Compression::None);
    }
}
