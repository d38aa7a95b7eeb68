//! Maintenance windows opened and closed through the admin API of `run`
//! (without Kafka: commands on stdout, audit to a file): auth, the body's
//! checks, automatic commands held back and audited, manual rollbacks
//! through a window, the status, and closing.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{http, rfc3339_now, LocalAgent};

const ADMIN: &str = "Bearer admin-secret";

/// A request with `body` as JSON (none for `null`).
fn call(agent: &LocalAgent, method: &str, path: &str, auth: &str, body: &Value) -> (u16, Value) {
    let bytes = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let (code, text) = http(
        &agent.addr,
        method,
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        &bytes,
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn alert(agent: &LocalAgent, service: &str, fingerprint: &str) {
    let body = json!({"version": "4", "groupKey": "{}", "status": "firing", "receiver": "rollbackd",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
        "alerts": [{"status": "firing", "labels": {"alertname": "Errors", "service": service, "severity": "critical"},
                    "annotations": {}, "startsAt": rfc3339_now(), "endsAt": "0001-01-01T00:00:00Z",
                    "fingerprint": fingerprint}]});
    assert_eq!(
        call(agent, "POST", "/v1/alerts/alertmanager", "", &body).0,
        200
    );
}

/// The audit records of `kind` in the agent's audit file, waiting up to
/// 10 s for at least `min`.
fn audit(agent: &LocalAgent, kind: &str, min: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let records: Vec<Value> = std::fs::read_to_string(&agent.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|r| r["kind"] == kind)
            .collect();
        if records.len() >= min || Instant::now() > deadline {
            return records;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn windows_opened_and_closed_through_the_admin_api() {
    let agent = LocalAgent::start("", "", &[("ROLLBACKD_ADMIN_TOKEN", "admin-secret")]);
    let web = json!({"services": ["web"], "duration": "1h", "reason": "database failover", "actor": "alice"});

    // Auth and the body's checks: nothing opens.
    assert_eq!(call(&agent, "POST", "/v1/maintenance", "", &web).0, 401);
    assert_eq!(
        call(&agent, "POST", "/v1/maintenance", "Bearer nope", &web).0,
        401
    );
    let (code, text) = http(
        &agent.addr,
        "POST",
        "/v1/maintenance",
        &[("Authorization", ADMIN), ("Content-Type", "text/plain")],
        web.to_string().as_bytes(),
    );
    assert_eq!(code, 415, "{text}");
    for (body, why) in [
        (json!({"services": ["web"], "duration": "1h"}), "reason"),
        (
            json!({"duration": "1h", "reason": "x", "until": "2030-01-01T00:00:00Z"}),
            "one of",
        ),
        (json!({"reason": "x"}), "one of"),
        (
            json!({"until": "2020-01-01T00:00:00Z", "reason": "x"}),
            "future",
        ),
        (json!({"duration": "30d", "reason": "x"}), "7 days"),
        (
            json!({"duration": "1h", "reason": "x", "services": [""]}),
            "empty",
        ),
        (
            json!({"duration": "1h", "reason": "x", "service": "web"}),
            "unknown field",
        ),
    ] {
        let (code, answer) = call(&agent, "POST", "/v1/maintenance", ADMIN, &body);
        assert_eq!(code, 400, "{body}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains(why), "{body}: {error}");
    }
    let (_, status) = call(&agent, "GET", "/v1/status", ADMIN, &Value::Null);
    assert_eq!(status["automation"]["maintenance"], json!([]));

    // Open for web: its automatic command is held back and audited.
    let (code, opened) = call(&agent, "POST", "/v1/maintenance", ADMIN, &web);
    assert_eq!(code, 200, "{opened}");
    let id = opened["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("m-"), "{id}");
    assert_eq!(opened["maintenance"][0]["name"], id.as_str());
    assert_eq!(opened["maintenance"][0]["source"], "admin");
    assert_eq!(opened["maintenance"][0]["actor"], "alice");
    let (_, status) = call(&agent, "GET", "/v1/status", ADMIN, &Value::Null);
    assert_eq!(status["automation"]["maintenance"][0]["name"], id.as_str());
    assert_eq!(
        status["automation"]["maintenance"][0]["reason"],
        "database failover"
    );
    let opens = audit(&agent, "maintenance", 1);
    assert_eq!(opens[0]["detail"]["state"], "open");
    assert_eq!(opens[0]["detail"]["id"], id.as_str());
    support::post_started(&agent.addr, "d-1", "web", json!({}));
    alert(&agent, "web", "fp-1");
    let held = audit(&agent, "suppressed", 1);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["deploy_id"], "d-1");
    assert_eq!(held[0]["detail"]["reason"], "maintenance");
    assert_eq!(held[0]["detail"]["detail"]["window"], id.as_str());

    // A manual rollback goes through a window for every service.
    let all = json!({"duration": "10m", "reason": "patching"});
    let (code, second) = call(&agent, "POST", "/v1/maintenance", ADMIN, &all);
    assert_eq!(code, 200);
    let second = second["id"].as_str().unwrap().to_string();
    assert_ne!(second, id);
    support::post_started(&agent.addr, "d-2", "mail", json!({}));
    let (code, answer) = call(
        &agent,
        "POST",
        "/v1/deploys/d-2/rollback",
        ADMIN,
        &json!({"reason": "users report errors", "actor": "bob"}),
    );
    assert_eq!(code, 200, "{answer}");
    let first = agent.command(Duration::from_secs(10));
    assert_eq!(first["deploy_id"], "d-2", "nothing of d-1 went out");
    assert_eq!(first["trigger"], "manual");

    // Closed: gone from the status; web's next alert rolls d-1 back.
    for w in [&id, &second] {
        let (code, answer) = call(
            &agent,
            "DELETE",
            &format!("/v1/maintenance/{w}"),
            ADMIN,
            &json!({"actor": "alice"}),
        );
        assert_eq!(code, 200, "{answer}");
    }
    let (code, answer) = call(
        &agent,
        "DELETE",
        &format!("/v1/maintenance/{id}"),
        ADMIN,
        &Value::Null,
    );
    assert_eq!(code, 404, "{answer}");
    assert_eq!(
        call(&agent, "DELETE", "/v1/maintenance/m-0", "", &Value::Null).0,
        401
    );
    let closes = audit(&agent, "maintenance", 4);
    assert_eq!(closes.len(), 4, "two opens, two closes: {closes:?}");
    assert_eq!(closes[2]["detail"]["state"], "closed");
    assert_eq!(closes[2]["detail"]["actor"], "alice");
    let (_, status) = call(&agent, "GET", "/v1/status", ADMIN, &Value::Null);
    assert_eq!(status["automation"]["maintenance"], json!([]));
    alert(&agent, "web", "fp-2");
    let next = agent.command(Duration::from_secs(10));
    assert_eq!(next["deploy_id"], "d-1");
    assert_eq!(next["trigger"], "alert");
}

/// With Kafka: the window is an admin record (key `maintenance`) that an
/// instance started later applies too.
#[test]
fn a_window_is_an_admin_record_every_instance_applies() {
    let _serial = support::serial();
    let broker = support::Broker::start();
    let cfg = support::agent_config(&broker, "g-maintenance", "");
    let env = [("ROLLBACKD_ADMIN_TOKEN", "admin-secret")];
    let mut agent = support::Agent::start_with_env(&cfg, &env);
    agent.wait_ready();
    let body = json!({"services": ["web"], "duration": "1h", "reason": "failover"});
    let (code, text) = http(
        &agent.http_addr(),
        "POST",
        "/v1/maintenance",
        &[
            ("Authorization", ADMIN),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{text}");
    let id = serde_json::from_str::<Value>(&text).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let records = support::wait_topic(&broker, "rollbackd-admin", Duration::from_secs(15), |r| {
        !r.is_empty()
    });
    assert_eq!(records[0].key.as_deref(), Some("maintenance"));
    assert_eq!(records[0].payload["action"], "maintenance_open");
    assert_eq!(records[0].payload["maintenance"]["id"], id.as_str());
    // Started again, it reads the admin topic back: the window holds.
    agent.restart();
    agent.wait_ready();
    let (_, text) = http(
        &agent.http_addr(),
        "GET",
        "/v1/status",
        &[("Authorization", ADMIN)],
        b"",
    );
    let status: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(status["automation"]["maintenance"][0]["name"], id.as_str());
}
