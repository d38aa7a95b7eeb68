//! Simulated canary traffic, for trying rollbackd without instrumented
//! services: `rollbackd loadgen` sends it, the tests and benches build
//! their OTLP exports with the same functions.
//!
//! Each canary is a service with a baseline (the previous version) and a
//! candidate (the version being deployed), each serving `rps` requests a
//! second; the candidate fails a given share of them, the baseline a small
//! one. Traffic is deterministic: which request fails is a function of the
//! seed, the canary, the version, the second and the request's index.

use std::str::FromStr;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use crate::rng::splitmix;
use crate::time::Timestamp;

/// How long every simulated request takes.
pub const LATENCY_NS: u64 = 30_000_000;

/// One service being deployed: `SERVICE:BASELINE:CANDIDATE:ERRORS`, e.g.
/// `checkout:v1:v2:0.2` (the candidate v2 fails 20 % of its requests).
#[derive(Debug, Clone, PartialEq)]
pub struct Canary {
    pub service: String,
    pub baseline: String,
    pub candidate: String,
    /// Share of the candidate's requests that fail (HTTP 500), 0 to 1.
    pub candidate_errors: f64,
}

impl FromStr for Canary {
    type Err = String;

    fn from_str(s: &str) -> Result<Canary, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let [service, baseline, candidate, errors] = parts.as_slice() else {
            return Err(format!(
                "{s:?} is not SERVICE:BASELINE:CANDIDATE:ERRORS (e.g. checkout:v1:v2:0.2)"
            ));
        };
        if [service, baseline, candidate].iter().any(|p| p.is_empty()) {
            return Err(format!("{s:?}: service and versions must not be empty"));
        }
        let candidate_errors: f64 = errors
            .parse()
            .ok()
            .filter(|e| (0.0..=1.0).contains(e))
            .ok_or_else(|| format!("{s:?}: ERRORS must be a share from 0 to 1"))?;
        Ok(Canary {
            service: service.to_string(),
            baseline: baseline.to_string(),
            candidate: candidate.to_string(),
            candidate_errors,
        })
    }
}

/// The traffic of several canaries.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub canaries: Vec<Canary>,
    /// `deployment.environment.name`, when set.
    pub environment: Option<String>,
    /// Requests a second, per version.
    pub rps: u32,
    /// Share of the baseline's requests that fail.
    pub baseline_errors: f64,
    pub seed: u64,
    /// A rollout seen only in the telemetry, this many seconds long: the
    /// baseline serves alone for its first third, both versions for the
    /// second, the candidate alone for the last.
    pub rollout: Option<u64>,
}

/// What one second of one version of one canary sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub service: String,
    pub version: String,
    pub requests: u32,
    pub errors: u32,
    pub request: ExportTraceServiceRequest,
}

impl Traffic {
    /// The exports of the second that ends at `end`, the `second`-th since
    /// the traffic started: one per canary and version.
    pub fn second(&self, second: u64, end: Timestamp) -> Vec<Export> {
        let mut out = Vec::with_capacity(self.canaries.len() * 2);
        for (c, canary) in self.canaries.iter().enumerate() {
            for (v, (version, rate)) in [
                (&canary.baseline, self.baseline_errors),
                (&canary.candidate, canary.candidate_errors),
            ]
            .into_iter()
            .enumerate()
            {
                if !self.serves(v == 1, second) {
                    continue;
                }
                let stream = splitmix(self.seed ^ splitmix((c as u64) << 1 | v as u64));
                let spans: Vec<Span> = (0..self.rps)
                    .map(|i| {
                        let r = splitmix(stream ^ splitmix(second << 20 | u64::from(i)));
                        // The top 53 bits as a share of 1.
                        let failed = ((r >> 11) as f64 / (1u64 << 53) as f64) < rate;
                        let end_ns = end.nanos() as u64
                            - u64::from(i) * (1_000_000_000 / u64::from(self.rps.max(1)));
                        server_span(
                            r,
                            end_ns - LATENCY_NS,
                            end_ns,
                            if failed { 500 } else { 200 },
                        )
                    })
                    .collect();
                let errors = spans
                    .iter()
                    .filter(|s| s.status.as_ref().is_some_and(|s| s.code == 2))
                    .count() as u32;
                out.push(Export {
                    service: canary.service.clone(),
                    version: version.clone(),
                    requests: self.rps,
                    errors,
                    request: trace_export(
                        resource(&canary.service, version, self.environment.as_deref()),
                        spans,
                    ),
                });
            }
        }
        out
    }

    /// Whether the candidate (or the baseline) serves in `second`.
    fn serves(&self, candidate: bool, second: u64) -> bool {
        match self.rollout {
            None => true,
            Some(total) if candidate => second >= total / 3,
            Some(total) => second < total - total / 3,
        }
    }
}

/// A string attribute.
pub fn kv_str(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn kv_int(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..Default::default()
    }
}

/// The resource of one version of a service, as an SDK describes it.
pub fn resource(service: &str, version: &str, environment: Option<&str>) -> Resource {
    let mut attributes = vec![
        kv_str("service.name", service),
        kv_str("service.version", version),
    ];
    if let Some(env) = environment {
        attributes.push(kv_str("deployment.environment.name", env));
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// A SERVER span of an HTTP request that answered `status_code` (status
/// ERROR for 5xx, as HTTP server instrumentations set it); `id` seeds its
/// trace and span ids.
pub fn server_span(id: u64, start_ns: u64, end_ns: u64, status_code: i64) -> Span {
    Span {
        trace_id: [id.to_be_bytes(), splitmix(id).to_be_bytes()].concat(),
        span_id: splitmix(id ^ 1).to_be_bytes().to_vec(),
        name: "GET /".into(),
        kind: 2,
        start_time_unix_nano: start_ns,
        end_time_unix_nano: end_ns,
        attributes: vec![kv_int("http.response.status_code", status_code)],
        status: Some(Status {
            code: if status_code >= 500 { 2 } else { 0 },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// One trace export of one resource's spans.
pub fn trace_export(resource: Resource, spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_specs_parse_or_say_why_not() {
        let c: Canary = "checkout:v1:v2:0.2".parse().unwrap();
        assert_eq!(c.service, "checkout");
        assert_eq!((c.baseline.as_str(), c.candidate.as_str()), ("v1", "v2"));
        assert_eq!(c.candidate_errors, 0.2);
        for bad in [
            "checkout",
            "a:b:c",
            "a:b:c:2",
            "a::c:0.1",
            "a:b:c:x",
            "a:b:c:0.1:9",
        ] {
            assert!(bad.parse::<Canary>().is_err(), "{bad}");
        }
    }

    #[test]
    fn traffic_is_deterministic_and_fails_as_asked() {
        let t = Traffic {
            canaries: vec!["web:v1:v2:0.25".parse().unwrap()],
            environment: Some("prod".into()),
            rps: 400,
            baseline_errors: 0.0,
            seed: 7,
            rollout: None,
        };
        let end = Timestamp(1_800_000_000_000_000_000);
        let a = t.second(3, end);
        assert_eq!(a, t.second(3, end));
        assert_ne!(a, t.second(4, end));
        assert_eq!(a.len(), 2);
        assert_eq!((a[0].version.as_str(), a[0].errors), ("v1", 0));
        assert_eq!(a[1].version, "v2");
        assert!((70..130).contains(&a[1].errors), "{}", a[1].errors);
        // What rollbackd decodes from it is what was sent.
        let bytes = prost::Message::encode_to_vec(&a[1].request);
        let batch = crate::ingest::otlp::decode_traces_proto(&bytes).unwrap();
        let r = &batch.resources[0];
        assert_eq!(r.ident.environment.as_deref(), Some("prod"));
        assert_eq!(r.spans.len(), 400);
        assert_eq!(
            r.spans.iter().filter(|s| s.error).count() as u32,
            a[1].errors
        );
        assert!(r.spans.iter().all(|s| s.end <= end));
        // A rollout: the baseline alone, both, the candidate alone.
        let r = Traffic {
            rollout: Some(9),
            ..t.clone()
        };
        let versions =
            |s| -> Vec<String> { r.second(s, end).into_iter().map(|e| e.version).collect() };
        assert_eq!(versions(2), ["v1"]);
        assert_eq!(versions(3), ["v1", "v2"]);
        assert_eq!(versions(5), ["v1", "v2"]);
        assert_eq!(versions(6), ["v2"]);
        let json = serde_json::to_vec(&a[1].request).unwrap();
        assert_eq!(
            crate::ingest::otlp::decode_traces_json(&json).unwrap(),
            batch
        );
    }
}
