//! The `run` daemon against real brokers on this machine: how fast one and
//! three instances consume OTLP from Kafka through both stages (intake:
//! decode and fold; the owner: evidence into windows), how small the
//! evidence is, how long a decision takes from the decisive record to the
//! command on the topic (with transactions), and whether consumption keeps
//! up with a steady producer.
//!
//! Needs the brokers (`scripts/kafka-broker.sh install`). Run with
//! `cargo bench --bench kafka`; numbers are reported in the README.

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1 as pm;
mod common;

use common::{kv_i, kv_s, resource, BOUNDS};
use prost::Message as _;
use support::*;

const SERVICES: usize = 8;
const SPANS_PER_EXPORT: usize = 512;
const SPAN_EXPORTS: usize = 1600; // 819,200 spans
const POINTS_PER_EXPORT: usize = 256;
const METRIC_EXPORTS: usize = 3200; // 819,200 points

fn span_export(i: usize) -> Vec<u8> {
    common::span_export(
        &format!("svc-{}", i % SERVICES),
        if i % 10 == 0 { "v2" } else { "v1" },
        i,
        SPANS_PER_EXPORT,
        now_ns(),
    )
}

/// A healthy `GET /api/r{j}` request-duration point with `counts` in the
/// advised buckets.
fn route_point(j: usize, counts: Vec<u64>, start_ns: u64, time_ns: u64) -> pm::HistogramDataPoint {
    pm::HistogramDataPoint {
        attributes: vec![
            kv_s("http.request.method", "GET"),
            kv_s("http.route", &format!("/api/r{j}")),
            kv_i("http.response.status_code", 200),
        ],
        start_time_unix_nano: start_ns,
        time_unix_nano: time_ns,
        count: counts.iter().sum(),
        bucket_counts: counts,
        explicit_bounds: BOUNDS.to_vec(),
        ..Default::default()
    }
}

fn metric_export(i: usize) -> Vec<u8> {
    let t = now_ns();
    let service = format!("svc-{}", i % SERVICES);
    let version = if i % 10 == 0 { "v2" } else { "v1" };
    let points = (0..POINTS_PER_EXPORT)
        .map(|j| {
            let counts: Vec<u64> = (0..15)
                .map(|b| ((i + j) as u64 % 7 + 1) * (15 - b))
                .collect();
            route_point(j, counts, t - 1_000_000_000, t)
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![common::durations(resource(&service, version), points, 1)],
    }
    .encode_to_vec()
}

fn log_time(line: &str) -> Option<f64> {
    let ts = line.split_whitespace().next()?;
    let t = rollbackd::time::Timestamp::parse_rfc3339(ts).ok()?;
    Some(t.nanos() as f64 / 1e9)
}

/// Sums `rollbackd_records_total` of `source` over every outcome.
fn records(text: &str, source: &str) -> f64 {
    let label = format!("source=\"{source}\"");
    text.lines()
        .filter(|l| l.starts_with("rollbackd_records_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One catch-up of a preloaded backlog.
struct CatchUp {
    /// From the first partition assignment to every record folded.
    took: Duration,
    /// Evidence bytes sent.
    evidence: f64,
    /// CPU seconds of the agents, from their start to every record folded,
    /// and of it before the first partition assignment (start, recovery,
    /// joining).
    cpu: f64,
    cpu_start: f64,
    /// CPU seconds of the broker over the same time.
    broker_cpu: f64,
    /// From the first intake assignment to the last one (0 when every
    /// member got its partitions in one go).
    settle: f64,
    /// The longest time without a record folded, from the first assignment
    /// to the last record.
    gap: f64,
}

impl CatchUp {
    /// One line: rate, evidence, CPU per million records, settling, gap.
    fn print(&self, instances: usize, unit: &str, elements: usize, raw: f64) {
        let per_m = 1e6 / elements as f64;
        println!(
            "kafka: {instances} instance(s): {:.0} {unit}/s; evidence {:.3} % of the raw bytes; agents {:.3} CPU-s per million {unit}, broker {:.3}; assignment settled after {:.2}s, longest gap {:.2}s",
            elements as f64 / self.took.as_secs_f64(),
            100.0 * self.evidence / raw,
            self.cpu * per_m,
            self.broker_cpu * per_m,
            self.settle,
            self.gap,
        );
    }
}

fn wall_s() -> f64 {
    rollbackd::time::Timestamp::now_wall().nanos() as f64 / 1e9
}

/// Takes the tests' shorter group timeouts out of an agent's config: the
/// product's defaults apply (a 10 s session). tansu holds a static
/// member's join and its sync 3 s each and counts its session from the
/// join: with the tests' 6 s session a member that has just joined is
/// evicted at random, and the whole group joins again (6–8 s without
/// consumption).
fn product_group_timeouts(cfg: &std::path::Path) {
    let text = std::fs::read_to_string(cfg).unwrap();
    let text: String = text
        .lines()
        .filter(|l| {
            !l.starts_with("\"session.timeout.ms\"") && !l.starts_with("\"heartbeat.interval.ms\"")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(cfg, text).unwrap();
}

/// When each member of the intake group got partitions, from the agents'
/// logs.
fn intake_assignments(agents: &[Agent]) -> Vec<f64> {
    let mut at: Vec<f64> = agents
        .iter()
        .flat_map(|a| {
            a.log_text()
                .lines()
                .filter(|l| l.contains("partitions assigned") && l.contains("intake"))
                .filter_map(log_time)
                .collect::<Vec<_>>()
        })
        .collect();
    at.sort_by(f64::total_cmp);
    at
}

/// Starts `instances` agents in a fresh group on `spans_topic`/`metrics_topic`
/// and measures them until every preloaded record of `source` (`exports`
/// of them) is folded.
fn catch_up(
    broker: &Broker,
    group: &str,
    (spans_topic, metrics_topic): (&str, &str),
    (source, exports): (&str, usize),
    instances: usize,
) -> CatchUp {
    // The default windows (the longest is 30 minutes): the preloaded
    // records stay inside them for the whole bench, so every run folds
    // them all rather than finding them late.
    let cfg = agent_config_with_slo(
        broker,
        group,
        "",
        &format!("[topics]\notlp_spans = \"{spans_topic}\"\notlp_metrics = \"{metrics_topic}\"\n"),
    );
    product_group_timeouts(&cfg);
    let broker_cpu = || broker.pid().and_then(cpu_seconds).unwrap_or(0.0);
    let broker_before = broker_cpu();
    let agents: Vec<Agent> = (0..instances)
        .map(|i| Agent::start_with_env(&cfg, &[(INSTANCE_ENV, &format!("{group}-{i}"))]))
        .collect();
    let agents_cpu = || -> f64 {
        agents
            .iter()
            .filter_map(|a| a.pid().and_then(cpu_seconds))
            .sum()
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    // Until the first assignment the agents are watched through their logs
    // only: a look at /metrics costs the agent CPU, and three agents looked
    // at through a start would pay three times what one pays.
    while !agents
        .iter()
        .any(|a| a.log_text().contains("telemetry partitions assigned"))
    {
        assert!(Instant::now() < deadline, "no partitions assigned");
        std::thread::sleep(Duration::from_millis(20));
    }
    let cpu_start = agents_cpu();
    // (wall time, records folded) at each look.
    let mut progress: Vec<(f64, f64)> = Vec::new();
    let evidence = loop {
        let texts: Vec<String> = agents.iter().map(|a| a.get("/metrics").1).collect();
        let done: f64 = texts.iter().map(|t| records(t, source)).sum();
        progress.push((wall_s(), done));
        if done >= exports as f64 {
            let sum = |name: &str| texts.iter().map(|t| metric(t, name)).sum::<f64>();
            println!(
                "kafka: {instances} instance(s): {} evidence records, {} bytes",
                sum("rollbackd_evidence_records_total"),
                sum("rollbackd_evidence_bytes_total")
            );
            break sum("rollbackd_evidence_bytes_total");
        }
        assert!(Instant::now() < deadline, "{done} of {exports} records");
        std::thread::sleep(Duration::from_millis(20));
    };
    let cpu = agents_cpu();
    let broker_cpu = broker_cpu() - broker_before;
    let finished = wall_s();
    let assignments = intake_assignments(&agents);
    let assigned = assignments.first().copied().unwrap_or(finished);
    let settle = assignments.last().map_or(0.0, |last| last - assigned);
    if settle > 1.0 {
        print_starts(&agents);
    }
    let gap = longest_gap(&progress, assigned);
    CatchUp {
        took: Duration::from_secs_f64((finished - assigned).max(0.0)),
        evidence,
        cpu,
        cpu_start,
        broker_cpu,
        settle,
        gap,
    }
}

/// How each instance went through its start, to see who was late.
fn print_starts(agents: &[Agent]) {
    let steps = [
        "http listening",
        "control topics read",
        "partitions assigned",
        "partitions revoked",
        "rollbackd ready",
    ];
    for (i, a) in agents.iter().enumerate() {
        for l in a.log_text().lines() {
            if steps.iter().any(|n| l.contains(n)) {
                println!("kafka:   instance {i}: {l}");
            }
        }
    }
}

/// The longest time without a record folded: between looks (wall time,
/// records folded) that saw the count grow, from `assigned` on.
fn longest_gap(progress: &[(f64, f64)], assigned: f64) -> f64 {
    let mut last_growth = assigned;
    let mut gap = 0.0f64;
    for w in progress.windows(2) {
        if w[1].1 > w[0].1 {
            gap = gap.max(w[1].0 - last_growth);
            last_growth = w[1].0;
        }
    }
    gap
}

/// The median of `xs` (sorted here).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    match xs.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => xs[n / 2],
        n => (xs[n / 2 - 1] + xs[n / 2]) / 2.0,
    }
}

/// Medians over the runs of one case: rate, CPU seconds per million
/// records (agents; of it before the first assignment; broker), settle and
/// longest gap (max over runs too).
fn summary(label: &str, unit: &str, elements: usize, runs: &[CatchUp]) -> f64 {
    let per_m = 1e6 / elements as f64;
    let col = |f: &dyn Fn(&CatchUp) -> f64| -> Vec<f64> { runs.iter().map(f).collect() };
    let mut rate = col(&|r| elements as f64 / r.took.as_secs_f64());
    let mut cpu = col(&|r| r.cpu * per_m);
    let mut start = col(&|r| r.cpu_start * per_m);
    let mut broker = col(&|r| r.broker_cpu * per_m);
    let mut settle = col(&|r| r.settle);
    let mut gap = col(&|r| r.gap);
    let gaps: Vec<String> = gap.iter().map(|g| format!("{g:.2}")).collect();
    let cpu_median = median(&mut cpu);
    println!(
        "kafka: {label} over {} runs (medians): {:.0} {unit}/s; agents {:.3} CPU-s per million {unit} ({:.3} of it before the first assignment), broker {:.3}; intake assignment settled {:.2}s after the first (max {:.2}s); longest gap {:.2}s, per run [{}]",
        runs.len(),
        median(&mut rate),
        cpu_median,
        median(&mut start),
        median(&mut broker),
        median(&mut settle),
        settle.last().copied().unwrap_or(0.0),
        median(&mut gap),
        gaps.join(" "),
    );
    cpu_median
}

/// Announces the deploys and preloads the backlogs; their raw bytes
/// (spans, points).
fn preload(broker: &Broker) -> (f64, f64) {
    let cfg = agent_config(broker, "bench-setup", "");
    for s in 0..SERVICES {
        announce_started(&cfg, &format!("d-{s}"), &format!("svc-{s}"));
    }
    let p = producer(broker);
    let t = Instant::now();
    for i in 0..SPAN_EXPORTS {
        produce(&p, "bench_spans", None, &span_export(i));
    }
    for i in 0..METRIC_EXPORTS {
        produce(&p, "bench_metrics", None, &metric_export(i));
    }
    flush(&p);
    println!(
        "kafka: preloaded {} spans and {} histogram points in {:.1}s",
        SPAN_EXPORTS * SPANS_PER_EXPORT,
        METRIC_EXPORTS * POINTS_PER_EXPORT,
        t.elapsed().as_secs_f64()
    );
    let raw_spans = (0..SPAN_EXPORTS)
        .map(|i| span_export(i).len())
        .sum::<usize>() as f64;
    let raw_points = (0..METRIC_EXPORTS)
        .map(|i| metric_export(i).len())
        .sum::<usize>() as f64;
    (raw_spans, raw_points)
}

fn consumption(c: &mut Criterion) {
    let broker = Broker::start();
    for t in ["bench_spans", "bench_metrics", "bench_empty"] {
        broker.create_topic(t, 3);
    }
    let (raw_spans, raw_points) = preload(&broker);
    let mut g = c.benchmark_group("kafka_consume");
    g.sample_size(10);
    let mut n = 0;
    // (bench, unit, topics (spans, metrics), source, exports, elements, raw bytes)
    let backlogs = [
        (
            "otlp_proto_spans",
            "spans",
            ("bench_spans", "bench_empty"),
            "otlp_spans",
            SPAN_EXPORTS,
            SPAN_EXPORTS * SPANS_PER_EXPORT,
            raw_spans,
        ),
        (
            "otlp_proto_histogram_points",
            "points",
            ("bench_empty", "bench_metrics"),
            "otlp_metrics",
            METRIC_EXPORTS,
            METRIC_EXPORTS * POINTS_PER_EXPORT,
            raw_points,
        ),
    ];
    // (bench, instances) → its runs, for the medians after.
    let mut runs: std::collections::BTreeMap<(&str, usize), Vec<CatchUp>> = Default::default();
    for instances in [1, 3] {
        for &(name, unit, topics, source, exports, elements, raw) in &backlogs {
            g.throughput(Throughput::Elements(elements as u64));
            let kept = runs.entry((name, instances)).or_default();
            g.bench_function(format!("{name}/{instances}_instances"), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| {
                            n += 1;
                            let run = catch_up(
                                &broker,
                                &format!("bench-{n}"),
                                topics,
                                (source, exports),
                                instances,
                            );
                            run.print(instances, unit, elements, raw);
                            let took = run.took;
                            kept.push(run);
                            took
                        })
                        .sum()
                })
            });
        }
    }
    g.finish();
    for &(name, unit, _, _, _, elements, _) in &backlogs {
        let one = summary(
            &format!("{name}, 1 instance"),
            unit,
            elements,
            &runs[&(name, 1)],
        );
        let three = summary(
            &format!("{name}, 3 instances"),
            unit,
            elements,
            &runs[&(name, 3)],
        );
        println!(
            "kafka: {name}: CPU per million {unit}, 3 instances / 1 instance = {:.2}",
            three / one
        );
    }
}

/// Decision latency on noida-db with transactions, for many deploys one
/// after another: the decisive records produced → the command readable by
/// a committed-only reader; and inside the agent, the decisive record
/// consumed by intake → the command's transaction committed.
///
/// A verdict needs the attribution test (the candidate worse than its
/// baseline over the same event-time slots), and a slot is compared once
/// both versions' watermarks have passed its end. So each deploy gets a
/// slot in which both versions serve and every candidate request fails,
/// then, a few slots later, the next records of both versions: those
/// carry the watermarks past the failing slot and are the decisive ones.
fn decision_latency(c: &mut Criterion) {
    let broker = Broker::noida();
    // Forty rollbacks in a row would open the circuit breaker by design.
    let cfg = agent_config(
        &broker,
        "bench-latency",
        "[guards]\nbreaker_max_rollbacks = 1000\n",
    );
    let agent = Agent::start_with_env(&cfg, &[(INSTANCE_ENV, "latency-0")]);
    agent.wait_ready();
    let deploys = 40;
    for d in 0..deploys {
        announce_started(&cfg, &format!("lat-{d}"), &format!("lat-{d}"));
    }
    let p = producer(&broker);
    // Healthy evidence past the warm-up for every deploy.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        for d in 0..deploys {
            let s = format!("lat-{d}");
            produce(&p, "otlp_spans", None, &spans_proto(&s, "v1", 20, 0));
            produce(&p, "otlp_spans", None, &spans_proto(&s, "v2", 20, 0));
        }
        flush(&p);
        std::thread::sleep(Duration::from_millis(300));
    }
    let reader = commands_reader(&broker);
    let mut latencies: Vec<Duration> = (0..deploys)
        .map(|d| one_decision(&p, &reader, &agent, &format!("lat-{d}")))
        .collect();
    latencies.sort();
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "kafka: decision latency over {} decisions: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        pct(0.5).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3
    );
    print_inside(&agent);
    let lat = latencies.clone();
    c.bench_function("kafka_decision_latency/recorded", |b| {
        b.iter_custom(|iters| (0..iters as usize).map(|i| lat[i % lat.len()]).sum())
    });
}

/// The attribution test's event-time slot in the agent of
/// [`decision_latency`]: a bucket of [`FAST_SLO`]'s finest window (5 s).
fn pair_slot_ns() -> u64 {
    rollbackd::engine::window::bucket_width(rollbackd::time::Duration::from_secs(5)) as u64
}

/// How long until 5 ms into the first pair slot that starts at least
/// `after` from now (slots are counted from the Unix epoch, as event
/// times are).
fn until_slot(after: Duration) -> Duration {
    let width = pair_slot_ns();
    let from = now_ns() + after.as_nanos() as u64;
    let at = from.div_ceil(width) * width + 5_000_000;
    Duration::from_nanos(at.saturating_sub(now_ns()))
}

/// One deploy's decision: the time from producing its decisive records to
/// reading its command.
fn one_decision(
    p: &rdkafka::producer::BaseProducer,
    reader: &rdkafka::consumer::BaseConsumer,
    agent: &Agent,
    s: &str,
) -> Duration {
    // One slot in which both versions serve and all 60 candidate requests
    // fail, its records produced at the slot's start so that both fall in
    // it.
    std::thread::sleep(until_slot(Duration::ZERO));
    produce(p, "otlp_spans", None, &spans_proto(s, "v1", 60, 0));
    produce(p, "otlp_spans", None, &spans_proto(s, "v2", 60, 60));
    flush(p);
    // The next records come a few slots later, after intake sent the
    // failing slot's evidence (a pass's latency counts from the earliest
    // raw record behind it); until then neither watermark has passed the
    // failing slot, and no command may come.
    let wait = until_slot(Duration::from_millis(300));
    assert!(
        !command_for(reader, s, wait),
        "{s} decided before its failing slot was passed"
    );
    // The decisive records: both versions' next requests. The command is
    // looked for at once: the producer's flush returns only at its next
    // 100 ms poll after the acknowledgements, which would be measured too.
    let t0 = Instant::now();
    produce(p, "otlp_spans", None, &spans_proto(s, "v1", 20, 0));
    produce(p, "otlp_spans", None, &spans_proto(s, "v2", 20, 20));
    assert!(
        command_for(reader, s, Duration::from_secs(30)),
        "no command for {s}:\n{}",
        agent.log_text()
    );
    let took = t0.elapsed();
    flush(p);
    took
}

/// A reader of the commands topic from its end, of committed records only
/// (librdkafka's default isolation).
fn commands_reader(broker: &Broker) -> rdkafka::consumer::BaseConsumer {
    use rdkafka::consumer::Consumer;
    let reader = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .set("group.id", "bench-latency-reader")
        .set("fetch.wait.max.ms", "5")
        .create::<rdkafka::consumer::BaseConsumer>()
        .unwrap();
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset("rollback-commands", 0, rdkafka::Offset::End)
        .unwrap();
    reader.assign(&tpl).unwrap();
    let _ = reader.poll(Duration::from_millis(500));
    reader
}

/// Whether the command for `deploy` is read within `timeout`.
fn command_for(reader: &rdkafka::consumer::BaseConsumer, deploy: &str, timeout: Duration) -> bool {
    use rdkafka::message::Message;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(Ok(m)) = reader.poll(Duration::from_millis(1)) {
            let v: serde_json::Value =
                serde_json::from_slice(m.payload().unwrap_or_default()).unwrap_or_default();
            if v["deploy_id"] == deploy {
                return true;
            }
        }
    }
    false
}

/// The decision latency the agent logged with each command: decisive
/// record consumed by intake → the command's transaction committed.
fn print_inside(agent: &Agent) {
    let mut inside: Vec<f64> = agent
        .log_text()
        .lines()
        .filter_map(|l| {
            l.split("decision_latency_us=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
        .map(|us| us / 1000.0)
        .collect();
    inside.sort_by(|a, b| a.total_cmp(b));
    if !inside.is_empty() {
        let q = |x: f64| inside[((inside.len() as f64 - 1.0) * x).round() as usize];
        println!(
            "kafka: decision latency inside the agent (decisive record consumed by intake → command committed) over {} decisions: p50 {:.1} ms, p99 {:.1} ms",
            inside.len(),
            q(0.5),
            q(0.99)
        );
    }
}

/// Sustained load: a producer sends spans at a fixed rate while the agent
/// consumes; the lag when production stops and the time to drain it show
/// whether consumption keeps up.
fn sustained(c: &mut Criterion) {
    sustained_on("spans", &[150_000, 250_000, 300_000]);
    sustained_on("metrics", &[300_000, 500_000]);
    c.bench_function("kafka_sustained/done", |b| b.iter(|| 0));
}

fn sustained_on(kind: &str, rates: &[usize]) {
    use rdkafka::consumer::Consumer;
    let broker = Broker::start();
    broker.create_topic("live_spans", 3);
    broker.create_topic("live_empty", 3);
    let group = format!("bench-live-{kind}");
    let group = group.as_str();
    let topics = if kind == "spans" {
        "[topics]\notlp_spans = \"live_spans\"\notlp_metrics = \"live_empty\"\n"
    } else {
        "[topics]\notlp_spans = \"live_empty\"\notlp_metrics = \"live_spans\"\n"
    };
    let cfg = agent_config(&broker, group, topics);
    for s in 0..SERVICES {
        announce_started(&cfg, &format!("live-{s}"), &format!("svc-{s}"));
    }
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    let (exports, per_export): (Vec<Vec<u8>>, usize) = if kind == "spans" {
        ((0..64).map(span_export).collect(), SPANS_PER_EXPORT)
    } else {
        ((0..64).map(metric_export).collect(), POINTS_PER_EXPORT)
    };
    let lag = || -> i64 {
        let q: rdkafka::consumer::BaseConsumer = rdkafka::config::ClientConfig::new()
            .set("bootstrap.servers", broker.brokers())
            .set("group.id", group)
            .create()
            .unwrap();
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..3 {
            tpl.add_partition("live_spans", p);
        }
        let committed = q.committed_offsets(tpl, Duration::from_secs(5)).unwrap();
        (0..3)
            .map(|p| {
                let (_, high) = q
                    .fetch_watermarks("live_spans", p, Duration::from_secs(5))
                    .unwrap();
                let done = match committed
                    .find_partition("live_spans", p)
                    .map(|e| e.offset())
                {
                    Some(rdkafka::Offset::Offset(o)) => o,
                    _ => 0,
                };
                high - done
            })
            .sum()
    };
    for &rate in rates {
        let p = producer(&broker);
        let secs = 15.0;
        let per_tick = rate as f64 / 100.0 / per_export as f64;
        let start = Instant::now();
        let (mut owed, mut sent, mut i) = (0.0f64, 0usize, 0usize);
        let mut peak_lag = 0i64;
        let mut last_probe = Instant::now();
        while start.elapsed().as_secs_f64() < secs {
            owed += per_tick;
            while owed >= 1.0 {
                produce(&p, "live_spans", None, &exports[i % exports.len()]);
                owed -= 1.0;
                sent += 1;
                i += 1;
            }
            if last_probe.elapsed() > Duration::from_secs(3) {
                peak_lag = peak_lag.max(lag());
                last_probe = Instant::now();
            }
            let next =
                start + Duration::from_millis(10 * (1 + (start.elapsed().as_millis() as u64 / 10)));
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        flush(&p);
        let produced_rate = (sent * per_export) as f64 / start.elapsed().as_secs_f64();
        let stop = Instant::now();
        let at_stop = lag();
        while lag() > 0 && stop.elapsed() < Duration::from_secs(120) {
            std::thread::sleep(Duration::from_millis(200));
        }
        println!(
            "kafka: sustained {:.0} {kind}/s offered ({:.0} achieved by the generator) for {secs}s: lag sampled every 3s peaked at {peak_lag} exports, {at_stop} at stop, drained {:.1}s after (offsets commit every 1s)",
            rate as f64,
            produced_rate,
            stop.elapsed().as_secs_f64()
        );
    }
}

/// Cumulative histograms: 32 series (15 buckets) per resource, one
/// resource (a service's version) per record, as the Collector's Kafka
/// exporter writes them with `partition_metrics_by_resource_attributes`.
const CUMULATIVE_SERIES: usize = 32;
const CUMULATIVE_EXPORTS: usize = 1600;

/// Export `i` of a cumulative series set: the resource and its record key.
fn cumulative_export(i: usize, start_ns: u64) -> (String, Vec<u8>) {
    let resource_no = i % (2 * SERVICES);
    let (service, version) = (
        format!("svc-{}", resource_no / 2),
        ["v1", "v2"][resource_no % 2],
    );
    let round = (i / (2 * SERVICES)) as u64 + 1;
    let points = (0..CUMULATIVE_SERIES)
        .map(|j| {
            let counts: Vec<u64> = (0..15)
                .map(|b| round * (j as u64 % 5 + 1) * (15 - b))
                .collect();
            route_point(j, counts, start_ns, now_ns())
        })
        .collect();
    let export = ExportMetricsServiceRequest {
        resource_metrics: vec![common::durations(resource(&service, version), points, 2)],
    };
    (format!("{service}/{version}"), export.encode_to_vec())
}

/// Starts `instances` agents in a fresh group on the metrics topic
/// `topic` and returns the evidence bytes they sent for its preloaded
/// records ([`CUMULATIVE_EXPORTS`] of them), once every record is folded
/// and the evidence sent stopped growing (the last flush is in).
fn settled_evidence(broker: &Broker, group: &str, topic: &str, instances: usize) -> f64 {
    let topics = format!("[topics]\notlp_spans = \"bench_empty\"\notlp_metrics = \"{topic}\"\n");
    let cfg = agent_config_with_slo(broker, group, "", &topics);
    let agents: Vec<Agent> = (0..instances)
        .map(|i| Agent::start_with_env(&cfg, &[(INSTANCE_ENV, &format!("{group}-{i}"))]))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut last = (-1.0, Instant::now());
    loop {
        let texts: Vec<String> = agents.iter().map(|a| a.get("/metrics").1).collect();
        let done: f64 = texts.iter().map(|t| records(t, "otlp_metrics")).sum();
        let sent: f64 = texts
            .iter()
            .map(|t| metric(t, "rollbackd_evidence_bytes_total"))
            .sum();
        if sent != last.0 {
            last = (sent, Instant::now());
        } else if done >= CUMULATIVE_EXPORTS as f64 && last.1.elapsed() > Duration::from_secs(2) {
            return sent;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {CUMULATIVE_EXPORTS} records"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Evidence of cumulative histograms next to their raw bytes, for the
/// Collector's two settings: records keyed by resource (stage 1 turns the
/// series into deltas) and records without a key (every point travels to
/// the owner).
fn cumulative_evidence(c: &mut Criterion) {
    let broker = Broker::start();
    for t in ["bench_cum_keyed", "bench_cum_unkeyed", "bench_empty"] {
        broker.create_topic(t, 3);
    }
    let cfg = agent_config(&broker, "bench-cum-setup", "");
    for s in 0..SERVICES {
        announce_started(&cfg, &format!("d-{s}"), &format!("svc-{s}"));
    }
    let p = producer(&broker);
    let start = now_ns();
    let mut raw = 0usize;
    for i in 0..CUMULATIVE_EXPORTS {
        let (key, bytes) = cumulative_export(i, start);
        raw += bytes.len();
        produce(&p, "bench_cum_keyed", Some(&key), &bytes);
        produce(&p, "bench_cum_unkeyed", None, &bytes);
    }
    flush(&p);
    for (records, topic) in [
        ("keyed", "bench_cum_keyed"),
        ("unkeyed", "bench_cum_unkeyed"),
    ] {
        for instances in [1, 3] {
            let group = format!("bench-cum-{records}-{instances}");
            let evidence = settled_evidence(&broker, &group, topic, instances);
            println!(
                "kafka: cumulative histograms ({CUMULATIVE_SERIES} series of 15 buckets a record), {records} records, {instances} instance(s): evidence {:.2} % of the raw bytes",
                100.0 * evidence / raw as f64
            );
        }
    }
    c.bench_function("kafka_cumulative_evidence/noop", |b| b.iter(|| 0));
}

criterion_group!(
    benches,
    consumption,
    cumulative_evidence,
    decision_latency,
    sustained
);
criterion_main!(benches);
