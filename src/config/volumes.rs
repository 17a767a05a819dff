//! Service mounts: Compose's short syntax (`./src:/app:ro`, `data:/var/lib/x`) and long syntax.
//! PLACEHOLDER: to be written in full.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MountType {
    Bind,
    Volume,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Mount {
    #[serde(rename = "type")]
    pub kind: MountType,
    pub source: Option<String>,
    pub target: String,
    #[serde(default)]
    pub read_only: bool,
}
