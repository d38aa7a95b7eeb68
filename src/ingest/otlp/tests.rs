use super::*;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message;

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", s("checkout")),
            kv("service.version", s("v2")),
            kv("deployment.environment", s("legacy")),
            kv("deployment.environment.name", s("prod")),
        ],
        ..Default::default()
    })
}

fn span(kind: i32, code: i32, http: Option<KeyValue>) -> pt::Span {
    pt::Span {
        kind,
        start_time_unix_nano: 1_000_000_000,
        end_time_unix_nano: 1_250_000_000,
        attributes: http.into_iter().collect(),
        status: Some(pt::Status {
            code,
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn proto_spans_follow_the_contract() {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: resource(),
            scope_spans: vec![pt::ScopeSpans {
                spans: vec![
                    span(2, 0, None),
                    span(2, 2, None),
                    span(
                        2,
                        0,
                        Some(kv(
                            "http.response.status_code",
                            any_value::Value::IntValue(503),
                        )),
                    ),
                    span(
                        2,
                        0,
                        Some(kv("http.status_code", any_value::Value::IntValue(500))),
                    ),
                    span(
                        2,
                        0,
                        Some(kv(
                            "http.response.status_code",
                            any_value::Value::IntValue(404),
                        )),
                    ),
                    span(3, 2, None), // CLIENT: not a request
                    span(1, 2, None), // INTERNAL
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let batch = decode_traces_proto(&req.encode_to_vec()).unwrap();
    assert_eq!(batch.resources.len(), 1);
    let r = &batch.resources[0];
    assert_eq!(r.ident.service.as_deref(), Some("checkout"));
    assert_eq!(r.ident.environment.as_deref(), Some("prod"));
    let errors: Vec<bool> = r.spans.iter().map(|s| s.error).collect();
    assert_eq!(errors, vec![false, true, true, true, false]);
    assert_eq!(r.spans[0].latency_ns, 250_000_000);
    assert_eq!(r.spans[0].end, Timestamp(1_250_000_000));
}

const JSON_SPANS: &str = r#"{"resourceSpans":[{"resource":{"attributes":[
    {"key":"service.name","value":{"stringValue":"checkout"}},
    {"key":"service.version","value":{"stringValue":"v2"}},
    {"key":"deployment.id","value":{"stringValue":"d-1"}}]},
  "scopeSpans":[{"scope":{"name":"x"},"spans":[
    {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,
     "startTimeUnixNano":"1000000000","endTimeUnixNano":"1600000000",
     "attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],"status":{}},
    {"kind":2,"startTimeUnixNano":1000000000,"endTimeUnixNano":1100000000,"status":{"code":0}},
    {"kind":3,"startTimeUnixNano":"1","endTimeUnixNano":"2","status":{"code":2}}]}]}]}"#;

#[test]
fn json_spans_follow_the_contract() {
    let batch = decode_traces_json(JSON_SPANS.as_bytes()).unwrap();
    let r = &batch.resources[0];
    assert_eq!(r.ident.deployment_id.as_deref(), Some("d-1"));
    assert_eq!(r.spans.len(), 2);
    assert!(r.spans[0].error);
    assert_eq!(r.spans[0].latency_ns, 600_000_000);
    assert!(!r.spans[1].error);
}

#[test]
fn json_rejects_what_otlp_json_forbids() {
    for bad in [
        r#"{"resourceSpans":"not-a-list"}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_SERVER"}]}]}]}"#,
        r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":2,"endTimeUnixNano":"soon"}]}]}]}"#,
        r#"[]"#,
        r#"{"resourceSpans":[{"#,
        "",
    ] {
        assert!(decode_traces_json(bad.as_bytes()).is_err(), "{bad}");
    }
    assert!(decode_traces_json(b"{}").unwrap().resources.is_empty());
}

fn hist_metric(
    unit: &str,
    temporality: i32,
    bounds: Vec<f64>,
    counts: Vec<u64>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![pm::ScopeMetrics {
                metrics: vec![
                    pm::Metric {
                        name: HTTP_DURATION.into(),
                        unit: unit.into(),
                        data: Some(metric::Data::Histogram(pm::Histogram {
                            aggregation_temporality: temporality,
                            data_points: vec![pm::HistogramDataPoint {
                                attributes: vec![kv(
                                    "http.response.status_code",
                                    any_value::Value::IntValue(503),
                                )],
                                start_time_unix_nano: 5,
                                time_unix_nano: 10,
                                count: counts.iter().sum(),
                                bucket_counts: counts,
                                explicit_bounds: bounds,
                                ..Default::default()
                            }],
                        })),
                        ..Default::default()
                    },
                    pm::Metric {
                        name: "http.client.request.duration".into(),
                        unit: "s".into(),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[test]
fn proto_histograms_follow_the_contract() {
    let req = hist_metric("ms", 2, vec![100.0, 500.0], vec![1, 2, 3]);
    let batch = decode_metrics_proto(&req.encode_to_vec()).unwrap();
    let p = &batch.resources[0].points[0];
    assert_eq!(p.count, 6);
    assert!(p.error);
    assert_eq!(p.temporality, Temporality::Cumulative);
    assert_eq!(p.slow_count(0.5), 3);
    // other units are not request durations we understand: skipped
    let req = hist_metric("min", 2, vec![1.0], vec![1, 2]);
    assert!(decode_metrics_proto(&req.encode_to_vec())
        .unwrap()
        .resources
        .is_empty());
    // structural errors reject the export
    for bad in [
        hist_metric("s", 0, vec![1.0], vec![1, 2]),
        hist_metric("s", 1, vec![1.0], vec![1, 2, 3]),
        hist_metric("s", 1, vec![2.0, 1.0], vec![1, 2, 3]),
    ] {
        assert!(decode_metrics_proto(&bad.encode_to_vec()).is_err());
    }
}

#[test]
fn json_histograms_match_proto_series() {
    let json = r#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"checkout"}},
        {"key":"service.version","value":{"stringValue":"v2"}}]},
      "scopeMetrics":[{"scope":{"name":"gen"},"metrics":[{"name":"http.server.request.duration","unit":"s",
        "histogram":{"aggregationTemporality":1,"dataPoints":[
          {"attributes":[{"key":"http.response.status_code","value":{"intValue":"200"}}],
           "startTimeUnixNano":"5","timeUnixNano":"10","count":"6","sum":1.5,
           "bucketCounts":["1","2","3"],"explicitBounds":[0.1,0.5]},
          {"attributes":[{"key":"http.response.status_code","value":{"intValue":"500"}}],
           "startTimeUnixNano":"5","timeUnixNano":"10","count":"1","bucketCounts":["1","0","0"],"explicitBounds":[0.1,0.5]}]}},
        {"name":"other","sum":{"dataPoints":[]}}]}]}]}"#;
    let batch = decode_metrics_json(json.as_bytes()).unwrap();
    let pts = &batch.resources[0].points;
    assert_eq!(pts.len(), 2);
    assert_eq!(pts[0].temporality, Temporality::Delta);
    assert!(!pts[0].error && pts[1].error);
    assert_ne!(pts[0].series, pts[1].series);
    assert_eq!(pts[0].slow_count(0.5), 3);
}

#[test]
fn garbage_never_panics() {
    let mut seed = 7u64;
    let base = JSON_SPANS.as_bytes().to_vec();
    for _ in 0..2000 {
        let mut b = base.clone();
        for _ in 0..4 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let i = (seed >> 33) as usize % b.len();
            b[i] = (seed >> 13) as u8;
        }
        let _ = decode_traces_json(&b);
        let _ = decode_metrics_json(&b);
        let _ = decode_traces_proto(&b);
        let _ = decode_metrics_proto(&b);
    }
}

fn int(v: i64) -> any_value::Value {
    any_value::Value::IntValue(v)
}

fn span_with(kind: i32, code: i32, attributes: Vec<KeyValue>) -> pt::Span {
    pt::Span {
        attributes,
        ..span(kind, code, None)
    }
}

fn traces(spans: Vec<pt::Span>) -> TelemetryBatch {
    let req = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: resource(),
            scope_spans: vec![pt::ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    decode_traces_proto(&req.encode_to_vec()).unwrap()
}

/// (kind, error) of each span that is a request.
fn kinds_and_errors(batch: &TelemetryBatch) -> Vec<(RequestKind, bool)> {
    let spans = batch.resources.iter().flat_map(|r| &r.spans);
    spans.map(|s| (s.kind, s.error)).collect()
}

#[test]
fn grpc_server_spans_fail_only_with_server_codes() {
    let grpc = |code: i32, status: i64| {
        span_with(
            2,
            code,
            vec![
                kv("rpc.system", s("grpc")),
                kv("rpc.grpc.status_code", int(status)),
            ],
        )
    };
    let batch = traces(vec![
        grpc(0, 0),
        // NOT_FOUND and INVALID_ARGUMENT answer the caller's mistake, even
        // where an older instrumentation set status ERROR for them.
        grpc(2, 5),
        grpc(0, 3),
        grpc(2, 14), // UNAVAILABLE
        grpc(0, 2),  // UNKNOWN
        grpc(0, 4),  // DEADLINE_EXCEEDED
        // The stable conventions' names for the system and the code.
        span_with(
            2,
            0,
            vec![
                kv("rpc.system.name", s("grpc")),
                kv("rpc.response.status_code", s("UNAVAILABLE")),
            ],
        ),
        span_with(2, 2, vec![kv("rpc.response.status_code", s("NOT_FOUND"))]),
        // Another RPC system, without a gRPC code: the span status decides.
        span_with(2, 2, vec![kv("rpc.system", s("jsonrpc"))]),
        span_with(
            2,
            0,
            vec![
                kv("rpc.system", s("jsonrpc")),
                kv("rpc.response.status_code", s("-32602")),
            ],
        ),
    ]);
    use RequestKind::Rpc;
    assert_eq!(
        kinds_and_errors(&batch),
        [
            (Rpc, false),
            (Rpc, false),
            (Rpc, false),
            (Rpc, true),
            (Rpc, true),
            (Rpc, true),
            (Rpc, true),
            (Rpc, false),
            (Rpc, true),
            (Rpc, false),
        ]
    );
}

#[test]
fn consumer_spans_that_processed_a_message_are_requests() {
    let kafka = || kv("messaging.system", s("kafka"));
    let batch = traces(vec![
        span_with(5, 0, vec![kafka()]),
        span_with(5, 2, vec![kafka()]),
        span_with(5, 0, vec![kafka(), kv("error.type", s("TimeoutError"))]),
        span_with(
            5,
            0,
            vec![kafka(), kv("messaging.operation.type", s("process"))],
        ),
        // Receiving is not processing; a CONSUMER span of no messaging
        // system is not a message; PRODUCER spans never count.
        span_with(
            5,
            0,
            vec![kafka(), kv("messaging.operation.type", s("receive"))],
        ),
        span_with(5, 2, vec![]),
        span_with(4, 2, vec![kafka()]),
        // A SERVER span stays an HTTP request.
        span_with(2, 0, vec![kv("http.response.status_code", int(502))]),
    ]);
    use RequestKind::{Http, Messaging};
    assert_eq!(
        kinds_and_errors(&batch),
        [
            (Messaging, false),
            (Messaging, true),
            (Messaging, true),
            (Messaging, false),
            (Http, true),
        ]
    );
}

#[test]
fn json_spans_of_rpc_and_messaging_match_proto() {
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"ledger"}}]},
      "scopeSpans":[{"spans":[
        {"kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[
          {"key":"rpc.system","value":{"stringValue":"grpc"}},
          {"key":"rpc.grpc.status_code","value":{"intValue":"14"}}]},
        {"kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"2","status":{"code":2},"attributes":[
          {"key":"rpc.system","value":{"stringValue":"grpc"}},
          {"key":"rpc.grpc.status_code","value":{"intValue":5}}]},
        {"kind":5,"startTimeUnixNano":"1","endTimeUnixNano":"2","attributes":[
          {"key":"messaging.system","value":{"stringValue":"rabbitmq"}},
          {"key":"error.type","value":{"stringValue":"Nack"}}]}]}]}]}"#;
    let batch = decode_traces_json(json.as_bytes()).unwrap();
    use RequestKind::{Messaging, Rpc};
    assert_eq!(
        kinds_and_errors(&batch),
        [(Rpc, true), (Rpc, false), (Messaging, true)]
    );
}

/// A delta histogram `name` in `unit` whose points carry `attrs` each.
fn histogram(name: &str, unit: &str, points: Vec<Vec<KeyValue>>) -> pm::Metric {
    pm::Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(metric::Data::Histogram(pm::Histogram {
            aggregation_temporality: 1,
            data_points: points
                .into_iter()
                .map(|attributes| pm::HistogramDataPoint {
                    attributes,
                    start_time_unix_nano: 5,
                    time_unix_nano: 10,
                    count: 3,
                    bucket_counts: vec![1, 2],
                    explicit_bounds: vec![100.0],
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

fn metrics(metrics: Vec<pm::Metric>) -> TelemetryBatch {
    let req = ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![pm::ScopeMetrics {
                metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    decode_metrics_proto(&req.encode_to_vec()).unwrap()
}

#[test]
fn rpc_and_messaging_histograms_follow_the_conventions() {
    let code = |c: i64| vec![kv("rpc.grpc.status_code", int(c))];
    let batch = metrics(vec![
        histogram(RPC_CALL_DURATION, "s", vec![code(0), code(5), code(14)]),
        histogram(
            MESSAGING_DURATION,
            "s",
            vec![vec![], vec![kv("error.type", s("_OTHER"))]],
        ),
        histogram(HTTP_DURATION, "s", vec![vec![]]),
    ]);
    let pts = &batch.resources[0].points;
    let got: Vec<(RequestKind, bool)> = pts.iter().map(|p| (p.kind, p.error)).collect();
    use RequestKind::{Http, Messaging, Rpc};
    assert_eq!(
        got,
        [
            (Rpc, false),
            (Rpc, false),
            (Rpc, true),
            (Messaging, false),
            (Messaging, true),
            (Http, false),
        ]
    );
    // Same scope, same point attributes, different metrics: different series.
    assert_ne!(pts[3].series, pts[5].series);
    assert_eq!(pts[0].unit_per_sec, 1.0);
}

#[test]
fn the_older_rpc_duration_counts_only_without_the_newer() {
    let ok = || vec![kv("rpc.grpc.status_code", int(0))];
    // Alone, in its conventional unit (ms) whether stated or not.
    let batch = metrics(vec![histogram(RPC_DURATION, "", vec![ok()])]);
    let p = &batch.resources[0].points[0];
    assert_eq!((p.kind, p.unit_per_sec), (RequestKind::Rpc, 1000.0));
    assert_eq!(p.slow_count(0.05), 2, "100 ms is the bucket's lower bound");
    // Both, as an instrumentation migrating between them exports: each
    // call once.
    let batch = metrics(vec![
        histogram(RPC_DURATION, "ms", vec![ok()]),
        histogram(RPC_CALL_DURATION, "s", vec![ok()]),
    ]);
    let pts = &batch.resources[0].points;
    assert_eq!(pts.len(), 1);
    assert_eq!(pts[0].unit_per_sec, 1.0);
}
