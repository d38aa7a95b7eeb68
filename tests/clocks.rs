//! Clocks and lifetimes through `rollbackd replay`: a deploy event from a
//! wrong clock never holds its service, and a deploy that never completes
//! retires after `limits.max_deploy_age`, giving back its service and its
//! place under `limits.max_active_deploys`.

mod support;

use serde_json::{json, Value};
use support::replay::{Fixture, Stream};

fn of_kind<'a>(audit: &'a [Value], kind: &str) -> Vec<&'a Value> {
    audit.iter().filter(|a| a["kind"] == kind).collect()
}

/// A bad canary of `service` from `t` on (v2 fails a fifth of its
/// requests, v1 healthy).
fn bad_canary(f: &mut Fixture, service: &str, from: f64) {
    f.spans(Stream::new(service, "v1", 20.0).between(from, 1e9));
    f.spans(
        Stream::new(service, "v2", 20.0)
            .errors(0.2)
            .between(from, 1e9),
    );
}

#[test]
fn a_deploy_from_a_wrong_clock_is_malformed_and_holds_nothing() {
    let mut f = Fixture::new();
    // Written at t = 10 s, but says it started in 2031.
    f.record(
        10.0,
        "deploy-events",
        json!({"type": "deploy.started", "deploy_id": "d-2031", "service": "checkout",
               "version": "v9", "previous_version": "v1", "at": "2031-01-01T00:00:00Z"}),
    );
    f.started(60.0, "d-real", "checkout", "v2", "v1");
    bad_canary(&mut f, "checkout", 60.0);
    let out = f.replay(200.0);
    assert!(
        out.stderr.contains("limits.max_clock_skew"),
        "{}",
        out.stderr
    );
    let malformed = of_kind(&out.audit, "malformed");
    assert_eq!(malformed.len(), 1, "{malformed:?}");
    // The real deploy was started and rolled back; nothing was ignored.
    let ids: Vec<&str> = out
        .commands
        .iter()
        .map(|c| c["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d-real"]);
    assert!(
        !out.audit.iter().any(|a| a["detail"]["ignored"].is_string()),
        "{:?}",
        out.audit
    );
}

#[test]
fn a_deploy_that_never_completes_expires_and_frees_its_place() {
    let mut f = Fixture::new();
    f.config_extra = "[limits]\nmax_active_deploys = 1\nmax_deploy_age = \"10m\"\n".into();
    // A CI job that died: started, never completed.
    f.started(0.0, "d-stuck", "search", "v8", "v7");
    f.spans(Stream::new("search", "v8", 1.0).between(0.0, 1e9));
    // While it holds the only place, another deploy is refused.
    f.started(60.0, "d-refused", "checkout", "v2", "v1");
    // After ten minutes it is retired; the next deploy is watched.
    f.started(700.0, "d-next", "checkout", "v3", "v2");
    f.spans(Stream::new("checkout", "v2", 20.0).between(700.0, 1e9));
    f.spans(
        Stream::new("checkout", "v3", 20.0)
            .errors(0.2)
            .between(700.0, 1e9),
    );
    let out = f.replay(900.0);
    let refused: Vec<&Value> = out
        .audit
        .iter()
        .filter(|a| a["deploy_id"] == "d-refused")
        .collect();
    assert_eq!(
        refused[0]["detail"]["ignored"], "limits.max_active_deploys reached",
        "{refused:?}"
    );
    let expired: Vec<&Value> = out
        .audit
        .iter()
        .filter(|a| a["detail"]["expired"] == true)
        .collect();
    assert_eq!(expired.len(), 1, "{:?}", out.audit);
    assert_eq!(expired[0]["deploy_id"], "d-stuck");
    assert_eq!(expired[0]["detail"]["max_deploy_age"], "10m");
    // Ten minutes after it started, to the export (replay's clock is the
    // records' time; spans are exported every 5 s).
    let at = support::replay::secs(&expired[0]["at"]);
    assert!((600.0..=605.0).contains(&at), "expired at {at}");
    let ids: Vec<&str> = out
        .commands
        .iter()
        .map(|c| c["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d-next"]);
}

#[test]
fn a_completed_deploy_does_not_expire_while_watched() {
    let mut f = Fixture::new();
    f.config_extra =
        "[limits]\nmax_deploy_age = \"2m\"\n[slo]\nwatch_after_complete = \"5m\"\n".into();
    f.started(0.0, "d-1", "search", "v8", "v7");
    f.deploy(
        60.0,
        "deploy.completed",
        "d-1",
        "search",
        "v8",
        json!({"previous_version": "v7"}),
    );
    f.spans(Stream::new("search", "v8", 5.0).between(0.0, 1e9));
    let out = f.replay(400.0);
    assert!(
        !out.audit.iter().any(|a| a["detail"]["expired"] == true),
        "{:?}",
        out.audit
    );
    let retired: Vec<&Value> = out
        .audit
        .iter()
        .filter(|a| a["detail"]["retired"].is_string())
        .collect();
    assert_eq!(retired.len(), 1);
    assert_eq!(
        retired[0]["detail"]["retired"],
        "watch after completion ended"
    );
}
