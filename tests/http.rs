//! The HTTP surface of `run` (CONTRACT §4) with real requests on loopback,
//! the agent consuming a real broker.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

const WEBHOOK: &str = "Bearer hook-secret";
const ADMIN: &str = "Bearer admin-secret";

fn start(extra: &str) -> (Broker, std::path::PathBuf, Agent, String) {
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-http", extra);
    let agent = Agent::start_with_env(
        &cfg,
        &[
            ("ROLLBACKD_WEBHOOK_TOKEN", "hook-secret"),
            ("ROLLBACKD_ADMIN_TOKEN", "admin-secret"),
        ],
    );
    agent.wait_ready();
    let addr = agent.http_addr();
    (broker, cfg, agent, addr)
}

fn post(addr: &str, path: &str, auth: &str, body: &Value) -> (u16, Value) {
    let (code, text) = http(
        addr,
        "POST",
        path,
        &[
            ("Authorization", auth),
            ("Content-Type", "application/json"),
        ],
        body.to_string().as_bytes(),
    );
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn get(addr: &str, path: &str, auth: &str) -> (u16, Value) {
    let (code, text) = http(addr, "GET", path, &[("Authorization", auth)], b"");
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn deploy_event(id: &str, service: &str) -> Value {
    json!({"type": "deploy.started", "deploy_id": id, "service": service, "version": "v2",
           "previous_version": "v1", "at": rfc3339_now()})
}

fn alert(service: &str, fingerprint: &str) -> Value {
    json!({"version": "4", "groupKey": "{}", "status": "firing", "receiver": "rollbackd",
           "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
           "alerts": [{"status": "firing", "labels": {"alertname": "Errors", "service": service, "severity": "critical"},
                       "annotations": {}, "startsAt": rfc3339_now(), "endsAt": "0001-01-01T00:00:00Z",
                       "fingerprint": fingerprint}]})
}

fn commands(broker: &Broker, deploy: &str, min: usize) -> usize {
    wait_topic(broker, "rollback-commands", Duration::from_secs(15), |g| {
        g.iter()
            .filter(|c| c.payload["deploy_id"] == deploy)
            .count()
            >= min
    })
    .iter()
    .filter(|c| c.payload["deploy_id"] == deploy)
    .count()
}

#[test]
fn webhooks_admin_api_and_auth() {
    let _serial = serial();
    let (broker, _cfg, agent, addr) = start("[guards]\nbreaker_max_rollbacks = 1\n");

    // Auth: wrong token 401, missing token 401.
    assert_eq!(
        post(
            &addr,
            "/v1/deploy-events",
            "Bearer nope",
            &deploy_event("d-x", "x")
        )
        .0,
        401
    );
    assert_eq!(http(&addr, "GET", "/v1/deploys", &[], b"").0, 401);
    // Deploy events over HTTP; the admin API lists them.
    assert_eq!(
        post(
            &addr,
            "/v1/deploy-events",
            WEBHOOK,
            &deploy_event("d-1", "auth")
        )
        .0,
        200
    );
    assert_eq!(
        post(
            &addr,
            "/v1/deploy-events",
            WEBHOOK,
            &deploy_event("d-2", "cart")
        )
        .0,
        200
    );
    // An event POSTed with Kafka is answered once read back from the
    // deploy-events topic, or after 5 s regardless: wait for both.
    let until = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (code, list) = get(&addr, "/v1/deploys", ADMIN);
        assert_eq!(code, 200);
        if list.as_array().unwrap().len() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < until, "{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, one) = get(&addr, "/v1/deploys/d-1", ADMIN);
    assert_eq!(code, 200);
    assert_eq!(one["service"], "auth");
    assert!(one["evaluation"]["verdict"].is_string());
    assert_eq!(get(&addr, "/v1/deploys/nope", ADMIN).0, 404);

    // Malformed bodies: 400 with a reason, nothing applied.
    let (code, body) = post(
        &addr,
        "/v1/deploy-events",
        WEBHOOK,
        &json!({"type": "deploy.started", "service": "x"}),
    );
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("deploy_id"),
        "{body}"
    );
    let (code, _) = http(
        &addr,
        "POST",
        "/v1/alerts/alertmanager",
        &[
            ("Authorization", WEBHOOK),
            ("Content-Type", "application/json"),
        ],
        b"{not json",
    );
    assert_eq!(code, 400);
    let (code, _) = http(
        &addr,
        "POST",
        "/v1/traces",
        &[
            ("Authorization", WEBHOOK),
            ("Content-Type", "application/x-protobuf"),
        ],
        b"\x0a\xff\xff\xff\xff\x0f",
    );
    assert_eq!(code, 400);
    // OTLP errors carry a google.rpc.Status in the request's encoding.
    let (code, body) = http(
        &addr,
        "POST",
        "/v1/metrics",
        &[
            ("Authorization", WEBHOOK),
            ("Content-Type", "application/json"),
        ],
        br#"{"resourceMetrics":"x"}"#,
    );
    assert_eq!(code, 400);
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["code"], 3);
    assert!(
        status["message"].as_str().unwrap().contains("OTLP/JSON"),
        "{status}"
    );
    assert_eq!(
        get(&addr, "/v1/deploys", ADMIN).1.as_array().unwrap().len(),
        2
    );
    // Too large: 413.
    let big = vec![b' '; 5 << 20];
    assert_eq!(
        http(
            &addr,
            "POST",
            "/v1/deploy-events",
            &[("Authorization", WEBHOOK)],
            &big
        )
        .0,
        413
    );

    // An alert rolls d-1 back; Alertmanager's HA re-delivery changes nothing.
    let a = alert("auth", "fp-1");
    let (code, body) = post(&addr, "/v1/alerts/alertmanager", WEBHOOK, &a);
    assert_eq!(code, 200);
    assert_eq!(body["accepted"], 1);
    assert_eq!(post(&addr, "/v1/alerts/alertmanager", WEBHOOK, &a).0, 200);
    assert_eq!(commands(&broker, "d-1", 1), 1);

    // The breaker (max 1) is now open: an alert for d-2 is suppressed…
    assert_eq!(
        post(
            &addr,
            "/v1/alerts/alertmanager",
            WEBHOOK,
            &alert("cart", "fp-2")
        )
        .0,
        200
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(commands(&broker, "d-2", 1), 0);
    // …until an operator resets it; the held-back decision then goes out.
    let (code, state) = post(
        &addr,
        "/v1/breaker/reset",
        ADMIN,
        &json!({"actor": "oncall"}),
    );
    assert_eq!(code, 200);
    assert_eq!(state["breaker_open"], false);
    assert_eq!(commands(&broker, "d-2", 1), 1);

    // Pause: no automatic command; resume: the command.
    assert_eq!(post(&addr, "/v1/breaker/reset", ADMIN, &json!({})).0, 200);
    assert_eq!(
        post(
            &addr,
            "/v1/automation/pause",
            ADMIN,
            &json!({"actor": "oncall"})
        )
        .1["paused"],
        true
    );
    assert_eq!(
        post(
            &addr,
            "/v1/deploy-events",
            WEBHOOK,
            &deploy_event("d-3", "mail")
        )
        .0,
        200
    );
    assert_eq!(
        post(
            &addr,
            "/v1/alerts/alertmanager",
            WEBHOOK,
            &alert("mail", "fp-3")
        )
        .0,
        200
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(commands(&broker, "d-3", 1), 0);
    assert_eq!(
        post(
            &addr,
            "/v1/automation/resume",
            ADMIN,
            &json!({"actor": "oncall"})
        )
        .1["paused"],
        false
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while commands(&broker, "d-3", 1) == 0 && Instant::now() < deadline {}
    assert_eq!(commands(&broker, "d-3", 1), 1);

    // Manual rollback: needs reason and actor, bypasses the (open) breaker,
    // never duplicates.
    assert_eq!(
        post(
            &addr,
            "/v1/deploy-events",
            WEBHOOK,
            &deploy_event("d-4", "search")
        )
        .0,
        200
    );
    assert_eq!(
        post(&addr, "/v1/deploys/d-4/rollback", ADMIN, &json!({})).0,
        400
    );
    let (code, body) = post(
        &addr,
        "/v1/deploys/d-4/rollback",
        ADMIN,
        &json!({"reason": "checkout broken", "actor": "alice"}),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        post(
            &addr,
            "/v1/deploys/d-4/rollback",
            ADMIN,
            &json!({"reason": "again", "actor": "alice"})
        )
        .0,
        409
    );
    assert_eq!(
        post(
            &addr,
            "/v1/deploys/nope/rollback",
            ADMIN,
            &json!({"reason": "x", "actor": "y"})
        )
        .0,
        404
    );
    let got = wait_topic(&broker, "rollback-commands", Duration::from_secs(15), |g| {
        g.iter().any(|c| c.payload["deploy_id"] == "d-4")
    });
    let manual: Vec<_> = got
        .iter()
        .filter(|c| c.payload["deploy_id"] == "d-4")
        .collect();
    assert_eq!(manual.len(), 1);
    assert_eq!(manual[0].payload["trigger"], "manual");
    assert_eq!(manual[0].payload["evidence"]["actor"], "alice");

    // The audit endpoint shows the admin calls, newest first.
    let (code, audit) = get(&addr, "/v1/audit?limit=500", ADMIN);
    assert_eq!(code, 200);
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["kind"].as_str())
        .collect();
    for k in [
        "admin",
        "pause",
        "breaker",
        "command",
        "alert",
        "malformed",
        "deploy",
    ] {
        assert!(kinds.contains(&k), "{k} missing in {kinds:?}");
    }
    assert_eq!(
        get(&addr, "/v1/audit?limit=2", ADMIN)
            .1
            .as_array()
            .unwrap()
            .len(),
        2
    );
    drop(agent);
}

#[test]
fn admin_routes_are_forbidden_without_an_admin_token() {
    let _serial = serial();
    let broker = Broker::start();
    let cfg = agent_config(&broker, "g-http-403", "");
    let agent = Agent::start(&cfg);
    agent.wait_ready();
    let addr = agent.http_addr();
    assert_eq!(
        http(
            &addr,
            "GET",
            "/v1/deploys",
            &[("Authorization", ADMIN)],
            b""
        )
        .0,
        403
    );
    assert_eq!(http(&addr, "POST", "/v1/automation/pause", &[], b"").0, 403);
    assert_eq!(http(&addr, "POST", "/v1/maintenance", &[], b"").0, 403);
    assert_eq!(
        http(&addr, "DELETE", "/v1/maintenance/m-1", &[], b"").0,
        403
    );
    // Webhooks are open without a webhook token when the config says so
    // (`http.allow_unauthenticated`, as in every test agent's config).
    let (code, _) = post(&addr, "/v1/deploy-events", "", &deploy_event("d-open", "x"));
    assert_eq!(code, 200);
}
