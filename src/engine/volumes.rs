//! Host side of a service's mounts, as Compose does it: missing bind sources are created, a bind
//! that would put a file over a directory is refused, and a named volume is created under
//! DEVENV_HOME and seeded from the image's content at its target on first use.

use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::EngineError;
use crate::config::model::{ProjectFile, Service};
use crate::config::volumes::MountType;
use crate::runtime::spec::anonymous_volume_name;
use crate::state::Home;

/// The host directory of volume `name` (a key of the top-level `volumes:`, or an anonymous
/// volume's generated name) of `project`.
pub(super) fn volume_dir(home: &Home, project: &str, name: &str, model: &ProjectFile) -> PathBuf {
    let host_name = match model.volumes.get(name).and_then(|v| v.name.clone()) {
        Some(explicit) => explicit,
        None => format!("{project}_{name}"),
    };
    home.volume(&host_name)
}

pub(super) fn prepare_mounts(
    service: &str,
    svc: &Service,
    rootfs: &Path,
    volume_dir: &dyn Fn(&str) -> PathBuf,
) -> Result<(), EngineError> {
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| EngineError::Io { service: service.to_owned(), what, path, source }
    };
    for m in &svc.volumes {
        let in_image = inside(rootfs, &m.target);
        match m.kind {
            MountType::Bind => {
                let Some(src) = m.source.as_deref().map(Path::new) else { continue };
                if !src.exists() {
                    if !m.create_host_path() {
                        return Err(EngineError::Refused {
                            service: service.into(),
                            message: format!("bind source {} does not exist", src.display()),
                        });
                    }
                    std::fs::create_dir_all(src).map_err(io("cannot create bind source", src))?;
                }
                if src.is_file() && in_image.as_deref().is_some_and(Path::is_dir) {
                    return Err(EngineError::Refused {
                        service: service.into(),
                        message: format!(
                            "bind source {} is a file, but {} is a directory in the image; mount a directory there, or mount the file at a path of its own",
                            src.display(),
                            m.target
                        ),
                    });
                }
            }
            MountType::Volume => {
                let name =
                    m.source.clone().unwrap_or_else(|| anonymous_volume_name(service, &m.target));
                let dir = volume_dir(&name);
                if dir.exists() {
                    continue;
                }
                // Seed into a sibling and rename, so a failed copy never leaves a half-seeded
                // volume that looks complete.
                let tmp = dir.with_extension("seeding");
                let _ = std::fs::remove_dir_all(&tmp);
                std::fs::create_dir_all(&tmp).map_err(io("cannot create volume", &tmp))?;
                if let Some(seed) = in_image.filter(|p| p.is_dir()) {
                    copy_tree(&seed, &tmp).map_err(io("cannot seed volume from", &seed))?;
                }
                std::fs::rename(&tmp, &dir).map_err(io("cannot create volume", &dir))?;
            }
            MountType::Tmpfs => {}
        }
    }
    Ok(())
}

/// `target` under `rootfs`, if no component on the way is a symlink: a path in an image may
/// not lead the host anywhere outside the container's root.
fn inside(rootfs: &Path, target: &str) -> Option<PathBuf> {
    let mut p = rootfs.to_path_buf();
    for c in Path::new(target).components() {
        match c {
            Component::Normal(n) => {
                p.push(n);
                let meta = std::fs::symlink_metadata(&p).ok()?;
                if meta.file_type().is_symlink() {
                    return None;
                }
            }
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(p)
}

/// Copies a directory tree keeping modes, owners and symlinks (never following them).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&src)?;
        let ft = meta.file_type();
        if ft.is_dir() {
            std::fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src)?, &dst)?;
            lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
        } else if ft.is_file() {
            std::fs::copy(&src, &dst)?;
            lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
            std::fs::set_permissions(&dst, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        // Devices, fifos and sockets in a volume's seed are skipped, as they are in Docker.
    }
    Ok(())
}
