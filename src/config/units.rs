//! Durations (`1m30s`, Go's syntax as Compose uses it) and byte sizes (`512m`, `1g`).
//! PLACEHOLDER: to be written in full.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Duration(pub std::time::Duration);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ByteSize(pub u64);
