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
