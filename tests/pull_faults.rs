//! Pulling when things go wrong, and the fixtures that exercise the unpacker: registries that
//! want credentials (htpasswd basic auth, the token flow), a fault-injecting proxy in front of a
//! registry (5xx, connections cut mid-blob, corrupted blobs), layers with whiteouts, a zstd layer
//! and a multi-platform index. Each case checks what a user would: the error names the full
//! reference and what the registry answered, and a failed pull leaves the store as it was (no
//! name, no new blob or layer, nothing that a later pull would take as complete).
//!
//! "Image not found" and "registry down" are in tests/pull.rs.
//!
//! Unpacking keeps owners and makes device nodes, so these tests need root; without it they say
//! so and pass without checking.

mod support;

use std::collections::BTreeSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use devenv::image::pull::{PullError, PullProgress};
use devenv::image::{Digest, ImageInfo, Reference, Store};
use devenv::registry::RegistryConfig;

use support::faults::{Fault, FaultProxy};
use support::images::{oci_layout, Fixture};
use support::pull_images::{
    layered_layout, multiarch_layout, platform_marker, zstd_layout, LAYERED_ABSENT, LAYERED_PRESENT,
};
use support::registry::{Auth, Registry};
use support::{blob_path, is_root, layer_digests, manifest_digest, read_json};

#[derive(Default)]
struct Recorder {
    retries: Mutex<Vec<String>>,
    done: Mutex<Vec<String>>,
}

impl Recorder {
    fn retries(&self) -> Vec<String> {
        self.retries.lock().unwrap().clone()
    }
}

impl PullProgress for Recorder {
    fn layer_done(&self, _: &Reference, layer: &Digest) {
        self.done.lock().unwrap().push(layer.to_string());
    }
    fn retry(&self, _: &Reference, what: &str, attempt: u32, error: &str) {
        self.retries.lock().unwrap().push(format!("{what} (attempt {attempt}): {error}"));
    }
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipping: unpacking layers needs root (chown, mknod, trusted xattrs)");
    }
    !is_root()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

// PullError is as the library returns it (see the allow in src/image/pull.rs).
#[allow(clippy::result_large_err)]
fn pull_one(
    store: &Store,
    r: &Reference,
    config: &RegistryConfig,
    progress: &dyn PullProgress,
) -> Result<ImageInfo, PullError> {
    let mut results = devenv::image::pull::pull(store, std::slice::from_ref(r), config, progress);
    assert_eq!(results.len(), 1);
    results.pop().unwrap()
}

/// A fresh store in a temp dir (kept alive by the returned TempDir).
fn new_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    (dir, store)
}

/// What is in the store: names, blobs, layer directories, temp files.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    names: Vec<String>,
    blobs: BTreeSet<String>,
    layers: BTreeSet<String>,
    tmp: BTreeSet<String>,
}

fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        // The store's own lock files may come and go.
        .filter(|n| !n.ends_with(".lock"))
        .collect()
}

fn snapshot(store: &Store) -> Snapshot {
    let root = store.root();
    Snapshot {
        names: store.list().unwrap().iter().map(|s| format!("{s:?}")).collect(),
        blobs: listing(&root.join("blobs/sha256")),
        layers: listing(&root.join("layers")),
        tmp: listing(&root.join("tmp")),
    }
}

/// A failed pull left no trace: the same snapshot, and the name does not resolve.
fn assert_unchanged(store: &Store, before: &Snapshot, r: &Reference) {
    assert_eq!(&snapshot(store), before, "the failed pull of {r} changed the store");
    assert!(store.resolve(r).unwrap().is_none(), "{r} resolves after a failed pull");
}

/// A docker config.json holding `user:password` for `addr`, in `dir`.
fn auth_config(dir: &Path, addr: &str, user: &str, password: &str) -> RegistryConfig {
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    let json = serde_json::json!({"auths": {addr: {"auth": auth}}});
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();
    RegistryConfig { auth_file: Some(path), ..RegistryConfig::default() }
}

/// A config whose auth file exists but is empty: no credentials, and none of the user's.
fn no_credentials(dir: &Path) -> RegistryConfig {
    let path = dir.join("empty.json");
    std::fs::write(&path, "{}").unwrap();
    RegistryConfig { auth_file: Some(path), ..RegistryConfig::default() }
}

/// The zstd fixture pulled, as it must look in the store.
fn assert_zstd_pulled(store: &Store, r: &Reference, result: Result<ImageInfo, PullError>) {
    let info = result.unwrap_or_else(|e| panic!("pull {r}: {e}"));
    assert_eq!(info.manifest_digest.to_string(), manifest_digest(&zstd_layout()));
    assert_zstd_in_store(store, r);
}

fn assert_zstd_in_store(store: &Store, r: &Reference) {
    let stored = store.resolve(r).unwrap().expect("tagged in the store");
    assert_eq!(stored.layers.len(), 1);
    assert_eq!(
        std::fs::read_to_string(stored.layers[0].join("zstd.txt")).unwrap(),
        "this layer is compressed with zstd\n"
    );
}

fn assert_unauthorized(err: &PullError, r: &Reference, reg: &Registry, with_credentials: bool) {
    let msg = err.to_string();
    assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.reference(), r);
    assert!(msg.contains(&r.to_string()), "names the reference: {msg}");
    assert!(msg.contains("unauthorized") && msg.contains("401"), "{msg}");
    assert!(msg.contains(&format!("devenv login {}", reg.addr())), "says how to log in: {msg}");
    let how = if with_credentials { "to the stored credentials" } else { "without credentials" };
    assert!(msg.contains(how), "{msg}");
}

#[test]
fn htpasswd_registry_pulls_with_stored_credentials_only() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with(Auth::htpasswd("alice", "s3cret pass"));
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    let r = reference(&format!("{}/devenv-test/zstd:latest", reg.addr()));
    let dir = tempfile::tempdir().unwrap();

    // Without credentials, and with a wrong password: unauthorized, nothing stored.
    let (_d, store) = new_store();
    let before = snapshot(&store);
    let err = pull_one(&store, &r, &no_credentials(dir.path()), &Recorder::default()).unwrap_err();
    assert_unauthorized(&err, &r, &reg, false);
    assert_unchanged(&store, &before, &r);
    let wrong = auth_config(dir.path(), &reg.addr(), "alice", "wrong");
    let err = pull_one(&store, &r, &wrong, &Recorder::default()).unwrap_err();
    assert_unauthorized(&err, &r, &reg, true);
    assert_unchanged(&store, &before, &r);

    let good = auth_config(dir.path(), &reg.addr(), "alice", "s3cret pass");
    let result = pull_one(&store, &r, &good, &Recorder::default());
    assert_zstd_pulled(&store, &r, result);
}

#[test]
fn token_registry_with_credentials() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with(Auth::token("bob", "hunter2", false));
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    let r = reference(&format!("{}/devenv-test/zstd:latest", reg.addr()));
    let dir = tempfile::tempdir().unwrap();
    let (_d, store) = new_store();
    let before = snapshot(&store);

    // Anonymous: the token server gives a token that grants nothing, the registry says 401.
    let err = pull_one(&store, &r, &no_credentials(dir.path()), &Recorder::default()).unwrap_err();
    assert_unauthorized(&err, &r, &reg, false);
    assert_unchanged(&store, &before, &r);

    // A wrong password: the token server itself says 401, with its reason.
    let seen = reg.token_requests().len();
    let wrong = auth_config(dir.path(), &reg.addr(), "bob", "nope");
    let err = pull_one(&store, &r, &wrong, &Recorder::default()).unwrap_err();
    assert_unauthorized(&err, &r, &reg, true);
    assert!(err.to_string().contains("UNAUTHORIZED"), "the token server's answer: {err}");
    assert_unchanged(&store, &before, &r);
    let asked = &reg.token_requests()[seen..];
    assert!(asked.iter().all(|t| t.status == 401 && t.user.as_deref() == Some("bob")), "{asked:?}");

    let seen = reg.token_requests().len();
    let good = auth_config(dir.path(), &reg.addr(), "bob", "hunter2");
    let result = pull_one(&store, &r, &good, &Recorder::default());
    assert_zstd_pulled(&store, &r, result);
    let asked = &reg.token_requests()[seen..];
    // One token for the whole pull (manifest, config, layer share it).
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].user.as_deref(), Some("bob"));
    assert_eq!(asked[0].scopes, ["repository:devenv-test/zstd:pull"]);
    assert_eq!(asked[0].granted, ["repository:devenv-test/zstd:pull"]);
}

#[test]
fn token_registry_with_anonymous_pull() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start_with(Auth::token("bob", "hunter2", true));
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    let r = reference(&format!("{}/devenv-test/zstd:latest", reg.addr()));
    let dir = tempfile::tempdir().unwrap();
    let (_d, store) = new_store();
    let result = pull_one(&store, &r, &no_credentials(dir.path()), &Recorder::default());
    assert_zstd_pulled(&store, &r, result);
    let asked = reg.token_requests();
    let last = asked.last().unwrap();
    assert_eq!((last.user.as_deref(), last.status), (None, 200), "{asked:?}");
    assert_eq!(last.scopes, ["repository:devenv-test/zstd:pull"]);
}

/// An anonymous registry holding busybox (one 1.2 MB layer, so a cut after 1000 bytes is a real
/// cut), and its reference through `proxy`.
fn busybox_registry() -> Registry {
    let reg = Registry::start();
    reg.push(Fixture::Busybox, "devenv-test/busybox:latest");
    reg
}

fn through(proxy: &FaultProxy) -> Reference {
    reference(&format!("{}/devenv-test/busybox:latest", proxy.addr()))
}

fn busybox_layer() -> String {
    let layers = layer_digests(&oci_layout(Fixture::Busybox));
    assert_eq!(layers.len(), 1);
    layers[0].clone()
}

fn assert_busybox_pulled(store: &Store, r: &Reference, result: Result<ImageInfo, PullError>) {
    let info = result.unwrap_or_else(|e| panic!("pull {r}: {e}"));
    assert_eq!(info.manifest_digest.to_string(), manifest_digest(&oci_layout(Fixture::Busybox)));
    let stored = store.resolve(r).unwrap().expect("tagged in the store");
    assert!(stored.layers[0].join("bin/busybox").is_file());
}

#[test]
fn server_errors_on_blobs_are_retried_then_reported() {
    if skip_unless_root() {
        return;
    }
    let reg = busybox_registry();

    // Twice 500, then the answers: the pull gets there, and says it retried.
    let proxy = FaultProxy::start(&reg.addr(), Fault::Status500OnBlobs { times: 2 });
    let r = through(&proxy);
    let (_d, store) = new_store();
    let rec = Recorder::default();
    assert_busybox_pulled(&store, &r, pull_one(&store, &r, &RegistryConfig::default(), &rec));
    let retries = rec.retries();
    assert_eq!(retries.len(), 2, "{retries:?}");
    assert!(
        retries.iter().all(|t| t.contains("500") && t.contains("injected fault")),
        "{retries:?}"
    );

    // Always 500: a clear error after the retries (200 + 400 + 800 ms of waiting), and nothing
    // stored.
    proxy.set_fault(Fault::Status500OnBlobs { times: 100 });
    let (_d, store) = new_store();
    let before = snapshot(&store);
    let started = Instant::now();
    let rec = Recorder::default();
    let err = pull_one(&store, &r, &RegistryConfig::default(), &rec).unwrap_err();
    let took = started.elapsed();
    let msg = err.to_string();
    assert!(matches!(err, PullError::Registry { .. }), "{err:?}");
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(msg.contains(&format!("{} answered 500", proxy.addr())), "{msg}");
    assert!(msg.contains("UNKNOWN: injected fault"), "the registry's answer: {msg}");
    assert_eq!(rec.retries().len(), 3, "{:?}", rec.retries());
    assert!(took >= Duration::from_millis(1400), "backed off: {took:?}");
    assert!(took < Duration::from_secs(5), "gave up in bounded time: {took:?}");
    assert_unchanged(&store, &before, &r);
}

#[test]
fn a_cut_layer_download_resumes() {
    if skip_unless_root() {
        return;
    }
    let reg = busybox_registry();
    let layer = busybox_layer();
    let layer_size =
        std::fs::metadata(blob_path(&oci_layout(Fixture::Busybox), &layer)).unwrap().len();
    // The config (423 bytes) is fetched first and passes a 1000-byte cut whole, using up one
    // of the faults: `times: 2` cuts the layer once.
    let proxy = FaultProxy::start(&reg.addr(), Fault::CloseMidBlob { after_bytes: 1000, times: 2 });
    let r = through(&proxy);
    let (_d, store) = new_store();
    let rec = Recorder::default();
    assert_busybox_pulled(&store, &r, pull_one(&store, &r, &RegistryConfig::default(), &rec));
    let layer_gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|q| q.is_blob_get() && q.target.ends_with(&layer))
        .collect();
    assert_eq!(layer_gets.len(), 2, "{layer_gets:?}");
    assert!(layer_gets[0].faulted && layer_gets[0].body_bytes == 1000, "{layer_gets:?}");
    assert_eq!(layer_gets[1].range.as_deref(), Some("bytes=1000-"), "resumed: {layer_gets:?}");
    assert_eq!((layer_gets[1].status, layer_gets[1].body_bytes), (206, layer_size - 1000));
    assert_eq!(rec.retries().len(), 1, "{:?}", rec.retries());
    assert_eq!(*rec.done.lock().unwrap(), [layer]);
}

#[test]
fn a_cut_config_download_is_retried() {
    if skip_unless_root() {
        return;
    }
    let reg = busybox_registry();
    // 100 bytes cuts the config blob (and then the layer) once each.
    let proxy = FaultProxy::start(&reg.addr(), Fault::CloseMidBlob { after_bytes: 100, times: 2 });
    let r = through(&proxy);
    let (_d, store) = new_store();
    let rec = Recorder::default();
    assert_busybox_pulled(&store, &r, pull_one(&store, &r, &RegistryConfig::default(), &rec));
    assert_eq!(rec.retries().len(), 2, "{:?}", rec.retries());
}

#[test]
fn an_interrupted_pull_leaves_nothing_and_the_next_one_works() {
    if skip_unless_root() {
        return;
    }
    let reg = busybox_registry();
    let proxy =
        FaultProxy::start(&reg.addr(), Fault::CloseMidBlob { after_bytes: 1000, times: 100 });
    let r = through(&proxy);
    let (_d, store) = new_store();
    let before = snapshot(&store);
    let started = Instant::now();
    let err = pull_one(&store, &r, &RegistryConfig::default(), &Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PullError::Registry { .. }), "{err:?}");
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(msg.contains(&format!("blob {}", busybox_layer())), "names the blob: {msg}");
    assert!(msg.contains(&format!("connection to {}", proxy.addr())), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_unchanged(&store, &before, &r);

    // The same store, a working connection: everything is fetched and resolves.
    proxy.set_fault(Fault::None);
    let rec = Recorder::default();
    assert_busybox_pulled(&store, &r, pull_one(&store, &r, &RegistryConfig::default(), &rec));
    assert_eq!(*rec.done.lock().unwrap(), [busybox_layer()]);
}

#[test]
fn corrupted_blobs_are_refused_and_not_kept() {
    if skip_unless_root() {
        return;
    }
    let reg = busybox_registry();
    let layout = oci_layout(Fixture::Busybox);
    let manifest = read_json(&blob_path(&layout, &manifest_digest(&layout)));
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_string();
    let layer = busybox_layer();
    let proxy = FaultProxy::start(&reg.addr(), Fault::CorruptBlob);
    let r = through(&proxy);
    let (_d, store) = new_store();

    // The config comes first and is refused.
    let before = snapshot(&store);
    let err = pull_one(&store, &r, &RegistryConfig::default(), &Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PullError::Store { .. }), "{err:?}");
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(
        msg.contains(&format!("blob {config_digest}: content has digest")),
        "a digest mismatch naming the blob: {msg}"
    );
    assert_unchanged(&store, &before, &r);

    // With the config already stored, the layer is what comes corrupted: refused, no layer.
    let bytes = std::fs::read(blob_path(&layout, &config_digest)).unwrap();
    store.put_blob(Some(&config_digest.parse().unwrap()), &bytes[..]).unwrap();
    let before = snapshot(&store);
    let err = pull_one(&store, &r, &RegistryConfig::default(), &Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PullError::Store { .. }), "{err:?}");
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(msg.contains(&format!("blob {layer}: content has digest")), "{msg}");
    assert_unchanged(&store, &before, &r);
    // Not retried: the same bytes would come again.
    let layer_gets =
        proxy.requests().iter().filter(|q| q.is_blob_get() && q.target.ends_with(&layer)).count();
    assert_eq!(layer_gets, 1);

    // Nothing half-done is taken for complete: a clean pull fetches and unpacks it all.
    proxy.set_fault(Fault::None);
    let rec = Recorder::default();
    assert_busybox_pulled(&store, &r, pull_one(&store, &r, &RegistryConfig::default(), &rec));
    assert_eq!(*rec.done.lock().unwrap(), [layer]);
}

/// What a path is in the overlay of `layers` (lowest first), as overlayfs would show it: the
/// topmost entry, unless a whiteout (a 0/0 character device) or an opaque directory on the way
/// hides the lower ones.
fn overlay_lookup(layers: &[PathBuf], path: &str) -> Option<PathBuf> {
    let comps: Vec<&str> = path.split('/').collect();
    let mut visible: Vec<&PathBuf> = layers.iter().rev().collect();
    let mut rel = PathBuf::new();
    for (i, c) in comps.iter().enumerate() {
        rel.push(c);
        let last = i + 1 == comps.len();
        let mut next = Vec::new();
        for layer in visible {
            let p = layer.join(&rel);
            let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
            if meta.file_type().is_char_device() && meta.rdev() == 0 {
                break;
            }
            if last {
                return Some(p);
            }
            if !meta.is_dir() {
                break;
            }
            next.push(layer);
            if opaque(&p) {
                break;
            }
        }
        if next.is_empty() {
            return None;
        }
        visible = next;
    }
    None
}

fn opaque(dir: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(rustix::fs::lgetxattr(dir, "trusted.overlay.opaque", &mut buf), Ok(1) if buf[0] == b'y')
}

#[test]
fn whiteouts_zstd_layers_and_platform_indexes() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start();
    reg.push_layout(&layered_layout(), "devenv-test/layered:latest");
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    reg.push_layout(&multiarch_layout(), "devenv-test/multi:latest");
    let (_d, store) = new_store();
    let refs: Vec<Reference> = ["layered", "zstd", "multi"]
        .iter()
        .map(|n| reference(&format!("{}/devenv-test/{n}:latest", reg.addr())))
        .collect();
    let results =
        devenv::image::pull::pull(&store, &refs, &RegistryConfig::default(), &Recorder::default());
    for (r, result) in refs.iter().zip(&results) {
        assert!(result.is_ok(), "pull {r}: {:?}", result.as_ref().unwrap_err());
    }

    // Layered: layer 2's whiteouts are overlayfs whiteouts, and the overlay shows the fixture's
    // rootfs.
    let layered = store.resolve(&refs[0]).unwrap().unwrap();
    assert_eq!(layered.layers.len(), 3);
    let l2 = &layered.layers[1];
    for gone in ["remove-me.txt", "gone-dir"] {
        let meta = std::fs::symlink_metadata(l2.join(gone)).unwrap();
        assert!(meta.file_type().is_char_device() && meta.rdev() == 0, "{gone}: {meta:?}");
        assert!(!l2.join(format!(".wh.{gone}")).exists());
    }
    assert!(opaque(&l2.join("data")), "data/ is opaque in layer 2");
    assert!(!l2.join("data/.wh..wh..opq").exists());
    assert!(!opaque(&layered.layers[0].join("data")));
    for (path, content) in LAYERED_PRESENT {
        let found = overlay_lookup(&layered.layers, path).unwrap_or_else(|| panic!("{path}"));
        assert_eq!(std::fs::read_to_string(&found).unwrap(), *content, "{path}");
    }
    for path in LAYERED_ABSENT {
        assert_eq!(overlay_lookup(&layered.layers, path), None, "{path}");
    }

    // zstd: unpacked.
    assert_zstd_in_store(&store, &refs[1]);

    // The index: this machine's image.
    let arch = support::images::host_arch();
    if arch == "amd64" || arch == "arm64" {
        let multi = store.resolve(&refs[2]).unwrap().unwrap();
        let found = overlay_lookup(&multi.layers, "platform").unwrap();
        assert_eq!(std::fs::read_to_string(found).unwrap(), platform_marker(arch));
    }
}
