use thiserror::Error;

use crate::proto::ErrorKind;

/// Everything that can go wrong with a parameter, named after the
/// parameter it concerns.
#[derive(Debug, Error)]
pub enum ParamError {
    #[error("invalid parameter name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },
    #[error("value of {name} is {len} bytes long; at most {max} are allowed")]
    ValueTooLong { name: String, len: usize, max: usize },
    #[error("invalid value for {name}: {why}")]
    InvalidValue { name: String, why: String },
    #[error("permission denied: cannot {op} {name}")]
    PermissionDenied { name: String, op: String },
    #[error("parameter {name} not found")]
    NotFound { name: String },
    #[error("{name} is read-only (const.* parameters are set once)")]
    ReadOnly { name: String },
    #[error("{name} takes a {expected} value")]
    TypeMismatch { name: String, expected: String },
    #[error("cannot set {name}: {why}")]
    LimitReached { name: String, why: String },
    #[error("timed out waiting for {name}")]
    Timeout { name: String },
    #[error("cannot connect to the parameter service at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("parameter service I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("parameter protocol: {0}")]
    Protocol(String),
    #[error("{message}")]
    Server { kind: ErrorKind, message: String },
}

impl ParamError {
    /// The wire kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ParamError::InvalidName { .. } => ErrorKind::InvalidName,
            ParamError::ValueTooLong { .. } => ErrorKind::ValueTooLong,
            ParamError::InvalidValue { .. } => ErrorKind::InvalidValue,
            ParamError::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            ParamError::NotFound { .. } => ErrorKind::NotFound,
            ParamError::ReadOnly { .. } => ErrorKind::ReadOnly,
            ParamError::TypeMismatch { .. } => ErrorKind::TypeMismatch,
            ParamError::Timeout { .. } => ErrorKind::Timeout,
            ParamError::LimitReached { .. } => ErrorKind::ResourceLimit,
            ParamError::Connect { .. } | ParamError::Io(_) => ErrorKind::Internal,
            ParamError::Protocol(_) => ErrorKind::Protocol,
            ParamError::Server { kind, .. } => *kind,
        }
    }
}

impl From<&ParamError> for ErrorKind {
    fn from(e: &ParamError) -> ErrorKind {
        e.kind()
    }
}
