//! Checks the registry test harness itself with real clients (curl, skopeo), not
//! devenv's pull code: the three kinds of registry auth, the pull fixtures (whiteouts,
//! an image index, a zstd layer) and the fault-injecting proxy. None of it needs root.

mod support;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use support::faults::{Fault, FaultProxy};
use support::images::{oci_layout, Fixture, INDEX_TYPE, MANIFEST_TYPE};
use support::pull_images::{
    layered_layout, multiarch_layout, platform_marker, zstd_layout, LAYERED_ABSENT,
    LAYERED_PRESENT, ZSTD_LAYER_TYPE,
};
use support::registry::{down_addr, Auth, Registry, ACCEPT_MANIFESTS};
use support::token::{TOKEN_ISSUER, TOKEN_SERVICE};
use support::{blob_path, layer_digests, manifest_digest, read_json, sha256_hex};

/// An HTTP answer as curl saw it.
struct Resp {
    /// curl's exit code (0, 7 connection refused, 18 partial body, ...).
    exit: i32,
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e} in body of {}:\n{}", self.status, String::from_utf8_lossy(&self.body))
        })
    }
}

/// `curl ARGS URL` without --fail, keeping the head (written to a file, so a cut body
/// still leaves it readable).
fn curl(args: &[&str], url: &str) -> Resp {
    let head_file = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("curl")
        .args(["--silent", "--noproxy", "*", "--max-time", "20", "--dump-header"])
        .arg(head_file.path())
        .args(args)
        .arg(url)
        .output()
        .expect("run curl");
    let heads = std::fs::read_to_string(head_file.path()).unwrap_or_default();
    // With --retry the file holds every attempt's head: keep the last.
    let head = heads.rsplit_once("\nHTTP/").map_or(heads.clone(), |(_, h)| format!("HTTP/{h}"));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    Resp { exit: out.status.code().unwrap_or(-1), status, head, body: out.stdout }
}

fn skopeo(args: &[&str]) -> Result<String, String> {
    let out =
        Command::new("skopeo").args(["--insecure-policy"]).args(args).output().expect("run skopeo");
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn inspect_raw(reg: &Registry, image: &str, creds: Option<&str>) -> Value {
    let target = format!("docker://{}/{image}", reg.addr());
    let mut args = vec!["inspect", "--raw", "--tls-verify=false"];
    let creds_arg;
    if let Some(c) = creds {
        creds_arg = format!("--creds={c}");
        args.push(&creds_arg);
    }
    args.push(&target);
    let raw = skopeo(&args).unwrap_or_else(|e| panic!("skopeo inspect {target}: {e}"));
    serde_json::from_str(&raw).unwrap()
}

/// Decompressed bytes of a gzip or zstd layer blob, by its magic number.
fn decompress(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if blob.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(blob).read_to_end(&mut out).unwrap();
    } else {
        out = zstd::decode_all(blob).expect("zstd layer");
    }
    out
}

/// (path, content) of the regular files in a tar, and the other entries' paths.
fn tar_entries(tar: &[u8]) -> Vec<(String, Option<String>)> {
    let mut archive = tar::Archive::new(tar);
    let mut v = Vec::new();
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let content = if e.header().entry_type().is_file() {
            let mut s = String::new();
            e.read_to_string(&mut s).unwrap();
            Some(s)
        } else {
            None
        };
        v.push((path, content));
    }
    v
}

/// A reference unpacker for the fixture's whiteouts: applies the layers in order to a
/// path -> content map (None for directories).
fn apply_layers(layers: &[Vec<u8>]) -> BTreeMap<String, Option<String>> {
    let mut fs: BTreeMap<String, Option<String>> = BTreeMap::new();
    for layer in layers {
        for (path, content) in tar_entries(&decompress(layer)) {
            let (dir, name) = path.rsplit_once('/').map_or(("", path.as_str()), |(d, n)| (d, n));
            let under = |p: &str, root: &str| p.starts_with(&format!("{root}/"));
            if name == ".wh..wh..opq" {
                fs.retain(|p, _| !under(p, dir));
            } else if let Some(gone) = name.strip_prefix(".wh.") {
                let gone = if dir.is_empty() { gone.to_string() } else { format!("{dir}/{gone}") };
                fs.retain(|p, _| *p != gone && !under(p, &gone));
            } else {
                fs.insert(path, content);
            }
        }
    }
    fs
}

#[test]
fn anonymous_registry_serves_the_layered_fixture() {
    let reg = Registry::start();
    let layout = layered_layout();
    let digest = reg.push_layout(&layout, "devenv-test/layered:latest");
    assert_eq!(digest, manifest_digest(&layout));
    assert_eq!(reg.manifest_digest("devenv-test/layered", "latest"), digest);

    let manifest = inspect_raw(&reg, "devenv-test/layered:latest", None);
    assert_eq!(manifest["mediaType"], MANIFEST_TYPE);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3);
    let inspect: Value = serde_json::from_str(
        &skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/devenv-test/layered:latest", reg.addr()),
        ])
        .unwrap(),
    )
    .unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 3);

    // The blobs come back from the registry as pushed, and their whiteouts give the
    // rootfs the fixture documents.
    let blobs: Vec<Vec<u8>> = layers
        .iter()
        .map(|l| {
            let d = l["digest"].as_str().unwrap();
            let r = curl(&[], &format!("{}/v2/devenv-test/layered/blobs/{d}", reg.url()));
            assert_eq!((r.exit, r.status), (0, 200));
            assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), d);
            r.body
        })
        .collect();
    let second: Vec<String> =
        tar_entries(&decompress(&blobs[1])).into_iter().map(|e| e.0).collect();
    assert!(second.contains(&".wh.remove-me.txt".to_string()), "{second:?}");
    assert!(second.contains(&"data/.wh..wh..opq".to_string()), "{second:?}");
    let rootfs = apply_layers(&blobs);
    for (path, content) in LAYERED_PRESENT {
        assert_eq!(rootfs.get(*path), Some(&Some(content.to_string())), "{path} in {rootfs:?}");
    }
    for path in LAYERED_ABSENT {
        assert!(!rootfs.contains_key(*path), "{path} in {rootfs:?}");
    }
}

#[test]
fn multiarch_index_has_amd64_and_arm64() {
    let reg = Registry::start();
    let layout = multiarch_layout();
    let digest = reg.push_layout(&layout, "devenv-test/multi:latest");
    assert_eq!(digest, manifest_digest(&layout));
    let index = inspect_raw(&reg, "devenv-test/multi:latest", None);
    assert_eq!(index["mediaType"], INDEX_TYPE);
    let entries = index["manifests"].as_array().unwrap();
    let archs: Vec<&str> =
        entries.iter().map(|m| m["platform"]["architecture"].as_str().unwrap()).collect();
    assert_eq!(archs, ["amd64", "arm64"]);
    for entry in entries {
        let arch = entry["platform"]["architecture"].as_str().unwrap();
        assert_eq!(entry["platform"]["os"], "linux");
        let d = entry["digest"].as_str().unwrap();
        let url = format!("{}/v2/devenv-test/multi/manifests/{d}", reg.url());
        let m = curl(&["-H", &format!("Accept: {ACCEPT_MANIFESTS}")], &url).json();
        let config_digest = m["config"]["digest"].as_str().unwrap();
        let config =
            curl(&[], &format!("{}/v2/devenv-test/multi/blobs/{config_digest}", reg.url())).json();
        assert_eq!(config["architecture"], arch);
        let layer = m["layers"][0]["digest"].as_str().unwrap();
        let blob = curl(&[], &format!("{}/v2/devenv-test/multi/blobs/{layer}", reg.url())).body;
        let files = tar_entries(&decompress(&blob));
        assert!(
            files.contains(&("platform".to_string(), Some(platform_marker(arch)))),
            "{files:?}"
        );
    }
}

#[test]
fn zstd_layer_keeps_its_media_type() {
    let reg = Registry::start();
    let layout = zstd_layout();
    reg.push_layout(&layout, "devenv-test/zstd:v1");
    let manifest = inspect_raw(&reg, "devenv-test/zstd:v1", None);
    assert_eq!(manifest["layers"][0]["mediaType"], ZSTD_LAYER_TYPE);
    let d = manifest["layers"][0]["digest"].as_str().unwrap();
    let blob = curl(&[], &format!("{}/v2/devenv-test/zstd/blobs/{d}", reg.url())).body;
    assert!(blob.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]), "zstd magic");
    let files = tar_entries(&decompress(&blob));
    assert!(files.iter().any(|(p, _)| p == "zstd.txt"), "{files:?}");
    // The diff_id in the config is the sha256 of the uncompressed tar.
    let config = read_json(&blob_path(&layout, manifest["config"]["digest"].as_str().unwrap()));
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&decompress(&blob)))
    );
}

#[test]
fn htpasswd_registry_wants_basic_credentials() {
    let reg = Registry::start_with(Auth::htpasswd("alice", "s3cret pass"));
    let ping = curl(&[], &format!("{}/v2/", reg.url()));
    assert_eq!(ping.status, 401);
    assert_eq!(ping.header("www-authenticate").as_deref(), Some(r#"Basic realm="devenv-test""#));
    assert_eq!(curl(&["--user", "alice:s3cret pass"], &format!("{}/v2/", reg.url())).status, 200);
    assert_eq!(curl(&["--user", "alice:wrong"], &format!("{}/v2/", reg.url())).status, 401);

    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    let tags = curl(
        &["--user", "alice:s3cret pass"],
        &format!("{}/v2/devenv-test/zstd/tags/list", reg.url()),
    );
    assert_eq!(tags.json()["tags"][0], "latest");
    let target = format!("docker://{}/devenv-test/zstd:latest", reg.addr());
    assert!(skopeo(&["inspect", "--raw", "--tls-verify=false", &target]).is_err());
    assert!(skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--creds=alice:s3cret pass",
        &target
    ])
    .is_ok());
}

/// Splits a JWT and decodes its claims.
fn jwt_claims(token: &str) -> Value {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let header: Value =
        serde_json::from_slice(&support::token::unbase64(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
    serde_json::from_slice(&support::token::unbase64(parts[1]).unwrap()).unwrap()
}

#[test]
fn token_registry_trusts_the_harness_token_server() {
    let reg = Registry::start_with(Auth::token("bob", "hunter2", false));
    let realm = reg.token_realm().unwrap();
    let ping = curl(&[], &format!("{}/v2/", reg.url()));
    assert_eq!(ping.status, 401);
    let challenge = ping.header("www-authenticate").unwrap();
    assert_eq!(challenge, format!(r#"Bearer realm="{realm}",service="{TOKEN_SERVICE}""#));

    // skopeo goes through the whole flow to push, which needs pull and push.
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    let pushes = reg.token_requests();
    assert!(
        pushes.iter().any(|r| r.user.as_deref() == Some("bob")
            && r.status == 200
            && r.granted.iter().any(|g| g.contains("push"))),
        "{pushes:?}"
    );

    let scope = "repository:devenv-test/zstd:pull";
    let token_url = format!("{realm}?service={TOKEN_SERVICE}&scope={scope}");
    let answer = curl(&["--user", "bob:hunter2"], &token_url);
    assert_eq!(answer.status, 200);
    let json = answer.json();
    assert_eq!(json["expires_in"], 300);
    assert_eq!(json["token"], json["access_token"]);
    let token = json["token"].as_str().unwrap();
    let claims = jwt_claims(token);
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str(), claims["sub"].as_str()),
        (Some(TOKEN_ISSUER), Some(TOKEN_SERVICE), Some("bob"))
    );
    assert_eq!(claims["access"][0]["actions"], serde_json::json!(["pull"]));
    let tags_url = format!("{}/v2/devenv-test/zstd/tags/list", reg.url());
    let tags = curl(&["-H", &format!("Authorization: Bearer {token}")], &tags_url);
    assert_eq!(tags.status, 200, "{}", String::from_utf8_lossy(&tags.body));
    assert_eq!(tags.json()["tags"][0], "latest");
    let no_token = curl(&[], &tags_url);
    assert_eq!(no_token.status, 401);
    assert!(no_token.header("www-authenticate").unwrap().contains(&format!(r#"scope="{scope}""#)));

    // Wrong password: 401 from the token endpoint itself.
    let wrong = curl(&["--user", "bob:nope"], &token_url);
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.json()["errors"][0]["code"], "UNAUTHORIZED");
    // Anonymous, with anonymous_pull off: a token that grants nothing.
    let anon = curl(&[], &token_url).json();
    let anon_token = anon["token"].as_str().unwrap();
    assert_eq!(jwt_claims(anon_token)["access"], serde_json::json!([]));
    let denied = curl(&["-H", &format!("Authorization: Bearer {anon_token}")], &tags_url);
    assert_eq!(denied.status, 401);
    // The OAuth2 form of the endpoint.
    let form = format!("grant_type=password&username=bob&password=hunter2&service={TOKEN_SERVICE}&scope={scope}&client_id=t");
    let posted = curl(&["--data", &form], &realm).json();
    let tags = curl(
        &["-H", &format!("Authorization: Bearer {}", posted["access_token"].as_str().unwrap())],
        &tags_url,
    );
    assert_eq!(tags.status, 200);

    let log = reg.token_requests();
    let last: Vec<(Option<&str>, u16)> =
        log[log.len() - 4..].iter().map(|r| (r.user.as_deref(), r.status)).collect();
    assert_eq!(last, [(Some("bob"), 200), (Some("bob"), 401), (None, 200), (Some("bob"), 200)]);
    assert_eq!(log[log.len() - 4].scopes, [scope]);
    assert!(log[log.len() - 2].granted.is_empty());
}

#[test]
fn token_registry_with_anonymous_pull() {
    let reg = Registry::start_with(Auth::token("bob", "hunter2", true));
    reg.push_layout(&zstd_layout(), "devenv-test/zstd:latest");
    // skopeo without credentials: an anonymous token that may pull.
    let m = inspect_raw(&reg, "devenv-test/zstd:latest", None);
    assert_eq!(m["layers"][0]["mediaType"], ZSTD_LAYER_TYPE);
    let anon = reg.token_requests().into_iter().rfind(|r| r.user.is_none()).unwrap();
    assert_eq!(anon.granted, ["repository:devenv-test/zstd:pull"]);
    // ...but not push.
    let src = format!("oci:{}:latest", zstd_layout().display());
    let dest = format!("docker://{}/devenv-test/other:latest", reg.addr());
    assert!(skopeo(&["copy", "--dest-tls-verify=false", &src, &dest]).is_err());
}

/// A ~1 MB gzip blob (busybox) in a registry, and its digest.
fn registry_with_big_blob() -> (Registry, String, Vec<u8>) {
    let reg = Registry::start();
    reg.push(Fixture::Busybox, "devenv-test/busybox:latest");
    let digest = layer_digests(&oci_layout(Fixture::Busybox))[0].clone();
    let bytes = std::fs::read(blob_path(&oci_layout(Fixture::Busybox), &digest)).unwrap();
    (reg, digest, bytes)
}

#[test]
fn proxy_answers_500_then_forwards() {
    let reg = Registry::start();
    let proxy = FaultProxy::start(&reg.addr(), Fault::Status500 { times: 2 });
    let url = format!("{}/v2/", proxy.url());
    for _ in 0..2 {
        let r = curl(&[], &url);
        assert_eq!(r.status, 500);
        assert_eq!(r.json()["errors"][0]["code"], "UNKNOWN");
        assert_eq!(r.header("connection").as_deref(), Some("close"));
    }
    let ok = curl(&[], &url);
    assert_eq!(
        (ok.status, ok.header("docker-distribution-api-version").as_deref()),
        (200, Some("registry/2.0"))
    );
    // curl's own retry on 5xx gets through too.
    proxy.set_fault(Fault::Status500 { times: 1 });
    let retried = curl(&["--retry", "2", "--retry-delay", "1"], &url);
    assert_eq!(retried.status, 200);
    assert_eq!(proxy.faults_injected(), 1);
    let statuses: Vec<u16> = proxy.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200, 500, 200]);
}

#[test]
fn proxy_answers_500_to_blobs_only() {
    let (reg, digest, bytes) = registry_with_big_blob();
    let proxy = FaultProxy::start(&reg.addr(), Fault::Status500OnBlobs { times: 1 });
    assert_eq!(curl(&[], &format!("{}/v2/", proxy.url())).status, 200);
    let url = format!("{}/v2/devenv-test/busybox/blobs/{digest}", proxy.url());
    assert_eq!(curl(&[], &url).status, 500);
    let ok = curl(&[], &url);
    assert_eq!((ok.status, ok.body.len()), (200, bytes.len()));
    let faulted: Vec<bool> = proxy.requests().iter().map(|r| r.faulted).collect();
    assert_eq!(faulted, [false, true, false]);
}

#[test]
fn proxy_cuts_blobs_and_passes_ranges() {
    let (reg, digest, bytes) = registry_with_big_blob();
    let cut = 100_000;
    let proxy = FaultProxy::start(&reg.addr(), Fault::CloseMidBlob { after_bytes: cut, times: 1 });
    let url = format!("{}/v2/devenv-test/busybox/blobs/{digest}", proxy.url());
    let first = curl(&[], &url);
    assert_eq!(first.exit, 18, "curl: transfer closed with outstanding data");
    assert_eq!(first.status, 200);
    assert_eq!(first.header("content-length"), Some(bytes.len().to_string()));
    assert_eq!(first.body, bytes[..cut as usize]);
    // Resume where it stopped: the Range header reaches the registry.
    let rest = curl(&["--range", &format!("{cut}-")], &url);
    assert_eq!((rest.exit, rest.status), (0, 206));
    assert_eq!(rest.body, bytes[cut as usize..]);
    let whole = curl(&[], &url);
    assert_eq!((whole.exit, whole.body.len()), (0, bytes.len()));
    let log = proxy.requests();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|r| r.is_blob_get()));
    assert_eq!((log[0].faulted, log[0].body_bytes), (true, cut));
    assert_eq!(log[1].range.as_deref(), Some(format!("bytes={cut}-").as_str()));
    assert!(!log[2].faulted);
}

#[test]
fn proxy_corrupts_blobs_but_not_manifests() {
    let (reg, digest, bytes) = registry_with_big_blob();
    let proxy = FaultProxy::start(&reg.addr(), Fault::CorruptBlob);
    let url = format!("{}/v2/devenv-test/busybox/blobs/{digest}", proxy.url());
    let got = curl(&[], &url);
    assert_eq!((got.exit, got.status, got.body.len()), (0, 200, bytes.len()));
    assert_ne!(format!("sha256:{}", sha256_hex(&got.body)), digest);
    let diff = got.body.iter().zip(&bytes).filter(|(a, b)| a != b).count();
    assert_eq!(diff, 1);
    let direct = curl(&[], &format!("{}/v2/devenv-test/busybox/blobs/{digest}", reg.url()));
    assert_eq!(format!("sha256:{}", sha256_hex(&direct.body)), digest);
    // Manifests pass untouched, so a client gets as far as the blobs.
    let m = curl(
        &["-H", &format!("Accept: {ACCEPT_MANIFESTS}")],
        &format!("{}/v2/devenv-test/busybox/manifests/latest", proxy.url()),
    );
    assert_eq!(
        format!("sha256:{}", sha256_hex(&m.body)),
        manifest_digest(&oci_layout(Fixture::Busybox))
    );
    // skopeo notices the corruption.
    let tmp = tempfile::tempdir().unwrap();
    let err = skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{}/devenv-test/busybox:latest", proxy.addr()),
        &format!("oci:{}:x", tmp.path().display()),
    ])
    .unwrap_err();
    assert!(err.to_lowercase().contains("digest did not match"), "{err}");
}

#[test]
fn down_registry_refuses_connections() {
    let addr = down_addr();
    let r = curl(&[], &format!("http://{addr}/v2/"));
    assert_eq!(r.exit, 7, "curl: failed to connect");
    assert!(Path::new("/proc/self").exists());
}
