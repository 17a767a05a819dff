//! Shared support for integration tests: fixture OCI images built from this host's
//! Debian binaries (`images`), a throwaway local registry (`registry`), and the
//! helpers they and the tests share: hashing, JSON, reading OCI layouts, a
//! deterministic layer writer (`Layer`), and a build-once directory cache that
//! is safe across test processes.

// Every test binary that says `mod support;` compiles all of this, but each one
// uses only part of it.
#![allow(dead_code)]

pub mod env;
pub mod faults;
pub mod images;
pub mod pull_images;
pub mod registry;
pub mod token;
pub mod watch;

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use flate2::write::GzEncoder;
use flate2::Compression;
use sha2::{Digest, Sha256};

/// Fixed mtime of every layer entry (2024-01-01T00:00:00Z), for reproducibility.
pub const LAYER_MTIME: u64 = 1_704_067_200;

/// Whether the test process runs as root (effective uid 0). `/proc/self` is owned
/// by the effective uid, which avoids a libc dependency just for `geteuid`.
pub fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hex sha256 and length of everything `r` yields, streamed (blobs can be large).
pub fn sha256_reader(mut r: impl Read) -> io::Result<(String, u64)> {
    let mut sink = Hashing::new(io::sink());
    io::copy(&mut r, &mut sink)?;
    Ok((hex(&sink.hasher.finalize()), sink.len))
}

/// Hex sha256 and size of a file.
pub fn sha256_file(path: &Path) -> (String, u64) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    sha256_reader(f).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// A writer that hashes and counts what passes through it, so a layer's
/// diff_id and digest come out of the single pass that writes it.
pub struct Hashing<W> {
    pub inner: W,
    pub hasher: Sha256,
    pub len: u64,
}

impl<W> Hashing<W> {
    pub fn new(inner: W) -> Self {
        Hashing { inner, hasher: Sha256::new(), len: 0 }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// One entry of a layer; uid and gid are the same number for all our users.
pub struct Entry {
    pub node: Node,
    pub mode: u32,
    pub owner: u64,
}

pub enum Node {
    Dir,
    Text(String),
    Host(PathBuf),
    Link(String),
}

/// A filesystem layer being assembled, written as a deterministic tar+gzip blob:
/// entries sorted by path (no leading `/`), fixed mtime, explicit owners and
/// modes. Besides the fixture images, tests can build their own layers with it
/// (e.g. whiteouts: `text("etc/.wh.passwd", "")`).
pub struct Layer {
    /// Goes into the image config's history (`created_by`).
    pub comment: String,
    pub entries: BTreeMap<String, Entry>,
}

impl Layer {
    pub fn new(comment: &str) -> Layer {
        Layer { comment: comment.to_string(), entries: BTreeMap::new() }
    }

    /// Adds an entry, creating missing parent directories as root-owned 0755.
    pub fn put(&mut self, path: &str, node: Node, mode: u32, owner: u64) {
        let path = path.trim_matches('/');
        let mut parent = path;
        while let Some((p, _)) = parent.rsplit_once('/') {
            let dir = Entry { node: Node::Dir, mode: 0o755, owner: 0 };
            self.entries.entry(p.to_string()).or_insert(dir);
            parent = p;
        }
        self.entries.insert(path.to_string(), Entry { node, mode, owner });
    }

    pub fn dir(&mut self, path: &str, mode: u32, owner: u64) {
        self.put(path, Node::Dir, mode, owner);
    }

    pub fn text(&mut self, path: &str, content: &str) {
        self.put(path, Node::Text(content.to_string()), 0o644, 0);
    }

    pub fn link(&mut self, path: &str, target: &str) {
        self.put(path, Node::Link(target.to_string()), 0o777, 0);
    }

    /// Copies a host file (following symlinks) with its permission bits.
    pub fn host(&mut self, path: &str, host: &Path) {
        let md = fs::metadata(host).unwrap_or_else(|e| panic!("{}: {e}", host.display()));
        self.put(path, Node::Host(host.to_path_buf()), md.mode() & 0o7777, 0);
    }

    /// Writes the layer as a gzip blob; returns (digest, size, diff_id).
    pub fn write(&self, blobs: &Path) -> (String, u64, String) {
        self.write_as(blobs, Compress::Gzip)
    }

    /// Writes the layer as a blob compressed with `c`; returns (digest, size, diff_id).
    pub fn write_as(&self, blobs: &Path, c: Compress) -> (String, u64, String) {
        let tmp = blobs.join("layer.tmp");
        let file = Hashing::new(File::create(&tmp).expect("create layer file"));
        let (diff_id, out) = match c {
            Compress::Gzip => {
                // Level 1: unoptimised (debug) miniz_oxide makes the default level take
                // twice as long, for blobs only ~25% smaller.
                let gz = GzEncoder::new(file, Compression::fast());
                let (diff_id, gz) = self.write_tar(gz);
                (diff_id, gz.finish().expect("finish gzip"))
            }
            Compress::Zstd => {
                let zst = zstd::Encoder::new(file, 3).expect("zstd encoder");
                let (diff_id, zst) = self.write_tar(zst);
                (diff_id, zst.finish().expect("finish zstd"))
            }
        };
        let digest = hex(&out.hasher.finalize());
        fs::rename(&tmp, blobs.join(&digest)).expect("store layer blob");
        (format!("sha256:{digest}"), out.len, diff_id)
    }

    /// Writes the uncompressed tar into `w`; returns its diff_id and `w`.
    fn write_tar<W: Write>(&self, w: W) -> (String, W) {
        let mut tar = tar::Builder::new(Hashing::new(w));
        for (path, e) in &self.entries {
            let mut h = tar::Header::new_gnu();
            h.set_mode(e.mode);
            h.set_uid(e.owner);
            h.set_gid(e.owner);
            h.set_mtime(LAYER_MTIME);
            h.set_size(0);
            let res = match &e.node {
                Node::Dir => {
                    h.set_entry_type(tar::EntryType::Directory);
                    tar.append_data(&mut h, path, io::empty())
                }
                Node::Text(s) => {
                    h.set_size(s.len() as u64);
                    tar.append_data(&mut h, path, s.as_bytes())
                }
                Node::Host(p) => {
                    let f = File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    h.set_size(f.metadata().expect("stat host file").len());
                    tar.append_data(&mut h, path, f)
                }
                Node::Link(target) => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    tar.append_link(&mut h, path, target)
                }
            };
            res.unwrap_or_else(|err| panic!("tar {path}: {err}"));
        }
        let tar_out = tar.into_inner().expect("finish tar");
        (format!("sha256:{}", hex(&tar_out.hasher.finalize())), tar_out.inner)
    }
}

/// How `Layer::write_as` compresses a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compress {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`
    Zstd,
}

/// Reads and parses a JSON file, panicking with the path on any error.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// Where a blob (`sha256:<hex>`) lives inside an OCI layout.
pub fn blob_path(layout: &Path, digest: &str) -> PathBuf {
    let (algo, hex) = digest.split_once(':').expect("digest is algo:hex");
    layout.join("blobs").join(algo).join(hex)
}

/// Digest of a layout's first (for fixtures: only) manifest, from index.json.
pub fn manifest_digest(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"][0]["digest"].as_str().expect("index.json manifest digest").to_string()
}

/// The layer digests of a layout's manifest, base first.
pub fn layer_digests(layout: &Path) -> Vec<String> {
    let manifest = read_json(&blob_path(layout, &manifest_digest(layout)));
    let layers = manifest["layers"].as_array().expect("manifest layers");
    layers.iter().map(|l| l["digest"].as_str().expect("layer digest").to_string()).collect()
}

/// Returns `dir`, first building it with `build` into a temporary sibling that is
/// then renamed into place. Threads of this process wait for each other; separate
/// processes (nextest runs one per test) may build concurrently, and whoever
/// renames second discards its copy, so readers never see a half-built directory.
pub fn cached_dir(dir: &Path, build: impl FnOnce(&Path)) -> PathBuf {
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<Mutex<()>>>>> = OnceLock::new();
    static SEQ: AtomicU32 = AtomicU32::new(0);
    if dir.is_dir() {
        return dir.to_path_buf();
    }
    let lock = {
        let locks = LOCKS.get_or_init(Default::default);
        let mut locks = locks.lock().unwrap_or_else(PoisonError::into_inner);
        locks.entry(dir.to_path_buf()).or_default().clone()
    };
    let _held = lock.lock().unwrap_or_else(PoisonError::into_inner);
    if dir.is_dir() {
        return dir.to_path_buf();
    }
    let parent = dir.parent().expect("cache dir has a parent");
    fs::create_dir_all(parent).expect("create cache dir");
    remove_stale_builds(parent);
    let name = dir.file_name().expect("cache dir has a name").to_string_lossy();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = RemoveOnDrop(parent.join(format!(".{name}.tmp-{}-{seq}", std::process::id())));
    fs::create_dir(&tmp.0).expect("create build dir");
    build(&tmp.0);
    match fs::rename(&tmp.0, dir) {
        Ok(()) => {}
        Err(_) if dir.is_dir() => {} // another process won; ours is dropped
        Err(e) => panic!("rename {} -> {}: {e}", tmp.0.display(), dir.display()),
    }
    dir.to_path_buf()
}

/// Deletes its directory when dropped, so a panicking build leaves no debris.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes build directories of processes that died mid-build (e.g. SIGKILL).
fn remove_stale_builds(parent: &Path) {
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some((_, rest)) = name.split_once(".tmp-") else { continue };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}
