//! Cumulative histogram series through both stages: stage 1 → evidence
//! records (encoded and decoded) → the owner decides as one process does,
//! with keyed raw records (stage 1 turns series into deltas, hands them
//! over when a partition moves) and without (the owner does), through a
//! graceful rebalance and a crash in the middle of the series.

use super::*;
use crate::engine::fold::{Fold, Raw};
use crate::engine::series::Handovers;
use crate::ingest::evidence::{decode, encode, Envelope};
use crate::model::evidence::{Evidence, Item, Origin, RawOffset, Role};
use crate::model::{HistPoint, RequestKind, ResourceIdent, ResourceTelemetry, Temporality};

const TOPIC: &str = "otlp_metrics";
/// The deploy starts at second 900; exports every 10 s from second 1000.
const FIRST: i64 = 1_000;
const EXPORTS: i64 = 40;
/// Series per version; the last one's requests fail.
const SERIES: u64 = 4;

/// Second of export `k`.
fn at(k: i64) -> i64 {
    FIRST + 10 * k
}

/// Export `k` of web at `version`: one cumulative point per series. v1's
/// series started long before the deploy, v2's after it; v2's failing
/// series grows fast.
fn export(version: &str, k: i64) -> TelemetryBatch {
    let candidate = version == "v2";
    let points = (0..SERIES)
        .map(|i| {
            let failing = i == SERIES - 1;
            let per_export = match (candidate, failing) {
                (true, true) => 30,
                (false, true) => 1,
                _ => 50 + 10 * i,
            };
            let count = per_export * (k as u64 + 1);
            HistPoint {
                series: if candidate { 100 + i } else { 200 + i },
                start: Timestamp(if candidate { 950 } else { 100 } * SEC),
                time: Timestamp(at(k) * SEC),
                count,
                bounds: vec![0.5],
                bucket_counts: vec![count - count / 10, count / 10],
                unit_per_sec: 1.0,
                error: failing,
                temporality: Temporality::Cumulative,
                kind: RequestKind::Http,
            }
        })
        .collect();
    TelemetryBatch {
        resources: vec![ResourceTelemetry {
            ident: ResourceIdent {
                service: Some("web".into()),
                version: Some(version.into()),
                ..Default::default()
            },
            spans: Vec::new(),
            points,
        }],
    }
}

/// The raw record of export `k` of `version`: with keys, each version on
/// a partition of its own; without, exports alternate between partitions.
fn record(version: &str, k: i64, keyed: bool) -> (i32, i64) {
    let own = i32::from(version == "v2");
    if keyed {
        (own, k)
    } else {
        ((own + k as i32) % 2, 2 * k + i64::from(own))
    }
}

/// A deployment's engine (deploy d-1 of web v2 over v1 since second 900).
fn watching() -> Engine {
    let mut e = engine("");
    deploy(&mut e, started("d-1", "web", DataMigration::None, 900));
    e
}

/// Window totals of both sides: (requests, errors, slow) each.
fn totals(e: &Engine) -> [(u64, u64, u64); 2] {
    let seq = e.registry.get("d-1").unwrap().seq;
    [Role::Candidate, Role::Baseline].map(|role| {
        e.windows
            .get(&(seq, role))
            .map(|w| {
                let t = w.totals();
                (t.requests, t.errors, t.slow)
            })
            .unwrap_or_default()
    })
}

/// The same exports decided by one process.
struct OneProcess {
    e: Engine,
    commands: Vec<(i64, String)>,
}

impl OneProcess {
    fn new() -> OneProcess {
        OneProcess {
            e: watching(),
            commands: Vec::new(),
        }
    }

    fn export(&mut self, k: i64) {
        let now = Timestamp(at(k) * SEC);
        for v in ["v1", "v2"] {
            self.e.apply(Input::Telemetry(export(v, k)), now);
        }
        let out = self.e.apply(Input::Tick, now);
        self.commands
            .extend(commands(&out).iter().map(|c| (k, c.deploy_id.clone())));
    }
}

/// Stage 1 on instances that come and go, each a fold, and the owner
/// fed the evidence records they send.
struct TwoStages {
    /// Stage 1's view of the deploys.
    intake: Engine,
    keyed: bool,
    /// The instance reading the raw partitions now.
    reader: Fold,
    owner: Engine,
    commands: Vec<(i64, String)>,
    /// Every evidence record sent, in order.
    records: Vec<Vec<u8>>,
}

impl TwoStages {
    fn new(keyed: bool) -> TwoStages {
        TwoStages {
            intake: watching(),
            keyed,
            reader: Fold::default(),
            owner: watching(),
            commands: Vec::new(),
            records: Vec::new(),
        }
    }

    /// The reader reads export `k` of both versions (not sent yet).
    fn read(&mut self, k: i64) {
        let now = Timestamp(at(k) * SEC);
        for v in ["v1", "v2"] {
            let (partition, offset) = record(v, k, self.keyed);
            self.reader.read(TOPIC, partition, offset);
            let raw = RawOffset {
                topic: TOPIC.into(),
                partition,
                offset,
            };
            let raw = Raw {
                offset: &raw,
                keyed: self.keyed,
            };
            self.intake
                .fold_telemetry(&mut self.reader, &export(v, k), Some(raw), now);
        }
    }

    /// Evidence through its record format to the owner.
    fn send(&mut self, evidence: Vec<Evidence>, k: i64) {
        let now = Timestamp(at(k) * SEC);
        for e in evidence {
            let bytes = encode(&e, &Envelope::default());
            let (back, _) = decode(&bytes).unwrap();
            self.owner.apply(Input::Evidence(back), now);
            self.records.push(bytes);
        }
    }

    /// The reader sends what it read; the owner ticks.
    fn flush(&mut self, k: i64) {
        let evidence = self.reader.flush(Origin::Kafka(Vec::new()));
        self.send(evidence, k);
        let out = self.owner.apply(Input::Tick, Timestamp(at(k) * SEC));
        self.commands
            .extend(commands(&out).iter().map(|c| (k, c.deploy_id.clone())));
    }

    fn export(&mut self, k: i64) {
        self.read(k);
        self.flush(k);
    }

    /// The reader's partitions are revoked after export `k`: it hands its
    /// series over, and a new reader takes them.
    fn rebalance(&mut self, k: i64) {
        let mut kept = Handovers::default();
        self.reader.keep_handovers(&mut kept);
        let handovers = kept.take(|_, _| true);
        assert_eq!(handovers.len(), usize::from(self.keyed));
        self.send(handovers, k);
        self.reader = Fold::default();
    }

    /// The reader dies having read export `k` and sent nothing of it; a
    /// new reader starts at the committed offsets (reads `k` again).
    fn crash(&mut self, k: i64) {
        self.read(k);
        self.reader = Fold::default();
    }
}

/// Whole cumulative points (what the owner turns into deltas) and
/// resumed ones among the evidence records.
fn whole_points(records: &[Vec<u8>]) -> (usize, usize) {
    let items: Vec<Item> = records
        .iter()
        .flat_map(|r| decode(r).unwrap().0.items)
        .collect();
    let whole = |resumed: bool| {
        items
            .iter()
            .filter(|i| matches!(i, Item::Cumulative { resume, .. } if resume.is_some() == resumed))
            .count()
    };
    (whole(false), whole(true))
}

#[test]
fn keyed_series_through_both_stages_and_a_graceful_rebalance_decide_as_one_process() {
    let (mut one, mut two) = (OneProcess::new(), TwoStages::new(true));
    for k in 0..EXPORTS {
        one.export(k);
        two.export(k);
        if k == 7 || k == 8 {
            // Twice in a row: the second reader hands over what it was
            // handed, having read one export.
            two.rebalance(k);
        }
        assert_eq!(totals(&two.owner), totals(&one.e), "after export {k}");
    }
    assert!(!one.commands.is_empty(), "the candidate is rolled back");
    assert_eq!(two.commands, one.commands);
    // Whole points: the first of each series, and again after each
    // rebalance; the rest travel as counts.
    let series = 2 * SERIES as usize;
    assert_eq!(whole_points(&two.records), (0, 3 * series));
}

#[test]
fn keyed_series_after_a_crash_lose_one_export_at_most_and_never_count_twice() {
    let (mut one, mut two) = (OneProcess::new(), TwoStages::new(true));
    let crash_at = 12;
    for k in 0..EXPORTS {
        one.export(k);
        if k == crash_at {
            two.crash(k);
        }
        two.export(k);
        let ([oc, ob], [tc, tb]) = (totals(&one.e), totals(&two.owner));
        if k < crash_at {
            assert_eq!((tc, tb), (oc, ob), "after export {k}");
            continue;
        }
        // The new reader's first points are references: what export
        // `crash_at` added is lost (counted neither by the reader that
        // died nor by the new one), nothing more, nothing twice.
        let lost = |v: &str| {
            let (now, before) = (export(v, crash_at), export(v, crash_at - 1));
            let points = now.resources[0].points.iter();
            points
                .zip(&before.resources[0].points)
                .fold((0, 0, 0), |(r, e, s), (p, q)| {
                    let n = p.count - q.count;
                    let slow = p.bucket_counts[1] - q.bucket_counts[1];
                    (r + n, e + if p.error { n } else { 0 }, s + slow)
                })
        };
        let minus = |(a, b, c): (u64, u64, u64), (x, y, z): (u64, u64, u64)| (a - x, b - y, c - z);
        assert_eq!(tc, minus(oc, lost("v2")), "after export {k}");
        assert_eq!(tb, minus(ob, lost("v1")), "after export {k}");
    }
    assert!(
        !two.commands.is_empty(),
        "the candidate is still rolled back"
    );
}

#[test]
fn a_reader_that_reads_a_partition_again_sends_what_counts_once() {
    let (mut one, mut two) = (OneProcess::new(), TwoStages::new(true));
    for k in 0..EXPORTS {
        one.export(k);
        two.export(k);
        if k == 9 {
            // Stopped after sending, before its offsets were committed:
            // the next reader reads exports 8 and 9 again.
            two.reader = Fold::default();
            two.read(8);
            two.read(9);
            two.flush(9);
        }
        assert_eq!(totals(&two.owner), totals(&one.e), "after export {k}");
    }
    assert_eq!(two.commands, one.commands);
}

#[test]
fn unkeyed_series_spread_over_partitions_are_turned_into_deltas_by_the_owner() {
    let (mut one, mut two) = (OneProcess::new(), TwoStages::new(false));
    for k in 0..EXPORTS {
        one.export(k);
        if k == 15 {
            two.crash(k);
        }
        two.export(k);
        if k == 7 {
            two.rebalance(k);
        }
        assert_eq!(totals(&two.owner), totals(&one.e), "after export {k}");
    }
    assert_eq!(two.commands, one.commands);
    let points = (EXPORTS * 2 * SERIES as i64) as usize;
    assert_eq!(whole_points(&two.records), (points, 0));
}

#[test]
fn a_new_owner_reading_the_evidence_back_rebuilds_the_same_windows() {
    let mut two = TwoStages::new(true);
    for k in 0..EXPORTS {
        two.export(k);
        if k == 7 {
            two.rebalance(k);
        }
        if k == 20 {
            two.crash(k + 1);
        }
    }
    let now = Timestamp(at(EXPORTS) * SEC);
    let mut back = watching();
    for (i, r) in two.records.iter().enumerate() {
        back.apply(Input::Evidence(decode(r).unwrap().0), now);
        if i == 5 {
            // A batch sent again counts once.
            back.apply(Input::Evidence(decode(r).unwrap().0), now);
        }
    }
    assert_eq!(totals(&back), totals(&two.owner));
}

#[test]
fn an_owner_that_loses_a_key_and_takes_it_back_rebuilds_the_same_windows() {
    use crate::model::evidence::Ownership;
    for keyed in [true, false] {
        let mut two = TwoStages::new(keyed);
        for k in 0..EXPORTS {
            two.export(k);
            if k == 7 {
                two.rebalance(k);
            }
        }
        let want = totals(&two.owner);
        let now = Timestamp(at(EXPORTS) * SEC);
        let partitions = |owned: &[i32], reading: &[i32]| Ownership::Partitions {
            count: 1,
            owned: owned.iter().copied().collect(),
            reading: reading.iter().copied().collect(),
        };
        two.owner.apply(Input::Own(partitions(&[], &[])), now);
        assert_eq!(totals(&two.owner), [(0, 0, 0); 2], "forgotten");
        two.owner.apply(Input::Own(partitions(&[], &[0])), now);
        for r in &two.records {
            two.owner.apply(Input::Evidence(decode(r).unwrap().0), now);
        }
        two.owner.apply(Input::Own(partitions(&[0], &[])), now);
        assert_eq!(totals(&two.owner), want, "keyed: {keyed}");
    }
}

#[test]
fn a_handover_counts_only_for_the_reader_that_starts_where_it_ends() {
    let mut two = TwoStages::new(true);
    for k in 0..6 {
        two.export(k);
    }
    let mut kept = Handovers::default();
    two.reader.keep_handovers(&mut kept);
    let handovers = kept.take(|_, _| true);
    let before = totals(&two.owner);
    // Nobody hands over: the next reader starts at 6 after a crash, and
    // an old handover (ending at 6) arrives after its first evidence.
    two.reader = Fold::default();
    two.export(6);
    two.send(handovers, 6);
    let after_first = totals(&two.owner);
    assert_eq!(
        after_first, before,
        "first points after a crash are references"
    );
    two.export(7);
    // The stale handover changes nothing: export 7 adds one export.
    let [(c6, ..), _] = after_first;
    let [(c7, ..), _] = totals(&two.owner);
    let per_export: u64 = (0..SERIES)
        .map(|i| if i == SERIES - 1 { 30 } else { 50 + 10 * i })
        .sum();
    assert_eq!(c7 - c6, per_export);
}
