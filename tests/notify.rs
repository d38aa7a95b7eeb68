//! `[[notify]]`: Slack-format and signed webhook notifications reach a
//! real HTTP receiver on loopback — through its failures, without holding
//! up a decision when it hangs, and once per event across restarts.

mod support;

use std::process::Command;
use std::time::Duration;

use rollbackd::model::hex;
use rollbackd::sinks::notify::hmac::hmac_sha256;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::*;

fn start_local(notify: &str, env: &[(&str, &str)]) -> LocalAgent {
    LocalAgent::start(
        "",
        &format!("[guards]\nbreaker_max_rollbacks = 10\n{notify}"),
        env,
    )
}

fn started(addr: &str, id: &str, service: &str, migration: &str) {
    post_started(
        addr,
        id,
        service,
        json!({"environment": "production", "data_migration": migration}),
    );
}

/// A critical alert for `service`: an immediate decision.
fn alert(addr: &str, service: &str) {
    let alert = json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "Errors", "service": service, "severity": "critical"},
        "startsAt": rfc3339_now(), "fingerprint": format!("fp-{service}")}]});
    post_ok(
        addr,
        "/v1/alerts/alertmanager",
        &[("Content-Type", "application/json")],
        alert.to_string().as_bytes(),
    );
}

fn command(l: &LocalAgent) -> Value {
    l.command(Duration::from_secs(15))
}

fn metrics(addr: &str) -> String {
    http(addr, "GET", "/metrics", &[], b"").1
}

#[test]
fn slack_and_signed_webhooks_arrive_through_failures() {
    let _serial = serial();
    let slack = Receiver::start(0);
    let hook = Receiver::start(2);
    let l = start_local(
        &format!(
            r#"
[[notify]]
kind = "slack"
name = "team-slack"
url_env = "TEST_SLACK_URL"
events = ["command", "approval_required"]
backoff = "50ms"

[[notify]]
kind = "webhook"
name = "hook"
url = "{}"
secret_env = "TEST_HOOK_SECRET"
events = ["approval_required", "command"]
backoff = "50ms"
api_url = "https://rollbackd.example/"
"#,
            hook.url
        ),
        &[
            ("TEST_SLACK_URL", &slack.url),
            ("TEST_HOOK_SECRET", "s3cret"),
        ],
    );
    started(&l.addr, "d-mig", "billing", "irreversible");
    alert(&l.addr, "billing");
    assert_eq!(command(&l)["action"], "approval_required");
    started(&l.addr, "d-bad", "checkout", "none");
    alert(&l.addr, "checkout");
    assert_eq!(command(&l)["action"], "rollback");

    // The webhook: two 503s, retried, then both events, in order, each
    // the audit record as it is, signed, with its id.
    let got = hook.wait(Duration::from_secs(20), |r| {
        r.iter().filter(|r| r.ok()).count() == 2
    });
    assert_eq!(got.len(), 4, "{got:#?}");
    assert_eq!(got.iter().filter(|r| r.status == 503).count(), 2);
    let first_id = got[0].header("X-Rollbackd-Event-Id").unwrap();
    assert!(
        got[..3]
            .iter()
            .all(|r| r.header("X-Rollbackd-Event-Id") == Some(first_id)),
        "retries carry the same event id"
    );
    for r in got.iter().filter(|r| r.ok()) {
        let expected = format!("sha256={}", hex(&hmac_sha256(b"s3cret", &r.body)));
        assert_eq!(r.header("X-Rollbackd-Signature"), Some(expected.as_str()));
        assert_eq!(
            r.header("X-Rollbackd-Event-Id").unwrap(),
            hex(&Sha256::digest(&r.body)[..16])
        );
        let record = r.json();
        assert_eq!(record["schema"], "rollbackd.audit/v1");
        assert_eq!(record["kind"], "command");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    let approval = &got[2];
    assert_eq!(
        approval.header("X-Rollbackd-Event"),
        Some("approval_required")
    );
    assert_eq!(
        approval.header("X-Rollbackd-Approve-Url"),
        Some("https://rollbackd.example/v1/deploys/d-mig/rollback")
    );
    assert_eq!(approval.json()["deploy_id"], "d-mig");
    assert_eq!(got[3].header("X-Rollbackd-Event"), Some("command"));

    // Slack: blocks, with how to approve.
    let msgs = slack.wait(Duration::from_secs(10), |r| r.len() == 2);
    let approve = msgs[0].json();
    assert_eq!(
        approve["text"],
        "Approval required: roll back billing v2 → v1 in production?"
    );
    let text = approve["blocks"].to_string();
    assert!(
        text.contains("Authorization: Bearer $ROLLBACKD_ADMIN_TOKEN"),
        "{text}"
    );
    assert!(text.contains("/v1/deploys/d-mig/rollback"), "{text}");
    assert!(text.contains("*Service*\\nbilling"), "{text}");
    let rollback = msgs[1].json();
    assert_eq!(
        rollback["text"],
        "Rolling back checkout v2 → v1 in production"
    );
    assert_eq!(rollback["blocks"][0]["type"], "header");

    let m = metrics(&l.addr);
    for (sample, want) in [
        (
            r#"rollbackd_notifications_total{outcome="delivered",sink="hook"}"#,
            2.0,
        ),
        (
            r#"rollbackd_notifications_total{outcome="delivered",sink="team-slack"}"#,
            2.0,
        ),
        (r#"rollbackd_notification_retries_total{sink="hook"}"#, 2.0),
        (
            r#"rollbackd_notifications_total{outcome="dropped",sink="hook"}"#,
            0.0,
        ),
    ] {
        assert_eq!(metric(&m, sample), want, "{sample}");
    }
}

#[test]
fn a_hung_receiver_delays_no_decision_and_overflow_is_audited() {
    let _serial = serial();
    let slack = Receiver::start(0);
    slack.hold(true);
    let l = start_local(
        &format!(
            "[[notify]]\nkind = \"slack\"\nname = \"slow\"\nurl = \"{}\"\nevents = [\"command\"]\nqueue = 1\ntimeout = \"60s\"\n",
            slack.url
        ),
        &[],
    );
    // The first notification is in the receiver's hands (unanswered)…
    started(&l.addr, "d-a", "svc-a", "none");
    alert(&l.addr, "svc-a");
    assert_eq!(command(&l)["deploy_id"], "d-a");
    slack.wait_arrived(1, Duration::from_secs(10));
    // …the next waits in the queue of one, the third overflows: neither
    // holds up its decision.
    for svc in ["b", "c"] {
        started(&l.addr, &format!("d-{svc}"), &format!("svc-{svc}"), "none");
        alert(&l.addr, &format!("svc-{svc}"));
        assert_eq!(command(&l)["deploy_id"], format!("d-{svc}"));
    }
    assert_eq!(
        slack.arrived(),
        1,
        "the receiver is still holding the first"
    );
    let dropped = r#"rollbackd_notifications_total{outcome="dropped",sink="slow"}"#;
    assert_eq!(metric(&metrics(&l.addr), dropped), 1.0);
    // The overflow is audited (with the next batch).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let audited = loop {
        let audit = std::fs::read_to_string(&l.audit).unwrap_or_default();
        if let Some(line) = audit
            .lines()
            .find(|a| a.contains("\"kind\":\"notification\""))
        {
            break serde_json::from_str::<Value>(line).unwrap();
        }
        assert!(std::time::Instant::now() < deadline, "{audit}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(audited["detail"]["outcome"], "dropped");
    assert_eq!(audited["detail"]["sink"], "slow");
    assert_eq!(audited["detail"]["event"], "command");
    // Released, the receiver gets the two it could hold.
    slack.hold(false);
    let got = slack.wait(Duration::from_secs(10), |r| r.len() == 2);
    assert!(got[0].json()["text"].as_str().unwrap().contains("svc-a"));
    assert!(got[1].json()["text"].as_str().unwrap().contains("svc-b"));
}

#[test]
fn a_missing_url_env_is_a_config_error() {
    let dir = unique_dir("notify-env");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n[[notify]]\nkind = \"slack\"\nurl_env = \"ROLLBACKD_TEST_UNSET_URL\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("ROLLBACKD_TEST_UNSET_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("notify[0].url_env: environment variable ROLLBACKD_TEST_UNSET_URL is not set"),
        "{err}"
    );
}

/// With Kafka the notify consumer reads the committed audit topic: two
/// instances, a restart of both, and each event still arrives once.
#[test]
fn each_event_is_notified_once_across_instances_and_restarts() {
    let _serial = serial();
    let broker = Broker::noida();
    let hook = Receiver::start(0);
    let cfg = agent_config(
        &broker,
        "g-notify",
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"hook\"\nurl = \"{}\"\nevents = [\"command\"]\n",
            hook.url
        ),
    );
    let mut a = Agent::start_with_env(&cfg, &[(INSTANCE_ENV, "a")]);
    let mut b = Agent::start_with_env(&cfg, &[(INSTANCE_ENV, "b")]);
    a.wait_ready();
    b.wait_ready();
    let delivered = |got: &[Received]| -> Vec<String> {
        got.iter()
            .filter(|r| r.ok())
            .map(|r| r.json()["deploy_id"].as_str().unwrap().to_string())
            .collect()
    };
    announce_started(&cfg, "d-1", "svc-1");
    std::thread::sleep(Duration::from_secs(1));
    alert(&a.http_addr(), "svc-1");
    hook.wait(Duration::from_secs(60), |r| delivered(r).len() == 1);

    // Stopped (SIGTERM: what is delivered is committed) and started again.
    for agent in [&mut a, &mut b] {
        assert_eq!(agent.terminate(), Some(0));
        agent.restart();
    }
    a.wait_ready();
    b.wait_ready();
    announce_started(&cfg, "d-2", "svc-2");
    std::thread::sleep(Duration::from_secs(1));
    alert(&b.http_addr(), "svc-2");
    let got = hook.wait(Duration::from_secs(60), |r| delivered(r).len() >= 2);
    // The audit topic has one partition: whoever holds it read past d-1's
    // record before it reached d-2's.
    assert_eq!(delivered(&got), ["d-1", "d-2"], "{}", logs([&a, &b]));
    let ids: std::collections::BTreeSet<_> = got
        .iter()
        .map(|r| r.header("X-Rollbackd-Event-Id").unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2);

    // `tail --follow-audit` shows the same decisions, in words or as JSON.
    let cfg = cfg.to_str().unwrap();
    let tail = |extra: &[&str]| -> String {
        let args = [
            "tail",
            "--config",
            cfg,
            "--follow-audit",
            "--from-beginning",
            "--limit",
            "2",
        ];
        rollbackd_ok(&[&args[..], extra].concat())
    };
    let human = tail(&[]);
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(lines.len(), 2, "{human}");
    assert!(
        lines[0].contains("  command  ") && lines[0].contains("Rolling back svc-1 v2 → v1"),
        "{human}"
    );
    let json = tail(&["--json"]);
    let records: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len(), 2, "{json}");
    assert!(records.iter().all(|r| r["schema"] == "rollbackd.audit/v1"));
    assert_eq!(records[0]["kind"], "command");
    assert_eq!(records[0]["deploy_id"], "d-1");
}

/// Grafana's annotation API as its documentation gives it: `POST
/// /api/annotations`, a service account's bearer token, JSON with `time`
/// in epoch milliseconds, `tags` and `text` (and `dashboardUID`).
#[test]
fn grafana_annotations_mark_the_deploy_and_the_rollback_through_failures() {
    let _serial = serial();
    let grafana = Receiver::start(1);
    let base = grafana.url.trim_end_matches("/hook").to_string();
    // Deploy events' times may be whole seconds.
    let before = now_ns() / 1_000_000 - 1_000;
    let l = start_local(
        &format!(
            "[[notify]]\nkind = \"grafana\"\nurl = \"{base}/\"\ntoken_env = \"TEST_GRAFANA_TOKEN\"\ndashboard_uid = \"rollouts\"\nbackoff = \"50ms\"\n"
        ),
        &[("TEST_GRAFANA_TOKEN", "glsa_test")],
    );
    started(&l.addr, "d-bad", "checkout", "none");
    alert(&l.addr, "checkout");
    assert_eq!(command(&l)["action"], "rollback");

    // The deploy (refused once with a 503, then sent again as it was) and
    // the rollback, in order.
    let got = grafana.wait(Duration::from_secs(20), |r| {
        r.iter().filter(|r| r.ok()).count() == 2
    });
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(got[0].status, 503);
    assert_eq!(got[0].body, got[1].body, "the retry is the same annotation");
    let after = now_ns() / 1_000_000;
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/annotations");
        assert_eq!(r.header("Authorization"), Some("Bearer glsa_test"));
        assert_eq!(r.header("Content-Type"), Some("application/json"));
        let a = r.json();
        let time = a["time"].as_u64().expect("time in epoch milliseconds");
        assert!((before..=after).contains(&time), "{a}");
        assert!(a.get("timeEnd").is_none(), "{a}");
        assert_eq!(a["dashboardUID"], "rollouts");
        let tags = a["tags"].as_array().unwrap();
        for t in [
            "rollbackd",
            "service:checkout",
            "environment:production",
            "deploy_id:d-bad",
        ] {
            assert!(tags.contains(&json!(t)), "{t}: {a}");
        }
    }
    let deploy = got[1].json();
    assert!(deploy["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("event:deploy")));
    assert!(
        deploy["text"]
            .as_str()
            .unwrap()
            .starts_with("checkout: deploy d-bad started (v1 → v2 in production)"),
        "{deploy}"
    );
    let rollback = got[2].json();
    assert!(rollback["tags"]
        .as_array()
        .unwrap()
        .contains(&json!("event:command")));
    assert_eq!(
        rollback["text"],
        "Rolling back checkout v2 → v1 in production"
    );
    assert_ne!(
        got[1].header("X-Rollbackd-Event-Id"),
        got[2].header("X-Rollbackd-Event-Id")
    );
    let m = metrics(&l.addr);
    let delivered = r#"rollbackd_notifications_total{outcome="delivered",sink="grafana-0"}"#;
    assert_eq!(metric(&m, delivered), 2.0);
    assert_eq!(
        metric(
            &m,
            r#"rollbackd_notification_retries_total{sink="grafana-0"}"#
        ),
        1.0
    );
}
