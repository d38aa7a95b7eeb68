//! `rollbackd demo`: the real engine on a built-in, simulated canary rollout.
//!
//! A healthy deploy is watched and left alone, then a bad one is caught. The
//! traffic is generated as OTLP protobuf exports, decoded by the same
//! decoders as production and fed to the same engine on a simulated clock,
//! so what the demo prints is what `run` would decide. No setup, no network,
//! no sleeping: it finishes in well under a second.

use std::io::{self, Write};
use std::sync::Arc;

use prost::Message;

use crate::config::{Config, OtlpEncoding};
use crate::engine::evaluate::{PairEval, PairState, Verdict};
use crate::engine::window::Sli;
use crate::engine::{DeployView, Engine, EngineConfig};
use crate::ingest::{self, Source};
use crate::loadgen::{resource, server_span, trace_export};
use crate::model::audit::Ratio;
use crate::model::{
    AuditEvent, DataMigration, DeployEvent, DeployEventKind, ExecutorResult, Input, Output,
    ResultStatus,
};
use crate::rng::Rng;
use crate::time::{Duration, Timestamp};

const SEC: i64 = 1_000_000_000;

/// The demo's configuration, also shipped as `config/demo.toml`.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// One version's traffic: requests per second and its error and slow shares.
struct Traffic {
    version: &'static str,
    rps: f64,
    error: f64,
    slow: f64,
}

/// One second of `t`'s requests, ending by `second_end`, as an OTLP
/// protobuf export.
fn export(rng: &mut Rng, t: &Traffic, second_end: i64) -> Vec<u8> {
    let n = (t.rps + rng.unit() - 0.5).round().max(0.0) as usize;
    let spans = (0..n)
        .map(|_| {
            let end = second_end - (rng.unit() * SEC as f64) as i64;
            let is_err = rng.unit() < t.error;
            let latency = if rng.unit() < t.slow {
                0.6 + rng.unit() * 1.5
            } else {
                0.02 + rng.unit() * 0.08
            };
            let code = if is_err { 503 } else { 200 };
            // The span's ids: two draws, as its trace and span ids were.
            let id = rng.next_u64() ^ rng.next_u64().rotate_left(32);
            let start = end - (latency * SEC as f64) as i64;
            server_span(id, start as u64, end as u64, code)
        })
        .collect();
    trace_export(resource("checkout", t.version, Some("prod")), spans).encode_to_vec()
}

fn started(id: &str, version: &str, previous: &str, at: Timestamp) -> DeployEvent {
    DeployEvent {
        kind: DeployEventKind::Started,
        deploy_id: id.into(),
        service: "checkout".into(),
        version: version.into(),
        at,
        environment: Some("prod".into()),
        previous_version: Some(previous.into()),
        strategy: Some("canary".into()),
        release_id: None,
        data_migration: DataMigration::None,
        canary_weight: Some(10.0),
        labels: [("team".to_string(), "payments".to_string())].into(),
    }
}

struct Demo<'a, W: Write> {
    engine: Engine,
    rng: Rng,
    t0: i64,
    out: &'a mut W,
    commands: Vec<crate::model::Command>,
}

impl<W: Write> Demo<'_, W> {
    fn clock(&self, s: i64) -> Timestamp {
        Timestamp(self.t0 + s * SEC)
    }

    fn hms(&self, s: i64) -> String {
        let t = self.clock(s).to_string();
        t[11..19].to_string()
    }

    /// One simulated second: every version exports its spans, then the
    /// engine evaluates on the new clock.
    fn second(&mut self, s: i64, traffic: &[Traffic]) -> io::Result<Vec<Output>> {
        let now = self.clock(s);
        for t in traffic {
            let bytes = export(&mut self.rng, t, now.0);
            if let Ok(input) = ingest::decode(Source::Spans, &bytes, OtlpEncoding::Proto) {
                self.engine.apply(input, now);
            }
        }
        let outputs = self.engine.apply(Input::Tick, now);
        for o in &outputs {
            if let Output::Command(c) = o {
                self.commands.push(c.clone());
            }
        }
        Ok(outputs)
    }

    fn event(&mut self, s: i64, ev: DeployEvent) -> Vec<Output> {
        let now = self.clock(s);
        self.engine.apply(Input::Deploy(ev), now)
    }

    fn status_line(&mut self, s: i64, view: &DeployView) -> io::Result<()> {
        let ev = &view.evaluation;
        let pair = |i: usize, sli: Sli| {
            ev.pairs
                .iter()
                .filter(|p| p.sli == sli)
                .nth(i)
                .map(|p| (p.burn_short, p.burn_long, p.state))
        };
        let fast = pair(0, Sli::Errors);
        let slow = pair(1, Sli::Errors);
        let first = ev.pairs.first();
        let (c_req, c_ratio, b_ratio) = first.map_or((0, 0.0, 0.0), |p| {
            (
                p.candidate_short.requests,
                p.candidate_short.ratio(Sli::Errors),
                p.baseline_long.ratio(Sli::Errors),
            )
        });
        let verdict = match ev.verdict {
            Verdict::WarmingUp => "warming up".to_string(),
            Verdict::Healthy => healthy_words(&ev.pairs).to_string(),
            v => v.as_str().to_string(),
        };
        let fmt_pair = |p: Option<(f64, f64, PairState)>| {
            p.map_or("-".to_string(), |(s, l, _)| format!("{s:5.1}x/{l:5.1}x"))
        };
        writeln!(
            self.out,
            "  {}  {:>5.1} rps  errors {:>5.2}% (baseline {:>5.2}%)  burn 1m/5m {}  5m/30m {}  → {}",
            self.hms(s),
            c_req as f64 / 60f64.min((s - (view.started_at.0 - self.t0) / SEC).max(1) as f64),
            c_ratio * 100.0,
            b_ratio * 100.0,
            fmt_pair(fast),
            fmt_pair(slow),
            verdict
        )
    }
}

/// What a healthy verdict means, in words that claim no more than the
/// evidence: a pair burning over its threshold in both windows, not yet
/// shown to (or not yet shown worse than the baseline), is being watched,
/// not healthy.
fn healthy_words(pairs: &[PairEval]) -> &'static str {
    let over = |p: &PairEval| {
        p.state == PairState::NotSignificant
            || (p.burn_short >= p.burn_rate && p.burn_long >= p.burn_rate)
    };
    if pairs.iter().any(over) {
        "watching: not yet confident"
    } else if pairs.iter().all(|p| p.state == PairState::InsufficientData) {
        "healthy (gathering evidence)"
    } else {
        "healthy"
    }
}

/// After the rollback: the restored version serves everything until the
/// verification's outcome; prints it and returns it for the summary.
fn verify(
    demo: &mut Demo<'_, impl Write>,
    from: i64,
    window: Duration,
    traffic: &[Traffic],
) -> io::Result<Option<String>> {
    for s in from + 1..=from + window.nanos() / SEC + 5 {
        let outputs = demo.second(s, traffic)?;
        let Some(v) = outputs.iter().find_map(|o| match o {
            Output::Audit(a) => match &a.event {
                AuditEvent::Verification(v) => Some(v.clone()),
                _ => None,
            },
            _ => None,
        }) else {
            continue;
        };
        let pct =
            |r: Option<Ratio>| r.map_or("?".to_string(), |r| format!("{:.2}%", r.ratio * 100.0));
        let outcome = match v.time_to_recover_from_result {
            Some(took) => format!("{} {took} after the rollback", v.outcome.as_str()),
            None => v.outcome.as_str().to_string(),
        };
        let line = format!(
            "{outcome}: {} {} → {} on v42 (baseline before the deploy {})",
            v.sli,
            pct(v.during),
            pct(Some(v.after)),
            pct(v.before)
        );
        writeln!(demo.out, "  {}  verification: {line}", demo.hms(s))?;
        return Ok(Some(outcome));
    }
    Ok(None)
}

/// `version` serving `rps` requests a second, failing `error` of them,
/// 0.1 % slow.
fn serving(version: &'static str, rps: f64, error: f64) -> Traffic {
    Traffic {
        version,
        rps,
        error,
        slow: 0.001,
    }
}

/// Runs the demo, writing the timeline to `out`: 30 s of the old version,
/// a healthy canary left alone, a bad one caught, rolled back and verified.
pub fn run(out: &mut impl Write) -> io::Result<()> {
    let config = match Config::from_toml(DEMO_CONFIG) {
        Ok(c) => Arc::new(c),
        Err(e) => return Err(io::Error::other(e.to_string())),
    };
    let t0 = Timestamp::parse_rfc3339("2026-11-26T12:00:00Z")
        .map(|t| t.0)
        .unwrap_or(0);
    let mut demo = Demo {
        engine: Engine::new(EngineConfig::from(&*config)),
        rng: Rng::new(42),
        t0,
        out,
        commands: Vec::new(),
    };
    demo.intro()?;
    for s in 1..=30 {
        demo.second(s, &[serving("v41", 100.0, 0.0005)])?;
    }
    let (d1_end, d1_verdict) = demo.healthy_deploy(30)?;
    let d2_start = d1_end + 60;
    let v42_full = [serving("v42", 100.0, 0.0005)];
    for s in d1_end + 1..d2_start {
        demo.second(s, &v42_full)?;
    }
    let decided_at = demo.bad_deploy(d2_start)?;
    let (mut executed, mut verified) = (None, None);
    if let (Some(s), Some(cmd)) = (decided_at, demo.commands.first().cloned()) {
        executed = demo.execute(s + 12, &cmd)?;
        let window = demo.engine.config().verify.window;
        verified = verify(&mut demo, s + 12, window, &v42_full)?;
    }
    writeln!(demo.out)?;
    let d1 = match d1_verdict {
        Some(Verdict::Healthy) => "left alone (healthy)",
        Some(_) => "left alone",
        None => "retired",
    };
    match decided_at {
        Some(s) => writeln!(
            demo.out,
            "summary: d-demo-1 (v42) {d1}; d-demo-2 (v43) caught {} after it started and rolled back{}, {}; {} command(s) that would be published",
            Duration::from_secs(s - d2_start),
            executed.map_or(String::new(), |d| format!(" {d} after the decision")),
            verified.unwrap_or_else(|| "not verified".into()),
            demo.commands.len()
        ),
        None => writeln!(
            demo.out,
            "summary: d-demo-1 (v42) {d1}; d-demo-2 (v43) was NOT caught; {} command(s) that would be published",
            demo.commands.len()
        ),
    }
}

impl<W: Write> Demo<'_, W> {
    /// What the policy is, in words.
    fn intro(&mut self) -> io::Result<()> {
        let policy = self.engine.config().default_policy.clone();
        let w = &policy.windows;
        writeln!(self.out, "rollbackd demo — the real engine on a simulated canary rollout of service \"checkout\" (prod)")?;
        writeln!(
            self.out,
            "policy: {:.1}% of requests succeed (error budget {:.2}%), {:.0}% under {}; a window pair fires when the",
            policy.objective * 100.0,
            policy.error_budget() * 100.0,
            policy.latency_objective * 100.0,
            policy.latency_threshold
        )?;
        writeln!(
            self.out,
            "canary burns its budget faster than the pair's rate in both windows ({}/{} at {}x, {}/{} at {}x),",
            w[0].short, w[0].long, w[0].burn_rate, w[1].short, w[1].long, w[1].burn_rate
        )?;
        writeln!(
            self.out,
            "and is worse than the old version, each with {:.0}% confidence that holds however often it is checked",
            policy.confidence * 100.0,
        )?;
        writeln!(
            self.out,
            "(anytime-valid sequential tests: no request floor needed), after a {} warm-up.",
            policy.warmup
        )?;
        writeln!(
            self.out,
            "burn = observed error ratio / error budget (1m/5m = short/long window)."
        )?;
        writeln!(self.out)
    }

    /// Deploy 1, from second `start`: a canary as good as the old version,
    /// watched for 5½ minutes and completed. When it ended, and its verdict.
    fn healthy_deploy(&mut self, start: i64) -> io::Result<(i64, Option<Verdict>)> {
        writeln!(
            self.out,
            "── {} deploy d-demo-1: checkout v41 → v42, canary 10% ── (v42 is as good as v41)",
            self.hms(start)
        )?;
        self.event(start, started("d-demo-1", "v42", "v41", self.clock(start)));
        let good = [serving("v41", 90.0, 0.0005), serving("v42", 10.0, 0.0005)];
        let end = start + 330;
        for s in start + 1..=end {
            self.second(s, &good)?;
            if (s - start) % 30 == 0 {
                if let Some(v) = self.engine.deploy_view("d-demo-1") {
                    self.status_line(s, &v)?;
                }
            }
        }
        let verdict = self
            .engine
            .deploy_view("d-demo-1")
            .map(|v| v.evaluation.verdict);
        let mut done = started("d-demo-1", "v42", "v41", self.clock(end));
        done.kind = DeployEventKind::Completed;
        self.event(end, done);
        writeln!(
            self.out,
            "  {}  deploy.completed: v42 promoted to 100%; no command\n",
            self.hms(end)
        )?;
        Ok((end, verdict))
    }

    /// Deploy 2, from second `start`: a canary failing 6 % of its
    /// requests, watched until the command (at most 5 minutes). When it
    /// was decided.
    fn bad_deploy(&mut self, start: i64) -> io::Result<Option<i64>> {
        writeln!(
            self.out,
            "── {} deploy d-demo-2: checkout v42 → v43, canary 10% ── (v43 fails 6% of requests)",
            self.hms(start)
        )?;
        self.event(start, started("d-demo-2", "v43", "v42", self.clock(start)));
        let bad = [serving("v42", 90.0, 0.0005), serving("v43", 10.0, 0.06)];
        for s in start + 1..=start + 300 {
            let outputs = self.second(s, &bad)?;
            let command = outputs.iter().find_map(|o| match o {
                Output::Command(c) => Some(c.clone()),
                _ => None,
            });
            if (s - start) % 5 == 0 || command.is_some() {
                if let Some(v) = self.engine.deploy_view("d-demo-2") {
                    self.status_line(s, &v)?;
                }
            }
            if let Some(cmd) = command {
                self.decision(s, start, &cmd)?;
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// The decision at second `s` of the deploy started at `start`: its
    /// evidence in words, and the command.
    fn decision(&mut self, s: i64, start: i64, cmd: &crate::model::Command) -> io::Result<()> {
        let ev = &cmd.evidence;
        let f = |v: &serde_json::Value| v.as_f64().unwrap_or(0.0);
        writeln!(self.out)?;
        writeln!(
            self.out,
            "  DECISION at {}: roll back d-demo-2 ({} after the deploy started)",
            self.hms(s),
            Duration::from_secs(s - start)
        )?;
        writeln!(
            self.out,
            "    evidence: {} SLI, windows {}/{}: canary {} bad of {} requests (burn {}x long, {}x short,",
            ev["sli"].as_str().unwrap_or("?"),
            ev["short"].as_str().unwrap_or("?"),
            ev["long"].as_str().unwrap_or("?"),
            ev["candidate"]["bad"],
            ev["candidate"]["requests"],
            ev["candidate"]["burn_long"],
            ev["candidate"]["burn_short"]
        )?;
        writeln!(
            self.out,
            "              over the {:.2}% threshold: e-value e^{:.1} ≥ e^{:.1} needed); baseline v42 {} bad of {}",
            f(&ev["threshold"]) * 100.0,
            f(&ev["candidate"]["threshold_test"]["log_e"]),
            f(&ev["candidate"]["threshold_test"]["needed"]),
            ev["baseline"]["bad"],
            ev["baseline"]["requests"]
        )?;
        writeln!(
            self.out,
            "              — the canary is worse: e-value e^{:.1} ≥ e^{:.1} needed",
            f(&ev["baseline"]["worse_test"]["log_e"]),
            f(&ev["baseline"]["worse_test"]["needed"]),
        )?;
        writeln!(self.out, "    guards: first command for this deploy, automation not paused, no dry run, no cooldown, breaker closed")?;
        writeln!(
            self.out,
            "    command that would be published to rollback-commands:"
        )?;
        let json = serde_json::to_string_pretty(cmd).unwrap_or_default();
        for line in json.lines() {
            writeln!(self.out, "      {line}")?;
        }
        Ok(())
    }

    /// The executor's result for `cmd` at second `s`: how long the
    /// rollback took from the decision.
    fn execute(&mut self, s: i64, cmd: &crate::model::Command) -> io::Result<Option<Duration>> {
        let at = self.clock(s);
        let result = ExecutorResult {
            command_id: cmd.command_id.clone(),
            deploy_id: cmd.deploy_id.clone(),
            status: ResultStatus::Succeeded,
            at,
            executor: "argo-rollouts".into(),
            message: "rollout aborted, stable v42 serving 100%".into(),
        };
        let took = self
            .engine
            .apply(Input::Result(result), at)
            .iter()
            .find_map(|o| match o {
                Output::Audit(a) => match &a.event {
                    AuditEvent::Result(r) => r.time_to_rollback,
                    _ => None,
                },
                _ => None,
            });
        let window = self.engine.config().verify.window;
        writeln!(
            self.out,
            "\n  {}  executor result: succeeded (argo-rollouts: rollout aborted, v42 serving 100%); watching v42 for {window}",
            self.hms(s)
        )?;
        Ok(took)
    }
}
