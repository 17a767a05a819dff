//! Turning the model as written into the model devenv runs: `develop.watch` merged into
//! `watch`, bind-mount sources made absolute, `env_file` contents and bare `KEY` variables
//! resolved into `environment`, as `docker compose config` shows them.

use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;

use super::diagnostic::Diagnostic;
use super::dotenv::parse_dotenv;
use super::load::{Project, Source};
use super::locate::{mark_of, path_string, Seg};
use super::volumes::MountType;
use super::yaml::{Mark, Node};

pub(crate) fn normalize(project: &mut Project, root: &Node, src: &Source) -> Vec<Diagnostic> {
    let mut errors = Vec::new();
    let dir = project.dir.clone();
    let home = project.env.get("HOME").map(PathBuf::from);
    for (name, svc) in project.model.services.iter_mut() {
        if let Some(develop) = svc.develop.take() {
            svc.watch.extend(develop.watch);
        }
        for m in svc.volumes.iter_mut() {
            if m.kind == MountType::Bind {
                if let Some(source) = &m.source {
                    m.source = Some(
                        resolve_host_path(&dir, home.as_deref(), source)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }

        // env_file entries first, `environment` over them (Compose's precedence).
        let mut env: IndexMap<String, Option<String>> = IndexMap::new();
        for (i, ef) in svc.env_file.0.iter_mut().enumerate() {
            let path = resolve_host_path(&dir, home.as_deref(), &ef.path);
            let at = [Seg::Key("services"), Seg::Key(name), Seg::Key("env_file"), Seg::Index(i)];
            let here = |msg: String| src.error(mark_of(root, &at), path_string(&at), msg);
            match std::fs::read_to_string(&path) {
                Ok(text) => match parse_dotenv(&text, &|k| project.env.get(k).cloned()) {
                    Ok(vars) => env.extend(vars.into_iter().map(|(k, v)| (k, Some(v)))),
                    Err(e) => errors.push(
                        Diagnostic::error(&path, Mark { line: e.line, column: 1 }, "", e.message)
                            .with_source(&text),
                    ),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !ef.required => {}
                Err(e) => {
                    let hint =
                        "create it, or write `{path: ..., required: false}` if it is optional";
                    errors.push(
                        here(format!("cannot read env file {}: {e}", path.display()))
                            .with_suggestion(Some(hint.into())),
                    )
                }
            }
            ef.path = path.to_string_lossy().into_owned();
        }
        for (k, v) in std::mem::take(&mut svc.environment.0) {
            // A bare `KEY` takes its value from devenv's environment, if it is set there.
            let v = v.or_else(|| project.env.get(&k).cloned());
            env.insert(k, v);
        }
        svc.environment.0 = env;
    }
    errors
}

/// A host path as Compose reads it: `~` is the home directory, relative paths start at the
/// project directory; `.` and `..` are folded without touching the filesystem.
pub fn resolve_host_path(dir: &Path, home: Option<&Path>, raw: &str) -> PathBuf {
    let joined = if raw == "~" {
        home.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("/root"))
    } else if let Some(rest) = raw.strip_prefix("~/") {
        home.unwrap_or(Path::new("/root")).join(rest)
    } else {
        dir.join(raw)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_resolve_like_compose() {
        let dir = Path::new("/work/app");
        let home = Some(Path::new("/home/u"));
        assert_eq!(resolve_host_path(dir, home, "./src"), Path::new("/work/app/src"));
        assert_eq!(resolve_host_path(dir, home, "."), Path::new("/work/app"));
        assert_eq!(resolve_host_path(dir, home, "../data/./x"), Path::new("/work/data/x"));
        assert_eq!(resolve_host_path(dir, home, "~/cache"), Path::new("/home/u/cache"));
        assert_eq!(resolve_host_path(dir, home, "/srv/www"), Path::new("/srv/www"));
    }
}
