//! Scenario tests of the engine on replay fixtures generated here: exact
//! commands for every behaviour of CONTRACT §2 and §3. Scenarios run in
//! this process through `rollbackd::replay::replay` (what `rollbackd
//! replay` runs); the few that are about the command line itself — its
//! exit code on malformed and arbitrary input, its output run after run —
//! run the binary.

mod support;

use rollbackd::model::{command_id, Action};
use serde_json::{json, Value};
use support::replay::{self as fixture, secs, Encoding, Fixture, Stream};

fn audit_kinds<'a>(audit: &'a [Value], kind: &str) -> Vec<&'a Value> {
    audit.iter().filter(|a| a["kind"] == kind).collect()
}

fn suppressed_reasons(audit: &[Value]) -> Vec<String> {
    audit_kinds(audit, "suppressed")
        .iter()
        .map(|a| a["detail"]["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn healthy_canary_gets_no_command() {
    let mut f = Fixture::new();
    f.started(60.0, "d-1", "checkout", "v2", "v1");
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.0005)
            .between(60.0, 1e9),
    );
    let out = f.replay(900.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    assert!(audit_kinds(&out.audit, "decision").is_empty());
}

#[test]
fn bad_canary_errors_gets_exactly_one_rollback() {
    let mut f = Fixture::new();
    f.deploy(
        60.0,
        "deploy.started",
        "d-42",
        "checkout",
        "v2",
        json!({"previous_version": "v1", "strategy": "canary", "environment": "prod",
               "canary_weight": 10, "labels": {"team": "payments"}}),
    );
    f.spans(
        Stream::new("checkout", "v1", 45.0)
            .errors(0.0005)
            .env("prod"),
    );
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.08)
            .env("prod")
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let c = &out.commands[0];
    assert_eq!(c["schema"], "rollbackd.command/v1");
    assert_eq!(c["command_id"], command_id("d-42", Action::Rollback));
    assert_eq!(c["action"], "rollback");
    assert_eq!(c["trigger"], "burn_rate");
    assert_eq!(c["deploy_id"], "d-42");
    assert_eq!(c["release_id"], Value::Null);
    assert_eq!(c["service"], "checkout");
    assert_eq!(c["environment"], "prod");
    assert_eq!(c["from_version"], "v2");
    assert_eq!(c["to_version"], "v1");
    assert_eq!(c["strategy"], "canary");
    assert_eq!(c["labels"], json!({"team": "payments"}));
    let e = &c["evidence"];
    assert_eq!(e["sli"], "errors");
    // The slow-burn pair (6x of the budget) has the lower threshold: with
    // 8 % errors its test has the evidence first.
    assert_eq!(e["short"], "5m");
    assert_eq!(e["long"], "30m");
    assert_eq!(e["burn_rate"], 6.0);
    assert!(e["candidate"]["burn_long"].as_f64().unwrap() > 6.0);
    let test = &e["candidate"]["threshold_test"];
    assert!(test["log_e"].as_f64().unwrap() >= test["needed"].as_f64().unwrap());
    let worse = &e["baseline"]["worse_test"];
    assert!(worse["log_e"].as_f64().unwrap() >= worse["needed"].as_f64().unwrap());
    assert!(e["baseline"]["requests"].as_u64().unwrap() > 0);
    // Decided after the 5 s warm-up, within seconds of enough evidence.
    let at = secs(&c["decided_at"]);
    assert!((65.0..=120.0).contains(&at), "decided at +{at}s");
    assert_eq!(c["issued_at"], c["decided_at"]);
    let commands = audit_kinds(&out.audit, "command");
    assert_eq!(commands.len(), 1);
    assert_eq!(
        audit_kinds(&out.audit, "decision")[0]["detail"]["verdict"],
        "rollback"
    );
}

#[test]
fn latency_regression_rolls_back_on_latency() {
    let mut f = Fixture::new();
    f.started(60.0, "d-3", "search", "v8", "v7");
    f.spans(Stream::new("search", "v7", 40.0).slow(0.001));
    f.spans(
        Stream::new("search", "v8", 10.0)
            .slow(0.2)
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let c = &out.commands[0];
    assert_eq!(c["evidence"]["sli"], "latency");
    assert_eq!(c["to_version"], "v7");
    assert!(secs(&c["decided_at"]) <= 210.0);
}

#[test]
fn baseline_burning_alike_is_not_attributable() {
    let mut f = Fixture::new();
    f.started(60.0, "d-4", "cart", "v3", "v2");
    f.spans(
        Stream::new("cart", "v2", 40.0)
            .errors(0.0005)
            .between(0.0, 90.0),
    );
    f.spans(
        Stream::new("cart", "v2", 40.0)
            .errors(0.06)
            .between(90.0, 1e9),
    );
    f.spans(
        Stream::new("cart", "v3", 10.0)
            .errors(0.0005)
            .between(60.0, 90.0),
    );
    f.spans(
        Stream::new("cart", "v3", 10.0)
            .errors(0.06)
            .between(90.0, 1e9),
    );
    let out = f.replay(480.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    let decisions = audit_kinds(&out.audit, "decision");
    assert!(
        decisions
            .iter()
            .any(|d| d["detail"]["verdict"] == "not_attributable"),
        "{decisions:?}"
    );
}

#[test]
fn irreversible_migration_asks_for_approval() {
    let mut f = Fixture::new();
    f.deploy(
        60.0,
        "deploy.started",
        "d-5",
        "billing",
        "v5",
        json!({"previous_version": "v4", "data_migration": "irreversible"}),
    );
    f.spans(Stream::new("billing", "v4", 40.0).errors(0.0005));
    f.spans(
        Stream::new("billing", "v5", 10.0)
            .errors(0.1)
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["action"], "approval_required");
    assert_eq!(
        out.commands[0]["command_id"],
        command_id("d-5", Action::ApprovalRequired)
    );
}

#[test]
fn critical_alert_triggers_once_despite_repeats() {
    let mut f = Fixture::new();
    f.started(60.0, "d-6", "auth", "v12", "v11");
    f.spans(
        Stream::new("auth", "v12", 30.0)
            .errors(0.0005)
            .between(60.0, 1e9),
    );
    let labels =
        |sev: &str| json!({"alertname": "HighErrorRate", "service": "auth", "severity": sev});
    f.alert(100.0, labels("critical"), "firing", 30.0, "early"); // started before the deploy
    f.alert(200.0, labels("warning"), "firing", 190.0, "warn");
    f.alert(240.0, labels("critical"), "firing", 235.0, "crit");
    f.alert(250.0, labels("critical"), "firing", 235.0, "crit"); // HA re-delivery
    f.alert(300.0, labels("critical"), "firing", 235.0, "crit");
    let out = f.replay(420.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let c = &out.commands[0];
    assert_eq!(c["trigger"], "alert");
    assert_eq!(c["to_version"], "v11");
    assert_eq!(secs(&c["decided_at"]), 240.0);
    assert_eq!(c["evidence"]["alert"]["fingerprint"], "crit");
    let alerts = audit_kinds(&out.audit, "alert");
    assert_eq!(alerts.len(), 3, "repeats change nothing: {alerts:?}");
}

#[test]
fn alert_by_deploy_id_label_and_resolved_alerts() {
    let mut f = Fixture::new();
    f.started(60.0, "d-7", "auth", "v2", "v1");
    f.alert(
        100.0,
        json!({"alertname": "X", "deploy_id": "d-7", "severity": "critical"}),
        "resolved",
        90.0,
        "a",
    );
    f.alert(
        110.0,
        json!({"alertname": "X", "deploy_id": "nope", "service": "other", "severity": "critical"}),
        "firing",
        90.0,
        "b",
    );
    f.alert(
        120.0,
        json!({"alertname": "X", "deploy_id": "d-7", "severity": "critical"}),
        "firing",
        90.0,
        "c",
    );
    let out = f.replay(200.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["deploy_id"], "d-7");
    assert_eq!(secs(&out.commands[0]["decided_at"]), 120.0);
}

#[test]
fn cooldown_holds_the_second_deploy_until_it_ends() {
    let mut f = Fixture::new();
    f.started(60.0, "d-9a", "feed", "v2", "v1");
    f.spans(
        Stream::new("feed", "v2", 20.0)
            .errors(0.1)
            .between(60.0, 300.0),
    );
    f.started(300.0, "d-9b", "feed", "v3", "v1");
    f.spans(
        Stream::new("feed", "v3", 20.0)
            .errors(0.1)
            .between(300.0, 1e9),
    );
    let out = f.replay(900.0);
    assert_eq!(out.commands.len(), 2, "{}", out.stdout);
    let first = secs(&out.commands[0]["decided_at"]);
    let second = secs(&out.commands[1]["decided_at"]);
    assert_eq!(out.commands[0]["deploy_id"], "d-9a");
    assert_eq!(out.commands[1]["deploy_id"], "d-9b");
    assert!(second >= first + 600.0, "{first} {second}");
    assert!(
        second <= first + 610.0,
        "decided again as soon as the cooldown ended"
    );
    assert!(suppressed_reasons(&out.audit).contains(&"cooldown".to_string()));
    // Suppression is audited when it starts, not on every evaluation.
    assert_eq!(suppressed_reasons(&out.audit).len(), 1);
}

#[test]
fn breaker_opens_after_three_and_stops_the_fourth() {
    let mut f = Fixture::new();
    for (i, svc) in ["a", "b", "c", "d"].iter().enumerate() {
        let start = 60.0 + 90.0 * i as f64;
        f.started(
            start,
            &format!("d-10{svc}"),
            &format!("svc-{svc}"),
            "v2",
            "v1",
        );
        f.spans(
            Stream::new(&format!("svc-{svc}"), "v2", 20.0)
                .errors(0.1)
                .between(start, 1e9),
        );
    }
    let out = f.replay(720.0);
    let ids: Vec<_> = out
        .commands
        .iter()
        .map(|c| c["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d-10a", "d-10b", "d-10c"]);
    assert!(suppressed_reasons(&out.audit).contains(&"breaker_open".to_string()));
    let breaker = audit_kinds(&out.audit, "breaker");
    assert_eq!(breaker.len(), 1);
    assert_eq!(breaker[0]["detail"]["state"], "open");
}

#[test]
fn release_rolls_back_together() {
    let mut f = Fixture::new();
    f.deploy(
        60.0,
        "deploy.started",
        "d-11a",
        "web",
        "v9",
        json!({"previous_version": "v8", "release_id": "r-11"}),
    );
    f.deploy(
        61.0,
        "deploy.started",
        "d-11b",
        "api",
        "v4",
        json!({"previous_version": "v3", "release_id": "r-11"}),
    );
    f.spans(Stream::new("web", "v8", 40.0).errors(0.0005));
    f.spans(
        Stream::new("web", "v9", 10.0)
            .errors(0.0005)
            .between(60.0, 1e9),
    );
    f.spans(Stream::new("api", "v3", 40.0).errors(0.0005));
    f.spans(
        Stream::new("api", "v4", 10.0)
            .errors(0.09)
            .between(61.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 2, "{}", out.stdout);
    let (a, b) = (&out.commands[0], &out.commands[1]);
    assert_eq!(
        (a["deploy_id"].as_str(), a["trigger"].as_str()),
        (Some("d-11b"), Some("burn_rate"))
    );
    assert_eq!(
        (b["deploy_id"].as_str(), b["trigger"].as_str()),
        (Some("d-11a"), Some("release"))
    );
    assert_eq!(b["release_id"], "r-11");
    assert_eq!(b["to_version"], "v8");
    assert_eq!(b["evidence"]["caused_by"], "d-11b");
    assert_eq!(a["decided_at"], b["decided_at"]);
}

#[test]
fn release_rolled_back_by_hand_takes_the_others_along() {
    let mut f = Fixture::new();
    f.deploy(
        60.0,
        "deploy.started",
        "d-12a",
        "web",
        "v9",
        json!({"previous_version": "v8", "release_id": "r-12"}),
    );
    f.deploy(
        61.0,
        "deploy.started",
        "d-12b",
        "api",
        "v4",
        json!({"previous_version": "v3", "release_id": "r-12"}),
    );
    f.deploy(100.0, "deploy.rolled_back", "d-12a", "web", "v9", json!({}));
    let out = f.replay(200.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["deploy_id"], "d-12b");
    assert_eq!(out.commands[0]["trigger"], "release");
}

#[test]
fn rolled_back_deploy_is_forgotten() {
    let mut f = Fixture::new();
    // Rolled back by hand before rollbackd's warm-up ends.
    f.config_extra = "[slo]\nwarmup = \"30s\"\n".into();
    f.started(60.0, "d-13", "mail", "v2", "v1");
    f.spans(
        Stream::new("mail", "v2", 20.0)
            .errors(0.1)
            .between(60.0, 80.0),
    );
    f.deploy(80.0, "deploy.rolled_back", "d-13", "mail", "v2", json!({}));
    f.spans(
        Stream::new("mail", "v1", 20.0)
            .errors(0.0005)
            .between(80.0, 1e9),
    );
    let out = f.replay(480.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
}

#[test]
fn dry_run_audits_instead_of_emitting() {
    let mut f = Fixture::new();
    f.config_extra = "[slo.services.checkout]\ndry_run = true\n".into();
    f.started(60.0, "d-14", "checkout", "v2", "v1");
    f.spans(Stream::new("checkout", "v1", 45.0));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.2)
            .between(60.0, 1e9),
    );
    let out = f.replay(300.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    let dry = audit_kinds(&out.audit, "suppressed");
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0]["detail"]["reason"], "dry_run");
    assert_eq!(dry[0]["detail"]["detail"]["command"]["deploy_id"], "d-14");
}

#[test]
fn histogram_metrics_cumulative() {
    let mut f = Fixture::new();
    f.export_every = 10.0;
    f.started(60.0, "d-15", "orders", "v31", "v30");
    f.metrics(Stream::new("orders", "v30", 45.0).errors(0.0005));
    f.metrics(
        Stream::new("orders", "v31", 5.0)
            .errors(0.12)
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["evidence"]["source"], "metrics");
    assert_eq!(out.commands[0]["evidence"]["sli"], "errors");
    assert!(secs(&out.commands[0]["decided_at"]) <= 220.0);
}

#[test]
fn histogram_metrics_latency() {
    let mut f = Fixture::new();
    f.export_every = 10.0;
    f.started(60.0, "d-16", "orders", "v31", "v30");
    f.metrics(Stream::new("orders", "v30", 45.0).slow(0.001));
    f.metrics(
        Stream::new("orders", "v31", 10.0)
            .slow(0.25)
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["evidence"]["sli"], "latency");
}

#[test]
fn protobuf_records_decide_like_json() {
    let build = || {
        let mut f = Fixture::new();
        f.started(60.0, "d-17", "checkout", "v2", "v1");
        f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
        f.spans(
            Stream::new("checkout", "v2", 5.0)
                .errors(0.08)
                .between(60.0, 1e9),
        );
        f
    };
    let json_out = build().replay_with(300.0, Encoding::Json);
    let proto_out = build().replay_with(300.0, Encoding::ProtoBase64);
    assert_eq!(json_out.commands.len(), 1);
    assert_eq!(json_out.stdout, proto_out.stdout);
}

#[test]
fn replay_is_deterministic() {
    let mut f = Fixture::new();
    f.started(60.0, "d-18", "checkout", "v2", "v1");
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.08)
            .between(60.0, 1e9),
    );
    let (input, config) = f.write(300.0, Encoding::Json);
    let (status_a, a) = fixture::run_replay(&input, &config);
    let (status_b, b) = fixture::run_replay(&input, &config);
    assert_eq!((status_a, status_b), (0, 0), "{}", a.stderr);
    assert_eq!(a.commands.len(), 1);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(a.audit, b.audit);
}

#[test]
fn malformed_lines_are_reported_and_skipped() {
    let mut f = Fixture::new();
    f.raw(30.0, r#"{"topic": "deploy-events", "timestamp": "2026-11-26T12:00:30Z", "value": {"type": "deploy.started", "deploy_id": "#);
    f.started(60.0, "d-19", "checkout", "v2", "v1");
    f.record(
        70.0,
        "deploy-events",
        json!({"type": "deploy.started", "service": "checkout", "at": fixture::ts(70.0)}),
    );
    f.record(75.0, "deploy-events", json!({"type": "deploy.exploded", "deploy_id": "x", "service": "checkout", "version": "v9", "at": fixture::ts(75.0)}));
    f.record(90.0, "otlp_spans", json!({"resourceSpans": "not-a-list"}));
    f.record(91.0, "no-such-topic", json!({}));
    f.raw(
        92.0,
        r#"{"topic": "otlp_spans", "timestamp": "yesterday", "value": {}}"#,
    );
    f.raw(
        93.0,
        r#"{"topic": "otlp_spans", "timestamp": "2026-11-26T12:01:33Z", "value_base64": "!!"}"#,
    );
    f.raw(94.0, "\u{7f}\u{0}binary");
    f.raw(95.0, r#"{"topic": "alertmanager", "timestamp": "2026-11-26T12:01:35Z", "value": {"version": "3", "alerts": []}}"#);
    f.raw(96.0, r#"{"topic": "rollback-results", "timestamp": "2026-11-26T12:01:36Z", "value": {"status": "succeeded"}}"#);
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.08)
            .between(60.0, 1e9),
    );
    let (input, config) = f.write(300.0, Encoding::Json);
    let (status, out) = fixture::run_replay(&input, &config);
    assert_eq!(status, 0, "{}", out.stderr);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("line "))
        .collect();
    assert_eq!(errors.len(), 10, "{}", out.stderr);
    let text = std::fs::read_to_string(&input).unwrap();
    let truncated = text
        .lines()
        .position(|l| l.ends_with("\"deploy_id\": "))
        .unwrap()
        + 1;
    assert!(
        errors[0].starts_with(&format!("line {truncated}: ")),
        "{}",
        errors[0]
    );
    assert!(out.stderr.contains("missing required field deploy_id"));
    assert!(out.stderr.contains("unknown event type"));
    assert!(out.stderr.contains("unknown topic"));
    assert_eq!(audit_kinds(&out.audit, "malformed").len(), 10);
    // Nothing malformed created a deploy.
    assert!(!out.audit.iter().any(|a| a["deploy_id"] == "x"));
}

#[test]
fn arbitrary_bytes_never_crash_replay() {
    let mut seed = 0x1234_5678_u64;
    let mut body = Vec::new();
    for _ in 0..3000 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let len = (seed >> 58) as usize;
        for i in 0..len {
            body.push((seed >> (i % 7 * 8)) as u8);
        }
        body.push(b'\n');
    }
    // Also structurally plausible records with garbage values.
    for topic in [
        "deploy-events",
        "otlp_spans",
        "otlp_metrics",
        "rollback-results",
        "rollback-commands",
        "alertmanager",
    ] {
        for v in ["null", "1", "\"x\"", "[]", "{}", "{\"resourceSpans\":[{\"scopeSpans\":[{\"spans\":[{\"kind\":2,\"endTimeUnixNano\":\"18446744073709551615\"}]}]}]}",
                  "{\"resourceMetrics\":[{\"scopeMetrics\":[{\"metrics\":[{\"name\":\"http.server.request.duration\",\"histogram\":{\"aggregationTemporality\":2,\"dataPoints\":[{\"timeUnixNano\":\"1\",\"count\":\"5\",\"bucketCounts\":[\"9\"],\"explicitBounds\":[]}]}}]}]}]}"] {
            body.extend_from_slice(format!("{{\"topic\":\"{topic}\",\"timestamp\":\"2026-11-26T12:00:00Z\",\"value\":{v}}}\n").as_bytes());
        }
    }
    let dir = std::env::temp_dir().join(format!("rollbackd-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("input.jsonl");
    std::fs::write(&input, body).unwrap();
    let config = dir.join("config.toml");
    std::fs::write(&config, "").unwrap();
    let (status, out) = fixture::run_replay(&input, &config);
    assert_eq!(status, 0, "{}", out.stderr);
    assert!(out.commands.is_empty());
    assert!(!out.stderr.contains("panicked"));
}

/// Records of the admin topic replay as they ran: a pause holds the bad
/// canary back, the resume lets it be decided.
#[test]
fn admin_topic_records_replay_pause_and_resume() {
    let mut f = Fixture::new();
    let admin = |action: &str, t: f64| {
        json!({"schema": "rollbackd.admin/v1", "action": action, "actor": "alice",
               "at": fixture::ts(t), "instance": "pod-1"})
    };
    f.record(30.0, "rollbackd-admin", admin("pause", 30.0));
    f.started(60.0, "d-adm", "search", "v2", "v1");
    f.spans(Stream::new("search", "v1", 40.0).errors(0.0005));
    f.spans(
        Stream::new("search", "v2", 10.0)
            .errors(0.1)
            .between(60.0, 1e9),
    );
    f.record(300.0, "rollbackd-admin", admin("resume", 300.0));
    f.record(
        310.0,
        "rollbackd-admin",
        json!({"schema": "rollbackd.admin/v1", "action": "explode"}),
    );
    let out = f.replay(420.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert!(secs(&out.commands[0]["decided_at"]) >= 300.0);
    assert!(suppressed_reasons(&out.audit).contains(&"paused".to_string()));
    assert!(
        out.stderr.contains("invalid admin record"),
        "{}",
        out.stderr
    );
}

/// Spans of one resource, one batch per second from `from` to `to`: `n`
/// SERVER requests a second of which `bad` fail, the failure marked by the
/// attribute `status_key` = 503 only (no span status), plus one CLIENT span
/// that must not count.
fn span_batches(
    f: &mut Fixture,
    attrs: &[(&str, &str)],
    (from, to): (f64, f64),
    (n, bad): (usize, usize),
    status_key: &str,
) {
    let resource: Vec<Value> = attrs
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    let mut t = from;
    while t < to {
        t += 1.0;
        let mut spans: Vec<Value> = (0..n)
            .map(|i| {
                let end = t - 1.0 + (i as f64 + 0.5) / n as f64;
                let code = if i < bad { 503 } else { 200 };
                json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                       "name": "GET /", "kind": 2,
                       "startTimeUnixNano": fixture::nanos(end - 0.02), "endTimeUnixNano": fixture::nanos(end),
                       "attributes": [{"key": status_key, "value": {"intValue": code.to_string()}}]})
            })
            .collect();
        spans.push(
            json!({"name": "SELECT", "kind": 3, "startTimeUnixNano": fixture::nanos(t - 0.5),
                          "endTimeUnixNano": fixture::nanos(t - 0.4), "status": {"code": 2}}),
        );
        f.record(
            t + 0.2,
            "otlp_spans",
            json!({"resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]}),
        );
    }
}

#[test]
fn deployment_id_attribute_names_the_candidate() {
    // The telemetry's version is a build number nobody announced; its
    // deployment.id names the deploy. Without that attribute it is unmatched.
    for (with_id, want) in [(true, 1), (false, 0)] {
        let mut f = Fixture::new();
        f.started(60.0, "d-77", "pay", "v9", "v8");
        let mut attrs = vec![("service.name", "pay"), ("service.version", "build-123")];
        if with_id {
            attrs.push(("deployment.id", "d-77"));
        }
        span_batches(
            &mut f,
            &attrs,
            (60.0, 300.0),
            (10, 2),
            "http.response.status_code",
        );
        let out = f.replay(300.0);
        assert_eq!(
            out.commands.len(),
            want,
            "with_id={with_id}: {}",
            out.stdout
        );
        if with_id {
            assert_eq!(out.commands[0]["deploy_id"], "d-77");
            assert_eq!(out.commands[0]["to_version"], "v8");
        }
    }
}

#[test]
fn environment_must_match_and_legacy_attributes_count() {
    // Legacy `deployment.environment` and `http.status_code` are read; a
    // resource in another environment is not this deploy's.
    for (env, want) in [("prod", 1), ("staging", 0)] {
        let mut f = Fixture::new();
        f.deploy(
            60.0,
            "deploy.started",
            "d-env",
            "cart",
            "v2",
            json!({"previous_version": "v1", "environment": "prod"}),
        );
        span_batches(
            &mut f,
            &[
                ("service.name", "cart"),
                ("service.version", "v2"),
                ("deployment.environment", env),
            ],
            (60.0, 300.0),
            (10, 2),
            "http.status_code",
        );
        let out = f.replay(300.0);
        assert_eq!(out.commands.len(), want, "env={env}: {}", out.stdout);
    }
}

#[test]
fn millisecond_histograms_are_converted() {
    // A latency regression reported by a histogram in ms: slow requests
    // sit in the (750, 1000] ms bucket, above the 500 ms threshold.
    let mut f = Fixture::new();
    f.started(60.0, "d-ms", "img", "v2", "v1");
    let bounds = [
        5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0,
    ];
    for (version, slow_per_sec) in [("v1", 0u64), ("v2", 5)] {
        let (mut ok, mut slow) = (0u64, 0u64);
        let mut t = 60.0;
        while t < 300.0 {
            t += 5.0;
            ok += 5 * (10 - slow_per_sec);
            slow += 5 * slow_per_sec;
            let mut counts = vec![0u64; bounds.len() + 1];
            counts[3] = ok; // (25, 50] ms
            counts[9] = slow; // (750, 1000] ms
            let v = json!({"resourceMetrics": [{"resource": {"attributes": [
                    {"key": "service.name", "value": {"stringValue": "img"}},
                    {"key": "service.version", "value": {"stringValue": version}}]},
                "scopeMetrics": [{"metrics": [{"name": "http.server.request.duration", "unit": "ms",
                    "histogram": {"aggregationTemporality": 2, "dataPoints": [{
                        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}],
                        "startTimeUnixNano": fixture::nanos(60.0), "timeUnixNano": fixture::nanos(t),
                        "count": (ok + slow).to_string(),
                        "bucketCounts": counts.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
                        "explicitBounds": bounds}]}}]}]}]});
            f.record(t + 0.2, "otlp_metrics", v);
        }
    }
    let out = f.replay(300.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["evidence"]["sli"], "latency");
    assert_eq!(out.commands[0]["evidence"]["source"], "metrics");
}

#[test]
fn cloudevents_envelope_starts_a_deploy() {
    let mut f = Fixture::new();
    f.record(
        60.0,
        "deploy-events",
        json!({"specversion": "1.0", "type": "deploy.started", "source": "/ci/pipelines/7",
               "id": "evt-1", "time": fixture::ts(60.0), "datacontenttype": "application/json",
               "data": {"type": "deploy.started", "deploy_id": "d-ce", "service": "mail",
                        "version": "v2", "previous_version": "v1", "at": fixture::ts(60.0)}}),
    );
    span_batches(
        &mut f,
        &[("service.name", "mail"), ("service.version", "v2")],
        (60.0, 300.0),
        (10, 2),
        "http.response.status_code",
    );
    let out = f.replay(300.0);
    assert_eq!(out.commands.len(), 1, "{}{}", out.stdout, out.stderr);
    assert_eq!(out.commands[0]["deploy_id"], "d-ce");
}

#[test]
fn a_newer_start_retires_the_older_deploy() {
    // v2 starts failing; v3 replaces it before the warm-up ends. v2 is now
    // v3's baseline, v3 is healthy: nothing to roll back.
    let mut f = Fixture::new();
    f.config_extra = "[slo]\nwarmup = \"30s\"\n".into();
    f.started(60.0, "d-old", "feed", "v2", "v1");
    f.started(80.0, "d-new", "feed", "v3", "v2");
    f.spans(
        Stream::new("feed", "v2", 10.0)
            .errors(0.2)
            .between(60.0, 1e9),
    );
    f.spans(
        Stream::new("feed", "v3", 10.0)
            .errors(0.0)
            .between(80.0, 1e9),
    );
    let out = f.replay(400.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
}

#[test]
fn a_completed_deploy_is_watched_then_forgotten() {
    for (bad_from, want) in [(100.0, 1), (250.0, 0)] {
        let mut f = Fixture::new();
        f.config_extra = "[slo]\nwatch_after_complete = \"60s\"\n".into();
        f.started(60.0, "d-done", "news", "v2", "v1");
        f.deploy(
            70.0,
            "deploy.completed",
            "d-done",
            "news",
            "v2",
            json!({"previous_version": "v1"}),
        );
        f.spans(Stream::new("news", "v1", 20.0).errors(0.0005));
        f.spans(
            Stream::new("news", "v2", 10.0)
                .errors(0.0005)
                .between(60.0, bad_from),
        );
        f.spans(
            Stream::new("news", "v2", 10.0)
                .errors(0.2)
                .between(bad_from, 1e9),
        );
        let out = f.replay(400.0);
        assert_eq!(
            out.commands.len(),
            want,
            "bad from {bad_from}: {}",
            out.stdout
        );
    }
}

#[test]
fn deploys_over_the_cap_are_not_tracked() {
    let mut f = Fixture::new();
    f.config_extra = "[limits]\nmax_active_deploys = 2\n".into();
    for (i, svc) in ["a", "b", "c"].iter().enumerate() {
        f.started(60.0 + i as f64, &format!("d-{svc}"), svc, "v2", "v1");
        f.spans(Stream::new(svc, "v2", 10.0).errors(0.2).between(60.0, 1e9));
    }
    let out = f.replay(300.0);
    let ids: Vec<&str> = out
        .commands
        .iter()
        .map(|c| c["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{}", out.stdout);
    assert!(!ids.contains(&"d-c"), "{ids:?}");
}

/// After a successful rollback the restored version is watched for
/// `verify.window`: recovered (with its times), not recovered (at once, and
/// no second command), or inconclusive (no traffic to tell).
#[test]
fn a_successful_rollback_is_verified_on_the_restored_version() {
    // (restored version's error ratio after the rollback, its rps, outcome)
    for (after_errors, after_rps, outcome) in [
        (0.0005, 60.0, "recovered"),
        (0.1, 60.0, "not_recovered"),
        (0.0, 0.0, "inconclusive"),
    ] {
        let mut f = Fixture::new();
        f.config_extra = "[verify]\nwindow = \"2m\"\n".into();
        f.started(60.0, "d-v", "cart", "v2", "v1");
        f.spans(
            Stream::new("cart", "v1", 40.0)
                .errors(0.0005)
                .between(0.0, 150.0),
        );
        f.spans(
            Stream::new("cart", "v2", 10.0)
                .errors(0.1)
                .between(60.0, 150.0),
        );
        if after_rps > 0.0 {
            f.spans(
                Stream::new("cart", "v1", after_rps)
                    .errors(after_errors)
                    .between(150.0, 1e9),
            );
        }
        // Another service's traffic moves the replay clock on.
        f.spans(Stream::new("other", "v9", 1.0));
        let id = command_id("d-v", Action::Rollback);
        f.record(
            150.0,
            "rollback-results",
            json!({"command_id": id, "deploy_id": "d-v", "status": "succeeded",
                   "at": fixture::ts(150.0), "executor": "test", "message": "done"}),
        );
        let out = f.replay(400.0);
        assert_eq!(out.commands.len(), 1, "{outcome}: {}", out.stdout);
        let decided = secs(&out.commands[0]["decided_at"]);
        let v = audit_kinds(&out.audit, "verification");
        assert_eq!(v.len(), 1, "{outcome}: {:?}", out.audit);
        let (at, d) = (secs(&v[0]["at"]), &v[0]["detail"]);
        assert_eq!(d["outcome"], outcome, "{d}");
        assert_eq!(d["command_id"], id);
        assert_eq!(d["restored_version"], "v1");
        assert_eq!(d["sli"], "errors");
        let rollback = d["time_to_rollback_seconds"].as_f64().unwrap();
        assert!((rollback - (150.0 - decided)).abs() < 1e-6, "{d}");
        assert!((d["time_to_decide_seconds"].as_f64().unwrap() - (decided - 60.0)).abs() < 1e-6);
        let detect = d["time_to_detect_seconds"].as_f64().unwrap();
        assert!(detect > 0.0 && detect <= decided - 60.0, "{d}");
        assert!(d["during"]["ratio"].as_f64().unwrap() > 0.05, "{d}");
        match outcome {
            "recovered" => {
                // Told at the end of the window, recovered within it.
                assert!((270.0..=276.0).contains(&at), "at +{at}s");
                let from_result = d["time_to_recover_from_result_seconds"].as_f64().unwrap();
                assert!(from_result > 0.0 && from_result <= 60.0, "{d}");
                let from_decision = d["time_to_recover_seconds"].as_f64().unwrap();
                assert!((from_decision - from_result - rollback).abs() < 1e-6, "{d}");
                assert!(d["after"]["ratio"].as_f64().unwrap() < 0.01, "{d}");
            }
            "not_recovered" => {
                // Told as soon as the restored version is seen to burn.
                assert!(at < 200.0, "at +{at}s");
                assert_eq!(d["time_to_recover_seconds"], Value::Null);
                assert_eq!(d["evidence"]["sli"], "errors", "{d}");
                assert!(d["after"]["ratio"].as_f64().unwrap() > 0.02, "{d}");
            }
            _ => {
                assert!((270.0..=276.0).contains(&at), "at +{at}s");
                // Only the last export of the old traffic came after it.
                assert!(d["after"]["requests"].as_u64().unwrap() <= 400, "{d}");
                assert_eq!(d["time_to_recover_seconds"], Value::Null);
            }
        }
        // The deploy is retired after its verification, whatever it says.
        let retired = audit_kinds(&out.audit, "deploy")
            .into_iter()
            .filter(|a| a["detail"]["event"] == "retired")
            .count();
        assert!(retired <= 1);
    }
}

/// A canary failing 10 % of its requests beside a healthy baseline of
/// equal traffic, both streams shaped by `shape` (how late, in what
/// order they arrive), watched for `until` seconds.
fn late_canary(
    config: &str,
    candidate: impl Fn(Stream) -> Stream,
    baseline: impl Fn(Stream) -> Stream,
    until: f64,
) -> fixture::Output {
    let mut f = Fixture::new();
    f.config_extra = config.into();
    f.started(60.0, "d-late", "checkout", "v2", "v1");
    f.spans(baseline(Stream::new("checkout", "v1", 10.0).errors(0.0005)));
    f.spans(candidate(
        Stream::new("checkout", "v2", 10.0)
            .errors(0.1)
            .between(60.0, 1e9),
    ));
    f.replay(until)
}

fn one_rollback(out: &fixture::Output) -> f64 {
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let c = &out.commands[0];
    assert_eq!(c["deploy_id"], "d-late");
    assert_eq!(c["to_version"], "v1");
    assert_eq!(c["evidence"]["sli"], "errors");
    let worse = &c["evidence"]["baseline"]["worse_test"];
    assert!(worse["log_e"].as_f64().unwrap() >= worse["needed"].as_f64().unwrap());
    secs(&c["decided_at"])
}

/// Spans held back 30 s (a Collector's tail sampling): every slot is
/// compared once both versions' evidence has passed it.
#[test]
fn telemetry_thirty_seconds_late_still_rolls_back() {
    let out = late_canary("", |s| s.late(30.0), |s| s.late(30.0), 480.0);
    let at = one_rollback(&out);
    assert!(at <= 200.0, "decided at +{at}s");
    assert!(audit_kinds(&out.audit, "late_data").is_empty());
}

/// A minute late, within an `allowed_lateness` of 90 s.
#[test]
fn telemetry_a_minute_late_rolls_back_within_a_longer_lateness() {
    let config = "[slo]\nallowed_lateness = \"90s\"\n";
    let out = late_canary(config, |s| s.late(60.0), |s| s.late(60.0), 600.0);
    one_rollback(&out);
    assert!(audit_kinds(&out.audit, "late_data").is_empty());
}

/// Exports of both versions 20 to 30 s late, every other one after the
/// next: slots a side was missing are compared when its export comes.
#[test]
fn batches_out_of_order_still_roll_back() {
    let out = late_canary(
        "",
        |s| s.late(30.0).out_of_order(-10.0),
        |s| s.late(20.0).out_of_order(10.0),
        480.0,
    );
    one_rollback(&out);
}

/// The baseline on time, the canary's spans 25 s late: slots wait for the
/// canary's watermark.
#[test]
fn a_late_canary_beside_an_on_time_baseline_rolls_back() {
    let out = late_canary("", |s| s.late(25.0), |s| s, 480.0);
    one_rollback(&out);
}

#[test]
fn a_healthy_canary_thirty_seconds_late_gets_no_command() {
    let mut f = Fixture::new();
    f.started(60.0, "d-ok", "checkout", "v2", "v1");
    f.spans(
        Stream::new("checkout", "v1", 10.0)
            .errors(0.0005)
            .late(30.0),
    );
    f.spans(
        Stream::new("checkout", "v2", 10.0)
            .errors(0.0005)
            .between(60.0, 1e9)
            .late(30.0),
    );
    let out = f.replay(900.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    assert!(audit_kinds(&out.audit, "decision").is_empty());
}

/// Spans 30 s late against an `allowed_lateness` of 10 s: counted in the
/// windows, never compared, and audited once per deploy.
#[test]
fn telemetry_later_than_allowed_is_audited_once_per_deploy() {
    let mut f = Fixture::new();
    f.config_extra = "[slo]\nallowed_lateness = \"10s\"\n".into();
    for (id, svc) in [("d-a", "checkout"), ("d-b", "search")] {
        f.started(60.0, id, svc, "v2", "v1");
        f.spans(Stream::new(svc, "v1", 10.0).late(30.0));
        f.spans(
            Stream::new(svc, "v2", 10.0)
                .errors(0.1)
                .between(60.0, 1e9)
                .late(30.0),
        );
    }
    let out = f.replay(300.0);
    let late = audit_kinds(&out.audit, "late_data");
    let ids: Vec<&str> = late
        .iter()
        .map(|a| a["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d-a", "d-b"], "{late:?}");
    for a in late {
        let d = &a["detail"];
        assert_eq!(d["allowed_lateness"], "10s");
        assert!(d["observations"].as_u64().unwrap() > 0, "{d}");
        let by = d["late_by_seconds"].as_f64().unwrap();
        assert!((25.0..=36.0).contains(&by), "{d}");
    }
}

/// One failed request among the baseline's first hundred is no evidence
/// that the baseline burns: the failing canary is rolled back, and nothing
/// is called not attributable on the way.
#[test]
fn one_early_baseline_error_does_not_make_a_bad_canary_unattributable() {
    let mut f = Fixture::new();
    f.started(60.0, "d-b1", "checkout", "v2", "v1");
    // 20 requests by 70 s, the 17th failed; none after.
    f.spans(
        Stream::new("checkout", "v1", 2.0)
            .errors(0.06)
            .between(60.0, 65.0),
    );
    f.spans(Stream::new("checkout", "v1", 2.0).between(70.0, 1e9));
    f.spans(
        Stream::new("checkout", "v2", 10.0)
            .errors(0.1)
            .between(60.0, 1e9),
    );
    let out = f.replay(480.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    assert_eq!(out.commands[0]["deploy_id"], "d-b1");
    let baseline = &out.commands[0]["evidence"]["baseline"];
    assert!(baseline["bad"].as_u64().unwrap() == 1, "{baseline}");
    let verdicts: Vec<&Value> = audit_kinds(&out.audit, "decision")
        .iter()
        .map(|d| &d["detail"]["verdict"])
        .collect();
    assert_eq!(verdicts, [&json!("rollback")]);
}

/// Cumulative histograms exported every 10 s and held back 30 s, out of
/// order: compared in the longest window's slots once both versions'
/// points have passed them.
#[test]
fn late_histograms_out_of_order_still_roll_back() {
    let mut f = Fixture::new();
    f.export_every = 10.0;
    f.started(60.0, "d-h", "orders", "v31", "v30");
    f.metrics(
        Stream::new("orders", "v30", 45.0)
            .errors(0.0005)
            .late(30.0)
            .out_of_order(15.0),
    );
    f.metrics(
        Stream::new("orders", "v31", 5.0)
            .errors(0.12)
            .between(60.0, 1e9)
            .late(30.0),
    );
    let out = f.replay(600.0);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let e = &out.commands[0]["evidence"];
    assert_eq!(e["source"], "metrics");
    let worse = &e["baseline"]["worse_test"];
    assert!(worse["log_e"].as_f64().unwrap() >= worse["needed"].as_f64().unwrap());
    assert!(audit_kinds(&out.audit, "late_data").is_empty());
}

/// A dependency failing both versions alike (~20 % errors): not
/// attributable, no command.
#[test]
fn a_dependency_outage_is_not_attributable() {
    let mut f = Fixture::new();
    f.started(60.0, "d-dep", "cart", "v3", "v2");
    f.spans(Stream::new("cart", "v2", 40.0).errors(0.2));
    f.spans(
        Stream::new("cart", "v3", 10.0)
            .errors(0.2)
            .between(60.0, 1e9),
    );
    let out = f.replay(600.0);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    let decisions = audit_kinds(&out.audit, "decision");
    assert!(
        decisions
            .iter()
            .any(|d| d["detail"]["verdict"] == "not_attributable"),
        "{decisions:?}"
    );
    let d = decisions
        .iter()
        .find(|d| d["detail"]["verdict"] == "not_attributable")
        .unwrap();
    let burning = &d["detail"]["evidence"]["baseline"]["burning_test"];
    assert!(burning["log_e"].as_f64().unwrap() >= burning["needed"].as_f64().unwrap());
}
