//! Deploys of versions known to be good: fast-tracked (watched as a
//! recovery), the executor's own redeploy, and what is never fast-tracked.

use super::*;
use crate::model::gate::GateVerdict;

const CONFIG: &str = "[guards]\ncooldown = \"0s\"\n[slo]\nwarmup = \"5s\"\nmin_requests = 20\nwatch_after_complete = \"30s\"\n\
                      [verify]\nwindow = \"1m\"\n";

/// A `deploy.started` of `version` (previous `previous`) of web.
fn of(id: &str, version: &str, previous: &str, at: i64) -> DeployEvent {
    let mut ev = started(id, "web", DataMigration::None, at);
    ev.version = version.into();
    ev.previous_version = Some(previous.into());
    ev
}

/// Deploys `version` of web healthy from `at` and watches it to its end:
/// it is then known good.
fn healthy(e: &mut Engine, id: &str, version: &str, previous: &str, at: i64) {
    deploy(e, of(id, version, previous, at));
    serve(e, (at, at + 30), &[(previous, 0), (version, 0)]);
    let mut done = of(id, version, previous, at + 30);
    done.kind = DeployEventKind::Completed;
    deploy(e, done);
    serve(e, (at + 30, at + 61), &[(version, 0)]);
    assert!(e.deploy_view(id).is_none(), "{id} watched to its end");
}

/// The `fast_track` of the `deploy.started` audit among `outputs`.
fn fast_track_of(outputs: &[Output]) -> serde_json::Value {
    audits(outputs, "deploy")
        .into_iter()
        .find(|a| a["detail"]["event"] == "deploy.started")
        .map(|a| a["detail"]["fast_track"].clone())
        .expect("a deploy.started audit")
}

#[test]
fn a_redeploy_of_a_known_good_version_is_fast_tracked_and_watched_as_a_recovery() {
    let mut e = engine(CONFIG);
    healthy(&mut e, "d-1", "v2", "v1", 1_000);
    healthy(&mut e, "d-2", "v3", "v2", 1_100);
    // Back to v2 (a person's revert, or a redeploy): v3 fails meanwhile,
    // which a canary analysis would hold against v2's baseline.
    let out = deploy(&mut e, of("d-3", "v2", "v3", 1_200));
    let f = fast_track_of(&out);
    assert_eq!(f["how"], "watched", "{f}");
    let out = serve(&mut e, (1_200, 1_270), &[("v3", 5), ("v2", 0)]);
    assert!(commands(&out).is_empty(), "never judged as a canary");
    let v = audits(&out, "verification");
    assert_eq!(v.len(), 1, "{v:?}");
    assert_eq!(v[0]["detail"]["outcome"], "recovered");
    assert_eq!(v[0]["detail"]["restored_version"], "v2");
}

#[test]
fn a_fast_tracked_version_that_fails_is_not_recovered_and_never_fast_tracked_again() {
    let mut e = engine(CONFIG);
    healthy(&mut e, "d-1", "v2", "v1", 1_000);
    deploy(&mut e, of("d-2", "v3", "v2", 1_100));
    let out = deploy(&mut e, of("d-3", "v2", "v3", 1_110));
    assert!(!fast_track_of(&out).is_null());
    let out = serve(&mut e, (1_110, 1_180), &[("v2", 5)]);
    let v = audits(&out, "verification");
    assert_eq!(v[0]["detail"]["outcome"], "not_recovered", "{v:?}");
    let out = deploy(&mut e, of("d-4", "v2", "v3", 1_200));
    assert!(fast_track_of(&out).is_null());
}

#[test]
fn the_target_of_a_rollback_is_known_good_and_the_version_rolled_back_never_is() {
    let mut e = engine(CONFIG);
    deploy(&mut e, of("d-1", "v2", "v1", 1_000));
    let out = serve(&mut e, (1_000, 1_030), &[("v1", 0), ("v2", 3)]);
    assert_eq!(commands(&out).len(), 1);
    // The executor redeploys v1 while d-1 is still watched: its own
    // doing, not a deploy.
    let out = deploy(&mut e, of("d-exec", "v1", "v2", 1_031));
    let a = audits(&out, "deploy");
    assert!(
        a[0]["detail"]["ignored"]
            .as_str()
            .unwrap()
            .contains("rollback rollbackd commanded"),
        "{a:?}"
    );
    assert!(e.deploy_view("d-exec").is_none());
    // A later deploy supersedes d-1; v2 again is analysed, never
    // fast-tracked; v1 again is fast-tracked (restored).
    let out = deploy(&mut e, of("d-2", "v2", "v1", 1_100));
    assert!(fast_track_of(&out).is_null());
    let out = serve(&mut e, (1_100, 1_130), &[("v1", 0), ("v2", 3)]);
    assert_eq!(commands(&out).len(), 1, "analysed, and rolled back again");
    let mut e2 = engine(CONFIG);
    deploy(&mut e2, of("d-1", "v2", "v1", 1_000));
    serve(&mut e2, (1_000, 1_030), &[("v1", 0), ("v2", 3)]);
    deploy(&mut e2, of("d-9", "v3", "v2", 1_100));
    let out = deploy(&mut e2, of("d-10", "v1", "v3", 1_101));
    assert_eq!(fast_track_of(&out)["how"], "restored");
}

#[test]
fn the_window_expires_and_a_zero_window_turns_it_off() {
    let mut e = engine(&format!("{CONFIG}[deploys]\nfast_track_window = \"2m\"\n"));
    healthy(&mut e, "d-1", "v2", "v1", 1_000);
    deploy(&mut e, of("d-2", "v3", "v2", 1_100));
    set_clock(&mut e, Timestamp(1_300 * SEC));
    let out = deploy(&mut e, of("d-3", "v2", "v3", 1_300));
    assert!(
        fast_track_of(&out).is_null(),
        "seen healthy more than 2m ago"
    );

    let mut e = engine(&format!("{CONFIG}[deploys]\nfast_track_window = \"0s\"\n"));
    healthy(&mut e, "d-1", "v2", "v1", 1_000);
    deploy(&mut e, of("d-2", "v3", "v2", 1_100));
    let out = deploy(&mut e, of("d-3", "v2", "v3", 1_101));
    assert!(fast_track_of(&out).is_null());
}

#[test]
fn a_revert_seen_only_in_the_telemetry_is_fast_tracked() {
    let mut e = engine(&format!(
        "{CONFIG}[deploys]\ninfer = true\ninfer_settle = \"10s\"\n"
    ));
    serve(&mut e, (1_000, 1_030), &[("v1", 0)]);
    serve(&mut e, (1_030, 1_060), &[("v1", 0), ("v2", 0)]);
    serve(&mut e, (1_060, 1_130), &[("v2", 0)]);
    serve(&mut e, (1_130, 1_160), &[("v2", 0), ("v3", 0)]);
    serve(&mut e, (1_160, 1_230), &[("v3", 0)]);
    // v3 turns out wrong for a reason no SLI shows: a person reverts.
    let out = serve(&mut e, (1_230, 1_300), &[("v3", 0), ("v2", 0)]);
    let f = fast_track_of(&out);
    assert_eq!(f["how"], "watched", "{f}");
    let started = audits(&out, "deploy");
    assert_eq!(started[0]["deploy_id"], "inferred:web:default:v2@1230");
    assert!(commands(&out).is_empty());
}

#[test]
fn the_gate_passes_a_fast_tracked_deploy_at_once_and_a_person_can_still_fail_it() {
    let mut e = engine(CONFIG);
    healthy(&mut e, "d-1", "v2", "v1", 1_000);
    healthy(&mut e, "d-2", "v3", "v2", 1_100);
    deploy(&mut e, of("d-3", "v2", "v3", 1_200));
    // Before any request: a controller promoting a revert is not held.
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Pass, "{answer:?}");
    assert_eq!(answer.evidence["fast_track"]["how"], "watched");
    assert!(
        answer.reason.starts_with("fast-tracked: v2"),
        "{}",
        answer.reason
    );
    // A command still overrides it.
    manual(&mut e, "d-3", "still broken", "alice").unwrap();
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Fail, "{answer:?}");
}

#[test]
fn an_alert_on_a_revert_asks_a_person_before_restoring_the_version_that_failed() {
    let mut e = engine(CONFIG);
    deploy(&mut e, of("d-1", "v2", "v1", 1_000));
    serve(&mut e, (1_000, 1_030), &[("v1", 0), ("v2", 3)]);
    deploy(&mut e, of("d-9", "v3", "v2", 1_100));
    // A person reverts to v1 from v3, fast-tracked; its previous version
    // is v3, and an alert fires on it.
    let out = deploy(&mut e, of("d-10", "v1", "v3", 1_101));
    assert_eq!(fast_track_of(&out)["how"], "restored");
    let out = alerts(&mut e, &[alert("web", "fp-1", 1_110)]);
    let c = commands(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(c[0].action, Action::Rollback, "v3 was never rolled back");
    // A revert whose previous version is the one rolled back: a person
    // approves restoring it.
    let mut e = engine(CONFIG);
    deploy(&mut e, of("d-1", "v2", "v1", 1_000));
    serve(&mut e, (1_000, 1_030), &[("v1", 0), ("v2", 3)]);
    let mut back = of("d-1", "v2", "v1", 1_031);
    back.kind = DeployEventKind::RolledBack;
    deploy(&mut e, back);
    serve(&mut e, (1_031, 1_200), &[("v1", 0)]);
    assert!(e.deploy_view("d-1").is_none(), "d-1's rollback verified");
    deploy(&mut e, of("d-11", "v1", "v2", 1_200));
    let out = alerts(&mut e, &[alert("web", "fp-2", 1_210)]);
    let c = commands(&out);
    assert_eq!(c.len(), 1, "{out:?}");
    assert_eq!(c[0].action, Action::ApprovalRequired);
    assert_eq!(c[0].to_version.as_deref(), Some("v2"));
}
