//! Small fixture images for the pull tests, made of text files only (no host
//! binaries, so they build in milliseconds and are the same on every host):
//!
//! - `layered_layout()`: three gzip layers with an OCI whiteout and an opaque
//!   whiteout; `LAYERED_PRESENT` / `LAYERED_ABSENT` say what the unpacked rootfs holds.
//! - `multiarch_layout()`: an image index with a linux/amd64 and a linux/arm64
//!   manifest; each image's one layer has `/platform` holding "amd64" or "arm64".
//! - `zstd_layout()`: one image whose layer is `tar+zstd`.
//!
//! Each is an OCI image layout whose index.json has one descriptor tagged
//! `REF_NAME` ("latest"); for `multiarch_layout` that descriptor is the image
//! index itself (so `skopeo copy --all` pushes the index and both images).
//! Built once and cached under `CARGO_TARGET_TMPDIR/fixtures/` like images.rs.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::images::{host_arch, CONFIG_TYPE, INDEX_TYPE, LAYER_TYPE, MANIFEST_TYPE, REF_NAME};
use super::{cached_dir, hex, sha256_hex, Compress, Layer};

pub const ZSTD_LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

const CREATED: &str = "2024-01-01T00:00:00Z";

/// Files (path without leading `/`, content) the unpacked `layered_layout()` holds.
pub const LAYERED_PRESENT: &[(&str, &str)] = &[
    ("etc/os-release", "devenv layered fixture, layer 3\n"),
    ("keep.txt", "kept from layer 1\n"),
    ("data/new.txt", "layer 2 after the opaque whiteout\n"),
    ("gone-dir/back.txt", "layer 3 recreates gone-dir\n"),
    ("late/added.txt", "added by layer 3\n"),
];

/// Paths that layers of `layered_layout()` create and later layers delete: the
/// unpacked rootfs must not have them, nor any `.wh.` file.
pub const LAYERED_ABSENT: &[&str] = &[
    // `.wh.remove-me.txt` in layer 2
    "remove-me.txt",
    // `data/.wh..wh..opq` in layer 2 hides layer 1's contents of data/
    "data/a.txt",
    "data/sub/c.txt",
    "data/sub",
    // `.wh.gone-dir` in layer 2 deletes the whole directory; layer 3 makes it anew
    "gone-dir/old.txt",
];

/// Contents of `/platform` in the `multiarch_layout()` image for `arch`.
pub fn platform_marker(arch: &str) -> String {
    format!("{arch}\n")
}

/// Three layers: a base, one that whites out a file and a directory and makes
/// `data/` opaque, and one that adds files (also inside the deleted directory).
pub fn layered_layout() -> PathBuf {
    cached("layered", |dir| {
        let mut l1 = Layer::new("layered 1: base files");
        l1.text("etc/os-release", "devenv layered fixture, layer 1\n");
        l1.text("keep.txt", "kept from layer 1\n");
        l1.text("remove-me.txt", "layer 2 deletes this\n");
        l1.text("data/a.txt", "hidden by the opaque whiteout\n");
        l1.text("data/sub/c.txt", "hidden by the opaque whiteout\n");
        l1.text("gone-dir/old.txt", "deleted with its directory\n");
        let mut l2 = Layer::new("layered 2: whiteouts");
        l2.text(".wh.remove-me.txt", "");
        l2.text(".wh.gone-dir", "");
        l2.text("data/.wh..wh..opq", "");
        l2.text("data/new.txt", "layer 2 after the opaque whiteout\n");
        l2.text("etc/os-release", "devenv layered fixture, layer 2\n");
        let mut l3 = Layer::new("layered 3: additions");
        l3.text("etc/os-release", "devenv layered fixture, layer 3\n");
        l3.text("gone-dir/back.txt", "layer 3 recreates gone-dir\n");
        l3.text("late/added.txt", "added by layer 3\n");
        let (digest, size) = write_image(
            dir,
            host_arch(),
            &[(l1, Compress::Gzip), (l2, Compress::Gzip), (l3, Compress::Gzip)],
        );
        write_index_json(dir, MANIFEST_TYPE, &digest, size, Some(host_arch()));
    })
}

/// An image index (OCI) with linux/amd64 and linux/arm64 (variant v8) images.
pub fn multiarch_layout() -> PathBuf {
    cached("multiarch", |dir| {
        let mut entries = Vec::new();
        for (arch, variant) in [("amd64", None), ("arm64", Some("v8"))] {
            let mut l = Layer::new(&format!("multiarch: {arch} marker"));
            l.text("platform", &platform_marker(arch));
            l.text("etc/os-release", "devenv multiarch fixture\n");
            let (digest, size) = write_image(dir, arch, &[(l, Compress::Gzip)]);
            let mut platform = json!({"architecture": arch, "os": "linux"});
            if let Some(v) = variant {
                platform["variant"] = json!(v);
            }
            entries.push(json!({"mediaType": MANIFEST_TYPE, "digest": digest, "size": size,
                                "platform": platform}));
        }
        let index = json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": entries});
        let (digest, size) = put_json(dir, &index);
        write_index_json(dir, INDEX_TYPE, &digest, size, None);
    })
}

/// One image with a single `tar+zstd` layer (`/zstd.txt` and `/etc/os-release`).
pub fn zstd_layout() -> PathBuf {
    cached("zstd", |dir| {
        let mut l = Layer::new("zstd: one zstd-compressed layer");
        l.text("zstd.txt", "this layer is compressed with zstd\n");
        l.text("etc/os-release", "devenv zstd fixture\n");
        let (digest, size) = write_image(dir, host_arch(), &[(l, Compress::Zstd)]);
        write_index_json(dir, MANIFEST_TYPE, &digest, size, Some(host_arch()));
    })
}

fn cached(name: &str, build: impl FnOnce(&Path)) -> PathBuf {
    let mut h = Sha256::new();
    // Only this builder's source and the helpers decide the output.
    h.update(include_str!("pull_images.rs"));
    h.update(include_str!("mod.rs"));
    let key = &hex(&h.finalize())[..16];
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures").join(format!("pull-{name}-{key}"));
    cached_dir(&dir, |tmp| {
        fs::create_dir_all(tmp.join("blobs/sha256")).expect("create blobs dir");
        fs::write(tmp.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        build(tmp)
    })
}

/// Writes `value` as a blob of the layout `dir`; returns (digest, size).
fn put_json(dir: &Path, value: &Value) -> (String, u64) {
    let bytes = serde_json::to_vec(value).unwrap();
    let hex = sha256_hex(&bytes);
    fs::write(dir.join("blobs/sha256").join(&hex), &bytes).expect("write blob");
    (format!("sha256:{hex}"), bytes.len() as u64)
}

/// Writes the layers, config and manifest of a linux/`arch` image into the
/// layout `dir`; returns the manifest's (digest, size).
fn write_image(dir: &Path, arch: &str, layers: &[(Layer, Compress)]) -> (String, u64) {
    let blobs = dir.join("blobs/sha256");
    let written: Vec<_> = layers.iter().map(|(l, c)| (l.write_as(&blobs, *c), *c)).collect();
    let config = json!({
        "created": CREATED,
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"], "WorkingDir": "/"},
        "rootfs": {"type": "layers",
                   "diff_ids": written.iter().map(|((_, _, diff_id), _)| diff_id).collect::<Vec<_>>()},
        "history": layers.iter().map(|(l, _)| json!({"created": CREATED, "created_by": l.comment}))
            .collect::<Vec<_>>(),
    });
    let (config_digest, config_size) = put_json(dir, &config);
    let layer_descs: Vec<Value> = written
        .iter()
        .map(|((digest, size, _), c)| {
            let media_type = match c {
                Compress::Gzip => LAYER_TYPE,
                Compress::Zstd => ZSTD_LAYER_TYPE,
            };
            json!({"mediaType": media_type, "digest": digest, "size": size})
        })
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    put_json(dir, &manifest)
}

/// index.json with one descriptor tagged `REF_NAME`.
fn write_index_json(dir: &Path, media_type: &str, digest: &str, size: u64, arch: Option<&str>) {
    let mut desc = json!({
        "mediaType": media_type,
        "digest": digest,
        "size": size,
        "annotations": {"org.opencontainers.image.ref.name": REF_NAME},
    });
    if let Some(arch) = arch {
        desc["platform"] = json!({"architecture": arch, "os": "linux"});
    }
    let index = json!({"schemaVersion": 2, "mediaType": INDEX_TYPE, "manifests": [desc]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap())
        .expect("write index.json");
}
