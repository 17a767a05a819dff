//! Fixture OCI images (busybox, redis, nginx, python) assembled from this host's
//! Debian binaries, since no public registry is reachable from the tests.
//!
//! Each image is a shared busybox base layer (byte-identical in all four) plus one
//! layer with a program, its `ldd` closure and its data files. Layers are
//! deterministic tar+gzip so that the same host inputs give the same digests.
//! Layouts are built once and cached under `CARGO_TARGET_TMPDIR/fixtures/`,
//! keyed by the builder's source and the host files it reads.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{blob_path, cached_dir, hex, layer_digests, Layer};

/// Bump when the output changes for reasons the source hash in the cache key
/// cannot see (it already covers any edit to this file).
pub const BUILDER_VERSION: u32 = 1;

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Tag recorded as `org.opencontainers.image.ref.name` in every index.json.
pub const REF_NAME: &str = "latest";

/// `created` of configs and history; matches the layers' fixed mtime.
const CREATED: &str = "2024-01-01T00:00:00Z";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const BUSYBOX: &str = "/bin/busybox";
const PYTHON: &str = "python3.11";
const WWW_DATA: u64 = 33;
const REDIS: u64 = 999;

/// Applets the tests and later runtime work rely on; the build fails loudly if
/// the host busybox lacks one.
const REQUIRED_APPLETS: &str = "sh ls cat echo sleep wget nc ip ps env id mkdir rm cp mv chmod \
    grep sed head tail true false hostname ifconfig httpd vi";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fixture {
    Busybox,
    Redis,
    Nginx,
    Python,
}

impl Fixture {
    pub const ALL: [Fixture; 4] =
        [Fixture::Busybox, Fixture::Redis, Fixture::Nginx, Fixture::Python];

    pub fn name(self) -> &'static str {
        match self {
            Fixture::Busybox => "busybox",
            Fixture::Redis => "redis",
            Fixture::Nginx => "nginx",
            Fixture::Python => "python",
        }
    }

    /// Host files (and the Debian package providing each) whose size and mtime
    /// key the cache. dpkg's status file changes on every package operation, so it
    /// stands in for the shared libraries and the stdlib without stat-ing them all.
    fn host_inputs(self) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![("/var/lib/dpkg/status", "dpkg"), (BUSYBOX, "busybox-static")];
        v.extend_from_slice(match self {
            Fixture::Busybox => &[][..],
            Fixture::Redis => {
                &[("/usr/bin/redis-server", "redis-server"), ("/usr/bin/redis-cli", "redis-tools")]
            }
            Fixture::Nginx => {
                &[("/usr/sbin/nginx", "nginx-light"), ("/etc/nginx/mime.types", "nginx-common")]
            }
            Fixture::Python => &[
                ("/usr/bin/python3.11", "python3.11-minimal"),
                ("/usr/lib/python3.11", "libpython3.11-stdlib"),
            ],
        });
        v
    }
}

/// Path of the complete OCI image layout for `f`, building it on first use.
pub fn oci_layout(f: Fixture) -> PathBuf {
    let dir = cache_root().join(format!("{}-{}", f.name(), cache_key(f)));
    cached_dir(&dir, |tmp| build_layout(f, tmp))
}

/// The layers of `f` unpacked in order into one directory (for chroot tests).
/// Shared by every test: treat it as read-only.
pub fn rootfs_dir(f: Fixture) -> PathBuf {
    let layout = oci_layout(f);
    let dir = PathBuf::from(format!("{}-rootfs", layout.display()));
    cached_dir(&dir, |tmp| {
        for digest in layer_digests(&layout) {
            let blob = File::open(blob_path(&layout, &digest)).expect("open layer blob");
            let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(blob));
            // Keep /tmp's sticky bit and the service users' directories.
            archive.set_preserve_permissions(true);
            archive.set_preserve_ownerships(true);
            archive.unpack(tmp).unwrap_or_else(|e| panic!("unpack {digest}: {e}"));
        }
    })
}

fn cache_root() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures")
}

fn cache_key(f: Fixture) -> String {
    let mut h = Sha256::new();
    h.update(BUILDER_VERSION.to_le_bytes());
    // The builder's source, so any edit to it (or to the helpers) rebuilds.
    h.update(include_str!("images.rs"));
    h.update(include_str!("mod.rs"));
    h.update(f.name());
    for (path, package) in f.host_inputs() {
        let md = fs::metadata(path).unwrap_or_else(|e| {
            panic!("fixture {} needs {path} (apt-get install {package}): {e}", f.name())
        });
        h.update(format!("{path}:{}:{}.{}\n", md.len(), md.mtime(), md.mtime_nsec()));
    }
    hex(&h.finalize())[..16].to_string()
}

/// Adds the shared libraries and dynamic loader of `bins` at the paths the host
/// loader resolves them to, which the image's loader searches too.
fn add_libs(l: &mut Layer, bins: &[PathBuf]) {
    for lib in ldd(bins) {
        l.host(&lib, Path::new(&lib));
    }
}

/// Absolute paths of the libraries (and loader) `ldd` resolves for `bins`.
fn ldd(bins: &[PathBuf]) -> BTreeSet<String> {
    let out = Command::new("ldd").args(bins).output().expect("run ldd (libc-bin)");
    let mut libs = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        assert!(!line.contains("not found"), "ldd {bins:?}: {line}");
        // "libc.so.6 => /lib/.../libc.so.6 (0x..)" or "/lib64/ld-linux-x86-64.so.2 (0x..)";
        // vdso lines have no path and per-file headers have no address.
        let rhs = line.split_once("=>").map_or(line, |(_, r)| r).trim();
        if let Some(path) = rhs.split_whitespace().next() {
            if path.starts_with('/') && rhs.contains("(0x") {
                libs.insert(path.to_string());
            }
        }
    }
    assert!(!libs.is_empty(), "ldd found no libraries for {bins:?}");
    libs
}

/// Writes `bytes` as a blob; returns its descriptor fields (digest, size).
fn put_blob(blobs: &Path, bytes: &[u8]) -> (String, u64) {
    let digest = super::sha256_hex(bytes);
    fs::write(blobs.join(&digest), bytes).expect("write blob");
    (format!("sha256:{digest}"), bytes.len() as u64)
}

/// OCI architecture name for the host (Go's GOARCH spelling).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Builds the layout of `f` into the existing empty directory `dir`, bypassing the
/// cache (`oci_layout` is what tests normally want; this checks reproducibility).
pub fn build_layout(f: Fixture, dir: &Path) {
    // Per-image settings, layered over PATH and WorkingDir "/" below.
    let (layer, settings) = match f {
        Fixture::Busybox => (None, json!({"Cmd": ["sh"]})),
        Fixture::Redis => (
            Some(redis_layer()),
            json!({"Cmd": ["redis-server", "--protected-mode", "no"], "WorkingDir": "/data",
                   "ExposedPorts": {"6379/tcp": {}}}),
        ),
        Fixture::Nginx => (
            Some(nginx_layer()),
            json!({"Cmd": ["nginx", "-g", "daemon off;"], "ExposedPorts": {"80/tcp": {}},
                   "StopSignal": "SIGQUIT"}),
        ),
        Fixture::Python => {
            (Some(python_layer()), json!({"Env": [PATH_ENV, "LANG=C.UTF-8"], "Cmd": ["python3"]}))
        }
    };
    let mut cfg = json!({"Env": [PATH_ENV], "Cmd": [], "WorkingDir": "/"});
    for (key, value) in settings.as_object().expect("settings object") {
        cfg[key] = value.clone();
    }
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).expect("create blobs dir");
    let layers: Vec<Layer> = std::iter::once(base_layer()).chain(layer).collect();
    let written: Vec<_> = layers.iter().map(|l| l.write(&blobs)).collect();

    let history: Vec<Value> = layers
        .iter()
        .map(|l| json!({"created": CREATED, "created_by": format!("devenv fixture builder: {}", l.comment)}))
        .collect();
    let config = json!({
        "created": CREATED,
        "architecture": host_arch(),
        "os": "linux",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": written.iter().map(|w| &w.2).collect::<Vec<_>>()},
        "history": history,
    });
    let (config_digest, config_size) = put_blob(&blobs, &serde_json::to_vec(&config).unwrap());
    let layer_descs: Vec<Value> = written
        .iter()
        .map(|(digest, size, _)| json!({"mediaType": LAYER_TYPE, "digest": digest, "size": size}))
        .collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config_size},
        "layers": layer_descs,
    });
    let (manifest_digest, manifest_size) =
        put_blob(&blobs, &serde_json::to_vec(&manifest).unwrap());
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest_size,
            "platform": {"architecture": host_arch(), "os": "linux"},
            "annotations": {"org.opencontainers.image.ref.name": REF_NAME},
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap())
        .expect("write index.json");
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#)
        .expect("write oci-layout");
}

/// busybox-static with every applet linked in /bin, the /etc files programs
/// expect, and empty mount points the runtime fills in.
fn base_layer() -> Layer {
    let mut l = Layer::new("base: busybox-static, /etc skeleton");
    for d in "bin dev etc home proc run sbin sys usr/bin usr/sbin usr/local/bin var".split(' ') {
        l.dir(d, 0o755, 0);
    }
    l.dir("root", 0o700, 0);
    l.dir("tmp", 0o1777, 0);
    l.dir("var/tmp", 0o1777, 0);
    l.host("bin/busybox", Path::new(BUSYBOX));
    let out = Command::new(BUSYBOX).arg("--list").output().expect("run busybox --list");
    let list = String::from_utf8(out.stdout).expect("applet list is UTF-8");
    let applets: BTreeSet<&str> =
        list.lines().filter(|a| !a.is_empty() && *a != "busybox").collect();
    for a in REQUIRED_APPLETS.split_whitespace() {
        assert!(applets.contains(a), "host busybox lacks the {a} applet");
    }
    for a in applets {
        l.link(&format!("bin/{a}"), "busybox");
    }
    l.text(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/www:/bin/false\n\
         redis:x:999:999:redis:/data:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    l.text(
        "etc/group",
        "root:x:0:\nwww-data:x:33:\nredis:x:999:\nnogroup:x:65534:\nnobody:x:65534:\n",
    );
    // glibc programs (nginx's getpwnam) consult this; busybox ignores it.
    l.text("etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n");
    l.text("etc/hosts", "");
    l.text("etc/resolv.conf", "");
    l
}

fn redis_layer() -> Layer {
    let mut l = Layer::new("redis-server, redis-cli and their libraries");
    let bins = [PathBuf::from("/usr/bin/redis-server"), PathBuf::from("/usr/bin/redis-cli")];
    for b in &bins {
        // redis-server is a symlink to redis-check-rdb on Debian; copying the
        // target under the name keeps redis in server mode (it checks argv[0]).
        l.host(b.to_str().unwrap(), b);
    }
    add_libs(&mut l, &bins);
    l.dir("data", 0o755, REDIS);
    l
}

const NGINX_CONF: &str = "# devenv test fixture: minimal nginx configuration
user www-data;
worker_processes 1;
pid /run/nginx.pid;
error_log stderr notice;

events {
    worker_connections 256;
}

http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    keepalive_timeout 65;
    include /etc/nginx/conf.d/*.conf;
}
";

const NGINX_DEFAULT_SERVER: &str = "server {
    listen 80;
    listen [::]:80;
    server_name localhost;
    root /usr/share/nginx/html;
    index index.html;
}
";

fn nginx_layer() -> Layer {
    let mut l = Layer::new("nginx-light, its libraries and a minimal configuration");
    let bin = PathBuf::from("/usr/sbin/nginx");
    l.host("usr/sbin/nginx", &bin);
    add_libs(&mut l, &[bin]);
    l.text("etc/nginx/nginx.conf", NGINX_CONF);
    // The server lives in conf.d like in the official image, so a project can
    // replace it by mounting its own default.conf.
    l.text("etc/nginx/conf.d/default.conf", NGINX_DEFAULT_SERVER);
    l.host("etc/nginx/mime.types", Path::new("/etc/nginx/mime.types"));
    l.text("usr/share/nginx/html/index.html", "<h1>devenv nginx fixture</h1>\n");
    // Compiled-in temp paths; nginx would create them, but only as root.
    for t in ["body", "fastcgi", "proxy", "scgi", "uwsgi"] {
        l.dir(&format!("var/lib/nginx/{t}"), 0o700, WWW_DATA);
    }
    // Compiled-in log paths, pointed at the container's output like upstream's image.
    l.link("var/log/nginx/access.log", "/dev/stdout");
    l.link("var/log/nginx/error.log", "/dev/stderr");
    l
}

/// Parts of the stdlib that no fixture user needs: tests, GUI, bundled pip,
/// bytecode (stale anyway once mtimes are normalised), the static libpython
/// and extension modules that pull in Kerberos or Berkeley DB.
fn skip_python(name: &str) -> bool {
    const NAMES: &str =
        "__pycache__ test tests idlelib tkinter turtledemo ensurepip sitecustomize.py";
    const PREFIXES: &str =
        "config-3 _test _ctypes_test _xxtestfuzz xxlimited nis. ossaudiodev _dbm. _tkinter";
    NAMES.split(' ').any(|n| n == name) || PREFIXES.split(' ').any(|p| name.starts_with(p))
}

fn python_layer() -> Layer {
    let mut l = Layer::new("python3.11, its libraries and standard library");
    let bin = PathBuf::from(format!("/usr/bin/{PYTHON}"));
    l.host(bin.to_str().unwrap(), &bin);
    l.link("usr/bin/python3", PYTHON);
    l.link("usr/bin/python", "python3");
    let mut modules = vec![bin];
    let mut stack = vec![PathBuf::from(format!("/usr/lib/{PYTHON}"))];
    while let Some(dir) = stack.pop() {
        l.dir(dir.to_str().unwrap(), 0o755, 0);
        for entry in fs::read_dir(&dir).expect("read stdlib dir").flatten() {
            let path = entry.path();
            if skip_python(&entry.file_name().to_string_lossy()) {
                continue;
            }
            // Follows symlinks (e.g. _sysconfigdata); dangling ones are skipped.
            let Ok(md) = fs::metadata(&path) else { continue };
            if md.is_dir() {
                stack.push(path);
            } else if md.is_file() {
                if path.extension().is_some_and(|e| e == "so") {
                    modules.push(path.clone());
                }
                l.host(path.to_str().unwrap(), &path);
            }
        }
    }
    add_libs(&mut l, &modules);
    l
}
