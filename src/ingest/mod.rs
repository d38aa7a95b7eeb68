//! Bytes → domain values. Every decoder here is a pure function: no I/O, no
//! clock, no panics; a decode error is a value naming what was wrong.
//!
//! [`decode`] is the one way in: which input the bytes are ([`Source`]) →
//! one [`Input`] for the engine. One module per wire format; [`evidence`]
//! also writes its format (what stage 1 sends the owners).

pub mod alertmanager;
pub mod deploy;
pub mod evidence;
pub mod otlp;
pub mod result;

use crate::config::{Config, OtlpEncoding};
use crate::model::gate::GateRecord;
use crate::model::{AdminRecord, Command, Input};
use crate::time::{Duration, Timestamp};

/// The longest identifier or name an input may carry (a deploy id, a
/// service, a version, an environment, a label key): longer ones are
/// malformed, so no input can make the state it keeps large.
pub const MAX_NAME: usize = 256;
/// The longest label value or annotation.
pub const MAX_VALUE: usize = 4096;
/// The most labels (or annotations) one deploy event or alert may carry.
pub const MAX_LABELS: usize = 128;

/// Which input a record is: the topic it came from, or the HTTP route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DeployEvents,
    Spans,
    Metrics,
    Results,
    Commands,
    Admin,
    Alertmanager,
}

impl Source {
    /// Maps a topic name (or `"alertmanager"`) to its input.
    pub fn from_topic(config: &Config, topic: &str) -> Option<Source> {
        let t = &config.topics;
        Some(if topic == t.deploy_events {
            Source::DeployEvents
        } else if topic == t.otlp_spans {
            Source::Spans
        } else if topic == t.otlp_metrics {
            Source::Metrics
        } else if topic == t.results {
            Source::Results
        } else if topic == t.commands {
            Source::Commands
        } else if topic == t.admin {
            Source::Admin
        } else if topic == "alertmanager" {
            Source::Alertmanager
        } else {
            return None;
        })
    }

    /// The `source` label of an input, as used in metrics and audit records.
    pub fn label(self) -> &'static str {
        match self {
            Source::DeployEvents => "deploy_events",
            Source::Spans => "otlp_spans",
            Source::Metrics => "otlp_metrics",
            Source::Results => "results",
            Source::Commands => "commands",
            Source::Admin => "admin",
            Source::Alertmanager => "alertmanager",
        }
    }
}

/// Decodes one record from `source` into the engine's input. `otlp` is the
/// encoding of OTLP bytes (the topic's, or the HTTP request's content type);
/// every other input is JSON.
pub fn decode(source: Source, bytes: &[u8], otlp: OtlpEncoding) -> Result<Input, DecodeError> {
    Ok(match source {
        Source::DeployEvents => Input::Deploy(deploy::decode(bytes)?),
        Source::Spans => Input::Telemetry(match otlp {
            OtlpEncoding::Json => otlp::decode_traces_json(bytes)?,
            OtlpEncoding::Proto => otlp::decode_traces_proto(bytes)?,
        }),
        Source::Metrics => Input::Telemetry(match otlp {
            OtlpEncoding::Json => otlp::decode_metrics_json(bytes)?,
            OtlpEncoding::Proto => otlp::decode_metrics_proto(bytes)?,
        }),
        Source::Results => Input::Result(result::decode(bytes)?),
        Source::Commands => Input::Command(
            serde_json::from_slice::<Command>(bytes)
                .map_err(|e| DecodeError::new(format!("invalid command: {e}")))?,
        ),
        Source::Admin => admin_topic(bytes)?,
        Source::Alertmanager => Input::Alerts(alertmanager::decode(bytes)?),
    })
}

/// A record of the admin topic: an admin action, or a gate record (told
/// apart by their schema).
fn admin_topic(bytes: &[u8]) -> Result<Input, DecodeError> {
    #[derive(serde::Deserialize)]
    struct Schema {
        schema: Option<String>,
    }
    let schema = serde_json::from_slice::<Schema>(bytes)
        .ok()
        .and_then(|s| s.schema);
    Ok(match schema.as_deref() {
        Some(crate::model::gate::GATE_SCHEMA) => {
            Input::Gate(GateRecord::decode(bytes).map_err(DecodeError::new)?)
        }
        _ => Input::Admin(AdminRecord::decode(bytes).map_err(DecodeError::new)?),
    })
}

/// Checks a decoded input against the clock `now` (wall time in `run`, the
/// record's time in `replay`): a deploy event further in the future than
/// `max_skew` is malformed. Its `at` would rank it above every later, real
/// deploy of its service until that time came.
pub fn check_clock(input: &Input, now: Timestamp, max_skew: Duration) -> Result<(), DecodeError> {
    match input {
        Input::Deploy(ev) => deploy::check_clock(ev, now, max_skew),
        _ => Ok(()),
    }
}

/// Checks that a map of labels (or annotations) is within the bounds, for
/// field `what`.
pub fn check_labels<'a>(
    what: &str,
    labels: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), DecodeError> {
    if labels.len() > MAX_LABELS {
        return Err(DecodeError::new(format!(
            "field {what} has {} entries, more than {MAX_LABELS}",
            labels.len()
        )));
    }
    for (k, v) in labels {
        if k.len() > MAX_NAME || v.len() > MAX_VALUE {
            return Err(DecodeError::new(format!(
                "field {what}: a key over {MAX_NAME} bytes or a value over {MAX_VALUE} bytes"
            )));
        }
    }
    Ok(())
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// One valid input of every kind, for mutation.
    const VALID: [&[u8]; 5] = [
        br#"{"type":"deploy.started","deploy_id":"d-1","service":"web","version":"v2","previous_version":"v1","at":"2026-11-26T12:00:00Z","labels":{"team":"a"}}"#,
        br#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"service":"web","severity":"critical"},"startsAt":"2026-11-26T12:00:00Z","fingerprint":"f"}]}"#,
        br#"{"command_id":"c","deploy_id":"d-1","status":"succeeded","at":"2026-11-26T12:00:00Z","executor":"x","message":""}"#,
        br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},"scopeSpans":[{"spans":[{"kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}]}]}]}]}"#,
        br#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[{"name":"http.server.request.duration","unit":"s","histogram":{"aggregationTemporality":2,"dataPoints":[{"startTimeUnixNano":"1","timeUnixNano":"2","count":"3","bucketCounts":["1","1","1"],"explicitBounds":[0.1,0.5]}]}}]}]}]}"#,
    ];

    fn decode_all(b: &[u8]) {
        let _ = super::otlp::decode_traces_proto(b);
        let _ = super::otlp::decode_metrics_proto(b);
        let _ = super::otlp::decode_traces_json(b);
        let _ = super::otlp::decode_metrics_json(b);
        let _ = super::deploy::decode(b);
        let _ = super::alertmanager::decode(b);
        let _ = super::result::decode(b);
        let _ = crate::model::AdminRecord::decode(b);
    }

    #[test]
    fn the_mutation_seeds_are_valid() {
        assert!(super::deploy::decode(VALID[0]).is_ok());
        assert!(super::alertmanager::decode(VALID[1]).is_ok());
        assert!(super::result::decode(VALID[2]).is_ok());
        assert_eq!(
            super::otlp::decode_traces_json(VALID[3])
                .unwrap()
                .resources
                .len(),
            1
        );
        assert_eq!(
            super::otlp::decode_metrics_json(VALID[4])
                .unwrap()
                .resources[0]
                .points
                .len(),
            1
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_a_decoder(b in proptest::collection::vec(any::<u8>(), 0..512)) {
            decode_all(&b);
        }

        #[test]
        fn mutated_valid_inputs_never_panic_a_decoder(
            which in 0..VALID.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
            cut in any::<usize>(),
        ) {
            let mut b = VALID[which].to_vec();
            for (at, byte) in edits {
                let i = at % b.len();
                b[i] = byte;
            }
            decode_all(&b);
            b.truncate(cut % (b.len() + 1));
            decode_all(&b);
        }
    }
}
