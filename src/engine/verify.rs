//! After a successful rollback: did it work? (`docs/config.md#verify`)
//!
//! When the executor reports `succeeded` for a command rollbackd emitted
//! (or a `deploy.rolled_back` event arrives for a deploy it decided), the
//! deploy is not retired: its baseline side — the restored version — is
//! watched for `verify.window` with the statistics of a decision, on the
//! requests it served since the rollback:
//!
//! - `not_recovered` as soon as a window pair fires on it (its windows'
//!   bad ratios at or above the pair's threshold, and the threshold test
//!   rejecting at `confidence`, split over the pairs and SLIs): audited at
//!   once, and never another automatic rollback;
//! - `recovered` at the end of the window if, at some point, both SLIs
//!   were confidently below the lowest threshold of any pair (the reverse
//!   sequential test, H0: ratio ≥ threshold, rejected at `confidence`),
//!   with the time to recover from the decision and from the result;
//! - `inconclusive` otherwise (too little traffic to tell), or when a newer
//!   deploy of the service supersedes it before the end.
//!
//! Every instance keeps the state (results and deploy events are read by
//! all); the owner of the deploy's key audits the outcome. The watch ends
//! `verify.window` after the rollback's own time, also when a restart reads
//! the result back (a watch already over is not started again).

use serde_json::{json, Value};

use crate::model::audit::{FastTrack, Ratio, VerificationAudit, VerificationOutcome};
use crate::model::{Action, AuditRecord, Output};
use crate::time::Timestamp;

use super::evaluate::burning;
use super::registry::{Deploy, Role, Verifying};
use super::window::{Sli, Tally, WindowCounts};
use super::Engine;

impl Engine {
    /// Starts watching the restored version of `deploy_id`, rolled back at
    /// `at`, if rollbackd rolled it back and that is recent (a result read
    /// back at a restart long after is not watched again). Returns whether
    /// it is watched; the caller retires the deploy otherwise.
    pub(super) fn start_verification(&mut self, deploy_id: &str, at: Timestamp) -> bool {
        let now = self.clock;
        let window = self.config.verify.window;
        let Some(d) = self.registry.get(deploy_id) else {
            return false;
        };
        if d.verifying.is_some() {
            return true;
        }
        if !matches!(d.decided, Some((_, Action::Rollback))) || at.saturating_add(window) <= now {
            return false;
        }
        // What arrived before the watch began; later evidence is added as
        // it comes (`Engine::add`).
        let after = self
            .windows
            .get(&(d.seq, Role::Baseline))
            .map_or(Tally::default(), |w| w.since(at));
        let verifying = Verifying {
            side: Role::Baseline,
            rolled_back_at: at,
            until: at.saturating_add(window),
            after,
            recovered_at: None,
        };
        self.registry.update(deploy_id, |d| {
            d.verifying = Some(verifying);
            d.next_eval = now;
        });
        true
    }

    /// Starts watching fast-tracked deploy `deploy_id`, started at `at`:
    /// its own version, as a recovery, for `verify.window`.
    pub(super) fn start_fast_track(&mut self, deploy_id: &str, at: Timestamp, why: FastTrack) {
        let now = self.clock;
        let verifying = Verifying {
            side: Role::Candidate,
            rolled_back_at: at,
            until: at.saturating_add(self.config.verify.window),
            after: Tally::default(),
            recovered_at: None,
        };
        self.registry.update(deploy_id, |d| {
            d.verifying = Some(verifying);
            d.fast_track = Some(why);
            d.next_eval = now;
        });
    }

    /// One look at a watched restored version (from the tick).
    pub(super) fn verify(&mut self, seq: u64, out: &mut Vec<Output>) {
        let now = self.clock;
        let Some(d) = self.registry.by_seq(seq) else {
            return;
        };
        let Some(v) = d.verifying.clone() else {
            return;
        };
        let id = d.info.deploy_id.clone();
        let restored = self.windows.get(&(seq, v.side));
        let after = self.since_rollback(&v);
        let p = &d.policy;
        // Not recovered: a pair fires on the restored version.
        let needed = ((p.windows.len() * 2) as f64 / (1.0 - p.confidence)).ln();
        let mut firing = None;
        for (i, (w, &(si, li))) in p.windows.iter().zip(&p.pair_index).enumerate() {
            let short = restored.map_or(WindowCounts::EMPTY, |r| r.window(si, now));
            let long = restored.map_or(WindowCounts::EMPTY, |r| r.window(li, now));
            for sli in Sli::ALL {
                let threshold = w.burn_rate * sli.budget(p);
                let over = burning(short, long, sli, threshold);
                let log_e = p.rate_tests[i][sli.index()].log_e(after.bad(sli), after.requests);
                if firing.is_none() && over && log_e >= needed {
                    firing = Some(json!({
                        "sli": sli, "short": w.short, "long": w.long, "burn_rate": w.burn_rate,
                        "threshold": threshold,
                        "restored": {
                            "requests": after.requests, "bad": after.bad(sli),
                            "short_requests": short.requests, "short_bad": short.bad(sli),
                            "long_requests": long.requests, "long_bad": long.bad(sli),
                            "threshold_test": {"log_e": log_e, "needed": needed},
                        },
                    }));
                }
            }
        }
        // Recovered: both SLIs confidently below the lowest threshold.
        let below = (1.0 / (1.0 - p.confidence)).ln();
        let recovered = Sli::ALL.iter().all(|&sli| {
            p.recovery_tests[sli.index()].log_e(after.bad(sli), after.requests) >= below
        });
        let interval = p.evaluation_interval.nanos().max(1);
        let next_eval = Timestamp((now.0.div_euclid(interval) + 1).saturating_mul(interval));
        let outcome = match firing {
            Some(_) => Some(VerificationOutcome::NotRecovered),
            None if now >= v.until => Some(if v.recovered_at.is_some() || recovered {
                VerificationOutcome::Recovered
            } else {
                VerificationOutcome::Inconclusive
            }),
            None => None,
        };
        let Some(outcome) = outcome else {
            self.registry.update(&id, |d| {
                d.next_eval = next_eval;
                if let Some(v) = &mut d.verifying {
                    if recovered && v.recovered_at.is_none() {
                        v.recovered_at = Some(now);
                    }
                }
            });
            return;
        };
        let recovered_at = v.recovered_at.or(recovered.then_some(now));
        let v = Verifying { recovered_at, ..v };
        let evidence = firing.unwrap_or(Value::Null);
        self.end_verification(&id, &v, outcome, evidence, out);
    }

    /// Audits how a verification ended (if this instance owns the deploy)
    /// and retires the deploy.
    pub(super) fn end_verification(
        &mut self,
        deploy_id: &str,
        v: &Verifying,
        outcome: VerificationOutcome,
        evidence: Value,
        out: &mut Vec<Output>,
    ) {
        if let Some(d) = self.registry.get(deploy_id) {
            if self.owns(&d.info) {
                out.push(Output::Audit(
                    self.verification_audit(d, v, outcome, evidence),
                ));
            }
            if d.fast_track.is_some() {
                let (key, version) = (super::fold::key_of(&d.info), d.info.version.clone());
                match outcome {
                    VerificationOutcome::Recovered => {
                        self.known
                            .good(&key, &version, self.clock, super::known::WATCHED)
                    }
                    VerificationOutcome::NotRecovered => self.known.bad(&key, &version),
                    VerificationOutcome::Inconclusive => {}
                }
            }
        }
        // The deploy leaves the registry without a second verdict on it.
        self.registry.update(deploy_id, |d| d.verifying = None);
        self.retire(
            deploy_id,
            &format!("verification: {}", outcome.as_str()),
            out,
        );
    }

    /// The restored version's requests since its watch began.
    fn since_rollback(&self, v: &Verifying) -> WindowCounts {
        v.after.counts()
    }

    pub(super) fn verification_audit(
        &self,
        d: &Deploy,
        v: &Verifying,
        outcome: VerificationOutcome,
        evidence: Value,
    ) -> AuditRecord {
        let cmd = d.command.as_ref();
        let command_id = d
            .decided
            .as_ref()
            .map(|(id, _)| id.clone())
            .unwrap_or_default();
        let decided_at = cmd
            .map(|c| c.decided_at)
            .or_else(|| self.guards.emitted_at(&command_id));
        let cmd_evidence = cmd.map_or(&Value::Null, |c| &c.evidence);
        let sli = match cmd_evidence["sli"].as_str() {
            Some("latency") => Sli::Latency,
            _ => Sli::Errors,
        };
        let ratio = |side: &Value| -> Option<Ratio> {
            Some(Ratio::new(
                side["bad"].as_u64()?,
                side["requests"].as_u64()?,
            ))
        };
        let after = self.since_rollback(v);
        let first_bad = self
            .windows
            .get(&(d.seq, Role::Candidate))
            .and_then(|w| w.first_bad(sli));
        let recovered = (outcome == VerificationOutcome::Recovered)
            .then_some(v.recovered_at)
            .flatten();
        AuditRecord::new(
            self.clock,
            VerificationAudit {
                outcome,
                command_id,
                restored_version: d.version_of(v.side).map(str::to_string),
                sli: sli.as_str().into(),
                before: ratio(&cmd_evidence["baseline"]),
                during: ratio(&cmd_evidence["candidate"]),
                after: Ratio::new(after.bad(sli), after.requests),
                time_to_detect: decided_at
                    .zip(first_bad)
                    .map(|(at, bad)| at.since(bad))
                    .filter(|d| d.nanos() >= 0),
                time_to_decide: decided_at.map(|at| at.since(d.info.at)),
                time_to_rollback: decided_at.map(|at| v.rolled_back_at.since(at)),
                time_to_recover: recovered.zip(decided_at).map(|(r, at)| r.since(at)),
                time_to_recover_from_result: recovered.map(|r| r.since(v.rolled_back_at)),
                evidence,
            },
        )
        .for_deploy(&d.info.deploy_id, &d.info.service)
    }
}
