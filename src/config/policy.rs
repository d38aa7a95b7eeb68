//! The effective SLO [`Policy`] of each service: `[slo.services.NAME]`
//! over `[slo]` over the built-in defaults, checked and resolved once at
//! load, with the constants the engine derives from it.

use std::collections::HashMap;
use std::sync::Arc;

use super::schema::{SloTable, WindowPair};
use super::{invalid, ConfigError};
use crate::model::{RequestKind, RequestKinds};
use crate::stats::sequential::{MarginTest, RateTest};
use crate::time::Duration;

/// How much worse than its baseline a candidate may be and still pass the
/// gate: this share of the lowest threshold of any pair, added to the
/// baseline's bad ratio (`docs/guarantees.md#the-gate`).
pub const GATE_MARGIN: f64 = 0.5;

/// The effective SLO policy of one service, with derived constants.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub objective: f64,
    pub latency_threshold: Duration,
    pub latency_objective: f64,
    pub min_requests: u64,
    pub confidence: f64,
    pub warmup: Duration,
    pub evaluation_interval: Duration,
    pub watch_after_complete: Duration,
    /// How long after its event time evidence is still judged: a slot of
    /// the attribution test is read for the last time this long after it
    /// ends; what arrives later is counted late and audited.
    pub allowed_lateness: Duration,
    pub windows: Vec<WindowPair>,
    /// Which kinds of request count (`docs/formats.md#what-counts-as-a-request`).
    pub requests: RequestKinds,
    pub dry_run: bool,
    /// Per window pair, the threshold tests of its errors and latency SLIs
    /// (H0: bad ratio ≤ burn_rate × budget).
    pub rate_tests: Vec<[RateTest; 2]>,
    /// Per SLI, the test that its bad ratio is below the lowest threshold
    /// of any pair (H0: ratio ≥ it): a restored version has recovered.
    pub recovery_tests: [RateTest; 2],
    /// Per SLI, the gate's test that the candidate is no worse than its
    /// baseline by [`GATE_MARGIN`] of the lowest threshold (H0: its ratio
    /// ≥ the baseline's + that margin; `docs/guarantees.md#the-gate`).
    pub gate_tests: [MarginTest; 2],
    /// Distinct window lengths, ascending; windows are kept per length.
    pub lengths: Vec<Duration>,
    /// For each pair, the indices of its short and long length in `lengths`.
    pub pair_index: Vec<(usize, usize)>,
}

impl Policy {
    pub fn longest(&self) -> Duration {
        self.lengths.last().copied().unwrap_or(Duration::ZERO)
    }

    /// The lowest threshold of any pair for `budget` (a bad ratio).
    pub fn lowest_threshold(&self, budget: f64) -> f64 {
        let lowest = self
            .windows
            .iter()
            .map(|w| w.burn_rate)
            .fold(f64::INFINITY, f64::min);
        lowest * budget
    }

    /// The sequential tests derived from the thresholds.
    fn derive_tests(&mut self) {
        self.rate_tests = rate_tests(self);
        let budgets = [self.error_budget(), self.latency_budget()];
        self.recovery_tests = budgets.map(|b| RateTest::below(self.lowest_threshold(b)));
        self.gate_tests = budgets.map(|b| {
            let lowest = self.lowest_threshold(b);
            let margin = GATE_MARGIN * lowest;
            MarginTest::new(margin, lowest - margin)
        });
    }

    pub fn error_budget(&self) -> f64 {
        1.0 - self.objective
    }

    pub fn latency_budget(&self) -> f64 {
        1.0 - self.latency_objective
    }

    /// This policy with other objectives and confidence, its derived
    /// constants computed again (what `simulate` varies over a grid).
    pub fn with_slo(&self, objective: f64, latency_objective: f64, confidence: f64) -> Policy {
        let mut p = Policy {
            objective,
            latency_objective,
            confidence,
            ..self.clone()
        };
        p.derive_tests();
        p
    }
}

/// The policy of `[slo]` (the default) and one per `[slo.services.NAME]`,
/// each service inheriting what it does not set from `[slo]`.
pub(super) fn resolve_all(
    slo: &SloTable,
    global_dry_run: bool,
) -> Result<(Policy, HashMap<String, Arc<Policy>>), ConfigError> {
    let base = resolve_policy("slo", &SloTable::default(), slo, global_dry_run)?;
    let mut service_policies = HashMap::new();
    for (name, table) in slo.services.iter().flatten() {
        let prefix = format!("slo.services.{name}");
        if table.services.is_some() {
            return Err(invalid(
                format!("{prefix}.services"),
                "services cannot be nested",
            ));
        }
        let inherited = SloTable {
            services: None,
            dry_run: None,
            ..slo.clone()
        };
        let policy = resolve_policy(&prefix, &inherited, table, global_dry_run)?;
        service_policies.insert(name.clone(), Arc::new(policy));
    }
    Ok((base, service_policies))
}

// The contract's defaults (`docs/config.md`): a 99.9% availability and 99% of
// requests under 500ms, with the SRE workbook's fast- and slow-burn pairs.
fn default_windows() -> Vec<WindowPair> {
    vec![
        WindowPair {
            short: Duration::from_secs(60),
            long: Duration::from_secs(300),
            burn_rate: 14.4,
        },
        WindowPair {
            short: Duration::from_secs(300),
            long: Duration::from_secs(1800),
            burn_rate: 6.0,
        },
    ]
}

// HTTP and RPC servers' requests: what SERVER spans always were, with each
// kind's error semantics. A message a consumer processed is not a request
// unless the service says so: a web service's background consumers would
// otherwise join its SLIs.
fn default_requests() -> Vec<RequestKind> {
    vec![RequestKind::Http, RequestKind::Rpc]
}

/// The policy `own` sets, each absent key taken from `parent`, then from
/// the built-in default; every value checked, errors naming the key under
/// `prefix`.
fn resolve_policy(
    prefix: &str,
    parent: &SloTable,
    own: &SloTable,
    global_dry_run: bool,
) -> Result<Policy, ConfigError> {
    let mut policy = inherit(parent, own, global_dry_run);
    check_values(prefix, &policy)?;
    if policy.requests.is_empty() {
        return Err(invalid(
            format!("{prefix}.requests"),
            "needs at least one of \"http\", \"rpc\", \"messaging\"",
        ));
    }
    if policy.windows.is_empty() {
        return Err(invalid(
            format!("{prefix}.windows"),
            "needs at least one window pair",
        ));
    }
    let lateness = own.allowed_lateness.or(parent.allowed_lateness);
    policy.allowed_lateness = allowed_lateness(prefix, lateness, &policy.windows)?;
    check_windows(prefix, &policy.windows)?;
    Ok(policy.derived())
}

/// The values `own` and `parent` set, defaults for the rest; unchecked,
/// and without the constants derived from them, nor `allowed_lateness`
/// (its default depends on the windows).
fn inherit(parent: &SloTable, own: &SloTable, global_dry_run: bool) -> Policy {
    macro_rules! pick {
        ($field:ident, $default:expr) => {
            own.$field
                .clone()
                .or_else(|| parent.$field.clone())
                .unwrap_or_else(|| $default)
        };
    }
    Policy {
        objective: pick!(objective, 0.999),
        latency_threshold: pick!(latency_threshold, Duration::from_millis(500)),
        latency_objective: pick!(latency_objective, 0.99),
        min_requests: pick!(min_requests, 0),
        confidence: pick!(confidence, 0.95),
        warmup: pick!(warmup, Duration::from_secs(5)),
        evaluation_interval: pick!(evaluation_interval, Duration::from_secs(5)),
        watch_after_complete: pick!(watch_after_complete, Duration::from_secs(900)),
        allowed_lateness: Duration::ZERO,
        windows: pick!(windows, default_windows()),
        requests: pick!(requests, default_requests()).into_iter().collect(),
        dry_run: global_dry_run || own.dry_run.unwrap_or(false),
        rate_tests: Vec::new(),
        recovery_tests: [RateTest::below(1.0), RateTest::below(1.0)],
        gate_tests: [MarginTest::new(1.0, 0.0), MarginTest::new(1.0, 0.0)],
        lengths: Vec::new(),
        pair_index: Vec::new(),
    }
}

/// The objectives, the confidence and the durations other than windows.
fn check_values(prefix: &str, p: &Policy) -> Result<(), ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    if !(p.objective > 0.0 && p.objective < 1.0) {
        return Err(invalid(
            key("objective"),
            "must be between 0 and 1 (exclusive)",
        ));
    }
    if !(p.latency_objective > 0.0 && p.latency_objective < 1.0) {
        return Err(invalid(
            key("latency_objective"),
            "must be between 0 and 1 (exclusive)",
        ));
    }
    if p.latency_threshold.nanos() <= 0 {
        return Err(invalid(
            key("latency_threshold"),
            "must be greater than zero",
        ));
    }
    if !(0.5..1.0).contains(&p.confidence) {
        return Err(invalid(key("confidence"), "must be in [0.5, 1)"));
    }
    if p.warmup.nanos() < 0 {
        return Err(invalid(key("warmup"), "must not be negative"));
    }
    if p.evaluation_interval.nanos() < 1_000_000 {
        return Err(invalid(key("evaluation_interval"), "must be at least 1ms"));
    }
    if p.watch_after_complete.nanos() < 0 {
        return Err(invalid(key("watch_after_complete"), "must not be negative"));
    }
    Ok(())
}

/// `allowed_lateness` as set, checked against the longest window, or its
/// default.
///
/// A minute covers what usually stands between a request and rollbackd:
/// a Collector's tail sampling holds spans for its decision_wait (30s by
/// default) before it exports them, then batching and consumer lag add
/// seconds. Longer keeps each slot open (and remembered) longer and makes
/// a side that stopped reporting wait longer before its slots are read.
/// Never longer than the longest window when not set (windows of seconds,
/// as tests use, keep their own length).
fn allowed_lateness(
    prefix: &str,
    set: Option<Duration>,
    windows: &[WindowPair],
) -> Result<Duration, ConfigError> {
    let key = format!("{prefix}.allowed_lateness");
    let longest = windows
        .iter()
        .map(|w| w.long.max(w.short))
        .max()
        .unwrap_or(Duration::ZERO);
    match set {
        None => Ok(Duration::from_secs(60).min(longest)),
        Some(l) if l.nanos() < 0 => Err(invalid(key, "must not be negative")),
        Some(l) if l > longest => Err(invalid(
            key,
            format!("must not be longer than the longest window ({longest}): older evidence is outside every window"),
        )),
        Some(l) => Ok(l),
    }
}

/// Each window pair: lengths from 1s to 7d, short first, a positive burn
/// rate.
fn check_windows(prefix: &str, windows: &[WindowPair]) -> Result<(), ConfigError> {
    for (i, w) in windows.iter().enumerate() {
        let wk = format!("{prefix}.windows[{i}]");
        if w.short.nanos() < 1_000_000_000 {
            return Err(invalid(format!("{wk}.short"), "must be at least 1s"));
        }
        if w.long.nanos() < w.short.nanos() {
            return Err(invalid(
                format!("{wk}.long"),
                "must not be shorter than short",
            ));
        }
        if w.long.nanos() > 7 * 86_400 * 1_000_000_000 {
            return Err(invalid(format!("{wk}.long"), "must be at most 7d"));
        }
        if !(w.burn_rate.is_finite() && w.burn_rate > 0.0) {
            return Err(invalid(
                format!("{wk}.burn_rate"),
                "must be greater than zero",
            ));
        }
    }
    Ok(())
}

impl Policy {
    /// This policy with the constants derived from its windows, objectives
    /// and confidence computed.
    fn derived(mut self) -> Policy {
        let mut lengths: Vec<Duration> = self
            .windows
            .iter()
            .flat_map(|w| [w.short, w.long])
            .collect();
        lengths.sort();
        lengths.dedup();
        let index = |d: Duration| lengths.iter().position(|&l| l == d).unwrap_or(0);
        self.pair_index = self
            .windows
            .iter()
            .map(|w| (index(w.short), index(w.long)))
            .collect();
        self.lengths = lengths;
        self.derive_tests();
        self
    }
}

fn rate_tests(p: &Policy) -> Vec<[RateTest; 2]> {
    p.windows
        .iter()
        .map(|w| {
            [
                RateTest::new(w.burn_rate * p.error_budget()),
                RateTest::new(w.burn_rate * p.latency_budget()),
            ]
        })
        .collect()
}
