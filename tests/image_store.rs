//! The image store end to end, on real files: images built here (OCI layout, OCI archive, docker
//! save), loaded, resolved and checked on disk; hostile layers that try to write outside the
//! store; digest mismatches; interrupted unpacks; concurrent writers.
//!
//! Unpacking keeps owners and makes device nodes (overlay whiteouts), so these tests need root;
//! without it they say so and pass without checking.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use devenv::image::{self, Digest, ImageError, Reference, Store};
use serde_json::json;

const MTIME: u64 = 1_600_000_000;

fn is_root() -> bool {
    let root = fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if !root {
        eprintln!("skipping: unpacking layers needs root (chown, mknod, trusted xattrs)");
    }
    root
}

// ---------------------------------------------------------------------------------------------
// Building layers and images

enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32),
    Owned(&'a str, &'a [u8], u32, u64, u64),
    Symlink(&'a str, &'a str),
    Hard(&'a str, &'a str),
    Fifo(&'a str),
    Char(&'a str, u32, u32),
}

/// A tar with exactly these names: written into the raw header fields, so `..` and absolute
/// paths go in as they are (the tar crate's own setters refuse them).
fn tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let (name, kind, data, link, mode, uid, gid): (
            &str,
            tar::EntryType,
            &[u8],
            &str,
            u32,
            u64,
            u64,
        ) = match *e {
            E::Dir(p, m) => (p, tar::EntryType::Directory, b"", "", m, 0, 0),
            E::File(p, d, m) => (p, tar::EntryType::Regular, d, "", m, 0, 0),
            E::Owned(p, d, m, u, g) => (p, tar::EntryType::Regular, d, "", m, u, g),
            E::Symlink(p, t) => (p, tar::EntryType::Symlink, b"", t, 0o777, 0, 0),
            E::Hard(p, t) => (p, tar::EntryType::Link, b"", t, 0o644, 0, 0),
            E::Fifo(p) => (p, tar::EntryType::Fifo, b"", "", 0o600, 0, 0),
            E::Char(p, ..) => (p, tar::EntryType::Char, b"", "", 0o666, 0, 0),
        };
        let mut h = tar::Header::new_gnu();
        {
            let old = h.as_old_mut();
            old.name[..name.len()].copy_from_slice(name.as_bytes());
            old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_mtime(MTIME);
        if let E::Char(_, major, minor) = *e {
            h.set_device_major(major).unwrap();
            h.set_device_minor(minor).unwrap();
        }
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[derive(Clone)]
struct Layer {
    tar: Vec<u8>,
    blob: Vec<u8>,
    media_type: &'static str,
}

impl Layer {
    fn gzip(tar: Vec<u8>) -> Layer {
        Layer { blob: gz(&tar), tar, media_type: "application/vnd.oci.image.layer.v1.tar+gzip" }
    }
    fn zstd(tar: Vec<u8>) -> Layer {
        let blob = zstd::encode_all(&tar[..], 3).unwrap();
        Layer { blob, tar, media_type: "application/vnd.oci.image.layer.v1.tar+zstd" }
    }
    fn diff_id(&self) -> Digest {
        Digest::of(&self.tar)
    }
    fn digest(&self) -> Digest {
        Digest::of(&self.blob)
    }
}

struct Img {
    layers: Vec<Layer>,
    config: Vec<u8>,
    manifest: Vec<u8>,
}

impl Img {
    fn new(layers: Vec<Layer>) -> Img {
        Img::for_arch(layers, &image::platform::host().architecture)
    }

    fn for_arch(layers: Vec<Layer>, arch: &str) -> Img {
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": { "Env": ["PATH=/bin"], "Cmd": ["/bin/sh"] },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id().to_string()).collect::<Vec<_>>() },
        }))
        .unwrap();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": Digest::of(&config).to_string(), "size": config.len() },
            "layers": layers.iter().map(|l| json!({ "mediaType": l.media_type, "digest": l.digest().to_string(), "size": l.blob.len() })).collect::<Vec<_>>(),
        }))
        .unwrap();
        Img { layers, config, manifest }
    }

    fn digest(&self) -> Digest {
        Digest::of(&self.manifest)
    }

    fn config_digest(&self) -> Digest {
        Digest::of(&self.config)
    }

    /// Bytes of regular file content in all layers (what the store reports as size).
    fn content_size(&self) -> u64 {
        self.layers.iter().map(|l| content_size(&l.tar)).sum()
    }
}

fn content_size(tar_bytes: &[u8]) -> u64 {
    let mut a = tar::Archive::new(tar_bytes);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.header().entry_type() == tar::EntryType::Regular)
        .filter(|e| !e.path_bytes().rsplit(|&b| b == b'/').next().unwrap().starts_with(b".wh."))
        .map(|e| e.size())
        .sum()
}

fn base_layer() -> Layer {
    Layer::gzip(tar(&[
        E::Dir("etc", 0o755),
        E::File("etc/hostname", b"devenv\n", 0o644),
        E::Hard("etc/hostname.link", "etc/hostname"),
        E::File("etc/removed", b"gone", 0o600),
        E::Dir("var", 0o755),
        E::Dir("var/cache", 0o750),
        E::File("var/cache/old", b"old", 0o644),
        E::Dir("bin", 0o755),
        E::File("bin/su", b"#!su", 0o4755),
        E::Symlink("bin/sh", "/bin/busybox"),
        // No directory entries for home/user: the parents are made by the unpacker.
        E::Owned("home/user/notes", b"hi", 0o640, 1000, 1001),
        E::Fifo("run/fifo"),
        E::Char("dev/null", 1, 3),
        // Absolute paths are relative to the layer root.
        E::File("/abs/path", b"abs", 0o644),
    ]))
}

fn top_layer() -> Layer {
    Layer::gzip(tar(&[
        E::File("etc/.wh.removed", b"", 0o644),
        E::Dir("var/cache", 0o750),
        E::File("var/cache/.wh..wh..opq", b"", 0o644),
        E::File("var/cache/new", b"new", 0o644),
        E::File("etc/added", b"added", 0o644),
    ]))
}

fn other_layer() -> Layer {
    Layer::gzip(tar(&[E::Dir("other", 0o755), E::File("other/file", b"other", 0o644)]))
}

fn write_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

/// An OCI image layout directory holding these images, each with an optional ref.name annotation.
fn oci_layout(dir: &Path, images: &[(&Img, Option<&str>)]) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut manifests = Vec::new();
    for (img, name) in images {
        for l in &img.layers {
            write_blob(dir, &l.blob);
        }
        write_blob(dir, &img.config);
        let d = write_blob(dir, &img.manifest);
        let mut desc = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d.to_string(),
            "size": img.manifest.len(),
        });
        if let Some(name) = name {
            desc["annotations"] = json!({ "org.opencontainers.image.ref.name": name });
        }
        manifests.push(desc);
    }
    let index = json!({ "schemaVersion": 2, "manifests": manifests });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A tar of a directory's content, gzipped: an OCI archive.
fn oci_archive(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    gz(&b.into_inner().unwrap())
}

/// A legacy `docker save` tarball: `<id>/layer.tar` layers (a layer seen before is a symlink to
/// the first copy, as Docker writes it), `<config hex>.json`, manifest.json with RepoTags.
fn docker_save(images: &[(&Img, &[&str])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let add = |b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(MTIME);
        b.append_data(&mut h, path, data).unwrap();
    };
    let mut seen: BTreeMap<Digest, String> = BTreeMap::new();
    let mut manifest = Vec::new();
    for (n, (img, tags)) in images.iter().enumerate() {
        let mut layer_paths = Vec::new();
        for (i, l) in img.layers.iter().enumerate() {
            let id = format!("{:064x}", n * 100 + i + 1);
            let path = format!("{id}/layer.tar");
            match seen.get(&l.diff_id()) {
                Some(first) => {
                    let mut h = tar::Header::new_gnu();
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_size(0);
                    b.append_link(&mut h, &path, format!("../{first}")).unwrap();
                }
                None => {
                    add(&mut b, &path, &l.tar);
                    seen.insert(l.diff_id(), path.clone());
                }
            }
            add(&mut b, &format!("{id}/VERSION"), b"1.0");
            add(&mut b, &format!("{id}/json"), b"{}");
            layer_paths.push(path);
        }
        let config_name = format!("{}.json", img.config_digest().hex());
        add(&mut b, &config_name, &img.config);
        manifest.push(json!({ "Config": config_name, "RepoTags": tags, "Layers": layer_paths }));
    }
    add(&mut b, "manifest.json", &serde_json::to_vec(&manifest).unwrap());
    add(&mut b, "repositories", b"{}");
    b.into_inner().unwrap()
}

fn r(s: &str) -> Reference {
    Reference::parse(s).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Checking what was unpacked

fn check_base(rootfs: &Path) {
    let m = |p: &str| fs::symlink_metadata(rootfs.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(fs::read(rootfs.join("etc/hostname")).unwrap(), b"devenv\n");
    assert_eq!(m("etc/hostname").mode() & 0o7777, 0o644);
    assert_eq!(m("etc/hostname").mtime() as u64, MTIME);
    assert_eq!(m("etc/hostname.link").ino(), m("etc/hostname").ino(), "hard link kept");
    assert_eq!(m("var/cache").mode() & 0o7777, 0o750);
    assert_eq!(m("var/cache").mtime() as u64, MTIME, "directory mtime set after its children");
    assert_eq!(m("bin/su").mode() & 0o7777, 0o4755, "setuid bit kept");
    assert_eq!(fs::read_link(rootfs.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
    assert_eq!((m("home/user/notes").uid(), m("home/user/notes").gid()), (1000, 1001));
    assert_eq!(m("home/user").mode() & 0o7777, 0o755, "implicit parent directories");
    assert!(m("run/fifo").file_type().is_fifo());
    assert!(m("dev/null").file_type().is_char_device());
    assert_eq!(m("dev/null").rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(fs::read(rootfs.join("abs/path")).unwrap(), b"abs", "absolute path kept inside");
}

fn check_top(rootfs: &Path) {
    let wh = fs::symlink_metadata(rootfs.join("etc/removed")).unwrap();
    assert!(wh.file_type().is_char_device(), "whiteout is a character device");
    assert_eq!(wh.rdev(), 0, "whiteout is device 0/0");
    assert!(!rootfs.join("etc/.wh.removed").exists());
    let mut buf = [0u8; 8];
    let n = rustix::fs::lgetxattr(rootfs.join("var/cache"), "trusted.overlay.opaque", &mut buf)
        .expect("opaque xattr");
    assert_eq!(&buf[..n], b"y");
    assert!(!rootfs.join("var/cache/.wh..wh..opq").exists());
    assert_eq!(fs::read(rootfs.join("var/cache/new")).unwrap(), b"new");
}

/// Every file under a directory: type, mode, owner, size, link count, mtime, content or target.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let extra = if m.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()).collect();
            names.sort();
            stack.extend(names);
            String::new()
        } else if m.file_type().is_symlink() {
            fs::read_link(&p).unwrap().display().to_string()
        } else {
            format!("{:?}", fs::read(&p).unwrap())
        };
        let line = format!(
            "{:o} {}:{} {} nlink={} mtime={} {extra}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.len(),
            m.nlink(),
            m.mtime()
        );
        out.insert(p, line);
    }
    out
}

fn files_in(dir: &Path) -> Vec<String> {
    match fs::read_dir(dir) {
        Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => Vec::new(),
    }
}

// ---------------------------------------------------------------------------------------------
// Loading

#[test]
fn oci_layout_directory_loads_and_resolves() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let img = Img::new(vec![base_layer(), top_layer()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("example.com/team/app:1.0"))]);

    let loaded = image::load(&store, &layout, None).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names, vec![r("example.com/team/app:1.0")]);
    assert_eq!(loaded[0].manifest_digest, img.digest());
    assert_eq!(loaded[0].config_digest, img.config_digest());
    assert_eq!(loaded[0].layers, 2);
    assert_eq!(loaded[0].size, img.content_size());

    let info = store.resolve(&r("example.com/team/app:1.0")).unwrap().expect("resolves");
    assert_eq!(info.manifest_digest, img.digest());
    assert_eq!(info.config_digest, img.config_digest());
    assert_eq!(info.config.config().as_ref().unwrap().cmd().as_ref().unwrap(), &["/bin/sh"]);
    assert_eq!(info.layers.len(), 2);
    assert_eq!(info.layers[0], store.layer_path(&img.layers[0].diff_id()), "lowest layer first");
    assert_eq!(info.size, img.content_size());
    check_base(&info.layers[0]);
    check_top(&info.layers[1]);

    // By digest, and an unknown name.
    let pinned = r(&format!("other/name@{}", img.digest()));
    assert_eq!(store.resolve(&pinned).unwrap().unwrap().manifest_digest, img.digest());
    assert!(store.resolve(&r("example.com/team/app:2.0")).unwrap().is_none());
    assert!(files_in(&tmp.path().join("store/tmp")).is_empty(), "no temp files left");
    let layers_mode = fs::metadata(tmp.path().join("store/layers")).unwrap().mode() & 0o777;
    assert_eq!(layers_mode, 0o700, "setuid binaries in layers are out of other users' reach");
}

#[test]
fn bare_tag_annotation_is_not_a_name() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let img = Img::new(vec![other_layer()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("latest"))]);

    let err = image::load(&store, &layout, None).unwrap_err();
    assert!(matches!(err, ImageError::NoName { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("--tag") && msg.contains("\"latest\" is only a tag"), "{msg}");

    let loaded = image::load(&store, &layout, Some(&r("mine/app"))).unwrap();
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/mine/app:latest");
    assert!(store.resolve(&r("mine/app:latest")).unwrap().is_some());
}

#[test]
fn oci_archive_loads() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let img = Img::new(vec![base_layer(), top_layer()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("redis:7"))]);
    let archive = tmp.path().join("image.tar.gz");
    fs::write(&archive, oci_archive(&layout)).unwrap();

    let loaded = image::load(&store, &archive, None).unwrap();
    assert_eq!(loaded[0].names, vec![r("docker.io/library/redis:7")]);
    let info = store.resolve(&r("redis:7")).unwrap().unwrap();
    assert_eq!(info.manifest_digest, img.digest());
    check_base(&info.layers[0]);
    check_top(&info.layers[1]);
}

#[test]
fn docker_save_tarball_loads_and_shares_layers() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let a = Img::new(vec![base_layer(), top_layer()]);
    let b = Img::new(vec![base_layer(), other_layer()]);
    let archive = tmp.path().join("save.tar");
    fs::write(&archive, docker_save(&[(&a, &["app:1"]), (&b, &["other/app:2", "<none>:<none>"])]))
        .unwrap();

    let loaded = image::load(&store, &archive, None).unwrap();
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[0].names, vec![r("docker.io/library/app:1")]);
    assert_eq!(loaded[1].names, vec![r("docker.io/other/app:2")]);
    // The config is kept byte for byte: its digest is Docker's image ID.
    assert_eq!(loaded[0].config_digest, a.config_digest());

    let ia = store.resolve(&r("app:1")).unwrap().unwrap();
    let ib = store.resolve(&r("other/app:2")).unwrap().unwrap();
    assert_eq!(ia.layers[0], ib.layers[0], "the shared base layer is one directory");
    check_base(&ia.layers[0]);
    check_top(&ia.layers[1]);
    assert_eq!(fs::read(ib.layers[1].join("other/file")).unwrap(), b"other");
    assert_eq!(
        files_in(&tmp.path().join("store/layers")).iter().filter(|n| !n.ends_with(".lock")).count(),
        3
    );

    // The converted manifest is an OCI manifest over the plain tar layers.
    let manifest: serde_json::Value =
        serde_json::from_slice(&store.read_blob(&loaded[0].manifest_digest).unwrap()).unwrap();
    assert_eq!(manifest["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(manifest["layers"][0]["mediaType"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(manifest["layers"][0]["digest"], a.layers[0].diff_id().to_string());

    // --tag with two images in the archive is ambiguous.
    let err = image::load(&store, &archive, Some(&r("x"))).unwrap_err();
    assert!(matches!(err, ImageError::AmbiguousTag { count: 2, .. }), "{err}");
}

#[test]
fn a_shared_layer_is_unpacked_once() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let a = Img::new(vec![base_layer(), top_layer()]);
    let b = Img::new(vec![base_layer(), other_layer()]);
    oci_layout(&tmp.path().join("a"), &[(&a, Some("a.io/a:1"))]);
    oci_layout(&tmp.path().join("b"), &[(&b, Some("b.io/b:1"))]);
    image::load(&store, &tmp.path().join("a"), None).unwrap();

    // A file that an unpack would not have made: if the layer were unpacked again, it would go.
    let base = store.layer_path(&a.layers[0].diff_id());
    fs::write(base.join("sentinel"), b"still here").unwrap();
    let ino = fs::metadata(&base).unwrap().ino();

    image::load(&store, &tmp.path().join("b"), None).unwrap();
    let ib = store.resolve(&r("b.io/b:1")).unwrap().unwrap();
    assert_eq!(ib.layers[0], base);
    assert_eq!(fs::read(base.join("sentinel")).unwrap(), b"still here");
    assert_eq!(fs::metadata(&base).unwrap().ino(), ino);
}

#[test]
fn list_shows_name_digest_and_size_and_remove_untags() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let a = Img::new(vec![base_layer(), top_layer()]);
    let b = Img::new(vec![other_layer()]);
    oci_layout(&tmp.path().join("l"), &[(&a, Some("app:1")), (&b, Some("localhost:5000/b/c:2"))]);
    let loaded = image::load(&store, &tmp.path().join("l"), None).unwrap();
    assert_eq!(loaded.len(), 2);
    store.tag(&r("app:latest"), &a.digest()).unwrap();

    let list = store.list().unwrap();
    let rows: Vec<(String, Digest, u64)> =
        list.iter().map(|s| (s.name.familiar(), s.digest.clone(), s.size)).collect();
    assert_eq!(
        rows,
        vec![
            ("app:1".to_string(), a.digest(), a.content_size()),
            ("app:latest".to_string(), a.digest(), a.content_size()),
            ("localhost:5000/b/c:2".to_string(), b.digest(), b.content_size()),
        ]
    );

    assert_eq!(store.remove(&r("app:1")).unwrap(), a.digest());
    assert!(store.resolve(&r("app:1")).unwrap().is_none());
    assert!(store.resolve(&r("app")).unwrap().is_some(), "the other name stays");
    let err = store.remove(&r("app:1")).unwrap_err();
    assert_eq!(err.to_string(), "image app:1 is not in the store");
    // The store survives being reopened.
    let again = Store::open(tmp.path().join("store")).unwrap();
    assert_eq!(again.list().unwrap().len(), 2);
}

#[test]
fn zstd_layers_and_platform_indexes() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let host = Img::new(vec![Layer::zstd(tar(&[E::File("which", b"host", 0o644)]))]);
    let foreign =
        Img::for_arch(vec![Layer::gzip(tar(&[E::File("which", b"foreign", 0o644)]))], "s390x");
    // index.json -> an image index with both platforms (as `docker buildx` writes it).
    let layout = tmp.path().join("multi");
    oci_layout(&layout, &[(&host, None), (&foreign, None)]);
    let entry = |img: &Img, arch: &str| {
        json!({ "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": img.digest().to_string(),
                "size": img.manifest.len(), "platform": { "os": "linux", "architecture": arch } })
    };
    let inner = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&foreign, "s390x"), entry(&host, &image::platform::host().architecture)],
    }))
    .unwrap();
    let inner_digest = write_blob(&layout, &inner);
    let index = json!({ "schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": inner_digest.to_string(),
        "size": inner.len(), "annotations": { "io.containerd.image.name": "docker.io/library/multi:1", "org.opencontainers.image.ref.name": "1" } }] });
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();

    let loaded = image::load(&store, &layout, None).unwrap();
    assert_eq!(loaded[0].names, vec![r("multi:1")]);
    assert_eq!(loaded[0].manifest_digest, host.digest());
    let info = store.resolve(&r("multi:1")).unwrap().unwrap();
    assert_eq!(fs::read(info.layers[0].join("which")).unwrap(), b"host");
    assert!(!store.has_layer(&foreign.layers[0].diff_id()), "the other platform is not unpacked");

    // The store also resolves a name that points at the index itself.
    store.put_blob(Some(&inner_digest), &inner[..]).unwrap();
    store.tag(&r("multi:index"), &inner_digest).unwrap();
    assert_eq!(store.resolve(&r("multi:index")).unwrap().unwrap().manifest_digest, host.digest());
}

#[test]
fn unknown_formats_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let junk = tmp.path().join("junk.bin");
    fs::write(&junk, vec![7u8; 2000]).unwrap();
    let err = image::load(&store, &junk, None).unwrap_err();
    assert!(matches!(err, ImageError::UnknownFormat { .. }), "{err}");
    fs::create_dir(tmp.path().join("empty")).unwrap();
    let err = image::load(&store, &tmp.path().join("empty"), None).unwrap_err();
    assert!(err.to_string().contains("neither index.json nor manifest.json"), "{err}");
    let err = image::load(&store, &tmp.path().join("missing"), None).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Hostile archives

#[test]
fn hostile_layers_never_write_outside() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir_all(outside.join("sub")).unwrap();
    fs::write(outside.join("secret"), b"secret").unwrap();
    fs::write(outside.join("sub/file"), b"file").unwrap();
    let before = snapshot(&outside);
    let out = outside.to_str().unwrap().to_string();
    let depth = "../".repeat(outside.components().count() + 4);
    let rel_out = out.trim_start_matches('/');

    let dotdot = format!("{depth}{rel_out}/pwned");
    let abs_file = format!("{out}/pwned");
    let abs_secret = format!("{out}/secret");
    let via_root = format!("evil2/{rel_out}/pwned");
    let up_secret = format!("up/{depth}{rel_out}/secret");
    let dotdot_secret = format!("{depth}{rel_out}/secret");
    let cases: Vec<(&str, Vec<E>, bool)> = vec![
        ("dotdot", vec![E::File(&dotdot, b"x", 0o644)], false),
        ("inner dotdot", vec![E::File("a/../../outside/pwned", b"x", 0o644)], false),
        ("absolute path is kept inside", vec![E::File(&abs_file, b"x", 0o644)], true),
        (
            "symlink then write",
            vec![E::Symlink("evil", &out), E::File("evil/pwned", b"x", 0o644)],
            false,
        ),
        (
            "symlink to / then write",
            vec![E::Symlink("evil2", &depth), E::File(&via_root, b"x", 0o644)],
            false,
        ),
        ("symlink then mkdir", vec![E::Symlink("d", &out), E::Dir("d/newdir", 0o755)], false),
        (
            "symlink then overwrite",
            vec![E::Symlink("d", &out), E::File("d/secret", b"x", 0o644)],
            false,
        ),
        (
            "symlink then whiteout",
            vec![E::Symlink("w", &out), E::File("w/.wh.secret", b"", 0o644)],
            false,
        ),
        (
            "symlink then opaque",
            vec![E::Symlink("w", &out), E::File("w/.wh..wh..opq", b"", 0o644)],
            false,
        ),
        ("symlink then symlink", vec![E::Symlink("s", &out), E::Symlink("s/link", "/")], false),
        ("symlink then fifo", vec![E::Symlink("s", &out), E::Fifo("s/fifo")], false),
        ("hard link to absolute outside", vec![E::Hard("hl", &abs_secret)], false),
        ("hard link with dotdot", vec![E::Hard("hl", &dotdot_secret)], false),
        (
            "symlink to parent then hard link",
            vec![E::Symlink("up", ".."), E::Hard("x", &up_secret)],
            false,
        ),
        (
            "hard link through a symlinked directory",
            vec![E::Symlink("o", &out), E::Hard("x", "o/secret")],
            false,
        ),
        (
            "a file replaces a symlink instead of writing through it",
            vec![E::Symlink("f", &abs_secret), E::File("f", b"overwritten", 0o644)],
            true,
        ),
        (
            "hard link to a symlink links the symlink",
            vec![E::Symlink("s2", &abs_secret), E::Hard("h2", "s2"), E::File("h2", b"x", 0o644)],
            true,
        ),
        ("whiteout of ..", vec![E::File("etc/.wh...", b"", 0o644)], false),
    ];

    for (i, (what, entries, succeeds)) in cases.into_iter().enumerate() {
        let store = Store::open(tmp.path().join(format!("store{i}"))).unwrap();
        let layer = Layer::gzip(tar(&entries));
        let img = Img::new(vec![layer.clone()]);
        let layout = tmp.path().join(format!("layout{i}"));
        oci_layout(&layout, &[(&img, Some("hostile.io/x:1"))]);
        let result = image::load(&store, &layout, None);
        match (&result, succeeds) {
            (Ok(_), true) => {
                let info = store.resolve(&r("hostile.io/x:1")).unwrap().unwrap();
                assert!(info.layers[0].starts_with(store.root()));
            }
            (Err(e), false) => {
                let msg = e.to_string();
                assert!(msg.contains("refusing layer entry"), "{what}: {msg}");
                assert!(!store.has_layer(&layer.diff_id()), "{what}: no complete layer");
                assert!(
                    !store.layer_path(&layer.diff_id()).exists(),
                    "{what}: the failed layer directory is removed"
                );
                assert!(
                    store.resolve(&r("hostile.io/x:1")).unwrap().is_none(),
                    "{what}: not named"
                );
            }
            (r, _) => panic!("{what}: expected success={succeeds}, got {r:?}"),
        }
        assert_eq!(snapshot(&outside), before, "{what}: the outside directory changed");
    }
    // The neutralized absolute path landed inside the layer.
    let store = Store::open(tmp.path().join("store2")).unwrap();
    let list = store.list().unwrap();
    let info = store.resolve(&list[0].name).unwrap().unwrap();
    assert_eq!(fs::read(info.layers[0].join(format!("{rel_out}/pwned"))).unwrap(), b"x");
}

#[test]
fn hostile_paths_in_the_archive_itself_are_ignored() {
    if !is_root() {
        return;
    }
    // An OCI archive whose own entries try to escape: they are never written by path, only
    // streamed into the store by digest, so they cannot land anywhere.
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let img = Img::new(vec![other_layer()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("x.io/y:1"))]);
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", &layout).unwrap();
    let mut plain = b.into_inner().unwrap();
    plain.truncate(plain.len() - 1024); // drop the end-of-archive blocks to append more
    let extra = tar(&[
        E::File("../outside/pwned", b"x", 0o644),
        E::Symlink("blobs/evil", &outside.display().to_string()),
        E::File("blobs/evil/pwned", b"x", 0o644),
    ]);
    plain.extend_from_slice(&extra);
    fs::remove_dir_all(&layout).unwrap();
    let archive = tmp.path().join("a.tar");
    fs::write(&archive, &plain).unwrap();
    let snap_outside = snapshot(&outside);
    image::load(&store, &archive, None).unwrap();
    assert!(store.resolve(&r("x.io/y:1")).unwrap().is_some());
    assert_eq!(snapshot(&outside), snap_outside);
}

// ---------------------------------------------------------------------------------------------
// Verification and recovery

#[test]
fn digest_mismatch_leaves_no_blob_and_no_layer() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layer = other_layer();
    let img = Img::new(vec![layer.clone()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("bad.io/x:1"))]);
    // The layer blob's content no longer matches its name.
    let blob_file = layout.join("blobs/sha256").join(layer.digest().hex());
    fs::write(&blob_file, gz(&tar(&[E::File("other/file", b"tampered", 0o644)]))).unwrap();

    let err = image::load(&store, &layout, None).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&layer.digest().to_string()), "{err}");
    assert!(!store.has_blob(&layer.digest()));
    assert!(!store.layer_path(&layer.diff_id()).exists());
    assert!(files_in(&tmp.path().join("store/tmp")).is_empty(), "temp file discarded");
    assert!(store.resolve(&r("bad.io/x:1")).unwrap().is_none());

    // put_blob directly.
    let wrong = Digest::of(b"something else");
    let err = store.put_blob(Some(&wrong), &b"content"[..]).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&wrong) && !store.has_blob(&Digest::of(b"content")));
    assert!(files_in(&tmp.path().join("store/tmp")).is_empty());

    // A blob that matches but whose content is not what the config's diff_id says.
    let blob = store.put_blob(None, &layer.blob[..]).unwrap();
    let wrong_diff = Digest::of(b"not the tar");
    let err = store
        .ensure_layer(&wrong_diff, &blob, &oci_spec::image::MediaType::ImageLayerGzip)
        .unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    assert!(!store.layer_path(&wrong_diff).exists() && !store.has_layer(&wrong_diff));
}

#[test]
fn an_interrupted_unpack_is_redone() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let img = Img::new(vec![base_layer(), top_layer()]);
    let layout = tmp.path().join("layout");
    oci_layout(&layout, &[(&img, Some("x.io/app:1"))]);

    // A layer directory from an unpack that died half-way: no completion marker.
    let base = store.layer_path(&img.layers[0].diff_id());
    fs::create_dir_all(base.join("etc")).unwrap();
    fs::write(base.join("etc/hostname"), b"half").unwrap();
    fs::write(base.join("junk"), b"junk").unwrap();
    assert!(!store.has_layer(&img.layers[0].diff_id()));

    image::load(&store, &layout, None).unwrap();
    assert!(store.has_layer(&img.layers[0].diff_id()));
    assert!(!base.join("junk").exists(), "the partial tree was discarded");
    check_base(&base);

    // Marker lost after the fact (say, a crash between unpack and marker): resolve redoes it.
    fs::remove_file(base.parent().unwrap().join("complete")).unwrap();
    fs::write(base.join("junk"), b"junk").unwrap();
    let info = store.resolve(&r("x.io/app:1")).unwrap().unwrap();
    assert_eq!(info.layers[0], base);
    assert!(!base.join("junk").exists());
    check_base(&base);
}

/// A reader that hands out a few bytes at a time, like a network stream.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(7);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

#[test]
fn layers_stream_in_and_unpack_as_they_arrive() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layer = base_layer();
    let mt = oci_spec::image::MediaType::ImageLayerGzip;

    // A blob whose digest is not what the registry said: neither blob nor layer is kept.
    let wrong = Digest::of(b"x");
    let err = store.ingest_layer(&wrong, &layer.diff_id(), &mt, Trickle(&layer.blob)).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert!(!store.has_blob(&wrong) && !store.has_blob(&layer.digest()));
    assert!(!store.layer_path(&layer.diff_id()).exists());
    assert!(files_in(&tmp.path().join("store/tmp")).is_empty());

    // A stream cut short: an error, nothing kept.
    let cut = &layer.blob[..layer.blob.len() / 2];
    assert!(store.ingest_layer(&layer.digest(), &layer.diff_id(), &mt, Trickle(cut)).is_err());
    assert!(!store.has_blob(&layer.digest()) && !store.has_layer(&layer.diff_id()));

    let dir =
        store.ingest_layer(&layer.digest(), &layer.diff_id(), &mt, Trickle(&layer.blob)).unwrap();
    assert_eq!(dir, store.layer_path(&layer.diff_id()));
    assert!(store.has_blob(&layer.digest()) && store.has_layer(&layer.diff_id()));
    assert_eq!(fs::read(store.blob_path(&layer.digest())).unwrap(), layer.blob);
    check_base(&dir);

    // Not a layer media type.
    let err = store
        .ingest_layer(
            &layer.digest(),
            &layer.diff_id(),
            &oci_spec::image::MediaType::ImageConfig,
            &layer.blob[..],
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::UnsupportedMediaType { .. }), "{err}");
}

#[test]
fn parallel_writers_do_not_lose_updates() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let store = Store::open(&root).unwrap();
    let img = Img::new(vec![base_layer()]);
    oci_layout(&tmp.path().join("l"), &[(&img, Some("x.io/base:1"))]);
    for l in &img.layers {
        store.put_blob(Some(&l.digest()), &l.blob[..]).unwrap();
    }
    store.put_blob(None, &img.config[..]).unwrap();
    store.put_blob(None, &img.manifest[..]).unwrap();

    // Each thread has its own Store (as separate processes would) and unpacks the same layer and
    // adds its own name.
    std::thread::scope(|s| {
        for t in 0..6 {
            let (root, img) = (&root, &img);
            s.spawn(move || {
                let store = Store::open(root).unwrap();
                let l = &img.layers[0];
                let mt = oci_spec::image::MediaType::ImageLayerGzip;
                store.ensure_layer(&l.diff_id(), &l.digest(), &mt).unwrap();
                for n in 0..5 {
                    store.tag(&r(&format!("x.io/t{t}:{n}")), &img.digest()).unwrap();
                }
            });
        }
    });
    assert_eq!(store.list().unwrap().len(), 30);
    check_base(&store.layer_path(&img.layers[0].diff_id()));
}

#[test]
fn prune_deletes_only_what_no_image_uses() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let a = Img::new(vec![base_layer(), top_layer()]);
    let b = Img::new(vec![base_layer(), other_layer()]);
    let c = Img::new(vec![Layer::gzip(tar(&[E::File("c", b"c", 0o644)]))]);
    oci_layout(&tmp.path().join("l"), &[(&a, Some("a:1")), (&b, Some("b:1")), (&c, Some("c:1"))]);
    image::load(&store, &tmp.path().join("l"), None).unwrap();
    let grace = std::time::Duration::from_secs(3600);
    assert_eq!(
        store.prune(&[], std::time::Duration::ZERO).unwrap(),
        image::store::Pruned::default()
    );

    store.remove(&r("a:1")).unwrap();
    store.remove(&r("c:1")).unwrap();
    // Fresh content stays: a pull may not have tagged its image yet.
    assert_eq!(store.prune(&[], grace).unwrap(), image::store::Pruned::default());
    // An untagged image a container was created from stays.
    let pruned = store.prune(&[c.digest()], std::time::Duration::ZERO).unwrap();
    assert_eq!((pruned.layers, pruned.blobs), (1, 3), "a's top layer; its blob, config, manifest");
    let top = &a.layers[1];
    let freed =
        content_size(&top.tar) + (top.blob.len() + a.config.len() + a.manifest.len()) as u64;
    assert_eq!(pruned.bytes, freed);
    assert!(!store.layer_path(&a.layers[1].diff_id()).exists());
    assert!(!store.has_blob(&a.digest()));

    let ib = store.resolve(&r("b:1")).unwrap().unwrap();
    check_base(&ib.layers[0]);
    assert_eq!(fs::read(ib.layers[1].join("other/file")).unwrap(), b"other");
    assert!(store.has_blob(&b.digest()) && store.has_blob(&b.config_digest()));
    assert!(store.has_layer(&c.layers[0].diff_id()));

    // Once nothing uses c either, it goes too.
    let pruned = store.prune(&[], std::time::Duration::ZERO).unwrap();
    assert_eq!((pruned.layers, pruned.blobs), (1, 3));
    assert!(store.resolve(&r("b:1")).unwrap().is_some());
}
