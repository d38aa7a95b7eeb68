//! `rollbackd simulate`: Monte Carlo of healthy and bad deploys through the
//! engine's decisions, to learn a policy's false-rollback rate and its
//! detection speed before anyone trusts it.
//!
//! A simulated deploy is counted per second, not per request: each second
//! its canary and baseline get Poisson request counts and binomial bad
//! counts, which go into the engine's own [`SeriesWindows`] and are judged
//! by the engine's own [`evaluate`] and [`Judge`] at every evaluation — the code `run` and
//! `replay` decide with. Guards (cooldown, breaker) are not simulated: they
//! act on decisions, they do not make them.
//!
//! Every run has its own seed, derived from `--seed`, the grid point and
//! the run's number, so the report is the same whatever the number of
//! threads.
//!
//! Beside every detection point stands the [`oracle`]: the expected time of
//! the sequential probability ratio test that knows the fault's size, the
//! information limit the engine's time is measured against.

mod oracle;
mod table;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Policy};
use crate::engine::evaluate::{evaluate, Verdict};
use crate::engine::judge::Judge;
use crate::engine::window::{Kind, SeriesWindows, Sli};
use crate::rng::{splitmix, Rng};
use crate::stats::{wilson_lower_bound, z_for_confidence};
use crate::time::{Duration, Timestamp};
pub use oracle::Oracle;
pub use table::table;

/// The grid used when none is given (also shipped as `config/simulate.toml`).
pub const DEFAULT_GRID: &str = include_str!("../config/simulate.toml");

const SEC: i64 = 1_000_000_000;
/// Where simulated deploys start (any instant would do).
const START_S: i64 = 1_800_000_000;

/// A grid file: defaults and rows of grid points.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grid {
    #[serde(default = "default_runs")]
    pub runs: usize,
    #[serde(default = "default_duration")]
    pub duration: Duration,
    /// Whole seconds; the policy's `evaluation_interval` when omitted.
    pub evaluation_interval: Option<Duration>,
    /// Whose policy to simulate (per-service overrides); the defaults when omitted.
    pub service: Option<String>,
    pub rows: Vec<Row>,
}

fn default_runs() -> usize {
    300
}

fn default_duration() -> Duration {
    Duration::from_secs(7200)
}

/// One row: every combination of its lists is a grid point.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Row {
    pub name: Option<String>,
    #[serde(default)]
    pub sli: SliName,
    pub canary_rps: Vec<f64>,
    pub baseline_rps: Option<Vec<f64>>,
    pub canary_share: Option<f64>,
    #[serde(default)]
    pub baseline_bad: Vec<f64>,
    /// Omitted: the candidate is identical to its baseline (a healthy deploy).
    pub candidate_bad: Option<Vec<f64>>,
    pub objective: Option<Vec<f64>>,
    pub confidence: Option<Vec<f64>>,
    pub runs: Option<usize>,
    pub duration: Option<Duration>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SliName {
    #[default]
    Errors,
    Latency,
}

impl SliName {
    fn sli(self) -> Sli {
        match self {
            SliName::Errors => Sli::Errors,
            SliName::Latency => Sli::Latency,
        }
    }
}

/// One grid point: a traffic pattern under one policy.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    pub name: String,
    pub sli: Sli,
    pub objective: f64,
    pub confidence: f64,
    pub canary_rps: f64,
    pub baseline_rps: f64,
    pub baseline_bad: f64,
    pub candidate_bad: f64,
    /// The candidate is identical to its baseline: any rollback is false.
    pub healthy: bool,
    pub duration: Duration,
    pub evaluation_interval: Duration,
    pub runs: usize,
}

/// Time to decision, in seconds from the candidate's first request.
#[derive(Debug, Clone, Serialize)]
pub struct Quantiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// What the runs of one grid point did.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    #[serde(flatten)]
    pub point: Point,
    pub rollbacks: usize,
    pub p_rollback: f64,
    /// One-sided 95 % upper bound of P(rollback) (Wilson, continuity corrected).
    pub p_rollback_upper95: f64,
    /// Over the runs that were rolled back; null when none was.
    pub time_to_decision: Option<Quantiles>,
    /// The oracle SPRT of a detection point whose candidate is over the
    /// lowest threshold; null otherwise.
    pub oracle: Option<Oracle>,
}

#[derive(Debug, thiserror::Error)]
pub enum GridError {
    #[error("invalid grid: {0}")]
    Parse(String),
    #[error("invalid grid: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: String, reason: &str) -> GridError {
    GridError::Invalid {
        key,
        reason: reason.into(),
    }
}

impl Grid {
    pub fn from_toml(text: &str) -> Result<Grid, GridError> {
        toml::from_str(text).map_err(|e| GridError::Parse(e.to_string()))
    }

    /// Every grid point, in file order, checked.
    pub fn points(&self, policy: &Policy) -> Result<Vec<Point>, GridError> {
        check(
            "runs".into(),
            (1..=10_000_000).contains(&self.runs),
            "must be 1 to 10000000",
        )?;
        let mut out = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            self.axes(i, row, policy)?.cross(row, &mut out);
        }
        if out.is_empty() {
            return Err(GridError::Parse("no rows".into()));
        }
        Ok(out)
    }

    /// Row `i`'s lists, checked in the order of its keys, with the grid's
    /// and the policy's values where the row sets none.
    fn axes(&self, i: usize, row: &Row, policy: &Policy) -> Result<Axes, GridError> {
        let key = |k: &str| format!("rows[{i}].{k}");
        let runs = row.runs.unwrap_or(self.runs);
        check(
            key("runs"),
            (1..=10_000_000).contains(&runs),
            "must be 1 to 10000000",
        )?;
        let duration = row.duration.unwrap_or(self.duration);
        check(
            key("duration"),
            (SEC..=7 * 86_400 * SEC).contains(&duration.nanos()),
            "must be 1s to 7d",
        )?;
        let every = self
            .evaluation_interval
            .unwrap_or(policy.evaluation_interval);
        check(
            "evaluation_interval".into(),
            every.nanos() >= SEC && every.nanos() % SEC == 0,
            "must be whole seconds",
        )?;
        check(
            key("canary_rps"),
            !row.canary_rps.is_empty() && row.canary_rps.iter().all(|v| rate_ok(v) && *v > 0.0),
            "needs rates above 0 and at most 1e6",
        )?;
        let baseline = row.baseline_axis(&key)?;
        let baseline_bad = row.baseline_bad_axis(&key)?;
        let candidate_bad = row.candidate_bad_axis(&key)?;
        let sli = row.sli.sli();
        let (objectives, confidences) = row.slo_axes(sli, policy, &key)?;
        Ok(Axes {
            sli,
            runs,
            duration,
            every,
            baseline,
            baseline_bad,
            candidate_bad,
            objectives,
            confidences,
        })
    }
}

/// `Ok` when `ok`, else the error naming `key`.
fn check(key: String, ok: bool, reason: &str) -> Result<(), GridError> {
    if ok {
        Ok(())
    } else {
        Err(invalid(key, reason))
    }
}

/// `values`, checked (at least one, each `ok`), each as a `Some`.
fn some_each(
    key: String,
    values: &[f64],
    ok: fn(&f64) -> bool,
    reason: &str,
) -> Result<Vec<Option<f64>>, GridError> {
    check(key, !values.is_empty() && values.iter().all(ok), reason)?;
    Ok(values.iter().map(|&v| Some(v)).collect())
}

/// A request rate a grid may give: 0 to 1e6 per second.
fn rate_ok(v: &f64) -> bool {
    v.is_finite() && (0.0..=1e6).contains(v)
}

/// A ratio of bad requests: 0 to 1.
fn ratio_ok(v: &f64) -> bool {
    v.is_finite() && (0.0..=1.0).contains(v)
}

impl Row {
    /// The baseline's rates: as given, or `None` once, for the rate
    /// `canary_share` derives from each canary rate (0 when neither is
    /// given).
    fn baseline_axis(&self, key: &dyn Fn(&str) -> String) -> Result<Vec<Option<f64>>, GridError> {
        match (&self.baseline_rps, self.canary_share) {
            (Some(_), Some(_)) => Err(invalid(
                key("canary_share"),
                "give baseline_rps or canary_share, not both",
            )),
            (Some(b), None) => {
                some_each(key("baseline_rps"), b, rate_ok, "needs rates of 0 to 1e6")
            }
            (None, Some(s)) => {
                check(
                    key("canary_share"),
                    s > 0.0 && s <= 1.0,
                    "must be in (0, 1]",
                )?;
                Ok(vec![None])
            }
            (None, None) => Ok(vec![Some(0.0)]),
        }
    }

    /// The baseline's bad ratios: as given, or 0.
    fn baseline_bad_axis(&self, key: &dyn Fn(&str) -> String) -> Result<Vec<f64>, GridError> {
        let baseline_bad = if self.baseline_bad.is_empty() {
            vec![0.0]
        } else {
            self.baseline_bad.clone()
        };
        check(
            key("baseline_bad"),
            baseline_bad.iter().all(ratio_ok),
            "ratios must be in [0, 1]",
        )?;
        Ok(baseline_bad)
    }

    /// The candidate's bad ratios: as given, or `None` once, for a
    /// candidate identical to its baseline.
    fn candidate_bad_axis(
        &self,
        key: &dyn Fn(&str) -> String,
    ) -> Result<Vec<Option<f64>>, GridError> {
        match &self.candidate_bad {
            Some(c) => some_each(
                key("candidate_bad"),
                c,
                ratio_ok,
                "ratios must be in [0, 1]",
            ),
            None => Ok(vec![None]),
        }
    }

    /// The objectives and confidences to try: as given, or the policy's.
    fn slo_axes(
        &self,
        sli: Sli,
        policy: &Policy,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(Vec<f64>, Vec<f64>), GridError> {
        let default_objective = match sli {
            Sli::Errors => policy.objective,
            Sli::Latency => policy.latency_objective,
        };
        let objectives = self.objective.clone().unwrap_or(vec![default_objective]);
        check(
            key("objective"),
            !objectives.is_empty() && objectives.iter().all(|o| *o > 0.0 && *o < 1.0),
            "must be between 0 and 1 (exclusive)",
        )?;
        let confidences = self.confidence.clone().unwrap_or(vec![policy.confidence]);
        check(
            key("confidence"),
            !confidences.is_empty() && confidences.iter().all(|c| (0.5..1.0).contains(c)),
            "must be in [0.5, 1)",
        )?;
        Ok((objectives, confidences))
    }
}

/// One row's lists, checked: every combination of them is a grid point.
struct Axes {
    sli: Sli,
    runs: usize,
    duration: Duration,
    every: Duration,
    /// `None`: the canary's rate × (1 − share) / share.
    baseline: Vec<Option<f64>>,
    baseline_bad: Vec<f64>,
    /// `None`: the same as the baseline (a healthy deploy).
    candidate_bad: Vec<Option<f64>>,
    objectives: Vec<f64>,
    confidences: Vec<f64>,
}

impl Axes {
    /// Appends every combination to `out`, objectives outermost and
    /// baseline rates innermost.
    fn cross(&self, row: &Row, out: &mut Vec<Point>) {
        for &objective in &self.objectives {
            for &confidence in &self.confidences {
                for &bb in &self.baseline_bad {
                    for &cb in &self.candidate_bad {
                        for &canary_rps in &row.canary_rps {
                            for &b in &self.baseline {
                                let baseline_rps = b.unwrap_or_else(|| {
                                    let share = row.canary_share.unwrap_or(1.0);
                                    canary_rps * (1.0 - share) / share
                                });
                                out.push(Point {
                                    name: row.name.clone().unwrap_or_default(),
                                    sli: self.sli,
                                    objective,
                                    confidence,
                                    canary_rps,
                                    baseline_rps,
                                    baseline_bad: bb,
                                    candidate_bad: cb.unwrap_or(bb),
                                    healthy: cb.is_none(),
                                    duration: self.duration,
                                    evaluation_interval: self.every,
                                    runs: self.runs,
                                });
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Runs every point of `grid` under `cfg`'s policy on `threads` threads.
pub fn simulate(
    cfg: &Config,
    grid: &Grid,
    seed: u64,
    threads: usize,
) -> Result<Vec<Outcome>, GridError> {
    let base = cfg.policy(grid.service.as_deref().unwrap_or(""));
    let points = grid.points(base)?;
    let policies: Vec<Policy> = points
        .iter()
        .map(|p| {
            let (objective, latency_objective) = match p.sli {
                Sli::Errors => (p.objective, base.latency_objective),
                Sli::Latency => (base.objective, p.objective),
            };
            base.with_slo(objective, latency_objective, p.confidence)
        })
        .collect();
    const CHUNK: usize = 8;
    let jobs: Vec<(usize, usize)> = points
        .iter()
        .enumerate()
        .flat_map(|(i, p)| (0..p.runs).step_by(CHUNK).map(move |r| (i, r)))
        .collect();
    let next = AtomicUsize::new(0);
    let times: Vec<Mutex<Vec<Option<f64>>>> =
        points.iter().map(|_| Mutex::new(Vec::new())).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                while let Some(&(i, first)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let p = &points[i];
                    let done: Vec<Option<f64>> = (first..(first + CHUNK).min(p.runs))
                        .map(|r| {
                            let run_seed = splitmix(seed ^ splitmix(((i as u64) << 32) | r as u64));
                            one_deploy(&policies[i], p, run_seed)
                        })
                        .collect();
                    times[i]
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .extend(done);
                }
            });
        }
    });
    Ok(points
        .into_iter()
        .zip(times)
        .zip(&policies)
        .map(|((point, t), policy)| {
            outcome(
                point,
                t.into_inner().unwrap_or_else(|e| e.into_inner()),
                policy,
            )
        })
        .collect())
}

fn outcome(point: Point, runs: Vec<Option<f64>>, policy: &Policy) -> Outcome {
    let n = runs.len() as u64;
    let mut decided: Vec<f64> = runs.into_iter().flatten().collect();
    decided.sort_by(f64::total_cmp);
    let k = decided.len() as u64;
    let z95 = z_for_confidence(0.95);
    let rank =
        |q: f64| decided[((q * decided.len() as f64).ceil() as usize).clamp(1, decided.len()) - 1];
    let p50 = (!decided.is_empty()).then(|| rank(0.5));
    let oracle = (!point.healthy)
        .then(|| {
            oracle::oracle(
                policy,
                point.sli,
                point.candidate_bad,
                point.canary_rps,
                p50,
            )
        })
        .flatten();
    Outcome {
        oracle,
        rollbacks: decided.len(),
        p_rollback: k as f64 / n.max(1) as f64,
        p_rollback_upper95: 1.0 - wilson_lower_bound(n - k, n, z95),
        time_to_decision: (!decided.is_empty()).then(|| Quantiles {
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: rank(1.0),
        }),
        point,
    }
}

/// One simulated deploy: the seconds from its candidate's first request to
/// a rollback verdict, or `None` if it was never rolled back.
fn one_deploy(policy: &Policy, p: &Point, seed: u64) -> Option<f64> {
    let mut rng = Rng::new(seed);
    let mut cand = SeriesWindows::for_policy(policy);
    let mut base = SeriesWindows::for_policy(policy);
    let mut judge = Judge::new(policy, Timestamp(START_S * SEC));
    let every = (p.evaluation_interval.nanos() / SEC).max(1);
    let mut first: Option<i64> = None;
    let split = |bad: u64| match p.sli {
        Sli::Errors => (bad, 0),
        Sli::Latency => (0, bad),
    };
    for t in 1..=p.duration.nanos() / SEC {
        let slot = Timestamp((START_S + t - 1) * SEC);
        let n = rng.poisson(p.canary_rps);
        if n > 0 {
            let (errors, slow) = split(rng.binomial(n, p.candidate_bad));
            cand.add(slot, Kind::Span, n, errors, slow);
            first.get_or_insert(t - 1);
        }
        let n = rng.poisson(p.baseline_rps);
        if n > 0 {
            let (errors, slow) = split(rng.binomial(n, p.baseline_bad));
            base.add(slot, Kind::Span, n, errors, slow);
        }
        if t % every == 0 {
            let now = Timestamp((START_S + t) * SEC);
            let ev = evaluate(&mut judge, policy, Some(&cand), Some(&base), now);
            if ev.verdict == Verdict::Rollback {
                return Some((t - first.unwrap_or(0)) as f64);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_grid_parses_into_points() {
        let cfg = Config::default();
        let grid = Grid::from_toml(DEFAULT_GRID).unwrap();
        let points = grid.points(&cfg.default_policy).unwrap();
        assert!(points.len() >= 36);
        assert!(points.iter().any(|p| !p.healthy));
        let healthy_runs: usize = points.iter().filter(|p| p.healthy).map(|p| p.runs).sum();
        assert!(healthy_runs >= 10_000, "{healthy_runs}");
    }

    #[test]
    fn bad_grids_name_the_key() {
        let cfg = Config::default();
        for (text, key) in [
            ("[[rows]]\ncanary_rps = [0]", "rows[0].canary_rps"),
            (
                "[[rows]]\ncanary_rps = [1]\nbaseline_bad = [2]",
                "rows[0].baseline_bad",
            ),
            (
                "[[rows]]\ncanary_rps = [1]\ncanary_share = 0",
                "rows[0].canary_share",
            ),
            (
                "[[rows]]\ncanary_rps = [1]\nconfidence = [1]",
                "rows[0].confidence",
            ),
            (
                "evaluation_interval = \"1500ms\"\n[[rows]]\ncanary_rps = [1]",
                "evaluation_interval",
            ),
        ] {
            let err = Grid::from_toml(text)
                .unwrap()
                .points(&cfg.default_policy)
                .unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        assert!(Grid::from_toml("rows = 3").is_err());
        assert!(Grid::from_toml("[[rows]]\ncanary_rps = [1]\nfoo = 1").is_err());
    }

    /// The outcomes of `grid` (TOML) under the default config.
    fn outcomes(grid: &str, seed: u64, threads: usize) -> Vec<Outcome> {
        let grid = Grid::from_toml(grid).unwrap();
        simulate(&Config::default(), &grid, seed, threads).unwrap()
    }

    #[test]
    fn same_seed_same_report_whatever_the_threads() {
        let grid = "runs = 40\nduration = \"10m\"\nevaluation_interval = \"1s\"\n[[rows]]\ncanary_rps = [5]\nbaseline_rps = [45]\nbaseline_bad = [0.001]\ncandidate_bad = [0.05, 0.001]";
        let json = |seed, threads| serde_json::to_string(&outcomes(grid, seed, threads)).unwrap();
        let one = json(7, 1);
        assert_eq!(one, json(7, 2));
        assert_ne!(one, json(8, 2));
    }

    /// The promise, through the engine's decisions: at a confidence low
    /// enough for false rollbacks to be measurable, healthy deploys
    /// evaluated every second are rolled back no more often than 1 −
    /// confidence (plus Monte Carlo slack).
    #[test]
    fn healthy_deploys_respect_the_bound() {
        for (conf, base_bad, rps) in [(0.5, 0.005, 2.0), (0.6, 0.0005, 50.0), (0.7, 0.02, 10.0)] {
            let out = outcomes(&format!(
                "runs = 200\nduration = \"30m\"\nevaluation_interval = \"1s\"\n[[rows]]\ncanary_rps = [{rps}]\ncanary_share = 0.2\nbaseline_bad = [{base_bad}]\nobjective = [0.99]\nconfidence = [{conf}]"
            ), 3, 2);
            let alpha = 1.0 - conf;
            let slack = 3.0 * (alpha * conf / 200.0f64).sqrt();
            assert!(
                out[0].p_rollback <= alpha + slack,
                "{conf}: {}",
                out[0].p_rollback
            );
        }
    }

    #[test]
    fn a_failing_canary_is_caught_and_an_identical_one_is_not() {
        let out = outcomes(
            "runs = 50\nduration = \"30m\"\nevaluation_interval = \"1s\"\n[[rows]]\ncanary_rps = [10]\nbaseline_rps = [90]\nbaseline_bad = [0.0005]\ncandidate_bad = [1.0]\n[[rows]]\ncanary_rps = [10]\nbaseline_rps = [90]\nbaseline_bad = [0.0005]",
            1,
            2,
        );
        assert_eq!(out[0].rollbacks, 50);
        assert!(out[1].rollbacks <= 2, "{}", out[1].rollbacks);
    }
}
