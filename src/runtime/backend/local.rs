//! Without Kafka: both stages in this process. An input is applied to the
//! engine here — which folds telemetry into evidence and applies it as
//! the owner of every key — and what it caused is published at once
//! (commands on stdout, audit records to the file and the notifier).

use std::sync::{Arc, Mutex};

use tracing::warn;

use super::{telemetry_outcome, Backend};
use crate::http::InputError;
use crate::ingest::Source;
use crate::model::evidence::Request;
use crate::model::{
    command_id, Action, AdminCall, AdminRecord, Alert, DeployEvent, Input, Output, Refusal,
    TelemetryBatch, TelemetryOutcome,
};
use crate::runtime::emit::{Batch, Emitter};
use crate::runtime::shared::Shared;

pub struct Local {
    pub shared: Arc<Shared>,
    pub emitter: Mutex<Emitter>,
}

impl Local {
    /// Applies `input` and publishes what it caused, on this thread.
    pub fn apply_now(&self, input: Input) -> Vec<Output> {
        let outputs = self.shared.apply(input);
        let mut emitter = self.emitter.lock().unwrap_or_else(|p| p.into_inner());
        let batch = Batch {
            outputs: outputs.clone(),
            offsets: None,
            consumed_at: None,
        };
        if let Err(err) = emitter.publish(batch) {
            warn!(error = %err, "publishing failed");
        }
        outputs
    }
}

impl Backend for Local {
    async fn apply(&self, input: Input) -> Result<Vec<Output>, InputError> {
        // Under the engine's lock for a moment: off the reactor's other
        // tasks.
        Ok(tokio::task::block_in_place(|| self.apply_now(input)))
    }

    async fn telemetry(
        &self,
        batch: TelemetryBatch,
        _request: Request<'_>,
    ) -> Result<TelemetryOutcome, InputError> {
        // Applied whole or not at all: nothing to count twice.
        let outputs = self.apply(Input::Telemetry(batch)).await?;
        Ok(telemetry_outcome(&outputs))
    }

    async fn alerts(&self, alerts: Vec<Alert>, _request: Request<'_>) -> Result<(), InputError> {
        self.apply(Input::Alerts(alerts)).await.map(|_| ())
    }

    async fn deploy_event(&self, event: DeployEvent, _bytes: Vec<u8>) -> Result<(), InputError> {
        // With Kafka it is counted when read from the topic.
        self.shared
            .metrics
            .records
            .with_label_values(&[Source::DeployEvents.label(), "ok"])
            .inc();
        self.apply(Input::Deploy(event)).await.map(|_| ())
    }

    async fn record_admin(&self, _record: &AdminRecord) -> Result<(), InputError> {
        Ok(())
    }

    async fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> Result<Result<String, Refusal>, InputError> {
        let id = command_id(&deploy_id, Action::Rollback);
        let call = AdminCall::Rollback {
            deploy_id,
            reason,
            actor,
        };
        let outputs = self.apply(Input::AdminCall(call)).await?;
        Ok(
            match outputs.into_iter().find_map(|o| match o {
                Output::Refused(r) => Some(r),
                _ => None,
            }) {
                Some(r) => Err(r),
                None => Ok(id),
            },
        )
    }
}
