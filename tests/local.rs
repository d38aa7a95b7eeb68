//! `rollbackd run` without Kafka: HTTP in (OTLP/HTTP, deploy events,
//! Alertmanager), commands as JSON lines on stdout, audit to a file.

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{
    http, http_addr_from_stderr, metric, rfc3339_now, spans_proto, stdout_lines, LocalAgent,
};

const SLO: &str = "[slo]\nwarmup = \"1s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\nwindows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n";

fn start() -> LocalAgent {
    start_with_env(&[])
}

fn start_with_env(env: &[(&str, &str)]) -> LocalAgent {
    LocalAgent::start("", SLO, env)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn started(addr: &str, id: &str, service: &str) {
    started_in(addr, id, service, "default");
}

fn started_in(addr: &str, id: &str, service: &str, environment: &str) {
    support::post_started(addr, id, service, json!({ "environment": environment }));
}

#[test]
fn otlp_http_protobuf_bad_canary_prints_one_command() {
    let _serial = support::serial();
    let l = start();
    started(&l.addr, "d-proto", "checkout");
    started(&l.addr, "d-fine", "search");
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for (svc, errs) in [("checkout", 3), ("search", 0)] {
            for (v, n, e) in [("v1", 40, 0), ("v2", 20, errs)] {
                let body = gzip(&spans_proto(svc, v, n, e));
                let (code, _) = http(
                    &l.addr,
                    "POST",
                    "/v1/traces",
                    &[
                        ("Content-Type", "application/x-protobuf"),
                        ("Content-Encoding", "gzip"),
                    ],
                    &body,
                );
                assert_eq!(code, 200);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let line = l
        .stdout
        .recv_timeout(Duration::from_secs(10))
        .expect("a command on stdout");
    let c: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(c["deploy_id"], "d-proto");
    assert_eq!(c["trigger"], "burn_rate");
    assert!(
        l.stdout.recv_timeout(Duration::from_secs(2)).is_err(),
        "one command only"
    );
    let (_, text) = http(&l.addr, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric(
            &text,
            r#"rollbackd_commands_total{action="rollback",trigger="burn_rate"}"#
        ),
        1.0
    );
    let audit = std::fs::read_to_string(&l.audit).unwrap();
    assert!(
        audit.lines().any(|a| a.contains("\"kind\":\"command\"")),
        "{audit}"
    );
}

#[test]
fn otlp_http_json_and_alerts_and_sigterm() {
    let _serial = support::serial();
    let mut l = start();
    started(&l.addr, "d-json", "orders");
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        for (v, ok, err) in [("v1", 40u64, 0u64), ("v2", 18, 2)] {
            let body = support::metrics_json("orders", v, ok, err);
            let (code, resp) = http(
                &l.addr,
                "POST",
                "/v1/metrics",
                &[("Content-Type", "application/json")],
                &body,
            );
            assert_eq!((code, resp.as_str()), (200, "{}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let c: Value = serde_json::from_str(
        &l.stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("command"),
    )
    .unwrap();
    assert_eq!(c["deploy_id"], "d-json");
    assert_eq!(c["evidence"]["source"], "metrics");
    // Unsupported content type: 415, nothing applied.
    assert_eq!(
        http(
            &l.addr,
            "POST",
            "/v1/traces",
            &[("Content-Type", "text/plain")],
            b"x"
        )
        .0,
        415
    );
    // An alert over HTTP, delivered twice: one command.
    started(&l.addr, "d-alert", "auth");
    let alert = json!({"version": "4", "status": "firing", "alerts": [{"status": "firing",
        "labels": {"alertname": "X", "service": "auth", "severity": "critical"},
        "startsAt": rfc3339_now(), "fingerprint": "f1"}]});
    for _ in 0..2 {
        let (code, body) = http(
            &l.addr,
            "POST",
            "/v1/alerts/alertmanager",
            &[("Content-Type", "application/json")],
            alert.to_string().as_bytes(),
        );
        assert_eq!(code, 200, "{body}");
    }
    let c: Value = serde_json::from_str(
        &l.stdout
            .recv_timeout(Duration::from_secs(10))
            .expect("alert command"),
    )
    .unwrap();
    assert_eq!(
        (c["deploy_id"].as_str(), c["trigger"].as_str()),
        (Some("d-alert"), Some("alert"))
    );
    assert!(l.stdout.recv_timeout(Duration::from_secs(1)).is_err());
    // SIGTERM: exits 0 (within the 20 s grace period, and some).
    let t = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &l.child.id().to_string()])
        .status();
    let status = loop {
        if let Some(s) = l.child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(60), "did not exit");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

#[test]
fn own_spans_are_exported_over_otlp_when_configured() {
    let _serial = support::serial();
    // A second agent is the OTLP receiver: rollbackd's own spans arrive as
    // telemetry of service "rollbackd", which no deploy claims.
    let receiver = start();
    let dir = std::env::temp_dir().join(format!("rollbackd-otel-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n[telemetry]\notlp_endpoint = \"http://{}\"\n",
            receiver.addr
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr = http_addr_from_stderr(&mut child);
    for i in 0..5 {
        started(&addr, &format!("d-otel-{i}"), "svc");
    }
    // SIGTERM flushes the exporter.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, text) = http(&receiver.addr, "GET", "/metrics", &[], b"");
        if metric(
            &text,
            r#"rollbackd_records_total{outcome="ok",source="otlp_spans"}"#,
        ) >= 1.0
        {
            break;
        }
        assert!(Instant::now() < deadline, "no spans arrived:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Alertmanager (Debian's `prometheus-alertmanager`, installed by
/// scripts/deps.sh) routes a critical alert to rollbackd's webhook with a
/// bearer token; it re-sends, and rollbackd emits one command.
#[test]
fn real_alertmanager_triggers_one_rollback() {
    let _serial = support::serial();
    let am_port = support::free_port();
    let cluster_port = support::free_port();
    let dir = support::unique_dir("am");
    // rollbackd with a webhook token.
    let cfg = dir.join("rollbackd.toml");
    std::fs::write(&cfg, "[http]\nlisten = \"127.0.0.1:0\"\n").unwrap();
    let mut agent = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ROLLBACKD_WEBHOOK_TOKEN", "am-secret")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rx = stdout_lines(&mut agent);
    let addr = http_addr_from_stderr(&mut agent);
    let ev = json!({"type": "deploy.started", "deploy_id": "d-am", "service": "auth", "version": "v12",
                    "previous_version": "v11", "at": rfc3339_now()});
    let (code, _) = http(
        &addr,
        "POST",
        "/v1/deploy-events",
        &[
            ("Authorization", "Bearer am-secret"),
            ("Content-Type", "application/json"),
        ],
        ev.to_string().as_bytes(),
    );
    assert_eq!(code, 200);
    // Alertmanager routing critical alerts to it, re-sending every second.
    std::fs::write(dir.join("token"), "am-secret").unwrap();
    std::fs::write(
        dir.join("alertmanager.yml"),
        format!(
            "route:\n  receiver: rollbackd\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1s\nreceivers:\n  - name: rollbackd\n    webhook_configs:\n      - url: http://{addr}/v1/alerts/alertmanager\n        http_config:\n          authorization:\n            credentials_file: {}\n",
            dir.join("token").display()
        ),
    )
    .unwrap();
    let mut am = Command::new("prometheus-alertmanager")
        .arg(format!(
            "--config.file={}",
            dir.join("alertmanager.yml").display()
        ))
        .arg(format!("--storage.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
        .arg(format!("--cluster.listen-address=127.0.0.1:{cluster_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus-alertmanager (Debian package; scripts/deps.sh installs it)");
    let am_addr = format!("127.0.0.1:{am_port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(&am_addr).is_err()
        || http(&am_addr, "GET", "/-/ready", &[], b"").0 != 200
    {
        assert!(Instant::now() < deadline, "alertmanager did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    let alerts = json!([{"labels": {"alertname": "HighErrorRate", "service": "auth", "severity": "critical"},
                         "annotations": {"summary": "errors"}, "startsAt": rfc3339_now()}]);
    let (code, body) = http(
        &am_addr,
        "POST",
        "/api/v2/alerts",
        &[("Content-Type", "application/json")],
        alerts.to_string().as_bytes(),
    );
    assert_eq!(code, 200, "{body}");
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a command from the alert");
    let c: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (c["deploy_id"].as_str(), c["trigger"].as_str()),
        (Some("d-am"), Some("alert"))
    );
    // Alertmanager keeps re-sending (repeat_interval 1s): still one command.
    assert!(
        rx.recv_timeout(Duration::from_secs(4)).is_err(),
        "a second command"
    );
    let (_, text) = http(&addr, "GET", "/metrics", &[], b"");
    assert!(
        metric(
            &text,
            r#"rollbackd_records_total{outcome="ok",source="alertmanager"}"#
        ) >= 1.0,
        "{text}"
    );
    let _ = am.kill();
    let _ = am.wait();
    let _ = agent.kill();
    let _ = agent.wait();
}

/// Debian's `prometheus` scrapes rollbackd's /metrics and evaluates the
/// alert rules shipped in deploy/.
#[test]
fn real_prometheus_scrapes_and_evaluates_the_rules() {
    let _serial = support::serial();
    let l = start();
    let port = support::free_port();
    let dir = support::unique_dir("prom");
    // The PrometheusRule's spec is a plain rules file, de-indented.
    let crd = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/kubernetes/base/prometheusrule.yaml"
    ))
    .unwrap();
    let rules: String = crd
        .split_once("\nspec:\n")
        .unwrap()
        .1
        .lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l).to_string() + "\n")
        .collect();
    std::fs::write(dir.join("rules.yml"), rules).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: [\"{}\"]\nscrape_configs:\n  - job_name: rollbackd\n    static_configs:\n      - targets: [\"{}\"]\n",
            dir.join("rules.yml").display(),
            l.addr
        ),
    )
    .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package; scripts/deps.sh installs it)");
    let prom_addr = format!("127.0.0.1:{port}");
    let rule_count = std::fs::read_to_string(format!(
        "{}/deploy/kubernetes/base/prometheusrule.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .matches("- alert:")
    .count();
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut up, mut evaluated) = (false, false);
    while Instant::now() < deadline && !(up && evaluated) {
        std::thread::sleep(Duration::from_millis(500));
        if std::net::TcpStream::connect(&prom_addr).is_err() {
            continue;
        }
        let (_, targets) = http(&prom_addr, "GET", "/api/v1/targets", &[], b"");
        up = targets.contains("\"health\":\"up\"");
        let (_, rules) = http(&prom_addr, "GET", "/api/v1/rules", &[], b"");
        // (The body may come chunked: count rather than parse.)
        evaluated = rules.matches("\"health\":\"ok\"").count() == rule_count
            && rules.matches("\"lastEvaluation\"").count() >= rule_count;
        // The readiness rule has data to work on once scraped.
        if up {
            let (_, q) = http(
                &prom_addr,
                "GET",
                "/api/v1/query?query=rollbackd_ready",
                &[],
                b"",
            );
            evaluated &= q.contains("\"1\"");
        }
    }
    let _ = prom.kill();
    let _ = prom.wait();
    assert!(up, "prometheus never scraped rollbackd");
    assert!(
        evaluated,
        "the rules from deploy/ were not evaluated healthily"
    );
}

/// The official OpenTelemetry Python SDK (tests/python/otel_canary.py, in the
/// virtualenv scripts/deps.sh makes) exports spans and
/// `http.server.request.duration` histograms over OTLP/HTTP: the canaries
/// that fail or are slow are rolled back, the healthy one is left alone.
#[test]
fn opentelemetry_python_sdk_canaries() {
    let _serial = support::serial();
    let l = start_with_env(&[("ROLLBACKD_ADMIN_TOKEN", "admin")]);
    for svc in ["checkout", "payments", "cart", "search"] {
        started_in(&l.addr, &format!("d-{svc}"), svc, "prod");
    }
    let endpoint = format!("http://{}", l.addr);
    #[rustfmt::skip]
    support::run_python("otel_canary.py", &[
        "--endpoint", &endpoint, "--seconds", "8", "--environment", "prod",
        // Errors, seen in both spans and histograms.
        "--service", "checkout:spans,metrics:errors",
        // Slow requests, seen only in cumulative histogram buckets.
        "--service", "payments:metrics:slow",
        // Errors, seen only in spans.
        "--service", "cart:spans:errors",
        "--service", "search:spans,metrics:healthy",
    ]);
    let mut commands = std::collections::BTreeMap::new();
    while let Ok(line) = l.stdout.recv_timeout(Duration::from_secs(3)) {
        let c: Value = serde_json::from_str(&line).unwrap();
        let id = c["deploy_id"].as_str().unwrap().to_string();
        assert!(commands.insert(id, c).is_none(), "one command per deploy");
    }
    assert_eq!(
        commands.keys().collect::<Vec<_>>(),
        ["d-cart", "d-checkout", "d-payments"],
        "{commands:#?}"
    );
    let evidence = |id: &str| {
        let e = &commands[id]["evidence"];
        (e["sli"].as_str().unwrap(), e["source"].as_str().unwrap())
    };
    // Both signals carry checkout's errors: a window uses histograms once
    // it holds any, spans before that, and which of the two exports arrives
    // first is up to the SDK's batching. Either one is evidence of the fault.
    let (sli, source) = evidence("d-checkout");
    assert_eq!(sli, "errors");
    assert!(["spans", "metrics"].contains(&source), "{source}");
    assert_eq!(evidence("d-payments"), ("latency", "metrics"));
    assert_eq!(evidence("d-cart"), ("errors", "spans"));
    for c in commands.values() {
        assert_eq!(c["action"], "rollback");
        assert_eq!(c["to_version"], "v1");
        assert_eq!(c["environment"], "prod");
    }
    // The healthy canary was measured (not just unseen) and judged healthy.
    let (code, body) = http(
        &l.addr,
        "GET",
        "/v1/deploys/d-search",
        &[("Authorization", "Bearer admin")],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert!(d["command_id"].is_null(), "{d}");
    assert_eq!(d["evaluation"]["verdict"], "healthy", "{d}");
    let pair = &d["evaluation"]["pairs"][0];
    // At least the config's min_requests on each side (the script paces
    // itself by the clock, so how many depends on the machine).
    assert!(
        pair["candidate_long"]["requests"].as_u64().unwrap() >= 50,
        "{d}"
    );
    assert!(
        pair["baseline_long"]["requests"].as_u64().unwrap() >= 50,
        "{d}"
    );
    let (_, text) = http(&l.addr, "GET", "/metrics", &[], b"");
    assert!(
        !text.contains(r#"outcome="unmatched""#) && !text.contains(r#"outcome="malformed""#),
        "every SDK export decoded and matched a deploy:\n{text}"
    );
    assert!(
        metric(
            &text,
            r#"rollbackd_records_total{outcome="ok",source="otlp_spans"}"#
        ) > 0.0
    );
    assert!(
        metric(
            &text,
            r#"rollbackd_records_total{outcome="ok",source="otlp_metrics"}"#
        ) > 0.0
    );
}
