//! Real processes for the Kafka tests: a tansu broker on a free loopback
//! port, the `rollbackd` binary, and a producer and consumer speaking to
//! them with librdkafka.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

pub const TOPICS: [(&str, i32); 8] = [
    ("deploy-events", 1),
    ("rollback-commands", 1),
    ("rollback-results", 1),
    ("rollbackd-audit", 1),
    ("rollbackd-dlq", 1),
    ("rollbackd-admin", 1),
    ("otlp_spans", 3),
    ("otlp_metrics", 3),
];

/// Kafka tests run one at a time: each starts a broker and agents and
/// measures behaviour in wall time, which two cores cannot do for several
/// tests at once without making them flaky.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where scripts/deps.sh installs tansu and the Python virtualenv.
fn tools() -> PathBuf {
    std::env::var("ROLLBACKD_TOOLS")
        .unwrap_or_else(|_| "/var/tmp/rollbackd-tools".into())
        .into()
}

/// The Python with the OpenTelemetry SDK and PyYAML (tests/python/requirements.txt).
pub fn venv_python() -> PathBuf {
    let p = tools().join("venv/bin/python");
    assert!(
        p.exists(),
        "the Python virtualenv is missing: run scripts/deps.sh (the test command does)"
    );
    p
}

pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("ROLLBACKD_TANSU") {
        return PathBuf::from(p);
    }
    let p = tools().join("bin/tansu");
    if p.exists() {
        return p;
    }
    panic!("the tansu broker is not installed: run scripts/kafka-broker.sh install (the test command does)");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unique_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rollbackd-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A tansu broker process (in-memory storage: the prebuilt tansu has no
/// durable engine).
pub struct Broker {
    child: Option<Child>,
    pub port: u16,
    pub dir: PathBuf,
}

impl Broker {
    pub fn start() -> Broker {
        let mut b = Broker {
            child: None,
            port: free_port(),
            dir: unique_dir("broker"),
        };
        b.spawn();
        for (t, p) in TOPICS {
            b.create_topic(t, p);
        }
        b
    }

    fn spawn(&mut self) {
        let storage = "memory://tansu/";
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.join("broker.log")).unwrap();
        let child = Command::new(tansu())
            .current_dir(&self.dir)
            .args([
                "broker",
                "--storage-engine",
                storage,
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "broker did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn create_topic(&self, name: &str, partitions: i32) {
        let out = Command::new(tansu())
            .args([
                "topic",
                "create",
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
                "--partitions",
                &partitions.to_string(),
                name,
            ])
            .output()
            .expect("tansu topic create");
        assert!(
            out.status.success() || String::from_utf8_lossy(&out.stderr).contains("exist"),
            "create {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker: SIGTERM, then SIGKILL if it lingers.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Freezes the broker (SIGSTOP): to its clients it is unreachable —
    /// requests time out — and it keeps every record.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Thaws a frozen broker (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill")
                .args(["-s", sig, &c.id().to_string()])
                .status();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.thaw();
        self.stop();
    }
}

/// A config for a test agent: fast windows so a bad canary is caught in
/// seconds of wall time.
const RESTART_MARK: &str = "---- restart ----\n";

pub fn agent_config(broker: &Broker, group: &str, extra: &str) -> PathBuf {
    let dir = unique_dir("agent");
    let p = dir.join("config.toml");
    std::fs::write(
        &p,
        format!(
            r#"[kafka]
brokers = "{}"
group_id = "{group}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"

[http]
listen = "127.0.0.1:0"

[slo]
warmup = "2s"
evaluation_interval = "1s"
min_requests = 50
windows = [ {{ short = "5s", long = "20s", burn_rate = 14.4 }} ]
{extra}
"#,
            broker.brokers()
        ),
    )
    .unwrap();
    p
}

/// A running `rollbackd run`.
pub struct Agent {
    child: Option<Child>,
    pub log: Arc<Mutex<String>>,
    config: PathBuf,
    env: Vec<(String, String)>,
}

impl Agent {
    pub fn start(config: &Path) -> Agent {
        Agent::start_with_env(config, &[])
    }

    pub fn start_with_env(config: &Path, env: &[(&str, &str)]) -> Agent {
        let mut a = Agent {
            child: None,
            log: Arc::new(Mutex::new(String::new())),
            config: config.to_path_buf(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        a.spawn();
        a
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(["run", "--config"])
            .arg(&self.config)
            .env("ROLLBACKD_LOG", "info")
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rollbackd");
        let stderr = child.stderr.take().unwrap();
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        self.child = Some(child);
    }

    /// Waits for `needle` in the log of the current process (since the
    /// last restart).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.current_log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    pub fn count_log(&self, needle: &str) -> usize {
        self.log.lock().unwrap().matches(needle).count()
    }

    pub fn wait_ready(&self) {
        assert!(
            self.wait_log("rollbackd ready", Duration::from_secs(90)),
            "agent never became ready:\n{}",
            self.log.lock().unwrap()
        );
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(s)) = c.try_wait() {
                return s.code();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.log.lock().unwrap().push_str(RESTART_MARK);
        self.spawn();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The log since the last restart.
    fn current_log(&self) -> String {
        let log = self.log.lock().unwrap();
        let from = log
            .rfind(RESTART_MARK)
            .map_or(0, |i| i + RESTART_MARK.len());
        log[from..].to_string()
    }

    /// The address the agent's HTTP listener bound (the last start's).
    pub fn http_addr(&self) -> String {
        assert!(
            self.wait_log("http listening", Duration::from_secs(30)),
            "{}",
            self.log_text()
        );
        self.current_log()
            .lines()
            .rev()
            .find(|l| l.contains("http listening"))
            .and_then(|l| l.split("addr=").nth(1))
            .and_then(|v| v.split_whitespace().next())
            .expect("http listening addr=")
            .to_string()
    }

    /// GET `path` from the agent: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(&self.http_addr(), path)
    }

    /// Waits until the agent's `/metrics` shows `sample` = `want`.
    pub fn wait_metric(&self, sample: &str, want: f64, timeout: Duration) {
        let until = Instant::now() + timeout;
        loop {
            let (_, text) = self.get("/metrics");
            if metric(&text, sample) == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "{sample} != {want}\n{text}\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Starts `rollbackd ARGS --config CFG` with the given stdout and stderr.
pub fn spawn_rollbackd(
    args: &[&str],
    cfg: &Path,
    stdout: std::process::Stdio,
    stderr: std::process::Stdio,
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .arg("--config")
        .arg(cfg)
        .stdout(stdout)
        .stderr(stderr)
        .spawn()
        .expect("start rollbackd")
}

/// The lines a child writes on stdout, as they come (its stdout must be piped).
pub fn stdout_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stdout.take().expect("stdout piped"))
}

/// The lines a child writes on stderr, as they come (its stderr must be piped).
pub fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    lines_of(child.stderr.take().expect("stderr piped"))
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(r).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits for a line containing `needle`.
pub fn wait_line(rx: &std::sync::mpsc::Receiver<String>, needle: &str, timeout: Duration) -> bool {
    let until = std::time::Instant::now() + timeout;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return true,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    false
}

/// Reads a `rollbackd run` child's stderr (piped) until it logs the HTTP
/// address it bound; the rest of its stderr is drained in the background.
pub fn http_addr_from_stderr(child: &mut Child) -> String {
    let mut err = BufReader::new(child.stderr.take().expect("stderr piped"));
    let addr = loop {
        let mut l = String::new();
        assert!(
            err.read_line(&mut l).unwrap() > 0,
            "rollbackd exited before listening"
        );
        if let Some(a) = l.split("addr=").nth(1) {
            break a.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    addr
}

/// A minimal HTTP/1.1 request: (status, body).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// A minimal HTTP/1.1 GET.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path, &[], b"")
}

/// The value of a sample in Prometheus text, e.g. `rollbackd_commands_total{action="rollback",trigger="burn_rate"}`.
pub fn metric(text: &str, sample: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            l.strip_prefix(sample)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

pub fn producer(broker: &Broker) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .unwrap()
}

pub fn produce(p: &BaseProducer, topic: &str, key: Option<&str>, payload: &[u8]) {
    let mut rec = BaseRecord::<str, [u8]>::to(topic).payload(payload);
    if let Some(k) = key {
        rec = rec.key(k);
    }
    let mut rec = Some(rec);
    while let Some(r) = rec.take() {
        if let Err((e, r)) = p.send(r) {
            assert!(
                matches!(
                    e,
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull
                    )
                ),
                "{e}"
            );
            p.poll(Duration::from_millis(10));
            rec = Some(r);
        }
    }
    p.poll(Duration::ZERO);
}

pub fn flush(p: &BaseProducer) {
    p.flush(Duration::from_secs(20)).expect("flush");
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn rfc3339_now() -> String {
    rollbackd::time::Timestamp::now_wall().to_string()
}

fn kv(k: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// `n` SERVER spans ending now, `errors` of them failing, as OTLP protobuf.
pub fn spans_proto(service: &str, version: &str, n: usize, errors: usize) -> Vec<u8> {
    let end = now_ns();
    let spans = (0..n)
        .map(|i| {
            let err = i < errors;
            Span {
                kind: 2,
                name: "GET /".into(),
                start_time_unix_nano: end - 30_000_000 - i as u64 * 1000,
                end_time_unix_nano: end - i as u64 * 1000,
                attributes: vec![kv(
                    "http.response.status_code",
                    any_value::Value::IntValue(if err { 500 } else { 200 }),
                )],
                status: Some(Status {
                    code: if err { 2 } else { 0 },
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue(service.into()),
                    ),
                    kv(
                        "service.version",
                        any_value::Value::StringValue(version.into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
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

/// A consumed record with its headers.
#[derive(Debug, Clone)]
pub struct Got {
    pub key: Option<String>,
    pub payload: serde_json::Value,
    pub raw: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// Reads every record of `topic` from the beginning: at least up to the
/// end it had when called (however long that takes on a loaded machine),
/// and whatever else arrives within `wait`.
pub fn read_topic(broker: &Broker, topic: &str, wait: Duration) -> Vec<Got> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "test-reader")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    let mut ends = std::collections::HashMap::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .unwrap();
            let (_, high) = c
                .fetch_watermarks(topic, p.id(), Duration::from_secs(10))
                .unwrap();
            if high > 0 {
                ends.insert(p.id(), high);
            }
        }
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + wait;
    let give_up = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while !ends.is_empty() || Instant::now() < deadline {
        assert!(
            Instant::now() < give_up,
            "{topic}: not read to its end within 60 s"
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            if ends
                .get(&m.partition())
                .is_some_and(|&e| m.offset() + 1 >= e)
            {
                ends.remove(&m.partition());
            }
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let raw = m.payload().unwrap_or_default().to_vec();
            out.push(Got {
                key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                payload: serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null),
                raw,
                headers,
            });
        }
    }
    out
}

/// Polls `topic` until `pred` holds for what was read, or `timeout`.
pub fn wait_topic(
    broker: &Broker,
    topic: &str,
    timeout: Duration,
    pred: impl Fn(&[Got]) -> bool,
) -> Vec<Got> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = read_topic(broker, topic, Duration::from_millis(1500));
        if pred(&got) || Instant::now() > deadline {
            return got;
        }
    }
}

pub fn announce(broker_config: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .arg("announce")
        .args(args)
        .arg("--config")
        .arg(broker_config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "announce failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Announces `deploy.started` of `service` v2 (previous v1) as `deploy_id`.
pub fn announce_started(broker_config: &Path, deploy_id: &str, service: &str) {
    announce_started_with(broker_config, deploy_id, service, &[]);
}

/// [`announce_started`] with more `announce` arguments.
pub fn announce_started_with(broker_config: &Path, deploy_id: &str, service: &str, more: &[&str]) {
    let mut args = vec![
        "started",
        "--deploy-id",
        deploy_id,
        "--service",
        service,
        "--version",
        "v2",
        "--previous-version",
        "v1",
    ];
    args.extend_from_slice(more);
    announce(broker_config, &args);
}
