//! Admin records and calls: pause and resume, breaker resets, manual
//! rollbacks, commands read back, and the burn summary.

use super::*;

#[test]
fn admin_records_apply_once_and_in_time_order() {
    let mut e = engine("[guards]\nbreaker_max_rollbacks = 1\n");
    let rec = |action, at: i64| AdminRecord {
        schema: crate::model::ADMIN_SCHEMA.into(),
        action,
        actor: "alice".into(),
        at: Timestamp(at * SEC),
        instance: String::new(),
        maintenance: None,
    };
    assert!(e.admin_record(&rec(AdminAction::Pause, 900)));
    assert!(e.paused());
    assert!(!e.admin_record(&rec(AdminAction::Pause, 900)), "read back");
    assert!(e.admin_record(&rec(AdminAction::Resume, 950)));
    assert!(
        !e.admin_record(&rec(AdminAction::Pause, 900)),
        "an older pause read late does not undo the resume"
    );
    assert!(!e.paused());
    // The breaker (max 1) opens at 1000; a reset taken before that
    // does not close it, one taken after does, once.
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    assert_eq!(
        commands(&alerts(&mut e, &[alert("web", "a", 950)])).len(),
        1
    );
    assert!(e.breaker_open());
    assert!(!e.admin_record(&rec(AdminAction::BreakerReset, 999)));
    assert!(e.breaker_open());
    assert!(e.admin_record(&rec(AdminAction::BreakerReset, 1000)));
    assert!(!e.breaker_open());
    assert!(!e.admin_record(&rec(AdminAction::BreakerReset, 1000)));
    // Decoding: the schema is checked, garbage refused.
    let ok = serde_json::to_vec(&rec(AdminAction::Pause, 1)).unwrap();
    assert!(AdminRecord::decode(&ok).is_ok());
    let other = String::from_utf8(ok)
        .unwrap()
        .replace("admin/v1", "admin/v9");
    assert!(AdminRecord::decode(other.as_bytes()).is_err());
    assert!(AdminRecord::decode(b"{\"action\": \"explode\"}").is_err());
}

#[test]
fn burn_summary_counts_states_with_bounded_keys() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 990));
    deploy(
        &mut e,
        started("d-2", "db", DataMigration::Irreversible, 990),
    );
    deploy(&mut e, started("d-3", "api", DataMigration::None, 990));
    assert_eq!(
        e.burn_summary().states,
        [("pending", 3)].into_iter().collect()
    );
    tick(&mut e);
    let out = alerts(&mut e, &[alert("web", "a", 995), alert("db", "b", 995)]);
    assert_eq!(commands(&out).len(), 2);
    let s = e.burn_summary();
    assert_eq!(
        s.states,
        [("awaiting_approval", 1), ("commanded", 1), ("healthy", 1)]
            .into_iter()
            .collect()
    );
    // One key per SLI and window pair of the default policy.
    let keys: Vec<_> = s.max_burn.keys().cloned().collect();
    assert_eq!(
        keys,
        [
            ("errors", "1m/5m".to_string()),
            ("errors", "5m/30m".to_string()),
            ("latency", "1m/5m".to_string()),
            ("latency", "5m/30m".to_string())
        ]
    );
}

#[test]
fn manual_rollback_bypasses_pause_cooldown_breaker_and_approval_but_not_once() {
    let mut e = engine("[guards]\nbreaker_max_rollbacks = 1\n[slo.services.db]\ndry_run = true\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    // An automatic rollback opens the breaker (max 1) and starts web's cooldown.
    let out = alerts(&mut e, &[alert("web", "a", 950)]);
    assert_eq!(commands(&out).len(), 1);
    assert!(e.breaker_open());
    guard_call(&mut e, AdminAction::Pause, "oncall");
    // A new web deploy: paused, in cooldown, breaker open — and
    // irreversible, and its service is not dry-run… a person decides.
    deploy(
        &mut e,
        started("d-2", "web", DataMigration::Irreversible, 990),
    );
    let out = alerts(&mut e, &[alert("web", "b", 995)]);
    assert!(commands(&out).is_empty(), "automatic: suppressed");
    let out = manual(&mut e, "d-2", "broken", "alice").unwrap();
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].trigger, Trigger::Manual);
    assert_eq!(
        cmds[0].action,
        Action::Rollback,
        "a manual rollback is the approval"
    );
    assert_eq!(cmds[0].evidence["actor"], "alice");
    // Never twice.
    assert_eq!(
        manual(&mut e, "d-2", "again", "bob"),
        Err(Refusal::AlreadyEmitted(command_id("d-2", Action::Rollback)))
    );
    assert!(matches!(
        manual(&mut e, "nope", "x", "y"),
        Err(Refusal::NotFound(_))
    ));
    // Dry run for a service: audited, not emitted; a person still can.
    guard_call(&mut e, AdminAction::Resume, "oncall");
    guard_call(&mut e, AdminAction::BreakerReset, "oncall");
    deploy(&mut e, started("d-3", "db", DataMigration::None, 999));
    let out = alerts(&mut e, &[alert("db", "c", 999)]);
    assert!(commands(&out).is_empty());
    assert!(out.iter().any(|o| matches!(o, Output::Audit(a) if a.kind() == "suppressed" && a.detail()["reason"] == "dry_run")));
    assert_eq!(commands(&manual(&mut e, "d-3", "x", "y").unwrap()).len(), 1);
}

#[test]
fn restored_commands_are_never_emitted_again() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = alerts(&mut e, &[alert("web", "a", 950)]);
    let cmd = commands(&out)[0].clone();
    // A fresh engine (a restart) that reads the command back first.
    let mut fresh = engine("");
    let now = fresh.now();
    fresh.apply(Input::Command(cmd.clone()), now);
    deploy(&mut fresh, started("d-1", "web", DataMigration::None, 900));
    let out = alerts(&mut fresh, &[alert("web", "a2", 960)]);
    assert!(commands(&out).is_empty());
    assert!(fresh.deploy_view("d-1").unwrap().command_id.is_some());
    // The cooldown came back too: another web deploy waits.
    deploy(&mut fresh, started("d-2", "web", DataMigration::None, 970));
    let out = alerts(&mut fresh, &[alert("web", "b", 975)]);
    assert!(commands(&out).is_empty());
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Audit(a) if a.detail()["reason"] == "cooldown")));
}
