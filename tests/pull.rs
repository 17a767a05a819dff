//! Pulling from a real registry (Debian's docker-registry on loopback, anonymous, plain HTTP):
//! fixture images pushed with skopeo, pulled with `devenv::image::pull::pull` into a fresh store,
//! then checked against what was pushed. Faults (auth, 5xx, broken connections, bad digests) use
//! the fault-injecting harness and live in their own tests.
//!
//! Unpacking keeps owners and makes device nodes, so these tests need root; without it they say
//! so and pass without checking.

mod support;

use std::collections::BTreeSet;
use std::sync::Mutex;

use devenv::image::pull::{PullError, PullProgress};
use devenv::image::{Digest, ImageInfo, Reference, Store};
use devenv::registry::RegistryConfig;

use support::images::{oci_layout, Fixture};
use support::registry::Registry;
use support::{is_root, layer_digests, manifest_digest};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    Resolved(String, usize),
    Cached(String),
    Bytes(String),
    Done(String),
    Retry(String),
    Finished(String),
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Recorder {
    fn push(&self, e: Event) {
        self.0.lock().unwrap().push(e);
    }
    fn events(&self) -> Vec<Event> {
        self.0.lock().unwrap().clone()
    }
}

impl PullProgress for Recorder {
    fn resolved(&self, _: &Reference, manifest: &Digest, layers: &[(Digest, u64)]) {
        self.push(Event::Resolved(manifest.to_string(), layers.len()));
    }
    fn layer_cached(&self, _: &Reference, layer: &Digest) {
        self.push(Event::Cached(layer.to_string()));
    }
    fn layer_bytes(&self, _: &Reference, layer: &Digest, _: u64) {
        self.push(Event::Bytes(layer.to_string()));
    }
    fn layer_done(&self, _: &Reference, layer: &Digest) {
        self.push(Event::Done(layer.to_string()));
    }
    fn retry(&self, _: &Reference, what: &str, _: u32, error: &str) {
        self.push(Event::Retry(format!("{what}: {error}")));
    }
    fn done(&self, image: &Reference, _: &ImageInfo) {
        self.push(Event::Finished(image.to_string()));
    }
}

/// Pulls one at a time, and checks that no runtime thread outlives the pull (`up -d` forks right
/// after pulling). Serialized so that another test's pull is not counted.
fn pull(
    store: &Store,
    images: &[Reference],
    config: &RegistryConfig,
    progress: &dyn PullProgress,
) -> Vec<Result<ImageInfo, PullError>> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let results = devenv::image::pull::pull(store, images, config, progress);
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_string())
        .filter(|c| c.starts_with("tokio"))
        .collect();
    assert!(threads.is_empty(), "threads left running after pull: {threads:?}");
    results
}

fn skip_unless_root() -> bool {
    if !is_root() {
        eprintln!("skipping: unpacking layers needs root (chown, mknod, trusted xattrs)");
    }
    !is_root()
}

fn config() -> RegistryConfig {
    // No auth file: the test must not depend on the user's docker logins.
    RegistryConfig::default()
}

fn reference(s: &str) -> Reference {
    Reference::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn pulls_pushed_images_then_fetches_nothing_again() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start();
    let fixtures = [Fixture::Busybox, Fixture::Redis];
    for f in fixtures {
        reg.push(f, &format!("devenv-test/{}:latest", f.name()));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let refs: Vec<Reference> = fixtures
        .iter()
        .map(|f| reference(&format!("{}/devenv-test/{}", reg.addr(), f.name())))
        .collect();

    let rec = Recorder::default();
    let results = pull(&store, &refs, &config(), &rec);
    assert_eq!(results.len(), 2);
    for ((f, r), result) in fixtures.iter().zip(&refs).zip(results) {
        let info = result.unwrap_or_else(|e| panic!("pull {r}: {e}"));
        let layout = oci_layout(*f);
        assert_eq!(info.manifest_digest.to_string(), manifest_digest(&layout), "{r}");
        assert_eq!(info.reference, *r);
        let stored = store.resolve(r).unwrap().expect("tagged in the store");
        assert_eq!(stored.manifest_digest, info.manifest_digest);
        assert_eq!(stored.layers.len(), layer_digests(&layout).len());
        assert!(
            stored.layers.iter().any(|l| l.join("bin/busybox").is_file()),
            "{r}: no bin/busybox in {:?}",
            stored.layers
        );
    }
    let redis = store.resolve(&refs[1]).unwrap().unwrap();
    assert!(redis.layers.iter().any(|l| l.join("usr/bin/redis-server").is_file()));

    // Every layer fetched once (the shared base layer may be fetched by either image or found
    // cached by the second), and both images done.
    let events = rec.events();
    let fetched: BTreeSet<String> = events
        .iter()
        .filter_map(|e| if let Event::Done(d) = e { Some(d.clone()) } else { None })
        .collect();
    let all: BTreeSet<String> =
        fixtures.iter().flat_map(|f| layer_digests(&oci_layout(*f))).collect();
    let cached: BTreeSet<String> = events
        .iter()
        .filter_map(|e| if let Event::Cached(d) = e { Some(d.clone()) } else { None })
        .collect();
    assert_eq!(&fetched | &cached, all, "{events:?}");
    assert!(events.iter().all(|e| !matches!(e, Event::Retry(_))), "{events:?}");
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Finished(_))).count(), 2);

    // Again: nothing is downloaded, every layer is reported cached.
    let rec = Recorder::default();
    for result in pull(&store, &refs, &config(), &rec) {
        result.unwrap();
    }
    let events = rec.events();
    assert!(
        events.iter().all(|e| !matches!(e, Event::Bytes(_) | Event::Done(_))),
        "second pull downloaded layers: {events:?}"
    );
    let layer_count: usize = fixtures.iter().map(|f| layer_digests(&oci_layout(*f)).len()).sum();
    assert_eq!(events.iter().filter(|e| matches!(e, Event::Cached(_))).count(), layer_count);
}

#[test]
fn pinned_digest_pull_and_errors_name_the_reference() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start();
    reg.push(Fixture::Busybox, "devenv-test/busybox:1.0");
    let digest = manifest_digest(&oci_layout(Fixture::Busybox));
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();

    let pinned = reference(&format!("{}/devenv-test/busybox@{digest}", reg.addr()));
    let missing_tag = reference(&format!("{}/devenv-test/busybox:nope", reg.addr()));
    let missing_repo = reference(&format!("{}/devenv-test/nothing:1", reg.addr()));
    let wrong_pin =
        reference(&format!("{}/devenv-test/busybox:1.0@sha256:{}", reg.addr(), "0".repeat(64)));
    let results = pull(
        &store,
        &[pinned.clone(), missing_tag, missing_repo, wrong_pin],
        &config(),
        &devenv::image::pull::NoProgress,
    );
    let mut results = results.into_iter();

    let info = results.next().unwrap().expect("pinned pull");
    assert_eq!(info.manifest_digest.to_string(), digest);
    assert_eq!(store.resolve(&pinned).unwrap().unwrap().manifest_digest.to_string(), digest);

    for (what, result) in ["tag", "repository", "pinned digest"].iter().zip(results) {
        let err = result.expect_err(what);
        assert!(matches!(err, PullError::NotFound { .. }), "{what}: {err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&err.reference().to_string()), "{what}: {msg}");
        assert!(msg.contains("404") && msg.contains(&reg.addr()), "{what}: {msg}");
        assert!(msg.contains("UNKNOWN"), "{what}: the registry's answer is in: {msg}");
    }
}

#[test]
fn registry_down_is_a_clear_error() {
    // Bind and close a port: nothing listens on it afterwards.
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    let r = reference(&format!("{addr}/devenv-test/busybox:latest"));
    let started = std::time::Instant::now();
    let err = pull(&store, std::slice::from_ref(&r), &config(), &devenv::image::pull::NoProgress)
        .pop()
        .unwrap()
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&r.to_string()), "{msg}");
    assert!(msg.contains(&format!("cannot reach registry http://{addr}")), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
    assert!(started.elapsed().as_secs() < 5, "not retried for long: {:?}", started.elapsed());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn docker_io_goes_to_mirrors_in_order() {
    if skip_unless_root() {
        return;
    }
    let reg = Registry::start();
    reg.push(Fixture::Busybox, "devenv-test/busybox:latest");
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let config = RegistryConfig {
        mirrors: vec![format!("http://{dead}"), reg.addr()],
        ..RegistryConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("images")).unwrap();
    // A docker.io name: never reaches Docker Hub, since the second mirror has it.
    let r = reference("devenv-test/busybox");
    let rec = Recorder::default();
    let info = pull(&store, std::slice::from_ref(&r), &config, &rec).pop().unwrap().unwrap();
    assert_eq!(info.manifest_digest.to_string(), manifest_digest(&oci_layout(Fixture::Busybox)));
    assert!(store.resolve(&reference("docker.io/devenv-test/busybox:latest")).unwrap().is_some());
    let retries: Vec<Event> =
        rec.events().into_iter().filter(|e| matches!(e, Event::Retry(_))).collect();
    assert_eq!(retries.len(), 1, "{retries:?}");
    let Event::Retry(text) = &retries[0] else { unreachable!() };
    assert!(text.contains(&format!("mirror http://{dead}")) && text.contains("refused"), "{text}");
}

/// A multi-platform index (the host's platform and another) pushed with `skopeo copy --all`:
/// the pull takes the host's manifest and the name resolves to it.
#[test]
fn index_resolves_to_the_host_platform() {
    if skip_unless_root() {
        return;
    }
    use serde_json::json;
    let reg = Registry::start();
    let busybox = oci_layout(Fixture::Busybox);
    let redis = oci_layout(Fixture::Redis);
    // An OCI layout with both images' blobs and an index naming busybox for this machine's
    // platform and redis for another.
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("multi");
    std::fs::create_dir_all(layout.join("blobs/sha256")).unwrap();
    for src in [&busybox, &redis] {
        for entry in std::fs::read_dir(src.join("blobs/sha256")).unwrap() {
            let entry = entry.unwrap();
            let to = layout.join("blobs/sha256").join(entry.file_name());
            if !to.exists() {
                std::fs::copy(entry.path(), to).unwrap();
            }
        }
    }
    std::fs::copy(busybox.join("oci-layout"), layout.join("oci-layout")).unwrap();
    let host = devenv::image::platform::host();
    let other = if host.architecture == "amd64" { "arm64" } else { "amd64" };
    let size = |l: &std::path::Path| {
        let d = manifest_digest(l);
        std::fs::metadata(support::blob_path(l, &d)).unwrap().len()
    };
    let mut host_platform = json!({"os": host.os, "architecture": host.architecture});
    if let Some(v) = &host.variant {
        host_platform["variant"] = json!(v);
    }
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest(&redis),
             "size": size(&redis), "platform": {"os": "linux", "architecture": other}},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest(&busybox),
             "size": size(&busybox), "platform": host_platform},
        ]
    });
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_digest = format!("sha256:{}", support::sha256_hex(&index_bytes));
    std::fs::write(layout.join("blobs/sha256").join(&index_digest[7..]), &index_bytes).unwrap();
    let top = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest,
        "size": index_bytes.len(), "annotations": {"org.opencontainers.image.ref.name": "latest"}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["--insecure-policy", "copy", "--all", "--dest-tls-verify=false", "--quiet"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/devenv-test/multi:latest", reg.addr()))
        .output()
        .expect("run skopeo");
    assert!(out.status.success(), "skopeo: {}", String::from_utf8_lossy(&out.stderr));

    let store = Store::open(dir.path().join("images")).unwrap();
    let tagged = reference(&format!("{}/devenv-test/multi", reg.addr()));
    let pinned = reference(&format!("{}/devenv-test/multi@{index_digest}", reg.addr()));
    for r in [tagged, pinned] {
        let info =
            pull(&store, std::slice::from_ref(&r), &config(), &devenv::image::pull::NoProgress)
                .pop()
                .unwrap()
                .unwrap_or_else(|e| panic!("{r}: {e}"));
        assert_eq!(info.manifest_digest.to_string(), manifest_digest(&busybox), "{r}");
        let stored = store.resolve(&r).unwrap().unwrap();
        assert_eq!(stored.manifest_digest, info.manifest_digest);
        assert!(store.has_blob(&index_digest.parse().unwrap()), "the index is kept");
    }
}

#[test]
fn login_checks_the_registry_and_writes_the_auth_file() {
    let reg = Registry::start();
    let dir = tempfile::tempdir().unwrap();
    let auth_file = dir.path().join("docker/config.json");
    let config = RegistryConfig { auth_file: Some(auth_file.clone()), ..RegistryConfig::default() };
    // The test registry is anonymous: any credentials pass its `GET /v2/`.
    devenv::registry::login(&reg.addr(), "alice", "s3cret", &config).unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&auth_file).unwrap()).unwrap();
    let auth = json["auths"][reg.addr()]["auth"].as_str().unwrap();
    assert_eq!(devenv::registry::authfile::decode_auth(auth).unwrap().user, "alice");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&auth_file).unwrap().permissions().mode() & 0o777, 0o600);

    // A registry that is not there: nothing is written.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let other = dir.path().join("other.json");
    let config = RegistryConfig { auth_file: Some(other.clone()), ..RegistryConfig::default() };
    let err = devenv::registry::login(&dead.to_string(), "a", "b", &config).unwrap_err();
    assert!(err.to_string().contains(&format!("cannot reach registry http://{dead}")), "{err}");
    assert!(!other.exists());
}
