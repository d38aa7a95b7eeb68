//! The one thing `run` does differently with and without Kafka: where an
//! input goes to be decided. [`Local`] applies it to the engine in this
//! process and publishes what it caused (commands on stdout); [`Kafka`]
//! hands telemetry, alerts and rollbacks to the owners of their keys
//! through the evidence topic, and deploy events and admin actions to
//! their topics, which every instance applies. The HTTP API
//! ([`super::api::Handle`]) and the run loops call a [`Backend`] and never
//! ask which one it is.

mod kafka;
mod local;

pub use kafka::Kafka;
pub use local::Local;

use std::future::Future;

use crate::http::InputError;
use crate::model::evidence::Request;
use crate::model::{
    AdminRecord, Alert, DeployEvent, Input, Output, Refusal, TelemetryBatch, TelemetryOutcome,
};

pub trait Backend: Send + Sync + 'static {
    /// Applies `input` where decisions are made — here, or on the owner
    /// thread — which publishes what it caused; the outputs.
    fn apply(&self, input: Input) -> impl Future<Output = Result<Vec<Output>, InputError>> + Send;

    /// Telemetry of HTTP request `request`: what became of it. With
    /// Kafka it is answered once the owners' evidence is acknowledged.
    fn telemetry(
        &self,
        batch: TelemetryBatch,
        request: Request<'_>,
    ) -> impl Future<Output = Result<TelemetryOutcome, InputError>> + Send;

    /// Alertmanager alerts of HTTP request `request`.
    fn alerts(
        &self,
        alerts: Vec<Alert>,
        request: Request<'_>,
    ) -> impl Future<Output = Result<(), InputError>> + Send;

    /// A deploy event, checked; `bytes` as it came; counted where it is
    /// applied. With Kafka it is written to the deploy-events topic and
    /// answered once this instance has read it back, so every instance —
    /// and every restart — knows it.
    fn deploy_event(
        &self,
        event: DeployEvent,
        bytes: Vec<u8>,
    ) -> impl Future<Output = Result<(), InputError>> + Send;

    /// Records an admin action before it is applied: with Kafka on the
    /// admin topic, for every instance and every restart (an error changes
    /// nothing).
    fn record_admin(
        &self,
        record: &AdminRecord,
    ) -> impl Future<Output = Result<(), InputError>> + Send;

    /// A person's rollback of `deploy_id`: the command's id, or why not.
    fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> impl Future<Output = Result<Result<String, Refusal>, InputError>> + Send;
}

/// The telemetry outcome among `outputs`.
fn telemetry_outcome(outputs: &[Output]) -> TelemetryOutcome {
    outputs
        .iter()
        .find_map(|o| match o {
            Output::Telemetry(t) => Some(*t),
            _ => None,
        })
        .unwrap_or_default()
}

pub(super) fn unavailable(e: impl std::fmt::Display) -> InputError {
    InputError::Unavailable(e.to_string())
}
