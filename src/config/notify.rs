//! `[[notify]]`: where people hear of what rollbackd does (`docs/config.md`).
//!
//! Each sink is a Slack incoming webhook, a generic webhook or Grafana's
//! annotation API, with the events it wants, a URL (in the config or,
//! better, in an env var: a Slack webhook URL is a secret), and how hard to
//! try. Env vars are read when
//! `run` starts ([`NotifyConfig::resolve`]), not here, so that
//! `check-config` works where the secrets are not.

use serde::Deserialize;

use super::{invalid, ConfigError};
use crate::time::Duration;

/// What a sink posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyKind {
    /// A Slack incoming webhook: a message with blocks.
    Slack,
    /// Any HTTP endpoint: the audit record as JSON, optionally signed.
    Webhook,
    /// Grafana's annotation API: each event an annotation on the
    /// dashboards' time axis.
    Grafana,
}

impl NotifyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyKind::Slack => "slack",
            NotifyKind::Webhook => "webhook",
            NotifyKind::Grafana => "grafana",
        }
    }
}

/// The events a sink can ask for: each is one kind of audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotifyEvent {
    /// A deploy started (for Grafana: where each deploy begins).
    Deploy,
    /// A verdict changed to or from `rollback` / `not_attributable`.
    Decision,
    /// A `rollback` command was published.
    Command,
    /// An `approval_required` command was published (irreversible data
    /// migration): a person must approve.
    ApprovalRequired,
    /// A guard held a decision back (paused, maintenance, dry run, cooldown,
    /// breaker).
    Suppressed,
    /// The circuit breaker opened.
    BreakerOpened,
    /// After a rollback, the restored version is healthy again…
    Recovered,
    /// …still burns…
    NotRecovered,
    /// …or saw too little traffic to tell.
    Inconclusive,
}

impl NotifyEvent {
    pub const ALL: [NotifyEvent; 9] = [
        NotifyEvent::Deploy,
        NotifyEvent::Decision,
        NotifyEvent::Command,
        NotifyEvent::ApprovalRequired,
        NotifyEvent::Suppressed,
        NotifyEvent::BreakerOpened,
        NotifyEvent::Recovered,
        NotifyEvent::NotRecovered,
        NotifyEvent::Inconclusive,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Deploy => "deploy",
            NotifyEvent::Decision => "decision",
            NotifyEvent::Command => "command",
            NotifyEvent::ApprovalRequired => "approval_required",
            NotifyEvent::Suppressed => "suppressed",
            NotifyEvent::BreakerOpened => "breaker_opened",
            NotifyEvent::Recovered => "recovered",
            NotifyEvent::NotRecovered => "not_recovered",
            NotifyEvent::Inconclusive => "inconclusive",
        }
    }
}

/// One `[[notify]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    pub kind: NotifyKind,
    /// For metrics and logs; default `<kind>-<index>`.
    #[serde(default)]
    pub name: String,
    /// The URL itself…
    #[serde(default)]
    pub url: String,
    /// …or the env var that holds it (one of the two).
    #[serde(default)]
    pub url_env: String,
    /// As written: absent, the kind's default ([`NotifyConfig::events`]
    /// once validated).
    #[serde(default, rename = "events")]
    events_given: Option<Vec<NotifyEvent>>,
    /// The events sent.
    #[serde(skip)]
    pub events: Vec<NotifyEvent>,
    /// Webhook only: the env var holding the HMAC-SHA256 key; the body's
    /// signature then goes in `X-Rollbackd-Signature: sha256=<hex>`.
    #[serde(default)]
    pub secret_env: String,
    /// Grafana only: the env var holding a service account token, sent as
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub token_env: String,
    /// Grafana only: the dashboard the annotations belong to; empty:
    /// organization annotations, shown on any dashboard that asks for
    /// their tags.
    #[serde(default)]
    pub dashboard_uid: String,
    /// One attempt's limit.
    #[serde(default = "default_timeout")]
    pub timeout: Duration,
    /// Attempts after the first (exponential backoff with jitter).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The first backoff; doubled after each failed attempt, up to 60s.
    #[serde(default = "default_backoff")]
    pub backoff: Duration,
    /// Notifications waiting for this sink; more are dropped (counted and
    /// audited), never waited for.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// rollbackd's HTTP address as people reach it, for links and for how
    /// to approve; default `http://<http.listen>`.
    #[serde(default)]
    pub api_url: String,
}

// Slack and webhooks: the contract's example, what needs a person.
// Grafana: what marks a dashboard's time axis — where a deploy began,
// what was decided and done about it, and how it turned out.
fn default_events(kind: NotifyKind) -> Vec<NotifyEvent> {
    match kind {
        NotifyKind::Slack | NotifyKind::Webhook => vec![
            NotifyEvent::Decision,
            NotifyEvent::ApprovalRequired,
            NotifyEvent::BreakerOpened,
            NotifyEvent::NotRecovered,
        ],
        NotifyKind::Grafana => vec![
            NotifyEvent::Deploy,
            NotifyEvent::Decision,
            NotifyEvent::Command,
            NotifyEvent::ApprovalRequired,
            NotifyEvent::Recovered,
            NotifyEvent::NotRecovered,
            NotifyEvent::Inconclusive,
        ],
    }
}
// Slack answers in well under a second; a receiver slower than this is down.
fn default_timeout() -> Duration {
    Duration::from_secs(5)
}
// 0.5 + 1 + 2 + 4 + 8 s: a receiver restarting within ~15 s loses nothing.
fn default_retries() -> u32 {
    5
}
fn default_backoff() -> Duration {
    Duration::from_millis(500)
}
fn default_queue() -> usize {
    1000
}

/// A sink whose URL and secret were read from the environment.
#[derive(Debug, Clone)]
pub struct ResolvedSink {
    pub config: NotifyConfig,
    /// Where to post: the configured URL; for Grafana, its
    /// `/api/annotations`.
    pub url: String,
    pub secret: Option<Vec<u8>>,
    /// Grafana's token.
    pub token: Option<String>,
}

/// Checks the `[[notify]]` tables and names the unnamed ones.
pub(super) fn validate(
    sinks: Vec<NotifyConfig>,
    listen: &str,
) -> Result<Vec<NotifyConfig>, ConfigError> {
    let mut out: Vec<NotifyConfig> = Vec::with_capacity(sinks.len());
    for (i, mut n) in sinks.into_iter().enumerate() {
        let key = |k: &str| format!("notify[{i}].{k}");
        if n.name.is_empty() {
            n.name = format!("{}-{i}", n.kind.as_str());
        }
        super::check_name(key("name"), &n.name, out.iter().map(|o| o.name.as_str()))?;
        match (n.url.is_empty(), n.url_env.is_empty()) {
            (true, true) => return Err(invalid(key("url"), "set url or url_env")),
            (false, false) => return Err(invalid(key("url"), "set url or url_env, not both")),
            (false, true) => check_url(&n.url).map_err(|why| invalid(key("url"), why))?,
            (true, false) => {}
        }
        n.events = n
            .events_given
            .take()
            .unwrap_or_else(|| default_events(n.kind));
        if n.events.is_empty() {
            return Err(invalid(key("events"), "must name at least one event"));
        }
        if !n.secret_env.is_empty() && n.kind != NotifyKind::Webhook {
            return Err(invalid(
                key("secret_env"),
                "only webhook sinks are signed (Slack authenticates by the URL)",
            ));
        }
        check_grafana(&n).map_err(|(k, why)| invalid(key(k), why))?;
        let ms = |d: Duration| d.nanos() / 1_000_000;
        if !(100..=60_000).contains(&ms(n.timeout)) {
            return Err(invalid(key("timeout"), "must be 100ms to 60s"));
        }
        if n.retries > 20 {
            return Err(invalid(key("retries"), "must be at most 20"));
        }
        if !(10..=60_000).contains(&ms(n.backoff)) {
            return Err(invalid(key("backoff"), "must be 10ms to 60s"));
        }
        if !(1..=1_000_000).contains(&n.queue) {
            return Err(invalid(key("queue"), "must be 1 to 1000000"));
        }
        if n.api_url.is_empty() {
            n.api_url = format!("http://{listen}");
        } else {
            check_url(&n.api_url).map_err(|why| invalid(key("api_url"), why))?;
        }
        n.api_url = n.api_url.trim_end_matches('/').to_string();
        out.push(n);
    }
    Ok(out)
}

/// The keys only Grafana sinks take, and the token they need.
fn check_grafana(n: &NotifyConfig) -> Result<(), (&'static str, &'static str)> {
    let grafana = n.kind == NotifyKind::Grafana;
    if grafana && n.token_env.is_empty() {
        return Err((
            "token_env",
            "a Grafana sink needs the env var of a service account token",
        ));
    }
    if !grafana && !n.token_env.is_empty() {
        return Err(("token_env", "only Grafana sinks take a token"));
    }
    if !grafana && !n.dashboard_uid.is_empty() {
        return Err(("dashboard_uid", "only Grafana sinks have a dashboard"));
    }
    if n.dashboard_uid
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(("dashboard_uid", "has whitespace"));
    }
    Ok(())
}

/// Why `url` is not one to post to (without repeating it: it may be a
/// secret).
fn check_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or("must start with http:// or https://")?;
    if rest.is_empty() || rest.starts_with('/') || url.chars().any(char::is_whitespace) {
        return Err("has no host (or has whitespace)");
    }
    Ok(())
}

impl NotifyConfig {
    /// Reads the URL and the secret from the environment.
    pub fn resolve(&self, index: usize) -> Result<ResolvedSink, ConfigError> {
        let key = |k: &str| format!("notify[{index}].{k}");
        let env = |k: &str, var: &str| -> Result<String, ConfigError> {
            std::env::var(var)
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .ok_or_else(|| invalid(key(k), format!("environment variable {var} is not set")))
        };
        let url = if self.url_env.is_empty() {
            self.url.clone()
        } else {
            let url = env("url_env", &self.url_env)?;
            check_url(&url).map_err(|why| {
                invalid(
                    key("url_env"),
                    format!("the URL in {}: {why}", self.url_env),
                )
            })?;
            url
        };
        let secret = if self.secret_env.is_empty() {
            None
        } else {
            Some(env("secret_env", &self.secret_env)?.into_bytes())
        };
        let (url, token) = match self.kind {
            NotifyKind::Grafana => (
                format!("{}/api/annotations", url.trim_end_matches('/')),
                Some(env("token_env", &self.token_env)?),
            ),
            NotifyKind::Slack | NotifyKind::Webhook => (url, None),
        };
        Ok(ResolvedSink {
            config: self.clone(),
            url,
            secret,
            token,
        })
    }
}
