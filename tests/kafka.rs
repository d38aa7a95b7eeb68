//! The `run` daemon against a real broker process (tansu on loopback):
//! end to end, restarts, dead letters, broker outages, scale-out.

mod support;

use std::time::{Duration, Instant};

use rollbackd::model::{command_id, Action};
use support::*;

/// Sends `secs` seconds of traffic, five exports a second: the baseline
/// (v1) healthy, the candidate (v2) failing `cand_err_pct` percent.
fn traffic(broker: &Broker, service: &str, secs: f64, cand_err_pct: usize) {
    let p = producer(broker);
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < secs {
        produce(&p, "otlp_spans", None, &spans_proto(service, "v1", 40, 0));
        produce(
            &p,
            "otlp_spans",
            None,
            &spans_proto(service, "v2", 20, 20 * cand_err_pct / 100),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    flush(&p);
}

fn started(cfg: &std::path::Path, deploy: &str, service: &str) {
    announce_started_with(
        cfg,
        deploy,
        service,
        &["--strategy", "canary", "--label", "team=test"],
    );
}

fn commands_for(got: &[Got], deploy: &str) -> usize {
    got.iter()
        .filter(|g| g.payload["deploy_id"] == deploy)
        .count()
}

/// A rollback script for the executor's template, and the file it appends
/// to: `body` is a shell script in which `{record}` stands for that file.
fn executor_script(tag: &str, body: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = unique_dir(tag);
    let record = dir.join("ran.txt");
    let script = dir.join("rollback.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{}",
            body.replace("{record}", &record.display().to_string())
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, record)
}

/// A manual rollback command of service `web` in `prod`, as JSON.
fn command_json(id: &str, deploy: &str, strategy: Option<&str>) -> String {
    serde_json::json!({
        "schema": "rollbackd.command/v1", "command_id": id, "action": "rollback", "trigger": "manual",
        "deploy_id": deploy, "release_id": null, "service": "web", "environment": "prod",
        "from_version": "v2", "to_version": "v1", "strategy": strategy, "labels": {}, "evidence": {},
        "decided_at": rfc3339_now(), "issued_at": rfc3339_now()
    })
    .to_string()
}

#[test]
fn bad_canary_gets_one_command_and_healthy_none() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-e2e", "");
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    // What an on-call engineer watches: `rollbackd tail`.
    // From the beginning: the topic is new, and a tail that starts at the
    // end could resolve "the end" after the command is written.
    let mut tail = spawn_rollbackd(
        &["tail", "--from-beginning"],
        &cfg,
        std::process::Stdio::piped(),
        std::process::Stdio::null(),
    );
    let rx = stdout_lines(&mut tail);
    started(&cfg, "d-bad", "checkout");
    started(&cfg, "d-good", "search");
    let b = std::thread::scope(|s| {
        s.spawn(|| traffic(&broker, "search", 8.0, 0));
        traffic(&broker, "checkout", 8.0, 10);
        wait_topic(&broker, "rollback-commands", Duration::from_secs(30), |g| {
            commands_for(g, "d-bad") >= 1
        })
    });
    // Give a duplicate time to show up, if there were one.
    std::thread::sleep(Duration::from_secs(2));
    let got = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(
        commands_for(&got, "d-bad"),
        1,
        "{b:?}\n{}",
        agent.log_text()
    );
    assert_eq!(commands_for(&got, "d-good"), 0);
    let c = got
        .iter()
        .find(|g| g.payload["deploy_id"] == "d-bad")
        .unwrap();
    assert_eq!(c.key.as_deref(), Some("checkout"));
    let id = command_id("d-bad", Action::Rollback);
    assert!(
        c.headers.contains(&("command_id".into(), id.clone())),
        "{:?}",
        c.headers
    );
    let p = &c.payload;
    assert_eq!(p["schema"], "rollbackd.command/v1");
    assert_eq!(p["command_id"], id);
    assert_eq!(p["action"], "rollback");
    assert_eq!(p["trigger"], "burn_rate");
    assert_eq!(p["from_version"], "v2");
    assert_eq!(p["to_version"], "v1");
    assert_eq!(p["environment"], "default");
    assert_eq!(p["labels"]["team"], "test");
    assert_eq!(p["evidence"]["sli"], "errors");
    let time = |k: &str| rollbackd::time::Timestamp::parse_rfc3339(p[k].as_str().unwrap()).unwrap();
    assert!(time("issued_at") >= time("decided_at"));
    // The audit topic has the decision and the command.
    let audit = read_topic(&broker, "rollbackd-audit", Duration::from_secs(2));
    assert!(audit
        .iter()
        .any(|a| a.payload["kind"] == "command" && a.payload["deploy_id"] == "d-bad"));
    // /metrics: Prometheus text whose counters moved.
    let (code, text) = agent.get("/metrics");
    assert_eq!(code, 200);
    assert_eq!(
        metric(
            &text,
            r#"rollbackd_commands_total{action="rollback",trigger="burn_rate"}"#
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        metric(&text, r#"rollbackd_decisions_total{verdict="rollback"}"#),
        1.0
    );
    assert!(
        metric(
            &text,
            r#"rollbackd_records_total{outcome="ok",source="otlp_spans"}"#
        ) > 10.0,
        "{text}"
    );
    assert!(metric(&text, "rollbackd_observations_total") > 1000.0);
    assert_eq!(metric(&text, "rollbackd_active_deploys"), 2.0);
    assert_eq!(metric(&text, "rollbackd_ready"), 1.0);
    // Measured when the tick that decided followed a consumed record; the
    // control loop's periodic tick can get there first (then nothing is
    // measured for this command).
    assert!(metric(&text, "rollbackd_decision_latency_seconds_count") <= 1.0);
    assert_eq!(metric(&text, "rollbackd_detection_seconds_count"), 1.0);
    // The on-call summary: states of the active deploys, the worst burn.
    assert_eq!(
        metric(&text, r#"rollbackd_deploys{state="commanded"}"#),
        1.0,
        "{text}"
    );
    assert_eq!(metric(&text, r#"rollbackd_deploys{state="healthy"}"#), 1.0);
    assert!(
        metric(
            &text,
            r#"rollbackd_burn_rate_max{sli="errors",window="5s/20s"}"#
        ) > 14.4,
        "{text}"
    );
    // Consumer lag, from librdkafka's statistics (every 5 s): drained to 0.
    // (-1 until the first statistics.)
    agent.wait_metric(
        "rollbackd_consumer_lag_records",
        0.0,
        Duration::from_secs(15),
    );
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("sample value");
        assert!(name.starts_with("rollbackd_"), "{line}");
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert_eq!(agent.get("/healthz").0, 200);
    assert_eq!(agent.get("/readyz").0, 200);
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("tail printed the command");
    let printed: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(printed["command_id"], id);
    let _ = tail.kill();
    let _ = tail.wait();
}

#[test]
fn otlp_json_histograms_over_kafka() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(
        &broker,
        "g-json",
        "[topics]\notlp_encoding = \"otlp_json\"\n",
    );
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    started(&cfg, "d-hist", "orders");
    started(&cfg, "d-hist-ok", "cart");
    let p = producer(&broker);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(8) {
        produce(
            &p,
            "otlp_metrics",
            None,
            &metrics_json("orders", "v1", 40, 0),
        );
        produce(
            &p,
            "otlp_metrics",
            None,
            &metrics_json("orders", "v2", 18, 2),
        );
        produce(&p, "otlp_metrics", None, &metrics_json("cart", "v1", 40, 0));
        produce(&p, "otlp_metrics", None, &metrics_json("cart", "v2", 20, 0));
        std::thread::sleep(Duration::from_millis(200));
    }
    flush(&p);
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(20), |g| {
        commands_for(g, "d-hist") >= 1
    });
    assert_eq!(commands_for(&got, "d-hist"), 1, "{}", agent.log_text());
    assert_eq!(commands_for(&got, "d-hist-ok"), 0);
    let c = got
        .iter()
        .find(|g| g.payload["deploy_id"] == "d-hist")
        .unwrap();
    assert_eq!(c.payload["evidence"]["source"], "metrics");
}

#[test]
fn kill_9_before_and_after_the_decision_never_repeats_a_command() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-restart", "");
    let mut agent = Agent::start(&cfg);
    agent.wait_ready();
    started(&cfg, "d-r", "pay");
    // Some bad traffic, not yet enough time past the warm-up… then kill -9.
    traffic(&broker, "pay", 1.0, 10);
    agent.kill9();
    let before = read_topic(&broker, "rollback-commands", Duration::from_secs(1));
    agent.restart();
    agent.wait_ready();
    traffic(&broker, "pay", 6.0, 10);
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(20), |g| {
        commands_for(g, "d-r") >= 1
    });
    assert_eq!(
        commands_for(&got, "d-r"),
        1,
        "before kill: {}, log:\n{}",
        before.len(),
        agent.log_text()
    );
    // Now kill -9 after the decision, restart, keep the canary failing.
    agent.kill9();
    agent.restart();
    agent.wait_ready();
    traffic(&broker, "pay", 5.0, 10);
    std::thread::sleep(Duration::from_secs(2));
    let got = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(commands_for(&got, "d-r"), 1, "{}", agent.log_text());
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic_and_change_nothing() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-dlq", "");
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    let p = producer(&broker);
    produce(
        &p,
        "deploy-events",
        Some("x"),
        br#"{"type":"deploy.started","service":"x"}"#,
    );
    produce(&p, "deploy-events", Some("x"), b"not json");
    produce(&p, "otlp_spans", None, b"\x0a\xff\xff\xff\xff\x0f garbage");
    produce(
        &p,
        "otlp_metrics",
        None,
        b"\x0a\xff\xff\xff\xff\x0f metrics",
    );
    produce(&p, "rollback-results", None, br#"{"status":"succeeded"}"#);
    produce(&p, "rollback-commands", Some("x"), b"{}");
    flush(&p);
    let dlq = wait_topic(&broker, "rollbackd-dlq", Duration::from_secs(20), |g| {
        g.len() >= 6
    });
    assert_eq!(dlq.len(), 6, "{}", agent.log_text());
    for g in &dlq {
        let h = |k: &str| {
            g.headers
                .iter()
                .find(|(hk, _)| hk == k)
                .map(|(_, v)| v.clone())
        };
        assert!(
            h("source_topic").is_some() && h("partition").is_some() && h("offset").is_some(),
            "{g:?}"
        );
        assert!(!h("error").unwrap_or_default().is_empty());
    }
    let sources: std::collections::BTreeSet<_> = dlq
        .iter()
        .filter_map(|g| {
            g.headers
                .iter()
                .find(|(k, _)| k == "source_topic")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(sources.len(), 5, "{sources:?}");
    let bad = dlq
        .iter()
        .find(|g| g.raw == b"not json")
        .expect("payload copied as is");
    assert_eq!(bad.key.as_deref(), Some("x"));
    // Still consuming, state unchanged: a real bad canary is decided, and
    // nothing was made of the garbage.
    started(&cfg, "d-after", "mail");
    traffic(&broker, "mail", 6.0, 10);
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(20), |g| {
        commands_for(g, "d-after") >= 1
    });
    assert_eq!(commands_for(&got, "d-after"), 1, "{}", agent.log_text());
    assert_eq!(
        got.iter()
            .filter(|g| g.payload["schema"] == "rollbackd.command/v1")
            .count(),
        1
    );
    let audit = read_topic(&broker, "rollbackd-audit", Duration::from_secs(2));
    assert_eq!(
        audit
            .iter()
            .filter(|a| a.payload["kind"] == "malformed")
            .count(),
        6
    );
    let (_, text) = agent.get("/metrics");
    assert_eq!(metric(&text, "rollbackd_dead_letters_total"), 6.0, "{text}");
    assert_eq!(
        metric(
            &text,
            r#"rollbackd_records_total{outcome="malformed",source="deploy_events"}"#
        ),
        2.0
    );
}

#[test]
fn sigterm_exits_cleanly() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-term", "");
    let mut agent = Agent::start(&cfg);
    agent.wait_ready();
    assert_eq!(agent.terminate(), Some(0), "{}", agent.log_text());
    assert!(agent.log_text().contains("rollbackd stopped"));
}

/// The broker becomes unreachable (frozen: every request times out) and
/// comes back: readiness follows it, nothing is lost, nothing repeated.
#[test]
fn broker_outage_is_survived_without_loss_or_duplicates() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-outage", "");
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    started(&cfg, "d-o", "ledger");
    traffic(&broker, "ledger", 1.0, 0);
    assert_eq!(agent.get("/readyz").0, 200);
    let readies = agent.count_log("rollbackd ready");
    broker.freeze();
    assert!(
        agent.wait_log("rollbackd not ready", Duration::from_secs(30)),
        "readiness did not reflect the outage:\n{}",
        agent.log_text()
    );
    assert_eq!(agent.get("/readyz").0, 503);
    assert_eq!(agent.get("/healthz").0, 200, "alive, though not ready");
    broker.thaw();
    let deadline = Instant::now() + Duration::from_secs(60);
    while agent.count_log("rollbackd ready") == readies && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        agent.count_log("rollbackd ready") > readies,
        "never ready again:\n{}",
        agent.log_text()
    );
    // The deploy announced before the outage is still known: its bad
    // traffic after the outage is decided, once.
    traffic(&broker, "ledger", 6.0, 10);
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(30), |g| {
        commands_for(g, "d-o") >= 1
    });
    std::thread::sleep(Duration::from_secs(2));
    let got2 = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(agent.get("/readyz").0, 200);
    assert_eq!(commands_for(&got, "d-o"), 1, "{}", agent.log_text());
    assert_eq!(commands_for(&got2, "d-o"), 1);
}

#[test]
fn two_instances_share_partitions_and_emit_once() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-pair", "");
    let a = Agent::start(&cfg);
    a.wait_ready();
    let b = Agent::start(&cfg);
    b.wait_ready();
    // Let the group settle: both members hold partitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let last_assigned = |agent: &Agent| -> Option<usize> {
        agent
            .log_text()
            .lines()
            .rev()
            .find(|l| l.contains("partitions assigned") && l.contains(r#"group="intake""#))
            .and_then(|l| l.split("partitions=").nth(1))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    };
    while Instant::now() < deadline {
        if let (Some(x), Some(y)) = (last_assigned(&a), last_assigned(&b)) {
            if x + y == 6 && x > 0 && y > 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        last_assigned(&a).unwrap_or(0) + last_assigned(&b).unwrap_or(0),
        6,
        "each of the 6 telemetry partitions is processed by one instance\nA:\n{}\nB:\n{}",
        a.log_text(),
        b.log_text()
    );
    // A bad canary whose telemetry lands on every partition: both
    // instances see part of it, one command is emitted.
    started(&cfg, "d-pair", "shop");
    // A release: rolling one deploy back by hand takes the other along,
    // and both instances see that event.
    announce(
        &cfg,
        &[
            "started",
            "--deploy-id",
            "d-rel-a",
            "--service",
            "web",
            "--version",
            "v2",
            "--previous-version",
            "v1",
            "--release-id",
            "r-1",
        ],
    );
    announce(
        &cfg,
        &[
            "started",
            "--deploy-id",
            "d-rel-b",
            "--service",
            "api",
            "--version",
            "v2",
            "--previous-version",
            "v1",
            "--release-id",
            "r-1",
        ],
    );
    traffic(&broker, "shop", 8.0, 10);
    announce(
        &cfg,
        &[
            "rolled-back",
            "--deploy-id",
            "d-rel-a",
            "--service",
            "web",
            "--version",
            "v2",
        ],
    );
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(30), |g| {
        commands_for(g, "d-pair") >= 1 && commands_for(g, "d-rel-b") >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let got2 = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    let logs = format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text());
    assert_eq!(commands_for(&got, "d-pair"), 1, "{logs}");
    assert_eq!(commands_for(&got2, "d-pair"), 1, "{logs}");
    assert_eq!(commands_for(&got2, "d-rel-b"), 1, "{logs}");
    assert_eq!(commands_for(&got2, "d-rel-a"), 0);
}

#[test]
fn reference_executor_runs_each_rollback_once_and_reports_back() {
    let _serial = serial();
    let broker = Broker::start();
    let (script, record) = executor_script("exec", "echo \"$@\" >> {record}\n");
    let cfg = agent_config(
        &broker,
        "g-exec",
        &format!(
            "[executor]\ntimeout = \"10s\"\n[executor.templates]\ndefault = [\"{}\", \"{{deploy_id}}\", \"{{to_version}}\", \"{{service}}\"]\n",
            script.display()
        ),
    );
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    let mut executor = spawn_rollbackd(
        &["execute"],
        &cfg,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    started(&cfg, "d-exec", "billing");
    announce(
        &cfg,
        &[
            "started",
            "--deploy-id",
            "d-appr",
            "--service",
            "ledger",
            "--version",
            "v2",
            "--previous-version",
            "v1",
            "--data-migration",
            "irreversible",
        ],
    );
    std::thread::scope(|s| {
        s.spawn(|| traffic(&broker, "ledger", 6.0, 10));
        traffic(&broker, "billing", 6.0, 10);
    });
    let results = wait_topic(&broker, "rollback-results", Duration::from_secs(30), |g| {
        !g.is_empty()
    });
    assert_eq!(results.len(), 1, "{}", agent.log_text());
    let r = &results[0].payload;
    assert_eq!(r["deploy_id"], "d-exec");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["executor"], "rollbackd-executor");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "d-exec v1 billing\n"
    );
    // The approval_required command was left alone.
    let cmds = read_topic(&broker, "rollback-commands", Duration::from_secs(1));
    assert!(cmds
        .iter()
        .any(|c| c.payload["deploy_id"] == "d-appr" && c.payload["action"] == "approval_required"));
    // rollbackd measures time to rollback and watches the restored version.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = agent.get("/metrics");
        // The three move one after another: wait for all of them.
        if metric(&text, "rollbackd_time_to_rollback_seconds_count") == 1.0
            && metric(&text, r#"rollbackd_results_total{status="succeeded"}"#) == 1.0
            // d-exec under verification, d-appr still watched.
            && metric(&text, r#"rollbackd_deploys{state="verifying"}"#) == 1.0
            && metric(&text, "rollbackd_active_deploys") == 2.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Another executor in a new group reads every command again: the
    // results topic tells it what already ran, and it runs nothing twice.
    let _ = executor.kill();
    let _ = executor.wait();
    let cfg2 = cfg.with_file_name("config-other-group.toml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(
        &cfg2,
        text.replace(
            "[executor]\n",
            "[executor]\ngroup_id = \"other-executor\"\n",
        ),
    )
    .unwrap();
    let mut executor = spawn_rollbackd(
        &["execute"],
        &cfg2,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    std::thread::sleep(Duration::from_secs(8));
    let _ = executor.kill();
    let _ = executor.wait();
    assert_eq!(std::fs::read_to_string(&record).unwrap().lines().count(), 1);
    assert_eq!(
        read_topic(&broker, "rollback-results", Duration::from_secs(1)).len(),
        1
    );
}

/// A dry run changes nothing: it publishes no result and commits nothing in
/// the executor's group, so a real executor started afterwards runs every
/// command exactly once — including one the dry run would reject.
#[test]
fn executor_dry_run_changes_nothing_and_the_real_one_runs_every_command_once() {
    let _serial = serial();
    let broker = Broker::start();
    let (script, record) = executor_script("dry", "echo \"$@\" >> {record}\n");
    let cfg = agent_config(
        &broker,
        "g-dry",
        &format!(
            "[executor]\ntimeout = \"10s\"\n[executor.templates]\ncanary = [\"{}\", \"{{deploy_id}}\", \"{{to_version}}\"]\n",
            script.display()
        ),
    );
    let p = producer(&broker);
    // One command a template runs, one no template matches (rejected);
    // produced together (one batch).
    for (id, deploy, strategy) in [("c-1", "d-1", Some("canary")), ("c-2", "d-2", None)] {
        let cmd = command_json(id, deploy, strategy);
        produce(&p, "rollback-commands", Some("web"), cmd.as_bytes());
    }
    flush(&p);
    let dry_run = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(["execute", "--dry-run", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{stderr}");
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (lines, stderr)
    };
    for _ in 0..2 {
        let (lines, stderr) = dry_run();
        assert_eq!(lines.len(), 2, "{lines:?}\n{stderr}");
        assert_eq!(lines[0]["command_id"], "c-1");
        assert_eq!(
            lines[0]["would_run"],
            serde_json::json!([script.display().to_string(), "d-1", "v1"])
        );
        assert_eq!(lines[1]["command_id"], "c-2");
        assert!(lines[1]["would_reject"]
            .as_str()
            .unwrap()
            .contains("no executor template"));
    }
    assert!(!record.exists(), "a dry run runs nothing");
    assert!(read_topic(&broker, "rollback-results", Duration::from_secs(1)).is_empty());

    // The real executor, in the same group: both commands, once each.
    let mut executor = spawn_rollbackd(
        &["execute"],
        &cfg,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    );
    let results = wait_topic(&broker, "rollback-results", Duration::from_secs(60), |g| {
        g.len() >= 2
    });
    let _ = executor.kill();
    let _ = executor.wait();
    let status: Vec<(&str, &str)> = results
        .iter()
        .map(|r| {
            (
                r.payload["command_id"].as_str().unwrap(),
                r.payload["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(status, [("c-1", "succeeded"), ("c-2", "rejected")]);
    assert_eq!(std::fs::read_to_string(&record).unwrap(), "d-1 v1\n");
    // Afterwards the dry run knows both ran (or starts past them).
    let (lines, stderr) = dry_run();
    assert!(
        lines.iter().all(|l| l.get("would_skip").is_some()),
        "{lines:?}\n{stderr}"
    );
}

/// The executor follows the results topic (a result another executor wrote
/// keeps it from running that command), and SIGTERM lets the command in
/// hand finish and its result be published before it exits 0.
#[test]
fn executor_follows_results_and_finishes_the_command_in_hand_on_sigterm() {
    let _serial = serial();
    let broker = Broker::start();
    let (script, record) = executor_script(
        "exec-term",
        "echo \"start $1\" >> {record}\nsleep 2\necho \"done $1\" >> {record}\n",
    );
    let cfg = agent_config(
        &broker,
        "g-exec-term",
        &format!(
            "[executor.templates]\ndefault = [\"{}\", \"{{deploy_id}}\"]\n",
            script.display()
        ),
    );
    let mut executor = spawn_rollbackd(
        &["execute"],
        &cfg,
        std::process::Stdio::null(),
        std::process::Stdio::piped(),
    );
    let log = support::stderr_lines(&mut executor);
    assert!(support::wait_line(
        &log,
        "executor starting",
        Duration::from_secs(30)
    ));
    let p = producer(&broker);
    // Another executor already ran c-other (its result arrives after this
    // one started), then both commands come in.
    let result = serde_json::json!({"command_id": "c-other", "deploy_id": "d-other", "status": "succeeded",
        "at": rfc3339_now(), "executor": "someone-else", "message": ""});
    produce(
        &p,
        "rollback-results",
        Some("web"),
        result.to_string().as_bytes(),
    );
    flush(&p);
    std::thread::sleep(Duration::from_secs(2));
    produce(
        &p,
        "rollback-commands",
        Some("web"),
        command_json("c-other", "d-other", None).as_bytes(),
    );
    produce(
        &p,
        "rollback-commands",
        Some("web"),
        command_json("c-run", "d-run", None).as_bytes(),
    );
    flush(&p);
    let until = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&record).is_ok_and(|t| t.contains("start d-run")) {
        assert!(Instant::now() < until, "the command never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGTERM while the rollback runs.
    let pid = executor.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let until = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = executor.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the executor did not exit");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    assert_eq!(
        std::fs::read_to_string(&record).unwrap(),
        "start d-run\ndone d-run\n",
        "c-other was not run; c-run ran to the end"
    );
    let results = read_topic(&broker, "rollback-results", Duration::from_secs(2));
    let ours: Vec<_> = results
        .iter()
        .filter(|r| r.payload["executor"] == "rollbackd-executor")
        .collect();
    assert_eq!(ours.len(), 1, "{results:?}");
    assert_eq!(ours[0].payload["command_id"], "c-run");
    assert_eq!(ours[0].payload["status"], "succeeded");
}

/// Pause, resume and breaker resets taken on one instance apply to every
/// instance (through the admin topic) and survive restarts.
#[test]
fn admin_actions_apply_to_every_instance_and_survive_restarts() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(
        &broker,
        "g-admin",
        "[guards]\nbreaker_max_rollbacks = 1\ncooldown = \"1s\"\n",
    );
    let env = [("ROLLBACKD_ADMIN_TOKEN", "adm")];
    let mut a = Agent::start_with_env(&cfg, &env);
    let mut b = Agent::start_with_env(&cfg, &env);
    a.wait_ready();
    b.wait_ready();
    let call = |agent: &Agent, path: &str| {
        let (code, body) = http(
            &agent.http_addr(),
            "POST",
            path,
            &[
                ("Authorization", "Bearer adm"),
                ("Content-Type", "application/json"),
            ],
            br#"{"actor": "alice"}"#,
        );
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let wait_metric = |agent: &Agent, name: &str, want: f64| {
        agent.wait_metric(name, want, Duration::from_secs(15))
    };
    // Paused on A: B stops acting too, and a bad canary gets no command.
    assert_eq!(
        call(&a, "/v1/automation/pause")["paused"],
        serde_json::json!(true)
    );
    wait_metric(&b, "rollbackd_automation_paused", 1.0);
    started(&cfg, "d-paused", "shop");
    traffic(&broker, "shop", 6.0, 10);
    std::thread::sleep(Duration::from_secs(3));
    let got = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(commands_for(&got, "d-paused"), 0);
    // B restarts: still paused. Resumed on B: A resumes.
    b.kill9();
    b.restart();
    b.wait_ready();
    wait_metric(&b, "rollbackd_automation_paused", 1.0);
    assert_eq!(
        call(&b, "/v1/automation/resume")["paused"],
        serde_json::json!(false)
    );
    wait_metric(&a, "rollbackd_automation_paused", 0.0);
    // One automatic command opens the breaker (max 1) on both; reset on A
    // closes it on both, and a restart does not reopen it.
    started(&cfg, "d-brk", "cart");
    traffic(&broker, "cart", 8.0, 10);
    wait_topic(&broker, "rollback-commands", Duration::from_secs(30), |g| {
        commands_for(g, "d-brk") >= 1
    });
    wait_metric(&a, "rollbackd_breaker_open", 1.0);
    wait_metric(&b, "rollbackd_breaker_open", 1.0);
    assert_eq!(
        call(&a, "/v1/breaker/reset")["breaker_open"],
        serde_json::json!(false)
    );
    wait_metric(&b, "rollbackd_breaker_open", 0.0);
    // Each call was audited once, by the instance that took it (an audit
    // record is published after the call is answered: wait for it before
    // the kill, which would lose one still in flight).
    let admin_audits = |audit: &[Got]| {
        audit
            .iter()
            .filter(|r| r.payload["kind"] == "pause" || r.payload["kind"] == "breaker")
            .filter(|r| r.payload["detail"]["actor"] == "alice")
            .count()
    };
    wait_topic(&broker, "rollbackd-audit", Duration::from_secs(20), |g| {
        admin_audits(g) >= 3
    });
    a.kill9();
    a.restart();
    a.wait_ready();
    wait_metric(&a, "rollbackd_breaker_open", 0.0);
    let audit = read_topic(&broker, "rollbackd-audit", Duration::from_secs(2));
    assert_eq!(admin_audits(&audit), 3, "{audit:?}");
    let opened = audit
        .iter()
        .filter(|r| r.payload["kind"] == "breaker" && r.payload["detail"]["state"] == "open")
        .count();
    assert_eq!(opened, 1, "the breaker opening is audited once: {audit:?}");
    let records = read_topic(&broker, "rollbackd-admin", Duration::from_secs(1));
    assert_eq!(records.len(), 3);
    assert_eq!(records[0].payload["schema"], "rollbackd.admin/v1");
    assert_eq!(records[0].payload["action"], "pause");
}

/// A control topic created after the agents started (here the admin topic)
/// is found and followed from its beginning.
#[test]
fn control_topic_created_after_start_is_followed() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-late", "[topics]\nadmin = \"late-admin\"\n");
    let env = [("ROLLBACKD_ADMIN_TOKEN", "adm")];
    let a = Agent::start_with_env(&cfg, &env);
    let b = Agent::start_with_env(&cfg, &env);
    a.wait_ready();
    b.wait_ready();
    broker.create_topic("late-admin", 1);
    let (code, body) = http(
        &a.http_addr(),
        "POST",
        "/v1/automation/pause",
        &[("Authorization", "Bearer adm")],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    b.wait_metric("rollbackd_automation_paused", 1.0, Duration::from_secs(30));
    assert!(b.log_text().contains("following new control partitions"));
}

/// Alertmanager's HA pair delivers the same alert to two instances at the
/// same moment, neither of them holding partition 0: they claim one after
/// the other, and one command is emitted.
#[test]
fn an_alert_delivered_to_two_instances_at_once_is_emitted_once() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-trio", "");
    let agents: Vec<Agent> = (0..3).map(|_| Agent::start(&cfg)).collect();
    for a in &agents {
        a.wait_ready();
    }
    started(&cfg, "d-ha", "auth");
    for a in &agents {
        a.wait_metric("rollbackd_active_deploys", 1.0, Duration::from_secs(20));
    }
    let alert =
        serde_json::json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "HighErrorRate", "service": "auth", "severity": "critical"},
        "startsAt": rfc3339_now(), "fingerprint": "ha-1"}]})
        .to_string();
    // Alertmanager's HA pair delivers the same alert to two instances (and
    // one more for good measure): whichever they are, the alert reaches
    // the one owner of (auth, default), which decides once.
    let addrs: Vec<String> = agents.iter().map(|a| a.http_addr()).collect();
    std::thread::scope(|s| {
        for addr in &addrs {
            let alert = &alert;
            s.spawn(move || {
                let (code, body) = http(
                    addr,
                    "POST",
                    "/v1/alerts/alertmanager",
                    &[("Content-Type", "application/json")],
                    alert.as_bytes(),
                );
                assert_eq!(code, 200, "{body}");
            });
        }
    });
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(20), |g| {
        commands_for(g, "d-ha") >= 1
    });
    std::thread::sleep(Duration::from_secs(4));
    let all = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(commands_for(&got, "d-ha"), 1);
    // Counted and audited once, by the instance that emitted it.
    let counted: f64 = agents
        .iter()
        .map(|a| {
            metric(
                &a.get("/metrics").1,
                r#"rollbackd_commands_total{action="rollback",trigger="alert"}"#,
            )
        })
        .sum();
    assert_eq!(counted, 1.0);
    let audits = read_topic(&broker, "rollbackd-audit", Duration::from_secs(2));
    assert_eq!(
        audits
            .iter()
            .filter(|a| a.payload["kind"] == "command" && a.payload["deploy_id"] == "d-ha")
            .count(),
        1
    );
    assert_eq!(commands_for(&all, "d-ha"), 1, "{}", logs(&agents));
}

/// A deploy event POSTed to one instance is written to the deploy-events
/// topic, so every instance knows the deploy, also after a restart; a
/// malformed one is refused and written nowhere.
#[test]
fn deploy_events_over_http_reach_every_instance() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-http-ev", "");
    let env = [("ROLLBACKD_ADMIN_TOKEN", "adm")];
    let a = Agent::start_with_env(&cfg, &env);
    let mut b = Agent::start_with_env(&cfg, &env);
    a.wait_ready();
    b.wait_ready();
    let ev = serde_json::json!({"type": "deploy.started", "deploy_id": "d-web", "service": "web",
        "version": "v2", "previous_version": "v1", "at": rfc3339_now()});
    let post = |body: &[u8]| {
        http(
            &a.http_addr(),
            "POST",
            "/v1/deploy-events",
            &[("Content-Type", "application/json")],
            body,
        )
    };
    let (code, body) = post(ev.to_string().as_bytes());
    assert_eq!(code, 200, "{body}");
    let known = |agent: &Agent| {
        http(
            &agent.http_addr(),
            "GET",
            "/v1/deploys/d-web",
            &[("Authorization", "Bearer adm")],
            b"",
        )
        .0 == 200
    };
    let until = Instant::now() + Duration::from_secs(10);
    while !known(&a) || !known(&b) {
        assert!(Instant::now() < until, "{}", b.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    b.kill9();
    b.restart();
    b.wait_ready();
    assert!(known(&b), "recovered from the deploy-events topic");
    let (code, body) = post(br#"{"type": "deploy.started", "service": "web"}"#);
    assert_eq!(code, 400, "{body}");
    let events = read_topic(&broker, "deploy-events", Duration::from_secs(1));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].key.as_deref(), Some("web"));
    assert_eq!(events[0].payload["deploy_id"], "d-web");
}

/// An OTLP/HTTP request with spans of two services: the instance sent one
/// key's evidence, then answered 503 (the failpoint `http-partial`), and
/// the exporter sends the request again. Each key counts its spans once —
/// before, the key sent first counted them twice.
#[test]
fn an_http_request_sent_again_after_a_503_counts_once() {
    use support::fleet::{candidate_requests, deploy_view, sample};
    let _serial = serial();
    let broker = Broker::start();
    // Windows long enough to hold every request while the test reads them.
    let slo = "[slo]\nwarmup = \"2s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\nwindows = [ { short = \"1m\", long = \"10m\", burn_rate = 14.4 } ]\n";
    let cfg = agent_config_with_slo(&broker, "g-http-again", slo, "");
    let agent = Agent::start_with_env(
        &cfg,
        &[
            ("ROLLBACKD_FAILPOINT", "http-partial"),
            ("ROLLBACKD_ADMIN_TOKEN", "adm"),
        ],
    );
    agent.wait_ready();
    started(&cfg, "d-shop", "shop");
    started(&cfg, "d-cart", "cart");
    let until = Instant::now() + Duration::from_secs(30);
    while deploy_view(&agent, "d-shop").0 != 200 || deploy_view(&agent, "d-cart").0 != 200 {
        assert!(Instant::now() < until, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut body = spans_proto("shop", "v2", 30, 0);
    body.extend(spans_proto("cart", "v2", 30, 0));
    let post = || {
        http(
            &agent.http_addr(),
            "POST",
            "/v1/traces",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        )
    };
    let (code, text) = post();
    assert_eq!(code, 503, "{text}");
    let (code, text) = post();
    assert_eq!(code, 200, "{text}");
    let agents = [&agent];
    let until = Instant::now() + Duration::from_secs(30);
    while candidate_requests(&agents, "d-shop").is_none()
        || candidate_requests(&agents, "d-cart").is_none()
    {
        assert!(Instant::now() < until, "{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Long enough for evidence sent twice to be applied twice.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(candidate_requests(&agents, "d-shop"), Some(30));
    assert_eq!(candidate_requests(&agents, "d-cart"), Some(30));
    assert_eq!(
        sample(&agent, "rollbackd_observations_repeated_total"),
        30.0
    );
}

/// Keys go to the owner of partition hash(key) mod the evidence topic's
/// partition count: partitions added while instances run would make
/// instances started before and after route a key to two owners. An
/// instance that sees the count change ends with an error saying so (its
/// orchestrator starts it again with the new count).
#[test]
fn partitions_added_to_the_evidence_topic_end_the_instance_loudly() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let _serial = serial();
    // tansu 0.6 does not add partitions (CreatePartitions); noida-db does.
    let broker = Broker::noida();
    let cfg = agent_config(&broker, "g-parts", "");
    let mut agent = Agent::start(&cfg);
    agent.wait_ready();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.brokers())
        .create()
        .unwrap();
    let added = block_on(admin.create_partitions(
        &[NewPartitions::new("rollbackd-evidence", 12)],
        &AdminOptions::new(),
    ));
    assert!(
        added.iter().all(|r| r.is_ok()),
        "the broker did not add partitions: {added:?}"
    );
    let status = agent
        .wait_exit(Duration::from_secs(60))
        .expect("the instance went on with the old partition count");
    assert_eq!(status.code(), Some(1), "{}", agent.log_text());
    assert!(
        agent.log_text().contains("now has 12 partitions"),
        "{}",
        agent.log_text()
    );
}

/// Runs an admin request to its answer.
fn block_on<T>(f: impl std::future::Future<Output = rdkafka::error::KafkaResult<T>>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
        .expect("admin request")
}

/// `[deploys] infer`: a new version serving is found by the owner of its
/// key, published on the deploy-events topic for every instance, and
/// judged like an announced deploy — one command for a bad one.
#[test]
fn a_deploy_found_in_the_telemetry_reaches_every_instance_and_gets_one_command() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(
        &broker,
        "g-infer",
        "[deploys]\ninfer = true\ninfer_settle = \"3s\"\n",
    );
    let env = [("ROLLBACKD_ADMIN_TOKEN", "adm")];
    let a = Agent::start_with_env(&cfg, &env);
    a.wait_ready();
    let b = Agent::start_with_env(&cfg, &env);
    b.wait_ready();
    let p = producer(&broker);
    // v1 alone, past the settle time of the owner's first sight.
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        produce(&p, "otlp_spans", None, &spans_proto("shop", "v1", 40, 0));
        std::thread::sleep(Duration::from_millis(200));
    }
    flush(&p);
    // Then v2 beside it, failing 10% of its requests: no deploy event.
    traffic(&broker, "shop", 10.0, 10);
    let id = "inferred:shop:default:v2";
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(30), |g| {
        commands_for(g, id) >= 1
    });
    std::thread::sleep(Duration::from_secs(3));
    let logs = format!("A:\n{}\nB:\n{}", a.log_text(), b.log_text());
    assert_eq!(commands_for(&got, id), 1, "{logs}");
    let again = read_topic(&broker, "rollback-commands", Duration::from_secs(2));
    assert_eq!(commands_for(&again, id), 1, "{logs}");
    assert_eq!(again[0].payload["strategy"], "inferred");
    assert_eq!(again[0].payload["to_version"], "v1");
    let events = read_topic(&broker, "deploy-events", Duration::from_secs(2));
    let started: Vec<_> = events
        .iter()
        .filter(|g| g.payload["deploy_id"] == id && g.payload["type"] == "deploy.started")
        .collect();
    assert_eq!(started.len(), 1, "{logs}");
    assert_eq!(started[0].payload["previous_version"], "v1");
    // Every instance knows the deploy.
    for agent in [&a, &b] {
        let path = format!("/v1/deploys/{id}");
        let auth = [("Authorization", "Bearer adm")];
        let (status, body) = http(&agent.http_addr(), "GET", &path, &auth, b"");
        assert_eq!(status, 200, "{body}\n{logs}");
    }
}

/// The gate answers the same on every instance: the owner shows a healthy
/// canary's pass and publishes it on the admin topic; the other instance,
/// which keeps no windows for it, answers `pass` too.
#[test]
fn the_gate_passes_on_every_instance_once_the_owner_showed_health() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-gate", "");
    let a = Agent::start(&cfg);
    a.wait_ready();
    let b = Agent::start(&cfg);
    b.wait_ready();
    started(&cfg, "d-gate", "shop");
    let verdict = |agent: &Agent| -> String {
        let (status, body) = agent.get("/v1/gate?service=shop&version=v2");
        if status == 404 {
            // Its deploy event not read yet.
            return "unknown".into();
        }
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["verdict"].as_str().unwrap().to_string()
    };
    let until = Instant::now() + Duration::from_secs(90);
    while verdict(&a) != "pass" || verdict(&b) != "pass" {
        assert!(
            Instant::now() < until,
            "A: {} B: {}\nA:\n{}\nB:\n{}",
            verdict(&a),
            verdict(&b),
            a.log_text(),
            b.log_text()
        );
        traffic(&broker, "shop", 1.0, 0);
    }
    // Exactly one gate record for it, and no command.
    let admin = read_topic(&broker, "rollbackd-admin", Duration::from_secs(2));
    let records = admin
        .iter()
        .filter(|g| g.payload["deploy_id"] == "d-gate")
        .count();
    assert_eq!(records, 1);
    let got = read_topic(&broker, "rollback-commands", Duration::from_secs(1));
    assert_eq!(commands_for(&got, "d-gate"), 0);
}
