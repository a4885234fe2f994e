//! What can go wrong loading an app's configuration, and where in which file.
//!
//! Every problem with the contents of a file carries a [`Position`], and problems with a field
//! also its dotted path, so messages read like
//! `drover.yml:14:7: health.path: expected a path starting with "/"`.

use std::fmt;
use std::path::PathBuf;

/// A place in a configuration file: the file's display name, then a 1-based line and column.
///
/// Columns count characters, not bytes, so they match what an editor shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// The name the caller gave the file, e.g. `drover.yml`.
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Why an app's configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is not well-formed: broken YAML, a document that is not a mapping, or a
    /// Procfile line that is not `name: command`.
    #[error("{at}: {message}")]
    Malformed { at: Position, message: String },
    /// A field is unknown, of the wrong type, or holds a value that is not allowed.
    ///
    /// `field` is the dotted path to it, e.g. `health.path`, `processes.web` or `build[2]`.
    #[error("{at}: {field}: {message}")]
    Invalid { at: Position, field: String, message: String },
    /// The directory has neither a `drover.yml` nor a `Procfile`.
    ///
    /// The message leaves out `dir`: it is often a temporary upload or build directory that
    /// means nothing to the user. Callers that know a better name add it as context.
    #[error("no drover.yml or Procfile found")]
    NotFound { dir: PathBuf },
    /// Only a Procfile exists, it cannot name the app, and the caller gave no name.
    #[error("the app has no name: a Procfile cannot give one, so add a drover.yml with `app: NAME`")]
    NoAppName { procfile: PathBuf },
    /// A file exists but could not be read (permissions, not UTF-8, ...).
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConfigError {
    /// Where in a file the problem is, if it is about a file's contents.
    pub fn position(&self) -> Option<&Position> {
        match self {
            Self::Malformed { at, .. } | Self::Invalid { at, .. } => Some(at),
            Self::NotFound { .. } | Self::NoAppName { .. } | Self::Read { .. } => None,
        }
    }

    /// The dotted path of the offending field, if the problem is about one field.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Malformed { .. } | Self::NotFound { .. } | Self::NoAppName { .. } | Self::Read { .. } => None,
        }
    }
}

/// A key as it appears in a field path: as is when it is a plain word, quoted otherwise, so that
/// `env."A B"` cannot be mistaken for two levels.
pub(crate) fn field_segment(name: &str) -> String {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        return name.to_owned();
    }
    format!("{name:?}")
}
