//! Stage 2's intake: evidence into rolling windows (`docs/formats.md#otlp-telemetry`). Each
//! raw record and each HTTP request counts once per key ([`super::applied`]:
//! evidence stage 1 sent again after a crash, or an exporter's request sent
//! again after a 503, changes nothing) — and cumulative histogram series are turned into deltas here,
//! by the owner, who sees every point of them. Alerts and manual rollbacks
//! that came with the evidence are decided like any other.
//!
//! # Late evidence
//!
//! Evidence that reaches the owner later than its policy's
//! `allowed_lateness` after its slot ended (by the owner's clock) still
//! goes into the deploy side's windows — the rates and the threshold tests
//! read totals, and a request's outcome does not depend on when its span
//! was exported — but not into its pair slots or its watermark, so the
//! attribution test, which must compare both versions over the same
//! slots, never reads a slot after its lateness ran out (see `judge`).
//! It is never silently lost: it is counted (`TelemetryOutcome::too_late`,
//! and per deploy), and the first time it happens for a deploy one
//! `late_data` audit record says how late it came and how much. Evidence
//! an instance reads back before it decides for a key (at start, or when
//! it takes the key over) is old by nature: it fills the windows and is
//! neither counted per deploy nor audited.

use std::collections::hash_map::Entry;
use std::collections::BTreeMap;

use crate::model::audit::LateDataAudit;
use crate::model::evidence::{Counts, Evidence, HandedPoint, Item, Key, Origin, RawOffset};
use crate::model::{AuditRecord, Output, TelemetryBatch, TelemetryOutcome};
use crate::time::{Duration, Timestamp};

use super::applied::Applied;
use super::fold::Fold;
use super::idmap::IdMap;
use super::registry::Role;
use super::series::{since, CumState};
use super::window::{self, Kind, SeriesWindows};
use super::Engine;

/// Evidence later than `allowed_lateness` in one batch, per deploy (by
/// seq): the side and how late the latest-arriving of it came, and how
/// many observations.
type LateInBatch = BTreeMap<u64, (Role, Duration, u64)>;

/// What applying one batch of evidence did so far.
#[derive(Default)]
struct Batch {
    outcome: TelemetryOutcome,
    /// Deploys (by seq) whose windows changed.
    touched: Vec<u64>,
    late: LateInBatch,
}

/// The owner's last point of a cumulative histogram series, and whether
/// stage 1 turns the series into deltas (resumed: it sends only the first
/// point it reads of it).
#[derive(Debug, Clone, Copy)]
pub struct Last {
    point: CumState,
    resumed: bool,
}

/// A handover of one raw partition for one key (`Item::Handover`): the
/// offset its next reader starts at, and the last point of each series
/// before it.
#[derive(Debug, Default)]
pub struct Handed {
    next: i64,
    points: IdMap<CumKey, CumState>,
}

/// How often cumulative series that stopped are forgotten.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

impl Engine {
    /// Telemetry given to the engine itself (`replay`, `demo`, HTTP without
    /// Kafka): both stages in this process — folded into evidence, then
    /// applied as its owner.
    pub(super) fn telemetry(&mut self, batch: &TelemetryBatch, out: &mut Vec<Output>) {
        let mut fold = Fold::default();
        let mut outcome = fold.telemetry(&self.registry, &self.config, batch, None, self.clock);
        for e in fold.flush(Origin::Local) {
            // Stage 1 counted what was late on the same clock.
            let applied = self.evidence(e, out);
            outcome.over_limit += applied.over_limit;
        }
        out.push(Output::Telemetry(outcome));
    }

    /// Applies one batch of evidence; returns what became of its counts.
    pub(super) fn evidence(&mut self, e: Evidence, out: &mut Vec<Output>) -> TelemetryOutcome {
        let owner = self.ownership.owns(&e.key.service, &e.key.environment);
        let mut applied = self.applied.remove(&e.key).unwrap_or_default();
        if let Origin::Http(Some(request)) = e.origin {
            if !applied.request(request, self.clock) {
                let repeated = e.items.iter().map(Item::observations).sum();
                self.applied.insert(e.key, applied);
                return TelemetryOutcome {
                    repeated,
                    ..TelemetryOutcome::default()
                };
            }
        }
        let mut batch = Batch::default();
        for item in e.items {
            if applied.fresh(item.raw()) {
                self.item(&e.key, item, (owner, &applied), &mut batch, out);
            }
        }
        if let Origin::Kafka(ranges) = &e.origin {
            for (topic, partition, last) in ranges {
                applied.raw_applied(topic, *partition, *last);
            }
        }
        if owner {
            self.settle_inferred(&e.key, out);
        }
        if !applied.is_empty() {
            self.applied.insert(e.key, applied);
        }
        for seq in batch.touched {
            self.registry.touch(seq);
        }
        self.audit_late(batch.late, out);
        batch.outcome
    }

    /// Applies one item of evidence not applied before (`applied`: what
    /// of the key was, before this batch): counts into windows; alerts and
    /// manual rollbacks decided, by the owner only.
    fn item(
        &mut self,
        key: &Key,
        item: Item,
        (owner, applied): (bool, &Applied),
        batch: &mut Batch,
        out: &mut Vec<Output>,
    ) {
        match item {
            Item::Counts {
                deploy_id,
                role,
                at,
                metrics,
                counts,
                ..
            } => {
                self.note_side(key, &deploy_id, role, at);
                let kind = Kind::of(metrics);
                self.add(&deploy_id, role, at, kind, counts, batch);
            }
            Item::Seen {
                version,
                at,
                metrics,
                counts,
                ..
            } => {
                let kind = Kind::of(metrics);
                self.seen(key, &version, (at, kind, counts), owner, batch, out);
            }
            Item::Cumulative {
                deploy_id,
                role,
                raw,
                series,
                start,
                time,
                count,
                slow,
                error,
                resume,
            } => {
                let point = CumState {
                    start: start.0,
                    time: time.0,
                    count,
                    slow,
                };
                let resumed = match (resume, &raw) {
                    (Some(from), Some(raw)) => {
                        let side = (series, (deploy_id.as_str(), role));
                        Some(self.handed(key, side, (raw, from), applied))
                    }
                    _ => None,
                };
                let p = (series, point, error);
                self.cumulative_point(&deploy_id, role, p, resumed, batch);
            }
            Item::Handover {
                topic,
                partition,
                next,
                points,
            } => self.handover(key, (topic, partition), next, points),
            // Only the owner of the key decides (an instance reading a
            // partition back is not the owner yet).
            Item::Alerts(_) | Item::Rollback { .. } if !owner => {}
            Item::Alerts(alerts) => self.alerts(&alerts, out),
            Item::Rollback {
                deploy_id,
                reason,
                actor,
            } => self.manual_rollback(&deploy_id, &reason, &actor, out),
        }
    }

    /// Requests of `version` of `key` that no deploy claimed at stage 1
    /// (`infer`): noted in the key's book — a new version starts a deploy,
    /// by the owner — and counted for the deploys that claim the version
    /// now.
    fn seen(
        &mut self,
        key: &Key,
        version: &str,
        (at, kind, counts): (Timestamp, Kind, Counts),
        owner: bool,
        batch: &mut Batch,
        out: &mut Vec<Output>,
    ) {
        let mut claims = self.claims(key, version);
        if claims.is_empty() && owner && self.infer(key, version, at, out) {
            claims = self.claims(key, version);
        }
        self.note_serving(key, version, at);
        if counts.requests == 0 {
            // A cumulative series: it says only that the version serves.
            return;
        }
        for (deploy_id, role, started) in claims {
            if at >= started {
                self.add(&deploy_id, role, at, kind, counts, batch);
            }
        }
    }

    /// The active deploys (id, side, start) that claim `version` of `key`.
    fn claims(&self, key: &Key, version: &str) -> Vec<(String, Role, Timestamp)> {
        self.registry
            .of_version(&key.service, version, Some(&key.environment))
            .into_iter()
            .map(|t| (t.deploy.info.deploy_id.clone(), t.role, t.deploy.info.at))
            .collect()
    }

    /// A cumulative histogram point of `series`: what it adds since the
    /// series' previous point goes into the deploy side's windows, unless
    /// it is from before the deploy or older than its longest window.
    /// `resumed`: the first point stage 1 read of a series it turns into
    /// deltas itself, with the point handed over before it, if any.
    fn cumulative_point(
        &mut self,
        deploy_id: &str,
        role: Role,
        (series, point, error): (u64, CumState, bool),
        resumed: Option<Option<CumState>>,
        batch: &mut Batch,
    ) {
        let Some(d) = self.registry.get(deploy_id) else {
            return;
        };
        let (seq, at, longest) = (d.seq, d.info.at, d.policy.longest());
        let max = self.config.limits.max_series;
        let key = (series, seq, role);
        let delta = match resumed {
            None => point_delta(&mut self.cumulative, max, key, point, at),
            Some(before) => {
                let longest = self.config.longest_window;
                let fresh_after = self.clock.saturating_sub(longest).saturating_sub(longest);
                let first = (at, fresh_after);
                resumed_delta(&mut self.cumulative, max, key, (point, before), first)
            }
        };
        let time = Timestamp(point.time);
        if time < at {
            // Before the deploy: outside every window of it.
            return;
        }
        if time <= self.clock.saturating_sub(longest) {
            batch.outcome.late += 1;
            return;
        }
        match delta {
            Delta::Counts(requests, slow) => {
                let c = Counts {
                    requests,
                    errors: if error { requests } else { 0 },
                    slow,
                    points: 1,
                };
                self.add_to((seq, role), time, Kind::Metric, c, batch);
            }
            Delta::Nothing => {}
            Delta::OverLimit => batch.outcome.over_limit += 1,
        }
    }

    /// Counts each deploy's evidence later than its `allowed_lateness`;
    /// the first time a deploy has any, one `late_data` audit record.
    fn audit_late(&mut self, late: LateInBatch, out: &mut Vec<Output>) {
        for (seq, (side, late_by, observations)) in late {
            if !self
                .registry
                .by_seq(seq)
                .is_some_and(|d| self.owns(&d.info))
            {
                // Evidence read back before taking a key over (a restart,
                // a new assignment) is old by nature, not late.
                continue;
            }
            let so_far = self.late_data.entry(seq).or_insert(0);
            let first = *so_far == 0;
            *so_far = so_far.saturating_add(observations);
            let Some(d) = self.registry.by_seq(seq).filter(|_| first) else {
                continue;
            };
            out.push(Output::Audit(
                AuditRecord::new(
                    self.clock,
                    LateDataAudit {
                        side,
                        late_by,
                        allowed_lateness: d.policy.allowed_lateness,
                        observations: *so_far,
                    },
                )
                .for_deploy(&d.info.deploy_id, &d.info.service),
            ));
        }
    }

    /// [`Engine::add_to`] the deploy `deploy_id`, if active.
    fn add(
        &mut self,
        deploy_id: &str,
        role: Role,
        at: Timestamp,
        kind: Kind,
        c: Counts,
        batch: &mut Batch,
    ) {
        if let Some(seq) = self.registry.get(deploy_id).map(|d| d.seq) {
            self.add_to((seq, role), at, kind, c, batch);
        }
    }

    /// Adds counts of event time `at` to a deploy side's windows (the
    /// deploy by seq; the windows created within `limits.max_series`);
    /// counts later than the policy's `allowed_lateness` go to the windows
    /// only (module docs) and into `late`.
    fn add_to(
        &mut self,
        (seq, role): (u64, Role),
        at: Timestamp,
        kind: Kind,
        c: Counts,
        batch: &mut Batch,
    ) {
        let Batch {
            outcome,
            touched,
            late,
        } = batch;
        let Some(d) = self.registry.by_seq(seq) else {
            return;
        };
        let key = (seq, role);
        let full = self.windows.len() >= self.config.limits.max_series;
        let w = match self.windows.entry(key) {
            Entry::Occupied(w) => w.into_mut(),
            Entry::Vacant(_) if full => {
                outcome.over_limit += 1;
                return;
            }
            Entry::Vacant(w) => w.insert(SeriesWindows::for_policy(&d.policy)),
        };
        let at = at.min(self.clock);
        let slot = window::slot(&d.policy.lengths);
        match window::past_lateness(at, slot, d.policy.allowed_lateness, self.clock) {
            None => w.add_counts(at, kind, c),
            Some(late_by) => {
                w.add_late_counts(at, kind, c);
                let observations = if kind == Kind::Metric {
                    c.points.max(1)
                } else {
                    c.requests
                };
                outcome.too_late += observations;
                let entry = late.entry(d.seq).or_insert((role, late_by, 0));
                if late_by >= entry.1 {
                    (entry.0, entry.1) = (role, late_by);
                }
                entry.2 = entry.2.saturating_add(observations);
            }
        }
        if touched.last() != Some(&seq) {
            touched.push(seq);
        }
        if d.verifying.as_ref().is_some_and(|v| v.side == role) {
            let verifying = self
                .registry
                .by_seq_mut(seq)
                .and_then(|d| d.verifying.as_mut());
            if let Some(v) = verifying.filter(|v| at >= v.rolled_back_at) {
                v.after.add(kind, [c.requests, c.errors, c.slow], c.points);
            }
        }
    }

    /// Forgets cumulative series not updated for two longest windows.
    pub(super) fn sweep_cumulative(&mut self) {
        let now = self.clock;
        if now < self.next_sweep {
            return;
        }
        let longest = self.config.longest_window;
        let keep_after = now.saturating_sub(longest).saturating_sub(longest);
        self.cumulative.retain(|_, st| st.point.time > keep_after.0);
        for h in self.handovers.values_mut() {
            h.points.retain(|_, st| st.time > keep_after.0);
        }
        self.handovers.retain(|_, h| !h.points.is_empty());
        self.next_sweep = now.saturating_add(SWEEP_EVERY);
    }

    /// A handover of the raw partition `at` for `key`: it replaces the
    /// one before (points of deploys no longer active are dropped).
    fn handover(&mut self, key: &Key, at: (String, i32), next: i64, points: Vec<HandedPoint>) {
        let points = points
            .into_iter()
            .filter_map(|p| {
                let seq = self.registry.get(&p.deploy_id)?.seq;
                let st = CumState {
                    start: p.start.0,
                    time: p.time.0,
                    count: p.count,
                    slow: p.slow,
                };
                Some(((p.series, seq, p.role), st))
            })
            .collect();
        self.handovers
            .insert((key.clone(), at.0, at.1), Handed { next, points });
    }

    /// The point handed over before the first point of `series` (of
    /// deploy side `side`) stage 1 read from the raw record `raw`, having
    /// started reading its partition at `from`: only from a handover of
    /// that partition at that very offset, and only while nothing of the
    /// partition from there on was applied for the key (a reader after a
    /// crash, or an instance that read the partition again, finds no
    /// reference). A series absent from the handover is new since.
    fn handed(
        &self,
        key: &Key,
        (series, side): (u64, (&str, Role)),
        (raw, from): (&RawOffset, i64),
        applied: &Applied,
    ) -> Option<CumState> {
        let seq = self.registry.get(side.0)?.seq;
        let h = self
            .handovers
            .get(&(key.clone(), raw.topic.clone(), raw.partition))?;
        let unread = applied
            .last(&raw.topic, raw.partition)
            .is_none_or(|last| last < from);
        if h.next != from || !unread {
            return None;
        }
        h.points.get(&(series, seq, side.1)).copied()
    }
}

/// A cumulative series, as one deploy side sees it (the series' id, the
/// deploy's seq, the side): each side turns the points it is given into
/// deltas of its own.
pub type CumKey = super::series::SideSeries;

/// What a cumulative point adds.
enum Delta {
    Counts(u64, u64),
    Nothing,
    OverLimit,
}

/// Requests and slow requests a cumulative histogram point adds: the
/// difference from the series' previous point (a drop or a new start time
/// is a reset). The first point of a series counts only when its start
/// time is known and not before the deploy (`deploy_at`); otherwise it is
/// the reference. So is the first whole point of a series stage 1 turned
/// into deltas before (its last look is older than what stage 1 counted).
fn point_delta(
    cumulative: &mut IdMap<CumKey, Last>,
    max_series: usize,
    series: CumKey,
    p: CumState,
    deploy_at: Timestamp,
) -> Delta {
    if let Some(st) = cumulative.get_mut(&series) {
        let Some((count, slow)) = since(&st.point, &p) else {
            // A repeat or out-of-order point: its counts are already in.
            return Delta::Nothing;
        };
        let resumed = st.resumed;
        *st = Last {
            point: p,
            resumed: false,
        };
        return if resumed {
            Delta::Nothing
        } else {
            Delta::Counts(count, slow)
        };
    }
    if cumulative.len() >= max_series {
        return Delta::OverLimit;
    }
    cumulative.insert(
        series,
        Last {
            point: p,
            resumed: false,
        },
    );
    first_point(&p, deploy_at)
}

/// What the first point of a series adds: all of it when its start time is
/// known and not before the deploy; otherwise it is the reference.
fn first_point(p: &CumState, deploy_at: Timestamp) -> Delta {
    if p.start != 0 && Timestamp(p.start) >= deploy_at {
        Delta::Counts(p.count, p.slow)
    } else {
        Delta::Nothing
    }
}

/// What the first point stage 1 read of a series it turns into deltas
/// adds (`Item::Cumulative::resume`): the difference from the point handed
/// over before it (`before`), if any. Otherwise a series the owner saw
/// before is only a reference from here (what it added since stage 1's
/// last look may be counted already), and a new one counts like any first
/// point (`first`: the deploy's start, and how recent its start must be:
/// a series started earlier might be one forgotten since).
fn resumed_delta(
    cumulative: &mut IdMap<CumKey, Last>,
    max_series: usize,
    series: CumKey,
    (p, before): (CumState, Option<CumState>),
    (deploy_at, fresh_after): (Timestamp, Timestamp),
) -> Delta {
    let last = Last {
        point: p,
        resumed: true,
    };
    let full = cumulative.len() >= max_series;
    let known = match cumulative.get_mut(&series) {
        Some(st) => {
            if st.point.time < p.time {
                *st = last;
            }
            true
        }
        None if full => return Delta::OverLimit,
        None => {
            cumulative.insert(series, last);
            false
        }
    };
    match before {
        Some(before) => since(&before, &p).map_or(Delta::Nothing, |(c, s)| Delta::Counts(c, s)),
        None if known || Timestamp(p.start) <= fresh_after => Delta::Nothing,
        None => first_point(&p, deploy_at),
    }
}
