//! How long deploys are watched: after completion, with a held-back
//! alert, and the restored version after a rollback.

use super::*;

#[test]
fn completed_deploys_are_watched_then_retired() {
    let mut e = engine("[slo]\nwatch_after_complete = \"1m\"\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let mut done = started("d-1", "web", DataMigration::None, 990);
    done.kind = DeployEventKind::Completed;
    deploy(&mut e, done);
    tick(&mut e);
    assert_eq!(e.active_deploys(), 1);
    set_clock(&mut e, Timestamp(1_051 * SEC));
    tick(&mut e);
    assert_eq!(e.active_deploys(), 0);
    // A late event for it does not bring it back.
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    assert_eq!(e.active_deploys(), 0);
}

#[test]
fn resolved_alerts_clear_a_held_back_trigger() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    guard_call(&mut e, AdminAction::Pause, "oncall");
    assert!(commands(&alerts(&mut e, &[alert("web", "a", 950)])).is_empty());
    let mut resolved = alert("web", "a", 950);
    resolved.status = AlertStatus::Resolved;
    alerts(&mut e, &[resolved]);
    guard_call(&mut e, AdminAction::Resume, "oncall");
    set_clock(&mut e, Timestamp(1_010 * SEC));
    assert!(
        commands(&tick(&mut e)).is_empty(),
        "the alert resolved while paused"
    );
}

/// The restored version's requests `from..to` (seconds), `rps` a second,
/// as evidence for checkout's baseline.
fn baseline_traffic(id: &str, from: i64, to: i64, rps: u64) -> Input {
    use crate::model::evidence::{Evidence, Item, Key, Origin, Role};
    Input::Evidence(Evidence {
        key: Key {
            service: "checkout".into(),
            environment: "default".into(),
        },
        origin: Origin::Local,
        items: (from..to)
            .map(|t| Item::Counts {
                deploy_id: id.into(),
                role: Role::Baseline,
                raw: None,
                at: Timestamp(t * SEC),
                metrics: false,
                counts: crate::model::evidence::Counts {
                    requests: rps,
                    ..Default::default()
                },
            })
            .collect(),
    })
}

fn verification_after(outputs: &[Output]) -> Vec<serde_json::Value> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Audit(a) if a.kind() == "verification" => {
                Some(serde_json::to_value(a).unwrap()["detail"]["after"].clone())
            }
            _ => None,
        })
        .collect()
}

/// A restart during the watch of a restored version reads its traffic
/// back after the result: what it served before the rollback must not
/// count as "after".
#[test]
fn verification_after_a_restart_counts_only_traffic_since_the_rollback() {
    let cfg = "[verify]\nwindow = \"2m\"\n";
    let ev = started("d-v", "checkout", DataMigration::None, 1000);
    let result = |cmd: &str| {
        Input::Result(crate::model::ExecutorResult {
            command_id: cmd.into(),
            deploy_id: "d-v".into(),
            status: crate::model::ResultStatus::Succeeded,
            at: Timestamp(1060 * SEC),
            executor: "x".into(),
            message: String::new(),
        })
    };
    // Live: the rollback at 1001, its result at 1060, traffic throughout.
    let mut live = engine(cfg);
    deploy(&mut live, ev.clone());
    set_clock(&mut live, Timestamp(1001 * SEC));
    let out = manual(&mut live, "d-v", "bad", "alice").unwrap();
    let cmd = commands(&out)[0].clone();
    live.apply(
        baseline_traffic("d-v", 1000, 1060, 10),
        Timestamp(1060 * SEC),
    );
    live.apply(result(&cmd.command_id), Timestamp(1060 * SEC));
    live.apply(
        baseline_traffic("d-v", 1060, 1120, 10),
        Timestamp(1120 * SEC),
    );
    let live_after = verification_after(&live.apply(Input::Tick, Timestamp(1300 * SEC)));
    assert_eq!(live_after.len(), 1);
    assert_eq!(live_after[0]["requests"], 600);
    // Restarted at 1120: control records first, then the evidence read
    // back, from before the rollback too.
    let mut restarted = engine(cfg);
    set_clock(&mut restarted, Timestamp(1120 * SEC));
    deploy(&mut restarted, ev);
    restarted.apply(Input::Command(cmd.clone()), Timestamp(1120 * SEC));
    restarted.apply(result(&cmd.command_id), Timestamp(1120 * SEC));
    restarted.apply(
        baseline_traffic("d-v", 1000, 1120, 10),
        Timestamp(1120 * SEC),
    );
    let after = verification_after(&restarted.apply(Input::Tick, Timestamp(1300 * SEC)));
    assert_eq!(after, live_after);
}
