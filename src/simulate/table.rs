//! The report of `simulate` as a fixed-width table, with a key under it.

use super::{Oracle, Outcome, Quantiles};

/// The report as a fixed-width table.
pub fn table(outcomes: &[Outcome]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<22} {:<7} {:>6} {:>10} {:>10} {:>12} {:>12} {:>10} {:>6} {:>9} {:>11} {:>9} {:>11} {:>7} {:>7} {:>8} {:>10}",
        "row", "SLI", "SLO", "confidence", "canary rps", "baseline rps", "baseline bad", "canary bad", "runs", "rollbacks", "P(rollback)", "upper 95%", "decided p50", "p90", "p99", "oracle", "p50/oracle"
    );
    for o in outcomes {
        let p = &o.point;
        let q = |f: fn(&Quantiles) -> f64| {
            o.time_to_decision
                .as_ref()
                .map_or("-".to_string(), |t| format!("{:.0}", f(t)))
        };
        let c_bad = if p.healthy {
            "same".to_string()
        } else {
            pct(p.candidate_bad)
        };
        let _ = writeln!(
            s,
            "{:<22} {:<7} {:>6} {:>10} {:>10} {:>12} {:>12} {:>10} {:>6} {:>9} {:>11} {:>9} {:>11} {:>7} {:>7} {:>8} {:>10}",
            p.name,
            p.sli.as_str(),
            format!("{}%", (p.objective * 1e5).round() / 1e3),
            p.confidence,
            p.canary_rps,
            (p.baseline_rps * 100.0).round() / 100.0,
            pct(p.baseline_bad),
            c_bad,
            p.runs,
            o.rollbacks,
            pct(o.p_rollback),
            pct(o.p_rollback_upper95),
            q(|t| t.p50),
            q(|t| t.p90),
            q(|t| t.p99),
            o.oracle
                .as_ref()
                .map_or("-".to_string(), |o| format!("{:.1}", o.seconds)),
            o.oracle.as_ref().map_or("-".to_string(), oracle_ratio),
        );
    }
    s.push_str(TABLE_KEY);
    s
}

/// What the table's columns mean, printed under it.
const TABLE_KEY: &str = "\n\
bad: the share of requests that fail the SLI (canary bad \"same\": identical to the baseline).\n\
P(rollback): the share of runs rolled back; upper 95%: its one-sided 95% upper bound.\n\
decided p50, p90, p99: seconds from the canary's first request to the decision, over the runs rolled back.\n\
oracle: seconds the sequential probability ratio test that knows the canary's bad ratio expects to need\n\
(Wald: ln(1/(1 - confidence)) / KL(canary bad || lowest threshold) requests, at the canary's rate);\n\
p50/oracle: the median decision over it, \"w\" when that median came at the end of the warm-up, which bounds it.\n";

/// The engine's median over the oracle's time, marked when the warm-up
/// bounds it.
fn oracle_ratio(o: &Oracle) -> String {
    match o.ratio {
        None => "-".into(),
        Some(r) if o.warmup_bound => format!("{r:.2} w"),
        Some(r) => format!("{r:.2}"),
    }
}

fn pct(v: f64) -> String {
    let p = v * 100.0;
    if p == 0.0 {
        "0%".into()
    } else if p >= 10.0 {
        format!("{p:.0}%")
    } else if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2}%")
    }
}
