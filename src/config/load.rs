//! Reading a project: file, located YAML tree, interpolation, typed model, then normalization and
//! validation. Nothing here touches anything but the files it reads.

use std::collections::HashMap;
use std::io;
use std::path::{Path as FsPath, PathBuf};

use super::de::{self, Path};
use super::diagnostic::Diagnostic;
use super::discover;
use super::dotenv::parse_dotenv;
use super::interpolate::interpolate;
use super::limits;
use super::model::ProjectFile;
use super::normalize;
use super::unsupported::{self, Unsupported};
use super::validate;
use super::yaml::{self, Mark, Node, Value};
use crate::graph::ServiceGraph;

/// Where to find the project and what its environment is. The environment is passed in, not
/// read from the process, so loading is a pure function of its inputs.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// `-f`: the project file; otherwise found from `cwd` upwards.
    pub file: Option<PathBuf>,
    /// `-p`: the project name.
    pub project_name: Option<String>,
    /// `--project-directory`: base of relative paths; the file's directory by default.
    pub project_directory: Option<PathBuf>,
    /// `--env-file`: replaces the project's `.env`.
    pub env_file: Option<PathBuf>,
    pub cwd: PathBuf,
    /// The variables of devenv's own environment.
    pub env: HashMap<String, String>,
}

impl LoadOptions {
    /// Options for the current directory and process environment.
    pub fn from_process() -> io::Result<LoadOptions> {
        Ok(LoadOptions {
            cwd: std::env::current_dir()?,
            env: std::env::vars().collect(),
            ..Default::default()
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("no project file: none of {} in {} or any parent directory; pass one with -f", discover::FILE_NAMES.join(", "), .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

fn render(diags: &[Diagnostic]) -> String {
    diags.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

/// A loaded project: its name and directory, the normalized model, and what was said about it.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub file: PathBuf,
    pub dir: PathBuf,
    pub model: ProjectFile,
    pub warnings: Vec<Diagnostic>,
    pub unsupported: Vec<Unsupported>,
    /// The variables interpolation saw: devenv's environment over the project's `.env`.
    pub env: HashMap<String, String>,
    /// Start and stop order.
    pub graph: ServiceGraph,
}

impl Project {
    /// The subnet the project file asks for its default network
    /// (`networks.default.ipam.config[0].subnet`), validated: IPv4, network address, at most
    /// /30, gateway (if written) on the first host address. `None`: take a /24 from the pool.
    pub fn default_subnet(&self) -> Option<ipnet::Ipv4Net> {
        self.model.default_subnet()
    }
}

/// The text of one file, kept to point diagnostics at.
pub(crate) struct Source<'a> {
    pub file: &'a FsPath,
    pub text: &'a str,
}

impl Source<'_> {
    pub fn error(&self, mark: Mark, path: impl Into<String>, msg: impl Into<String>) -> Diagnostic {
        Diagnostic::error(self.file, mark, path, msg).with_source(self.text)
    }
}

pub fn load(opts: &LoadOptions) -> Result<Project, ConfigError> {
    let file = match &opts.file {
        Some(f) => opts.cwd.join(f),
        None => discover::find_project_file(&opts.cwd)
            .ok_or_else(|| ConfigError::NotFound(opts.cwd.clone()))?,
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|source| ConfigError::Read { path: file.clone(), source })?;
    let dir = match &opts.project_directory {
        Some(d) => opts.cwd.join(d),
        None => file.parent().map(FsPath::to_path_buf).unwrap_or_else(|| opts.cwd.clone()),
    };
    let env = project_env(opts, &dir)?;
    load_str(&file, &text, &dir, env, opts.project_name.as_deref())
}

/// Loads a project from text already read; `file` is used for messages and `dir` for paths.
pub fn load_str(
    file: &FsPath,
    text: &str,
    dir: &FsPath,
    env: HashMap<String, String>,
    project_name: Option<&str>,
) -> Result<Project, ConfigError> {
    let src = Source { file, text };
    let invalid = |d: Diagnostic| ConfigError::Invalid(vec![d]);
    let mut root = yaml::parse(text).map_err(|e| invalid(src.error(e.mark, "", e.message)))?;
    if root.as_map().is_none() {
        return Err(invalid(src.error(
            root.mark,
            "",
            format!(
                "expected a map with `services:` at the top of the file, found {}",
                root.kind()
            ),
        )));
    }

    let unsupported = unsupported::strip(&mut root);
    let mut warnings: Vec<Diagnostic> =
        unsupported.iter().map(|u| u.diagnostic(file).with_source(text)).collect();
    if let Some(v) = root.get("version") {
        warnings.push(
            Diagnostic::warning(file, v.key_mark, "version", "`version` is obsolete and ignored")
                .with_source(text),
        );
    }

    let lookup = |name: &str| env.get(name).cloned();
    interpolate_tree(&mut root, &Path::Root, &lookup, file)
        .map_err(|d| invalid(d.with_source(text)))?;

    let model: ProjectFile = de::from_node(&root, &Path::Root).map_err(|e| {
        invalid(
            src.error(e.mark.unwrap_or_default(), e.path.unwrap_or_default(), e.message)
                .with_suggestion(e.suggestion),
        )
    })?;

    let name = project_name_for(project_name, &env, &model, dir).map_err(|m| {
        let mark = root.get("name").map(|e| e.value.mark).unwrap_or(Mark { line: 1, column: 1 });
        invalid(src.error(mark, "name", m))
    })?;

    let mut project = Project {
        name,
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        model,
        warnings,
        unsupported,
        env,
        graph: ServiceGraph::default(),
    };
    let mut errors = normalize::normalize(&mut project, &root, &src);
    errors.extend(validate::validate(&project, &root, &src));
    errors.extend(validate::port_clashes(&project, &root, &src));
    errors.extend(validate::networks(&mut project, &root, &src));
    errors.extend(limits::validate(&mut project, &root, &src));
    match validate::graph(&mut project, &root, &src) {
        Ok(g) => project.graph = g,
        Err(d) => errors.push(*d),
    }
    if errors.is_empty() {
        Ok(project)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// The project's variables: `.env` (or `--env-file`) under devenv's own environment, which wins
/// as in Compose.
fn project_env(opts: &LoadOptions, dir: &FsPath) -> Result<HashMap<String, String>, ConfigError> {
    let (path, required) = match &opts.env_file {
        Some(p) => (opts.cwd.join(p), true),
        None => (dir.join(".env"), false),
    };
    let mut env = HashMap::new();
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let vars = parse_dotenv(&text, &|k| opts.env.get(k).cloned()).map_err(|e| {
                let d = Diagnostic::error(&path, Mark { line: e.line, column: 1 }, "", e.message);
                ConfigError::Invalid(vec![d.with_source(&text)])
            })?;
            env.extend(vars);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
        Err(source) => return Err(ConfigError::Read { path, source }),
    }
    env.extend(opts.env.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok(env)
}

fn project_name_for(
    explicit: Option<&str>,
    env: &HashMap<String, String>,
    model: &ProjectFile,
    dir: &FsPath,
) -> Result<String, String> {
    let named = explicit
        .map(str::to_owned)
        .or_else(|| env.get("DEVENV_PROJECT_NAME").cloned())
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .filter(|n| !n.is_empty())
        .or_else(|| model.name.clone());
    match named {
        Some(n) => discover::validate_project_name(&n).map(|()| n),
        None => {
            let base =
                dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let n = discover::normalize_project_name(&base);
            if n.is_empty() {
                Err(format!(
                    "cannot derive a project name from the directory {:?}; set `name:` or pass -p",
                    dir
                ))
            } else {
                Ok(n)
            }
        }
    }
}

/// Interpolates every scalar value (not keys) in place. An error points at the `$` that failed.
fn interpolate_tree(
    node: &mut Node,
    path: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    file: &FsPath,
) -> Result<(), Box<Diagnostic>> {
    match &mut node.value {
        Value::Scalar(s) => {
            if s.text.contains('$') {
                match interpolate(&s.text, lookup) {
                    Ok(v) => s.text = v.into_owned(),
                    Err(e) => {
                        // Offsets map to columns only on the scalar's first line; past it, the
                        // scalar's start is the best place to point at.
                        let before = &s.text[..e.offset.min(s.text.len())];
                        let mut mark = node.mark;
                        if !before.contains('\n') {
                            mark.column += before.chars().count() + usize::from(s.quoted);
                        }
                        return Err(Box::new(Diagnostic::error(
                            file,
                            mark,
                            path.to_string(),
                            e.message,
                        )));
                    }
                }
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate_tree(item, &Path::Index(path, i), lookup, file)?;
            }
        }
        Value::Map(entries) => {
            for e in entries.iter_mut() {
                interpolate_tree(&mut e.value, &Path::Key(path, &e.key), lookup, file)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Severity;

    fn load_text(text: &str) -> Result<Project, ConfigError> {
        let dir = FsPath::new("/nonexistent/shop");
        load_str(&dir.join("devenv.yaml"), text, dir, HashMap::new(), None)
    }

    fn warnings(p: &Project) -> Vec<String> {
        p.warnings
            .iter()
            .filter(|w| w.severity == Severity::Warning)
            .map(|w| w.headline())
            .collect()
    }

    #[test]
    fn default_subnet_is_read_from_the_default_network() {
        let p = load_text(
            "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    driver: bridge\n    ipam:\n      config:\n        - subnet: 10.123.0.0/24\n          gateway: 10.123.0.1\n",
        )
        .unwrap();
        let want: ipnet::Ipv4Net = "10.123.0.0/24".parse().unwrap();
        assert_eq!(p.default_subnet(), Some(want));
        assert_eq!(p.model.default_subnet(), Some(want));
        assert!(p.warnings.is_empty(), "{:?}", warnings(&p));
    }

    #[test]
    fn no_subnet_means_the_pool_chooses() {
        for text in [
            "services:\n  web:\n    image: nginx\n",
            "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n",
            "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    driver: bridge\n",
            "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    ipam: {}\n",
        ] {
            assert_eq!(load_text(text).unwrap().default_subnet(), None, "{text}");
        }
    }

    #[test]
    fn other_networks_and_unsupported_network_keys_are_ignored_with_a_warning() {
        let p = load_text(
            "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    external: true\n    ipam:\n      driver: default\n      config:\n        - subnet: 10.5.0.0/16\n          ip_range: 10.5.1.0/24\n  backend:\n    driver: bridge\n",
        )
        .unwrap();
        assert_eq!(p.default_subnet(), Some("10.5.0.0/16".parse().unwrap()));
        assert_eq!(p.model.networks.keys().collect::<Vec<_>>(), ["default"]);
        let keys: Vec<&str> = p.unsupported.iter().map(|u| u.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "networks.backend",
                "networks.default.external",
                "networks.default.ipam.driver",
                "networks.default.ipam.config[0].ip_range"
            ]
        );
        assert!(p.unsupported.iter().all(|u| u.service.is_none()));
        let w = warnings(&p);
        assert!(
            w[0].ends_with(
                "12:3: networks.backend: `networks.backend` is not supported by devenv yet (line 12); it is ignored"
            ),
            "{w:?}"
        );
    }

    #[test]
    fn ports_on_the_host_network_are_a_warning_not_an_error() {
        let p = load_text(
            "services:\n  web:\n    image: nginx\n    network_mode: host\n    ports: [\"8080:80\"]\n",
        )
        .unwrap();
        let w = warnings(&p);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].contains("5:5: services.web.ports: `ports` are ignored with `network_mode: host`")
        );
    }

    #[test]
    fn every_problem_of_the_default_network_is_reported() {
        let text = "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    driver: macvlan\n    ipam:\n      config:\n        - subnet: 10.1.2.3/24\n          gateway: 10.1.2.9\n        - subnet: 10.9.0.0/16\n";
        let Err(ConfigError::Invalid(diags)) = load_text(text) else { panic!("accepted") };
        let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "networks.default.driver",
                "networks.default.ipam.config[1]",
                "networks.default.ipam.config[0].subnet",
                "networks.default.ipam.config[0].gateway",
            ]
        );
        // The gateway is checked against the subnet the file most likely meant.
        assert!(diags[3].message.starts_with("gateway 10.1.2.9 is not 10.1.2.1"), "{}", diags[3]);
    }

    #[test]
    fn a_slash_30_is_the_smallest_default_network() {
        let text = "services:\n  web:\n    image: nginx\nnetworks:\n  default:\n    ipam:\n      config:\n        - subnet: 10.1.2.4/30\n          gateway: 10.1.2.5\n";
        assert_eq!(load_text(text).unwrap().default_subnet(), Some("10.1.2.4/30".parse().unwrap()));
    }

    #[test]
    fn pull_policy_is_read_with_compose_aliases() {
        use crate::config::model::PullPolicy;
        for (value, want) in [
            ("missing", PullPolicy::Missing),
            ("if_not_present", PullPolicy::Missing),
            ("build", PullPolicy::Missing),
            ("always", PullPolicy::Always),
            ("never", PullPolicy::Never),
        ] {
            let text = format!("services:\n  web:\n    image: nginx\n    pull_policy: {value}\n");
            let p = load_text(&text).unwrap();
            assert_eq!(p.model.services["web"].pull_policy(), want, "{value}");
            assert!(p.warnings.is_empty(), "{:?}", warnings(&p));
        }
        let p = load_text("services:\n  web:\n    image: nginx\n").unwrap();
        assert_eq!(p.model.services["web"].pull_policy(), PullPolicy::Missing);

        let text = "services:\n  web:\n    image: nginx\n    pull_policy: daily\n";
        let Err(ConfigError::Invalid(diags)) = load_text(text) else { panic!("accepted") };
        assert_eq!(diags[0].path, "services.web.pull_policy");
        assert_eq!(
            diags[0].message,
            "invalid pull policy \"daily\": expected \"missing\", \"always\" or \"never\""
        );
    }
}
