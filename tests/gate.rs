//! The gate (`GET /v1/gate`, `POST /v1/gate/flagger`) asked the way the
//! controllers ask: the bytes Argo Rollouts' `web` metric provider and
//! Flagger's webhooks send (Go's HTTP client: `User-Agent`,
//! `Accept-Encoding: gzip`, a kept-alive connection), against
//! `rollbackd run` without Kafka.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{http, metric, rfc3339_now, spans_proto, LocalAgent};

const SLO: &str = "[slo]\nwarmup = \"0s\"\nevaluation_interval = \"1s\"\nwindows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n";

fn start() -> LocalAgent {
    LocalAgent::start(
        "",
        SLO,
        &[
            ("ROLLBACKD_WEBHOOK_TOKEN", "hook-secret"),
            ("ROLLBACKD_ADMIN_TOKEN", "admin-secret"),
        ],
    )
}

/// Sends `head` (request line and headers, without the blank line) and
/// `body` as they are, and reads one response by its `Content-Length`,
/// leaving the connection open as Go's client does: (status, JSON body).
fn raw(addr: &str, head: &str, body: &[u8]) -> (u16, Value) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect to the agent");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{head}\r\n\r\n").as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code = status.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut length = 0;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        if line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
        }
    }
    let mut bytes = vec![0; length];
    r.read_exact(&mut bytes).unwrap();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// What the `web` provider sends for a GET metric whose template sets
/// `headers: [{key: Authorization, value: "Bearer {{args.token}}"}]`.
fn argo(addr: &str, query: &str, token: Option<&str>) -> (u16, Value) {
    let auth = token.map_or(String::new(), |t| format!("\r\nAuthorization: Bearer {t}"));
    let head = format!(
        "GET /v1/gate?{query} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1{auth}\r\nAccept-Encoding: gzip"
    );
    raw(addr, &head, b"")
}

/// What Flagger POSTs to a webhook: its `CanaryWebhookPayload`, marshalled
/// by Go (fields in struct order, metadata keys sorted).
fn flagger_body(name: &str, namespace: &str, phase: &str, metadata: &[(&str, &str)]) -> String {
    let meta: serde_json::Map<String, Value> = metadata
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    let mut body = format!(
        r#"{{"name":"{name}","namespace":"{namespace}","phase":"{phase}","checksum":"85d557f47b""#
    );
    if !meta.is_empty() {
        body.push_str(&format!(r#","metadata":{}"#, Value::Object(meta)));
    }
    body.push('}');
    body
}

fn flagger_raw(addr: &str, body: &str, content_type: &str) -> (u16, Value) {
    let head = format!(
        "POST /v1/gate/flagger HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: Go-http-client/1.1\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\nAccept-Encoding: gzip",
        body.len()
    );
    raw(addr, &head, body.as_bytes())
}

/// A Flagger webhook of type `hook` for canary `name` in `namespace`,
/// the token in its metadata.
fn flagger(
    addr: &str,
    hook: &str,
    name: &str,
    namespace: &str,
    more: &[(&str, &str)],
) -> (u16, Value) {
    let mut meta = vec![("type", hook), ("token", "hook-secret")];
    meta.extend_from_slice(more);
    let body = flagger_body(name, namespace, "Progressing", &meta);
    flagger_raw(addr, &body, "application/json")
}

fn post(addr: &str, path: &str, content_type: &str, body: &[u8]) {
    let (code, text) = http(
        addr,
        "POST",
        path,
        &[
            ("Authorization", "Bearer hook-secret"),
            ("Content-Type", content_type),
        ],
        body,
    );
    assert_eq!(code, 200, "{path}: {text}");
}

fn started(addr: &str, id: &str, service: &str, environment: &str) {
    let ev = json!({"type": "deploy.started", "deploy_id": id, "service": service, "version": "v2",
        "previous_version": "v1", "environment": environment, "at": rfc3339_now()});
    post(
        addr,
        "/v1/deploy-events",
        "application/json",
        ev.to_string().as_bytes(),
    );
}

/// Both versions of `service` serve `n` requests, `errors` of the
/// candidate's failing.
fn serve(addr: &str, service: &str, n: usize, errors: usize) {
    post(
        addr,
        "/v1/traces",
        "application/x-protobuf",
        &spans_proto(service, "v1", n, 0),
    );
    post(
        addr,
        "/v1/traces",
        "application/x-protobuf",
        &spans_proto(service, "v2", n, errors),
    );
}

/// A person rolls deploy `id` back (the admin API): its command.
fn roll_back(agent: &LocalAgent, id: &str) -> Value {
    let (code, text) = http(
        &agent.addr,
        "POST",
        &format!("/v1/deploys/{id}/rollback"),
        &[
            ("Authorization", "Bearer admin-secret"),
            ("Content-Type", "application/json"),
        ],
        br#"{"reason": "errors in the canary", "actor": "alice"}"#,
    );
    assert_eq!(code, 200, "{text}");
    agent.command(Duration::from_secs(20))
}

/// Asks the Argo route until the verdict is `want` (the engine evaluates
/// at its next tick).
fn argo_until(addr: &str, query: &str, want: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = argo(addr, query, Some("hook-secret"));
        assert_eq!(code, 200, "{body}");
        if body["verdict"] == want {
            return body;
        }
        assert!(Instant::now() < until, "never {want}: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn argo_rollouts_web_provider_reads_pass_fail_and_wait() {
    let agent = start();
    let addr = agent.addr.as_str();
    let q = "service=web&environment=production&version=v2";

    // Auth first: no token, a wrong one.
    let (code, body) = argo(addr, q, None);
    assert_eq!(
        (code, body["error"].as_str().is_some()),
        (401, true),
        "{body}"
    );
    assert_eq!(argo(addr, q, Some("nope")).0, 401);
    // A deploy nobody announced: 404 (a measurement error to Argo).
    let (code, body) = argo(addr, q, Some("hook-secret"));
    assert_eq!(code, 404);
    assert_eq!(
        body["error"],
        "no active deploy of service web in environment production to version v2"
    );
    // No service: 400.
    let (code, body) = argo(addr, "environment=production", Some("hook-secret"));
    assert_eq!(code, 400);
    assert!(
        body["error"].as_str().unwrap().contains("\"service\""),
        "{body}"
    );

    // Announced, no traffic yet: 200 and wait (neither condition holds:
    // inconclusive, measured again).
    started(addr, "d-web", "web", "production");
    let (code, body) = argo(addr, q, Some("hook-secret"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["verdict"], "wait");
    assert_eq!(body["deploy_id"], "d-web");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("not shown healthy yet"),
        "{body}"
    );

    // Clean traffic on both versions: shown healthy, with the numbers.
    serve(addr, "web", 2000, 0);
    let body = argo_until(addr, q, "pass");
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("shown healthy: errors: 0 of 2000 bad"),
        "{body}"
    );
    let errors = &body["evidence"]["slis"][0];
    assert_eq!(errors["sli"], "errors");
    assert_eq!(errors["candidate"], json!({"requests": 2000, "bad": 0}));
    assert_eq!(errors["below_threshold"]["shown"], true);
    assert_eq!(errors["no_worse_than_baseline"]["shown"], true);
    assert!(body["since"].is_string());
    // Kept: more traffic, the same answer (version optional).
    serve(addr, "web", 100, 0);
    assert_eq!(
        argo(
            addr,
            "service=web&environment=production",
            Some("hook-secret")
        )
        .1["verdict"],
        "pass"
    );

    // Rolled back: fail.
    started(addr, "d-api", "api", "production");
    let cmd = roll_back(&agent, "d-api");
    let body = argo_until(
        addr,
        "service=api&environment=production&version=v2",
        "fail",
    );
    assert_eq!(body["command_id"], cmd["command_id"]);
    assert!(
        body["reason"]
            .as_str()
            .unwrap()
            .starts_with("rollback decided: by alice: errors in the canary"),
        "{body}"
    );

    let (_, text) = http(addr, "GET", "/metrics", &[], b"");
    assert!(
        metric(
            &text,
            "rollbackd_gate_answers_total{route=\"argo\",verdict=\"pass\"}"
        ) >= 2.0,
        "{text}"
    );
    assert!(
        metric(
            &text,
            "rollbackd_gate_answers_total{route=\"argo\",verdict=\"fail\"}"
        ) >= 1.0
    );
}

#[test]
fn flagger_webhooks_go_by_type() {
    let agent = start();
    let addr = agent.addr.as_str();
    // The Canary podinfo in namespace test, its service and environment
    // given in the webhook's metadata; the canary "api" named like its
    // service, its namespace the environment.
    started(addr, "d-web", "web", "production");
    started(addr, "d-api", "api", "test");
    let web: &[(&str, &str)] = &[
        ("service", "web"),
        ("environment", "production"),
        ("version", "v2"),
    ];

    // Auth: the token in metadata (Flagger sends no headers of its own),
    // or a bearer header; missing or wrong: 401, whatever the body.
    let no_token = flagger_body("podinfo", "test", "Progressing", &[("type", "rollout")]);
    assert_eq!(flagger_raw(addr, &no_token, "application/json").0, 401);
    let wrong = flagger_body(
        "podinfo",
        "test",
        "Progressing",
        &[("type", "rollout"), ("token", "nope")],
    );
    assert_eq!(flagger_raw(addr, &wrong, "application/json").0, 401);
    assert_eq!(flagger_raw(addr, "not json", "application/json").0, 401);
    let (code, _) = http(
        addr,
        "POST",
        "/v1/gate/flagger",
        &[
            ("Authorization", "Bearer hook-secret"),
            ("Content-Type", "application/json"),
        ],
        flagger_body("api", "test", "Progressing", &[("type", "rollout")]).as_bytes(),
    );
    assert_eq!(code, 200);

    // Bad payloads, with the token: clear 400s and 415.
    let (code, body) = flagger(addr, "event", "podinfo", "test", web);
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"event\" is not a gate"),
        "{body}"
    );
    let untyped = flagger_body(
        "podinfo",
        "test",
        "Progressing",
        &[("token", "hook-secret")],
    );
    let (code, body) = flagger_raw(addr, &untyped, "application/json");
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("metadata.type must name"),
        "{body}"
    );
    let (code, body) = flagger_raw(
        addr,
        r#"{"metadata":{"token":"hook-secret","type":"rollout"}}"#,
        "application/json",
    );
    assert_eq!(code, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("invalid Flagger webhook payload"),
        "{body}"
    );
    assert_eq!(flagger_raw(addr, &untyped, "text/plain").0, 415);
    let (code, body) = flagger(addr, "rollout", "podinfo", "staging", &[]);
    assert_eq!(code, 404);
    assert_eq!(
        body["error"],
        "no active deploy of service podinfo in environment staging"
    );

    // Wait: promotion held (non-2xx, Flagger asks again), the analysis
    // goes on (2xx: no failed check), no rollback.
    for (hook, code) in [
        ("confirm-rollout", 200),
        ("pre-rollout", 200),
        ("confirm-traffic-increase", 200),
        ("rollout", 200),
        ("confirm-promotion", 412),
        ("rollback", 412),
    ] {
        let (got, body) = flagger(addr, hook, "podinfo", "test", web);
        assert_eq!(got, code, "{hook}: {body}");
        assert_eq!(body["verdict"], "wait", "{hook}");
        assert_eq!(body["hook"], hook);
        assert_eq!(body["go"], code == 200);
    }

    // Pass: promoted.
    serve(addr, "web", 2000, 0);
    argo_until(addr, "service=web&environment=production", "pass");
    let (code, body) = flagger(addr, "confirm-promotion", "podinfo", "test", web);
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["verdict"], "pass");
    assert_eq!(flagger(addr, "rollback", "podinfo", "test", web).0, 412);

    // Fail: every step fails the canary, the rollback hook rolls it back.
    roll_back(&agent, "d-api");
    argo_until(addr, "service=api&environment=test", "fail");
    for (hook, code) in [
        ("confirm-rollout", 412),
        ("pre-rollout", 412),
        ("confirm-traffic-increase", 412),
        ("rollout", 412),
        ("confirm-promotion", 412),
        ("rollback", 200),
    ] {
        // Name and namespace stand for service and environment.
        let (got, body) = flagger(addr, hook, "api", "test", &[]);
        assert_eq!(got, code, "{hook}: {body}");
        assert_eq!(body["verdict"], "fail");
        assert_eq!(body["deploy_id"], "d-api");
    }
    let (_, text) = http(addr, "GET", "/metrics", &[], b"");
    assert!(
        metric(
            &text,
            "rollbackd_gate_answers_total{route=\"flagger\",verdict=\"wait\"}"
        ) >= 6.0
    );
}
