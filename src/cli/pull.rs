//! `devenv pull`: fetch the images of the project's services from their registries into the
//! store. `up` pulls through [`pull_images`] as well, as each service's `pull_policy` says.

use anyhow::Context;

use super::progress::Progress;
use super::ProjectArgs;
use crate::config::{self, Project};
use crate::image::{pull, Reference, Store};
use crate::registry::RegistryConfig;
use crate::state::Home;

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Print nothing but errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull only these services' images; by default every service's (of the active profiles).
    pub services: Vec<String>,
}

pub fn run(project: &ProjectArgs, args: &PullArgs) -> anyhow::Result<()> {
    let opts = project.load_options().context("reading the working directory")?;
    let p = config::load(&opts)?;
    for w in &p.warnings {
        eprintln!("{w}");
    }
    let services = if args.services.is_empty() {
        let all = crate::supervisor::protocol::ProjectRef {
            options: opts,
            profiles: project.active_profiles(),
            ..Default::default()
        };
        crate::supervisor::wanted_services(&p, &all)?
    } else {
        for s in &args.services {
            if !p.model.services.contains_key(s) {
                anyhow::bail!("no service {s:?} in project {}", p.name);
            }
        }
        args.services.clone()
    };
    let images = images_of(&p, &services)?;
    let store = Store::open(Home::from_env().images())?;
    pull_images(&store, &images, args.quiet)
}

/// The services' images, each once, in service order.
pub(super) fn images_of(p: &Project, services: &[String]) -> anyhow::Result<Vec<Reference>> {
    let mut out: Vec<Reference> = Vec::new();
    for name in services {
        let Some(image) = p.model.services.get(name).and_then(|s| s.image.as_deref()) else {
            continue;
        };
        let reference =
            Reference::parse(image).with_context(|| format!("service {name:?}: image"))?;
        if !out.contains(&reference) {
            out.push(reference);
        }
    }
    Ok(out)
}

/// Pulls the images with progress on stderr, prints each failure and fails naming the images
/// that could not be pulled. Returns with no thread left running.
pub(super) fn pull_images(store: &Store, images: &[Reference], quiet: bool) -> anyhow::Result<()> {
    if images.is_empty() {
        return Ok(());
    }
    let config = RegistryConfig::from_env().context("reading the registry configuration")?;
    let progress = Progress::stderr(quiet);
    let results = pull::pull(store, images, &config, &progress);
    progress.finish();
    let mut failed = Vec::new();
    for (image, result) in images.iter().zip(results) {
        if let Err(e) = result {
            eprintln!("error: {e}");
            failed.push(image.familiar());
        }
    }
    if !failed.is_empty() {
        anyhow::bail!("could not pull {}", failed.join(", "));
    }
    Ok(())
}
