//! Maintenance windows (guard 3): configured ones, absolute and weekly,
//! per service or for all; those opened and closed through the admin
//! API; manual rollbacks through them; their place in the chain.

use super::*;
use crate::engine::guards::{Chain, Guards};
use crate::model::MaintenanceCall;

/// The `suppressed` records among `outputs` whose reason is maintenance.
fn held_for_maintenance(outputs: &[Output]) -> Vec<serde_json::Value> {
    audits(outputs, "suppressed")
        .into_iter()
        .filter(|a| a["detail"]["reason"] == "maintenance")
        .collect()
}

/// A maintenance call by alice at the engine's clock.
fn maintenance_call(e: &mut Engine, action: AdminAction, call: MaintenanceCall) -> Vec<Output> {
    let now = e.now();
    let record = AdminRecord {
        schema: crate::model::ADMIN_SCHEMA.into(),
        action,
        actor: "alice".into(),
        at: now,
        instance: String::new(),
        maintenance: Some(call),
    };
    e.apply(Input::AdminCall(AdminCall::Guard(record)), now)
}

fn window(id: &str, services: &[&str], until: Option<i64>) -> MaintenanceCall {
    MaintenanceCall {
        id: id.into(),
        services: services.iter().map(|s| s.to_string()).collect(),
        until: until.map(|s| Timestamp(s * SEC)),
        reason: "database failover".into(),
    }
}

// From 00:16:00 to 00:20:00 on 1970-01-01 (seconds 960 to 1200).
const ABSOLUTE: &str = r#"
[[guards.maintenance]]
name = "failover"
services = ["web"]
start = "1970-01-01T00:16:00Z"
end = "1970-01-01T00:20:00Z"
reason = "database failover"
"#;

#[test]
fn an_absolute_window_holds_its_services_automatic_commands_audited_once() {
    let mut e = engine(ABSOLUTE);
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    deploy(&mut e, started("d-2", "api", DataMigration::None, 900));
    let out = alerts(&mut e, &[alert("web", "a", 950), alert("api", "b", 950)]);
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1, "api is not in the window");
    assert_eq!(cmds[0].service, "api");
    let held = held_for_maintenance(&out);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0]["deploy_id"], "d-1");
    assert_eq!(held[0]["detail"]["detail"]["window"], "failover");
    assert_eq!(held[0]["detail"]["detail"]["until"], "1970-01-01T00:20:00Z");
    // Evaluated again and again inside the window, failing: held, not
    // audited again.
    let out = traffic(&mut e, "web", (1_000, 1_200), 5);
    assert!(commands(&out).is_empty());
    assert!(audits(&out, "suppressed").is_empty());
    // The window ends: the deploy, still failing, is decided again.
    let out = traffic(&mut e, "web", (1_200, 1_260), 5);
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].deploy_id, "d-1");
    assert!(cmds[0].decided_at >= Timestamp(1_200 * SEC));
}

#[test]
fn a_weekly_window_for_every_service() {
    // 1970-01-03 was a Saturday: 02:00–04:00 at +01:00 is 01:00–03:00 UTC,
    // seconds 176_400 to 183_600.
    let toml = r#"
[[guards.maintenance]]
weekly = [{ day = "sat", start = "02:00", end = "04:00", timezone = "+01:00" }]
"#;
    let mut e = engine(toml);
    set_clock(&mut e, Timestamp(180_000 * SEC));
    deploy(&mut e, started("d-1", "web", DataMigration::None, 179_990));
    deploy(&mut e, started("d-2", "api", DataMigration::None, 179_990));
    let out = alerts(
        &mut e,
        &[alert("web", "a", 179_995), alert("api", "b", 179_995)],
    );
    assert!(commands(&out).is_empty());
    let held = held_for_maintenance(&out);
    assert_eq!(held.len(), 2);
    assert_eq!(held[0]["detail"]["detail"]["window"], "maintenance-0");
    assert_eq!(held[0]["detail"]["detail"]["until"], "1970-01-03T03:00:00Z");
    assert_eq!(e.maintenance().len(), 1);
    // After it, a new deploy is rolled back at once.
    set_clock(&mut e, Timestamp(183_600 * SEC));
    assert!(e.maintenance().is_empty());
    deploy(&mut e, started("d-3", "mail", DataMigration::None, 183_590));
    let out = alerts(&mut e, &[alert("mail", "c", 183_595)]);
    assert!(commands(&out).iter().any(|c| c.deploy_id == "d-3"));
}

#[test]
fn a_manual_rollback_goes_through_a_window() {
    let mut e = engine(ABSOLUTE);
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = manual(&mut e, "d-1", "users report errors", "bob").unwrap();
    let cmds = commands(&out);
    assert_eq!(cmds.len(), 1);
    assert_eq!(cmds[0].trigger, Trigger::Manual);
    assert!(held_for_maintenance(&out).is_empty());
}

#[test]
fn a_window_opened_and_closed_through_the_admin_api() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let out = maintenance_call(
        &mut e,
        AdminAction::MaintenanceOpen,
        window("m-1", &["web"], Some(4_600)),
    );
    let opened = audits(&out, "maintenance");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0]["detail"]["state"], "open");
    assert_eq!(opened[0]["detail"]["changed"], true);
    assert_eq!(opened[0]["detail"]["services"], serde_json::json!(["web"]));
    assert_eq!(e.maintenance()[0].name, "m-1");
    assert!(e.maintenance_open("m-1"));
    let out = alerts(&mut e, &[alert("web", "a", 950)]);
    assert!(commands(&out).is_empty());
    assert_eq!(
        held_for_maintenance(&out)[0]["detail"]["detail"]["window"],
        "m-1"
    );
    // Closed early: the deploy, still failing, is decided at an
    // evaluation after it.
    set_clock(&mut e, Timestamp(1_100 * SEC));
    let out = maintenance_call(
        &mut e,
        AdminAction::MaintenanceClose,
        window("m-1", &[], None),
    );
    let closed = audits(&out, "maintenance");
    assert_eq!(closed[0]["detail"]["state"], "closed");
    assert_eq!(closed[0]["detail"]["until"], "1970-01-01T00:18:20Z");
    assert_eq!(closed[0]["detail"]["services"], serde_json::json!(["web"]));
    assert!(!e.maintenance_open("m-1"));
    assert!(e.maintenance().is_empty());
    let out = traffic(&mut e, "web", (1_100, 1_160), 5);
    assert_eq!(commands(&out).len(), 1);
    // Closing again changes nothing; closing an unknown window is not
    // audited.
    let again = maintenance_call(
        &mut e,
        AdminAction::MaintenanceClose,
        window("m-1", &[], None),
    );
    assert_eq!(audits(&again, "maintenance")[0]["detail"]["changed"], false);
    let unknown = maintenance_call(
        &mut e,
        AdminAction::MaintenanceClose,
        window("m-9", &[], None),
    );
    assert!(audits(&unknown, "maintenance").is_empty());
}

#[test]
fn maintenance_records_read_back_apply_once_and_in_order() {
    let mut e = engine("");
    let rec = |action, at: i64, call: MaintenanceCall| AdminRecord {
        schema: crate::model::ADMIN_SCHEMA.into(),
        action,
        actor: "alice".into(),
        at: Timestamp(at * SEC),
        instance: String::new(),
        maintenance: Some(call),
    };
    let open = rec(
        AdminAction::MaintenanceOpen,
        990,
        window("m-2", &[], Some(2_000)),
    );
    let close = rec(AdminAction::MaintenanceClose, 995, window("m-2", &[], None));
    assert!(e.admin_record(&open));
    assert!(e.maintenance_open("m-2"));
    assert!(!e.admin_record(&open), "read twice");
    assert!(e.admin_record(&close));
    assert!(!e.admin_record(&open), "an open read again after its close");
    assert!(!e.maintenance_open("m-2"));
    // Over before it is read: nothing to hold.
    let past = rec(
        AdminAction::MaintenanceOpen,
        10,
        window("m-3", &[], Some(20)),
    );
    e.admin_record(&past);
    assert!(!e.maintenance_open("m-3"));
    // On the wire: a maintenance action needs its window, an open its end.
    let ok = serde_json::to_vec(&open).unwrap();
    assert!(AdminRecord::decode(&ok).is_ok());
    let mut no_window = open.clone();
    no_window.maintenance = None;
    let bytes = serde_json::to_vec(&no_window).unwrap();
    assert!(AdminRecord::decode(&bytes)
        .unwrap_err()
        .contains("without maintenance"));
    let no_end = rec(AdminAction::MaintenanceOpen, 990, window("m-4", &[], None));
    let bytes = serde_json::to_vec(&no_end).unwrap();
    assert!(AdminRecord::decode(&bytes)
        .unwrap_err()
        .contains("maintenance.until"));
}

#[test]
fn maintenance_comes_after_pause_and_before_dry_run() {
    let toml = r#"
[[guards.maintenance]]
start = "1970-01-01T00:00:00Z"
end = "1970-01-02T00:00:00Z"
"#;
    let mut g = Guards::new(&Config::from_toml(toml).unwrap().guards);
    let cmd = Command {
        schema: crate::model::COMMAND_SCHEMA.into(),
        command_id: command_id("d-1", Action::Rollback),
        action: Action::Rollback,
        trigger: Trigger::BurnRate,
        deploy_id: "d-1".into(),
        release_id: None,
        service: "web".into(),
        environment: "default".into(),
        from_version: "v2".into(),
        to_version: Some("v1".into()),
        strategy: None,
        labels: Default::default(),
        evidence: serde_json::Value::Null,
        decided_at: Timestamp(1_000 * SEC),
        issued_at: Timestamp(1_000 * SEC),
    };
    let now = Timestamp(1_000 * SEC);
    let held = |g: &Guards, chain| {
        g.check(chain, Some(&cmd), true, now)
            .map(|s| s.reason().as_str())
    };
    assert_eq!(held(&g, Chain::AUTOMATIC), Some("maintenance"));
    assert_eq!(held(&g, Chain::RELEASE_MEMBER), Some("maintenance"));
    assert_eq!(held(&g, Chain::MANUAL), None);
    assert_eq!(
        g.check(Chain::RELEASE, None, false, now),
        None,
        "a whole release: each member is checked on its own"
    );
    g.set_paused(true, now, "oncall");
    assert_eq!(held(&g, Chain::AUTOMATIC), Some("paused"));
}
