//! devenv: development environments from a Compose-style project file, on its own container
//! engine. The binary in `main.rs` is a thin shell over this library.

pub mod cli;
pub mod clock;
pub mod config;
pub mod engine;
pub mod events;
pub mod graph;
pub mod health;
pub mod image;
pub mod logs;
pub mod network;
pub mod registry;
pub mod runtime;
pub mod state;
pub mod suggest;
pub mod supervisor;
pub mod watch;
