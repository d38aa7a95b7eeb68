//! Cumulative histograms over Kafka in keyed records (the OpenTelemetry
//! Collector's Kafka exporter with `partition_metrics_by_resource_attributes`):
//! stage 1 turns each series into deltas, hands its series over when its
//! partitions are revoked (a second instance joins) and when it stops
//! (SIGTERM), and the owner counts every request exactly once.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rollbackd::ingest::evidence::decode;
use rollbackd::model::evidence::Item;
use support::fleet::{deploy_view, started, ADMIN, FLEET_SLO};
use support::*;

/// Requests each export adds per series, per version (the last series
/// counts failed requests: none).
const PER_EXPORT: [u64; 3] = [3, 5, 0];

/// The owner's count of both sides' requests in the long window.
fn counted(agents: &[&Agent], deploy: &str) -> Option<(u64, u64)> {
    agents.iter().find_map(|a| {
        let v: serde_json::Value = serde_json::from_str(&deploy_view(a, deploy).1).ok()?;
        let pair = &v["evaluation"]["pairs"][0];
        let c = pair["candidate_long"]["requests"].as_u64()?;
        let b = pair["baseline_long"]["requests"].as_u64()?;
        (c > 0).then_some((c, b))
    })
}

/// Exports of both versions every 200 ms, each version's records with a
/// key of its own, until `stop`; counts the exports in `sent`.
fn export_until(
    broker: &Broker,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> thread::JoinHandle<()> {
    let p = producer(broker);
    let start = now_ns();
    thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let k = sent.load(Ordering::Acquire) + 1;
            let counts: Vec<u64> = PER_EXPORT.iter().map(|n| n * k).collect();
            for v in ["v1", "v2"] {
                let key = format!("cum/{v}");
                produce(
                    &p,
                    "otlp_metrics",
                    Some(&key),
                    &cumulative_proto("cum", v, start, &counts),
                );
            }
            flush(&p);
            sent.store(k, Ordering::Release);
            thread::sleep(Duration::from_millis(200));
        }
    })
}

#[test]
fn keyed_cumulative_series_count_once_through_a_rebalance_and_a_shutdown() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config_with_slo(&broker, "g-cum", FLEET_SLO, "");
    // Without instance ids: a member that stops leaves the group at once.
    let mut a = Agent::start_with_env(&cfg, &[ADMIN]);
    a.wait_ready();
    started(&cfg, &[&a], "d-cum", "cum");
    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let exporter = export_until(&broker, stop.clone(), sent.clone());
    thread::sleep(Duration::from_secs(4));
    // A second instance joins: the first one's partitions are revoked
    // (handed over), then shared.
    let b = Agent::start_with_env(&cfg, &[ADMIN]);
    b.wait_ready();
    assert!(
        a.wait_log(
            r#"partitions revoked group="intake""#,
            Duration::from_secs(30)
        ),
        "{}",
        a.log_text()
    );
    thread::sleep(Duration::from_secs(4));
    // The first one stops: it hands over what it holds, and the second
    // takes every partition.
    a.terminate();
    assert!(
        b.wait_log(
            r#"partitions revoked group="intake""#,
            Duration::from_secs(30)
        ),
        "{}",
        b.log_text()
    );
    thread::sleep(Duration::from_secs(6));
    stop.store(true, Ordering::Release);
    exporter.join().unwrap();
    let k = sent.load(Ordering::Acquire);
    let per_version: u64 = PER_EXPORT.iter().sum::<u64>() * k;
    let want = Some((per_version, per_version));
    let deadline = Instant::now() + Duration::from_secs(60);
    while counted(&[&b], "d-cum") != want && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(300));
    }
    // Stage 1 sent whole points only where a reader started: the rest
    // travelled as counts, and series were handed over.
    let items: Vec<Item> = read_topic(&broker, "rollbackd-evidence", Duration::ZERO)
        .iter()
        .flat_map(|r| decode(&r.raw).expect("evidence").0.items)
        .collect();
    let moves: Vec<String> = items
        .iter()
        .filter_map(|i| match i {
            Item::Handover {
                partition, next, ..
            } => Some(format!("handover {partition}@{next}")),
            Item::Cumulative {
                raw: Some(raw),
                resume: Some(from),
                series,
                ..
            } => Some(format!(
                "{series:x}: {}@{} from {from}",
                raw.partition, raw.offset
            )),
            _ => None,
        })
        .collect();
    let logs = format!("{}\n{}", moves.join("\n"), logs([&a, &b]));
    assert_eq!(counted(&[&b], "d-cum"), want, "{k} exports\n{logs}");
    thread::sleep(Duration::from_secs(2));
    assert_eq!(counted(&[&b], "d-cum"), want, "nothing more, later\n{logs}");
    let whole = items
        .iter()
        .filter(|i| matches!(i, Item::Cumulative { .. }))
        .count() as u64;
    let handovers = items
        .iter()
        .filter(|i| matches!(i, Item::Handover { .. }))
        .count();
    assert!(handovers >= 2, "{handovers} handovers\n{logs}");
    let points = 2 * PER_EXPORT.len() as u64 * k;
    assert!(
        whole * 4 < points,
        "{whole} whole points of {points}\n{logs}"
    );
}
