//! A deploy's sequential tests (`stats::sequential`) and what they have
//! seen: per window pair and SLI, the threshold test (the candidate's bad
//! ratio exceeds burn_rate × budget) over the candidate's requests since
//! the test began; per SLI, the attribution test (the candidate is worse
//! than its baseline) over event-time slots in which both served requests.
//!
//! Tests restart (threshold tests every long window of their pair,
//! attribution tests every longest window); each lives two lengths, so at
//! any time one has seen between one and two lengths of traffic and a late
//! regression is not diluted by hours of good traffic before it. Every
//! test's level is its share of α (`threshold_share`, `attribution_share`),
//! so together they hold at `confidence` over the deploy's whole watch.
//!
//! The baseline has threshold tests of its own, like the candidate's
//! (same thresholds, same epochs): "the baseline burns as much itself"
//! (`not_attributable`) is a test's verdict, not a point estimate. Those
//! tests can only hold a rollback back, never cause one, so they spend
//! nothing of the false-rollback bound; their own family (`2 × pairs`
//! sequences at `threshold_share`) keeps P(a baseline within its thresholds is
//! ever called burning) ≤ 1 − `confidence`.
//!
//! # Event time: watermarks and lateness
//!
//! The attribution test compares both versions over the same event-time
//! slots: the finest window's buckets (one second by default), or the
//! longest window's once either side reports histogram points, whose
//! exports are seconds apart. Telemetry reaches rollbackd late — a
//! Collector's tail sampling holds spans for its decision wait, batches
//! arrive out of order, consumers lag — so when a slot is read is decided
//! by how far the evidence has come, never by the clock alone:
//!
//! - each side's *watermark* is the latest event time added to its
//!   windows; a slot is first read once both watermarks have passed its
//!   end, or once `allowed_lateness` has passed since its end (by the
//!   clock), whichever comes first;
//! - until `allowed_lateness` after its end a slot is read again at every
//!   evaluation, and what arrived since the last read is given to the
//!   tests as a further update of the same slot; after that it is never
//!   read again (evidence later than that is kept out of the pair slots by
//!   intake, counted, and audited as `late_data`);
//! - an update needs new requests from both sides of the same slot: the
//!   test conditions on both sides' requests of an update, so requests
//!   one side brings late are kept waiting — not dropped — and are read
//!   with the other side's next late requests of that slot, as long as its
//!   lateness lasts. Pairing them with requests the test already counted
//!   would count those twice and void its bound; the watermark rule makes
//!   a side's first read complete whenever its evidence arrives in order,
//!   so only a side's own disorder across a slot leaves requests waiting.
//!
//! A watermark is one maximum per side, not a minimum over the side's
//! sources (pods, Collectors, partitions): the engine does not know a
//! side's sources in every mode, and a source that went quiet would hold a
//! minimum back until `allowed_lateness` on every slot. With a maximum a
//! slot may be read before a slower source's part of it arrived; that part
//! is read as a late update (above), so a maximum reads earlier and loses
//! nothing the lateness covers. The remembered slots cover the lateness
//! (`window::pair_slots_kept`, bounded).
//!
//! On-time evidence is read as soon as the next slot's evidence arrives,
//! which is no later than before (then: two slots after its end by the
//! clock). A series that moves from spans to histograms (which it does at
//! most once) starts its attribution tests again rather than count the
//! same requests twice; that restart spends its epoch's level a second
//! time.
//!
//! The tests live in memory: an instance that restarts, or takes a key
//! over, starts them afresh (epoch 0 counts every request it is given
//! again; attribution reads new slots), so the bound holds per owner's
//! watch of a deploy.

use serde::Serialize;

use super::window::{self, Mark, SeriesWindows, Sli, SliSource, WindowCounts};
use crate::config::Policy;
use crate::stats::sequential::{
    attribution_share, threshold_share, ShareState, ShareTest, SHARE_ALTERNATIVES,
};
use crate::time::{Duration, Timestamp};

/// One sequential test's standing: it rejects its null hypothesis when
/// `log_e ≥ needed` (= ln 1/α of the test).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TestResult {
    pub log_e: f64,
    pub needed: f64,
}

impl TestResult {
    pub fn rejects(&self) -> bool {
        self.log_e >= self.needed
    }

    fn margin(&self) -> f64 {
        self.log_e - self.needed
    }
}

/// How many slots are remembered as read: those whose lateness has not run
/// out, and those read for the last time at the next evaluation.
fn ring_len(policy: &Policy) -> usize {
    let finest = policy
        .lengths
        .first()
        .map_or(1, |&l| window::bucket_width(l));
    window::pair_slots_kept(policy.allowed_lateness, policy.evaluation_interval, finest)
}

/// Both sides' totals: everything ever added to their windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    pub candidate: WindowCounts,
    pub baseline: WindowCounts,
}

/// One deploy's sequential tests: what they have seen so far.
#[derive(Debug, Clone)]
pub struct Judge {
    at: Timestamp,
    /// Per window pair: the current threshold-test epoch and the one
    /// before (they restart every long window of the pair).
    epochs: Vec<[Option<Epoch>; 2]>,
    /// The same for the baseline's own threshold tests (whether it burns
    /// as much itself).
    baseline_epochs: Vec<[Option<Epoch>; 2]>,
    /// The attribution tests' current epoch and the one before (they
    /// restart every longest window; one per SLI, whatever the pair).
    share: [Option<ShareEpoch>; 2],
    /// Slots already given to the attribution tests, by slot number
    /// modulo the ring, with what was read of them.
    paired: Vec<Option<Paired>>,
    /// Whose slots are read: `false` the finest window's (spans), `true`
    /// the longest window's once either side reports histogram points
    /// (metric exports are seconds apart and rarely share a fine slot).
    pair_metrics: Option<bool>,
    /// The first slot whose lateness has not run out: every slot before it
    /// was read for the last time.
    open_from: i64,
    /// At the last reading: what it had seen of each side (candidate,
    /// baseline) and the newest slot that was due. Slots due then are read
    /// again only when evidence added since touched them.
    seen: Option<([Mark; 2], i64)>,
    allowed_lateness: Duration,
}

#[derive(Debug, Clone)]
struct Epoch {
    index: u64,
    /// The side's totals when the epoch began.
    start: WindowCounts,
}

#[derive(Debug, Clone)]
struct ShareEpoch {
    index: u64,
    /// Errors, then latency.
    state: [ShareState; 2],
}

/// Moves `epochs` (current, previous) on to epoch `index`.
fn roll<E>(epochs: &mut [Option<E>; 2], index: u64, of: impl Fn(&E) -> u64, fresh: impl Fn() -> E) {
    let [current, previous] = epochs;
    match current.as_ref().map(&of) {
        Some(i) if i == index => {}
        Some(i) if i + 1 == index => *previous = current.replace(fresh()),
        _ => {
            *previous = None;
            *current = Some(fresh());
        }
    }
}

/// Moves one side's threshold-test epochs on to `index`, given the side's
/// `totals` now.
fn roll_rate(epochs: &mut [Option<Epoch>; 2], index: u64, totals: WindowCounts) {
    // The first test counts every request since the deploy started, also
    // those that arrived before its first evaluation.
    let start = if index == 0 && epochs[0].is_none() {
        WindowCounts::EMPTY
    } else {
        totals
    };
    roll(epochs, index, |e| e.index, || Epoch { index, start });
    // A series that moved from spans to metrics starts its count again
    // (once: it never moves back).
    for e in epochs.iter_mut().flatten() {
        if totals.since(e.start).is_none() {
            e.start = totals;
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Paired {
    slot: i64,
    candidate: WindowCounts,
    baseline: WindowCounts,
    /// A side's source changed after the slot was read: never read again.
    frozen: bool,
}

/// Of (ln e-value, α) per epoch, the one closest to rejecting.
fn best(tests: impl Iterator<Item = (f64, f64)>) -> Option<TestResult> {
    tests
        .map(|(log_e, alpha)| TestResult {
            log_e,
            needed: (1.0 / alpha).ln(),
        })
        .max_by(|a, b| a.margin().total_cmp(&b.margin()))
}

impl Judge {
    pub fn new(policy: &Policy, at: Timestamp) -> Judge {
        Judge {
            at,
            epochs: vec![[None, None]; policy.windows.len()],
            baseline_epochs: vec![[None, None]; policy.windows.len()],
            share: [None, None],
            paired: vec![None; ring_len(policy)],
            pair_metrics: None,
            open_from: i64::MIN,
            seen: None,
            allowed_lateness: policy.allowed_lateness,
        }
    }

    /// Bytes of heap and inline state, for the memory bench.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.epochs.len() + self.baseline_epochs.len())
                * std::mem::size_of::<[Option<Epoch>; 2]>()
            + self.paired.len() * std::mem::size_of::<Option<Paired>>()
    }

    /// When the deploy started.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// Feeds the tests what arrived since the last call: restarts the
    /// tests whose epoch ended and gives the attribution tests the slots
    /// that are due (module docs). Returns both sides' totals, which the
    /// threshold tests read.
    pub fn observe(
        &mut self,
        policy: &Policy,
        candidate: Option<&SeriesWindows>,
        baseline: Option<&SeriesWindows>,
        now: Timestamp,
    ) -> Totals {
        let totals = Totals {
            candidate: candidate.map_or(WindowCounts::EMPTY, |c| c.totals()),
            baseline: baseline.map_or(WindowCounts::EMPTY, |b| b.totals()),
        };
        self.start_epochs(policy, totals, now);
        if let (Some(c), Some(b)) = (candidate, baseline) {
            self.pair_slots(c, totals, b, now);
        }
        totals
    }

    fn start_epochs(&mut self, policy: &Policy, totals: Totals, now: Timestamp) {
        let age = now.since(self.at).nanos().max(0);
        let sides = self.epochs.iter_mut().zip(&mut self.baseline_epochs);
        for (w, (candidate, baseline)) in policy.windows.iter().zip(sides) {
            let index = (age / w.long.nanos().max(1)) as u64;
            roll_rate(candidate, index, totals.candidate);
            roll_rate(baseline, index, totals.baseline);
        }
        let index = (age / policy.longest().nanos().max(1)) as u64;
        roll(
            &mut self.share,
            index,
            |e| e.index,
            || ShareEpoch {
                index,
                state: [[0.0; SHARE_ALTERNATIVES]; 2],
            },
        );
    }

    /// Gives the attribution tests the slots that are due: those both
    /// watermarks have passed or whose lateness ran out, first read or
    /// with what arrived since they were read.
    fn pair_slots(
        &mut self,
        cand: &SeriesWindows,
        totals: Totals,
        base: &SeriesWindows,
        now: Timestamp,
    ) {
        let metrics = [totals.candidate, totals.baseline]
            .iter()
            .any(|t| t.source == SliSource::Metrics);
        self.pair_source(metrics);
        let width = cand.pair_width(metrics);
        if width != base.pair_width(metrics) {
            return;
        }
        let (oldest, newest) = self.slots_to_read(cand, base, width, now);
        for slot in oldest..=newest {
            let (c, b) = (cand.pair_slot(metrics, slot), base.pair_slot(metrics, slot));
            if c.requests == 0 && b.requests == 0 {
                continue;
            }
            self.read_slot(slot, c, b);
        }
    }

    /// Reads spans' fine slots, or the longest window's slots once either
    /// side reports histogram points (`metrics`): on a change, what was
    /// read is forgotten.
    fn pair_source(&mut self, metrics: bool) {
        if self.pair_metrics == Some(metrics) {
            return;
        }
        if self.pair_metrics.is_some() {
            // Spans read in fine slots may come again as metrics: the
            // tests start again rather than read requests twice.
            for e in self.share.iter_mut().flatten() {
                e.state = [[0.0; SHARE_ALTERNATIVES]; 2];
            }
        }
        self.paired.fill(None);
        self.pair_metrics = Some(metrics);
        self.open_from = i64::MIN;
        self.seen = None;
    }

    /// The slots (oldest, newest) to read at `now`: those newly due, and
    /// those that evidence added since the last reading reaches back to,
    /// within the ring and not closed. Remembers this reading.
    fn slots_to_read(
        &mut self,
        cand: &SeriesWindows,
        base: &SeriesWindows,
        width: i64,
        now: Timestamp,
    ) -> (i64, i64) {
        let due = due_slots(
            cand.watermark(),
            base.watermark(),
            now,
            self.allowed_lateness,
            width,
        );
        let changed_from = match self.seen {
            None => i64::MIN,
            Some(([c, b], newest)) => [cand.touched_since(c), base.touched_since(b)]
                .into_iter()
                .flatten()
                .map(|t| t.nanos().div_euclid(width))
                .fold(newest.saturating_add(1), i64::min),
        };
        self.seen = Some(([cand.mark(), base.mark()], due.newest));
        let ring = self.paired.len() as i64;
        let oldest = changed_from
            .max(self.open_from)
            .max(self.at.nanos().div_euclid(width))
            .max(due.newest.saturating_sub(ring - 1));
        self.open_from = self.open_from.max(due.closed.saturating_add(1));
        (oldest, due.newest)
    }

    /// Gives the attribution tests what slot `slot` holds now — candidate
    /// `c`, baseline `b` — beyond what was read of it before.
    fn read_slot(&mut self, slot: i64, c: WindowCounts, b: WindowCounts) {
        let ring = self.paired.len() as i64;
        let entry = &mut self.paired[slot.rem_euclid(ring) as usize];
        let seen = entry.filter(|p| p.slot == slot);
        let delta = match seen {
            Some(p) if p.frozen => return,
            None => Some((c, b)),
            Some(p) => c.since(p.candidate).zip(b.since(p.baseline)),
        };
        let Some((dc, db)) = delta else {
            // A side's source changed after the slot was read: what it
            // says now may repeat what was read.
            *entry = Some(Paired {
                slot,
                candidate: c,
                baseline: b,
                frozen: true,
            });
            return;
        };
        if dc.requests == 0 || db.requests == 0 {
            // One side alone is no evidence: its new requests wait for
            // the other side's of this slot (module docs).
            return;
        }
        *entry = Some(Paired {
            slot,
            candidate: c,
            baseline: b,
            frozen: false,
        });
        let test = ShareTest::get();
        for e in self.share.iter_mut().flatten() {
            for sli in Sli::ALL {
                let state = &mut e.state[sli.index()];
                test.update(state, dc.bad(sli), dc.requests, db.bad(sli), db.requests);
            }
        }
    }

    /// The threshold test of pair `i` for `sli` with the most evidence:
    /// one of `2 × pairs` test sequences.
    pub fn rate_test(
        &self,
        policy: &Policy,
        i: usize,
        sli: Sli,
        totals: WindowCounts,
    ) -> Option<TestResult> {
        rate_test(policy, &self.epochs[i], i, sli, totals)
    }

    /// The baseline's own threshold test of pair `i` for `sli` (H0: the
    /// baseline's bad ratio ≤ burn_rate × budget) with the most evidence:
    /// one of `2 × pairs` sequences of their own family (module docs).
    pub fn baseline_test(
        &self,
        policy: &Policy,
        i: usize,
        sli: Sli,
        totals: WindowCounts,
    ) -> Option<TestResult> {
        rate_test(policy, &self.baseline_epochs[i], i, sli, totals)
    }

    /// The attribution test for `sli` with the most evidence: one of 2
    /// test sequences (one per SLI).
    pub fn attribution_test(&self, policy: &Policy, sli: Sli) -> Option<TestResult> {
        let test = ShareTest::get();
        let alpha = 1.0 - policy.confidence;
        best(self.share.iter().flatten().map(|e| {
            let log_e = test.log_e(&e.state[sli.index()]);
            (log_e, alpha * attribution_share(e.index))
        }))
    }
}

/// One side's threshold test of pair `i` for `sli`: the epoch of `epochs`
/// closest to rejecting, each at its level (`threshold_share` of α).
fn rate_test(
    policy: &Policy,
    epochs: &[Option<Epoch>; 2],
    i: usize,
    sli: Sli,
    totals: WindowCounts,
) -> Option<TestResult> {
    let test = &policy.rate_tests[i][sli.index()];
    let burn_rates = policy.windows.iter().map(|w| w.burn_rate);
    best(epochs.iter().flatten().map(|e| {
        let log_e = totals
            .since(e.start)
            .map_or(f64::NEG_INFINITY, |d| test.log_e(d.bad(sli), d.requests));
        let share = threshold_share(burn_rates.clone(), i, e.index);
        (log_e, (1.0 - policy.confidence) * share)
    }))
}

/// Which pair slots (numbers of `width`-wide slots) are due at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Due {
    /// The newest slot to read: both watermarks passed its end, or its
    /// lateness ran out.
    newest: i64,
    /// The newest slot whose lateness ran out: read now for the last time.
    closed: i64,
}

/// The watermark rule (module docs): slot `k` covers `[k·width,
/// (k+1)·width)`; a watermark has passed its end when it is at least
/// `(k+1)·width`; its lateness ran out when `(k+1)·width + lateness ≤ now`.
fn due_slots(
    candidate: Option<Timestamp>,
    baseline: Option<Timestamp>,
    now: Timestamp,
    lateness: Duration,
    width: i64,
) -> Due {
    let passed = match (candidate, baseline) {
        (Some(c), Some(b)) => c.min(b).nanos().div_euclid(width) - 1,
        _ => i64::MIN,
    };
    let closed = now
        .nanos()
        .saturating_sub(lateness.nanos().max(0))
        .div_euclid(width)
        - 1;
    Due {
        newest: passed.max(closed),
        closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::registry::Role;
    use crate::engine::window::Kind;

    const SEC: i64 = 1_000_000_000;

    fn ts(s: i64) -> Timestamp {
        Timestamp(s * SEC)
    }

    fn policy(lateness_s: i64) -> Policy {
        let mut p = (*Config::default().default_policy).clone();
        p.allowed_lateness = Duration::from_secs(lateness_s);
        p
    }

    #[test]
    fn a_slot_is_due_when_both_watermarks_passed_it_or_its_lateness_ran_out() {
        let l = Duration::from_secs(60);
        // Both sides have evidence of second 100: slots up to 99 are due.
        let due = due_slots(Some(ts(100)), Some(ts(130)), ts(131), l, SEC);
        assert_eq!(
            due,
            Due {
                newest: 99,
                closed: 70
            }
        );
        // A side with no evidence yet holds every slot until its lateness.
        let due = due_slots(Some(ts(100)), None, ts(131), l, SEC);
        assert_eq!(due.newest, 70);
        // The clock alone reads nothing newer than the lateness allows.
        let due = due_slots(Some(ts(10)), Some(ts(10)), ts(200), l, SEC);
        assert_eq!(
            due,
            Due {
                newest: 139,
                closed: 139
            }
        );
        // No lateness: a slot closes as it ends.
        let due = due_slots(None, None, ts(200), Duration::ZERO, SEC);
        assert_eq!(due.closed, 199);
    }

    /// A deploy at 0 s whose candidate fails 10 % of 20 rps against a
    /// healthy baseline of 20 rps for its first `seconds`, every second's
    /// evidence of both sides arriving `delay(side, second)` seconds after
    /// it ended; evaluated every second. The attribution test's (errors)
    /// standing at `until`.
    fn late_canary(
        p: &Policy,
        delay: impl Fn(Role, i64) -> i64,
        seconds: i64,
        until: i64,
    ) -> (Judge, Option<TestResult>) {
        let mut c = SeriesWindows::for_policy(p);
        let mut b = SeriesWindows::for_policy(p);
        let mut judge = Judge::new(p, ts(0));
        let mut arrivals: Vec<(i64, Role, i64)> = Vec::new();
        for s in 0..seconds {
            for side in [Role::Candidate, Role::Baseline] {
                arrivals.push((s + 1 + delay(side, s), side, s));
            }
        }
        arrivals.sort();
        let mut next = arrivals.iter().peekable();
        for now in 1..=until {
            while let Some(&&(at, side, s)) = next.peek() {
                if at > now {
                    break;
                }
                next.next();
                let late = window::past_lateness(ts(s), SEC, p.allowed_lateness, ts(now));
                let counts = window::Counts {
                    requests: 20,
                    errors: if side == Role::Candidate { 2 } else { 0 },
                    slow: 0,
                    points: 0,
                };
                let w = if side == Role::Candidate {
                    &mut c
                } else {
                    &mut b
                };
                match late {
                    None => w.add_counts(ts(s), Kind::Span, counts),
                    Some(_) => w.add_late_counts(ts(s), Kind::Span, counts),
                }
            }
            judge.observe(p, Some(&c), Some(&b), ts(now));
        }
        let t = judge.attribution_test(p, Sli::Errors);
        (judge, t)
    }

    #[test]
    fn evidence_thirty_seconds_late_is_still_compared() {
        let p = policy(60);
        let (_, t) = late_canary(&p, |_, _| 30, 150, 150);
        assert!(t.unwrap().rejects(), "{t:?}");
    }

    #[test]
    fn a_late_candidate_is_compared_with_an_on_time_baseline() {
        let p = policy(60);
        let delay = |side, _| if side == Role::Candidate { 25 } else { 0 };
        let (_, t) = late_canary(&p, delay, 150, 150);
        assert!(t.unwrap().rejects(), "{t:?}");
    }

    #[test]
    fn out_of_order_seconds_are_all_read() {
        // Every other second of each side comes 20 s late, the rest on
        // time: the late ones arrive after newer ones were read.
        let p = policy(60);
        let delay = |side, s: i64| match (side, s % 2) {
            (Role::Candidate, 0) | (Role::Baseline, 1) => 20,
            _ => 0,
        };
        let (_, t) = late_canary(&p, delay, 100, 150);
        let on_time = late_canary(&p, |_, _| 0, 100, 150).1;
        // The same evidence in the end, so the same standing.
        assert!((t.unwrap().log_e - on_time.unwrap().log_e).abs() < 1e-9);
    }

    #[test]
    fn evidence_later_than_the_lateness_is_never_compared() {
        let p = policy(20);
        let (_, t) = late_canary(&p, |_, _| 30, 150, 150);
        assert_eq!(
            t.unwrap().log_e,
            ShareTest::get().log_e(&[0.0; SHARE_ALTERNATIVES])
        );
    }

    #[test]
    fn a_side_with_nothing_new_is_read_when_its_lateness_runs_out() {
        // The baseline stops reporting at 60 s: its watermark stays there,
        // and its last slots are read once their lateness ran out.
        let p = policy(30);
        let mut c = SeriesWindows::for_policy(&p);
        let mut b = SeriesWindows::for_policy(&p);
        let mut judge = Judge::new(&p, ts(0));
        let feed = |c: &mut SeriesWindows, b: &mut SeriesWindows, seconds| {
            for s in seconds {
                c.add(ts(s), Kind::Span, 20, 2, 0);
                if s < 60 {
                    b.add(ts(s), Kind::Span, 20, 0, 0);
                }
            }
        };
        feed(&mut c, &mut b, 0..80);
        judge.observe(&p, Some(&c), Some(&b), ts(80));
        let before = judge.attribution_test(&p, Sli::Errors).unwrap().log_e;
        feed(&mut c, &mut b, 80..95);
        judge.observe(&p, Some(&c), Some(&b), ts(95));
        let after = judge.attribution_test(&p, Sli::Errors).unwrap().log_e;
        // Slot 59 (the last both served) is read at 90 s, not at 80 s.
        assert!(after > before, "{before} {after}");
        assert_eq!(judge.open_from, 65);
    }

    #[test]
    fn late_requests_of_one_side_wait_for_the_others() {
        let p = policy(60);
        let mut c = SeriesWindows::for_policy(&p);
        let mut b = SeriesWindows::for_policy(&p);
        let mut judge = Judge::new(&p, ts(0));
        for s in 0..12 {
            c.add(ts(s), Kind::Span, 10, 5, 0);
            b.add(ts(s), Kind::Span, 10, 0, 0);
        }
        judge.observe(&p, Some(&c), Some(&b), ts(12));
        let first = judge.attribution_test(&p, Sli::Errors).unwrap().log_e;
        // Slot 3 gets late candidate requests: alone they wait…
        c.add(ts(3), Kind::Span, 10, 10, 0);
        judge.observe(&p, Some(&c), Some(&b), ts(13));
        assert_eq!(
            judge.attribution_test(&p, Sli::Errors).unwrap().log_e,
            first
        );
        // …until late baseline requests of slot 3 come too.
        b.add(ts(3), Kind::Span, 10, 0, 0);
        judge.observe(&p, Some(&c), Some(&b), ts(14));
        let then = judge.attribution_test(&p, Sli::Errors).unwrap().log_e;
        assert!(then > first, "{first} {then}");
    }

    #[test]
    fn the_remembered_slots_cover_the_lateness() {
        for lateness in [0, 60, 90, 1800] {
            let p = policy(lateness);
            let judge = Judge::new(&p, ts(0));
            assert!(judge.paired.len() as i64 > lateness + 5, "{lateness}");
            assert!(judge.paired.len() <= window::MAX_PAIR_SLOTS);
        }
    }
}
