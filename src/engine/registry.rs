//! Active deploys, their lifecycle state, and telemetry correlation
//! (`docs/formats.md#deploy-events`, `docs/formats.md#otlp-telemetry`): which deploy, and which side of it (candidate or
//! baseline), a resource's telemetry belongs to — and when each deploy is
//! next due for evaluation.
//!
//! Every lookup is indexed by what is looked up — deploy id, (service,
//! version), service (and environment), release — and the evaluation
//! schedule is ordered by time, so the cost of one input does not depend on
//! how many deploys are active.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::bounded::Bounded;
use super::evaluate::Evaluation;
use super::history::History;
use super::window::Tally;
use crate::config::Policy;
use crate::model::audit::{FastTrack, SuppressionReason};
use crate::model::{Action, Command, DeployEvent, ResourceIdent, Verdict};
use crate::time::Timestamp;

pub use crate::model::evidence::Role;

/// How many retired deploy ids are remembered, so late or repeated events
/// for them do not bring them back.
const MAX_RETIRED_REMEMBERED: usize = 100_000;

/// One watched deploy.
#[derive(Debug)]
pub struct Deploy {
    /// Arrival order; never reused. Keys the deploy's windows and orders
    /// evaluation.
    pub seq: u64,
    /// The `deploy.started` event (later events update `canary_weight`).
    pub info: DeployEvent,
    pub policy: Arc<Policy>,
    /// Set by `deploy.completed`: watched until `at + watch_after_complete`.
    pub completed_at: Option<Timestamp>,
    /// The command emitted for it, if any: no further automatic decisions
    /// are made.
    pub decided: Option<(String, Action)>,
    /// The previous evaluation's verdict: a verdict is audited when it
    /// changes to or from rollback / not_attributable, not every evaluation.
    pub previous_verdict: Option<Verdict>,
    /// The last suppression reason audited, for the same reason.
    pub audited_suppression: Option<SuppressionReason>,
    /// When it is next evaluated at the latest.
    pub next_eval: Timestamp,
    pub last_eval: Option<Evaluation>,
    /// The command emitted for it (or read back from the commands topic).
    pub command: Option<Command>,
    /// After a successful rollback: its restored version is being watched;
    /// for a fast-tracked deploy, its own version.
    pub verifying: Option<Verifying>,
    /// Why it is fast-tracked (its version known good), if it is.
    pub fast_track: Option<FastTrack>,
    /// Its evaluations, for people (the status page, the replay report).
    pub history: History,
}

/// A rolled-back deploy's restored version under watch (`docs/config.md#verify`): its baseline side's requests since the rollback —
/// or a fast-tracked deploy's candidate side since it started.
#[derive(Debug, Clone)]
pub struct Verifying {
    /// The side watched: the baseline (restored), or the candidate of a
    /// fast-tracked deploy.
    pub side: Role,
    /// When the executor (or a `deploy.rolled_back` event) said it was done.
    pub rolled_back_at: Timestamp,
    /// The watch ends here.
    pub until: Timestamp,
    /// The restored version's requests at event times at or after the
    /// rollback: what it served since, also when a restart reads older
    /// traffic back.
    pub after: Tally,
    /// When it was first confidently below every threshold.
    pub recovered_at: Option<Timestamp>,
}

impl Deploy {
    pub fn environment(&self) -> &str {
        self.info.environment_or_default()
    }

    pub fn id(&self) -> &str {
        &self.info.deploy_id
    }

    /// The version on `role`'s side.
    pub fn version_of(&self, role: Role) -> Option<&str> {
        match role {
            Role::Candidate => Some(&self.info.version),
            Role::Baseline => self.info.previous_version.as_deref(),
        }
    }

    /// When the watch after completion ends, if it was completed.
    pub fn watched_until(&self) -> Option<Timestamp> {
        self.completed_at
            .map(|done| done.saturating_add(self.policy.watch_after_complete))
    }

    /// The next time something is due for it: an evaluation, or the end of
    /// its watch.
    fn due_at(&self) -> Timestamp {
        let end = match &self.verifying {
            Some(v) => Some(v.until),
            None => self.watched_until(),
        };
        match end {
            Some(end) => end.min(self.next_eval),
            None => self.next_eval,
        }
    }
}

/// One place telemetry goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub deploy: &'a Deploy,
    pub role: Role,
}

#[derive(Debug)]
pub struct Registry {
    /// By arrival order (seq): the deterministic evaluation order.
    deploys: BTreeMap<u64, Deploy>,
    by_id: HashMap<String, u64>,
    /// service → version → (seq, role).
    by_version: HashMap<String, HashMap<String, Vec<(u64, Role)>>>,
    /// service → seqs, oldest first.
    by_service: HashMap<String, Vec<u64>>,
    /// release id → seqs, oldest first.
    by_release: HashMap<String, Vec<u64>>,
    /// (when due, seq): what the next evaluation has to look at.
    schedule: BTreeSet<(Timestamp, u64)>,
    /// Deploys whose windows changed since their last evaluation.
    touched: BTreeSet<u64>,
    retired: Bounded<String>,
    next_seq: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            deploys: BTreeMap::new(),
            by_id: HashMap::new(),
            by_version: HashMap::new(),
            by_service: HashMap::new(),
            by_release: HashMap::new(),
            schedule: BTreeSet::new(),
            touched: BTreeSet::new(),
            retired: Bounded::new(MAX_RETIRED_REMEMBERED),
            next_seq: 0,
        }
    }
}

fn unlink(list: &mut Vec<u64>, seq: u64) {
    list.retain(|&s| s != seq);
}

impl Registry {
    pub fn len(&self) -> usize {
        self.deploys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deploys.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Deploy> {
        self.deploys.get(self.by_id.get(id)?)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Deploy> {
        self.deploys.get_mut(self.by_id.get(id)?)
    }

    pub fn by_seq(&self, seq: u64) -> Option<&Deploy> {
        self.deploys.get(&seq)
    }

    pub fn by_seq_mut(&mut self, seq: u64) -> Option<&mut Deploy> {
        self.deploys.get_mut(&seq)
    }

    pub fn was_retired(&self, id: &str) -> bool {
        self.retired.contains_str(id)
    }

    /// Active deploys in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &Deploy> {
        self.deploys.values()
    }

    /// Active deploys of `service` (of `env` when given), oldest first.
    pub fn of_service<'a>(
        &'a self,
        service: &str,
        env: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Deploy> + 'a {
        self.by_service
            .get(service)
            .into_iter()
            .flatten()
            .filter_map(|s| self.deploys.get(s))
            .filter(move |d| env.is_none_or(|e| d.environment() == e))
    }

    /// Active deploys of `release`, oldest first.
    pub fn of_release<'a>(&'a self, release: &str) -> impl Iterator<Item = &'a Deploy> + 'a {
        self.by_release
            .get(release)
            .into_iter()
            .flatten()
            .filter_map(|s| self.deploys.get(s))
    }

    /// Adds a started deploy, due for evaluation at `now`; the caller has
    /// checked it is new.
    pub fn insert(&mut self, info: DeployEvent, policy: Arc<Policy>, now: Timestamp) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let versions = self.by_version.entry(info.service.clone()).or_default();
        versions
            .entry(info.version.clone())
            .or_default()
            .push((seq, Role::Candidate));
        if let Some(prev) = &info.previous_version {
            if prev != &info.version {
                versions
                    .entry(prev.clone())
                    .or_default()
                    .push((seq, Role::Baseline));
            }
        }
        self.by_service
            .entry(info.service.clone())
            .or_default()
            .push(seq);
        if let Some(r) = &info.release_id {
            self.by_release.entry(r.clone()).or_default().push(seq);
        }
        self.by_id.insert(info.deploy_id.clone(), seq);
        let d = Deploy {
            seq,
            info,
            policy,
            completed_at: None,
            decided: None,
            previous_verdict: None,
            audited_suppression: None,
            next_eval: now,
            last_eval: None,
            command: None,
            verifying: None,
            fast_track: None,
            history: History::default(),
        };
        self.schedule.insert((d.due_at(), seq));
        self.deploys.insert(seq, d);
        seq
    }

    /// Changes a deploy (its next evaluation or completion) and keeps the
    /// schedule in step.
    pub fn update<T>(&mut self, id: &str, f: impl FnOnce(&mut Deploy) -> T) -> Option<T> {
        let seq = *self.by_id.get(id)?;
        let d = self.deploys.get_mut(&seq)?;
        let before = d.due_at();
        let out = f(d);
        let after = d.due_at();
        // (Also puts back a deploy that `take_due` took off.)
        self.schedule.remove(&(before, seq));
        self.schedule.insert((after, seq));
        Some(out)
    }

    /// Removes a deploy; returns it so the caller can drop its windows.
    pub fn retire(&mut self, id: &str) -> Option<Deploy> {
        let seq = self.by_id.remove(id)?;
        let d = self.deploys.remove(&seq)?;
        self.schedule.remove(&(d.due_at(), seq));
        self.touched.remove(&seq);
        if let Some(versions) = self.by_version.get_mut(&d.info.service) {
            for v in std::iter::once(&d.info.version).chain(d.info.previous_version.iter()) {
                if let Some(list) = versions.get_mut(v) {
                    list.retain(|&(s, _)| s != seq);
                    if list.is_empty() {
                        versions.remove(v);
                    }
                }
            }
            if versions.is_empty() {
                self.by_version.remove(&d.info.service);
            }
        }
        if let Some(list) = self.by_service.get_mut(&d.info.service) {
            unlink(list, seq);
            if list.is_empty() {
                self.by_service.remove(&d.info.service);
            }
        }
        if let Some(r) = &d.info.release_id {
            if let Some(list) = self.by_release.get_mut(r) {
                unlink(list, seq);
                if list.is_empty() {
                    self.by_release.remove(r);
                }
            }
        }
        self.retired.insert(id.to_string(), ());
        Some(d)
    }

    /// Marks a deploy's windows changed: it is evaluated at the next tick.
    pub fn touch(&mut self, seq: u64) {
        self.touched.insert(seq);
    }

    /// Takes what is due at `now` — deploys scheduled at or before it and
    /// touched ones — in arrival order. Each is then retired or evaluated
    /// (and so rescheduled through [`Registry::update`]).
    pub fn take_due(&mut self, now: Timestamp) -> Vec<u64> {
        let mut due: BTreeSet<u64> = std::mem::take(&mut self.touched);
        while let Some(&(at, seq)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.pop_first();
            due.insert(seq);
        }
        due.into_iter().collect()
    }

    /// Where a resource's telemetry goes (`docs/formats.md#otlp-telemetry`): by `deployment.id`
    /// first, else by service and version, with the environment checked when
    /// both sides have one.
    pub fn correlate(&self, ident: &ResourceIdent) -> Vec<Target<'_>> {
        if let Some(d) = ident.deployment_id.as_deref().and_then(|id| self.get(id)) {
            return vec![Target {
                deploy: d,
                role: Role::Candidate,
            }];
        }
        let (Some(service), Some(version)) = (ident.service.as_deref(), ident.version.as_deref())
        else {
            return Vec::new();
        };
        self.of_version(service, version, ident.environment.as_deref())
    }

    /// The deploy sides of `service` on `version`: candidates and
    /// baselines, the environment checked when both it and the deploy
    /// name one.
    pub fn of_version(
        &self,
        service: &str,
        version: &str,
        environment: Option<&str>,
    ) -> Vec<Target<'_>> {
        let Some(list) = self.by_version.get(service).and_then(|v| v.get(version)) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|&(seq, role)| {
                let d = self.deploys.get(&seq)?;
                let env_ok = match (environment, d.info.environment.as_deref()) {
                    (Some(t), Some(e)) => t == e,
                    _ => true,
                };
                env_ok.then_some(Target { deploy: d, role })
            })
            .collect()
    }
}
