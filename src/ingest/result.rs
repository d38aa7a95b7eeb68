//! Executor results from the `rollback-results` topic (`docs/formats.md#executor-results`).

use super::{DecodeError, MAX_NAME, MAX_VALUE};
use crate::model::ExecutorResult;

/// Decodes one executor result.
pub fn decode(bytes: &[u8]) -> Result<ExecutorResult, DecodeError> {
    let r: ExecutorResult = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(format!("invalid executor result: {e}")))?;
    validate(r)
}

/// Decodes one executor result from an already-parsed JSON value.
pub fn from_value(value: &serde_json::Value) -> Result<ExecutorResult, DecodeError> {
    let r = <ExecutorResult as serde::Deserialize>::deserialize(value)
        .map_err(|e| DecodeError::new(format!("invalid executor result: {e}")))?;
    validate(r)
}

fn validate(r: ExecutorResult) -> Result<ExecutorResult, DecodeError> {
    if r.command_id.trim().is_empty() {
        return Err(DecodeError::new(
            "executor result: command_id must not be empty",
        ));
    }
    if r.deploy_id.trim().is_empty() {
        return Err(DecodeError::new(
            "executor result: deploy_id must not be empty",
        ));
    }
    for (field, value) in [
        ("command_id", &r.command_id),
        ("deploy_id", &r.deploy_id),
        ("executor", &r.executor),
    ] {
        if value.len() > MAX_NAME {
            return Err(DecodeError::new(format!(
                "executor result: {field} is longer than {MAX_NAME} bytes"
            )));
        }
    }
    if r.message.len() > MAX_VALUE {
        return Err(DecodeError::new(format!(
            "executor result: message is longer than {MAX_VALUE} bytes"
        )));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResultStatus;

    #[test]
    fn decodes_and_validates() {
        let r = decode(br#"{"command_id":"c","deploy_id":"d","status":"succeeded","at":"2026-11-26T12:00:00Z","executor":"argo","message":"ok"}"#).unwrap();
        assert_eq!(r.status, ResultStatus::Succeeded);
        assert!(decode(
            br#"{"command_id":"c","deploy_id":"d","status":"done","at":"2026-11-26T12:00:00Z"}"#
        )
        .is_err());
        assert!(decode(
            br#"{"command_id":"","deploy_id":"d","status":"failed","at":"2026-11-26T12:00:00Z"}"#
        )
        .is_err());
        assert!(
            decode(br#"{"deploy_id":"d","status":"failed","at":"2026-11-26T12:00:00Z"}"#).is_err()
        );
        let long = format!(
            r#"{{"command_id":"c","deploy_id":"d","status":"failed","at":"2026-11-26T12:00:00Z","message":"{}"}}"#,
            "x".repeat(MAX_VALUE + 1)
        );
        let err = decode(long.as_bytes()).unwrap_err();
        assert!(err.0.contains("message is longer"), "{err}");
    }
}
