//! Stage 1 on its own: telemetry matched to deploy sides and summed per
//! slot, cumulative points passed on as they are, alerts and manual
//! rollbacks routed to their key, one evidence per key when flushed.

use super::*;
use crate::engine::fold::Fold;
use crate::model::evidence::{Counts, Evidence, Item, Key, Origin, Role};
use crate::model::{HistPoint, RequestKind, Temporality};

/// An engine watching `d-1` (web v2 over v1) since second 900.
fn watching() -> Engine {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    e
}

/// Folds `input` (telemetry) at second `now`: its outcome and the fold.
fn fold(e: &Engine, inputs: &[Input], now: i64) -> (TelemetryOutcome, Fold) {
    let mut fold = Fold::default();
    let mut outcome = TelemetryOutcome::default();
    for input in inputs {
        let Input::Telemetry(batch) = input else {
            panic!("not telemetry");
        };
        let o = e.fold_telemetry(&mut fold, batch, None, Timestamp(now * SEC));
        outcome.observations += o.observations;
        outcome.late += o.late;
        outcome.too_late += o.too_late;
        outcome.unmatched += o.unmatched;
    }
    (outcome, fold)
}

/// The counts items of `evidence`: (side, slot second, metrics?, counts).
fn counts(evidence: &Evidence) -> Vec<(Role, i64, bool, Counts)> {
    evidence
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Counts {
                deploy_id,
                role,
                at,
                metrics,
                counts,
                ..
            } if deploy_id == "d-1" => Some((*role, at.0 / SEC, *metrics, *counts)),
            _ => None,
        })
        .collect()
}

fn requests(requests: u64, errors: u64, points: u64) -> Counts {
    Counts {
        requests,
        errors,
        slow: 0,
        points,
    }
}

/// A histogram point of web at `version`, of `count` requests at second `at`.
fn point(temporality: Temporality, at: i64, count: u64) -> Input {
    let Input::Telemetry(mut batch) = spans("web", "v2", at, 0, 0) else {
        unreachable!()
    };
    batch.resources[0].points.push(HistPoint {
        series: 7,
        start: Timestamp(900 * SEC),
        time: Timestamp(at * SEC),
        count,
        bounds: vec![0.5],
        bucket_counts: vec![count - 1, 1],
        unit_per_sec: 1.0,
        error: false,
        temporality,
        kind: RequestKind::Http,
    });
    Input::Telemetry(batch)
}

#[test]
fn spans_are_summed_per_deploy_side_and_slot() {
    let e = watching();
    let inputs = [
        spans("web", "v2", 950, 3, 1),
        spans("web", "v2", 950, 2, 0),
        spans("web", "v1", 950, 4, 0),
        spans("web", "v2", 951, 1, 1),
    ];
    let (outcome, mut f) = fold(&e, &inputs, 960);
    assert_eq!((outcome.observations, outcome.too_late), (10, 0));
    let evidence = f.flush(Origin::Local);
    assert_eq!(evidence.len(), 1);
    let key = Key {
        service: "web".into(),
        environment: "default".into(),
    };
    assert_eq!(evidence[0].key, key);
    assert_eq!(
        counts(&evidence[0]),
        [
            (Role::Candidate, 950, false, requests(5, 1, 0)),
            (Role::Candidate, 951, false, requests(1, 1, 0)),
            (Role::Baseline, 950, false, requests(4, 0, 0)),
        ]
    );
    assert!(f.is_empty(), "a flush leaves a fresh fold");
}

#[test]
fn before_the_deploy_older_than_its_windows_unmatched_and_too_late_are_told_apart() {
    let e = watching();
    let policy = Config::default().default_policy;
    let (o, f) = fold(&e, &[spans("web", "v2", 899, 3, 0)], 960);
    assert_eq!((o.observations, o.late), (0, 0), "before the deploy");
    assert!(f.is_empty());
    let (o, _) = fold(&e, &[spans("mail", "v2", 950, 3, 0)], 960);
    assert_eq!(o.unmatched, 3);
    let longest = policy.longest().nanos() / SEC;
    let (o, _) = fold(&e, &[spans("web", "v2", 950, 3, 0)], 950 + longest);
    assert_eq!(
        (o.observations, o.late),
        (0, 3),
        "older than the longest window"
    );
    let lateness = policy.allowed_lateness.nanos() / SEC;
    let (o, _) = fold(&e, &[spans("web", "v2", 950, 3, 0)], 952 + lateness);
    assert_eq!((o.observations, o.too_late), (3, 3));
}

#[test]
fn delta_points_are_counted_and_cumulative_points_passed_on_as_they_are() {
    let e = watching();
    let inputs = [
        point(Temporality::Delta, 950, 10),
        point(Temporality::Cumulative, 955, 40),
    ];
    let (o, mut f) = fold(&e, &inputs, 960);
    assert_eq!(o.observations, 2);
    let evidence = f.flush(Origin::Local);
    // A latency threshold of 500 ms: the bucket above 0.5 s is slow.
    let mut delta = requests(10, 0, 1);
    delta.slow = 1;
    assert_eq!(counts(&evidence[0]), [(Role::Candidate, 950, true, delta)]);
    let cumulative: Vec<_> = evidence[0]
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Cumulative {
                series,
                time,
                count,
                slow,
                ..
            } => Some((*series, time.0 / SEC, *count, *slow)),
            _ => None,
        })
        .collect();
    assert_eq!(cumulative, [(7, 955, 40, 1)]);
}

#[test]
fn alerts_and_manual_rollbacks_go_to_the_key_of_their_deploy() {
    let mut e = watching();
    deploy(&mut e, started("d-2", "api", DataMigration::None, 900));
    let mut f = Fold::default();
    let unmatched = e.fold_alerts(
        &mut f,
        vec![alert("web", "a", 950), alert("mail", "b", 950)],
    );
    assert_eq!(unmatched.len(), 1);
    assert_eq!(unmatched[0].fingerprint, "b");
    let key = e.fold_rollback(&mut f, "d-2", "bad", "alice").unwrap();
    assert_eq!(key.service, "api");
    assert!(e.fold_rollback(&mut f, "nope", "bad", "alice").is_none());
    f.read("otlp_spans", 0, 5);
    f.read("otlp_spans", 0, 3);
    let evidence = f.flush(Origin::Kafka(Vec::new()));
    let keys: Vec<&str> = evidence.iter().map(|e| e.key.service.as_str()).collect();
    assert_eq!(keys, ["api", "web"], "one per key, in key order");
    assert!(matches!(&evidence[0].items[..], [Item::Rollback { actor, .. }] if actor == "alice"));
    assert!(matches!(&evidence[1].items[..], [Item::Alerts(a)] if a.len() == 1));
    for e in &evidence {
        assert_eq!(e.origin, Origin::Kafka(vec![("otlp_spans".into(), 0, 5)]));
    }
}

#[test]
fn only_the_kinds_of_request_the_service_counts_are_folded() {
    let mut e = engine("[slo.services.web]\nrequests = [\"rpc\"]\n");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    let Input::Telemetry(mut batch) = spans("web", "v2", 950, 4, 4) else {
        unreachable!()
    };
    let kinds = [
        RequestKind::Http,
        RequestKind::Rpc,
        RequestKind::Messaging,
        RequestKind::Rpc,
    ];
    for (s, kind) in batch.resources[0].spans.iter_mut().zip(kinds) {
        s.kind = kind;
    }
    let Input::Telemetry(with_point) = point(Temporality::Delta, 950, 10) else {
        unreachable!()
    };
    let mut messaging_point = with_point.resources[0].points[0].clone();
    messaging_point.kind = RequestKind::Messaging;
    batch.resources[0].points.push(messaging_point);
    let (o, mut f) = fold(&e, &[Input::Telemetry(batch)], 960);
    assert_eq!(o.observations, 2, "the two RPC spans");
    let evidence = f.flush(Origin::Local);
    assert_eq!(
        counts(&evidence[0]),
        [(Role::Candidate, 950, false, requests(2, 2, 0))]
    );
}

/// Stage 1 reads a raw partition again from an earlier offset before its
/// flush (revoked and assigned anew, or started from its beginning when
/// the group's offsets could not be looked up): what the fold has
/// already is not folded again, so each request counts once at its owner.
#[test]
fn a_raw_record_read_again_before_the_flush_counts_once() {
    use crate::engine::fold::Raw;
    use crate::model::evidence::RawOffset;
    let mut e = watching();
    let mut f = Fold::default();
    let fold_record = |e: &Engine, f: &mut Fold, offset: i64| {
        let raw = RawOffset {
            topic: "otlp_spans".into(),
            partition: 0,
            offset,
        };
        // As intake does: a record the fold has already is skipped.
        if !f.read(&raw.topic, raw.partition, raw.offset) {
            return false;
        }
        let Input::Telemetry(batch) = spans("web", "v2", 950, 1, 0) else {
            unreachable!()
        };
        let raw = Some(Raw {
            offset: &raw,
            keyed: false,
        });
        e.fold_telemetry(f, &batch, raw, Timestamp(960 * SEC));
        true
    };
    for offset in 0..10 {
        assert!(fold_record(&e, &mut f, offset));
    }
    // Assigned anew from the committed offset 5: 5..=9 are in the fold.
    let again: Vec<bool> = (5..15).map(|o| fold_record(&e, &mut f, o)).collect();
    assert_eq!(again, [[false; 5], [true; 5]].concat());
    for evidence in f.flush(Origin::Kafka(Vec::new())) {
        e.apply(Input::Evidence(evidence), Timestamp(960 * SEC));
    }
    tick(&mut e);
    let view = e.deploy_view("d-1").unwrap();
    assert_eq!(view.evaluation.pairs[0].candidate_long.requests, 15);
}
