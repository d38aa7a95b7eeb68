//! The guards (`docs/guarantees.md#guards`): their state — commands already emitted,
//! automation pause, maintenance windows ([`super::maintenance`]),
//! cooldowns per service and environment, the circuit breaker — and the one chain that applies them, in order
//! ([`Guards::check`]). Everything here can be rebuilt from the commands
//! and admin topics ([`Guards::restore`]).

use std::collections::{HashMap, VecDeque};

use super::bounded::Bounded;
use super::maintenance::Maintenance;
use crate::config::GuardsConfig;
use crate::model::audit::Suppression;
use crate::model::{Command, Trigger};
use crate::time::{Duration, Timestamp};

/// Which guards of the chain apply to a decision. The order is fixed:
/// once per deploy, paused, maintenance, dry run, cooldown, breaker;
/// approval (7) is decided with the command's action, before the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub once: bool,
    pub paused: bool,
    pub maintenance: bool,
    pub dry_run: bool,
    pub cooldown: bool,
    pub breaker: bool,
}

impl Chain {
    /// An automatic decision on one deploy (burn rate, alert): all of them.
    pub const AUTOMATIC: Chain = Chain {
        once: true,
        paused: true,
        maintenance: true,
        dry_run: true,
        cooldown: true,
        breaker: true,
    };
    /// A person's decision: only once per deploy.
    pub const MANUAL: Chain = Chain {
        once: true,
        paused: false,
        maintenance: false,
        dry_run: false,
        cooldown: false,
        breaker: false,
    };
    /// One more deploy of a release that is being rolled back
    /// automatically: the release as a whole passed the chain already; a
    /// window covering this deploy's service still holds it back.
    pub const RELEASE_MEMBER: Chain = Chain {
        once: true,
        paused: false,
        maintenance: true,
        dry_run: true,
        cooldown: false,
        breaker: false,
    };
    /// A release cascade as a whole, when a `deploy.rolled_back` event (not
    /// one of our commands) started it: the guards that apply to a whole
    /// decision (maintenance is per service: each member's own check).
    pub const RELEASE: Chain = Chain {
        once: false,
        paused: true,
        maintenance: false,
        dry_run: false,
        cooldown: false,
        breaker: true,
    };
}

/// How many emitted command ids are remembered. Far more than any fleet
/// rolls back within a retention period; the oldest are forgotten first.
const MAX_REMEMBERED_COMMANDS: usize = 1_000_000;

#[derive(Debug, Clone)]
pub struct Guards {
    cooldown: Duration,
    breaker_max: usize,
    breaker_window: Duration,
    /// command id → decided_at, for once-per-deploy and time to rollback.
    emitted: Bounded<String, Timestamp>,
    /// Set by the admin API; who and when, for the audit and `/readyz`-side views.
    paused: Option<(Timestamp, String)>,
    /// When the latest pause or resume was taken: an older one read later
    /// (from the admin topic) does not undo it.
    pause_changed_at: Option<Timestamp>,
    /// Configured windows, and those opened by the admin API.
    maintenance: Maintenance,
    /// (service, environment) → decided_at of the last automatic command.
    last_automatic: HashMap<(String, String), Timestamp>,
    /// decided_at of the automatic decisions the breaker counts.
    breaker_events: VecDeque<Timestamp>,
    breaker_open_since: Option<Timestamp>,
}

impl Guards {
    pub fn new(cfg: &GuardsConfig) -> Guards {
        Guards {
            cooldown: cfg.cooldown,
            breaker_max: cfg.breaker_max_rollbacks as usize,
            breaker_window: cfg.breaker_window,
            emitted: Bounded::new(MAX_REMEMBERED_COMMANDS),
            paused: None,
            pause_changed_at: None,
            maintenance: Maintenance::new(&cfg.maintenance),
            last_automatic: HashMap::new(),
            breaker_events: VecDeque::new(),
            breaker_open_since: None,
        }
    }

    pub fn was_emitted(&self, command_id: &str) -> bool {
        self.emitted.contains_str(command_id)
    }

    pub fn emitted_at(&self, command_id: &str) -> Option<Timestamp> {
        self.emitted.get_str(command_id).copied()
    }

    /// The first guard of `chain` that holds `cmd` back, in the contract's
    /// order; `None` lets it through. `cmd` is `None` for a release cascade
    /// as a whole (no command of its own); `dry_run` is the deploy's
    /// policy.
    pub fn check(
        &self,
        chain: Chain,
        cmd: Option<&Command>,
        dry_run: bool,
        now: Timestamp,
    ) -> Option<Suppression> {
        if let (true, Some(c)) = (chain.once, cmd) {
            if self.was_emitted(&c.command_id) {
                return Some(Suppression::AlreadyEmitted {
                    command_id: c.command_id.clone(),
                });
            }
        }
        if chain.paused {
            if let Some((since, by)) = &self.paused {
                return Some(Suppression::Paused {
                    since: *since,
                    by: by.clone(),
                });
            }
        }
        if let (true, Some(c)) = (chain.maintenance, cmd) {
            if let Some(s) = self.maintenance.check(&c.service, now) {
                return Some(s);
            }
        }
        if let (true, true, Some(c)) = (chain.dry_run, dry_run, cmd) {
            return Some(Suppression::DryRun {
                command: Box::new(c.clone()),
            });
        }
        if let (true, Some(c)) = (chain.cooldown, cmd) {
            if let Some(until) = self.cooldown_until(&c.service, &c.environment, now) {
                return Some(Suppression::Cooldown { until });
            }
        }
        if chain.breaker {
            if let Some(since) = self.breaker_open_since {
                return Some(Suppression::BreakerOpen { since });
            }
        }
        None
    }

    pub fn maintenance(&self) -> &Maintenance {
        &self.maintenance
    }

    pub fn maintenance_mut(&mut self) -> &mut Maintenance {
        &mut self.maintenance
    }

    pub fn paused(&self) -> Option<&(Timestamp, String)> {
        self.paused.as_ref()
    }

    /// Pauses (`paused`) or resumes automation as of `at`, unless a later
    /// pause or resume was already applied. Returns whether the state changed.
    pub fn set_paused(&mut self, paused: bool, at: Timestamp, actor: &str) -> bool {
        if self.pause_changed_at.is_some_and(|last| at < last) {
            return false;
        }
        self.pause_changed_at = Some(at);
        match (paused, self.paused.is_some()) {
            (true, false) => {
                self.paused = Some((at, actor.to_string()));
                true
            }
            (false, true) => {
                self.paused = None;
                true
            }
            _ => false,
        }
    }

    /// When the cooldown of (service, environment) ends, if it is running.
    pub fn cooldown_until(&self, service: &str, env: &str, now: Timestamp) -> Option<Timestamp> {
        let last = self
            .last_automatic
            .get(&(service.to_string(), env.to_string()))?;
        let until = last.saturating_add(self.cooldown);
        (now < until).then_some(until)
    }

    pub fn breaker_open_since(&self) -> Option<Timestamp> {
        self.breaker_open_since
    }

    /// Automatic decisions counted by the breaker within its window.
    pub fn breaker_count(&self, now: Timestamp) -> usize {
        let from = now.saturating_sub(self.breaker_window);
        self.breaker_events.iter().filter(|&&t| t > from).count()
    }

    /// Closes the breaker as of `at`: forgets what it counted up to then, and
    /// closes it if it opened by then. Applying the same reset again, or
    /// after later commands were counted, changes nothing more. Returns
    /// whether it closed.
    pub fn reset_breaker_at(&mut self, at: Timestamp) -> bool {
        self.breaker_events.retain(|&t| t > at);
        if self.breaker_open_since.is_some_and(|since| since <= at) {
            self.breaker_open_since = None;
            return true;
        }
        false
    }

    /// Records an emitted command. `counts_for_breaker` is false for manual
    /// commands and for the extra commands of a release rollback. Returns
    /// true when this command opened the breaker.
    pub fn record(&mut self, cmd: &Command, counts_for_breaker: bool) -> bool {
        self.remember(&cmd.command_id, cmd.decided_at);
        if cmd.trigger.is_manual() {
            return false;
        }
        let key = (cmd.service.clone(), cmd.environment.clone());
        let last = self.last_automatic.entry(key).or_insert(cmd.decided_at);
        *last = (*last).max(cmd.decided_at);
        if counts_for_breaker {
            self.count_for_breaker(cmd.decided_at)
        } else {
            false
        }
    }

    /// Counts one automatic decision that produced no command of its own
    /// (a release cascade started by a deploy event). Returns true when it
    /// opened the breaker.
    pub fn count_for_breaker(&mut self, at: Timestamp) -> bool {
        self.breaker_events.push_back(at);
        let from = at.saturating_sub(self.breaker_window);
        while self.breaker_events.front().is_some_and(|&t| t <= from) {
            self.breaker_events.pop_front();
        }
        if self.breaker_open_since.is_none() && self.breaker_events.len() >= self.breaker_max {
            self.breaker_open_since = Some(at);
            return true;
        }
        false
    }

    /// Rebuilds state from one command read back from the commands topic.
    /// Returns true when it opened the breaker.
    pub fn restore(&mut self, cmd: &Command) -> bool {
        if self.was_emitted(&cmd.command_id) {
            return false;
        }
        let counts = matches!(cmd.trigger, Trigger::BurnRate | Trigger::Alert);
        self.record(cmd, counts)
    }

    fn remember(&mut self, id: &str, at: Timestamp) {
        self.emitted.insert(id.to_string(), at);
    }
}
