//! Hot paths: OTLP decoding alone (in place, and prost's whole decode it
//! replaced), decoding plus the engine, stage 1 alone
//! (decoding and folding into evidence, as intake does in `run`), window
//! updates, a whole `replay` of a large OTLP/JSON file, the cost of one
//! input as the number of active deploys grows, and how small evidence is
//! next to the telemetry it stands for.
//!
//! Run with `cargo bench --bench pipeline`; numbers are reported in the README.

use std::hint::black_box;
use std::io::{self, BufReader};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
mod common;

use common::{kv_i, kv_s, resource, BOUNDS};
use prost::Message;
use rollbackd::config::{Config, OtlpEncoding};
use rollbackd::engine::fold::{Fold, Raw};
use rollbackd::engine::window::{Kind, SeriesWindows};
use rollbackd::engine::{Engine, EngineConfig};
use rollbackd::ingest::evidence::{self, Envelope};
use rollbackd::ingest::{self, otlp, Source};
use rollbackd::model::evidence::{Origin, RawOffset};
use rollbackd::model::{DataMigration, DeployEvent, DeployEventKind, Input};
use rollbackd::replay::{self, ReplaySinks};
use rollbackd::time::Timestamp;

const SEC: u64 = 1_000_000_000;
const T0: u64 = 1_795_694_400 * SEC; // 2026-11-26T12:00:00Z
const SPANS_PER_EXPORT: usize = 512;
const SERIES_PER_EXPORT: usize = 256;

/// A realistic export: SERVER spans with the usual HTTP attributes, from
/// the baseline and the candidate of one deploy.
fn span_export(end_s: u64) -> Vec<u8> {
    spans_of(
        T0 + end_s * SEC,
        SEC,
        &[
            ("v1", SPANS_PER_EXPORT * 9 / 10),
            ("v2", SPANS_PER_EXPORT / 10),
        ],
    )
}

/// An export of `n` spans per version, ending over the `spread`
/// nanoseconds before `end_ns`.
fn spans_of(end_ns: u64, spread: u64, mix: &[(&str, usize)]) -> Vec<u8> {
    let mut resource_spans = Vec::new();
    for &(version, n) in mix {
        let spans = (0..n)
            .map(|i| {
                let end = end_ns - (i as u64 * 7_919_000) % spread;
                let code = if i % 97 == 0 { 503 } else { 200 };
                Span {
                    trace_id: (i as u128 * 0x9e37_79b9_7f4a_7c15).to_be_bytes().to_vec(),
                    span_id: (i as u64 * 0x9e37_79b9).to_be_bytes().to_vec(),
                    parent_span_id: Vec::new(),
                    name: "POST /api/v1/checkout".into(),
                    kind: 2,
                    start_time_unix_nano: end - 35_000_000 - (i as u64 % 50) * 1_000_000,
                    end_time_unix_nano: end,
                    attributes: vec![
                        kv_s("http.request.method", "POST"),
                        kv_s("http.route", "/api/v1/checkout"),
                        kv_s("url.path", "/api/v1/checkout"),
                        kv_s("url.scheme", "https"),
                        kv_i("http.response.status_code", code),
                        kv_s("server.address", "checkout.shop.svc"),
                        kv_s("network.protocol.version", "1.1"),
                        kv_s("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                    ],
                    status: Some(Status {
                        code: if code >= 500 { 2 } else { 0 },
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            })
            .collect();
        resource_spans.push(ResourceSpans {
            resource: Some(resource("checkout", version)),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    ExportTraceServiceRequest { resource_spans }.encode_to_vec()
}

/// A realistic metrics export: `http.server.request.duration` per (method,
/// route, status) series, cumulative, from the baseline and the candidate.
fn metric_export(time_s: u64) -> Vec<u8> {
    metric_export_of(time_s, SERIES_PER_EXPORT / 2)
}

/// [`metric_export`] with `series` series per version.
fn metric_export_of(time_s: u64, series: usize) -> Vec<u8> {
    let mut resource_metrics = Vec::new();
    for version in ["v1", "v2"] {
        let points = (0..series)
            .map(|i| {
                let counts: Vec<u64> = (0..15)
                    .map(|b| (time_s + i as u64) * (15 - b) / 3)
                    .collect();
                pm::HistogramDataPoint {
                    attributes: vec![
                        kv_s(
                            "http.request.method",
                            if i % 2 == 0 { "GET" } else { "POST" },
                        ),
                        kv_s("http.route", &format!("/api/v1/r{}", i / 4)),
                        kv_i(
                            "http.response.status_code",
                            if i % 4 == 3 { 500 } else { 200 },
                        ),
                        kv_s("url.scheme", "https"),
                    ],
                    start_time_unix_nano: T0,
                    time_unix_nano: T0 + time_s * SEC,
                    count: counts.iter().sum(),
                    sum: Some(12.5),
                    bucket_counts: counts,
                    explicit_bounds: BOUNDS.to_vec(),
                    ..Default::default()
                }
            })
            .collect();
        resource_metrics.push(common::durations(resource("checkout", version), points, 2));
    }
    ExportMetricsServiceRequest { resource_metrics }.encode_to_vec()
}

fn started(id: &str, service: &str) -> Input {
    Input::Deploy(DeployEvent {
        kind: DeployEventKind::Started,
        deploy_id: id.into(),
        service: service.into(),
        version: "v2".into(),
        at: Timestamp(T0 as i64),
        environment: Some("prod".into()),
        previous_version: Some("v1".into()),
        strategy: Some("canary".into()),
        release_id: None,
        data_migration: DataMigration::None,
        canary_weight: Some(10.0),
        labels: Default::default(),
    })
}

fn engine_with_deploy() -> Engine {
    let mut engine = Engine::new(EngineConfig::from(&Config::default()));
    engine.apply(started("d-1", "checkout"), Timestamp(T0 as i64));
    engine
}

/// Decodes `bytes` and applies them, then a tick: what every adapter does
/// with a telemetry record.
fn decode_and_apply(engine: &mut Engine, source: Source, bytes: &[u8], now: Timestamp) {
    let input = ingest::decode(source, bytes, OtlpEncoding::Proto).unwrap();
    black_box(engine.apply(input, now));
    black_box(engine.apply(Input::Tick, now));
}

/// Stage 1 as intake runs it: decodes `bytes` (the raw record at `offset`,
/// with a key or not) and folds it into evidence; every `flush_every`
/// records the evidence is flushed and encoded, as intake does every flush
/// interval. Returns the evidence bytes encoded.
fn decode_and_fold(
    engine: &Engine,
    fold: &mut Fold,
    source: Source,
    bytes: &[u8],
    (offset, keyed): (i64, bool),
    now: Timestamp,
    flush_every: i64,
) -> usize {
    let Input::Telemetry(batch) = ingest::decode(source, bytes, OtlpEncoding::Proto).unwrap()
    else {
        unreachable!("telemetry")
    };
    let raw = RawOffset {
        topic: "otlp".into(),
        partition: 0,
        offset,
    };
    fold.read("otlp", 0, offset);
    let raw = Raw {
        offset: &raw,
        keyed,
    };
    black_box(engine.fold_telemetry(fold, &batch, Some(raw), now));
    if offset % flush_every != 0 {
        return 0;
    }
    let envelope = Envelope {
        instance: "rollbackd-0".into(),
        consumed_at: Some(now),
    };
    fold.flush(Origin::Kafka(Vec::new()))
        .iter()
        .map(|e| {
            evidence::encode(e, &envelope).len() + e.key.service.len() + e.key.environment.len() + 1
        })
        .sum()
}

/// An engine that finds deploys in the telemetry and knows of none.
fn engine_inferring() -> Engine {
    let config = Config::from_toml("[deploys]\ninfer = true\n").unwrap();
    Engine::new(EngineConfig::from(&config))
}

/// Stage 1 over `exports` (raw records at successive offsets, one second
/// apart), flushing every 16 records.
fn stage1(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    source: Source,
    exports: &[Vec<u8>],
) {
    stage1_of(
        g,
        "stage1_decode_and_fold",
        engine_with_deploy,
        source,
        exports,
    );
}

/// [`stage1`] under `name`, with the engine `engine` makes.
fn stage1_of(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    engine: fn() -> Engine,
    source: Source,
    exports: &[Vec<u8>],
) {
    g.bench_function(name, |b| {
        let engine = engine();
        let mut fold = Fold::default();
        let mut offset = 0i64;
        b.iter(|| {
            offset += 1;
            let i = offset as usize % exports.len();
            let now = Timestamp((T0 + (i as u64 + 1) * SEC) as i64);
            decode_and_fold(
                &engine,
                &mut fold,
                source,
                &exports[i],
                (offset, false),
                now,
                16,
            )
        })
    });
}

fn spans(c: &mut Criterion) {
    let exports: Vec<Vec<u8>> = (1..=60).map(span_export).collect();
    let spans_per = (SPANS_PER_EXPORT * 9 / 10 + SPANS_PER_EXPORT / 10) as u64;
    println!(
        "otlp_proto_spans: {} spans per export, {} bytes per span on the wire",
        spans_per,
        exports[0].len() as u64 / spans_per
    );
    assert_eq!(
        otlp::decode_traces_proto(&exports[0]),
        otlp::reference::decode_traces(&exports[0])
    );
    let mut g = c.benchmark_group("otlp_proto_spans");
    g.throughput(Throughput::Elements(spans_per));
    g.bench_function("decode", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            black_box(otlp::decode_traces_proto(&exports[i]).unwrap())
        })
    });
    // The whole decode with prost's types, which the in-place decoder
    // replaced (same exports, same batch).
    g.bench_function("decode_prost", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            black_box(otlp::reference::decode_traces(&exports[i]).unwrap())
        })
    });
    g.bench_function("decode_and_engine", |b| {
        let mut engine = engine_with_deploy();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            let now = Timestamp((T0 + (i as u64 + 1) * SEC) as i64);
            decode_and_apply(&mut engine, Source::Spans, &exports[i], now);
        })
    });
    stage1(&mut g, Source::Spans, &exports);
    // Inference on, no deploy known: every resource is folded per version
    // for the owner (stage 1), and the owner keeps its book of versions.
    stage1_of(
        &mut g,
        "stage1_decode_and_fold_inferring",
        engine_inferring,
        Source::Spans,
        &exports,
    );
    g.bench_function("decode_and_engine_inferring", |b| {
        let mut engine = engine_inferring();
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            let now = Timestamp((T0 + (i as u64 + 1) * SEC) as i64);
            decode_and_apply(&mut engine, Source::Spans, &exports[i], now);
        })
    });
    g.finish();
}

fn histograms(c: &mut Criterion) {
    let exports: Vec<Vec<u8>> = (1..=60).map(metric_export).collect();
    println!(
        "otlp_proto_histograms: {SERIES_PER_EXPORT} data points per export, {} bytes per point on the wire",
        exports[0].len() / SERIES_PER_EXPORT
    );
    assert_eq!(
        otlp::decode_metrics_proto(&exports[0]),
        otlp::reference::decode_metrics(&exports[0])
    );
    let mut g = c.benchmark_group("otlp_proto_histograms");
    g.throughput(Throughput::Elements(SERIES_PER_EXPORT as u64));
    g.bench_function("decode", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            black_box(otlp::decode_metrics_proto(&exports[i]).unwrap())
        })
    });
    g.bench_function("decode_prost", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % exports.len();
            black_box(otlp::reference::decode_metrics(&exports[i]).unwrap())
        })
    });
    g.bench_function("decode_and_engine", |b| {
        let mut engine = engine_with_deploy();
        let mut i = 0;
        let mut round = 0u64;
        b.iter(|| {
            i += 1;
            if i == exports.len() {
                // Exports repeat: move the clock on so cumulative series stay
                // in order (a repeat would be skipped as already counted).
                i = 0;
                round += 1;
                engine = engine_with_deploy();
            }
            let now = Timestamp((T0 + (i as u64 + 1) * SEC) as i64);
            decode_and_apply(&mut engine, Source::Metrics, &exports[i], now);
            black_box(round)
        })
    });
    stage1(&mut g, Source::Metrics, &exports);
    g.finish();
}

/// Evidence bytes next to raw bytes: one service at 100 requests/s per
/// version for ten minutes, spans exported by a Collector every 200 ms (its
/// batch processor's default), intake flushing after every export (it
/// flushes every 100 ms); and the same service's `http.server.request.duration`
/// histograms (cumulative, 32 series per version), exported every 10 s.
/// Stage 1's evidence for 10 minutes of spans at 100 requests/s per
/// version, five exports a second: (raw bytes, evidence bytes).
fn span_evidence(engine: &Engine) -> (usize, usize) {
    let start = T0 + 31 * SEC;
    let (mut raw, mut sent) = (0usize, 0usize);
    let mut fold = Fold::default();
    for k in 0..3000u64 {
        let end = start + k * SEC / 5;
        let bytes = spans_of(end, SEC / 5, &[("v1", 20), ("v2", 20)]);
        raw += bytes.len();
        sent += decode_and_fold(
            engine,
            &mut fold,
            Source::Spans,
            &bytes,
            (k as i64, false),
            Timestamp(end as i64),
            1,
        );
    }
    (raw, sent)
}

/// Stage 1's evidence for 10 minutes of histograms, 32 cumulative series
/// per version every 10 s, in raw records with a key (`keyed`: the
/// Collector's `partition_metrics_by_resource_attributes`) or without:
/// (raw bytes, evidence bytes).
fn histogram_evidence(engine: &Engine, keyed: bool) -> (usize, usize) {
    let (mut raw, mut sent) = (0usize, 0usize);
    let mut fold = Fold::default();
    for k in 0..60u64 {
        let bytes = metric_export_of(31 + k * 10, 32);
        raw += bytes.len();
        let now = Timestamp((T0 + (31 + k * 10) * SEC) as i64);
        let raw = (k as i64, keyed);
        sent += decode_and_fold(engine, &mut fold, Source::Metrics, &bytes, raw, now, 1);
    }
    (raw, sent)
}

fn evidence_size(c: &mut Criterion) {
    for (what, engine) in [
        ("a deploy", engine_with_deploy()),
        ("inference on, no deploy", engine_inferring()),
    ] {
        let (raw, sent) = span_evidence(&engine);
        println!(
            "evidence ({what}): spans at 100 requests/s per version: {:.1} KiB of evidence for {:.1} MiB of raw exports = {:.2} % ({:.0} bytes/s)",
            sent as f64 / 1024.0,
            raw as f64 / 1048576.0,
            100.0 * sent as f64 / raw as f64,
            sent as f64 / 600.0
        );
        for (records, keyed) in [("keyed", true), ("unkeyed", false)] {
            let (raw, sent) = histogram_evidence(&engine, keyed);
            println!(
                "evidence ({what}): histograms (32 cumulative series per version every 10 s, {records} records): {:.1} KiB of evidence for {:.1} KiB of raw exports = {:.1} %",
                sent as f64 / 1024.0,
                raw as f64 / 1024.0,
                100.0 * sent as f64 / raw as f64
            );
        }
    }
    c.bench_function("evidence_size/noop", |b| b.iter(|| black_box(0)));
}

fn windows(c: &mut Criterion) {
    let policy = Config::default().default_policy.clone();
    let mut g = c.benchmark_group("window");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("add_1000", |b| {
        let mut w = SeriesWindows::for_policy(&policy);
        let mut t = T0 as i64;
        b.iter(|| {
            for i in 0..1000u64 {
                t += 1_000_000;
                w.add(Timestamp(t), Kind::Span, 1, u64::from(i % 50 == 0), 0);
            }
        })
    });
    g.bench_function("sum_three_lengths", |b| {
        let mut w = SeriesWindows::for_policy(&policy);
        for s in 0..1800 {
            w.add(Timestamp(T0 as i64 + s * SEC as i64), Kind::Span, 10, 1, 0);
        }
        let now = Timestamp(T0 as i64 + 1800 * SEC as i64);
        b.iter(|| black_box((w.window(0, now), w.window(1, now), w.window(2, now))))
    });
    g.finish();
}

/// A replay file like the shared scenarios, but larger: OTLP/JSON spans from
/// a baseline and a bad canary, exported every 5 seconds.
fn large_replay_file() -> Vec<u8> {
    let mut out = Vec::new();
    let ts = |s: u64| Timestamp((T0 + s * SEC) as i64).to_string();
    out.extend_from_slice(
        format!(
            "{{\"topic\":\"deploy-events\",\"timestamp\":\"{}\",\"value\":{{\"type\":\"deploy.started\",\"deploy_id\":\"d-1\",\"service\":\"checkout\",\"version\":\"v2\",\"previous_version\":\"v1\",\"at\":\"{}\"}}}}\n",
            ts(60),
            ts(60)
        )
        .as_bytes(),
    );
    for step in 1..=240u64 {
        let t = step * 5;
        for (version, rps, err_every) in [("v1", 450u64, 2000u64), ("v2", 50, 12)] {
            let mut spans = String::new();
            for i in 0..rps * 5 {
                let end = T0 + t * SEC - i * (5 * SEC / (rps * 5));
                let err = i % err_every == 0;
                if i > 0 {
                    spans.push(',');
                }
                spans.push_str(&format!(
                    "{{\"traceId\":\"{:032x}\",\"spanId\":\"{:016x}\",\"name\":\"GET /api\",\"kind\":2,\"startTimeUnixNano\":\"{}\",\"endTimeUnixNano\":\"{}\",\"attributes\":[{{\"key\":\"http.request.method\",\"value\":{{\"stringValue\":\"GET\"}}}},{{\"key\":\"http.response.status_code\",\"value\":{{\"intValue\":\"{}\"}}}}],\"status\":{}}}",
                    (t * 100_000 + i) as u128 * 0x9e37_79b9_7f4a_7c15,
                    t * 100_000 + i,
                    end - 40_000_000,
                    end,
                    if err { 500 } else { 200 },
                    if err { "{\"code\":2}" } else { "{}" }
                ));
            }
            out.extend_from_slice(
                format!(
                    "{{\"topic\":\"otlp_spans\",\"timestamp\":\"{}\",\"value\":{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"service.name\",\"value\":{{\"stringValue\":\"checkout\"}}}},{{\"key\":\"service.version\",\"value\":{{\"stringValue\":\"{version}\"}}}}]}},\"scopeSpans\":[{{\"scope\":{{\"name\":\"gen\"}},\"spans\":[{spans}]}}]}}]}}}}\n",
                    ts(t)
                )
                .as_bytes(),
            );
        }
    }
    out
}

fn replay_file(c: &mut Criterion) {
    let file = large_replay_file();
    let config =
        Config::from_toml("[topics]\notlp_encoding = \"otlp_json\"\n").expect("valid config");
    println!("replay: a {:.1} MB OTLP/JSON file", file.len() as f64 / 1e6);
    let mut g = c.benchmark_group("replay");
    g.throughput(Throughput::Bytes(file.len() as u64));
    g.sample_size(10);
    g.bench_function("otlp_json_file", |b| {
        b.iter_batched(
            || Engine::new(EngineConfig::from(&config)),
            |mut engine| {
                let mut commands = io::sink();
                let mut errors = io::sink();
                let mut sinks = ReplaySinks {
                    commands: &mut commands,
                    audit: None,
                    errors: &mut errors,
                    kept: None,
                };
                let s = replay::replay(&mut engine, &config, BufReader::new(&file[..]), &mut sinks)
                    .unwrap();
                assert_eq!(s.commands, 1);
                s
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Window state per active deploy, printed once (memory is not timed).
fn memory(c: &mut Criterion) {
    let mut engine = Engine::new(EngineConfig::from(&Config::default()));
    let t0 = Timestamp(T0 as i64);
    let deploys = 1000;
    for d in 0..deploys {
        engine.apply(started(&format!("d-{d}"), &format!("svc-{d}")), t0);
    }
    // Feed both sides of every deploy so every window exists.
    for d in 0..deploys {
        for version in ["v1", "v2"] {
            let req = ExportTraceServiceRequest {
                resource_spans: vec![ResourceSpans {
                    resource: Some(resource(&format!("svc-{d}"), version)),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![Span {
                            kind: 2,
                            start_time_unix_nano: T0,
                            end_time_unix_nano: T0 + 1,
                            ..Default::default()
                        }],
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            };
            let input =
                ingest::decode(Source::Spans, &req.encode_to_vec(), OtlpEncoding::Proto).unwrap();
            engine.apply(input, t0);
        }
    }
    let per_deploy = engine.window_bytes() / deploys;
    println!(
        "memory: window state per active deploy = {per_deploy} bytes ({:.1} KiB) with the default windows",
        per_deploy as f64 / 1024.0
    );
    c.bench_function("memory/noop", |b| b.iter(|| black_box(per_deploy)));
}

/// The cost of one input does not depend on how many deploys are active:
/// decode + engine of one service's spans with 10 and with 10,000 active
/// deploys, every service on versions v1 → v2 (the names many services
/// share). The clock moves 1 ms an export, so every deploy is also
/// evaluated at its interval, as in production.
fn active_deploys(c: &mut Criterion) {
    let export = span_export(1);
    let spans_per = (SPANS_PER_EXPORT * 9 / 10 + SPANS_PER_EXPORT / 10) as u64;
    let mut g = c.benchmark_group("active_deploys");
    g.throughput(Throughput::Elements(spans_per));
    for n in [10usize, 10_000] {
        g.bench_function(format!("{n}/decode_and_engine"), |b| {
            let mut engine = Engine::new(EngineConfig::from(&Config::default()));
            let t0 = Timestamp(T0 as i64);
            for d in 1..n {
                engine.apply(started(&format!("d-{d}"), &format!("svc-{d}")), t0);
            }
            engine.apply(started("d-0", "checkout"), t0);
            let mut t = T0 + SEC;
            b.iter(|| {
                t += 1_000_000;
                decode_and_apply(&mut engine, Source::Spans, &export, Timestamp(t as i64));
            })
        });
    }
    g.finish();
    // Deploy events alone: a replay of 1,000,000 `deploy.started` of
    // distinct services; the cap (10,000 active) is reached after 1%, and
    // a dropped event costs no more than an accepted one.
    let n = 1_000_000u64;
    let mut file = Vec::with_capacity(n as usize * 220);
    for i in 0..n {
        let at = Timestamp((T0 + i * 1_000_000) as i64).to_string();
        file.extend_from_slice(
            format!(
                "{{\"topic\":\"deploy-events\",\"timestamp\":\"{at}\",\"value\":{{\"type\":\"deploy.started\",\"deploy_id\":\"d-{i}\",\"service\":\"svc-{i}\",\"version\":\"v2\",\"previous_version\":\"v1\",\"at\":\"{at}\"}}}}\n"
            )
            .as_bytes(),
        );
    }
    let config = Config::default();
    let started_at = std::time::Instant::now();
    let mut engine = Engine::new(EngineConfig::from(&config));
    let (mut commands, mut errors) = (io::sink(), io::sink());
    let mut sinks = ReplaySinks {
        commands: &mut commands,
        audit: None,
        errors: &mut errors,
        kept: None,
    };
    let s = replay::replay(&mut engine, &config, BufReader::new(&file[..]), &mut sinks).unwrap();
    let took = started_at.elapsed();
    println!(
        "active_deploys: replay of {} deploy.started events ({:.0} MB) in {:.2} s ({:.0} events/s), {} active at the end",
        s.records,
        file.len() as f64 / 1e6,
        took.as_secs_f64(),
        s.records as f64 / took.as_secs_f64(),
        engine.active_deploys()
    );
}

criterion_group!(
    benches,
    spans,
    histograms,
    evidence_size,
    windows,
    replay_file,
    memory,
    active_deploys
);
criterion_main!(benches);
