//! Deploys found in the telemetry, end to end: services instrumented with
//! the official OpenTelemetry Python SDK roll out a new version under load,
//! over OTLP/HTTP, with no deploy event anywhere.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

const CONFIG: &str = "[slo]\nwarmup = \"1s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\n\
                      windows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n\
                      [deploys]\ninfer = true\ninfer_settle = \"2s\"\n";

/// The audit records `agent` wrote so far.
fn audit(agent: &LocalAgent) -> Vec<Value> {
    std::fs::read_to_string(&agent.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn a_new_version_under_load_is_found_and_a_bad_one_gets_one_command() {
    let _serial = serial();
    let l = LocalAgent::start("", CONFIG, &[]);
    let endpoint = format!("http://{}", l.addr);
    #[rustfmt::skip]
    run_python("otel_rollout.py", &[
        "--endpoint", &endpoint,
        "--service", "shop:errors", "--service", "cart:healthy",
        "--before", "4", "--during", "8", "--after", "6",
    ]);
    let mut commands = Vec::new();
    while let Ok(line) = l.stdout.recv_timeout(Duration::from_secs(3)) {
        commands.push(serde_json::from_str::<Value>(&line).unwrap());
    }
    assert_eq!(commands.len(), 1, "{commands:#?}");
    let c = &commands[0];
    assert_eq!(c["deploy_id"], "inferred:shop:prod:v2");
    assert_eq!(c["strategy"], "inferred");
    assert_eq!(c["from_version"], "v2");
    assert_eq!(c["to_version"], "v1");
    let records = audit(&l);
    let started = |id: &str| {
        records.iter().any(|r| {
            r["deploy_id"] == id
                && r["kind"] == "deploy"
                && r["detail"]["event"] == "deploy.started"
                && r["detail"]["strategy"] == "inferred"
        })
    };
    assert!(started("inferred:shop:prod:v2"));
    assert!(started("inferred:cart:prod:v2"));
    // The healthy one completed once v1 had been gone for 2 s.
    let completed = records.iter().any(|r| {
        r["deploy_id"] == "inferred:cart:prod:v2" && r["detail"]["event"] == "deploy.completed"
    });
    assert!(completed, "{records:#?}");
    // Nothing else was taken for a deploy.
    let deploys: Vec<_> = records
        .iter()
        .filter(|r| r["detail"]["event"] == "deploy.started")
        .collect();
    assert_eq!(deploys.len(), 2, "{deploys:#?}");
    let (_, metrics) = http_get(&l.addr, "/metrics");
    assert!(
        metrics.contains(
            "rollbackd_deploys_started_total{fast_track=\"false\",source=\"inferred\"} 2"
        ),
        "{metrics}"
    );
}
