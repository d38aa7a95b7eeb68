//! The part of the configuration the engine reads: the SLO policies, the
//! guards, alert matching, the limits and the verification watch. Topics,
//! Kafka, HTTP, sinks and logging belong to the adapters around it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{
    AlertsConfig, Config, DeploysConfig, GuardsConfig, LimitsConfig, Policy, VerifyConfig,
};
use crate::time::Duration;

/// What [`super::Engine`] is configured with, taken from a [`Config`].
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `[slo]`: the policy of every service without one of its own.
    pub default_policy: Arc<Policy>,
    /// `[slo.services.*]`: the effective policy per service.
    pub service_policies: HashMap<String, Arc<Policy>>,
    pub guards: GuardsConfig,
    pub alerts: AlertsConfig,
    pub limits: LimitsConfig,
    pub verify: VerifyConfig,
    /// `[deploys]`: inference and fast tracks.
    pub deploys: DeploysConfig,
    /// The longest window of any policy: how long a cumulative series not
    /// updated is remembered (computed once here).
    pub longest_window: Duration,
}

impl EngineConfig {
    /// The effective policy for `service`.
    pub fn policy(&self, service: &str) -> &Arc<Policy> {
        self.service_policies
            .get(service)
            .unwrap_or(&self.default_policy)
    }
}

impl From<&Config> for EngineConfig {
    fn from(config: &Config) -> EngineConfig {
        EngineConfig {
            default_policy: config.default_policy.clone(),
            service_policies: config.service_policies.clone(),
            guards: config.guards.clone(),
            alerts: config.alerts.clone(),
            limits: config.limits.clone(),
            verify: config.verify.clone(),
            deploys: config.deploys.clone(),
            longest_window: config.longest_window(),
        }
    }
}
