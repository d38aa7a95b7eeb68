//! The information limit of a detection row: the expected time of the
//! oracle sequential probability ratio test, which knows the fault's size.
//!
//! The engine does not know how bad a candidate is; an oracle that knows
//! its true bad ratio p1 tests H0: p = p0 against the single alternative
//! p = p1 with Wald's SPRT, the fastest test of its error rates (Wald &
//! Wolfowitz 1948). Under the alternative its expected number of requests
//! is, by Wald's approximation (no overshoot of the boundaries),
//!
//! ```text
//! E[N] ≈ [(1−β)·ln((1−β)/α) + β·ln(β/(1−α))] / KL(p1‖p0)
//! KL(p1‖p0) = p1·ln(p1/p0) + (1−p1)·ln((1−p1)/(1−p0))
//! ```
//!
//! with α = 1 − confidence, β = 0 (a detection row asks for every bad
//! deploy to be caught, so E[N] = ln(1/α) / KL), p0 the lowest threshold
//! the engine tests the SLI against (the pair with the lowest burn rate:
//! burn_rate × budget, 0.6 % of errors for a 99.9 % objective with the
//! default pairs) and p1 the candidate's bad ratio. At the canary's rate
//! that is E[N] / rate seconds. The oracle spends all of α on one test of
//! one SLI over one sequence, needs no baseline, and has no warm-up, so
//! no anytime-valid test that must cover every fault size, both SLIs and
//! late regressions can match it; the ratio says how far the engine is.

use serde::Serialize;

use crate::config::Policy;
use crate::engine::window::Sli;

/// The oracle SPRT of one detection point, and the engine beside it.
#[derive(Debug, Clone, Serialize)]
pub struct Oracle {
    /// p0: the lowest threshold the engine tests the SLI against.
    pub threshold: f64,
    /// KL(p1‖p0), nats per request.
    pub kl: f64,
    /// Wald's E[N] under the alternative, in requests.
    pub requests: f64,
    /// E[N] at the canary's rate, in seconds.
    pub seconds: f64,
    /// The engine's median time to decision over `seconds`; null when no
    /// run was rolled back.
    pub ratio: Option<f64>,
    /// The median run was decided at the end of the warm-up, which bounds
    /// it from below.
    pub warmup_bound: bool,
}

/// KL(p1‖p0) of two Bernoulli distributions, in nats.
pub(crate) fn kl(p1: f64, p0: f64) -> f64 {
    let term = |a: f64, b: f64| if a > 0.0 { a * (a / b).ln() } else { 0.0 };
    term(p1, p0) + term(1.0 - p1, 1.0 - p0)
}

/// Wald's approximation of the SPRT's expected sample size under the
/// alternative, for error rates α and β and information `kl` per request.
pub(crate) fn wald_requests(alpha: f64, beta: f64, kl: f64) -> f64 {
    let term = |w: f64, a: f64, b: f64| if w > 0.0 { w * (a / b).ln() } else { 0.0 };
    (term(1.0 - beta, 1.0 - beta, alpha) + term(beta, beta, 1.0 - alpha)) / kl
}

/// The oracle of a candidate whose `sli` is bad at `p1`, at `canary_rps`,
/// under `policy`; `None` when p1 is not above the lowest threshold (no
/// test should detect it). `p50` is the engine's median time, if any run
/// was rolled back.
pub(crate) fn oracle(
    policy: &Policy,
    sli: Sli,
    p1: f64,
    canary_rps: f64,
    p50: Option<f64>,
) -> Option<Oracle> {
    let p0 = policy.lowest_threshold(sli.budget(policy));
    if !(p0 > 0.0 && p0 < 1.0 && p1 > p0) {
        return None;
    }
    let kl = kl(p1, p0);
    let requests = wald_requests(1.0 - policy.confidence, 0.0, kl);
    let seconds = requests / canary_rps;
    let warmup = policy.warmup.as_secs_f64();
    Some(Oracle {
        threshold: p0,
        kl,
        requests,
        seconds,
        ratio: p50.map(|t| t / seconds),
        warmup_bound: p50.is_some_and(|t| t <= warmup),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn two_percent_errors_at_two_rps_take_the_oracle_147_seconds() {
        let p = Config::default().default_policy;
        let o = oracle(&p, Sli::Errors, 0.02, 2.0, Some(304.0)).unwrap();
        assert!((o.threshold - 0.006).abs() < 1e-12);
        assert!((o.kl - 0.010_18).abs() < 1e-4, "{}", o.kl);
        assert!((o.seconds - 147.2).abs() < 0.5, "{}", o.seconds);
        assert!((o.ratio.unwrap() - 2.07).abs() < 0.01);
        assert!(!o.warmup_bound);
        // Latency against 6 % (99 % objective, 6×): 25 % slow is 16 requests.
        let o = oracle(&p, Sli::Latency, 0.25, 10.0, Some(5.0)).unwrap();
        assert!((o.requests - 16.0).abs() < 0.1, "{}", o.requests);
        assert!(o.warmup_bound);
        // At or below the threshold there is nothing to detect.
        assert!(oracle(&p, Sli::Errors, 0.006, 2.0, None).is_none());
    }

    #[test]
    fn wald_with_misses_needs_fewer_requests() {
        // β = 0: ln(1/α) / KL.
        assert!((wald_requests(0.05, 0.0, 1.0) - 20f64.ln()).abs() < 1e-12);
        // β = 0.1: 0.9·ln(0.9/0.05) + 0.1·ln(0.1/0.95).
        let want = 0.9 * 18f64.ln() + 0.1 * (0.1f64 / 0.95).ln();
        assert!((wald_requests(0.05, 0.1, 2.0) - want / 2.0).abs() < 1e-12);
        assert_eq!(kl(0.3, 0.3), 0.0);
        assert!((kl(1.0, 0.5) - 2f64.ln()).abs() < 1e-12);
    }
}
