//! The gate progressive-delivery controllers ask (`docs/http.md#gate`,
//! `docs/guarantees.md#the-gate`): one read-only verdict per deploy.
//!
//! - `fail` once a rollback command was decided for it (every instance
//!   knows: commands are read whole);
//! - `pass` once it was shown healthy — at an evaluation after `warmup`
//!   with `min_requests`, for both SLIs, the candidate's bad ratio shown
//!   below the lowest threshold of any pair and (with a baseline) shown no
//!   worse than the baseline's by the margin, each test at `confidence`.
//!   The owner of its key shows it and publishes a gate record on the
//!   admin topic, which every instance applies: the pass is kept for good
//!   (the tests are anytime-valid), only a command overrides it;
//! - `wait` otherwise, also while an `approval_required` command waits for
//!   a person (a controller aborting would be the rollback the approval
//!   holds back).

use serde::Serialize;
use serde_json::{json, Value};

use crate::model::gate::{GateRecord, GateVerdict, GATE_SCHEMA};
use crate::model::{Action, Output, Verdict};
use crate::time::Timestamp;

use super::judge::TestResult;
use super::registry::{Deploy, Role};
use super::window::{Sli, WindowCounts};
use super::Engine;

/// How many passes are remembered, by deploy id. A pass read from the
/// admin topic may come before its deploy's events (a restart reads the
/// admin topic first), so passes are kept apart from the deploys; ids are
/// never reused, so an old one is forgotten by age alone.
pub(super) const MAX_PASSES_REMEMBERED: usize = 100_000;

/// A deploy shown healthy.
#[derive(Debug, Clone, PartialEq)]
pub struct Passed {
    pub at: Timestamp,
    pub evidence: Value,
}

/// What the gate answers for one deploy (`docs/http.md#gate`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateAnswer {
    pub verdict: GateVerdict,
    /// Why, in words, with the numbers.
    pub reason: String,
    pub deploy_id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// When it was shown healthy (pass) or its command decided (fail).
    pub since: Option<Timestamp>,
    pub command_id: Option<String>,
    /// The tests of health (pass; wait on the instance that decides for
    /// it), or the command's evidence (fail); `null` otherwise.
    pub evidence: Value,
}

/// A deploy's evidence of health at one instant.
struct Health {
    shown: bool,
    evidence: Value,
    words: String,
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn test_json(t: &TestResult) -> Value {
    json!({"log_e": round(t.log_e.max(-1e9), 3), "needed": round(t.needed, 3), "shown": t.rejects()})
}

fn pct(v: f64) -> String {
    format!("{:.3}%", v * 100.0)
}

/// Whether deploy `d` has a baseline to be no worse than.
fn compares(d: &Deploy) -> bool {
    d.info
        .previous_version
        .as_ref()
        .is_some_and(|v| v != &d.info.version)
}

/// Whether deploy `d` is shown healthy on its sides' totals (module docs):
/// the tests alone, with nothing made for people — what the owner asks at
/// every evaluation until a pass.
fn shown(d: &Deploy, cand: WindowCounts, base: WindowCounts) -> bool {
    let p = &d.policy;
    if cand.requests < p.min_requests.max(1) {
        return false;
    }
    let needed = (1.0 / (1.0 - p.confidence)).ln();
    let compare = compares(d);
    Sli::ALL.iter().all(|&sli| {
        let i = sli.index();
        let bad_c = cand.bad(sli);
        p.recovery_tests[i].log_e(bad_c, cand.requests) >= needed
            && (!compare
                || p.gate_tests[i].log_e(bad_c, cand.requests, base.bad(sli), base.requests)
                    >= needed)
    })
}

/// The tests of health of deploy `d` on its sides' totals (module docs),
/// in words and numbers.
fn health(d: &Deploy, cand: WindowCounts, base: WindowCounts, warming: bool) -> Health {
    let p = &d.policy;
    let needed = (1.0 / (1.0 - p.confidence)).ln();
    let compare = compares(d);
    let enough = cand.requests >= p.min_requests.max(1);
    let mut slis = Vec::new();
    let mut words = Vec::new();
    for sli in Sli::ALL {
        let i = sli.index();
        let threshold = p.lowest_threshold(sli.budget(p));
        let margin = crate::config::GATE_MARGIN * threshold;
        let (bad_c, bad_b) = (cand.bad(sli), base.bad(sli));
        let below = TestResult {
            log_e: p.recovery_tests[i].log_e(bad_c, cand.requests),
            needed,
        };
        let no_worse = compare.then(|| TestResult {
            log_e: p.gate_tests[i].log_e(bad_c, cand.requests, bad_b, base.requests),
            needed,
        });
        let said = |t: &TestResult| if t.rejects() { "shown" } else { "not shown" };
        let mut w = format!(
            "{}: {bad_c} of {} bad ({}), below {}: {}",
            sli.as_str(),
            cand.requests,
            pct(cand.ratio(sli)),
            pct(threshold),
            said(&below)
        );
        if let Some(t) = &no_worse {
            w.push_str(&format!(
                ", within {} of the baseline's {} ({bad_b} of {}): {}",
                pct(margin),
                pct(base.ratio(sli)),
                base.requests,
                said(t)
            ));
        }
        words.push(w);
        slis.push(json!({
            "sli": sli,
            "threshold": round(threshold, 6),
            "margin": round(margin, 6),
            "candidate": {"requests": cand.requests, "bad": bad_c},
            "baseline": compare.then(|| json!({"requests": base.requests, "bad": bad_b})),
            "below_threshold": test_json(&below),
            "no_worse_than_baseline": no_worse.as_ref().map(test_json),
        }));
    }
    let mut said = words.join("; ");
    if warming {
        said = format!("warming up; {said}");
    } else if !enough {
        said = format!(
            "{} of min_requests {} requests so far; {said}",
            cand.requests, p.min_requests
        );
    }
    Health {
        shown: !warming && shown(d, cand, base),
        evidence: json!({"min_requests": p.min_requests, "slis": slis}),
        words: said,
    }
}

/// A command's evidence in words: the numbers of a burn-rate decision, a
/// person's reason, or the release that took it along.
fn decision_words(evidence: &Value) -> String {
    if let Some(words) = crate::model::summary::evidence(evidence) {
        return words;
    }
    match (evidence["actor"].as_str(), evidence["reason"].as_str()) {
        (Some(actor), Some(reason)) => format!("by {actor}: {reason}"),
        _ => match evidence["caused_by"].as_str() {
            Some(origin) => format!("with its release, after {origin}"),
            None => evidence.to_string(),
        },
    }
}

impl Engine {
    /// Both sides' totals of deploy `d` (empty where this instance keeps
    /// no windows for it).
    fn gate_totals(&self, d: &Deploy) -> (WindowCounts, WindowCounts) {
        let totals = |role| {
            self.windows
                .get(&(d.seq, role))
                .map_or(WindowCounts::EMPTY, |w| w.totals())
        };
        (totals(Role::Candidate), totals(Role::Baseline))
    }

    /// After an evaluation of deploy `seq` by its owner (healthy, nothing
    /// decided): whether it is now shown healthy. If so the pass is kept
    /// and published for every other instance.
    pub(super) fn gate_check(&mut self, seq: u64, out: &mut Vec<Output>) {
        let Some(d) = self.registry.by_seq(seq) else {
            return;
        };
        let healthy = d
            .last_eval
            .as_ref()
            .is_some_and(|ev| ev.verdict == Verdict::Healthy);
        if !healthy || self.gate_passes.contains_str(d.id()) {
            return;
        }
        let (cand, base) = self.gate_totals(d);
        if !shown(d, cand, base) {
            return;
        }
        let h = health(d, cand, base, false);
        let evidence = json!({"tests": h.evidence, "summary": h.words});
        let record = GateRecord {
            schema: GATE_SCHEMA.into(),
            deploy_id: d.info.deploy_id.clone(),
            service: d.info.service.clone(),
            environment: d.environment().to_string(),
            version: d.info.version.clone(),
            passed_at: self.clock,
            evidence,
        };
        self.gate_record(&record);
        out.push(Output::Gate(record));
    }

    /// A pass shown here or read from the admin topic: kept (the first
    /// one; reading it again changes nothing).
    pub(super) fn gate_record(&mut self, r: &GateRecord) {
        self.gate_passes.insert(
            r.deploy_id.clone(),
            Passed {
                at: r.passed_at,
                evidence: r.evidence.clone(),
            },
        );
    }

    /// The gate's answer for the newest active deploy of `service` in
    /// `environment` (to `version`, when given); `None` when there is none.
    pub fn gate(
        &self,
        service: &str,
        environment: &str,
        version: Option<&str>,
    ) -> Option<GateAnswer> {
        let d = self
            .registry
            .of_service(service, Some(environment))
            .filter(|d| version.is_none_or(|v| d.info.version == v))
            .last()?;
        let mut answer = GateAnswer {
            verdict: GateVerdict::Wait,
            reason: String::new(),
            deploy_id: d.info.deploy_id.clone(),
            service: d.info.service.clone(),
            environment: d.environment().to_string(),
            version: d.info.version.clone(),
            previous_version: d.info.previous_version.clone(),
            since: None,
            command_id: None,
            evidence: Value::Null,
        };
        if let Some((id, action)) = &d.decided {
            let evidence = d.command.as_ref().map(|c| &c.evidence);
            let words = evidence.map_or_else(String::new, decision_words);
            answer.command_id = Some(id.clone());
            answer.since = d.command.as_ref().map(|c| c.decided_at);
            answer.evidence = evidence.cloned().unwrap_or(Value::Null);
            if *action == Action::Rollback {
                answer.verdict = GateVerdict::Fail;
                answer.reason = format!("rollback decided: {words}");
            } else {
                answer.reason = format!("approval required before a rollback: {words}");
            }
            return Some(answer);
        }
        if let Some(f) = &d.fast_track {
            // A version shown healthy before: watched as a recovery, never
            // held back as a canary (every instance knows it from the deploy
            // event).
            answer.verdict = GateVerdict::Pass;
            answer.since = Some(d.info.at);
            answer.evidence = json!({"fast_track": f});
            answer.reason = format!(
                "fast-tracked: {} was seen healthy at {} ({}); watched as a recovery, not judged as a canary",
                d.info.version, f.healthy_at, f.how
            );
            return Some(answer);
        }
        if let Some(p) = self.gate_passes.get_str(d.id()) {
            answer.verdict = GateVerdict::Pass;
            answer.since = Some(p.at);
            answer.evidence = p.evidence.get("tests").cloned().unwrap_or(Value::Null);
            let words = p.evidence["summary"].as_str().unwrap_or_default();
            answer.reason = format!("shown healthy: {words}");
            return Some(answer);
        }
        if !self.owns(&d.info) {
            answer.reason = format!(
                "not shown healthy yet (the evidence of {} in {} is with the instance that decides for it)",
                d.info.service,
                d.environment()
            );
            return Some(answer);
        }
        let (cand, base) = self.gate_totals(d);
        let warming = self.clock < d.info.at.saturating_add(d.policy.warmup);
        let h = health(d, cand, base, warming);
        answer.reason = if h.shown {
            format!(
                "shown healthy at this instant, kept at the next evaluation: {}",
                h.words
            )
        } else {
            format!("not shown healthy yet: {}", h.words)
        };
        answer.evidence = h.evidence;
        Some(answer)
    }
}
