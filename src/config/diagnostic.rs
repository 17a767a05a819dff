//! Located messages about a project file: errors and warnings that name the file, line,
//! column and key path, say what was expected, and suggest a fix, rendered with the source line.

use std::fmt;
use std::path::PathBuf;

use super::yaml::Mark;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: PathBuf,
    pub mark: Mark,
    /// Key path such as `services.web.ports[1]`; empty at the document root.
    pub path: String,
    pub message: String,
    /// A likely fix, such as "did you mean `ports`?".
    pub suggestion: Option<String>,
    /// The source line at `mark`, for display.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn error(
        file: impl Into<PathBuf>,
        mark: Mark,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            mark,
            path: path.into(),
            message: message.into(),
            suggestion: None,
            source_line: None,
        }
    }

    pub fn warning(
        file: impl Into<PathBuf>,
        mark: Mark,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(file, mark, path, message) }
    }

    pub fn with_suggestion(mut self, suggestion: Option<String>) -> Self {
        self.suggestion = suggestion;
        self
    }

    /// Attaches the source line the diagnostic points at.
    pub fn with_source(mut self, src: &str) -> Self {
        self.source_line = src.lines().nth(self.mark.line.saturating_sub(1)).map(str::to_owned);
        self
    }

    /// The one-line form: `devenv.yaml:3:12: services.web.ports[0]: message`.
    pub fn headline(&self) -> String {
        let path = if self.path.is_empty() { String::new() } else { format!("{}: ", self.path) };
        format!("{}:{}: {path}{}", self.file.display(), self.mark, self.message)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let label = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{label}: {}", self.headline())?;
        if let Some(line) = &self.source_line {
            let n = self.mark.line.to_string();
            let pad = " ".repeat(n.len());
            let caret = " ".repeat(self.mark.column.saturating_sub(1));
            write!(f, "\n {pad} |\n {n} | {line}\n {pad} | {caret}^")?;
        }
        if let Some(s) = &self.suggestion {
            write!(f, "\n  = help: {s}")?;
        }
        Ok(())
    }
}
