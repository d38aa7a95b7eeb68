//! OTLP building blocks shared by the benches.

#![allow(dead_code)]

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;

pub use rollbackd::loadgen::{kv_int as kv_i, kv_str as kv_s};

/// Resource attributes as an SDK plus the Collector's k8s processor set them.
pub fn resource(service: &str, version: &str) -> Resource {
    Resource {
        attributes: vec![
            kv_s("service.name", service),
            kv_s("service.version", version),
            kv_s("deployment.environment.name", "prod"),
            kv_s("telemetry.sdk.name", "opentelemetry"),
            kv_s("telemetry.sdk.language", "go"),
            kv_s("telemetry.sdk.version", "1.38.0"),
            kv_s("k8s.namespace.name", "shop"),
            kv_s("k8s.pod.name", "checkout-7d9f8b6c5-x2x9q"),
            kv_s("k8s.node.name", "ip-10-0-12-34.ec2.internal"),
            kv_s("host.name", "checkout-7d9f8b6c5-x2x9q"),
        ],
        ..Default::default()
    }
}

/// `http.server.request.duration` points of `resource`, as an SDK exports
/// them (`temporality`: 1 delta, 2 cumulative).
pub fn durations(
    resource: Resource,
    points: Vec<pm::HistogramDataPoint>,
    temporality: i32,
) -> pm::ResourceMetrics {
    pm::ResourceMetrics {
        resource: Some(resource),
        scope_metrics: vec![pm::ScopeMetrics {
            metrics: vec![pm::Metric {
                name: "http.server.request.duration".into(),
                unit: "s".into(),
                data: Some(pm::metric::Data::Histogram(pm::Histogram {
                    data_points: points,
                    aggregation_temporality: temporality,
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The explicit bounds the semantic conventions advise for
/// `http.server.request.duration`.
pub const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// An export of `n` healthy SERVER spans ending at `end_ns`, with the HTTP
/// attributes an instrumented server sets (about 360 bytes a span).
pub fn span_export(service: &str, version: &str, i: usize, n: usize, end_ns: u64) -> Vec<u8> {
    let spans = (0..n)
        .map(|j| Span {
            trace_id: ((i * n + j) as u128).to_be_bytes().to_vec(),
            span_id: ((i * n + j) as u64).to_be_bytes().to_vec(),
            name: "POST /api/v1/checkout".into(),
            kind: 2,
            start_time_unix_nano: end_ns - 35_000_000,
            end_time_unix_nano: end_ns - j as u64 * 1000,
            attributes: vec![
                kv_s("http.request.method", "POST"),
                kv_s("http.route", "/api/v1/checkout"),
                kv_s("url.path", "/api/v1/checkout"),
                kv_i("http.response.status_code", 200),
                kv_s("server.address", "checkout.shop.svc"),
                kv_s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
            ],
            status: Some(Status::default()),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource(service, version)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}
