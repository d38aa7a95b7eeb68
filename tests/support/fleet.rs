//! A fleet of instances on one broker, as the scale-out, heal and chaos
//! tests drive it: keyless canary traffic that counts what it sent, the
//! instances' views of a deploy, and waiting for what they agree on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::*;

/// Windows long enough to hold every request of a test (so they can be
/// counted), and a 2 requests/s canary failing 20 % decided in seconds.
pub const FLEET_SLO: &str = r#"[slo]
warmup = "2s"
evaluation_interval = "1s"
min_requests = 20
windows = [ { short = "1m", long = "5m", burn_rate = 14.4 } ]
"#;

/// A chaos run's length and seed: `ROLLBACKD_CHAOS_ITERATIONS` (else
/// `default_iterations`) and `ROLLBACKD_CHAOS_SEED` (else from the clock),
/// printed so that a run can be repeated.
pub fn chaos_run(default_iterations: usize) -> (usize, u64) {
    let iterations = std::env::var("ROLLBACKD_CHAOS_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_iterations);
    let seed = std::env::var("ROLLBACKD_CHAOS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| now_ns() % 1_000_000);
    println!("chaos: {iterations} iterations, seed {seed}");
    (iterations, seed)
}

/// The admin token every fleet instance is started with.
pub const ADMIN: (&str, &str) = ("ROLLBACKD_ADMIN_TOKEN", "adm");

/// A config with transactions on, static membership, `kafka` keys added to
/// `[kafka]`, `properties` to `[kafka.properties]`, `slo` and `extra`
/// tables after.
pub fn fleet_config(
    broker: &Broker,
    group: &str,
    kafka: &str,
    properties: &str,
    slo: &str,
    extra: &str,
) -> PathBuf {
    let p = unique_dir("fleet").join("config.toml");
    std::fs::write(
        &p,
        format!(
            r#"[kafka]
brokers = "{}"
group_id = "{group}"
transactions = "on"
instance_id_env = "{INSTANCE_ENV}"
{kafka}
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
{properties}

[http]
listen = "127.0.0.1:0"
allow_unauthenticated = true

{slo}
{extra}
"#,
            broker.brokers()
        ),
    )
    .unwrap();
    p
}

/// Telemetry from one keyless producer every 500 ms, per service: the
/// baseline (v1) three healthy spans, the candidate (v2) one span — every
/// fifth failing for a bad canary. Counts what it sent.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    /// Service → (bad, ticks left).
    services: Arc<Mutex<HashMap<String, (bool, u32)>>>,
    /// Service → candidate spans sent.
    sent: Arc<Mutex<HashMap<String, u64>>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    pub fn start(broker: &Broker) -> Traffic {
        // Not idempotent: an idempotent client dies of a fatal error when
        // the broker restarts under it. What it writes twice is on the
        // topic twice, and counted against the topic (see
        // `candidate_spans_on_topic`).
        let p = producer(broker);
        let stop = Arc::new(AtomicBool::new(false));
        let services: Arc<Mutex<HashMap<String, (bool, u32)>>> = Default::default();
        let sent: Arc<Mutex<HashMap<String, u64>>> = Default::default();
        let thread = {
            let (stop, services, sent) = (stop.clone(), services.clone(), sent.clone());
            thread::spawn(move || {
                let mut next = Instant::now();
                let mut tick = 0u64;
                while !stop.load(Ordering::Acquire) {
                    for (svc, (bad, left)) in services.lock().unwrap().iter_mut() {
                        if *left == 0 {
                            continue;
                        }
                        *left -= 1;
                        let error = usize::from(*bad && tick % 5 == 0);
                        produce(&p, "otlp_spans", None, &spans_proto(svc, "v1", 3, 0));
                        produce(&p, "otlp_spans", None, &spans_proto(svc, "v2", 1, error));
                        *sent.lock().unwrap().entry(svc.clone()).or_default() += 1;
                    }
                    tick += 1;
                    next += Duration::from_millis(500);
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                // Past a broker outage too: librdkafka holds them meanwhile.
                // (A test that failed may have stopped the broker.)
                let _ = rdkafka::producer::Producer::flush(&p, Duration::from_secs(120));
            })
        };
        Traffic {
            stop,
            services,
            sent,
            thread: Some(thread),
        }
    }

    /// Sends `service`'s telemetry for `ticks` ticks from now.
    pub fn add(&self, service: &str, bad: bool, ticks: u32) {
        self.services
            .lock()
            .unwrap()
            .insert(service.to_string(), (bad, ticks));
    }

    /// The candidate exports sent for `service` so far (one request each).
    pub fn sent(&self, service: &str) -> u64 {
        self.sent.lock().unwrap().get(service).copied().unwrap_or(0)
    }

    /// Whether every tick of `service` was sent.
    pub fn done(&self, service: &str) -> bool {
        self.services
            .lock()
            .unwrap()
            .get(service)
            .is_none_or(|(_, left)| *left == 0)
    }

    /// Waits until every service's ticks are sent, then stops and flushes.
    pub fn finish(mut self) -> HashMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while self.services.lock().unwrap().values().any(|(_, l)| *l > 0) {
            assert!(Instant::now() < deadline, "traffic never finished");
            thread::sleep(Duration::from_millis(100));
        }
        self.stop_now();
        self.sent.lock().unwrap().clone()
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop_now();
    }
}

pub fn instance(cfg: &Path, id: &str, env: &[(&str, &str)]) -> Agent {
    let mut all = vec![(INSTANCE_ENV, id), ADMIN];
    all.extend_from_slice(env);
    Agent::start_with_env(cfg, &all)
}

pub fn deploy_view(agent: &Agent, deploy: &str) -> (u16, String) {
    http(
        &agent.http_addr(),
        "GET",
        &format!("/v1/deploys/{deploy}"),
        &[("Authorization", "Bearer adm")],
        b"",
    )
}

/// The candidate's requests in the long window, as the owner counted them.
pub fn candidate_requests(agents: &[&Agent], deploy: &str) -> Option<u64> {
    agents.iter().find_map(|a| {
        let v: serde_json::Value = serde_json::from_str(&deploy_view(a, deploy).1).ok()?;
        let n = v["evaluation"]["pairs"][0]["candidate_long"]["requests"].as_u64()?;
        // Only the owner has counted anything.
        (n > 0).then_some(n)
    })
}

/// Announces a canary deploy and waits until every instance knows it
/// (intake folds only what matches a known deploy).
pub fn started(cfg: &Path, agents: &[&Agent], deploy: &str, service: &str) {
    announce_started_with(cfg, deploy, service, &["--strategy", "canary"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    for a in agents {
        while deploy_view(a, deploy).0 != 200 {
            assert!(
                Instant::now() < deadline,
                "{deploy} unknown\n{}",
                a.log_text()
            );
            thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Waits until the agents own the 6 evidence partitions between them, each
/// some of them.
pub fn wait_owned(agents: &[&Agent]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let owned: Vec<f64> = agents
            .iter()
            .map(|a| metric(&a.get("/metrics").1, "rollbackd_owned_partitions"))
            .collect();
        if owned.iter().sum::<f64>() == 6.0 && owned.iter().all(|&n| n > 0.0) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "evidence partitions owned: {owned:?}\n{}",
            logs(agents.iter().copied())
        );
        thread::sleep(Duration::from_millis(200));
    }
}

pub fn commands_for<'a>(got: &'a [Got], deploy: &str) -> Vec<&'a Got> {
    got.iter()
        .filter(|g| g.payload["deploy_id"] == deploy)
        .collect()
}

pub fn sample(agent: &Agent, name: &str) -> f64 {
    metric(&agent.get("/metrics").1, name)
}

/// Waits until `cond` holds, polling; fails with `what` and the logs.
pub fn wait_until(
    agents: &[&Agent],
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}\n{}",
            logs(agents.iter().copied())
        );
        thread::sleep(Duration::from_millis(250));
    }
}

/// The candidate (v2) requests of `service` on the raw spans topic: what
/// the broker kept of what was sent (a broker restarted mid-write may lose
/// records, and a producer retrying past it may write one twice).
pub fn candidate_spans_on_topic(broker: &Broker, service: &str) -> u64 {
    use rollbackd::model::Input;
    read_topic(broker, "otlp_spans", Duration::ZERO)
        .iter()
        .filter_map(|r| {
            rollbackd::ingest::decode(
                rollbackd::ingest::Source::Spans,
                &r.raw,
                rollbackd::config::OtlpEncoding::Proto,
            )
            .ok()
        })
        .map(|input| match input {
            Input::Telemetry(batch) => batch
                .resources
                .iter()
                .filter(|res| {
                    res.ident.service.as_deref() == Some(service)
                        && res.ident.version.as_deref() == Some("v2")
                })
                .map(|res| res.spans.len() as u64)
                .sum::<u64>(),
            _ => 0,
        })
        .sum()
}
