//! Telemetry into windows (CONTRACT §1.2): each resource of an export is
//! correlated to the deploys it belongs to (candidate or baseline side),
//! and its requests are added to their rolling windows — spans one by one,
//! histogram points as counts (cumulative series turned into deltas first).
//! Data from before a deploy started is outside its windows; data older
//! than its longest window is late.

use crate::model::{HistPoint, TelemetryBatch, TelemetryOutcome, Temporality};
use crate::time::{Duration, Timestamp};

use super::window::{Kind, SeriesWindows};
use super::Engine;

/// The last point of a cumulative histogram series.
#[derive(Debug, Clone, Copy)]
pub struct CumState {
    start: i64,
    time: i64,
    count: u64,
    slow: u64,
}

/// How often cumulative series that stopped are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    /// Adds a decoded OTLP export to the windows of the deploys it belongs to.
    pub(super) fn telemetry(&mut self, batch: &TelemetryBatch) -> TelemetryOutcome {
        let now = self.clock;
        let mut out = TelemetryOutcome::default();
        let mut touched = Vec::new();
        for res in &batch.resources {
            let targets = self.registry.correlate(&res.ident);
            let Some(first) = targets.first() else {
                out.unmatched += (res.spans.len() + res.points.len()) as u64;
                continue;
            };
            let threshold = first.deploy.policy.latency_threshold;
            let earliest_at = targets
                .iter()
                .map(|t| t.deploy.info.at)
                .min()
                .unwrap_or(first.deploy.info.at);
            let deltas: Vec<(Timestamp, u64, u64, u64)> = res
                .points
                .iter()
                .filter_map(|p| {
                    let d = point_delta(
                        &mut self.cumulative,
                        self.config.limits.max_series,
                        p,
                        threshold.as_secs_f64(),
                        earliest_at,
                        &mut out,
                    );
                    d.map(|(req, slow)| (p.time, req, if p.error { req } else { 0 }, slow))
                })
                .collect();
            for t in &targets {
                let d = t.deploy;
                let late_before = now.saturating_sub(d.policy.longest());
                let threshold_ns = d.policy.latency_threshold.nanos();
                let key = (d.seq, t.role);
                if !self.windows.contains_key(&key)
                    && self.windows.len() >= self.config.limits.max_series
                {
                    out.over_limit += (res.spans.len() + deltas.len()) as u64;
                    continue;
                }
                let w = self
                    .windows
                    .entry(key)
                    .or_insert_with(|| SeriesWindows::new(&d.policy.lengths));
                touched.push(d.seq);
                for s in &res.spans {
                    if s.end < d.info.at {
                        // Before the deploy: outside every window of it.
                        continue;
                    }
                    if s.end <= late_before {
                        out.late += 1;
                        continue;
                    }
                    let slow = u64::from(s.latency_ns > threshold_ns);
                    w.add(s.end.min(now), Kind::Span, 1, u64::from(s.error), slow);
                    out.observations += 1;
                }
                for &(time, req, err, slow) in &deltas {
                    if time < d.info.at {
                        continue;
                    }
                    if time <= late_before {
                        out.late += 1;
                        continue;
                    }
                    w.add(time.min(now), Kind::Metric, req, err, slow);
                    out.observations += 1;
                }
            }
        }
        for seq in touched {
            self.registry.touch(seq);
        }
        out
    }

    /// Forgets cumulative series not updated for two longest windows.
    pub(super) fn sweep_cumulative(&mut self) {
        let now = self.clock;
        if now < self.next_sweep {
            return;
        }
        let longest = self.config.longest_window();
        let keep_after = now.saturating_sub(longest).saturating_sub(longest);
        self.cumulative.retain(|_, st| st.time > keep_after.0);
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
    }
}

/// Requests and slow requests a histogram point adds: the point itself for
/// delta temporality; the difference from the series' previous point for
/// cumulative (a drop or a new start time is a reset). The first cumulative
/// point of a series counts only when its start time is known and not
/// before the deploy; otherwise it is the reference.
fn point_delta(
    cumulative: &mut std::collections::HashMap<u64, CumState>,
    max_series: usize,
    p: &HistPoint,
    threshold_secs: f64,
    earliest_at: Timestamp,
    out: &mut TelemetryOutcome,
) -> Option<(u64, u64)> {
    let slow = p.slow_count(threshold_secs).min(p.count);
    if p.temporality == Temporality::Delta {
        return Some((p.count, slow));
    }
    let next = CumState {
        start: p.start.0,
        time: p.time.0,
        count: p.count,
        slow,
    };
    if let Some(st) = cumulative.get_mut(&p.series) {
        if p.time.0 <= st.time {
            // A repeat or out-of-order point: its counts are already in.
            return None;
        }
        let restarted = p.start.0 != 0 && st.start != 0 && p.start.0 != st.start;
        let delta = if restarted || p.count < st.count || slow < st.slow {
            (p.count, slow)
        } else {
            (p.count - st.count, slow - st.slow)
        };
        *st = next;
        return Some(delta);
    }
    if cumulative.len() >= max_series {
        out.over_limit += 1;
        return None;
    }
    cumulative.insert(p.series, next);
    (p.start.0 != 0 && p.start >= earliest_at).then_some((p.count, slow))
}
