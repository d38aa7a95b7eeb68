//! With Kafka: telemetry, alerts and a person's rollbacks go to the owner
//! of their key through the evidence topic (stage 1's fold, here on the
//! HTTP path); deploy events and admin actions go to their topics, which
//! every instance applies; what must be decided here (an unmatched alert's
//! audit, an admin call) goes to this instance's owner thread, which
//! publishes what it caused.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::{unavailable, Backend};
use crate::engine::fold::Fold;
use crate::http::InputError;
use crate::kafka::producer::{OutRecord, Until};
use crate::model::evidence::{Origin, Request, RequestId};
use crate::model::{
    command_id, Action, AdminAction, AdminRecord, Alert, DeployEvent, Input, Output, Refusal,
    TelemetryBatch, TelemetryOutcome,
};
use crate::runtime::intake::{Sender, ACK_WITHIN};
use crate::runtime::owner::Call;
use crate::runtime::shared::Shared;
use crate::time::Timestamp;

/// How long an HTTP call waits for the owner thread.
const OWNER_ANSWERS_WITHIN: Duration = Duration::from_secs(30);

pub struct Kafka {
    pub shared: Arc<Shared>,
    /// Evidence, deploy events and admin records out.
    pub sender: Sender,
    /// To the owner thread.
    pub calls: mpsc::Sender<Call>,
    /// Per control topic and partition, the next offset the owner thread
    /// will apply.
    pub control_next: Arc<dashmap::DashMap<(String, i32), i64>>,
}

impl Kafka {
    /// Sends what HTTP request `request` gathered to the owners of its
    /// keys (taken in now) and waits for the broker's acknowledgement. An
    /// error can come after some keys' evidence was sent: when the
    /// exporter sends the request again, their owners skip it
    /// ([`RequestId`]).
    async fn send_to_owners(
        &self,
        mut fold: Fold,
        request: Option<RequestId>,
    ) -> Result<(), InputError> {
        let until = Until::Deadline(Instant::now() + ACK_WITHIN);
        let mut evidence = fold.flush(Origin::Http(request));
        let partial = evidence.len() > 1 && crate::runtime::failpoint::once("http-partial");
        if partial {
            evidence.truncate(1);
        }
        self.sender
            .send(evidence, Some(Timestamp::now_wall()), until)
            .await
            .map_err(|e| unavailable(format!("the evidence topic did not acknowledge: {e}")))?;
        if partial {
            warn!("failpoint http-partial: one key's evidence sent, the others not");
            return Err(unavailable("failpoint http-partial"));
        }
        Ok(())
    }

    /// Writes one record and waits for its acknowledgement: its partition
    /// and offset. `what` names it in the error.
    async fn write(
        &self,
        topic: &str,
        key: &str,
        payload: Vec<u8>,
        what: &str,
    ) -> Result<(i32, i64), InputError> {
        let record = OutRecord {
            topic: topic.to_string(),
            key: Some(key.as_bytes().to_vec()),
            payload,
            ..OutRecord::default()
        };
        self.sender
            .send_one(record)
            .await
            .map_err(|e| unavailable(format!("the {topic} topic did not acknowledge {what}: {e}")))
    }

    /// Waits until the owner thread applied `offset` of (`topic`,
    /// `partition`), or `within` passed; whether it did.
    async fn read_back(&self, topic: &str, partition: i32, offset: i64, within: Duration) -> bool {
        let key = (topic.to_string(), partition);
        let applied = || self.control_next.get(&key).is_some_and(|n| *n > offset);
        wait_until(applied, within, Duration::from_millis(5)).await
    }
}

/// Polls `done` every `every` until it holds or `within` passed; whether
/// it held.
async fn wait_until(done: impl Fn() -> bool, within: Duration, every: Duration) -> bool {
    let until = Instant::now() + within;
    while !done() {
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

impl Backend for Kafka {
    async fn apply(&self, input: Input) -> Result<Vec<Output>, InputError> {
        let (reply, answer) = oneshot::channel();
        let call = async {
            self.calls
                .send(Call { input, reply })
                .await
                .map_err(|_| unavailable("stopping"))?;
            answer.await.map_err(|_| unavailable("stopping"))
        };
        // A stuck owner thread (see /healthz) must not hold HTTP requests
        // for ever. The call may still be applied later: every call it
        // takes is safe to send again (pause and resume are idempotent, a
        // rollback is once per deploy).
        tokio::time::timeout(OWNER_ANSWERS_WITHIN, call)
            .await
            .unwrap_or_else(|_| {
                Err(unavailable(format!(
                    "the owner thread did not answer within {} s",
                    OWNER_ANSWERS_WITHIN.as_secs()
                )))
            })
    }

    async fn telemetry(
        &self,
        batch: TelemetryBatch,
        request: Request<'_>,
    ) -> Result<TelemetryOutcome, InputError> {
        let mut fold = Fold::default();
        let outcome =
            self.shared
                .read()
                .fold_telemetry(&mut fold, &batch, None, Timestamp::now_wall());
        self.send_to_owners(fold, Some(request.id())).await?;
        Ok(outcome)
    }

    async fn alerts(&self, alerts: Vec<Alert>, request: Request<'_>) -> Result<(), InputError> {
        let mut fold = Fold::default();
        let unmatched = self.shared.read().fold_alerts(&mut fold, alerts);
        self.send_to_owners(fold, Some(request.id())).await?;
        if !unmatched.is_empty() {
            // Audited by this instance: no owner would see them.
            self.apply(Input::Alerts(unmatched)).await?;
        }
        Ok(())
    }

    async fn deploy_event(&self, event: DeployEvent, bytes: Vec<u8>) -> Result<(), InputError> {
        let topic = &self.shared.config.topics.deploy_events;
        let (partition, offset) = self
            .write(topic, &event.service, bytes, "the event")
            .await?;
        info!(deploy_id = %event.deploy_id, event = event.kind.as_str(), "deploy event from HTTP written to the deploy-events topic");
        // Read your writes: answer once this instance applied it (or after
        // 5 s; it is recorded either way).
        if !self
            .read_back(topic, partition, offset, Duration::from_secs(5))
            .await
        {
            warn!(deploy_id = %event.deploy_id, "deploy event not read back within 5 s");
        }
        Ok(())
    }

    async fn record_admin(&self, record: &AdminRecord) -> Result<(), InputError> {
        let payload = serde_json::to_vec(record).map_err(unavailable)?;
        let key = match record.action {
            AdminAction::BreakerReset => "breaker",
            // Opens and closes of windows in one partition: in order.
            AdminAction::MaintenanceOpen | AdminAction::MaintenanceClose => "maintenance",
            AdminAction::Pause | AdminAction::Resume => "automation",
        };
        let what = format!("the {}", record.action.as_str());
        let topic = &self.shared.config.topics.admin;
        self.write(topic, key, payload, &what).await.map(|_| ())
    }

    async fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> Result<Result<String, Refusal>, InputError> {
        let id = command_id(&deploy_id, Action::Rollback);
        // To the owner of the deploy's key, through the evidence topic; the
        // answer comes once the command is known here (emitted here, or
        // read back from the commands topic).
        let mut fold = Fold::default();
        {
            let e = self.shared.read();
            if e.was_emitted(&id) {
                return Ok(Err(Refusal::AlreadyEmitted(id)));
            }
            if e.fold_rollback(&mut fold, &deploy_id, &reason, &actor)
                .is_none()
            {
                return Ok(Err(Refusal::NotFound(deploy_id)));
            }
        }
        self.send_to_owners(fold, None).await?;
        let emitted = || self.shared.read().was_emitted(&id);
        if !wait_until(emitted, Duration::from_secs(10), Duration::from_millis(20)).await {
            return Err(unavailable(format!(
                "the rollback of {deploy_id} was handed to its owner, which has not emitted command {id} within 10 s"
            )));
        }
        Ok(Ok(id))
    }
}
