//! Active deploys, their lifecycle, and telemetry correlation
//! (CONTRACT §1.1, §1.2): which deploy, and which side of it (candidate or
//! baseline), a resource's telemetry belongs to.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use serde::Serialize;

use super::evaluate::{Evaluation, Verdict};
use crate::config::Policy;
use crate::model::{Action, DeployEvent, ResourceIdent};
use crate::time::Timestamp;

/// Which side of a deploy telemetry describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Candidate,
    Baseline,
}

/// How many retired deploy ids are remembered, so late or repeated events
/// for them do not bring them back.
const MAX_RETIRED_REMEMBERED: usize = 100_000;

/// One watched deploy.
#[derive(Debug)]
pub struct Deploy {
    /// Arrival order; never reused. Keys the deploy's windows.
    pub seq: u64,
    /// The `deploy.started` event (later events update `canary_weight`).
    pub info: DeployEvent,
    pub policy: Arc<Policy>,
    /// Set by `deploy.completed`: watched until `at + watch_after_complete`.
    pub completed_at: Option<Timestamp>,
    /// The automatic command emitted for it, if any: no further automatic
    /// decisions are made.
    pub decided: Option<(String, Action)>,
    /// The previous evaluation's verdict: a verdict is audited when it
    /// changes to or from rollback / not_attributable, not every evaluation.
    pub previous_verdict: Option<Verdict>,
    /// The last suppression reason audited, for the same reason.
    pub audited_suppression: Option<String>,
    pub next_eval: Timestamp,
    /// Set when telemetry lands in its windows: evaluated at the next tick
    /// rather than at the next interval, so a decision follows the record
    /// that made it within milliseconds.
    pub touched: AtomicBool,
    pub last_eval: Option<Evaluation>,
}

impl Deploy {
    pub fn environment(&self) -> &str {
        self.info.environment_or_default()
    }
}

/// One place telemetry goes.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub deploy: &'a Deploy,
    pub role: Role,
}

#[derive(Debug, Default)]
pub struct Registry {
    deploys: HashMap<String, Deploy>,
    /// seq → deploy id: the deterministic evaluation order.
    order: BTreeMap<u64, String>,
    /// service → version → (deploy id, role).
    by_version: HashMap<String, HashMap<String, Vec<(String, Role)>>>,
    retired: HashSet<String>,
    retired_order: VecDeque<String>,
    next_seq: u64,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.deploys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.deploys.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<&Deploy> {
        self.deploys.get(id)
    }

    pub fn get_mut(&mut self, id: &str) -> Option<&mut Deploy> {
        self.deploys.get_mut(id)
    }

    pub fn was_retired(&self, id: &str) -> bool {
        self.retired.contains(id)
    }

    /// Deploy ids in arrival order.
    pub fn ids(&self) -> Vec<String> {
        self.order.values().cloned().collect()
    }

    /// Active deploys in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = &Deploy> {
        self.order.values().filter_map(|id| self.deploys.get(id))
    }

    /// Active deploys of (service, environment), oldest first.
    pub fn of_service_env(&self, service: &str, env: &str) -> Vec<&Deploy> {
        self.iter()
            .filter(|d| d.info.service == service && d.environment() == env)
            .collect()
    }

    /// Adds a started deploy; the caller has checked it is new.
    pub fn insert(&mut self, info: DeployEvent, policy: Arc<Policy>, now: Timestamp) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = info.deploy_id.clone();
        let versions = self.by_version.entry(info.service.clone()).or_default();
        versions
            .entry(info.version.clone())
            .or_default()
            .push((id.clone(), Role::Candidate));
        if let Some(prev) = &info.previous_version {
            if prev != &info.version {
                versions
                    .entry(prev.clone())
                    .or_default()
                    .push((id.clone(), Role::Baseline));
            }
        }
        self.order.insert(seq, id.clone());
        self.deploys.insert(
            id,
            Deploy {
                seq,
                info,
                policy,
                completed_at: None,
                decided: None,
                previous_verdict: None,
                audited_suppression: None,
                next_eval: now,
                touched: AtomicBool::new(false),
                last_eval: None,
            },
        );
        seq
    }

    /// Removes a deploy; returns it so the caller can drop its windows.
    pub fn retire(&mut self, id: &str) -> Option<Deploy> {
        let d = self.deploys.remove(id)?;
        self.order.remove(&d.seq);
        if let Some(versions) = self.by_version.get_mut(&d.info.service) {
            for v in std::iter::once(&d.info.version).chain(d.info.previous_version.iter()) {
                if let Some(list) = versions.get_mut(v) {
                    list.retain(|(did, _)| did != id);
                    if list.is_empty() {
                        versions.remove(v);
                    }
                }
            }
            if versions.is_empty() {
                self.by_version.remove(&d.info.service);
            }
        }
        if self.retired.insert(id.to_string()) {
            self.retired_order.push_back(id.to_string());
            if self.retired_order.len() > MAX_RETIRED_REMEMBERED {
                if let Some(old) = self.retired_order.pop_front() {
                    self.retired.remove(&old);
                }
            }
        }
        Some(d)
    }

    /// Where a resource's telemetry goes (CONTRACT §1.2): by `deployment.id`
    /// first, else by service and version, with the environment checked when
    /// both sides have one.
    pub fn correlate(&self, ident: &ResourceIdent) -> Vec<Target<'_>> {
        if let Some(d) = ident
            .deployment_id
            .as_deref()
            .and_then(|id| self.deploys.get(id))
        {
            return vec![Target {
                deploy: d,
                role: Role::Candidate,
            }];
        }
        let (Some(service), Some(version)) = (ident.service.as_deref(), ident.version.as_deref())
        else {
            return Vec::new();
        };
        let Some(list) = self.by_version.get(service).and_then(|v| v.get(version)) else {
            return Vec::new();
        };
        list.iter()
            .filter_map(|(id, role)| {
                let d = self.deploys.get(id)?;
                let env_ok = match (&ident.environment, &d.info.environment) {
                    (Some(t), Some(e)) => t == e,
                    _ => true,
                };
                env_ok.then_some(Target {
                    deploy: d,
                    role: *role,
                })
            })
            .collect()
    }
}
