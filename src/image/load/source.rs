//! The files of an image layout, wherever they are: a directory read in place, or an archive
//! (tar, maybe compressed) streamed once, its blobs into the store and its small metadata files
//! into memory. Paths named by the layout's JSON never reach outside it.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::image::unpack::Compression;
use crate::image::{Digest, ImageError, Result, Store};

/// Layout files that are read into memory rather than stored as blobs.
const META_FILES: [&str; 4] = ["index.json", "manifest.json", "oci-layout", "repositories"];
const MAX_META: u64 = 16 << 20;

/// Where the files of a layout come from: a directory read in place, or an archive whose files
/// were streamed into the store (blobs) or memory (metadata) in one pass.
pub(super) enum Source {
    Dir(PathBuf),
    Archive {
        meta: HashMap<String, Vec<u8>>,
        files: HashMap<String, Digest>,
        /// Symlinks and hard links in the archive (docker save links duplicate layers).
        links: HashMap<String, String>,
    },
}

impl Source {
    pub(super) fn archive(store: &Store, path: &Path) -> Result<Source> {
        let unknown = |reason: String| ImageError::UnknownFormat { path: path.into(), reason };
        let file = File::open(path).map_err(|e| ImageError::io("cannot open", path, e))?;
        let (_, reader) = Compression::decompress(BufReader::with_capacity(256 << 10, file))
            .map_err(|e| ImageError::io("cannot read", path, e))?;
        let mut archive = tar::Archive::new(reader);
        let (mut meta, mut files, mut links) = (HashMap::new(), HashMap::new(), HashMap::new());
        let entries = archive.entries().map_err(|e| unknown(format!("not a tar archive: {e}")))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| unknown(format!("not a valid tar archive: {e}")))?;
            let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalize(&raw) else { continue };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry.link_name_bytes().unwrap_or_default();
                    let target = String::from_utf8_lossy(&target).into_owned();
                    let target = if entry.header().entry_type() == tar::EntryType::Symlink {
                        let dir = name.rsplit_once('/').map_or("", |(d, _)| d);
                        format!("{dir}/{target}")
                    } else {
                        target
                    };
                    if let Some(target) = normalize(&target) {
                        links.insert(name, target);
                    }
                    continue;
                }
                _ => continue,
            }
            let base = name.rsplit('/').next().unwrap_or("");
            if META_FILES.contains(&name.as_str()) {
                let mut bytes = Vec::new();
                (&mut entry)
                    .take(MAX_META)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ImageError::io("cannot read", path, e))?;
                meta.insert(name, bytes);
            } else if let Some(hex) = name.strip_prefix("blobs/sha256/") {
                // Named by content: verified against the name while it streams in.
                let digest = store.put_blob(Some(&Digest::from_hex(hex)?), &mut entry)?;
                files.insert(name, digest);
            } else if name.contains('/') && (base == "VERSION" || base == "json") {
                // Legacy docker save metadata of each layer; the config has all of it.
            } else {
                let digest = store.put_blob(None, &mut entry)?;
                files.insert(name, digest);
            }
        }
        Ok(Source::Archive { meta, files, links })
    }

    pub(super) fn has(&self, name: &str) -> bool {
        match self {
            Source::Dir(dir) => dir.join(name).is_file(),
            Source::Archive { meta, .. } => meta.contains_key(name),
        }
    }

    /// A small file of the layout (JSON), by its path in the layout.
    pub(super) fn read(&self, store: &Store, rel: &str) -> Result<Vec<u8>> {
        match self {
            Source::Dir(dir) => {
                let path = dir_path(dir, rel)?;
                let file =
                    File::open(&path).map_err(|e| ImageError::io("cannot open", &path, e))?;
                let mut bytes = Vec::new();
                file.take(MAX_META)
                    .read_to_end(&mut bytes)
                    .map_err(|e| ImageError::io("cannot read", &path, e))?;
                Ok(bytes)
            }
            Source::Archive { meta, .. } => match meta.get(rel) {
                Some(bytes) => Ok(bytes.clone()),
                None => store.read_blob(&self.blob(store, rel, None)?),
            },
        }
    }

    /// Makes sure the file `rel` of the layout is a blob in the store, verified against
    /// `expected` when given, and returns its digest.
    pub(super) fn blob(
        &self,
        store: &Store,
        rel: &str,
        expected: Option<&Digest>,
    ) -> Result<Digest> {
        match self {
            Source::Dir(dir) => {
                let path = dir_path(dir, rel)?;
                if let Some(d) = expected {
                    if store.has_blob(d) {
                        return Ok(d.clone());
                    }
                }
                let file =
                    File::open(&path).map_err(|e| ImageError::io("cannot open", &path, e))?;
                store.put_blob(expected, BufReader::with_capacity(256 << 10, file)).map_err(|e| {
                    match e {
                        ImageError::DigestMismatch { expected, actual, .. } => {
                            ImageError::DigestMismatch {
                                what: path.display().to_string(),
                                expected,
                                actual,
                            }
                        }
                        other => other,
                    }
                })
            }
            Source::Archive { files, links, .. } => {
                let mut name = normalize(rel).unwrap_or_default();
                for _ in 0..16 {
                    match links.get(&name) {
                        Some(target) => name = target.clone(),
                        None => break,
                    }
                }
                let digest = files.get(&name).ok_or_else(|| {
                    ImageError::invalid("image archive", format!("it has no file {rel}"))
                })?;
                match expected {
                    Some(e) if e != digest => Err(ImageError::DigestMismatch {
                        what: rel.to_string(),
                        expected: e.clone(),
                        actual: digest.clone(),
                    }),
                    _ => Ok(digest.clone()),
                }
            }
        }
    }
}

/// `a/./b/../c` -> `a/c`; `None` if it climbs above the top.
pub(super) fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// A path named by the layout's JSON, kept inside the layout directory.
fn dir_path(dir: &Path, rel: &str) -> Result<PathBuf> {
    match normalize(rel) {
        Some(rel) => Ok(dir.join(rel)),
        None => Err(ImageError::invalid(
            format!("image layout {}", dir.display()),
            format!("the path \"{rel}\" is outside the layout"),
        )),
    }
}
