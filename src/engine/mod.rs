//! Turning services into containers and back: the blocking operations the supervisor (or, when
//! none runs, the CLI itself) performs for one container at a time, each saving its progress
//! in the project state so a later run can finish or undo it.
//!
//! Setup rolls back what it did when a later step fails (`create.rs`); teardown is best-effort,
//! collects every error and carries on (`remove.rs`).

mod create;
pub mod plan;
mod reconcile;
mod remove;
mod volumes;

use std::path::PathBuf;

use crate::image::Store;
use crate::runtime::Runtime;
use crate::state::Home;

pub use create::CreateRequest;
pub use reconcile::Outcome;
pub use remove::parse_signal;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("service \"{service}\": image {image} is not in the image store; load it with `devenv image load ARCHIVE --tag {familiar}`")]
    ImageMissing { service: String, image: String, familiar: String },
    #[error("service \"{service}\": {source}")]
    Image { service: String, source: crate::image::ImageError },
    #[error("service \"{service}\": {message}")]
    Refused { service: String, message: String },
    #[error("service \"{service}\": {source}")]
    Spec { service: String, source: crate::runtime::spec::SpecError },
    #[error("service \"{service}\": {source}")]
    Runtime { service: String, source: crate::runtime::RuntimeError },
    #[error("service \"{service}\": {what} {}: {source}", path.display())]
    Io { service: String, what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("service \"{service}\": cannot save the project state: {source}")]
    State { service: String, source: crate::state::StateError },
}

/// What the engine works with: the state directory, the image store and the OCI runtime.
pub struct Engine {
    pub home: Home,
    pub store: Store,
    pub runtime: Box<dyn Runtime>,
}

impl Engine {
    pub fn new(home: Home, store: Store, runtime: Box<dyn Runtime>) -> Engine {
        Engine { home, store, runtime }
    }
}
