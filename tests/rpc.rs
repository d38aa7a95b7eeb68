//! Services that are not HTTP servers, as the official OpenTelemetry Python
//! SDK reports them (tests/python/otel_canary.py) over OTLP/HTTP to
//! `rollbackd run`: gRPC servers (SERVER spans with gRPC status codes,
//! `rpc.server.call.duration`) and message consumers (CONSUMER spans,
//! `messaging.process.duration`), and the per-service choice of which
//! kinds of request count.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{http, metric, LocalAgent};

const SLO: &str = "[slo]\nwarmup = \"1s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\nwindows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n";

fn started(addr: &str, id: &str, service: &str) {
    support::post_started(addr, id, service, json!({ "environment": "prod" }));
}

/// Runs the SDK's services (`NAME:SIGNALS:BEHAVIOUR:KIND`) against `l`
/// for 8 seconds, then gathers the commands printed, by deploy id (one at
/// most per deploy).
fn run_sdk(l: &LocalAgent, services: &[&str]) -> BTreeMap<String, Value> {
    let endpoint = format!("http://{}", l.addr);
    let mut args = vec![
        "--endpoint",
        &endpoint,
        "--seconds",
        "8",
        "--environment",
        "prod",
    ];
    for s in services {
        args.extend(["--service", s]);
    }
    support::run_python("otel_canary.py", &args);
    let mut commands = BTreeMap::new();
    while let Ok(line) = l.stdout.recv_timeout(Duration::from_secs(3)) {
        let c: Value = serde_json::from_str(&line).unwrap();
        let id = c["deploy_id"].as_str().unwrap().to_string();
        assert!(commands.insert(id, c).is_none(), "one command per deploy");
    }
    let (_, text) = http(&l.addr, "GET", "/metrics", &[], b"");
    assert!(
        !text.contains(r#"outcome="unmatched""#) && !text.contains(r#"outcome="malformed""#),
        "every SDK export decoded and matched a deploy:\n{text}"
    );
    for source in ["otlp_spans", "otlp_metrics"] {
        let sample = format!(r#"rollbackd_records_total{{outcome="ok",source="{source}"}}"#);
        assert!(metric(&text, &sample) > 0.0, "{text}");
    }
    commands
}

/// The errors rollback command of `id`, to v1.
fn assert_errors_rollback(commands: &BTreeMap<String, Value>, id: &str) {
    let c = &commands[id];
    assert_eq!(c["action"], "rollback", "{c}");
    assert_eq!(c["to_version"], "v1", "{c}");
    assert_eq!(c["evidence"]["sli"], "errors", "{c}");
    let source = c["evidence"]["source"].as_str().unwrap();
    assert!(["spans", "metrics"].contains(&source), "{source}");
}

/// The first pair of `id`'s evaluation: its verdict, the candidate's long
/// window (requests, errors), and the baseline's requests.
fn evaluation(l: &LocalAgent, id: &str) -> (String, (u64, u64), u64) {
    let (code, body) = http(
        &l.addr,
        "GET",
        &format!("/v1/deploys/{id}"),
        &[("Authorization", "Bearer admin")],
        b"",
    );
    assert_eq!(code, 200, "{body}");
    let d: Value = serde_json::from_str(&body).unwrap();
    assert!(d["command_id"].is_null(), "{d}");
    let pair = &d["evaluation"]["pairs"][0];
    let n = |side: &str, what: &str| pair[side][what].as_u64().unwrap();
    (
        d["evaluation"]["verdict"].as_str().unwrap().to_string(),
        (
            n("candidate_long", "requests"),
            n("candidate_long", "errors"),
        ),
        n("baseline_long", "requests"),
    )
}

/// gRPC servers count with gRPC's status semantics and no setting: the
/// candidate answering UNAVAILABLE is rolled back, once; one answering
/// NOT_FOUND to a quarter of its calls (status ERROR on those spans, as
/// older instrumentations set it) is healthy, as is a healthy one.
#[test]
fn grpc_servers_fail_by_their_status_codes() {
    let _serial = support::serial();
    let l = LocalAgent::start("", SLO, &[("ROLLBACKD_ADMIN_TOKEN", "admin")]);
    for svc in ["cart", "catalog", "ledger"] {
        started(&l.addr, &format!("d-{svc}"), svc);
    }
    let commands = run_sdk(
        &l,
        &[
            "cart:spans,metrics:errors:grpc",
            "catalog:spans,metrics:not_found:grpc",
            // Spans alone: the NOT_FOUND test above may be judged on
            // histograms; this one is judged on spans.
            "ledger:spans:not_found:grpc",
        ],
    );
    assert_eq!(
        commands.keys().collect::<Vec<_>>(),
        ["d-cart"],
        "{commands:#?}"
    );
    assert_errors_rollback(&commands, "d-cart");
    for id in ["d-catalog", "d-ledger"] {
        let (verdict, (requests, errors), baseline) = evaluation(&l, id);
        assert_eq!(verdict, "healthy", "{id}");
        assert!(requests >= 50 && baseline >= 50, "{id}: measured");
        // The baseline's one INTERNAL in 400 is all that is an error.
        assert!(errors * 100 <= requests, "{id}: {errors} of {requests}");
    }
}

/// Message consumers count where the service says so: a consumer failing
/// a quarter of its messages is rolled back, once, a healthy one is not;
/// the same failing consumer under the default selection (HTTP and RPC
/// requests) has no evidence at all.
#[test]
fn consumers_count_where_the_service_selects_messaging() {
    let _serial = support::serial();
    let selection = "[slo.services.orders]\nrequests = [\"messaging\"]\n[slo.services.emails]\nrequests = [\"messaging\", \"http\"]\n";
    let l = LocalAgent::start(
        "",
        &format!("{SLO}{selection}"),
        &[("ROLLBACKD_ADMIN_TOKEN", "admin")],
    );
    for svc in ["orders", "emails", "billing"] {
        started(&l.addr, &format!("d-{svc}"), svc);
    }
    let commands = run_sdk(
        &l,
        &[
            "orders:spans,metrics:errors:consumer",
            "emails:spans,metrics:healthy:consumer",
            "billing:spans,metrics:errors:consumer",
        ],
    );
    assert_eq!(
        commands.keys().collect::<Vec<_>>(),
        ["d-orders"],
        "{commands:#?}"
    );
    assert_errors_rollback(&commands, "d-orders");
    let (verdict, (requests, _), baseline) = evaluation(&l, "d-emails");
    assert_eq!(verdict, "healthy");
    assert!(requests >= 50 && baseline >= 50, "measured");
    let (_, (requests, errors), baseline) = evaluation(&l, "d-billing");
    assert_eq!((requests, errors, baseline), (0, 0, 0), "not counted");
}
