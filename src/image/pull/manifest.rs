//! Checking what the registry served as a manifest: its digest, whether it is an index, and
//! whether it is an image manifest devenv can use.

use oci_spec::image::{ImageManifest, MediaType};

use super::PullError;
use crate::image::{platform, Digest, ImageError, Reference};

/// The manifest's digest, checked against `pinned` and against the registry's
/// `Docker-Content-Digest` (when it is a sha256 one).
pub(super) fn verify_manifest(
    reference: &Reference,
    m: &crate::registry::client::FetchedManifest,
    pinned: Option<&Digest>,
) -> Result<Digest, PullError> {
    let actual = Digest::of(&m.bytes);
    let claimed = m.digest_header.as_deref().and_then(|h| h.parse::<Digest>().ok());
    for expected in [pinned, claimed.as_ref()].into_iter().flatten() {
        if *expected != actual {
            return Err(PullError::ManifestDigest {
                reference: reference.clone(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok(actual)
}

pub(super) fn is_index(bytes: &[u8], content_type: Option<&str>) -> bool {
    let by_type = content_type.is_some_and(|t| {
        let t = t.split(';').next().unwrap_or(t).trim();
        platform::is_index(&MediaType::from(t))
    });
    by_type
        || serde_json::from_slice::<serde_json::Value>(bytes)
            .is_ok_and(|v| v.get("manifests").is_some_and(|m| m.is_array()))
}

pub(super) fn parse_manifest(
    reference: &Reference,
    digest: &Digest,
    bytes: &[u8],
) -> Result<ImageManifest, PullError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        PullError::store(reference, ImageError::invalid(format!("manifest {digest}"), e))
    })?;
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
        return Err(PullError::Unsupported {
            reference: reference.clone(),
            reason: "the registry serves only a Docker schema 1 manifest, which is no longer supported; push the image again with a current client".into(),
        });
    }
    if let Some(mt) = value.get("mediaType").and_then(|v| v.as_str()) {
        if !platform::is_image_manifest(&MediaType::from(mt)) {
            return Err(PullError::Unsupported {
                reference: reference.clone(),
                reason: format!("manifest {digest} has media type \"{mt}\", not an image manifest"),
            });
        }
    }
    ImageManifest::from_reader(bytes).map_err(|e| {
        PullError::store(reference, ImageError::invalid(format!("manifest {digest}"), e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::FetchedManifest;

    fn fetched(bytes: &[u8], header: Option<String>) -> FetchedManifest {
        FetchedManifest { bytes: bytes.to_vec(), content_type: None, digest_header: header }
    }

    #[test]
    fn pinned_and_claimed_digests_are_checked() {
        let r = Reference::parse("localhost:5000/a/b:1").unwrap();
        let body = br#"{"schemaVersion":2,"config":{},"layers":[]}"#;
        let good = Digest::of(body);
        assert_eq!(verify_manifest(&r, &fetched(body, None), Some(&good)).unwrap(), good);
        let other = Digest::of(b"x");
        let err = verify_manifest(&r, &fetched(body, None), Some(&other)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("localhost:5000/a/b:1") && msg.contains(&other.to_string()), "{msg}");
        assert!(verify_manifest(&r, &fetched(body, Some(other.to_string())), None).is_err());
        assert!(verify_manifest(&r, &fetched(body, Some(good.to_string())), None).is_ok());
    }

    #[test]
    fn indexes_and_schema1() {
        assert!(is_index(b"{}", Some("application/vnd.docker.distribution.manifest.list.v2+json")));
        assert!(is_index(br#"{"schemaVersion":2,"manifests":[]}"#, None));
        assert!(!is_index(br#"{"schemaVersion":2,"layers":[]}"#, Some("application/json")));
        let r = Reference::parse("redis").unwrap();
        let d = Digest::of(b"m");
        let err = parse_manifest(&r, &d, br#"{"schemaVersion":1,"fsLayers":[]}"#).unwrap_err();
        assert!(err.to_string().contains("schema 1"), "{err}");
    }
}
