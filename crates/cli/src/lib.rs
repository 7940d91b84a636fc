//! The `appcreds` operator and caller CLI.

pub mod keywrap;

/// Everything the CLI can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The PEM is not a usable GitHub App key (nothing was sent to AWS).
    #[error("bad key: {0}")]
    BadKey(String),
    /// The import could not be carried out.
    #[error("import failed: {0}")]
    Import(String),
}
