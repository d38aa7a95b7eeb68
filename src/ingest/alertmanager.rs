//! Alertmanager webhook payloads, version "4" (`docs/formats.md#alertmanager-webhook`).
//!
//! Unknown fields are ignored: newer Alertmanagers add fields such as
//! `notification_reason` and `routeLabels`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_labels, DecodeError};
use crate::model::{Alert, AlertStatus};
use crate::time::Timestamp;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    version: String,
    alerts: Vec<WebhookAlert>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WebhookAlert {
    status: AlertStatus,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    fingerprint: String,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

/// Decodes one webhook notification into its alerts.
pub fn decode(bytes: &[u8]) -> Result<Vec<Alert>, DecodeError> {
    let hook: Webhook = serde_json::from_slice(bytes)
        .map_err(|e| DecodeError::new(format!("invalid Alertmanager webhook: {e}")))?;
    from_webhook(hook)
}

/// Decodes one webhook notification from an already-parsed JSON value.
pub fn from_value(value: &serde_json::Value) -> Result<Vec<Alert>, DecodeError> {
    let hook = Webhook::deserialize(value)
        .map_err(|e| DecodeError::new(format!("invalid Alertmanager webhook: {e}")))?;
    from_webhook(hook)
}

fn from_webhook(hook: Webhook) -> Result<Vec<Alert>, DecodeError> {
    if hook.version != "4" {
        return Err(DecodeError::new(format!(
            "unsupported Alertmanager webhook version {:?} (want \"4\")",
            hook.version
        )));
    }
    hook.alerts
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            let starts_at = Timestamp::parse_rfc3339(&a.starts_at)
                .map_err(|e| DecodeError::new(format!("alerts[{i}].startsAt: {e}")))?;
            check_labels(&format!("alerts[{i}].labels"), a.labels.iter())?;
            check_labels(&format!("alerts[{i}].annotations"), a.annotations.iter())?;
            let fingerprint = if a.fingerprint.is_empty() {
                // Alertmanager always sends one; derive a stable stand-in otherwise.
                label_fingerprint(&a.labels)
            } else {
                a.fingerprint
            };
            Ok(Alert {
                status: a.status,
                labels: a.labels,
                annotations: a.annotations,
                starts_at,
                fingerprint,
                generator_url: a.generator_url,
            })
        })
        .collect()
}

fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOOK: &str = r#"{"version":"4","groupKey":"{}:{}","truncatedAlerts":0,"status":"firing",
      "receiver":"rollbackd","groupLabels":{},"commonLabels":{},"commonAnnotations":{},
      "externalURL":"http://am:9093","notification_reason":"new",
      "alerts":[{"status":"firing","labels":{"alertname":"HighErrorRate","service":"auth","severity":"critical"},
        "annotations":{"summary":"x"},"startsAt":"2026-11-26T12:04:00Z","endsAt":"0001-01-01T00:00:00Z",
        "generatorURL":"http://prom/graph","fingerprint":"abc"},
       {"status":"resolved","labels":{"alertname":"B"},"startsAt":"2026-11-26T12:00:00.123456789+00:00","endsAt":"2026-11-26T12:05:00Z"}]}"#;

    #[test]
    fn decodes_v4() {
        let alerts = decode(HOOK.as_bytes()).unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0].status, AlertStatus::Firing);
        assert_eq!(alerts[0].labels["service"], "auth");
        assert_eq!(alerts[0].fingerprint, "abc");
        assert_eq!(alerts[1].status, AlertStatus::Resolved);
        assert_eq!(alerts[1].fingerprint.len(), 16);
    }

    #[test]
    fn rejects_other_versions_and_shapes() {
        assert!(decode(HOOK.replace("\"4\"", "\"3\"").as_bytes()).is_err());
        assert!(decode(b"{\"version\":\"4\"}").is_err());
        assert!(decode(HOOK.replace("2026-11-26T12:04:00Z", "soon").as_bytes()).is_err());
        assert!(decode(
            HOOK.replace("\"firing\",\"labels\"", "\"burning\",\"labels\"")
                .as_bytes()
        )
        .is_err());
    }
}
