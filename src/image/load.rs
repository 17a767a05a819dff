//! `devenv image load PATH [--tag NAME]`: imports an OCI image layout directory, an OCI archive
//! (a tar of such a layout, possibly gzip or zstd compressed), or a `docker save` tarball (its
//! `manifest.json` with Config, RepoTags and Layers; legacy `<id>/layer.tar` layers or Docker 25's
//! `blobs/sha256/...`), into the store, with every layer unpacked.
//!
//! Docker archives are converted to the store's OCI form: their config is kept byte for byte (so
//! its digest is Docker's image ID), the layer tarballs become blobs as they are (a plain tar is a
//! valid OCI layer), and an OCI manifest is written for them.
//!
//! Names: `--tag`, else the archive's RepoTags, else an `io.containerd.image.name` or
//! `org.opencontainers.image.ref.name` annotation that is a full reference (a bare tag like
//! `latest` names nothing); all normalized as Docker does.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, ImageManifestBuilder, MediaType};
use serde::Deserialize;

use super::store::diff_ids;
use super::unpack::Compression;
use super::{platform, Digest, ImageError, Reference, Result, Store};

use source::Source;

mod source;

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// An image that `load` put in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedImage {
    pub names: Vec<Reference>,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub layers: usize,
    /// Unpacked size of its layers.
    pub size: u64,
}

/// Loads every image in `path` (a directory or an archive) into `store`; with `tag`, the archive
/// must hold a single image, which gets that name.
pub fn load(store: &Store, path: &Path, tag: Option<&Reference>) -> Result<Vec<LoadedImage>> {
    let meta = fs::metadata(path).map_err(|e| ImageError::io("cannot read", path, e))?;
    let source =
        if meta.is_dir() { Source::Dir(path.to_path_buf()) } else { Source::archive(store, path)? };
    let loaded = if source.has("manifest.json") {
        load_docker(store, &source, path, tag)?
    } else if source.has("index.json") {
        load_oci(store, &source, path, tag)?
    } else {
        return Err(ImageError::UnknownFormat {
            path: path.to_path_buf(),
            reason: "it has neither index.json nor manifest.json at its top".into(),
        });
    };
    for image in &loaded {
        tracing::debug!(names = ?image.names, digest = %image.manifest_digest, "loaded image");
    }
    Ok(loaded)
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// The names an image gets: `--tag` or else those the archive gives.
fn names_for(
    tag: Option<&Reference>,
    given: Vec<Reference>,
    path: &Path,
    detail: String,
) -> Result<Vec<Reference>> {
    match tag {
        Some(t) => Ok(vec![t.clone()]),
        None if given.is_empty() => Err(ImageError::NoName { path: path.to_path_buf(), detail }),
        None => Ok(given),
    }
}

/// An annotation value that is a full reference (`redis:7`, `localhost/x`, `docker.io/a/b:1`);
/// a bare `latest` or `7` is a tag in the OCI layout's sense and names nothing.
fn full_reference(value: &str) -> Option<Reference> {
    if !value.contains(['/', ':', '@']) {
        return None;
    }
    Reference::parse(value).ok()
}

fn load_oci(
    store: &Store,
    source: &Source,
    path: &Path,
    tag: Option<&Reference>,
) -> Result<Vec<LoadedImage>> {
    let what = format!("{}/index.json", path.display());
    let index = ImageIndex::from_reader(&source.read(store, "index.json")?[..])
        .map_err(|e| ImageError::invalid(&what, e))?;

    // Entries with the same name are platform variants of one image: keep the host's.
    let mut groups: BTreeMap<Option<String>, Vec<Descriptor>> = BTreeMap::new();
    for d in index.manifests() {
        if platform::is_image_manifest(d.media_type()) || platform::is_index(d.media_type()) {
            let annotations = d.annotations().as_ref();
            let name = annotations.and_then(|a| a.get(CONTAINERD_NAME).or_else(|| a.get(REF_NAME)));
            groups.entry(name.cloned()).or_default().push(d.clone());
        }
    }
    if groups.is_empty() {
        return Err(ImageError::invalid(&what, "it lists no image manifest"));
    }
    let host = platform::host();
    let mut chosen = Vec::new();
    for (name, group) in &groups {
        let d = platform::select(group, &host, &what)?;
        let given: Vec<Reference> = name.as_deref().and_then(full_reference).into_iter().collect();
        let detail = match name {
            Some(n) if given.is_empty() => format!(" (its {REF_NAME} \"{n}\" is only a tag)"),
            _ => String::new(),
        };
        chosen.push((d.clone(), given, detail));
    }
    if tag.is_some() && chosen.len() > 1 {
        return Err(ImageError::AmbiguousTag { path: path.into(), count: chosen.len() });
    }
    // Every image must have a name before any is imported.
    let chosen = chosen
        .into_iter()
        .map(|(d, given, detail)| Ok((d, names_for(tag, given, path, detail)?)))
        .collect::<Result<Vec<_>>>()?;

    let mut loaded = Vec::new();
    for (descriptor, names) in chosen {
        let mut digest = Digest::from_oci(descriptor.digest())?;
        if platform::is_index(descriptor.media_type()) {
            source.blob(store, &blob_name(&digest), Some(&digest))?;
            let inner = ImageIndex::from_reader(&store.read_blob(&digest)?[..])
                .map_err(|e| ImageError::invalid(format!("image index {digest}"), e))?;
            let d = platform::select(inner.manifests(), &host, &format!("image index {digest}"))?;
            digest = Digest::from_oci(d.digest())?;
        }
        source.blob(store, &blob_name(&digest), Some(&digest))?;
        let manifest = ImageManifest::from_reader(&store.read_blob(&digest)?[..])
            .map_err(|e| ImageError::invalid(format!("manifest {digest}"), e))?;
        let config_digest = Digest::from_oci(manifest.config().digest())?;
        source.blob(store, &blob_name(&config_digest), Some(&config_digest))?;
        let layers = manifest
            .layers()
            .iter()
            .map(|l| {
                let blob = Digest::from_oci(l.digest())?;
                source.blob(store, &blob_name(&blob), Some(&blob))?;
                Ok((blob, l.media_type().clone()))
            })
            .collect::<Result<Vec<_>>>()?;
        loaded.push(finish(store, names, digest, config_digest, layers)?);
    }
    Ok(loaded)
}

#[derive(Deserialize)]
struct DockerManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers", default)]
    layers: Vec<String>,
}

fn load_docker(
    store: &Store,
    source: &Source,
    path: &Path,
    tag: Option<&Reference>,
) -> Result<Vec<LoadedImage>> {
    let what = format!("{}/manifest.json", path.display());
    let entries: Vec<DockerManifest> =
        serde_json::from_slice(&source.read(store, "manifest.json")?)
            .map_err(|e| ImageError::invalid(&what, e))?;
    if entries.is_empty() {
        return Err(ImageError::invalid(&what, "it lists no image"));
    }
    if tag.is_some() && entries.len() > 1 {
        return Err(ImageError::AmbiguousTag { path: path.into(), count: entries.len() });
    }
    // Every image must have a name before any is imported.
    let named = entries
        .into_iter()
        .map(|entry| {
            let given = entry
                .repo_tags
                .iter()
                .flatten()
                .filter(|t| t.as_str() != "<none>:<none>")
                .map(|t| Reference::parse(t))
                .collect::<Result<Vec<_>>>()?;
            Ok((names_for(tag, given, path, " (it has no RepoTags)".into())?, entry))
        })
        .collect::<Result<Vec<_>>>()?;
    let mut loaded = Vec::new();
    for (names, entry) in named {
        let config_digest = source.blob(store, &entry.config, None)?;
        let config = store.image_config(&config_digest)?;
        let diff_ids = diff_ids(&config, &config_digest)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::invalid(
                &what,
                format!(
                    "{} lists {} layers but its config has {} diff_ids",
                    entry.config,
                    entry.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for rel in &entry.layers {
            let blob = source.blob(store, rel, None)?;
            let mut prefix = Vec::with_capacity(4);
            store
                .open_blob(&blob)?
                .take(4)
                .read_to_end(&mut prefix)
                .map_err(|e| ImageError::io("cannot read", store.blob_path(&blob), e))?;
            let media_type = match Compression::sniff(&prefix) {
                Compression::None => MediaType::ImageLayer,
                Compression::Gzip => MediaType::ImageLayerGzip,
                Compression::Zstd => MediaType::ImageLayerZstd,
            };
            layers.push((blob, media_type));
        }
        let manifest = oci_manifest(store, &config_digest, &layers)?;
        let bytes =
            serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("manifest", e))?;
        let digest = store.put_blob(None, &bytes[..])?;
        loaded.push(finish(store, names, digest, config_digest, layers)?);
    }
    Ok(loaded)
}

fn blob_size(store: &Store, digest: &Digest) -> Result<u64> {
    let path = store.blob_path(digest);
    Ok(fs::metadata(&path).map_err(|e| ImageError::io("cannot read", path, e))?.len())
}

/// The OCI manifest for a converted docker image.
fn oci_manifest(
    store: &Store,
    config: &Digest,
    layers: &[(Digest, MediaType)],
) -> Result<ImageManifest> {
    let config =
        Descriptor::new(MediaType::ImageConfig, blob_size(store, config)?, config.to_oci());
    let layers = layers
        .iter()
        .map(|(d, mt)| Ok(Descriptor::new(mt.clone(), blob_size(store, d)?, d.to_oci())))
        .collect::<Result<Vec<_>>>()?;
    ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(layers)
        .build()
        .map_err(|e| ImageError::invalid("converted manifest", e))
}

/// Unpacks the layers (verifying each against the config's diff_ids) and names the image.
fn finish(
    store: &Store,
    names: Vec<Reference>,
    manifest_digest: Digest,
    config_digest: Digest,
    layers: Vec<(Digest, MediaType)>,
) -> Result<LoadedImage> {
    let config = store.image_config(&config_digest)?;
    let diff_ids = diff_ids(&config, &config_digest)?;
    if diff_ids.len() != layers.len() {
        return Err(ImageError::invalid(
            format!("image {manifest_digest}"),
            format!("{} layers but {} diff_ids in its config", layers.len(), diff_ids.len()),
        ));
    }
    let host = platform::host();
    if config.os().to_string() != host.os || config.architecture().to_string() != host.architecture
    {
        tracing::warn!(
            image = %manifest_digest,
            platform = %format!("{}/{}", config.os(), config.architecture()),
            "image is for another platform than this machine's"
        );
    }
    let mut size = 0;
    for ((blob, media_type), diff_id) in layers.iter().zip(&diff_ids) {
        store.ensure_layer(diff_id, blob, media_type)?;
        size += store.layer_size(diff_id).unwrap_or(0);
    }
    for name in &names {
        store.tag(name, &manifest_digest)?;
    }
    Ok(LoadedImage { names, manifest_digest, config_digest, layers: layers.len(), size })
}
