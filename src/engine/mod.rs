//! Turning services into containers and back: the blocking operations the supervisor (or, when
//! none runs, the CLI itself) performs for one container at a time, each saving its progress
//! in the project state so a later run can finish or undo it.
//!
//! Setup rolls back what it did when a later step fails (`create.rs`); teardown is best-effort,
//! collects every error and carries on (`remove.rs`).

mod create;
mod down;
mod network;
pub mod plan;
mod reconcile;
mod remove;
mod restart;
mod start;
mod volumes;

use std::path::PathBuf;

use crate::image::Store;
use crate::runtime::Runtime;
use crate::state::Home;

pub use create::CreateRequest;
pub use reconcile::Outcome;
pub use remove::parse_signal;
pub use start::Readiness;

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
    #[error("{message}")]
    Project { message: String },
    #[error("project network: {source}")]
    Network { source: crate::network::NetworkError },
    #[error("service \"{service}\": host port {port}/{protocol} is already in use by {holder}; stop it, or publish another host port, like \"{}:{target}\"", port.saturating_add(1))]
    PortTaken { service: String, port: u16, protocol: String, holder: String, target: u16 },
    #[error("service \"{service}\": cannot save the project state: {source}")]
    State { service: String, source: crate::state::StateError },
    #[error("cannot save the project state: {source}")]
    ProjectState { source: crate::state::StateError },
}

/// What the engine works with: the state directory, the image store, the OCI runtime, and the
/// pool project subnets come from.
pub struct Engine {
    pub home: Home,
    pub store: Store,
    pub runtime: Box<dyn Runtime>,
    pub pool: crate::network::Ipv4Net,
    /// Where containers' starts and exits are told; a no-op unless a supervisor listens.
    pub events: crate::events::EventSink,
}

impl Engine {
    /// An engine with the default subnet pool ([`crate::network::DEFAULT_POOL`]).
    pub fn new(home: Home, store: Store, runtime: Box<dyn Runtime>) -> Engine {
        let pool = crate::network::DEFAULT_POOL.parse().expect("a valid default pool");
        Engine { home, store, runtime, pool, events: Default::default() }
    }
}
