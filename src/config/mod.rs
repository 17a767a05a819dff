//! The project file: discovery, YAML with source locations, interpolation, typed model,
//! validation and located diagnostics.

pub mod dotenv;
pub mod forms;
pub mod interpolate;
pub mod model;
pub mod ports;
pub mod units;
pub mod volumes;
