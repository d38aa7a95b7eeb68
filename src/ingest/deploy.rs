//! Deploy events (`docs/formats.md#deploy-events`): plain JSON, or a CloudEvents 1.0
//! structured-mode envelope whose `data` is the event.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{check_labels, DecodeError, MAX_NAME};
use crate::model::{DataMigration, DeployEvent, DeployEventKind};
use crate::time::{Duration, Timestamp};

/// Decodes one deploy event from JSON bytes.
pub fn decode(bytes: &[u8]) -> Result<DeployEvent, DecodeError> {
    let value: Value = serde_json::from_slice(bytes)?;
    from_value(&value)
}

/// Decodes one deploy event from an already-parsed JSON value.
pub fn from_value(value: &Value) -> Result<DeployEvent, DecodeError> {
    let obj = value
        .as_object()
        .ok_or_else(|| DecodeError::new("deploy event must be a JSON object"))?;
    if obj.contains_key("specversion") {
        return from_cloudevent(obj);
    }
    from_object(obj, None)
}

fn from_cloudevent(obj: &Map<String, Value>) -> Result<DeployEvent, DecodeError> {
    match obj.get("specversion").and_then(Value::as_str) {
        Some("1.0") => {}
        _ => return Err(DecodeError::new("cloudevent: specversion must be \"1.0\"")),
    }
    for key in ["id", "source", "type"] {
        if !obj.get(key).is_some_and(Value::is_string) {
            return Err(DecodeError::new(format!(
                "cloudevent: missing required attribute {key}"
            )));
        }
    }
    let data = obj
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| DecodeError::new("cloudevent: data must be a deploy event object"))?;
    // The envelope's type stands in when data carries none (some producers put
    // the event type only on the envelope).
    let envelope_type = obj.get("type").and_then(Value::as_str);
    from_object(data, envelope_type)
}

/// See [`super::check_clock`].
pub fn check_clock(
    ev: &DeployEvent,
    now: Timestamp,
    max_skew: Duration,
) -> Result<(), DecodeError> {
    let ahead = ev.at.since(now);
    if ahead > max_skew {
        return Err(DecodeError::new(format!(
            "field at: {} is {ahead} ahead of the clock ({now}), more than limits.max_clock_skew ({max_skew}): a wrong clock?",
            ev.at
        )));
    }
    Ok(())
}

fn too_long(key: &str) -> DecodeError {
    DecodeError::new(format!("field {key} is longer than {MAX_NAME} bytes"))
}

fn req_str<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<&'a str, DecodeError> {
    match obj.get(key) {
        Some(Value::String(s)) if s.len() > MAX_NAME => Err(too_long(key)),
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(Value::String(_)) => Err(DecodeError::new(format!("field {key} must not be empty"))),
        Some(_) => Err(DecodeError::new(format!("field {key} must be a string"))),
        None => Err(DecodeError::new(format!("missing required field {key}"))),
    }
}

fn opt_str(obj: &Map<String, Value>, key: &str) -> Result<Option<String>, DecodeError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_NAME => Err(too_long(key)),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(DecodeError::new(format!("field {key} must be a string"))),
    }
}

/// The event `obj` describes; `fallback_type` stands in for a missing
/// `type` (a CloudEvent's own).
fn from_object(
    obj: &Map<String, Value>,
    fallback_type: Option<&str>,
) -> Result<DeployEvent, DecodeError> {
    let kind = kind(obj, fallback_type)?;
    let deploy_id = req_str(obj, "deploy_id")?.to_string();
    let service = req_str(obj, "service")?.to_string();
    let version = req_str(obj, "version")?.to_string();
    let at = Timestamp::parse_rfc3339(req_str(obj, "at")?)
        .map_err(|e| DecodeError::new(format!("field at: {e}")))?;
    let data_migration = data_migration(obj)?;
    let canary_weight = canary_weight(obj)?;
    let labels = labels(obj)?;
    check_labels("labels", labels.iter())?;
    Ok(DeployEvent {
        kind,
        deploy_id,
        service,
        version,
        at,
        environment: opt_str(obj, "environment")?,
        previous_version: opt_str(obj, "previous_version")?,
        strategy: opt_str(obj, "strategy")?,
        release_id: opt_str(obj, "release_id")?,
        data_migration,
        canary_weight,
        labels,
    })
}

/// Field `type` (or `fallback_type` without one): a deploy event kind,
/// plain or at the end of a reverse-DNS name.
fn kind(
    obj: &Map<String, Value>,
    fallback_type: Option<&str>,
) -> Result<DeployEventKind, DecodeError> {
    let type_str = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(DecodeError::new("field type must be a string")),
        None => fallback_type.ok_or_else(|| DecodeError::new("missing required field type"))?,
    };
    DeployEventKind::parse(type_str)
        .or_else(|| {
            // CloudEvents types are often reverse-DNS: com.example.deploy.started.
            type_str
                .rfind("deploy.")
                .and_then(|i| DeployEventKind::parse(&type_str[i..]))
        })
        .ok_or_else(|| {
            DecodeError::new(format!(
                "unknown event type {type_str:?}: expected deploy.started, deploy.progressed, deploy.completed, deploy.rolled_back or deploy.aborted"
            ))
        })
}

/// Field `data_migration`: none when absent.
fn data_migration(obj: &Map<String, Value>) -> Result<DataMigration, DecodeError> {
    match opt_str(obj, "data_migration")? {
        None => Ok(DataMigration::None),
        Some(s) => DataMigration::parse(&s).ok_or_else(|| {
            DecodeError::new(format!(
                "field data_migration: {s:?} is not none, reversible or irreversible"
            ))
        }),
    }
}

/// Field `canary_weight`: a percentage, if given.
fn canary_weight(obj: &Map<String, Value>) -> Result<Option<f64>, DecodeError> {
    match obj.get("canary_weight") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|w| (0.0..=100.0).contains(w))
            .map(Some)
            .ok_or_else(|| DecodeError::new("field canary_weight must be a number from 0 to 100")),
    }
}

/// Field `labels`: an object of strings, empty when absent (not yet
/// checked against the bounds of labels).
fn labels(obj: &Map<String, Value>) -> Result<BTreeMap<String, String>, DecodeError> {
    let mut labels = BTreeMap::new();
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        labels.insert(k.clone(), s.clone());
                    }
                    _ => {
                        return Err(DecodeError::new(format!(
                            "field labels.{k} must be a string"
                        )))
                    }
                }
            }
        }
        Some(_) => {
            return Err(DecodeError::new(
                "field labels must be an object of strings",
            ))
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::super::MAX_VALUE;
    use super::*;

    const PLAIN: &str = r#"{"type":"deploy.started","deploy_id":"d-1","service":"checkout","version":"v2",
        "at":"2026-11-26T12:00:00Z","environment":"prod","previous_version":"v1","strategy":"canary",
        "release_id":"r-1","data_migration":"irreversible","canary_weight":10,"labels":{"team":"pay"},
        "unknown_field":[1,2]}"#;

    #[test]
    fn decodes_plain_events() {
        let e = decode(PLAIN.as_bytes()).unwrap();
        assert_eq!(e.kind, DeployEventKind::Started);
        assert_eq!(e.deploy_id, "d-1");
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.data_migration, DataMigration::Irreversible);
        assert_eq!(e.canary_weight, Some(10.0));
        assert_eq!(e.labels["team"], "pay");
    }

    #[test]
    fn decodes_cloudevents() {
        let ce = format!(
            r#"{{"specversion":"1.0","type":"com.example.deploy.started","source":"ci","id":"1","time":"2026-11-26T12:00:00Z","data":{PLAIN}}}"#
        );
        assert_eq!(decode(ce.as_bytes()).unwrap().deploy_id, "d-1");
        let no_inner_type = r#"{"specversion":"1.0","type":"deploy.completed","source":"ci","id":"1",
            "data":{"deploy_id":"d-1","service":"s","version":"v","at":"2026-11-26T12:00:00Z"}}"#;
        assert_eq!(
            decode(no_inner_type.as_bytes()).unwrap().kind,
            DeployEventKind::Completed
        );
    }

    #[test]
    fn rejects_malformed_events_with_a_reason() {
        let cases = [
            ("[1]", "object"),
            ("{", "invalid JSON"),
            (
                r#"{"type":"deploy.started","service":"s","version":"v","at":"2026-11-26T12:00:00Z"}"#,
                "deploy_id",
            ),
            (
                r#"{"type":"deploy.exploded","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z"}"#,
                "unknown event type",
            ),
            (
                r#"{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"yesterday"}"#,
                "field at",
            ),
            (
                r#"{"type":"deploy.started","deploy_id":7,"service":"s","version":"v","at":"2026-11-26T12:00:00Z"}"#,
                "deploy_id must be a string",
            ),
            (
                r#"{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z","data_migration":"maybe"}"#,
                "data_migration",
            ),
            (
                r#"{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z","canary_weight":140}"#,
                "canary_weight",
            ),
            (
                r#"{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z","labels":{"a":1}}"#,
                "labels.a",
            ),
            (
                r#"{"specversion":"0.3","type":"t","source":"s","id":"1","data":{}}"#,
                "specversion",
            ),
            (
                r#"{"specversion":"1.0","type":"t","source":"s","id":"1","data":"x"}"#,
                "data",
            ),
        ];
        for (input, want) in cases {
            let err = decode(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
        let oversized: [(String, &str); 3] = [
            (
                format!(
                    r#"{{"type":"deploy.started","deploy_id":"{}","service":"s","version":"v","at":"2026-11-26T12:00:00Z"}}"#,
                    "x".repeat(MAX_NAME + 1)
                ),
                "deploy_id is longer than",
            ),
            (
                format!(
                    r#"{{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z","labels":{{"a":"{}"}}}}"#,
                    "x".repeat(MAX_VALUE + 1)
                ),
                "field labels",
            ),
            (
                format!(
                    r#"{{"type":"deploy.started","deploy_id":"x","service":"s","version":"v","at":"2026-11-26T12:00:00Z","labels":{{{}}}}}"#,
                    (0..=super::super::MAX_LABELS)
                        .map(|i| format!(r#""k{i}":"v""#))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "more than",
            ),
        ];
        for (input, want) in oversized {
            let err = decode(input.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn an_event_from_the_future_is_malformed() {
        let ev = decode(PLAIN.as_bytes()).unwrap();
        let skew = Duration::from_secs(300);
        let at = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert!(check_clock(&ev, at("2026-11-26T11:56:00Z"), skew).is_ok());
        assert!(check_clock(&ev, at("2031-01-01T00:00:00Z"), skew).is_ok());
        let err = check_clock(&ev, at("2026-11-26T11:54:59Z"), skew).unwrap_err();
        assert!(err.0.contains("limits.max_clock_skew"), "{err}");
    }
}
