//! Anytime-valid sequential tests: e-processes built by the method of
//! mixtures (Robbins 1970; Howard, Ramdas, McAuliffe & Sekhon, "Time-uniform,
//! nonparametric, nonasymptotic confidence sequences", Ann. Stat. 2021).
//!
//! # The threshold test ([`RateTest`])
//!
//! H0: the candidate's bad ratio p ≤ θ (θ = burn_rate × budget). After `n`
//! requests of which `k` were bad, for an alternative q > θ the likelihood
//! ratio is
//!
//! ```text
//! L_q(n, k) = (q/θ)^k · ((1−q)/(1−θ))^(n−k)
//! ```
//!
//! One request multiplies it by q/θ (bad) or (1−q)/(1−θ) (good), whose
//! expectation is 1 + (p − θ)·(q/θ − (1−q)/(1−θ)) ≤ 1 when p ≤ θ < q: a
//! nonnegative supermartingale under every p in H0. The test uses the
//! mixture E(n, k) = Σ_j w_j·L_{q_j}(n, k) (Σ_j w_j = 1; a mixture of
//! supermartingales is one) and rejects H0 when E ≥ 1/α. Ville's
//! inequality gives P_H0(E ever ≥ 1/α) ≤ α.
//!
//! The mixture is the price of not knowing the fault's size: at the
//! rejection, E is about w_j·L_{q_j} for the alternative q_j nearest the
//! true ratio, so the test needs ln(1/w_j) more evidence than the
//! likelihood-ratio test that knows it (the oracle of `simulate`). The
//! weights are where the time is: a fault many times the threshold is
//! caught within seconds whatever its weight, one a few times over it
//! takes minutes, and every nat of evidence is minutes more. So the core
//! of the grid — q_j = θ·1.5^j from 1.5·θ while below 16·θ, six
//! alternatives whatever θ — holds 0.9 of the weight, evenly, and the tail
//! above it (a step of 2.25 up to 0.99) holds 0.1: a core alternative
//! costs ln(6/0.9) ≈ 1.9 nats, a tail one ln(40) ≈ 3.7 where the grid of
//! 14 equal weights before cost ln 14 ≈ 2.6 everywhere. A ratio below
//! 1.5·θ is still detected (the nearest alternative's likelihood ratio
//! grows too), only more slowly.
//!
//! # The attribution test ([`ShareTest`])
//!
//! H0: the candidate's bad ratio is no higher than its baseline's. Requests
//! are counted in event-time slots; in one slot the candidate served n_c
//! and the baseline n_b requests, k of them bad, k_c on the candidate. If
//! both have the same bad ratio in that slot, then given (n_c, n_b, k), k_c
//! is hypergeometric; if the candidate's is lower, it is stochastically
//! smaller still. For an alternative "the candidate's bad ratio is δ times
//! the baseline's", with s = n_c / (n_c + n_b) the candidate's share of the
//! slot, the slot contributes the factor
//!
//! ```text
//! δ^k_c / (δ·s + 1 − s)^k
//! ```
//!
//! whose conditional expectation under H0 is ≤ 1: for the binomial it is
//! exactly 1, and sampling without replacement is dominated in convex order
//! (Hoeffding 1963, Theorem 4), δ^x being convex. The product over slots is
//! a supermartingale whatever the traffic split does from slot to slot and
//! whatever both versions' common bad ratio does over time (a shared
//! dependency failing) — the conditioning on bad events and the current
//! split is the counting-process construction of Lindon & Malek,
//! "Anytime-Valid Inference for Multinomial Count Data" (NeurIPS 2022), as
//! used for canary testing in Lindon, Sanden & Shirikian, "Rapid Regression
//! Detection in Software Deployments through Sequential Testing" (KDD 2022).
//! Mixed over δ_j = 1.5·1.75^j (j < 12) with equal weights, it rejects at
//! 1/α like the threshold test.
//!
//! # The margin test ([`MarginTest`])
//!
//! H0: the candidate's bad ratio p_c ≥ p_b + m, its baseline's plus a
//! margin m — the candidate is worse by the margin or more. Its rejection,
//! with the reverse threshold test's ([`RateTest::below`]), is what the
//! gate calls evidence of health. The baseline's ratios up to `upto` are
//! split into cells [ℓ_j, ℓ_{j+1}] (ℓ_0 = 0, then `upto`/2^5, …, `upto`);
//! in cell j the e-value is the product
//!
//! ```text
//! E_j = B_{ℓ_j + m}(candidate) · (1 + A_{ℓ_{j+1}}(baseline)) / 2
//! ```
//!
//! of the candidate's reverse threshold test of H0: p_c ≥ ℓ_j + m and the
//! baseline's threshold test of H0: p_b ≤ ℓ_{j+1}, averaged with 1 so that
//! a baseline with little evidence costs at most a factor of 2. Under a
//! null pair whose p_b lies in cell j both factors are supermartingales
//! (p_c ≥ p_b + m ≥ ℓ_j + m, and p_b ≤ ℓ_{j+1}), and so is their product:
//! each request moves one of them, the other side's requests being
//! independent of it. The test's e-value is the least over the cells,
//! never more than the cell of the true p_b, so Ville's inequality holds
//! for it. A null pair with p_b above `upto` has p_c above `upto` + m: the
//! caller's threshold test at `upto` + m covers it.
//!
//! # Many tests, one promise
//!
//! A verdict may come from any window pair and either SLI, and a deploy's
//! tests restart (threshold tests every long window of their pair,
//! attribution tests every longest window) so that a regression an hour
//! into a deploy is not diluted by the hour before. α is spent over each
//! family by a union bound, so P(any test of a family ever rejects
//! wrongly) ≤ α:
//!
//! - threshold tests ([`threshold_share`]): half of α per SLI. Every
//!   pair's first test counts the same requests, those since the deploy
//!   started, and there the pair with the lowest threshold sees the most
//!   evidence of any fault over the others' thresholds (a pair fires only
//!   when its windows' ratio is at least its threshold, and for such data
//!   the likelihood ratio against the lowest threshold is the larger). So
//!   that first test gets [`FIRST_TEST`] = 0.9 of the SLI's half; every
//!   pair's sequence of the other tests (restarts, and the other pairs'
//!   first tests) an even part of the rest, of which its j-th test gets
//!   1/((j+1)(j+2)). With the default pairs the test that catches a
//!   fault present from the start holds 0.45·α, where an even split of
//!   pairs and restarts gave it α/8 — 1.3 nats less evidence needed;
//!   the slow pair's test k ≥ 1 holds 0.025·α/(k(k+1)), the fast pair's
//!   test k 0.025·α/((k+1)(k+2)).
//! - attribution tests ([`attribution_share`]): [`ATTRIBUTION_SPEND`] =
//!   0.12 of α, half per SLI, test k getting 1/((k+1)(k+2)) of it: a
//!   deploy identical to its baseline is rolled back with probability
//!   ≤ 0.12·α. A candidate identical to its baseline and near its
//!   threshold is rolled back only when both its tests err at once, which
//!   `simulate` measures to happen about as often as the product of their
//!   levels: 0.45 × 0.03 of α² is less than the 1/8 × 1/4 of the even
//!   split, so the threshold test's larger share does not roll back more
//!   healthy deploys. The attribution test sees both versions' traffic
//!   and is seldom the one a detection waits for — except when the
//!   candidate takes a large share of the traffic, where each bad request
//!   tells less about which version is worse (a 50/50 split: at most ln 2
//!   nats each), and there it costs a few bad requests more.
//!
//! A rollback needs a threshold test to reject (and, with a baseline, an
//! attribution test too), so a deploy within its thresholds, or identical
//! to its baseline, is rolled back with probability ≤ α. The baseline's own
//! threshold tests (is the baseline burning too: `not_attributable`) can
//! only hold a rollback back, so they spend nothing of that α; as their own
//! family, split like the candidate's, they call a baseline within its
//! thresholds burning with probability ≤ α.

/// ln Σ exp(x_i), stable; −∞ for an empty slice.
pub fn log_sum_exp(xs: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = xs.clone().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    max + xs.map(|x| (x - max).exp()).sum::<f64>().ln()
}

/// The threshold test's alternatives (module docs): a step of 1.5 from
/// 1.5·θ while below 16·θ (the core)…
const CORE_STEP: f64 = 1.5;
const CORE_REACH: f64 = 16.0;
/// …which weighs 0.9 in all; above it a step of 2.25 up to 0.99 (the
/// tail), weighing the rest.
const CORE_WEIGHT: f64 = 0.9;
const TAIL_STEP: f64 = 2.25;

/// Of one SLI's share of α, what the first threshold test of the pair
/// with the lowest burn rate gets (module docs).
pub const FIRST_TEST: f64 = 0.9;

/// The share of α = 1 − confidence of threshold test `epoch` (0, 1, 2, …)
/// of pair `i`, among pairs of `burn_rates`, for one of the two SLIs: of
/// the SLI's half, [`FIRST_TEST`] for the first test of the first pair
/// with the lowest burn rate; every pair's sequence of the others (that
/// pair's from its second test on) gets (1 − [`FIRST_TEST`]) / pairs, of
/// which its j-th test (j = 0, 1, …) gets 1 / ((j + 1)(j + 2)). The
/// shares sum to 1 over both SLIs, every pair and every epoch.
pub fn threshold_share(burn_rates: impl Iterator<Item = f64> + Clone, i: usize, epoch: u64) -> f64 {
    let pairs = burn_rates.clone().count().max(1);
    let lowest = burn_rates
        .enumerate()
        .fold(
            (0, f64::INFINITY),
            |(at, low), (j, r)| {
                if r < low {
                    (j, r)
                } else {
                    (at, low)
                }
            },
        )
        .0;
    let j = match (i == lowest, epoch) {
        (true, 0) => return FIRST_TEST / 2.0,
        (true, k) => k - 1,
        (false, k) => k,
    } as f64;
    (1.0 - FIRST_TEST) / pairs as f64 / ((j + 1.0) * (j + 2.0)) / 2.0
}

/// The share of α the attribution tests spend in all (module docs).
pub const ATTRIBUTION_SPEND: f64 = 0.12;

/// The share of α = 1 − confidence of attribution test `epoch` (0, 1, 2, …)
/// for one of the two SLIs: half of [`ATTRIBUTION_SPEND`], of which test
/// k gets 1 / ((k + 1)(k + 2)).
pub fn attribution_share(epoch: u64) -> f64 {
    let k = epoch as f64;
    ATTRIBUTION_SPEND / 2.0 / ((k + 1.0) * (k + 2.0))
}

/// The mixture likelihood-ratio test of H0: p ≤ θ (module docs), or, built
/// with [`RateTest::below`], of H0: p ≥ θ (alternatives q < θ: each factor's
/// expectation 1 + (p − θ)·(q/θ − (1−q)/(1−θ)) is ≤ 1 when p ≥ θ > q).
#[derive(Debug, Clone, PartialEq)]
pub struct RateTest {
    /// Per alternative: ln of its weight, ln(q/θ) and ln((1−q)/(1−θ)).
    terms: Vec<(f64, f64, f64)>,
}

impl RateTest {
    pub fn new(theta: f64) -> RateTest {
        if !(theta > 0.0 && theta < 1.0) {
            return RateTest::mixture(theta, &[]);
        }
        if theta * CORE_STEP >= 0.99 {
            return RateTest::mixture(theta, &[((theta + 1.0) / 2.0, 1.0)]);
        }
        let (mut core, mut tail) = (Vec::new(), Vec::new());
        let mut q = theta * CORE_STEP;
        while q < 0.99 && q < theta * CORE_REACH {
            core.push(q);
            q *= CORE_STEP;
        }
        while q < 0.99 {
            tail.push(q);
            q *= TAIL_STEP;
        }
        tail.push(0.99);
        let core_weight = if tail.is_empty() { 1.0 } else { CORE_WEIGHT };
        let weighted: Vec<(f64, f64)> = core
            .iter()
            .map(|&q| (q, core_weight / core.len() as f64))
            .chain(
                tail.iter()
                    .map(|&q| (q, (1.0 - core_weight) / tail.len() as f64)),
            )
            .collect();
        RateTest::mixture(theta, &weighted)
    }

    /// The test of H0: p ≥ θ — rejecting it says the ratio is below θ.
    pub fn below(theta: f64) -> RateTest {
        let qs: Vec<(f64, f64)> = if theta > 0.0 && theta < 1.0 {
            let m = [0.8, 0.5, 0.25, 0.1, 0.03, 0.01, 0.001];
            m.iter().map(|m| (theta * m, 1.0 / 7.0)).collect()
        } else {
            Vec::new()
        };
        RateTest::mixture(theta, &qs)
    }

    /// The mixture over the alternatives `qs` (q, weight; the weights sum
    /// to 1) against θ.
    fn mixture(theta: f64, qs: &[(f64, f64)]) -> RateTest {
        let terms: Vec<(f64, f64, f64)> = qs
            .iter()
            .map(|&(q, w)| (w.ln(), (q / theta).ln(), ((1.0 - q) / (1.0 - theta)).ln()))
            .collect();
        RateTest { terms }
    }

    /// ln of the e-value after `bad` of `n` requests (−∞ when θ ≥ 1: such a
    /// threshold can never be exceeded).
    pub fn log_e(&self, bad: u64, n: u64) -> f64 {
        let (k, rest) = (bad.min(n) as f64, n.saturating_sub(bad) as f64);
        log_sum_exp(self.terms.iter().map(|&(w, a, b)| w + k * a + rest * b))
    }
}

/// How many cells [`MarginTest`] splits the baseline's bad ratios into.
pub const MARGIN_CELLS: usize = 6;

/// The test of H0: the candidate's bad ratio is at least its baseline's
/// plus a margin (module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct MarginTest {
    /// Per cell [ℓ_j, ℓ_{j+1}] of the baseline's ratio: the candidate's
    /// test of H0: p_c ≥ ℓ_j + m, the baseline's of H0: p_b ≤ ℓ_{j+1}.
    cells: Vec<(RateTest, RateTest)>,
}

impl MarginTest {
    /// Margin `margin`, over baseline ratios from 0 to `upto`.
    pub fn new(margin: f64, upto: f64) -> MarginTest {
        let edges: Vec<f64> = std::iter::once(0.0)
            .chain((0..MARGIN_CELLS).rev().map(|j| upto / 2f64.powi(j as i32)))
            .collect();
        MarginTest {
            cells: edges
                .windows(2)
                .map(|e| (RateTest::below(e[0] + margin), RateTest::new(e[1])))
                .collect(),
        }
    }

    /// ln of the e-value after `bad_c` of the candidate's `n_c` requests
    /// and `bad_b` of the baseline's `n_b`.
    pub fn log_e(&self, bad_c: u64, n_c: u64, bad_b: u64, n_b: u64) -> f64 {
        self.cells
            .iter()
            .map(|(c, b)| {
                let baseline = log_sum_exp([0.0, b.log_e(bad_b, n_b)].into_iter()) - 2f64.ln();
                c.log_e(bad_c, n_c) + baseline
            })
            .fold(f64::INFINITY, f64::min)
    }
}

/// The alternatives of [`ShareTest`]: how many times worse the candidate is.
pub const SHARE_ALTERNATIVES: usize = 12;

/// The counting-process test of H0: candidate no worse than baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShareTest {
    deltas: [f64; SHARE_ALTERNATIVES],
    log_deltas: [f64; SHARE_ALTERNATIVES],
}

/// The running log-likelihood ratio of each alternative of a [`ShareTest`].
pub type ShareState = [f64; SHARE_ALTERNATIVES];

impl Default for ShareTest {
    fn default() -> Self {
        let deltas: [f64; SHARE_ALTERNATIVES] =
            std::array::from_fn(|j| 1.5 * 1.75f64.powi(j as i32));
        ShareTest {
            log_deltas: deltas.map(f64::ln),
            deltas,
        }
    }
}

impl ShareTest {
    /// The one test every deploy uses (its alternatives are fixed).
    pub fn get() -> &'static ShareTest {
        static TEST: std::sync::OnceLock<ShareTest> = std::sync::OnceLock::new();
        TEST.get_or_init(ShareTest::default)
    }

    /// Adds one slot: the candidate's `n_c` requests with `bad_c` bad, the
    /// baseline's `n_b` with `bad_b` bad. A slot with no bad request, or
    /// with only one side's traffic, carries no evidence either way.
    pub fn update(&self, state: &mut ShareState, bad_c: u64, n_c: u64, bad_b: u64, n_b: u64) {
        let (bad_c, bad_b) = (bad_c.min(n_c), bad_b.min(n_b));
        let k = bad_c + bad_b;
        if k == 0 || n_c == 0 || n_b == 0 {
            return;
        }
        let s = n_c as f64 / (n_c + n_b) as f64;
        let (kc, k) = (bad_c as f64, k as f64);
        for ((l, &d), &ld) in state.iter_mut().zip(&self.deltas).zip(&self.log_deltas) {
            *l += kc * ld - k * (d * s + 1.0 - s).ln();
        }
    }

    /// ln of the e-value of `state`.
    pub fn log_e(&self, state: &ShareState) -> f64 {
        log_sum_exp(state.iter().copied()) - (SHARE_ALTERNATIVES as f64).ln()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// ln C(n, k).
    fn ln_choose(n: u64, k: u64) -> f64 {
        (0..k)
            .map(|i| ((n - i) as f64).ln() - ((i + 1) as f64).ln())
            .sum()
    }

    /// ln of the e-value after `k` bad of `n`, and ln of its expectation
    /// after one more request that is bad with probability `p` (in
    /// logarithms: e-values of thousands of requests overflow f64).
    fn one_more_request(t: &RateTest, p: f64, k: u64, n: u64) -> (f64, f64) {
        let next = [
            p.ln() + t.log_e(k + 1, n + 1),
            (1.0 - p).ln() + t.log_e(k, n + 1),
        ];
        (t.log_e(k, n), log_sum_exp(next.into_iter()))
    }

    #[test]
    fn log_sum_exp_is_stable() {
        assert!((log_sum_exp([1000.0, 1000.0].into_iter()) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert_eq!(log_sum_exp(std::iter::empty()), f64::NEG_INFINITY);
    }

    #[test]
    fn levels_sum_to_alpha() {
        for rates in [vec![14.4, 6.0], vec![6.0], vec![2.0, 10.0, 1.0, 1.0]] {
            let total: f64 = (0..rates.len())
                .flat_map(|i| {
                    let rates = rates.clone();
                    (0..100_000).map(move |k| threshold_share(rates.iter().copied(), i, k))
                })
                .sum();
            // Both SLIs: twice one SLI's.
            assert!(
                total * 2.0 <= 1.0 + 1e-12 && total * 2.0 > 0.9999,
                "{rates:?}: {total}"
            );
        }
        let total: f64 = (0..100_000).map(attribution_share).sum();
        let spend = ATTRIBUTION_SPEND;
        assert!(total * 2.0 <= spend + 1e-12 && total * 2.0 > spend * 0.9999);
        // The first test of the lowest burn rate holds the most.
        assert_eq!(
            threshold_share([14.4, 6.0].into_iter(), 1, 0),
            FIRST_TEST / 2.0
        );
        assert_eq!(
            threshold_share([2.0, 1.0, 1.0].into_iter(), 1, 0),
            FIRST_TEST / 2.0
        );
        let rest = (1.0 - FIRST_TEST) / 2.0 / 2.0;
        assert_eq!(threshold_share([14.4, 6.0].into_iter(), 1, 1), rest / 2.0);
        assert_eq!(threshold_share([14.4, 6.0].into_iter(), 0, 0), rest / 2.0);
    }

    /// Before any request the e-value is 1: the mixture's weights sum to 1.
    #[test]
    fn mixtures_start_at_one() {
        for theta in [1e-5, 0.0006, 0.006, 0.06, 0.3, 0.6, 0.7, 0.95] {
            for t in [RateTest::new(theta), RateTest::below(theta)] {
                assert!(t.log_e(0, 0).abs() < 1e-12, "{theta}: {}", t.log_e(0, 0));
            }
        }
    }

    #[test]
    fn strong_evidence_rejects_quickly() {
        // 100 % bad against θ = 1.44 %: a handful of requests suffices.
        let t = RateTest::new(0.0144);
        let needed = (1.0 / (0.05 * threshold_share([14.4, 6.0].into_iter(), 0, 0))).ln();
        assert!(t.log_e(4, 4) > needed);
        assert!(t.log_e(0, 1000) < 0.0);
        // θ ≥ 1 can never be exceeded.
        assert_eq!(RateTest::new(1.2).log_e(10, 10), f64::NEG_INFINITY);
        let s = ShareTest::default();
        let mut st = [0.0; SHARE_ALTERNATIVES];
        for _ in 0..4 {
            s.update(&mut st, 10, 10, 0, 90);
        }
        assert!(s.log_e(&st) > needed);
        let mut one_sided = [0.0; SHARE_ALTERNATIVES];
        s.update(&mut one_sided, 10, 10, 0, 0);
        assert_eq!(one_sided, [0.0; SHARE_ALTERNATIVES]);
    }

    proptest! {
        /// One request's factor has expectation ≤ 1 under every p ≤ θ: the
        /// mixture is a supermartingale under H0.
        #[test]
        fn rate_test_is_a_supermartingale_under_h0(theta in 0.0001f64..0.9, frac in 0.0f64..=1.0, n in 0u64..5000, k_frac in 0.0f64..=1.0) {
            let p = theta * frac;
            let t = RateTest::new(theta);
            let k = ((n as f64) * k_frac) as u64;
            let (now, next) = one_more_request(&t, p, k, n);
            prop_assert!(next <= now + 1e-9 * (1.0 + now.abs()), "{next} > {now}");
        }

        /// One slot's factor has conditional expectation ≤ 1 when both sides
        /// share a bad ratio (hypergeometric k_c), for every alternative.
        #[test]
        fn share_test_is_a_supermartingale_under_h0(n_c in 1u64..60, n_b in 1u64..60, k_frac in 0.0f64..=1.0) {
            let k = ((n_c + n_b) as f64 * k_frac) as u64;
            let test = ShareTest::default();
            let ln_total = ln_choose(n_c + n_b, k);
            let mut expectation = [0.0; SHARE_ALTERNATIVES];
            for kc in k.saturating_sub(n_b)..=k.min(n_c) {
                let pmf = (ln_choose(n_c, kc) + ln_choose(n_b, k - kc) - ln_total).exp();
                let mut st = [0.0; SHARE_ALTERNATIVES];
                test.update(&mut st, kc, n_c, k - kc, n_b);
                for (e, l) in expectation.iter_mut().zip(st) {
                    *e += pmf * l.exp();
                }
            }
            for e in expectation {
                prop_assert!(e <= 1.0 + 1e-9, "{e}");
            }
        }

        /// The same for the test of H0: p ≥ θ.
        #[test]
        fn below_test_is_a_supermartingale_under_h0(theta in 0.0001f64..0.9, frac in 0.0f64..=1.0, n in 0u64..5000, k_frac in 0.0f64..=1.0) {
            let p = theta + (1.0 - theta) * frac;
            let t = RateTest::below(theta);
            let k = ((n as f64) * k_frac) as u64;
            let (now, next) = one_more_request(&t, p, k, n);
            prop_assert!(next <= now + 1e-9 * (1.0 + now.abs()), "{next} > {now}");
        }

        #[test]
        fn more_bad_is_more_evidence(theta in 0.001f64..0.5, n in 1u64..10_000, k_frac in 0.0f64..1.0) {
            let t = RateTest::new(theta);
            let k = ((n as f64) * k_frac) as u64;
            prop_assert!(t.log_e(k + 1, n + 1) >= t.log_e(k, n + 1));
            prop_assert!(t.log_e(k, n).is_finite());
        }
    }

    #[test]
    fn the_margin_test_needs_the_candidate_within_the_margin_of_its_baseline() {
        let (margin, upto) = (0.0005, 0.0005);
        let t = MarginTest::new(margin, upto);
        let needed = (1.0 / 0.05f64).ln();
        // Both clean, plenty of traffic: shown within the margin.
        assert!(t.log_e(0, 20_000, 0, 200_000) >= needed);
        // The candidate at 0.1 %, its baseline clean: worse by the margin.
        assert!(t.log_e(20, 20_000, 0, 200_000) < needed);
        // The same candidate beside a baseline at 0.08 %: within it.
        assert!(t.log_e(20, 20_000, 160, 200_000) >= needed);
        // Too few requests tell nothing.
        assert!(t.log_e(0, 100, 0, 1000) < needed);
    }

    /// A candidate worse than its baseline by exactly the margin is
    /// called within it at most α of the time, watched request by request.
    #[test]
    fn candidates_worse_by_the_margin_rarely_pass() {
        let mut rng = crate::rng::Rng::new(7);
        let alpha: f64 = 0.05;
        let needed = (1.0 / alpha).ln();
        let (p_b, margin) = (0.002, 0.004);
        let t = MarginTest::new(margin, 0.004);
        let (runs, steps) = (400, 4000);
        let mut passed = 0;
        for _ in 0..runs {
            let (mut kc, mut kb) = (0u64, 0u64);
            for n in 1..=steps {
                kc += u64::from(rng.unit() < p_b + margin);
                for _ in 0..4 {
                    kb += u64::from(rng.unit() < p_b);
                }
                if n % 50 == 0 && t.log_e(kc, n, kb, 4 * n) >= needed {
                    passed += 1;
                    break;
                }
            }
        }
        assert!(passed as f64 / runs as f64 <= alpha, "{passed} of {runs}");
    }

    /// Ville's inequality in action: healthy streams watched request by
    /// request for a long time cross 1/α at most α of the time.
    #[test]
    fn healthy_streams_rarely_ever_cross() {
        let mut rng = crate::rng::Rng::new(11);
        let alpha: f64 = 0.05;
        let needed = (1.0 / alpha).ln();
        let (theta, runs, steps) = (0.02, 2000, 3000);
        let t = RateTest::new(theta);
        let mut crossed = 0;
        for _ in 0..runs {
            let (mut n, mut k) = (0u64, 0u64);
            for _ in 0..steps {
                n += 1;
                k += u64::from(rng.unit() < theta);
                if t.log_e(k, n) >= needed {
                    crossed += 1;
                    break;
                }
            }
        }
        assert!(crossed as f64 / runs as f64 <= alpha, "{crossed} of {runs}");
        let s = ShareTest::default();
        let mut crossed = 0;
        for _ in 0..runs {
            let mut st = [0.0; SHARE_ALTERNATIVES];
            for _ in 0..300 {
                let (n_c, n_b) = (1 + rng.poisson(3.0), 1 + rng.poisson(20.0));
                let p = if rng.unit() < 0.1 { 0.3 } else { 0.01 }; // a shared, bursty ratio
                let (bc, bb) = (rng.binomial(n_c, p), rng.binomial(n_b, p));
                s.update(&mut st, bc, n_c, bb, n_b);
                if s.log_e(&st) >= needed {
                    crossed += 1;
                    break;
                }
            }
        }
        assert!(crossed as f64 / runs as f64 <= alpha, "{crossed} of {runs}");
    }
}
