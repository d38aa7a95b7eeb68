//! OTLP exports for the tests, built with `rollbackd::loadgen`'s builders:
//! protobuf bytes, or the same messages as OTLP/JSON.

use prost::Message as _;
use rollbackd::loadgen::{resource, server_span, trace_export};

use super::procs::now_ns;

/// `n` SERVER spans ending now, `errors` of them failing, as OTLP protobuf.
pub fn spans_proto(service: &str, version: &str, n: usize, errors: usize) -> Vec<u8> {
    let end = now_ns();
    let spans = (0..n)
        .map(|i| {
            let end = end - i as u64 * 1000;
            let code = if i < errors { 500 } else { 200 };
            server_span(i as u64, end - 30_000_000, end, code)
        })
        .collect();
    trace_export(resource(service, version, None), spans).encode_to_vec()
}

/// Histogram points (delta) of `http.server.request.duration` as OTLP/JSON.
pub fn metrics_json(service: &str, version: &str, ok: u64, errors: u64) -> Vec<u8> {
    let t = now_ns();
    let point = |code: u64, n: u64| {
        serde_json::json!({
            "attributes": [{"key": "http.response.status_code", "value": {"intValue": code.to_string()}}],
            "startTimeUnixNano": (t - 1_000_000_000).to_string(), "timeUnixNano": t.to_string(),
            "count": n.to_string(), "bucketCounts": [n.to_string(), "0"], "explicitBounds": [0.1]
        })
    };
    serde_json::json!({"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": service}},
        {"key": "service.version", "value": {"stringValue": version}}]},
      "scopeMetrics": [{"metrics": [{"name": "http.server.request.duration", "unit": "s",
        "histogram": {"aggregationTemporality": 1, "dataPoints": [point(200, ok), point(500, errors)]}}]}]}]})
    .to_string()
    .into_bytes()
}

/// Cumulative histogram points of `http.server.request.duration` now, as
/// OTLP protobuf: one series per count in `counts` (the series started at
/// `start_ns`), the last one's requests failing.
pub fn cumulative_proto(service: &str, version: &str, start_ns: u64, counts: &[u64]) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1 as pm;
    use rollbackd::loadgen::{kv_int, kv_str};
    let t = now_ns();
    let points = counts
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let code = if i + 1 == counts.len() { 500 } else { 200 };
            pm::HistogramDataPoint {
                attributes: vec![
                    kv_str("http.route", &format!("/r{i}")),
                    kv_int("http.response.status_code", code),
                ],
                start_time_unix_nano: start_ns,
                time_unix_nano: t,
                count: n,
                bucket_counts: vec![n, 0],
                explicit_bounds: vec![0.1],
                ..Default::default()
            }
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: Some(resource(service, version, None)),
            scope_metrics: vec![pm::ScopeMetrics {
                metrics: vec![pm::Metric {
                    name: "http.server.request.duration".into(),
                    unit: "s".into(),
                    data: Some(pm::metric::Data::Histogram(pm::Histogram {
                        data_points: points,
                        aggregation_temporality: 2,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}
