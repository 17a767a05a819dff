//! Metadata of a layer entry (owner, mode, mtime, extended attributes, PAX records applied) and
//! applying it in the order that keeps setuid bits: chown, then chmod.

use std::io::{self, Read};
use std::os::fd::BorrowedFd;

use rustix::fs::{self as rfs, AtFlags, Gid, Mode, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

use super::beneath::os;
use super::unsafe_entry;
use crate::image::Result;

/// Owner, mode, time and extended attributes of an entry, PAX records applied.
pub(super) struct Meta {
    pub(super) uid: u32,
    pub(super) gid: u32,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) xattrs: Vec<(String, Vec<u8>)>,
}

pub(super) fn timestamps(mtime: i64) -> Timestamps {
    let t = Timespec { tv_sec: mtime, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

impl Meta {
    pub(super) fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &str) -> Result<Meta> {
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
    pub(super) fn apply(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
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

/// Owner and mtime of something that must not be opened (a symlink, a device node).
pub(super) fn set_owner_time_at(dir: BorrowedFd<'_>, name: &[u8], meta: &Meta) -> io::Result<()> {
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
