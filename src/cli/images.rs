//! `devenv images` and `devenv image load|ls|rm|prune`: what is in the image store, getting
//! images in from archives (pulling from registries is `devenv pull`), and freeing space.

use std::io::Write;
use std::path::PathBuf;

use crate::image::{load, Reference, Store};
use crate::state::Home;

#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout directory, an OCI archive or a `docker save` tarball.
    Load {
        path: PathBuf,
        /// Name the image, for example `redis:7`; else the archive's own name.
        #[arg(long)]
        tag: Option<String>,
    },
    /// Pull images by reference, like `docker pull` (`redis:7`, `host:5000/app@sha256:...`).
    Pull {
        #[arg(required = true)]
        references: Vec<String>,
        /// Print nothing but errors.
        #[arg(short, long)]
        quiet: bool,
    },
    /// List the images in the store.
    Ls,
    /// Remove an image's name from the store.
    Rm { names: Vec<String> },
    /// Delete the layers and blobs no image in the store uses (nor any container: those of an
    /// untagged image stay while a project's container was created from it). Content written in
    /// the last hour stays too: a pull may still be writing it.
    Prune,
}

/// How old unreferenced content must be before `prune` deletes it.
const PRUNE_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

pub fn run(cmd: &ImageCommand) -> anyhow::Result<()> {
    let home = Home::from_env();
    let store = Store::open(home.images())?;
    match cmd {
        ImageCommand::Pull { references, quiet } => {
            let refs =
                references.iter().map(|r| Reference::parse(r)).collect::<Result<Vec<_>, _>>()?;
            super::pull::pull_images(&store, &refs, *quiet)?;
        }
        ImageCommand::Load { path, tag } => {
            let tag = tag.as_deref().map(Reference::parse).transpose()?;
            for img in load::load(&store, path, tag.as_ref())? {
                let names: Vec<String> = img.names.iter().map(Reference::familiar).collect();
                println!("loaded {} ({})", names.join(", "), img.manifest_digest);
            }
        }
        ImageCommand::Ls => list(&store)?,
        ImageCommand::Rm { names } => {
            for n in names {
                let digest = store.remove(&Reference::parse(n)?)?;
                println!("untagged {n} ({digest})");
            }
        }
        ImageCommand::Prune => {
            let pruned = store.prune(&images_in_use(&home)?, PRUNE_GRACE)?;
            println!(
                "deleted {} layers and {} blobs, {}",
                pruned.layers,
                pruned.blobs,
                super::progress::human_bytes(pruned.bytes)
            );
        }
    }
    Ok(())
}

/// The images (manifest digests) that the containers of every project in DEVENV_HOME were
/// created from, whether they run or not. A state that cannot be read stops the prune: what
/// it would keep is unknown.
fn images_in_use(home: &Home) -> anyhow::Result<Vec<crate::image::Digest>> {
    let Ok(projects) = std::fs::read_dir(home.root().join("projects")) else { return Ok(vec![]) };
    let mut out = Vec::new();
    for entry in projects.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(state) = crate::state::ProjectState::load(&home.state_file(&name))? else {
            continue;
        };
        out.extend(state.containers.values().filter_map(|c| c.image_digest.parse().ok()));
    }
    Ok(out)
}

pub fn list(store: &Store) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let rows: Vec<[String; 3]> = store
        .list()?
        .into_iter()
        // Docker's SIZE column: `11.8MB`.
        .map(|i| {
            let size = super::progress::human_bytes(i.size).replace(' ', "");
            [i.name.familiar(), i.digest.to_string(), size]
        })
        .collect();
    let w0 = rows.iter().map(|r| r[0].len()).chain([4]).max().unwrap_or(4);
    let w1 = rows.iter().map(|r| r[1].len()).chain([6]).max().unwrap_or(6);
    writeln!(out, "{:<w0$}   {:<w1$}   SIZE", "NAME", "DIGEST")?;
    for r in rows {
        writeln!(out, "{:<w0$}   {:<w1$}   {}", r[0], r[1], r[2])?;
    }
    Ok(())
}
