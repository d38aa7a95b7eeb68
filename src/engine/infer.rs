//! Deploys found in the telemetry (`docs/guarantees.md#deploys-found-in-the-telemetry`):
//! with `[deploys] infer`, the owner of a (service, environment) keeps a
//! book of the versions it saw serving, from every request it counts, and
//! starts a deploy when a version it has not seen within
//! `deploys.version_memory` starts serving while another one serves.
//!
//! The deploy is an ordinary `deploy.started` event — id derived from
//! (service, environment, version), so every instance and every restart
//! makes the same one; strategy `inferred`; baseline the version that
//! served last; started at the new version's first slot — which the owner
//! applies at once and publishes on the deploy-events topic for every
//! other instance ([`Output::Deploy`]). Until an instance has read it, the
//! new version's requests reach the owner as [`crate::model::evidence::Item::Seen`]
//! and are counted for the deploy there, so none are lost. It completes
//! (another published event) when one of its versions has been gone for
//! `deploys.infer_settle`: its watch after completion then runs as for any
//! deploy.
//!
//! A version seen within the memory that comes back after being gone for
//! `infer_settle` starts a deploy only when it is known good (a revert:
//! fast-tracked, see `known`). What starts nothing: any other version seen
//! within the memory (two versions serving side by side, one flapping
//! back), a version with no other one
//! serving before it (a service's first sight, a restart after a quiet
//! spell), anything in the first `infer_settle` after the owner first sees
//! the key (at start, or when it takes the key over, every version it
//! reads back is taken as known), telemetry without `service.version`, and
//! a version an active deploy already claims (announced deploys win).

use std::collections::HashMap;

use crate::model::evidence::Key;
use crate::model::{DataMigration, DeployEvent, DeployEventKind, Output};
use crate::time::{Duration, Timestamp};

use super::registry::Role;
use super::Engine;

/// The versions remembered per (service, environment): the least recently
/// seen goes first.
pub const MAX_VERSIONS: usize = 16;

/// The (service, environment) keys whose versions an owner remembers: a
/// key past it is not learnt, and so never infers a deploy (telemetry
/// with endless service names cannot grow the owner without bound).
pub const MAX_KEYS: usize = 100_000;

pub use crate::model::INFERRED;

/// One version seen serving, by event time.
#[derive(Debug, Clone)]
struct Serving {
    version: String,
    last: Timestamp,
}

/// A version that may start a deploy, with its baseline.
enum Arrival {
    /// Not seen within `deploys.version_memory`.
    New(String),
    /// Seen within it, gone since: a deploy only if it is known good (a
    /// revert, fast-tracked).
    Back(String),
}

/// The versions of one (service, environment) seen serving.
#[derive(Debug, Default)]
pub struct VersionBook {
    /// The event time of the first request the book saw.
    began: Option<Timestamp>,
    /// The latest event time it saw.
    watermark: Timestamp,
    versions: Vec<Serving>,
}

impl VersionBook {
    /// Notes that `version` served at `at`.
    pub fn note(&mut self, version: &str, at: Timestamp) {
        self.began = Some(self.began.map_or(at, |b| b.min(at)));
        self.watermark = self.watermark.max(at);
        if let Some(s) = self.versions.iter_mut().find(|s| s.version == version) {
            s.last = s.last.max(at);
            return;
        }
        if self.versions.len() >= MAX_VERSIONS {
            let oldest = (0..self.versions.len())
                .min_by_key(|&i| self.versions[i].last)
                .unwrap_or(0);
            self.versions.swap_remove(oldest);
        }
        self.versions.push(Serving {
            version: version.to_string(),
            last: at,
        });
    }

    /// How many versions it remembers.
    pub fn len(&self) -> usize {
        self.versions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.versions.is_empty()
    }

    /// When `version` last served, if it is remembered.
    fn last(&self, version: &str) -> Option<Timestamp> {
        self.versions
            .iter()
            .find(|s| s.version == version)
            .map(|s| s.last)
    }

    /// What `version` serving at `at` is, when it may start a deploy: after
    /// the book's first `settle`, with another version serving within
    /// `settle` before it (the baseline, the one that served last), a
    /// version not seen within `memory` is new; one seen, but gone for
    /// `settle`, is coming back. Anything else starts nothing.
    fn arrival(
        &self,
        version: &str,
        at: Timestamp,
        settle: Duration,
        memory: Duration,
    ) -> Option<Arrival> {
        let began = self.began?;
        if at < began.saturating_add(settle) {
            return None;
        }
        let baseline = self
            .versions
            .iter()
            .filter(|s| s.version != version && s.last >= at.saturating_sub(settle))
            .max_by_key(|s| s.last)?
            .version
            .clone();
        match self.last(version) {
            Some(last) if last >= at.saturating_sub(settle) => None,
            Some(last) if last >= at.saturating_sub(memory) => Some(Arrival::Back(baseline)),
            _ => Some(Arrival::New(baseline)),
        }
    }

    /// When `version` last served, if it has been gone for `settle` by the
    /// book's watermark.
    fn gone(&self, version: &str, settle: Duration) -> Option<Timestamp> {
        let last = self.last(version)?;
        (self.watermark > last.saturating_add(settle)).then_some(last)
    }
}

/// The id of the deploy of `version` of `key` rollbackd infers, first
/// seen serving at `at`: (service, environment, version), with `at` when
/// a deploy of that version was inferred before — the same on every
/// instance and after every restart.
fn inferred_id(key: &Key, version: &str, at: Timestamp, used: impl Fn(&str) -> bool) -> String {
    let bounded = |id: String| {
        if id.len() <= crate::ingest::MAX_NAME {
            return id;
        }
        let digest = crate::model::evidence::RequestId::of(&id, &[]).0;
        format!("{INFERRED}:{digest:016x}")
    };
    let id = bounded(format!(
        "{INFERRED}:{}:{}:{version}",
        key.service, key.environment
    ));
    if !used(&id) {
        return id;
    }
    bounded(format!(
        "{INFERRED}:{}:{}:{version}@{}",
        key.service,
        key.environment,
        at.0.div_euclid(1_000_000_000)
    ))
}

/// Notes in `books` that `version` of `key` served at `at` (a new key only
/// while fewer than [`MAX_KEYS`] are remembered).
fn note(books: &mut HashMap<Key, VersionBook>, key: &Key, version: &str, at: Timestamp) {
    if let Some(book) = books.get_mut(key) {
        book.note(version, at);
    } else if books.len() < MAX_KEYS {
        books.entry(key.clone()).or_default().note(version, at);
    }
}

impl Engine {
    /// Notes that `version` of `key` served at `at`, if `key`'s deploys
    /// are inferred.
    pub(super) fn note_serving(&mut self, key: &Key, version: &str, at: Timestamp) {
        if self.config.deploys.infers(&key.service) {
            note(&mut self.books, key, version, at);
        }
    }

    /// Notes the version on `role`'s side of `deploy_id` as serving at
    /// `at`, if `key`'s deploys are inferred (every request the owner
    /// counts for a deploy).
    pub(super) fn note_side(&mut self, key: &Key, deploy_id: &str, role: Role, at: Timestamp) {
        if !self.config.deploys.infers(&key.service) {
            return;
        }
        if let Some(version) = self
            .registry
            .get(deploy_id)
            .and_then(|d| d.version_of(role))
        {
            note(&mut self.books, key, version, at);
        }
    }

    /// The owner saw `version` of `key` serving at `at`, which no active
    /// deploy claims: if it is new, the deploy it starts is applied and
    /// published. Returns whether a deploy started.
    pub(super) fn infer(
        &mut self,
        key: &Key,
        version: &str,
        at: Timestamp,
        out: &mut Vec<Output>,
    ) -> bool {
        let d = &self.config.deploys;
        if !d.infers(&key.service) || version.len() > crate::ingest::MAX_NAME {
            return false;
        }
        let Some(arrival) = self
            .books
            .get(key)
            .and_then(|b| b.arrival(version, at, d.infer_settle, d.version_memory))
        else {
            return false;
        };
        let (baseline, back) = match arrival {
            Arrival::New(b) => (b, false),
            Arrival::Back(b) => (b, true),
        };
        let registry = &self.registry;
        let deploy_id = inferred_id(key, version, at, |id| {
            registry.get(id).is_some() || registry.was_retired(id)
        });
        if registry.was_retired(&deploy_id) {
            return false;
        }
        let ev = DeployEvent {
            kind: DeployEventKind::Started,
            deploy_id,
            service: key.service.clone(),
            version: version.to_string(),
            at,
            environment: Some(key.environment.clone()),
            previous_version: Some(baseline),
            strategy: Some(INFERRED.to_string()),
            release_id: None,
            data_migration: DataMigration::None,
            canary_weight: None,
            labels: Default::default(),
        };
        let window = d.fast_track_window;
        if back
            && self
                .known
                .fast_track(key, &ev, self.clock, window)
                .is_none()
        {
            // A version coming back that is not known good: flapping.
            return false;
        }
        self.deploy_event(ev.clone(), out);
        let started = self.registry.get(&ev.deploy_id).is_some();
        if started {
            out.push(Output::Deploy(ev));
        }
        started
    }

    /// Completes the inferred deploys of `key` one of whose versions has
    /// been gone for `deploys.infer_settle` (by the owner, after evidence).
    pub(super) fn settle_inferred(&mut self, key: &Key, out: &mut Vec<Output>) {
        let Some(book) = self.books.get(key) else {
            return;
        };
        let settle = self.config.deploys.infer_settle;
        let done: Vec<DeployEvent> = self
            .registry
            .of_service(&key.service, Some(&key.environment))
            .filter(|d| d.info.strategy.as_deref() == Some(INFERRED))
            .filter(|d| d.completed_at.is_none() && d.decided.is_none() && d.verifying.is_none())
            .filter_map(|d| {
                let candidate = book.gone(&d.info.version, settle);
                let baseline = d
                    .info
                    .previous_version
                    .as_deref()
                    .and_then(|v| book.gone(v, settle));
                let at = candidate.into_iter().chain(baseline).min()?;
                Some(DeployEvent {
                    kind: DeployEventKind::Completed,
                    at: at.max(d.info.at),
                    ..d.info.clone()
                })
            })
            .collect();
        for ev in done {
            self.deploy_event(ev.clone(), out);
            out.push(Output::Deploy(ev));
        }
    }
}
