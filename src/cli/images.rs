//! `devenv images` and `devenv image load`: what is in the image store, and getting images in
//! from archives (pulling from registries comes with its own command).

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
    /// List the images in the store.
    Ls,
    /// Remove an image's name from the store.
    Rm { names: Vec<String> },
}

pub fn run(cmd: &ImageCommand) -> anyhow::Result<()> {
    let home = Home::from_env();
    let store = Store::open(home.images())?;
    match cmd {
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
    }
    Ok(())
}

pub fn list(store: &Store) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    let rows: Vec<[String; 3]> = store
        .list()?
        .into_iter()
        .map(|i| [i.name.familiar(), i.digest.to_string(), human(i.size)])
        .collect();
    let w0 = rows.iter().map(|r| r[0].len()).chain([4]).max().unwrap_or(4);
    let w1 = rows.iter().map(|r| r[1].len()).chain([6]).max().unwrap_or(6);
    writeln!(out, "{:<w0$}   {:<w1$}   SIZE", "NAME", "DIGEST")?;
    for r in rows {
        writeln!(out, "{:<w0$}   {:<w1$}   {}", r[0], r[1], r[2])?;
    }
    Ok(())
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
