//! Maintenance windows (`docs/guarantees.md#guards`, guard 3): those of
//! `[[guards.maintenance]]`, evaluated at the engine's clock, and those
//! opened through the admin API — read from the admin topic, so every
//! instance holds the same ones and a restart rebuilds them.
//!
//! An opened window runs from its record's `at` to its `until`; closing it
//! ends it at the close's `at`. It is remembered (closed or not) until its
//! `until` has passed, so that the same record read twice, or an open read
//! again after its close, changes nothing.

use serde::Serialize;

use crate::config::maintenance::MaintenanceWindow;
use crate::model::audit::Suppression;
use crate::model::MaintenanceCall;
use crate::time::Timestamp;

/// How many opened windows are remembered at once; the one ending first
/// is forgotten to make room. Far more than people open by hand.
const MAX_OPENED: usize = 1000;

/// A window opened through the admin API.
#[derive(Debug, Clone)]
struct Opened {
    id: String,
    services: Vec<String>,
    from: Timestamp,
    until: Timestamp,
    /// When it was closed, if it was.
    closed_at: Option<Timestamp>,
    reason: String,
    actor: String,
}

impl Opened {
    fn end(&self) -> Timestamp {
        self.closed_at.map_or(self.until, |c| c.min(self.until))
    }

    fn covers(&self, service: &str, now: Timestamp) -> bool {
        self.from <= now
            && now < self.end()
            && (self.services.is_empty() || self.services.iter().any(|s| s == service))
    }
}

/// A window covering services now, for the status page and `/v1/status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenanceView {
    /// The `[[guards.maintenance]]` name, or the id of an opened window.
    pub name: String,
    /// `config` or `admin`.
    pub source: &'static str,
    /// Empty: every service.
    pub services: Vec<String>,
    /// When an opened window was opened; `None` for a configured one.
    pub since: Option<Timestamp>,
    pub until: Timestamp,
    pub reason: String,
    /// Who opened it (admin only).
    pub actor: Option<String>,
}

/// What an open or a close changed, for its audit record.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub changed: bool,
    pub services: Vec<String>,
    pub until: Timestamp,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Maintenance {
    configured: Vec<MaintenanceWindow>,
    opened: Vec<Opened>,
}

impl Maintenance {
    pub fn new(configured: &[MaintenanceWindow]) -> Maintenance {
        Maintenance {
            configured: configured.to_vec(),
            opened: Vec::new(),
        }
    }

    /// The first window covering `service` at `now` — configured ones in
    /// their order, then opened ones in theirs — as the suppression it
    /// makes.
    pub fn check(&self, service: &str, now: Timestamp) -> Option<Suppression> {
        let configured = self
            .configured
            .iter()
            .filter(|w| w.covers(service))
            .find_map(|w| Some((w.name.clone(), w.until(now)?)));
        let (window, until) = configured.or_else(|| {
            self.opened
                .iter()
                .find(|o| o.covers(service, now))
                .map(|o| (o.id.clone(), o.end()))
        })?;
        Some(Suppression::Maintenance { window, until })
    }

    /// Opens window `m` from `at`, unless it is known already or over.
    pub fn open(&mut self, m: &MaintenanceCall, at: Timestamp, actor: &str) -> Change {
        let until = m.until.unwrap_or(at);
        let change = |changed| Change {
            changed,
            services: m.services.clone(),
            until,
            reason: m.reason.clone(),
        };
        self.forget_ended(at);
        if until <= at || self.opened.iter().any(|o| o.id == m.id) {
            return change(false);
        }
        if self.opened.len() >= MAX_OPENED {
            if let Some(i) = (0..self.opened.len()).min_by_key(|&i| self.opened[i].until) {
                self.opened.remove(i);
            }
        }
        self.opened.push(Opened {
            id: m.id.clone(),
            services: m.services.clone(),
            from: at,
            until,
            closed_at: None,
            reason: m.reason.clone(),
            actor: actor.to_string(),
        });
        change(true)
    }

    /// Closes opened window `id` as of `at`; `None` when no such window is
    /// known.
    pub fn close(&mut self, id: &str, at: Timestamp) -> Option<Change> {
        self.forget_ended(at);
        let o = self.opened.iter_mut().find(|o| o.id == id)?;
        let changed = at < o.end();
        if changed {
            o.closed_at = Some(at);
        }
        Some(Change {
            changed,
            services: o.services.clone(),
            until: o.end(),
            reason: o.reason.clone(),
        })
    }

    /// Whether opened window `id` is running at `now`.
    pub fn is_open(&self, id: &str, now: Timestamp) -> bool {
        self.opened
            .iter()
            .any(|o| o.id == id && o.from <= now && now < o.end())
    }

    fn forget_ended(&mut self, now: Timestamp) {
        self.opened.retain(|o| o.until > now);
    }

    /// The windows running at `now`: configured, then opened.
    pub fn views(&self, now: Timestamp) -> Vec<MaintenanceView> {
        let configured = self.configured.iter().filter_map(|w| {
            Some(MaintenanceView {
                name: w.name.clone(),
                source: "config",
                services: w.services.clone(),
                since: None,
                until: w.until(now)?,
                reason: w.reason.clone(),
                actor: None,
            })
        });
        let opened = self
            .opened
            .iter()
            .filter(|o| o.from <= now && now < o.end())
            .map(|o| MaintenanceView {
                name: o.id.clone(),
                source: "admin",
                services: o.services.clone(),
                since: Some(o.from),
                until: o.end(),
                reason: o.reason.clone(),
                actor: Some(o.actor.clone()),
            });
        configured.chain(opened).collect()
    }
}
