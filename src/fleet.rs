//! What an HTTP call publishes for every instance. With Kafka, an admin
//! action (pause, resume, breaker reset) goes to the admin topic and a
//! deploy event to the deploy-events topic, acknowledged by the broker
//! before the call is answered, so every instance — and every restart —
//! knows it. Without Kafka they are applied here only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::app::Agent;
use crate::ingest::{self, DecodeError, Source};
use crate::time::Timestamp;

/// Why an HTTP input was not taken.
#[derive(Debug)]
pub enum HttpInputError {
    /// The input is malformed: 400, nothing changed.
    Malformed(DecodeError),
    /// It could not be recorded (broker down): 503, nothing changed.
    Unavailable(String),
}

impl Agent {
    /// A deploy event received over HTTP. With Kafka it is validated, then
    /// written to the deploy-events topic (key = service) and acknowledged;
    /// every instance, this one included, applies it when it reads it back
    /// — the topic stays the one record of deploys. Without Kafka it is
    /// applied here. Returns how many events were accepted.
    pub async fn deploy_event_over_http(
        self: &Arc<Self>,
        bytes: Vec<u8>,
    ) -> Result<usize, HttpInputError> {
        let Some(p) = self.producer.get() else {
            let agent = self.clone();
            return tokio::task::spawn_blocking(move || {
                agent.apply_http(Source::DeployEvents, &bytes, true)
            })
            .await
            .map_err(|e| HttpInputError::Unavailable(e.to_string()))?
            .map_err(HttpInputError::Malformed);
        };
        let ev = match ingest::deploy::decode(&bytes) {
            Ok(ev) => ev,
            Err(e) => {
                // Counted and audited (off the async threads: handing the
                // audit record over may block); nothing is produced.
                let (agent, err) = (self.clone(), e.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    agent.malformed_http(Source::DeployEvents, &err)
                })
                .await;
                return Err(HttpInputError::Malformed(e));
            }
        };
        let delivery = p
            .send(
                rdkafka::producer::FutureRecord::to(&self.config.topics.deploy_events)
                    .key(&ev.service)
                    .payload(&bytes),
                rdkafka::util::Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| {
                HttpInputError::Unavailable(format!(
                    "the deploy-events topic did not acknowledge the event: {e}"
                ))
            })?;
        info!(deploy_id = %ev.deploy_id, event = ev.kind.as_str(), "deploy event from HTTP written to the deploy-events topic");
        // Read your writes: answer once this instance applied it (or after
        // 5 s; it is recorded either way).
        let key = (self.config.topics.deploy_events.clone(), delivery.partition);
        let until = Instant::now() + Duration::from_secs(5);
        while self
            .publisher
            .state
            .control_next
            .get(&key)
            .is_none_or(|n| *n <= delivery.offset)
        {
            if Instant::now() > until {
                warn!(deploy_id = %ev.deploy_id, "deploy event not read back within 5 s");
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(1)
    }

    /// Takes an admin call: with Kafka it is first written to the admin topic
    /// and acknowledged (every instance applies it from there; an error
    /// changes nothing), then applied and audited here. Returns the state
    /// after it.
    pub async fn admin_call(
        self: &Arc<Self>,
        action: crate::model::AdminAction,
        actor: String,
    ) -> Result<serde_json::Value, String> {
        let at = Timestamp::now_wall();
        let record = crate::model::AdminRecord {
            schema: crate::model::ADMIN_SCHEMA.into(),
            action,
            actor,
            at,
            instance: hostname(),
        };
        if let Some(p) = self.producer.get() {
            let payload = serde_json::to_vec(&record).map_err(|e| e.to_string())?;
            let key = match action {
                crate::model::AdminAction::BreakerReset => "breaker",
                _ => "automation",
            };
            p.send(
                rdkafka::producer::FutureRecord::to(&self.config.topics.admin)
                    .key(key)
                    .payload(&payload),
                rdkafka::util::Timeout::After(Duration::from_secs(10)),
            )
            .await
            .map_err(|(e, _)| {
                format!(
                    "the admin topic did not acknowledge the {}: {e}",
                    action.as_str()
                )
            })?;
        }
        let agent = self.clone();
        tokio::task::spawn_blocking(move || {
            agent.admin(crate::model::AdminCall::Guard(record))?;
            let e = agent.engine.read().ok()?;
            Some(serde_json::json!({"paused": e.paused(), "breaker_open": e.breaker_open()}))
        })
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "engine unavailable".to_string())
    }
}

/// This host's name (the pod name in Kubernetes), for admin records.
fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_default()
}
