//! Multi-window, multi-burn-rate evaluation with attribution (`docs/guarantees.md#verdicts`).
//!
//! A deploy's [`Judge`] keeps its sequential tests (see `judge`); this
//! module turns them and the windows into a verdict.
//!
//! A pair fires when, after `warmup` and with `min_requests` in the long
//! window (both optional floors), the short and long windows' observed bad
//! ratios are at least the threshold, the threshold test rejects, and —
//! when the baseline has traffic — the baseline is not shown to burn as
//! much itself (else `not_attributable`) and the attribution test rejects.
//! "The baseline burns as much" is the baseline's own threshold test
//! rejecting while its long window is over the threshold — evidence, like
//! every other verdict, not one unlucky error in its first requests.
//! Every test's level is its share of α (`stats::sequential`), so P(a
//! healthy deploy is ever rolled back) ≤ 1 − `confidence` over its whole
//! watch.
//!
//! It never decides what to *do*: that is the guards' job; it says what
//! the evidence shows.

use serde::Serialize;
use serde_json::json;

use super::judge::{Judge, TestResult, Totals};
use super::window::{SeriesWindows, Sli, WindowCounts};
use crate::config::{Policy, WindowPair};
use crate::time::{Duration, Timestamp};

/// What one window pair says about one SLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PairState {
    /// Before `warmup` has passed since the deploy started.
    WarmingUp,
    /// Fewer than `min_requests` in the candidate's long window.
    InsufficientData,
    /// Within budget, or not confidently over it.
    Ok,
    /// Over budget, but not yet shown worse than the baseline.
    NotSignificant,
    /// Over budget, and the baseline is shown to burn over the threshold
    /// itself: not this deploy.
    NotAttributable,
    /// Over budget and attributable to the candidate.
    Fires,
}

/// One (window pair, SLI) evaluation, with every number behind it.
#[derive(Debug, Clone, Serialize)]
pub struct PairEval {
    pub sli: Sli,
    pub short: Duration,
    pub long: Duration,
    pub burn_rate: f64,
    /// `burn_rate × budget`: the bad ratio at which the pair fires.
    pub threshold: f64,
    pub candidate_short: WindowCounts,
    pub candidate_long: WindowCounts,
    pub baseline_long: WindowCounts,
    /// Observed burn rates (bad ratio / budget).
    pub burn_short: f64,
    pub burn_long: f64,
    pub baseline_burn_long: f64,
    /// The threshold test with the most evidence, once the observed ratios
    /// reach the threshold (it is not computed before).
    pub rate_test: Option<TestResult>,
    /// The attribution test with the most evidence, when it was needed.
    pub attribution_test: Option<TestResult>,
    /// The baseline's own threshold test with the most evidence, once its
    /// long window's ratio reaches the threshold while the candidate's
    /// test rejects (it is not computed otherwise).
    pub baseline_test: Option<TestResult>,
    pub state: PairState,
}

impl PairEval {
    /// The evidence object of a command (`docs/formats.md#rollback-commands`).
    pub fn evidence(&self) -> serde_json::Value {
        let baseline = if self.baseline_long.requests > 0 {
            json!({
                "requests": self.baseline_long.requests,
                "bad": self.baseline_long.bad(self.sli),
                "burn_long": round3(self.baseline_burn_long),
                "worse_test": test_json(self.attribution_test),
                "burning_test": test_json(self.baseline_test),
            })
        } else {
            serde_json::Value::Null
        };
        json!({
            "sli": self.sli,
            "short": self.short,
            "long": self.long,
            "burn_rate": self.burn_rate,
            "threshold": round6(self.threshold),
            "source": self.candidate_long.source,
            "candidate": {
                "requests": self.candidate_long.requests,
                "bad": self.candidate_long.bad(self.sli),
                "burn_short": round3(self.burn_short),
                "burn_long": round3(self.burn_long),
                "threshold_test": test_json(self.rate_test),
                "short_requests": self.candidate_short.requests,
                "short_bad": self.candidate_short.bad(self.sli),
            },
            "baseline": baseline,
        })
    }
}

fn test_json(t: Option<TestResult>) -> serde_json::Value {
    t.map_or(
        serde_json::Value::Null,
        |t| json!({"log_e": round3(t.log_e.max(-1e9)), "needed": round3(t.needed)}),
    )
}

fn round3(v: f64) -> f64 {
    (v * 1e3).round() / 1e3
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

pub use crate::model::Verdict;

/// A deploy's evaluation at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub at: Timestamp,
    pub verdict: Verdict,
    pub pairs: Vec<PairEval>,
    /// Index into `pairs` of the evidence behind the verdict, if any.
    pub decisive: Option<usize>,
}

impl Evaluation {
    pub fn decisive_pair(&self) -> Option<&PairEval> {
        self.decisive.and_then(|i| self.pairs.get(i))
    }
}

/// Whether the short and the long window both burn at `threshold` or
/// faster: the observed half of a firing pair (the tests are the other).
pub fn burning(short: WindowCounts, long: WindowCounts, sli: Sli, threshold: f64) -> bool {
    short.requests > 0 && short.ratio(sli) >= threshold && long.ratio(sli) >= threshold
}

/// Feeds `judge`'s tests what arrived since it last looked, then evaluates
/// every window pair for both SLIs at `now`. Pairs are visited in policy
/// order, errors before latency; the first firing pair is the evidence.
pub fn evaluate(
    judge: &mut Judge,
    policy: &Policy,
    candidate: Option<&SeriesWindows>,
    baseline: Option<&SeriesWindows>,
    now: Timestamp,
) -> Evaluation {
    let totals = judge.observe(policy, candidate, baseline, now);
    let warming = now < judge.at().saturating_add(policy.warmup);
    let mut pairs = Vec::with_capacity(policy.windows.len() * 2);
    for (i, (w, &(si, li))) in policy.windows.iter().zip(&policy.pair_index).enumerate() {
        let windows = PairWindows {
            index: i,
            pair: w,
            candidate_short: candidate.map_or(WindowCounts::EMPTY, |c| c.window(si, now)),
            candidate_long: candidate.map_or(WindowCounts::EMPTY, |c| c.window(li, now)),
            baseline_long: baseline.map_or(WindowCounts::EMPTY, |b| b.window(li, now)),
        };
        for sli in Sli::ALL {
            pairs.push(evaluate_pair(judge, policy, &windows, sli, totals, warming));
        }
    }
    let (verdict, decisive) = verdict(&pairs, warming);
    Evaluation {
        at: now,
        verdict,
        pairs,
        decisive,
    }
}

/// One window pair's counts at the time of an evaluation.
struct PairWindows<'a> {
    /// Its place in the policy's windows.
    index: usize,
    pair: &'a WindowPair,
    candidate_short: WindowCounts,
    candidate_long: WindowCounts,
    baseline_long: WindowCounts,
}

/// One window pair for one SLI: whether it burns, the tests that say so,
/// and its state.
fn evaluate_pair(
    judge: &Judge,
    policy: &Policy,
    w: &PairWindows<'_>,
    sli: Sli,
    totals: Totals,
    warming: bool,
) -> PairEval {
    let (c_short, c_long, b_long) = (w.candidate_short, w.candidate_long, w.baseline_long);
    let has_baseline = b_long.requests > 0 && b_long.requests >= policy.min_requests;
    let budget = sli.budget(policy);
    let threshold = w.pair.burn_rate * budget;
    let over = burning(c_short, c_long, sli, threshold);
    let rate_test = over
        .then(|| judge.rate_test(policy, w.index, sli, totals.candidate))
        .flatten();
    let attribution_test = (over && has_baseline)
        .then(|| judge.attribution_test(policy, sli))
        .flatten();
    let rejects = rate_test.is_some_and(|t| t.rejects());
    let baseline_test = (rejects && has_baseline && b_long.ratio(sli) >= threshold)
        .then(|| judge.baseline_test(policy, w.index, sli, totals.baseline))
        .flatten();
    let state = if warming {
        PairState::WarmingUp
    } else if c_long.requests < policy.min_requests {
        PairState::InsufficientData
    } else if !rejects {
        PairState::Ok
    } else if has_baseline {
        if baseline_test.is_some_and(|t| t.rejects()) {
            PairState::NotAttributable
        } else if attribution_test.is_some_and(|t| t.rejects()) {
            PairState::Fires
        } else {
            PairState::NotSignificant
        }
    } else {
        PairState::Fires
    };
    PairEval {
        sli,
        short: w.pair.short,
        long: w.pair.long,
        burn_rate: w.pair.burn_rate,
        threshold,
        candidate_short: c_short,
        candidate_long: c_long,
        baseline_long: b_long,
        burn_short: c_short.ratio(sli) / budget,
        burn_long: c_long.ratio(sli) / budget,
        baseline_burn_long: b_long.ratio(sli) / budget,
        rate_test,
        attribution_test,
        baseline_test,
        state,
    }
}

/// The verdict of evaluated pairs, and the index of the pair behind it:
/// the first that fires, else the first not attributable.
fn verdict(pairs: &[PairEval], warming: bool) -> (Verdict, Option<usize>) {
    let fires = pairs.iter().position(|p| p.state == PairState::Fires);
    let not_attr = pairs
        .iter()
        .position(|p| p.state == PairState::NotAttributable);
    if warming {
        (Verdict::WarmingUp, None)
    } else if let Some(i) = fires {
        (Verdict::Rollback, Some(i))
    } else if let Some(i) = not_attr {
        (Verdict::NotAttributable, Some(i))
    } else {
        (Verdict::Healthy, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::window::Kind;

    const SEC: i64 = 1_000_000_000;

    /// Traffic of one version from second `from` to `to`: requests per
    /// second and bad requests per mille.
    struct Traffic {
        rps: u64,
        err_per_mille: u64,
        slow_per_mille: u64,
    }

    const fn t(rps: u64, err_per_mille: u64, slow_per_mille: u64) -> Traffic {
        Traffic {
            rps,
            err_per_mille,
            slow_per_mille,
        }
    }

    /// A deploy started at `at_s`, fed by `feed(second, candidate,
    /// baseline)` for each second of `seconds` and evaluated after each, as
    /// the engine does: the first (second, evaluation) for which `until`
    /// holds, else the last.
    fn follow(
        p: &Policy,
        at_s: i64,
        seconds: std::ops::Range<i64>,
        mut feed: impl FnMut(i64, &mut SeriesWindows, &mut SeriesWindows),
        until: impl Fn(&Evaluation) -> bool,
    ) -> (i64, Evaluation) {
        let mut c = SeriesWindows::for_policy(p);
        let mut b = SeriesWindows::for_policy(p);
        let mut judge = Judge::new(p, Timestamp(at_s * SEC));
        let mut last = None;
        for s in seconds {
            feed(s, &mut c, &mut b);
            let ev = evaluate(&mut judge, p, Some(&c), Some(&b), Timestamp((s + 1) * SEC));
            if until(&ev) {
                return (s + 1, ev);
            }
            last = Some((s + 1, ev));
        }
        last.expect("at least one second")
    }

    /// A deploy started at 100 s, fed `cand` (and `base`) every second up to
    /// `to_s`; the evaluation at `to_s`.
    fn run(p: &Policy, cand: &Traffic, base: Option<&Traffic>, to_s: i64) -> Evaluation {
        let add = |w: &mut SeriesWindows, s: i64, tr: &Traffic| {
            let (e, sl) = (
                tr.rps * tr.err_per_mille / 1000,
                tr.rps * tr.slow_per_mille / 1000,
            );
            w.add(Timestamp(s * SEC), Kind::Span, tr.rps, e, sl);
        };
        let feed = |s, c: &mut SeriesWindows, b: &mut SeriesWindows| {
            add(c, s, cand);
            if let Some(tr) = base {
                add(b, s, tr);
            }
        };
        follow(p, 100, 100..to_s, feed, |_| false).1
    }

    fn setup() -> std::sync::Arc<Policy> {
        Config::default().default_policy.clone()
    }

    #[test]
    fn bad_canary_fires_on_errors() {
        let p = setup();
        let ev = run(&p, &t(10, 100, 0), Some(&t(40, 1, 0)), 160);
        assert_eq!(ev.verdict, Verdict::Rollback);
        let d = ev.decisive_pair().unwrap();
        assert_eq!(d.sli, Sli::Errors);
        assert!(d.burn_long > 14.4);
        assert!(d.rate_test.unwrap().rejects());
        assert!(d.attribution_test.unwrap().rejects());
    }

    #[test]
    fn a_failing_canary_is_caught_as_soon_as_warmup_ends() {
        let p = setup();
        assert_eq!(p.warmup, Duration::from_secs(5));
        let ev = run(&p, &t(10, 1000, 0), Some(&t(90, 0, 0)), 104);
        assert_eq!(ev.verdict, Verdict::WarmingUp);
        let ev = run(&p, &t(10, 1000, 0), Some(&t(90, 0, 0)), 105);
        assert_eq!(ev.verdict, Verdict::Rollback);
    }

    #[test]
    fn floors_hold_back_when_set() {
        let mut p = (*setup()).clone();
        p.warmup = Duration::from_secs(30);
        p.min_requests = 100;
        let ev = run(&p, &t(10, 500, 0), None, 120);
        assert_eq!(ev.verdict, Verdict::WarmingUp);
        let p = Policy {
            warmup: Duration::ZERO,
            ..p
        };
        let ev = run(&p, &t(1, 1000, 0), None, 190); // 90 requests, all bad
        assert_eq!(ev.verdict, Verdict::Healthy);
        assert!(ev
            .pairs
            .iter()
            .all(|p| p.state == PairState::InsufficientData));
    }

    #[test]
    fn baseline_burning_too_is_not_attributable() {
        let p = setup();
        let ev = run(&p, &t(50, 60, 0), Some(&t(200, 60, 0)), 200);
        assert_eq!(ev.verdict, Verdict::NotAttributable);
    }

    #[test]
    fn one_early_baseline_error_is_no_evidence_that_the_baseline_burns() {
        // The baseline's 50th request (of 1 a second) fails: 2 % of its
        // first requests, over the 0.6 % at which the 6x pair fires. A
        // point estimate called that "not attributable"; its test does not.
        let p = setup();
        let feed = |s, c: &mut SeriesWindows, b: &mut SeriesWindows| {
            c.add(Timestamp(s * SEC), Kind::Span, 10, 1, 0);
            b.add(Timestamp(s * SEC), Kind::Span, 1, u64::from(s == 49), 0);
        };
        let decided =
            |ev: &Evaluation| matches!(ev.verdict, Verdict::Rollback | Verdict::NotAttributable);
        let (at, ev) = follow(&p, 0, 0..600, feed, decided);
        assert_eq!(ev.verdict, Verdict::Rollback, "at {at} s: {:?}", ev.pairs);
        let slow_burn = &ev.pairs[2];
        assert!(
            slow_burn.baseline_burn_long >= 6.0 || at < 50,
            "{slow_burn:?}"
        );
    }

    #[test]
    fn a_dependency_failing_both_versions_is_not_attributable() {
        let p = setup();
        let ev = run(&p, &t(20, 200, 0), Some(&t(80, 200, 0)), 160);
        assert_eq!(ev.verdict, Verdict::NotAttributable);
        let d = ev.decisive_pair().unwrap();
        assert!(d.baseline_test.unwrap().rejects());
        assert!(!d.attribution_test.is_some_and(|t| t.rejects()));
    }

    #[test]
    fn attribution_needs_both_versions_serving_at_the_same_time() {
        // The baseline served only in the first 10 s, the candidate fails
        // from 20 s on: over budget, but nothing says it is worse than the
        // baseline at the same time — not significant (yet).
        let p = setup();
        let feed = |s, c: &mut SeriesWindows, b: &mut SeriesWindows| {
            let bad = if s >= 20 { 10 } else { 0 };
            c.add(Timestamp(s * SEC), Kind::Span, 100, bad, 0);
            if s < 10 {
                b.add(Timestamp(s * SEC), Kind::Span, 100, 0, 0);
            }
        };
        let (_, ev) = follow(&p, 0, 0..60, feed, |_| false);
        assert_eq!(ev.verdict, Verdict::Healthy);
        let first = &ev.pairs[0];
        assert!(first.rate_test.unwrap().rejects());
        assert_eq!(first.state, PairState::NotSignificant);
    }

    #[test]
    fn metrics_exported_at_different_moments_are_still_compared() {
        // Histogram exports every 15 s, the candidate's at :00, the
        // baseline's at :07: never in the same one-second slot, always in
        // the same 30 s one.
        let p = setup();
        let feed = |s, c: &mut SeriesWindows, b: &mut SeriesWindows| {
            if s % 15 == 0 {
                c.add(Timestamp(s * SEC), Kind::Metric, 150, 15, 0);
            }
            if s % 15 == 7 {
                b.add(Timestamp(s * SEC), Kind::Metric, 1350, 1, 0);
            }
        };
        let rollback = |ev: &Evaluation| ev.verdict == Verdict::Rollback;
        let (at, ev) = follow(&p, 0, 0..600, feed, rollback);
        assert!(rollback(&ev), "caught");
        assert!(at <= 180, "decided at {at} s");
    }

    #[test]
    fn latency_regression_fires_on_latency() {
        let p = setup();
        let ev = run(&p, &t(10, 0, 200), Some(&t(40, 0, 1)), 200);
        assert_eq!(ev.verdict, Verdict::Rollback);
        assert_eq!(ev.decisive_pair().unwrap().sli, Sli::Latency);
    }

    #[test]
    fn healthy_canary_stays_healthy() {
        let p = setup();
        let ev = run(&p, &t(10, 0, 0), Some(&t(40, 0, 0)), 400);
        assert_eq!(ev.verdict, Verdict::Healthy);
        assert!(ev.pairs.iter().all(|p| p.state == PairState::Ok));
    }

    #[test]
    fn a_late_regression_is_caught_by_a_later_test() {
        // Healthy for an hour, then 5 % errors: the tests that began after
        // the regression are not diluted by the hour before it.
        let p = setup();
        let feed = |s, c: &mut SeriesWindows, b: &mut SeriesWindows| {
            let bad = u64::from(s >= 3600 && s % 2 == 0);
            c.add(Timestamp(s * SEC), Kind::Span, 10, bad, 0);
            b.add(Timestamp(s * SEC), Kind::Span, 90, 0, 0);
        };
        let rollback = |ev: &Evaluation| ev.verdict == Verdict::Rollback;
        let (at, ev) = follow(&p, 0, 0..7200, feed, rollback);
        assert!(rollback(&ev), "caught");
        let after = at - 3600;
        assert!(after < 600, "{after} s after the regression began");
    }
}
