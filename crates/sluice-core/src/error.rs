//! The error type shared by connectors, transforms and the engine.
//!
//! Every error carries an [`ErrorKind`] so the command line can map it to an
//! exit code, and enough context (file, table, key, URL without password)
//! for the user to act on it. Item rejections are not errors: they travel as
//! [`crate::Rejection`]s and the engine decides what to do with them.

use std::path::PathBuf;

/// Result alias for sluice operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The class of an error; each class has its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The configuration is wrong; nothing was connected or written.
    Config,
    /// A server or file could not be reached or opened.
    Connection,
    /// Input data was refused and `on_error = "stop"` (or `max_errors`) ended the run.
    DataRejected,
    /// The run was interrupted by a signal.
    Interrupted,
    /// A bug or an unexpected state inside sluice.
    Internal,
}

/// An error with a kind and a message a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration; `key` names the offending setting.
    #[error("{key}: {message}")]
    Config { key: String, message: String },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A destination or source could not be reached or refused the operation as a whole.
    #[error("{target}: {message}")]
    Connection { target: String, message: String },
    /// A failure that may pass if the operation is tried again: a lost
    /// connection, a timeout, a deadlock or serialization failure, a server
    /// that is starting, busy (HTTP 429) or failing (5xx).
    #[error("{target}: {message}")]
    Retryable { target: String, message: String },
    /// Bad data that cannot be isolated to single rows (for example a corrupt file).
    #[error("{location}: {message}")]
    Data { location: String, message: String },
    /// A row was rejected and the error policy says stop.
    #[error("{0}")]
    Rejected(String),
    /// The run was cancelled.
    #[error("interrupted")]
    Interrupted,
    /// The reader of standard output went away (`| head`): the run ends, and
    /// that is the reader's choice rather than a failure.
    #[error("standard output was closed by its reader")]
    OutputClosed,
    /// Arrow failed where the input cannot be blamed.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Something that should not happen.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// Which exit-code class this error belongs to.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::Config,
            Error::Io { .. } | Error::Connection { .. } | Error::Retryable { .. } => ErrorKind::Connection,
            Error::Data { .. } | Error::Rejected(_) => ErrorKind::DataRejected,
            Error::Interrupted | Error::OutputClosed => ErrorKind::Interrupted,
            Error::Arrow(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    /// A configuration error for `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            key: key.into(),
            message: message.into(),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A data error at `location` (a file, or a file and line).
    pub fn data(location: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Data {
            location: location.into(),
            message: message.into(),
        }
    }

    /// A failure at `target` that may pass when tried again.
    pub fn retryable(target: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Retryable {
            target: target.into(),
            message: message.into(),
        }
    }

    /// Whether trying the operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Retryable { .. })
    }

    /// A failure to reach or use `target`.
    pub fn connection(target: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Connection {
            target: target.into(),
            message: message.into(),
        }
    }
}
