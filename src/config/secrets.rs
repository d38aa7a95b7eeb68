//! What a config names in the environment — the HTTP tokens and the
//! `[[notify]]` sinks' URLs and secrets — read once, the same way by `run`
//! (before anything starts) and by `check-config`, so a config that one
//! accepts the other does not refuse.

use super::notify::ResolvedSink;
use super::{invalid, Config, ConfigError};

/// The values a config's env vars hold.
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The bearer token of the webhook routes; `None` only with
    /// `http.allow_unauthenticated`.
    pub webhook_token: Option<String>,
    /// The bearer token of the admin routes; `None`: they answer 403.
    pub admin_token: Option<String>,
    pub sinks: Vec<ResolvedSink>,
}

/// The webhook routes a missing token would leave open.
pub const WEBHOOK_ROUTES: &str =
    "/v1/deploy-events, /v1/alerts/alertmanager, /v1/traces and /v1/metrics";

fn from_env(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Config {
    /// Reads the env vars this config names. A missing webhook token is an
    /// error unless `http.allow_unauthenticated`: the webhook routes never
    /// serve anyone by accident.
    pub fn secrets(&self) -> Result<Secrets, ConfigError> {
        let var = &self.http.webhook_token_env;
        let webhook_token = from_env(var);
        if webhook_token.is_none() && !self.http.allow_unauthenticated {
            return Err(invalid(
                "http.webhook_token_env",
                format!(
                    "environment variable {var} is not set: {WEBHOOK_ROUTES} would accept anyone; \
                     set it to a secret token (e.g. head -c 32 /dev/urandom | base64), \
                     or set http.allow_unauthenticated = true to serve them without one"
                ),
            ));
        }
        let sinks = self
            .notify
            .iter()
            .enumerate()
            .map(|(i, n)| n.resolve(i))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Secrets {
            webhook_token,
            admin_token: from_env(&self.http.admin_token_env),
            sinks,
        })
    }

    /// What [`Config::secrets`] found, in words, for `check-config` (never
    /// a token, URL or secret itself).
    pub fn describe_secrets(&self, s: &Secrets) -> String {
        use std::fmt::Write;
        let h = &self.http;
        let mut out = String::new();
        let _ = match &s.webhook_token {
            Some(_) => writeln!(
                out,
                "webhook routes: bearer token from {} (set)",
                h.webhook_token_env
            ),
            None => writeln!(
                out,
                "webhook routes: OPEN to anyone who reaches {} (http.allow_unauthenticated = true; {} is not set)",
                self.http_listen, h.webhook_token_env
            ),
        };
        let _ = match &s.admin_token {
            Some(_) => writeln!(
                out,
                "admin routes: bearer token from {} (set)",
                h.admin_token_env
            ),
            None => writeln!(
                out,
                "admin routes: disabled, they answer 403 ({} is not set)",
                h.admin_token_env
            ),
        };
        if s.sinks.is_empty() {
            let _ = writeln!(out, "notify: no sinks");
        }
        for sink in &s.sinks {
            let c = &sink.config;
            let _ = writeln!(
                out,
                "notify {}: {} events {:?}{}",
                c.name,
                c.kind.as_str(),
                c.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                match (&sink.secret, &sink.token) {
                    (Some(_), _) => ", signed",
                    (None, Some(_)) => ", with a token",
                    (None, None) => "",
                }
            );
        }
        out
    }
}
