//! A deploy's sequential tests on their own: what the threshold tests
//! count, when they restart, and the baseline's own tests. (The
//! watermark rule and the attribution test's slots are tested in
//! `judge` itself.)

use super::*;
use crate::config::Policy;
use crate::engine::judge::Judge;
use crate::engine::window::{Kind, SeriesWindows, Sli};

fn policy() -> Policy {
    (*Config::default().default_policy).clone()
}

/// Windows of `policy` with `n` requests a second, `bad` of them failed,
/// from second `from` to `to`.
fn side(policy: &Policy, (from, to): (i64, i64), n: u64, bad: u64) -> SeriesWindows {
    let mut w = SeriesWindows::for_policy(policy);
    for s in from..to {
        w.add(Timestamp(s * SEC), Kind::Span, n, bad, 0);
    }
    w
}

#[test]
fn the_first_threshold_test_counts_what_came_before_its_first_look() {
    let p = policy();
    let mut judge = Judge::new(&p, Timestamp(1_000 * SEC));
    let cand = side(&p, (1_000, 1_060), 10, 5);
    let totals = judge.observe(&p, Some(&cand), None, Timestamp(1_060 * SEC));
    assert_eq!(
        (totals.candidate.requests, totals.candidate.errors),
        (600, 300)
    );
    let errors = judge.rate_test(&p, 0, Sli::Errors, totals.candidate);
    assert!(errors.unwrap().rejects());
    let latency = judge.rate_test(&p, 0, Sli::Latency, totals.candidate);
    assert!(!latency.unwrap().rejects(), "no slow request");
}

#[test]
fn threshold_tests_restart_every_long_window_of_their_pair() {
    let p = policy();
    let long = p.windows[0].long.nanos() / SEC;
    let mut judge = Judge::new(&p, Timestamp(1_000 * SEC));
    let cand = side(&p, (1_000, 1_060), 10, 5);
    let totals = judge.observe(&p, Some(&cand), None, Timestamp(1_060 * SEC));
    assert!(judge
        .rate_test(&p, 0, Sli::Errors, totals.candidate)
        .unwrap()
        .rejects());
    // Two long windows on, nothing new: the epochs that saw the failures
    // are gone, and the current one has seen nothing.
    let later = Timestamp((1_000 + 2 * long + 1) * SEC);
    let totals = judge.observe(&p, Some(&cand), None, later);
    let t = judge
        .rate_test(&p, 0, Sli::Errors, totals.candidate)
        .unwrap();
    assert!(!t.rejects(), "{t:?}");
}

#[test]
fn the_baseline_burning_as_much_is_its_own_tests_verdict() {
    let p = policy();
    let at = Timestamp(1_000 * SEC);
    for (baseline_bad, burning) in [(0, false), (5, true)] {
        let mut judge = Judge::new(&p, at);
        let cand = side(&p, (1_000, 1_060), 10, 5);
        let base = side(&p, (1_000, 1_060), 10, baseline_bad);
        let totals = judge.observe(&p, Some(&cand), Some(&base), Timestamp(1_060 * SEC));
        let own = judge
            .baseline_test(&p, 0, Sli::Errors, totals.baseline)
            .unwrap();
        assert_eq!(own.rejects(), burning, "{own:?}");
        // The candidate is worse than a healthy baseline only.
        let worse = judge.attribution_test(&p, Sli::Errors).unwrap();
        assert_eq!(worse.rejects(), !burning, "{worse:?}");
    }
}
