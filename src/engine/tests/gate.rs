//! The gate: pass on evidence of health (and only on it), fail once a
//! rollback is decided, wait otherwise; a pass kept for good and spread
//! through a gate record.

use super::*;
use crate::model::gate::{GateRecord, GateVerdict};

fn verdict(e: &Engine, service: &str) -> GateVerdict {
    e.gate(service, "default", Some("v2")).unwrap().verdict
}

fn gate_records(outputs: &[Output]) -> Vec<&GateRecord> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Gate(g) => Some(g),
            _ => None,
        })
        .collect()
}

/// Ten requests a second on each side, the candidate's first `bad` of
/// them failed, one second at a time from `from`: the first second (and
/// its outputs) at which the gate answers `pass`, if any before `to`.
fn until_pass(e: &mut Engine, from: i64, to: i64, bad: usize) -> Option<(i64, Vec<Output>)> {
    for t in from..to {
        let out = traffic(e, "web", (t, t + 1), bad);
        if verdict(e, "web") == GateVerdict::Pass {
            return Some((t, out));
        }
    }
    None
}

#[test]
fn a_healthy_canary_passes_on_evidence_and_only_then() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Wait);
    assert!(answer.reason.contains("warming up"), "{}", answer.reason);
    traffic(&mut e, "web", (1_000, 1_030), 0);
    // 300 clean requests are not yet evidence of a ratio below 0.6 %.
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Wait);
    assert!(answer.reason.contains("not shown"), "{}", answer.reason);
    let (at, out) = until_pass(&mut e, 1_030, 1_600, 0).expect("passes");
    assert!(at > 1_060, "passed at {at}");
    let records = gate_records(&out);
    assert_eq!(records.len(), 1, "published once");
    assert_eq!(records[0].deploy_id, "d-1");
    let answer = e.gate("web", "default", None).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Pass);
    assert_eq!(answer.since, Some(Timestamp(at * SEC)));
    assert_eq!(answer.evidence["slis"][0]["below_threshold"]["shown"], true);
    assert_eq!(
        answer.evidence["slis"][1]["no_worse_than_baseline"]["shown"],
        true
    );
    assert!(
        answer.reason.starts_with("shown healthy: errors: 0 of"),
        "{}",
        answer.reason
    );
    // Kept for good: later evaluations publish nothing more.
    let later = traffic(&mut e, "web", (at + 1, at + 60), 0);
    assert!(gate_records(&later).is_empty());
}

#[test]
fn a_pass_is_kept_until_a_rollback_is_decided() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    let (at, _) = until_pass(&mut e, 1_000, 1_600, 0).expect("passes");
    // The candidate then fails every request: a pass stays a pass while
    // the evidence builds up, and becomes a fail with the command.
    let mut failed_at = None;
    for t in at + 1..at + 120 {
        let out = traffic(&mut e, "web", (t, t + 1), 10);
        if !commands(&out).is_empty() {
            failed_at = Some(t);
            break;
        }
        assert_eq!(verdict(&e, "web"), GateVerdict::Pass, "at {t}");
    }
    assert!(failed_at.is_some(), "rolled back");
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Fail);
    assert_eq!(
        answer.command_id.as_deref(),
        Some(command_id("d-1", Action::Rollback).as_str())
    );
    assert!(
        answer.reason.starts_with("rollback decided: errors"),
        "{}",
        answer.reason
    );
}

#[test]
fn a_candidate_worse_than_its_baseline_by_the_margin_never_passes() {
    // Errors at 0.4 %: under the lowest threshold (6 × 0.1 %), but worse
    // than a clean baseline by more than half of it.
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    for t in 1_000..2_800 {
        let now = Timestamp(t * SEC);
        e.apply(spans("web", "v1", t, 10, 0), now);
        e.apply(spans("web", "v2", t, 10, usize::from(t % 25 == 0)), now);
        let out = e.apply(Input::Tick, now);
        assert!(commands(&out).is_empty());
        assert!(gate_records(&out).is_empty(), "at {t}");
    }
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Wait);
    assert_eq!(answer.evidence["slis"][0]["below_threshold"]["shown"], true);
    assert_eq!(
        answer.evidence["slis"][0]["no_worse_than_baseline"]["shown"],
        false
    );
}

#[test]
fn min_requests_holds_a_pass_back() {
    let mut e = engine("[slo]\nmin_requests = 50000\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    assert!(until_pass(&mut e, 1_000, 1_400, 0).is_none());
    let answer = e.gate("web", "default", Some("v2")).unwrap();
    assert!(
        answer.reason.contains("4000 of min_requests 50000"),
        "{}",
        answer.reason
    );
}

#[test]
fn manual_rollbacks_fail_and_approvals_wait() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    manual(&mut e, "d-1", "bad deploy", "alice").unwrap();
    assert_eq!(verdict(&e, "web"), GateVerdict::Fail);
    // An irreversible migration: the command asks a person; a controller
    // aborting would be the rollback that waits for them.
    deploy(
        &mut e,
        started("d-2", "api", DataMigration::Irreversible, 1_000),
    );
    traffic(&mut e, "api", (1_000, 1_030), 10);
    let answer = e.gate("api", "default", Some("v2")).unwrap();
    assert!(answer.command_id.is_some());
    assert_eq!(answer.verdict, GateVerdict::Wait);
    assert!(
        answer.reason.starts_with("approval required"),
        "{}",
        answer.reason
    );
}

#[test]
fn unknown_deploys_have_no_answer() {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 1_000));
    assert!(e.gate("web", "default", Some("v3")).is_none());
    assert!(e.gate("web", "production", None).is_none());
    assert!(e.gate("api", "default", None).is_none());
}

#[test]
fn a_gate_record_gives_every_instance_the_pass_even_before_its_deploy() {
    let mut owner = engine("");
    deploy(
        &mut owner,
        started("d-1", "web", DataMigration::None, 1_000),
    );
    let (_, out) = until_pass(&mut owner, 1_000, 1_600, 0).expect("passes");
    let record = gate_records(&out)[0].clone();
    // Another instance reads the admin topic before the deploy events (as
    // at a start): the pass waits for its deploy.
    let mut other = engine("");
    let now = other.now();
    assert!(other.apply(Input::Gate(record.clone()), now).is_empty());
    deploy(
        &mut other,
        started("d-1", "web", DataMigration::None, 1_000),
    );
    let answer = other.gate("web", "default", Some("v2")).unwrap();
    assert_eq!(answer.verdict, GateVerdict::Pass);
    assert_eq!(answer.since, Some(record.passed_at));
    assert_eq!(
        answer.evidence,
        owner.gate("web", "default", Some("v2")).unwrap().evidence
    );
    // Read again: nothing changes.
    other.apply(Input::Gate(record), now);
    assert_eq!(verdict(&other, "web"), GateVerdict::Pass);
}
