//! Decisions: verdicts into commands, approval for irreversible
//! migrations, suppressions audited when their reason changes, release
//! cascades and the breaker.

use super::*;

/// The `verdict` of every decision audit record among `out`.
fn verdicts(out: &[Output]) -> Vec<String> {
    audits(out, "decision")
        .iter()
        .map(|a| a["detail"]["verdict"].as_str().unwrap().to_string())
        .collect()
}

/// The `reason` of every suppression audit record among `out`.
fn suppressions(out: &[Output]) -> Vec<String> {
    audits(out, "suppressed")
        .iter()
        .map(|a| a["detail"]["reason"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_failing_canary_is_rolled_back_once_after_its_warmup() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let out = traffic(&mut e, "web", (1_000, 1_200), 5);
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    let c = cmds[0];
    assert_eq!(c.command_id, command_id("d-1", Action::Rollback));
    assert_eq!((c.action, c.trigger), (Action::Rollback, Trigger::BurnRate));
    assert_eq!(
        (c.from_version.as_str(), c.to_version.as_deref()),
        ("v2", Some("v1"))
    );
    assert!(c.decided_at >= Timestamp(1_005 * SEC), "{}", c.decided_at);
    assert!(c.evidence["candidate"]["requests"].as_u64().unwrap() > 0);
    // The verdict is audited when it turns, not at every evaluation.
    assert_eq!(verdicts(&out), ["rollback"]);
    assert_eq!(audits(&out, "command").len(), 1);
    assert!(e.was_emitted(&c.command_id));
}

#[test]
fn a_healthy_canary_gets_no_command_and_no_decision_audit() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let out = traffic(&mut e, "web", (1_000, 1_300), 0);
    assert!(commands(&out).is_empty());
    assert!(verdicts(&out).is_empty());
}

#[test]
fn an_irreversible_migration_asks_for_approval() {
    let mut e = engine("");
    deploy(
        &mut e,
        started("d-1", "web", DataMigration::Irreversible, 1_000),
    );
    let out = traffic(&mut e, "web", (1_000, 1_200), 5);
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].action, Action::ApprovalRequired);
    assert_eq!(
        cmds[0].command_id,
        command_id("d-1", Action::ApprovalRequired)
    );
}

#[test]
fn a_suppression_is_audited_once_and_the_decision_made_when_it_lifts() {
    let mut e = engine("");
    guard_call(&mut e, AdminAction::Pause, "oncall");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let paused = traffic(&mut e, "web", (1_000, 1_100), 5);
    assert!(commands(&paused).is_empty());
    assert_eq!(suppressions(&paused), ["paused"]);
    guard_call(&mut e, AdminAction::Resume, "oncall");
    let resumed = traffic(&mut e, "web", (1_100, 1_110), 5);
    let cmds = commands(&resumed);
    assert_eq!(cmds.len(), 1);
    assert!(cmds[0].decided_at >= Timestamp(1_100 * SEC));
}

#[test]
fn a_dry_run_audits_the_command_instead_of_emitting_it() {
    let mut e = engine("[slo.services.web]\ndry_run = true\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let out = traffic(&mut e, "web", (1_000, 1_200), 5);
    assert!(commands(&out).is_empty());
    let dry = audits(&out, "suppressed");
    assert_eq!(dry.len(), 1);
    assert_eq!(dry[0]["detail"]["reason"], "dry_run");
    assert_eq!(dry[0]["detail"]["detail"]["command"]["deploy_id"], "d-1");
}

#[test]
fn a_release_is_rolled_back_with_the_deploy_that_failed() {
    let mut e = engine("");
    for (id, service) in [("d-a", "web"), ("d-b", "api")] {
        let mut ev = started(id, service, DataMigration::None, 1_000);
        ev.release_id = Some("r-1".into());
        deploy(&mut e, ev);
    }
    let out = traffic(&mut e, "web", (1_000, 1_200), 5);
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 2);
    assert_eq!(
        (cmds[0].deploy_id.as_str(), cmds[0].trigger),
        ("d-a", Trigger::BurnRate)
    );
    assert_eq!(
        (cmds[1].deploy_id.as_str(), cmds[1].trigger),
        ("d-b", Trigger::Release)
    );
    assert_eq!(cmds[1].evidence["caused_by"], "d-a");
    assert_eq!(cmds[1].evidence["cause"], "burn_rate");
    assert_eq!(cmds[0].decided_at, cmds[1].decided_at);
    // The release's other deploy does not count for the breaker.
    assert!(!e.breaker_open());
}

#[test]
fn the_breaker_opens_at_its_maximum_and_holds_the_next_back() {
    let mut e = engine("[guards]\nbreaker_max_rollbacks = 2\n");
    let mut out = Vec::new();
    for (i, service) in ["a", "b", "c"].iter().enumerate() {
        let id = format!("d-{service}");
        let at = 1_000 + 100 * i as i64;
        set_clock(&mut e, Timestamp(at * SEC));
        deploy(&mut e, started(&id, service, DataMigration::None, at));
        out.extend(traffic(&mut e, service, (at, at + 100), 5));
    }
    let ids: Vec<&str> = commands(&out)
        .iter()
        .map(|c| c.deploy_id.as_str())
        .collect();
    assert_eq!(ids, ["d-a", "d-b"]);
    let breaker = audits(&out, "breaker");
    assert_eq!(breaker.len(), 1);
    assert_eq!(breaker[0]["detail"]["state"], "open");
    assert_eq!(suppressions(&out), ["breaker_open"]);
}
