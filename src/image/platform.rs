//! The host's OCI platform (`linux/amd64` here, `linux/arm64/v8` on arm64) and choosing the
//! manifest for it from an image index or a multi-image layout.

use oci_spec::image::{Descriptor, MediaType};

use super::{ImageError, Result};

/// An OCI platform, in the strings the image spec uses (GOOS/GOARCH names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// The platform images must be for to run on this machine.
pub fn host() -> Platform {
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", Some("v8")),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
        "loongarch64" => ("loong64", None),
        other => (other, None),
    };
    Platform {
        os: "linux".into(),
        architecture: architecture.into(),
        variant: variant.map(str::to_string),
    }
}

fn of(descriptor: &Descriptor) -> Option<Platform> {
    descriptor.platform().as_ref().map(|p| Platform {
        os: p.os().to_string(),
        architecture: p.architecture().to_string(),
        variant: p.variant().clone(),
    })
}

/// Whether a descriptor points at something that is an image (an image manifest, Docker's or the
/// OCI's) rather than an attestation or other artifact.
pub fn is_image_manifest(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageManifest)
        || media_type.as_ref() == "application/vnd.docker.distribution.manifest.v2+json"
}

/// Whether a descriptor points at an index (OCI image index or Docker manifest list).
pub fn is_index(media_type: &MediaType) -> bool {
    matches!(media_type, MediaType::ImageIndex)
        || media_type.as_ref() == "application/vnd.docker.distribution.manifest.list.v2+json"
}

/// Picks the entry of an index for `want`: same OS and architecture, the same variant when there
/// are several (or an entry without a variant). An index with a single entry without a platform
/// is taken as it is.
pub fn select<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor> {
    let candidates: Vec<(&Descriptor, Platform)> = manifests
        .iter()
        .filter_map(|d| of(d).map(|p| (d, p)))
        .filter(|(_, p)| p.os == want.os && p.architecture == want.architecture)
        .collect();
    let exact = candidates.iter().find(|(_, p)| p.variant == want.variant);
    let loose = candidates.iter().find(|(_, p)| p.variant.is_none());
    if let Some((d, _)) = exact.or(loose).or(candidates.first()) {
        return Ok(d);
    }
    let unplatformed: Vec<&Descriptor> =
        manifests.iter().filter(|d| d.platform().is_none()).collect();
    if manifests.len() == 1 && unplatformed.len() == 1 {
        return Ok(unplatformed[0]);
    }
    Err(ImageError::NoMatchingPlatform {
        wanted: want.to_string(),
        what: what.to_string(),
        available: manifests
            .iter()
            .map(|d| of(d).map_or_else(|| "no platform".to_string(), |p| p.to_string()))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{Arch, Os, PlatformBuilder};

    fn desc(arch: Arch, variant: Option<&str>, n: u8) -> Descriptor {
        let mut d =
            Descriptor::new(MediaType::ImageManifest, 1, crate::image::Digest::of(&[n]).to_oci());
        let mut p = PlatformBuilder::default().os(Os::Linux).architecture(arch);
        if let Some(v) = variant {
            p = p.variant(v);
        }
        d.set_platform(Some(p.build().unwrap()));
        d
    }

    #[test]
    fn picks_the_host_arch_and_variant() {
        let list = [
            desc(Arch::ARM64, Some("v8"), 1),
            desc(Arch::Amd64, None, 2),
            desc(Arch::ARM, Some("v7"), 3),
        ];
        let amd64 = Platform { os: "linux".into(), architecture: "amd64".into(), variant: None };
        assert_eq!(select(&list, &amd64, "x").unwrap().size(), 1);
        assert_eq!(select(&list, &amd64, "x").unwrap().digest(), list[1].digest());
        let arm64 = Platform {
            os: "linux".into(),
            architecture: "arm64".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(select(&list, &arm64, "x").unwrap().digest(), list[0].digest());
        let riscv = Platform { os: "linux".into(), architecture: "riscv64".into(), variant: None };
        let err = select(&list, &riscv, "the index").unwrap_err().to_string();
        assert!(err.contains("linux/riscv64") && err.contains("linux/arm64/v8"), "{err}");
    }
}
