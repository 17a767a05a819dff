//! The project file: discovery, YAML with source locations, interpolation, typed model,
//! normalization, validation and located diagnostics.

pub mod de;
pub mod diagnostic;
pub mod discover;
pub mod dotenv;
pub mod emit;
pub mod forms;
pub mod interpolate;
pub mod limits;
mod load;
pub mod locate;
pub mod model;
pub mod normalize;
pub mod ports;
pub mod schema;
pub mod units;
pub mod unsupported;
mod validate;
pub mod volumes;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use load::{load, load_str, ConfigError, LoadOptions, Project};
