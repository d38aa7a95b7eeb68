//! Bytes → domain values. Every decoder here is a pure function: no I/O, no
//! clock, no panics; a decode error is a value naming what was wrong.

pub mod alertmanager;
pub mod deploy;
pub mod otlp;
pub mod result;

/// Why a record could not be decoded; shown to operators as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl DecodeError {
    pub fn new(msg: impl Into<String>) -> DecodeError {
        DecodeError(msg.into())
    }
}

impl From<serde_json::Error> for DecodeError {
    fn from(e: serde_json::Error) -> Self {
        DecodeError(format!("invalid JSON: {e}"))
    }
}

impl From<prost::DecodeError> for DecodeError {
    fn from(e: prost::DecodeError) -> Self {
        DecodeError(format!("invalid protobuf: {e}"))
    }
}
