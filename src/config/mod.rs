//! Configuration: TOML → validated [`Config`] (`docs/config.md`).
//!
//! Every key has a default, durations and sizes are human strings, and
//! unknown keys or invalid values are errors that name the key. Per-service
//! `[slo]` overrides are resolved here, once, into an effective [`Policy`]
//! per service, so the engine never merges config on its hot path.
//!
//! - `schema`: the tables as serde reads them, and every key's default;
//! - `validate`: the checks, one function per table;
//! - `policy`: the effective [`Policy`] of each service;
//! - `values`: addresses, sizes and Kafka properties read from strings;
//! - `describe`: what `check-config` prints; `git`: the checks of the
//!   executor's Git strategies; [`notify`]: the `[[notify]]` sinks;
//!   [`maintenance`]: the `[[guards.maintenance]]` windows; `secrets`: the
//!   env vars the config names.

mod describe;
mod git;
pub mod maintenance;
pub mod notify;
mod policy;
mod schema;
mod secrets;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::time::Duration;
pub use git::{redact_userinfo, VERSION};
pub use policy::{Policy, GATE_MARGIN};
use schema::RawConfig;
pub use schema::{
    AlertsConfig, AuditConfig, DeploysConfig, ExecutorConfig, GitStrategy, GuardsConfig,
    HttpConfig, KafkaConfig, LimitsConfig, LogConfig, LogFormat, OtlpEncoding, TelemetryConfig,
    Topics, Transactions, VerifyConfig, WindowPair, PLACEHOLDERS,
};
pub use secrets::{Secrets, WEBHOOK_ROUTES};
pub use values::{kafka_property_string, parse_size};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config: {key}: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// Checks the name of an entry of an array of tables (`key`): letters,
/// digits, `-`, `_` and `.` only, and not one of `taken`.
fn check_name<'a>(
    key: String,
    name: &str,
    mut taken: impl Iterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(invalid(key, "letters, digits, '-', '_' and '.' only"));
    }
    if taken.any(|t| t == name) {
        return Err(invalid(key, format!("{name:?} is already used")));
    }
    Ok(())
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: Option<KafkaConfig>,
    pub topics: Topics,
    pub http: HttpConfig,
    pub http_listen: SocketAddr,
    pub http_max_body: usize,
    pub guards: GuardsConfig,
    pub alerts: AlertsConfig,
    pub limits: LimitsConfig,
    pub audit: AuditConfig,
    pub verify: VerifyConfig,
    pub deploys: DeploysConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub executor: ExecutorConfig,
    /// `[[notify]]` sinks, validated and named.
    pub notify: Vec<notify::NotifyConfig>,
    pub default_policy: Arc<Policy>,
    pub service_policies: HashMap<String, Arc<Policy>>,
}

impl Default for Config {
    fn default() -> Self {
        Config::from_toml("").expect("built-in defaults are valid")
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::from_toml(&text)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string().trim().into()))?;
        Config::validate(raw)
    }

    /// The effective policy for `service`.
    pub fn policy(&self, service: &str) -> &Arc<Policy> {
        self.service_policies
            .get(service)
            .unwrap_or(&self.default_policy)
    }

    /// The longest window of any policy: how far back telemetry matters.
    pub fn longest_window(&self) -> Duration {
        self.service_policies
            .values()
            .map(|p| p.longest())
            .chain(std::iter::once(self.default_policy.longest()))
            .max()
            .unwrap_or(Duration::ZERO)
    }
}
