//! Versions known to be good, and the rollbacks rollbackd commanded
//! (`docs/guarantees.md#fast-track`): what lets a deploy back to a version
//! that served well be watched as a recovery rather than judged as a
//! canary against the version it replaces — and lets the executor's own
//! redeploy of the version it restored be recognised as such.
//!
//! Every instance keeps it: it is made of deploy events, watches ending
//! and commands, which every instance applies (and reads back at a
//! restart, as far back as those topics keep).

use std::collections::HashMap;

use crate::model::audit::FastTrack;
use crate::model::evidence::Key;
use crate::model::{Action, Command, DeployEvent};
use crate::time::{Duration, Timestamp};

use super::infer::MAX_VERSIONS;

/// How a version came to be known good.
pub const WATCHED: &str = "watched";
pub const RESTORED: &str = "restored";

/// The last rollback rollbackd commanded for a key.
#[derive(Debug, Clone)]
pub struct LastRollback {
    pub deploy_id: String,
    pub command_id: String,
    pub to_version: String,
}

/// Per (service, environment): versions seen healthy (and when), versions
/// rolled back, the last rollback.
#[derive(Debug, Default)]
pub struct Known {
    good: HashMap<Key, Vec<(String, Timestamp, &'static str)>>,
    bad: HashMap<Key, Vec<String>>,
    last_rollback: HashMap<Key, LastRollback>,
}

/// Keeps at most [`MAX_VERSIONS`] entries, dropping the first (oldest).
fn cap<T>(list: &mut Vec<T>) {
    if list.len() > MAX_VERSIONS {
        list.remove(0);
    }
}

impl Known {
    /// `version` of `key` was seen healthy at `at`, `how`.
    pub fn good(&mut self, key: &Key, version: &str, at: Timestamp, how: &'static str) {
        if self.is_bad(key, version) {
            return;
        }
        let list = self.good.entry(key.clone()).or_default();
        list.retain(|(v, _, _)| v != version);
        list.push((version.to_string(), at, how));
        cap(list);
    }

    /// `version` of `key` was rolled back, or did not recover: never fast-tracked.
    pub fn bad(&mut self, key: &Key, version: &str) {
        if let Some(list) = self.good.get_mut(key) {
            list.retain(|(v, _, _)| v != version);
        }
        let list = self.bad.entry(key.clone()).or_default();
        if !list.iter().any(|v| v == version) {
            list.push(version.to_string());
            cap(list);
        }
    }

    /// Whether `version` of `key` was rolled back, or did not recover.
    pub fn is_bad(&self, key: &Key, version: &str) -> bool {
        self.bad
            .get(key)
            .is_some_and(|l| l.iter().any(|v| v == version))
    }

    /// A rollback command rollbackd emitted (or read back): its target is
    /// good, the version it rolls back is bad.
    pub fn commanded(&mut self, key: &Key, cmd: &Command) {
        if cmd.action != Action::Rollback {
            return;
        }
        self.bad(key, &cmd.from_version);
        if let Some(to) = &cmd.to_version {
            self.good(key, to, cmd.decided_at, RESTORED);
            self.last_rollback.insert(
                key.clone(),
                LastRollback {
                    deploy_id: cmd.deploy_id.clone(),
                    command_id: cmd.command_id.clone(),
                    to_version: to.clone(),
                },
            );
        }
    }

    /// The last rollback of `key`, if it restored `version`.
    pub fn restored(&self, key: &Key, version: &str) -> Option<&LastRollback> {
        self.last_rollback
            .get(key)
            .filter(|r| r.to_version == version)
    }

    /// Why a deploy `ev` of `key` is fast-tracked at `now` with `window`,
    /// if it is: its version seen healthy within the window, never rolled
    /// back, and not the version it replaces.
    pub fn fast_track(
        &self,
        key: &Key,
        ev: &DeployEvent,
        now: Timestamp,
        window: Duration,
    ) -> Option<FastTrack> {
        if window.nanos() <= 0 || ev.previous_version.as_deref() == Some(&ev.version) {
            return None;
        }
        if self.is_bad(key, &ev.version) {
            return None;
        }
        let (_, healthy_at, how) = self
            .good
            .get(key)?
            .iter()
            .find(|(v, _, _)| *v == ev.version)?;
        (*healthy_at >= now.saturating_sub(window)).then(|| FastTrack {
            healthy_at: *healthy_at,
            how: (*how).to_string(),
        })
    }
}
