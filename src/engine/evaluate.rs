//! Multi-window, multi-burn-rate evaluation with attribution (CONTRACT §2).
//!
//! A pure function of a policy, the deploy's start, its candidate and
//! baseline windows, and `now`. It never decides what to *do*: that is the
//! guards' job; it says what the evidence shows.

use serde::Serialize;
use serde_json::json;

use super::window::{SeriesWindows, Sli, WindowCounts};
use crate::config::Policy;
use crate::stats::{significantly_worse, wilson_lower_bound};
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
    /// Over budget, but not significantly worse than the baseline.
    NotSignificant,
    /// Over budget, and the baseline burns just as much: not this deploy.
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
    /// Wilson lower bound of the candidate's long-window bad ratio.
    pub lower_bound: f64,
    pub state: PairState,
}

impl PairEval {
    /// The evidence object of a command (CONTRACT §3.1).
    pub fn evidence(&self) -> serde_json::Value {
        let baseline = if self.baseline_long.requests > 0 {
            json!({
                "requests": self.baseline_long.requests,
                "bad": self.baseline_long.bad(self.sli),
                "burn_long": round3(self.baseline_burn_long),
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
                "lower_bound": round6(self.lower_bound),
                "short_requests": self.candidate_short.requests,
                "short_bad": self.candidate_short.bad(self.sli),
            },
            "baseline": baseline,
        })
    }
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

/// Evaluates every window pair for both SLIs. Pairs are visited in policy
/// order, errors before latency; the first firing pair is the evidence.
pub fn evaluate(
    policy: &Policy,
    deploy_at: Timestamp,
    candidate: Option<&SeriesWindows>,
    baseline: Option<&SeriesWindows>,
    now: Timestamp,
) -> Evaluation {
    let warming = now < deploy_at.saturating_add(policy.warmup);
    let mut pairs = Vec::with_capacity(policy.windows.len() * 2);
    for (w, &(si, li)) in policy.windows.iter().zip(&policy.pair_index) {
        let c_short = candidate.map_or(WindowCounts::EMPTY, |c| c.window(si, now));
        let c_long = candidate.map_or(WindowCounts::EMPTY, |c| c.window(li, now));
        let b_long = baseline.map_or(WindowCounts::EMPTY, |b| b.window(li, now));
        for sli in Sli::ALL {
            let budget = match sli {
                Sli::Errors => policy.error_budget(),
                Sli::Latency => policy.latency_budget(),
            };
            let threshold = w.burn_rate * budget;
            let lower_bound = wilson_lower_bound(c_long.bad(sli), c_long.requests, policy.z);
            let state = if warming {
                PairState::WarmingUp
            } else if c_long.requests < policy.min_requests {
                PairState::InsufficientData
            } else if lower_bound < threshold
                || c_short.requests == 0
                || c_short.ratio(sli) < threshold
            {
                PairState::Ok
            } else if b_long.requests >= policy.min_requests {
                if b_long.ratio(sli) >= threshold {
                    PairState::NotAttributable
                } else if significantly_worse(
                    c_long.bad(sli),
                    c_long.requests,
                    b_long.bad(sli),
                    b_long.requests,
                    policy.z,
                ) {
                    PairState::Fires
                } else {
                    PairState::NotSignificant
                }
            } else {
                PairState::Fires
            };
            pairs.push(PairEval {
                sli,
                short: w.short,
                long: w.long,
                burn_rate: w.burn_rate,
                threshold,
                candidate_short: c_short,
                candidate_long: c_long,
                baseline_long: b_long,
                burn_short: c_short.ratio(sli) / budget,
                burn_long: c_long.ratio(sli) / budget,
                baseline_burn_long: b_long.ratio(sli) / budget,
                lower_bound,
                state,
            });
        }
    }
    let fires = pairs.iter().position(|p| p.state == PairState::Fires);
    let not_attr = pairs
        .iter()
        .position(|p| p.state == PairState::NotAttributable);
    let (verdict, decisive) = if warming {
        (Verdict::WarmingUp, None)
    } else if let Some(i) = fires {
        (Verdict::Rollback, Some(i))
    } else if let Some(i) = not_attr {
        (Verdict::NotAttributable, Some(i))
    } else {
        (Verdict::Healthy, None)
    };
    Evaluation {
        at: now,
        verdict,
        pairs,
        decisive,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::engine::window::Kind;

    const SEC: i64 = 1_000_000_000;

    fn fill(
        w: &mut SeriesWindows,
        from: i64,
        to: i64,
        rps: u64,
        err_per_mille: u64,
        slow_per_mille: u64,
    ) {
        for s in from..to {
            w.add(
                Timestamp(s * SEC),
                Kind::Span,
                rps,
                rps * err_per_mille / 1000,
                rps * slow_per_mille / 1000,
            );
        }
    }

    /// The evaluation of a deploy started at 100 s, at `now_s`.
    fn at(
        p: &Policy,
        cand: &SeriesWindows,
        base: Option<&SeriesWindows>,
        now_s: i64,
    ) -> Evaluation {
        evaluate(
            p,
            Timestamp(100 * SEC),
            Some(cand),
            base,
            Timestamp(now_s * SEC),
        )
    }

    fn setup() -> (std::sync::Arc<Policy>, SeriesWindows, SeriesWindows) {
        let c = Config::default();
        let p = c.default_policy.clone();
        let cand = SeriesWindows::new(&p.lengths);
        let base = SeriesWindows::new(&p.lengths);
        (p, cand, base)
    }

    #[test]
    fn bad_canary_fires_on_errors() {
        let (p, mut cand, mut base) = setup();
        fill(&mut cand, 100, 160, 10, 100, 0);
        fill(&mut base, 100, 160, 40, 1, 0);
        let ev = at(&p, &cand, Some(&base), 160);
        assert_eq!(ev.verdict, Verdict::Rollback);
        let d = ev.decisive_pair().unwrap();
        assert_eq!(d.sli, Sli::Errors);
        assert_eq!(d.short, Duration::from_secs(60));
        assert!(d.burn_long > 14.4);
    }

    #[test]
    fn warmup_and_min_requests_hold_back() {
        let (p, mut cand, _) = setup();
        fill(&mut cand, 100, 120, 10, 500, 0);
        let ev = at(&p, &cand, None, 120);
        assert_eq!(ev.verdict, Verdict::WarmingUp);
        let (p, mut cand, _) = setup();
        fill(&mut cand, 100, 190, 1, 1000, 0); // 90 requests, all bad
        let ev = at(&p, &cand, None, 190);
        assert_eq!(ev.verdict, Verdict::Healthy);
        assert!(ev
            .pairs
            .iter()
            .all(|p| p.state == PairState::InsufficientData));
    }

    #[test]
    fn baseline_burning_too_is_not_attributable() {
        let (p, mut cand, mut base) = setup();
        fill(&mut cand, 100, 200, 50, 60, 0);
        fill(&mut base, 100, 200, 200, 60, 0);
        let ev = at(&p, &cand, Some(&base), 200);
        assert_eq!(ev.verdict, Verdict::NotAttributable);
    }

    #[test]
    fn latency_regression_fires_on_latency() {
        let (p, mut cand, mut base) = setup();
        fill(&mut cand, 100, 200, 10, 0, 200);
        fill(&mut base, 100, 200, 40, 0, 1);
        let ev = at(&p, &cand, Some(&base), 200);
        assert_eq!(ev.verdict, Verdict::Rollback);
        assert_eq!(ev.decisive_pair().unwrap().sli, Sli::Latency);
    }

    #[test]
    fn healthy_canary_stays_healthy() {
        let (p, mut cand, mut base) = setup();
        fill(&mut cand, 100, 400, 10, 0, 0);
        fill(&mut base, 100, 400, 40, 0, 0);
        let ev = at(&p, &cand, Some(&base), 400);
        assert_eq!(ev.verdict, Verdict::Healthy);
        assert!(ev.pairs.iter().all(|p| p.state == PairState::Ok));
    }
}
