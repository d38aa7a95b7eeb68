//! The deploy lifecycle: start, progress, completion, rollback and abort,
//! executor results, and retirement.

use super::*;
use crate::model::{ExecutorResult, ResultStatus};

/// The `detail` of every deploy audit record among `out`.
fn details(out: &[Output]) -> Vec<serde_json::Value> {
    audits(out, "deploy")
        .into_iter()
        .map(|a| a["detail"].clone())
        .collect()
}

#[test]
fn a_started_deploy_is_audited_and_watched() {
    let mut e = engine("");
    let out = deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let d = details(&out);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["event"], "deploy.started");
    assert_eq!(d[0]["version"], "v2");
    assert_eq!(d[0]["previous_version"], "v1");
    assert_eq!(d[0]["environment"], "default");
    assert_eq!(e.active_deploys(), 1);
    assert_eq!(e.deploy_view("d-1").unwrap().service, "web");
}

#[test]
fn a_deploy_id_seen_before_is_ignored() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let again = deploy(&mut e, started("d-1", "web", DataMigration::None, 950));
    assert_eq!(details(&again)[0]["ignored"], "deploy id already seen");
    deploy(&mut e, event(DeployEventKind::Aborted, "d-1", "web", 960));
    assert_eq!(e.active_deploys(), 0);
    // Retired, it stays retired.
    let late = deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    assert_eq!(details(&late)[0]["ignored"], "deploy id already seen");
    assert_eq!(e.active_deploys(), 0);
}

#[test]
fn a_newer_start_retires_the_older_and_an_older_one_is_ignored() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = deploy(&mut e, started("d-2", "web", DataMigration::None, 950));
    let d = details(&out);
    assert_eq!(d[0]["retired"], "superseded by d-2");
    assert_eq!(d[1]["event"], "deploy.started");
    assert!(e.deploy_view("d-1").is_none());
    let older = deploy(&mut e, started("d-0", "web", DataMigration::None, 920));
    assert_eq!(
        details(&older)[0]["ignored"],
        "a newer deploy of this service and environment is active"
    );
    assert!(e.deploy_view("d-2").is_some());
    // Another environment of the service is a deploy of its own.
    let mut staging = started("d-3", "web", DataMigration::None, 930);
    staging.environment = Some("staging".into());
    deploy(&mut e, staging);
    assert_eq!(e.active_deploys(), 2);
}

#[test]
fn deploys_over_the_cap_are_ignored_but_a_replacement_is_not() {
    let mut e = engine("[limits]\nmax_active_deploys = 1\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = deploy(&mut e, started("d-2", "api", DataMigration::None, 910));
    assert_eq!(
        details(&out)[0]["ignored"],
        "limits.max_active_deploys reached"
    );
    // A newer deploy of the same service takes the older one's place.
    deploy(&mut e, started("d-3", "web", DataMigration::None, 920));
    assert!(e.deploy_view("d-3").is_some());
    assert_eq!(e.active_deploys(), 1);
}

#[test]
fn progress_updates_the_canary_weight() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let mut ev = event(DeployEventKind::Progressed, "d-1", "web", 950);
    ev.canary_weight = Some(25.0);
    let out = deploy(&mut e, ev);
    assert_eq!(details(&out)[0]["canary_weight"], 25.0);
    assert_eq!(e.deploy_view("d-1").unwrap().canary_weight, Some(25.0));
    // Without a weight it keeps the last one.
    deploy(
        &mut e,
        event(DeployEventKind::Progressed, "d-1", "web", 960),
    );
    assert_eq!(e.deploy_view("d-1").unwrap().canary_weight, Some(25.0));
    let unknown = deploy(
        &mut e,
        event(DeployEventKind::Progressed, "nope", "web", 960),
    );
    assert_eq!(
        details(&unknown)[0]["ignored"],
        "no active deploy with this id"
    );
}

#[test]
fn completion_starts_the_final_watch() {
    let mut e = engine("[slo]\nwatch_after_complete = \"2m\"\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = deploy(&mut e, event(DeployEventKind::Completed, "d-1", "web", 990));
    let until = Timestamp(1_110 * SEC).to_string();
    assert_eq!(details(&out)[0]["watched_until"], until);
    let unknown = deploy(
        &mut e,
        event(DeployEventKind::Completed, "nope", "web", 990),
    );
    assert_eq!(
        details(&unknown)[0]["ignored"],
        "no active deploy with this id"
    );
}

#[test]
fn a_rollback_by_hand_retires_and_takes_its_release_along_an_abort_does_not() {
    for (kind, release_commands) in [
        (DeployEventKind::RolledBack, 1),
        (DeployEventKind::Aborted, 0),
    ] {
        let mut e = engine("");
        for (id, service) in [("d-a", "web"), ("d-b", "api")] {
            let mut ev = started(id, service, DataMigration::None, 900);
            ev.release_id = Some("r-1".into());
            deploy(&mut e, ev);
        }
        let out = deploy(&mut e, event(kind, "d-a", "web", 950));
        assert_eq!(details(&out)[0]["retired"], kind.as_str());
        let cmds = commands(&out);
        assert_eq!(cmds.len(), release_commands, "{kind:?}");
        if let Some(c) = cmds.first() {
            assert_eq!(c.deploy_id, "d-b");
            assert_eq!(c.trigger, Trigger::Release);
            assert_eq!(c.evidence["cause"], "deploy.rolled_back");
        }
        assert!(e.deploy_view("d-a").is_none());
    }
}

#[test]
fn a_successful_result_retires_the_deploy_a_failed_one_does_not() {
    for (status, active) in [(ResultStatus::Failed, 1), (ResultStatus::Succeeded, 0)] {
        let mut e = engine("");
        deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
        let result = ExecutorResult {
            command_id: "by-someone-else".into(),
            deploy_id: "d-1".into(),
            status,
            at: Timestamp(990 * SEC),
            executor: "test".into(),
            message: String::new(),
        };
        let out = e.apply(Input::Result(result), Timestamp(1_000 * SEC));
        assert_eq!(audits(&out, "result").len(), 1);
        assert_eq!(e.active_deploys(), active, "{status:?}");
        if active == 0 {
            assert_eq!(details(&out)[0]["retired"], "rollback succeeded");
        }
    }
}

#[test]
fn a_deploy_never_completed_expires_at_its_max_age() {
    let mut e = engine("[limits]\nmax_deploy_age = \"10m\"\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    set_clock(&mut e, Timestamp(1_599 * SEC));
    assert_eq!(e.active_deploys(), 1);
    let out = e.apply(Input::Tick, Timestamp(1_600 * SEC));
    let d = details(&out);
    assert_eq!(d[0]["expired"], true, "{d:?}");
    assert_eq!(d[0]["max_deploy_age"], "10m");
    assert_eq!(e.active_deploys(), 0);
}
