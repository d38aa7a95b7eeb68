//! What `rollbackd check-config` prints: the effective configuration, in
//! words a person checks a policy with.

use std::fmt::Write;

use super::{Config, OtlpEncoding, Policy};

impl Config {
    /// A human-readable listing of the effective policy per configured service.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        self.describe_inputs(&mut out);
        self.describe_guards(&mut out);
        self.describe_executor(&mut out);
        describe_policy(&mut out, "(default)", &self.default_policy);
        let mut names: Vec<_> = self.service_policies.keys().collect();
        names.sort();
        for name in names {
            describe_policy(&mut out, name, &self.service_policies[name]);
        }
        out
    }

    /// Where records come from: Kafka, the topics, the HTTP listener.
    fn describe_inputs(&self, out: &mut String) {
        match &self.kafka {
            Some(k) => {
                let _ = writeln!(
                    out,
                    "kafka: brokers {} group {} transactions {:?} instance_id_env {:?} evidence_flush {} stuck_after {} ({} extra properties)",
                    k.brokers,
                    k.group_id,
                    k.transactions,
                    k.instance_id_env,
                    k.evidence_flush,
                    k.stuck_after,
                    k.properties.len()
                );
            }
            None => {
                let _ = writeln!(out, "kafka: none (HTTP in, commands on stdout)");
            }
        }
        let t = &self.topics;
        let _ = writeln!(
            out,
            "topics: deploy_events={} otlp_spans={} otlp_metrics={} otlp_encoding={} commands={} results={} audit={} dead_letter={} admin={} evidence={} views={}",
            t.deploy_events,
            t.otlp_spans,
            t.otlp_metrics,
            match t.otlp_encoding {
                OtlpEncoding::Proto => "otlp_proto",
                OtlpEncoding::Json => "otlp_json",
            },
            t.commands,
            t.results,
            t.audit,
            t.dead_letter,
            t.admin,
            t.evidence,
            t.views
        );
        let _ = writeln!(
            out,
            "http: listen {} max_body {} bytes",
            self.http_listen, self.http_max_body
        );
    }

    /// What holds a decision back, which alerts count, and the limits.
    fn describe_guards(&self, out: &mut String) {
        let g = &self.guards;
        let _ = writeln!(
            out,
            "guards: dry_run={} cooldown={} breaker={} rollbacks per {}",
            g.dry_run, g.cooldown, g.breaker_max_rollbacks, g.breaker_window
        );
        for w in &g.maintenance {
            let _ = writeln!(out, "  maintenance {w}");
        }
        let _ = writeln!(
            out,
            "alerts: severities {:?} service_label={} deploy_id_label={}",
            self.alerts.rollback_on_severity,
            self.alerts.service_label,
            self.alerts.deploy_id_label
        );
        let _ = writeln!(
            out,
            "limits: max_active_deploys={} max_series={}",
            self.limits.max_active_deploys, self.limits.max_series
        );
    }

    /// The reference executor, its templates and Git strategies.
    fn describe_executor(&self, out: &mut String) {
        let e = &self.executor;
        let _ = writeln!(
            out,
            "executor: group {} name {} timeout {}",
            e.group_id, e.name, e.timeout
        );
        if self.executes_locally() {
            let _ = writeln!(
                out,
                "  run executes its commands itself (no [kafka]); what ran is recorded in {}",
                self.audit.path
            );
        }
        if e.templates.is_empty() && e.git.is_empty() {
            let _ = writeln!(
                out,
                "  templates: none (every rollback command would be rejected)"
            );
        }
        for (strategy, argv) in &e.templates {
            let _ = writeln!(out, "  template {strategy}: {argv:?}");
        }
        for (strategy, g) in &e.git {
            let _ = writeln!(
                out,
                "  git {strategy}: {} branch {}, {:?} in {}, as {}",
                super::redact_userinfo(&g.repository),
                g.branch,
                g.pattern,
                g.file,
                g.author
            );
        }
    }
}

/// One policy, as `check-config` prints it: its budgets, windows and
/// thresholds in the units a person checks them in.
fn describe_policy(out: &mut String, name: &str, p: &Policy) {
    let _ = writeln!(out, "policy {name}:");
    let _ = writeln!(
        out,
        "  errors: objective {} (budget {:.4}%)",
        p.objective,
        p.error_budget() * 100.0
    );
    let _ = writeln!(
        out,
        "  latency: {} of requests faster than {} (budget {:.4}%)",
        p.latency_objective,
        p.latency_threshold,
        p.latency_budget() * 100.0
    );
    let _ = writeln!(
        out,
        "  evidence: confidence {} over the whole watch (anytime-valid), optional floors min_requests {} warmup {}; every {} watch_after_complete {}",
        p.confidence, p.min_requests, p.warmup, p.evaluation_interval, p.watch_after_complete
    );
    for w in &p.windows {
        let _ = writeln!(
            out,
            "  window: short {} long {} burn_rate {} (errors fire at {:.3}%, latency at {:.3}%)",
            w.short,
            w.long,
            w.burn_rate,
            w.burn_rate * p.error_budget() * 100.0,
            w.burn_rate * p.latency_budget() * 100.0
        );
    }
    let _ = writeln!(
        out,
        "  late evidence: judged up to allowed_lateness {} after its event time (an attribution slot is read once both sides' evidence has passed it, or when that ran out); later evidence is counted and audited as late_data",
        p.allowed_lateness
    );
    let kinds: Vec<&str> = p.requests.iter().map(|k| k.name()).collect();
    let _ = writeln!(out, "  requests: {}", kinds.join(", "));
    let _ = writeln!(out, "  dry_run: {}", p.dry_run);
}
