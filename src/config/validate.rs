//! The checks a parsed config must pass, one function per table, run in
//! file order so that the first error reported is the first in the file's
//! layout; each error names its key.

use super::schema::{
    AlertsConfig, DeploysConfig, ExecutorConfig, GuardsConfig, HttpConfig, KafkaConfig,
    LimitsConfig, RawConfig, Topics, VerifyConfig, PLACEHOLDERS,
};
use super::values::{kafka_property_string, parse_size, resolve_listen};
use super::{invalid, maintenance, notify, policy, Config, ConfigError};
use crate::time::Duration;
use std::net::SocketAddr;
use std::sync::Arc;

impl Config {
    /// `raw` checked, with the values it writes as strings read and the
    /// policy of every service resolved.
    pub(super) fn validate(mut raw: RawConfig) -> Result<Config, ConfigError> {
        if let Some(k) = &raw.kafka {
            check_kafka(k)?;
        }
        check_topics(&raw.topics)?;
        let (http_listen, http_max_body) = check_http(&raw.http)?;
        check_verify(&raw.verify)?;
        check_deploys(&raw.deploys)?;
        check_guards(&raw.guards)?;
        raw.guards.maintenance =
            maintenance::validate(std::mem::take(&mut raw.guards.maintenance))?;
        check_alerts(&raw.alerts)?;
        check_limits(&raw.limits)?;
        check_executor(&raw.executor)?;
        if raw.slo.dry_run.is_some() {
            return Err(invalid(
                "slo.dry_run",
                "unknown key here: use guards.dry_run, or dry_run in [slo.services.NAME]",
            ));
        }
        let notify = notify::validate(raw.notify, &raw.http.listen)?;
        let (base, service_policies) = policy::resolve_all(&raw.slo, raw.guards.dry_run)?;
        Ok(Config {
            kafka: raw.kafka,
            topics: raw.topics,
            http: raw.http,
            http_listen,
            http_max_body,
            guards: raw.guards,
            alerts: raw.alerts,
            limits: raw.limits,
            audit: raw.audit,
            verify: raw.verify,
            deploys: raw.deploys,
            log: raw.log,
            telemetry: raw.telemetry,
            executor: raw.executor,
            notify,
            default_policy: Arc::new(base),
            service_policies,
        })
    }
}

impl Config {
    /// Whether `run` executes its commands itself: without `[kafka]`, with
    /// at least one `executor.templates` or `executor.git` strategy.
    pub fn executes_locally(&self) -> bool {
        let e = &self.executor;
        self.kafka.is_none() && !(e.templates.is_empty() && e.git.is_empty())
    }

    /// What `run` needs beyond a valid file: executing commands itself, the
    /// audit file, which is the record of what ran.
    pub fn check_run(&self) -> Result<(), ConfigError> {
        if self.executes_locally() && self.audit.path.trim().is_empty() {
            return Err(invalid(
                "audit.path",
                "must be set when executor.templates or executor.git is configured without [kafka]: \
                 run executes commands itself and the audit file is the record of what ran",
            ));
        }
        Ok(())
    }
}

/// `[kafka]`: brokers and group named, flush and stuck intervals in range,
/// properties librdkafka can take.
fn check_kafka(k: &KafkaConfig) -> Result<(), ConfigError> {
    if k.brokers.trim().is_empty() {
        return Err(invalid("kafka.brokers", "must not be empty"));
    }
    if k.group_id.trim().is_empty() {
        return Err(invalid("kafka.group_id", "must not be empty"));
    }
    if k.evidence_flush.nanos() <= 0 || k.evidence_flush > Duration::from_secs(10) {
        return Err(invalid(
            "kafka.evidence_flush",
            "must be greater than zero and at most 10s",
        ));
    }
    if k.stuck_after < Duration::from_secs(1)
        || k.stuck_after > Duration::from_secs(3600)
        || k.stuck_after <= k.evidence_flush
    {
        return Err(invalid(
            "kafka.stuck_after",
            "must be between 1s and 1h, and longer than kafka.evidence_flush",
        ));
    }
    for (key, v) in &k.properties {
        if kafka_property_string(v).is_none() {
            return Err(invalid(
                format!("kafka.properties.{key}"),
                "must be a string, integer, float or boolean",
            ));
        }
    }
    Ok(())
}

/// `[topics]`: every topic named, none the name replay keeps for alerts,
/// no two the same.
fn check_topics(t: &Topics) -> Result<(), ConfigError> {
    let topics = [
        ("topics.deploy_events", &t.deploy_events),
        ("topics.otlp_spans", &t.otlp_spans),
        ("topics.otlp_metrics", &t.otlp_metrics),
        ("topics.commands", &t.commands),
        ("topics.results", &t.results),
        ("topics.audit", &t.audit),
        ("topics.dead_letter", &t.dead_letter),
        ("topics.admin", &t.admin),
        ("topics.evidence", &t.evidence),
        ("topics.views", &t.views),
    ];
    for (i, (key, v)) in topics.iter().enumerate() {
        if v.trim().is_empty() {
            return Err(invalid(*key, "must not be empty"));
        }
        if v.as_str() == "alertmanager" {
            return Err(invalid(
                *key,
                "\"alertmanager\" is reserved for replay records",
            ));
        }
        if let Some((other, _)) = topics[..i].iter().find(|(_, o)| o == v) {
            return Err(invalid(*key, format!("{v:?} is already used by {other}")));
        }
    }
    Ok(())
}

/// `[http]`: the address to listen on and the largest body, read.
fn check_http(http: &HttpConfig) -> Result<(SocketAddr, usize), ConfigError> {
    let listen = resolve_listen(&http.listen).ok_or_else(|| {
        invalid(
            "http.listen",
            format!(
                "{:?} is not an address like 127.0.0.1:9464 or localhost:9464",
                http.listen
            ),
        )
    })?;
    let max_body = parse_size(&http.max_body).ok_or_else(|| {
        invalid(
            "http.max_body",
            format!("{:?} is not a size like \"4MiB\"", http.max_body),
        )
    })?;
    if max_body == 0 {
        return Err(invalid("http.max_body", "must be greater than zero"));
    }
    Ok((listen, max_body))
}

/// `[verify]`: a window of a second to a day.
fn check_verify(v: &VerifyConfig) -> Result<(), ConfigError> {
    if !(1_000_000_000..=86_400 * 1_000_000_000).contains(&v.window.nanos()) {
        return Err(invalid("verify.window", "must be 1s to 1d"));
    }
    Ok(())
}

/// `[deploys]`: a settle time of a second to an hour, a memory at least
/// that long, a fast-track window not negative, services named.
fn check_deploys(d: &DeploysConfig) -> Result<(), ConfigError> {
    const HOUR: i64 = 3_600_000_000_000;
    if !(1_000_000_000..=HOUR).contains(&d.infer_settle.nanos()) {
        return Err(invalid("deploys.infer_settle", "must be 1s to 1h"));
    }
    if d.version_memory < d.infer_settle {
        return Err(invalid(
            "deploys.version_memory",
            "must be at least deploys.infer_settle",
        ));
    }
    if d.fast_track_window.nanos() < 0 {
        return Err(invalid("deploys.fast_track_window", "must not be negative"));
    }
    if d.infer_services.iter().any(|s| s.is_empty()) {
        return Err(invalid("deploys.infer_services", "a service name is empty"));
    }
    Ok(())
}

/// `[guards]`: a cooldown not negative, a breaker that can trip.
fn check_guards(g: &GuardsConfig) -> Result<(), ConfigError> {
    if g.cooldown.nanos() < 0 {
        return Err(invalid("guards.cooldown", "must not be negative"));
    }
    if g.breaker_max_rollbacks == 0 {
        return Err(invalid(
            "guards.breaker_max_rollbacks",
            "must be at least 1",
        ));
    }
    if g.breaker_window.nanos() <= 0 {
        return Err(invalid(
            "guards.breaker_window",
            "must be greater than zero",
        ));
    }
    Ok(())
}

/// `[alerts]`: the labels that name a service and a deploy.
fn check_alerts(a: &AlertsConfig) -> Result<(), ConfigError> {
    if a.service_label.is_empty() {
        return Err(invalid("alerts.service_label", "must not be empty"));
    }
    if a.deploy_id_label.is_empty() {
        return Err(invalid("alerts.deploy_id_label", "must not be empty"));
    }
    Ok(())
}

/// `[limits]`: room for at least one deploy and series, a clock skew not
/// negative, deploys that live at least a minute.
fn check_limits(l: &LimitsConfig) -> Result<(), ConfigError> {
    if l.max_active_deploys == 0 {
        return Err(invalid("limits.max_active_deploys", "must be at least 1"));
    }
    if l.max_series == 0 {
        return Err(invalid("limits.max_series", "must be at least 1"));
    }
    if l.max_clock_skew.nanos() < 0 {
        return Err(invalid("limits.max_clock_skew", "must not be negative"));
    }
    if l.max_deploy_age.nanos() < 60_000_000_000 {
        return Err(invalid("limits.max_deploy_age", "must be at least 1m"));
    }
    Ok(())
}

/// `[executor]`: a timeout, templates that start with a program and use
/// placeholders only as whole arguments, and Git strategies
/// ([`super::git`]) that name no strategy a template has.
fn check_executor(e: &ExecutorConfig) -> Result<(), ConfigError> {
    if e.timeout.nanos() <= 0 {
        return Err(invalid("executor.timeout", "must be greater than zero"));
    }
    for (strategy, argv) in &e.templates {
        let key = format!("executor.templates.{strategy}");
        if argv.is_empty() || argv[0].trim().is_empty() {
            return Err(invalid(key, "must start with a program"));
        }
        if PLACEHOLDERS.contains(&argv[0].as_str()) {
            return Err(invalid(key, "the program must not be a placeholder"));
        }
        for a in argv {
            if a.contains('{') && !PLACEHOLDERS.contains(&a.as_str()) {
                return Err(invalid(
                    key,
                    format!("{a:?}: placeholders are whole arguments, one of {PLACEHOLDERS:?}"),
                ));
            }
        }
    }
    for (strategy, g) in &e.git {
        super::git::check(strategy, g)?;
        if e.templates.contains_key(strategy) {
            return Err(invalid(
                format!("executor.git.{strategy}"),
                "also in executor.templates: a strategy runs a program or commits, not both",
            ));
        }
    }
    Ok(())
}
