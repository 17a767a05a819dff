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

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, XattrFlags};
use rustix::io::Errno;
use tar::EntryType;

use super::digest::HashingReader;
use super::{Digest, ImageError, Result};
use beneath::{dir_flags, os, remove_at, Beneath, OPENAT2_WORKS};
use meta::{set_owner_time_at, timestamps, Meta};

mod beneath;
mod meta;

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
    unpack_with(reader, dest, OPENAT2_WORKS.load(std::sync::atomic::Ordering::Relaxed))
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

struct Unpacker {
    root: Beneath,
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

impl Unpacker {
    fn new(root: OwnedFd, openat2: bool) -> Self {
        Unpacker {
            root: Beneath::new(root, openat2),
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
                let tdir = self.root.open_dir(tparent, false).map_err(|e| match e {
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
            return Ok(self.root.fd());
        }
        let joined = comps.join(&b'/');
        let cached = matches!(&self.cache, Some((p, _)) if *p == joined);
        if !cached {
            let fd = self
                .root
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

    /// Sets the deferred directory mtimes, deepest first so a child's update does not touch its
    /// parent after the parent was set. A directory replaced later in the archive is skipped.
    fn finish(&mut self) {
        self.cache = None;
        let dirs = std::mem::take(&mut self.dir_times);
        for (path, mtime) in dirs.iter().rev() {
            let comps: Vec<Vec<u8>> = path.split(|&b| b == b'/').map(<[u8]>::to_vec).collect();
            match self.root.open_dir(&comps, false) {
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
mod tests;
