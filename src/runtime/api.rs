//! What the HTTP routes can ask of a running agent ([`crate::http::Api`]):
//! inputs go where `run` sends them — with Kafka, telemetry, alerts and
//! manual rollbacks to their owner through the evidence topic, deploy
//! events and admin actions to their topics (every instance applies them
//! from there); without Kafka, to the engine here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::emit::{Batch, Emitter};
use super::intake::Sender;
use super::owner::Call;
use super::shared::Shared;
use crate::config::{Config, OtlpEncoding};
use crate::engine::fold::Fold;
use crate::engine::{DeployView, Engine};
use crate::http::status::{AuditLine, Status};
use crate::http::{Api, InputError, RECENT_AUDIT};
use crate::ingest::{self, DecodeError, Source};
use crate::kafka::producer::{OutRecord, Until};
use crate::model::evidence::{Origin, RequestId};
use crate::model::{
    command_id, Action, AdminAction, AdminCall, AdminRecord, AuditRecord, Input, Output, Refusal,
    ADMIN_SCHEMA,
};
use crate::time::Timestamp;

/// Where HTTP inputs go.
pub enum Backend {
    Local {
        emitter: Arc<Mutex<Emitter>>,
    },
    Kafka {
        sender: Sender,
        /// To the owner thread.
        calls: mpsc::Sender<Call>,
        /// Per control topic and partition, the next offset the owner
        /// thread will apply.
        control_next: Arc<dashmap::DashMap<(String, i32), i64>>,
    },
}

pub struct Handle {
    pub shared: Arc<Shared>,
    pub backend: Backend,
}

fn unavailable(e: impl std::fmt::Display) -> InputError {
    InputError::Unavailable(e.to_string())
}

/// Sends what HTTP request `request` gathered to the owners of its keys
/// (taken in now) and waits for the broker's acknowledgement. An error can
/// come after some keys' evidence was sent: when the exporter sends the
/// request again, their owners skip it ([`RequestId`]).
async fn send_to_owners(
    sender: &Sender,
    mut fold: Fold,
    request: Option<RequestId>,
) -> Result<(), InputError> {
    let until = Until::Deadline(Instant::now() + super::intake::ACK_WITHIN);
    let mut evidence = fold.flush(Origin::Http(request));
    let partial = evidence.len() > 1 && super::failpoint::once("http-partial");
    if partial {
        evidence.truncate(1);
    }
    sender
        .send(evidence, Some(Timestamp::now_wall()), until)
        .await
        .map_err(|e| unavailable(format!("the evidence topic did not acknowledge: {e}")))?;
    if partial {
        warn!("failpoint http-partial: one key's evidence sent, the others not");
        return Err(unavailable("failpoint http-partial"));
    }
    Ok(())
}

/// How long an HTTP call waits for the owner thread.
const OWNER_ANSWERS_WITHIN: Duration = Duration::from_secs(30);

impl Handle {
    /// Without Kafka: applies `input` and publishes what it caused.
    pub fn local(&self, input: Input) -> Vec<Output> {
        let outputs = self.shared.apply(input);
        if let Backend::Local { emitter } = &self.backend {
            let mut e = emitter.lock().unwrap_or_else(|p| p.into_inner());
            if let Err(err) = e.publish(Batch {
                outputs: outputs.clone(),
                offsets: None,
                consumed_at: None,
            }) {
                warn!(error = %err, "publishing failed");
            }
        }
        outputs
    }

    /// With Kafka: applies `input` on the owner thread (which publishes
    /// what it caused) and returns the outputs.
    async fn on_owner(&self, input: Input) -> Result<Vec<Output>, InputError> {
        let Backend::Kafka { calls, .. } = &self.backend else {
            return Ok(self.local(input));
        };
        let (reply, answer) = oneshot::channel();
        let call = async {
            calls
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

    /// Applies `input` where it belongs in this mode.
    async fn apply(&self, input: Input) -> Result<Vec<Output>, InputError> {
        match &self.backend {
            // Under the engine's lock for a moment: off the reactor's
            // other tasks.
            Backend::Local { .. } => Ok(tokio::task::block_in_place(|| self.local(input))),
            Backend::Kafka { .. } => self.on_owner(input).await,
        }
    }

    fn count(&self, source: Source, outcome: &str) {
        self.shared
            .metrics
            .records
            .with_label_values(&[source.label(), outcome])
            .inc();
    }

    /// A malformed HTTP input: counted and audited; it changed nothing.
    async fn malformed(&self, source: Source, e: &DecodeError) {
        self.count(source, "malformed");
        let input = Engine::malformed(source.label(), &e.0, json!({"http": true}));
        let _ = self.apply(input).await;
    }

    async fn telemetry(
        &self,
        batch: crate::model::TelemetryBatch,
        source: Source,
        request: RequestId,
    ) -> Result<(), InputError> {
        match &self.backend {
            Backend::Local { .. } => {
                let out = self.apply(Input::Telemetry(batch)).await?;
                self.count_telemetry(source, &out);
                Ok(())
            }
            Backend::Kafka { sender, .. } => {
                let mut fold = Fold::default();
                let outcome = {
                    let e = self.shared.read();
                    e.fold_telemetry(&mut fold, &batch, None, Timestamp::now_wall())
                };
                self.shared
                    .metrics
                    .observations
                    .inc_by(outcome.observations);
                self.count(source, outcome.label());
                send_to_owners(sender, fold, Some(request)).await
            }
        }
    }

    fn count_telemetry(&self, source: Source, outputs: &[Output]) {
        let mut label = "ok";
        for o in outputs {
            if let Output::Telemetry(t) = o {
                self.shared.metrics.observations.inc_by(t.observations);
                label = t.label();
            }
        }
        self.count(source, label);
    }

    async fn alerts(
        &self,
        alerts: Vec<crate::model::Alert>,
        request: RequestId,
    ) -> Result<(), InputError> {
        match &self.backend {
            Backend::Local { .. } => {
                self.apply(Input::Alerts(alerts)).await?;
                Ok(())
            }
            Backend::Kafka { sender, .. } => {
                let mut fold = Fold::default();
                let unmatched = self.shared.read().fold_alerts(&mut fold, alerts);
                send_to_owners(sender, fold, Some(request)).await?;
                if !unmatched.is_empty() {
                    // Audited by this instance: no owner would see them.
                    self.on_owner(Input::Alerts(unmatched)).await?;
                }
                Ok(())
            }
        }
    }

    /// A deploy event: with Kafka written to the deploy-events topic (key =
    /// service) and answered once this instance has read it back, so every
    /// instance — and every restart — knows it.
    async fn deploy_event(&self, bytes: Vec<u8>) -> Result<(), InputError> {
        let limits = &self.shared.config.limits;
        let ev = match ingest::deploy::decode(&bytes).and_then(|ev| {
            ingest::deploy::check_clock(&ev, Timestamp::now_wall(), limits.max_clock_skew)?;
            Ok(ev)
        }) {
            Ok(ev) => ev,
            Err(e) => {
                self.malformed(Source::DeployEvents, &e).await;
                return Err(InputError::Malformed(e.0));
            }
        };
        let Backend::Kafka {
            sender,
            control_next,
            ..
        } = &self.backend
        else {
            self.count(Source::DeployEvents, "ok");
            self.apply(Input::Deploy(ev)).await?;
            return Ok(());
        };
        let topic = &self.shared.config.topics.deploy_events;
        let (partition, offset) = sender
            .send_one(OutRecord {
                topic: topic.clone(),
                key: Some(ev.service.clone().into_bytes()),
                payload: bytes,
                ..OutRecord::default()
            })
            .await
            .map_err(|e| {
                unavailable(format!(
                    "the deploy-events topic did not acknowledge the event: {e}"
                ))
            })?;
        info!(deploy_id = %ev.deploy_id, event = ev.kind.as_str(), "deploy event from HTTP written to the deploy-events topic");
        // Read your writes: answer once this instance applied it (or after
        // 5 s; it is recorded either way).
        let key = (topic.clone(), partition);
        let until = Instant::now() + Duration::from_secs(5);
        while control_next.get(&key).is_none_or(|n| *n <= offset) {
            if Instant::now() > until {
                warn!(deploy_id = %ev.deploy_id, "deploy event not read back within 5 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }
}

impl Api for Handle {
    fn config(&self) -> &Config {
        &self.shared.config
    }

    fn webhook_token(&self) -> Option<&str> {
        self.shared.webhook_token.as_deref()
    }

    fn admin_token(&self) -> Option<&str> {
        self.shared.admin_token.as_deref()
    }

    fn not_ready(&self) -> Option<String> {
        self.shared.not_ready()
    }

    fn stuck(&self) -> Option<String> {
        self.shared.liveness.stuck()
    }

    fn metrics(&self) -> String {
        self.shared.refresh_gauges();
        self.shared.metrics.render()
    }

    async fn input(&self, source: Source, body: Vec<u8>, json: bool) -> Result<usize, InputError> {
        let _span = tracing::info_span!("http_input", source = source.label(), bytes = body.len());
        if source == Source::DeployEvents {
            return self.deploy_event(body).await.map(|()| 1);
        }
        let encoding = if json {
            OtlpEncoding::Json
        } else {
            OtlpEncoding::Proto
        };
        let request = RequestId::of(source.label(), &body);
        let input = match ingest::decode(source, &body, encoding) {
            Ok(input) => input,
            Err(e) => {
                self.malformed(source, &e).await;
                return Err(InputError::Malformed(e.0));
            }
        };
        match input {
            Input::Telemetry(batch) => {
                let n = batch.observation_count();
                self.telemetry(batch, source, request).await?;
                Ok(n)
            }
            Input::Alerts(alerts) => {
                let n = alerts.len();
                self.count(source, "ok");
                self.alerts(alerts, request).await?;
                Ok(n)
            }
            _ => Err(InputError::Malformed(format!(
                "{} is not taken over HTTP",
                source.label()
            ))),
        }
    }

    async fn admin(
        &self,
        action: AdminAction,
        actor: String,
    ) -> Result<serde_json::Value, InputError> {
        let record = AdminRecord {
            schema: ADMIN_SCHEMA.into(),
            action,
            actor,
            at: Timestamp::now_wall(),
            instance: self.shared.instance.clone(),
        };
        if let Backend::Kafka { sender, .. } = &self.backend {
            // Recorded first, for every instance and every restart; an
            // error changes nothing.
            let payload = serde_json::to_vec(&record).map_err(unavailable)?;
            let key = match action {
                AdminAction::BreakerReset => "breaker",
                _ => "automation",
            };
            sender
                .send_one(OutRecord {
                    topic: self.shared.config.topics.admin.clone(),
                    key: Some(key.as_bytes().to_vec()),
                    payload,
                    ..OutRecord::default()
                })
                .await
                .map_err(|e| {
                    unavailable(format!(
                        "the admin topic did not acknowledge the {}: {e}",
                        action.as_str()
                    ))
                })?;
        }
        self.apply(Input::AdminCall(AdminCall::Guard(record)))
            .await?;
        let e = self.shared.read();
        Ok(json!({"paused": e.paused(), "breaker_open": e.breaker_open()}))
    }

    async fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> Result<Result<String, Refusal>, InputError> {
        let id = command_id(&deploy_id, Action::Rollback);
        let Backend::Kafka { sender, .. } = &self.backend else {
            let call = AdminCall::Rollback {
                deploy_id,
                reason,
                actor,
            };
            let out = self.apply(Input::AdminCall(call)).await?;
            return Ok(
                match out.into_iter().find_map(|o| match o {
                    Output::Refused(r) => Some(r),
                    _ => None,
                }) {
                    Some(r) => Err(r),
                    None => Ok(id),
                },
            );
        };
        // To the owner of the deploy's key, through the evidence topic; the
        // answer comes once the command is known here (emitted here, or read
        // back from the commands topic).
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
        send_to_owners(sender, fold, None).await?;
        let until = Instant::now() + Duration::from_secs(10);
        while !self.shared.read().was_emitted(&id) {
            if Instant::now() > until {
                return Err(unavailable(format!(
                    "the rollback of {deploy_id} was handed to its owner, which has not emitted command {id} within 10 s"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Ok(id))
    }

    fn deploys(&self) -> Vec<DeployView> {
        self.shared.read().deploy_views()
    }

    fn deploy(&self, id: &str) -> Option<DeployView> {
        self.shared.read().deploy_view(id)
    }

    fn audit(&self, limit: usize) -> Vec<AuditRecord> {
        self.shared.recent_audit(limit)
    }

    fn status(&self) -> Status {
        let audit = AuditLine::recent(self.shared.recent_audit(RECENT_AUDIT));
        Status::new(
            &self.shared.read(),
            &self.shared.instance,
            self.shared.not_ready(),
            self.shared.warnings(),
            self.shared.liveness.stuck(),
            audit,
        )
    }
}
