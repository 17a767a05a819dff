//! STUB until the interpolation module lands.
use std::borrow::Cow;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InterpolationError {
    pub offset: usize,
    pub message: String,
}

pub fn interpolate<'a>(
    input: &'a str,
    _lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Cow<'a, str>, InterpolationError> {
    Ok(Cow::Borrowed(input))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

pub fn parse_dotenv(
    _text: &str,
    _lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, DotenvError> {
    Ok(vec![])
}
