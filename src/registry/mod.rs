// STAND-IN: replaced by the h-pull branch

#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    pub mirrors: Vec<String>,
    pub insecure: Vec<String>,
    pub auth_file: Option<std::path::PathBuf>,
}

impl RegistryConfig {
    pub fn from_env() -> Result<RegistryConfig, RegistryError> {
        Ok(RegistryConfig::default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot log in to {0}: the registry client is not merged yet")]
    NotMerged(String),
}

pub fn login(
    registry: &str,
    _user: &str,
    _password: &str,
    _config: &RegistryConfig,
) -> Result<(), RegistryError> {
    Err(RegistryError::NotMerged(registry.to_owned()))
}
