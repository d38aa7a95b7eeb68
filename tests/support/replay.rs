//! Replay fixtures: replay files (CONTRACT §8) with deploy events,
//! OTLP/JSON (or protobuf) telemetry and Alertmanager payloads, and what
//! replaying them wrote, parsed. [`Fixture::replay`] runs them in this
//! process through [`rollbackd::replay::replay`] — the function
//! `rollbackd replay` calls, on the same engine — and [`run_replay`]
//! through the binary itself, for what only the command line does (its
//! exit code, its summary line).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use rollbackd::config::Config;
use rollbackd::engine::{Engine, EngineConfig};
use rollbackd::loadgen::{server_span, trace_export};
use rollbackd::replay::{self, ReplaySinks};
use rollbackd::time::Timestamp;
use serde_json::{json, Value};

pub const T0: &str = "2026-11-26T12:00:00Z";

pub fn t0() -> i64 {
    Timestamp::parse_rfc3339(T0).unwrap().0
}

pub fn ts(secs: f64) -> String {
    Timestamp(t0() + (secs * 1e9) as i64).to_string()
}

pub fn nanos(secs: f64) -> String {
    (t0() + (secs * 1e9) as i64).to_string()
}

/// One version's steady traffic. Errors and slow requests are spread
/// evenly (a deterministic accumulator), so tests are exact.
#[derive(Clone)]
pub struct Stream {
    pub service: String,
    pub version: String,
    pub env: Option<String>,
    pub rps: f64,
    pub error: f64,
    pub slow: f64,
    pub from: f64,
    pub to: f64,
    /// Seconds between an export's last request and the record that
    /// carries it (a Collector's tail sampling, batching, lag).
    pub delay: f64,
    /// Seconds more for every other export: exports arrive out of order.
    pub disorder: f64,
    err_acc: f64,
    slow_acc: f64,
    req_acc: f64,
}

impl Stream {
    pub fn new(service: &str, version: &str, rps: f64) -> Stream {
        Stream {
            service: service.into(),
            version: version.into(),
            env: None,
            rps,
            error: 0.0,
            slow: 0.0,
            from: 0.0,
            to: f64::INFINITY,
            delay: 0.0,
            disorder: 0.0,
            err_acc: 0.0,
            slow_acc: 0.0,
            req_acc: 0.0,
        }
    }
    pub fn errors(mut self, e: f64) -> Self {
        self.error = e;
        self
    }
    pub fn slow(mut self, s: f64) -> Self {
        self.slow = s;
        self
    }
    pub fn env(mut self, e: &str) -> Self {
        self.env = Some(e.into());
        self
    }
    /// Every export reaches rollbackd `secs` after its last request.
    pub fn late(mut self, secs: f64) -> Self {
        self.delay = secs;
        self
    }
    /// Every other export comes `secs` later still, after newer ones.
    pub fn out_of_order(mut self, secs: f64) -> Self {
        self.disorder = secs;
        self
    }
    pub fn between(mut self, from: f64, to: f64) -> Self {
        self.from = from;
        self.to = to;
        self
    }
}

/// Spreads a rate evenly: adds `rate` to the accumulator and says whether
/// a whole event is due.
fn take(acc: &mut f64, rate: f64) -> bool {
    *acc += rate;
    if *acc >= 1.0 {
        *acc -= 1.0;
        true
    } else {
        false
    }
}

#[derive(Clone, Copy, PartialEq)]
pub enum Encoding {
    Json,
    ProtoBase64,
}

#[derive(Default)]
pub struct Fixture {
    records: Vec<(f64, usize, String)>,
    streams: Vec<Stream>,
    metric_streams: Vec<(Stream, [u64; 15], [u64; 15])>,
    pub export_every: f64,
    pub config_extra: String,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// What a replay wrote: commands (`stdout`, and each line parsed), the
/// malformed lines reported (`stderr`) and the audit records.
pub struct Output {
    pub commands: Vec<Value>,
    pub stdout: String,
    pub stderr: String,
    pub audit: Vec<Value>,
}

impl Output {
    fn parse(stdout: String, audit: &str, stderr: String) -> Output {
        let commands = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {l}"))
            })
            .collect();
        let audit = audit
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        Output {
            commands,
            stdout,
            stderr,
            audit,
        }
    }
}

const BOUNDS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn attr(key: &str, v: Value) -> Value {
    let value = match v {
        Value::String(s) => json!({"stringValue": s}),
        Value::Number(n) => json!({"intValue": n.to_string()}),
        other => other,
    };
    json!({"key": key, "value": value})
}

fn resource(s: &Stream) -> Value {
    let mut attrs = vec![
        attr("service.name", json!(s.service)),
        attr("service.version", json!(s.version)),
    ];
    if let Some(e) = &s.env {
        attrs.push(attr("deployment.environment.name", json!(e)));
    }
    json!({"attributes": attrs})
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            export_every: 5.0,
            ..Default::default()
        }
    }

    fn push(&mut self, t: f64, line: String) {
        let n = self.records.len();
        self.records.push((t, n, line));
    }

    pub fn record(&mut self, t: f64, topic: &str, value: Value) {
        let line = json!({"topic": topic, "timestamp": ts(t), "value": value}).to_string();
        self.push(t, line);
    }

    pub fn raw(&mut self, t: f64, line: &str) {
        self.push(t, line.to_string());
    }

    pub fn deploy(
        &mut self,
        t: f64,
        kind: &str,
        id: &str,
        service: &str,
        version: &str,
        extra: Value,
    ) {
        let mut ev = json!({"type": kind, "deploy_id": id, "service": service, "version": version, "at": ts(t)});
        if let (Value::Object(m), Value::Object(x)) = (&mut ev, extra) {
            m.extend(x);
        }
        self.record(t, "deploy-events", ev);
    }

    pub fn started(&mut self, t: f64, id: &str, service: &str, version: &str, previous: &str) {
        self.deploy(
            t,
            "deploy.started",
            id,
            service,
            version,
            json!({"previous_version": previous, "strategy": "canary"}),
        );
    }

    pub fn spans(&mut self, s: Stream) {
        self.streams.push(s);
    }

    pub fn metrics(&mut self, s: Stream) {
        self.metric_streams.push((s, [0; 15], [0; 15]));
    }

    pub fn alert(&mut self, t: f64, labels: Value, status: &str, starts: f64, fingerprint: &str) {
        let payload = json!({
            "version": "4", "groupKey": "{}:{}", "truncatedAlerts": 0, "status": status,
            "receiver": "rollbackd", "groupLabels": {}, "commonLabels": labels, "commonAnnotations": {},
            "externalURL": "http://alertmanager:9093",
            "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "errors"},
                "startsAt": ts(starts), "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus:9090/graph", "fingerprint": fingerprint}]
        });
        self.record(t, "alertmanager", payload);
    }

    /// Renders every stream as exports every `export_every` seconds up to `until`.
    fn render(&mut self, until: f64, enc: Encoding) {
        let step = self.export_every;
        let mut t = 0.0;
        let mut streams = std::mem::take(&mut self.streams);
        let mut metric_streams = std::mem::take(&mut self.metric_streams);
        let mut export = 0u64;
        while t < until {
            t += step;
            export += 1;
            for s in streams.iter_mut() {
                if !(s.from < t && t <= s.to + step) {
                    continue;
                }
                s.req_acc += s.rps * step;
                let n = s.req_acc.floor() as usize;
                s.req_acc -= n as f64;
                if n == 0 {
                    continue;
                }
                let mut spans = Vec::new();
                for i in 0..n {
                    let end = t - step + step * (i as f64 + 0.5) / n as f64;
                    let err = take(&mut s.err_acc, s.error);
                    let slow = take(&mut s.slow_acc, s.slow);
                    let dur = if slow { 1.2 } else { 0.04 };
                    spans.push((end, dur, err));
                }
                let body = span_export(s, &spans);
                let arrives = t + 0.5 + s.delay + if export % 2 == 0 { s.disorder } else { 0.0 };
                let value = match enc {
                    Encoding::Json => {
                        json!({"topic": "otlp_spans", "timestamp": ts(arrives), "value": body})
                    }
                    Encoding::ProtoBase64 => {
                        let bytes = body.encode_to_vec();
                        json!({"topic": "otlp_spans", "timestamp": ts(arrives),
                               "value_base64": base64::engine::general_purpose::STANDARD.encode(bytes)})
                    }
                };
                self.push(arrives, value.to_string());
            }
            for (s, cum_ok, cum_err) in metric_streams.iter_mut() {
                if !(s.from < t && t <= s.to + step) {
                    continue;
                }
                s.req_acc += s.rps * step;
                let n = s.req_acc.floor() as usize;
                s.req_acc -= n as f64;
                for _ in 0..n {
                    let err = take(&mut s.err_acc, s.error);
                    let slow = take(&mut s.slow_acc, s.slow);
                    let bucket = if slow { 9 } else { 3 }; // (0.75,1] or (0.025,0.05]
                    if err {
                        cum_err[bucket] += 1;
                    } else {
                        cum_ok[bucket] += 1;
                    }
                }
                let point = |code: u64, counts: &[u64; 15]| {
                    json!({
                        "attributes": [attr("http.response.status_code", json!(code))],
                        "startTimeUnixNano": nanos(s.from.max(0.0)), "timeUnixNano": nanos(t),
                        "count": counts.iter().sum::<u64>().to_string(),
                        "bucketCounts": counts.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                        "explicitBounds": BOUNDS,
                    })
                };
                let v = json!({"resourceMetrics": [{"resource": resource(s), "scopeMetrics": [{"scope": {"name": "t"}, "metrics": [{
                    "name": "http.server.request.duration", "unit": "s",
                    "histogram": {"aggregationTemporality": 2, "dataPoints": [point(200, cum_ok), point(500, cum_err)]}}]}]}]});
                let arrives = t + 0.5 + s.delay + if export % 2 == 0 { s.disorder } else { 0.0 };
                self.push(
                    arrives,
                    json!({"topic": "otlp_metrics", "timestamp": ts(arrives), "value": v})
                        .to_string(),
                );
            }
        }
    }

    /// The replay file's lines, in time order, up to `until`.
    fn lines(&mut self, until: f64, enc: Encoding) -> String {
        self.render(until, enc);
        self.records
            .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
        self.records.iter().map(|r| format!("{}\n", r.2)).collect()
    }

    /// The config file: the telemetry's encoding and `config_extra`.
    fn config(&self, enc: Encoding) -> String {
        let enc_line = if enc == Encoding::ProtoBase64 {
            "otlp_proto"
        } else {
            "otlp_json"
        };
        format!(
            "[topics]\notlp_encoding = \"{enc_line}\"\n{}\n",
            self.config_extra
        )
    }

    /// Writes the replay file and the config; returns their paths.
    pub fn write(&mut self, until: f64, enc: Encoding) -> (PathBuf, PathBuf) {
        let body = self.lines(until, enc);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rollbackd-test-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("input.jsonl");
        std::fs::write(&input, body).unwrap();
        let config = dir.join("config.toml");
        std::fs::write(&config, self.config(enc)).unwrap();
        (input, config)
    }

    /// Replays the fixture in this process.
    pub fn replay(&mut self, until: f64) -> Output {
        self.replay_with(until, Encoding::Json)
    }

    pub fn replay_with(&mut self, until: f64, enc: Encoding) -> Output {
        let body = self.lines(until, enc);
        replay_in_process(body.as_bytes(), &self.config(enc))
    }
}

/// Replays `input` with the config `toml` as `rollbackd replay` does —
/// the same engine, the same [`replay::replay`] — into memory.
fn replay_in_process(input: &[u8], toml: &str) -> Output {
    let config = Config::from_toml(toml).expect("a valid config");
    let mut engine = Engine::new(EngineConfig::from(&config));
    let (mut commands, mut audit, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    let mut sinks = ReplaySinks {
        commands: &mut commands,
        audit: Some(&mut audit),
        errors: &mut errors,
        kept: None,
    };
    replay::replay(&mut engine, &config, input, &mut sinks).expect("replay into memory");
    Output::parse(
        String::from_utf8(commands).unwrap(),
        std::str::from_utf8(&audit).unwrap(),
        String::from_utf8(errors).unwrap(),
    )
}

/// Runs the `rollbackd replay` binary on the files; returns its exit code
/// and what it wrote.
pub fn run_replay(input: &Path, config: &Path) -> (i32, Output) {
    let audit = input.with_file_name("audit.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["replay", "--config"])
        .arg(config)
        .arg("--input")
        .arg(input)
        .arg("--audit")
        .arg(&audit)
        .output()
        .expect("run rollbackd");
    let output = Output::parse(
        String::from_utf8(out.stdout).unwrap(),
        &std::fs::read_to_string(&audit).unwrap_or_default(),
        String::from_utf8(out.stderr).unwrap(),
    );
    (out.status.code().unwrap_or(-1), output)
}

/// One stream's spans — (end, duration, failed), in seconds since T0 — as
/// one trace export.
fn span_export(s: &Stream, spans: &[(f64, f64, bool)]) -> ExportTraceServiceRequest {
    let to_ns = |secs: f64| (t0() + (secs * 1e9) as i64) as u64;
    let spans = spans
        .iter()
        .enumerate()
        .map(|(i, &(end, dur, err))| {
            server_span(
                i as u64,
                to_ns(end - dur),
                to_ns(end),
                if err { 500 } else { 200 },
            )
        })
        .collect();
    trace_export(
        rollbackd::loadgen::resource(&s.service, &s.version, s.env.as_deref()),
        spans,
    )
}

/// Seconds since T0 of an RFC 3339 field.
pub fn secs(v: &Value) -> f64 {
    let t = Timestamp::parse_rfc3339(v.as_str().expect("a timestamp string")).unwrap();
    (t.0 - t0()) as f64 / 1e9
}
