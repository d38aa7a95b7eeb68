//! Scenario tests of deploys found in the telemetry, on replay fixtures
//! generated here and run through `rollbackd::replay::replay` in this
//! process: what starts a deploy, and every case that must not.

mod support;

use serde_json::Value;
use support::replay::{Fixture, Stream};

const INFER: &str = "[deploys]\ninfer = true\ninfer_settle = \"30s\"\n";

fn fixture() -> Fixture {
    let mut f = Fixture::new();
    f.config_extra = INFER.into();
    f
}

/// The ids of the deploys started, in order.
fn started(audit: &[Value]) -> Vec<String> {
    audit
        .iter()
        .filter(|a| a["kind"] == "deploy" && a["detail"]["event"] == "deploy.started")
        .map(|a| a["deploy_id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_bad_new_version_is_found_and_gets_one_command() {
    let mut f = fixture();
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.08)
            .between(120.0, 1e9),
    );
    let out = f.replay(900.0);
    assert_eq!(started(&out.audit), ["inferred:checkout:default:v2"]);
    assert_eq!(out.commands.len(), 1, "{}", out.stdout);
    let c = &out.commands[0];
    assert_eq!(c["deploy_id"], "inferred:checkout:default:v2");
    assert_eq!(c["strategy"], "inferred");
    assert_eq!(c["to_version"], "v1");
}

#[test]
fn a_healthy_new_version_is_found_and_gets_none() {
    let mut f = fixture();
    f.spans(
        Stream::new("checkout", "v1", 45.0)
            .errors(0.0005)
            .between(0.0, 300.0),
    );
    f.spans(
        Stream::new("checkout", "v2", 45.0)
            .errors(0.0005)
            .between(120.0, 1e9),
    );
    let out = f.replay(900.0);
    assert_eq!(started(&out.audit), ["inferred:checkout:default:v2"]);
    assert!(out.commands.is_empty(), "{}", out.stdout);
    let completed = out.audit.iter().any(|a| {
        a["deploy_id"] == "inferred:checkout:default:v2"
            && a["detail"]["event"] == "deploy.completed"
    });
    assert!(completed, "v1 left at 300 s");
}

#[test]
fn two_versions_serving_side_by_side_start_nothing() {
    let mut f = fixture();
    // Two regions on two versions, from the first request on, one of
    // them failing more than the other: still no deploy.
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(Stream::new("checkout", "v2", 20.0).errors(0.05));
    let out = f.replay(900.0);
    assert!(started(&out.audit).is_empty(), "{:?}", out.audit);
    assert!(out.commands.is_empty());
}

#[test]
fn a_version_flapping_back_starts_one_deploy_not_two() {
    let mut f = fixture();
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.0005)
            .between(120.0, 130.0),
    );
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.0005)
            .between(200.0, 1e9),
    );
    let out = f.replay(900.0);
    assert_eq!(started(&out.audit), ["inferred:checkout:default:v2"]);
    assert!(out.commands.is_empty(), "{}", out.stdout);
}

#[test]
fn a_restart_and_a_service_back_after_a_quiet_spell_start_nothing() {
    let mut f = fixture();
    // The same version again after a restart, then a new version with no
    // other one serving before it.
    f.spans(
        Stream::new("checkout", "v1", 45.0)
            .errors(0.0005)
            .between(0.0, 100.0),
    );
    f.spans(
        Stream::new("checkout", "v1", 45.0)
            .errors(0.0005)
            .between(160.0, 300.0),
    );
    f.spans(
        Stream::new("checkout", "v2", 45.0)
            .errors(0.05)
            .between(500.0, 900.0),
    );
    let out = f.replay(900.0);
    assert!(started(&out.audit).is_empty(), "{:?}", started(&out.audit));
    assert!(out.commands.is_empty());
}

#[test]
fn without_inference_nothing_is_found() {
    let mut f = Fixture::new();
    f.spans(Stream::new("checkout", "v1", 45.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 5.0)
            .errors(0.08)
            .between(120.0, 1e9),
    );
    let out = f.replay(900.0);
    assert!(started(&out.audit).is_empty());
    assert!(out.commands.is_empty());
}
