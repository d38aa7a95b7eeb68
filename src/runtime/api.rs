//! What the HTTP routes can ask of a running agent ([`crate::http::Api`]):
//! authentication data, probes and views from [`Shared`]; inputs decoded
//! here, counted, and handed to the [`Backend`] — which decides where they
//! go (the engine here, or the owners through Kafka).

use std::sync::Arc;

use serde_json::json;

use super::backend::Backend;
use super::shared::Shared;
use crate::config::{Config, OtlpEncoding};
use crate::engine::gate::GateAnswer;
use crate::engine::{DeployView, Engine};
use crate::http::gate::{GateKey, GateRoute};
use crate::http::status::{AuditLine, Status};
use crate::http::{Api, InputError, RECENT_AUDIT};
use crate::ingest::{self, DecodeError, Source};
use crate::model::evidence::Request;
use crate::model::{
    AdminAction, AdminCall, AdminRecord, AuditRecord, Input, MaintenanceCall, Refusal, ADMIN_SCHEMA,
};
use crate::time::Timestamp;

/// The HTTP routes' way into an agent running on backend `B`.
pub struct Handle<B> {
    pub shared: Arc<Shared>,
    pub backend: B,
}

impl<B: Backend> Handle<B> {
    fn count(&self, source: Source, outcome: &str) {
        self.shared
            .metrics
            .records
            .with_label_values(&[source.label(), outcome])
            .inc();
    }

    /// A malformed HTTP input: counted and audited; it changed nothing.
    async fn malformed(&self, source: Source, e: &DecodeError) -> InputError {
        self.count(source, "malformed");
        let input = Engine::malformed(source.label(), &e.0, json!({"http": true}));
        let _ = self.backend.apply(input).await;
        InputError::Malformed(e.0.clone())
    }

    /// A deploy event: decoded and checked against the clock here.
    async fn deploy_event(&self, bytes: Vec<u8>) -> Result<(), InputError> {
        let limits = &self.shared.config.limits;
        let decoded = ingest::deploy::decode(&bytes).and_then(|ev| {
            ingest::deploy::check_clock(&ev, Timestamp::now_wall(), limits.max_clock_skew)?;
            Ok(ev)
        });
        match decoded {
            Ok(ev) => self.backend.deploy_event(ev, bytes).await,
            Err(e) => Err(self.malformed(Source::DeployEvents, &e).await),
        }
    }
}

impl<B: Backend> Api for Handle<B> {
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
        let request = Request {
            route: source.label(),
            body: &body,
        };
        let input = match ingest::decode(source, &body, encoding) {
            Ok(input) => input,
            Err(e) => return Err(self.malformed(source, &e).await),
        };
        match input {
            Input::Telemetry(batch) => {
                let n = batch.observation_count();
                let outcome = self.backend.telemetry(batch, request).await?;
                self.shared
                    .metrics
                    .observations
                    .inc_by(outcome.observations);
                self.count(source, outcome.label());
                Ok(n)
            }
            Input::Alerts(alerts) => {
                let n = alerts.len();
                self.count(source, "ok");
                self.backend.alerts(alerts, request).await?;
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
        mut window: Option<MaintenanceCall>,
    ) -> Result<serde_json::Value, InputError> {
        let at = Timestamp::now_wall();
        let instance = self.shared.instance.clone();
        match (action, window.as_mut()) {
            (AdminAction::MaintenanceOpen, Some(w)) => {
                w.id = MaintenanceCall::id_for(at, &instance, &actor)
            }
            (AdminAction::MaintenanceClose, Some(w))
                if !self.shared.read().maintenance_open(&w.id) =>
            {
                return Err(InputError::NotFound(format!(
                    "no open maintenance window {}",
                    w.id
                )));
            }
            _ => {}
        }
        let opened = window
            .as_ref()
            .filter(|_| action == AdminAction::MaintenanceOpen)
            .map(|w| w.id.clone());
        let record = AdminRecord {
            schema: ADMIN_SCHEMA.into(),
            action,
            actor,
            at,
            instance,
            maintenance: window,
        };
        self.backend.record_admin(&record).await?;
        self.backend
            .apply(Input::AdminCall(AdminCall::Guard(record)))
            .await?;
        let e = self.shared.read();
        let mut state = json!({
            "paused": e.paused(),
            "breaker_open": e.breaker_open(),
            "maintenance": e.maintenance(),
        });
        if let Some(id) = opened {
            state["id"] = json!(id);
        }
        Ok(state)
    }

    async fn rollback(
        &self,
        deploy_id: String,
        reason: String,
        actor: String,
    ) -> Result<Result<String, Refusal>, InputError> {
        self.backend.rollback(deploy_id, reason, actor).await
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

    fn gate(&self, key: &GateKey, route: GateRoute) -> Option<GateAnswer> {
        let answer =
            self.shared
                .read()
                .gate(&key.service, &key.environment, key.version.as_deref())?;
        self.shared
            .metrics
            .gate_answers
            .with_label_values(&[route.label(), answer.verdict.as_str()])
            .inc();
        Some(answer)
    }

    fn status(&self) -> Status {
        let audit = AuditLine::recent(self.shared.recent_audit(RECENT_AUDIT));
        let engine = self.shared.read();
        Status::new(
            &engine,
            &self.shared.fleet(),
            &self.shared.instance,
            self.shared.not_ready(),
            self.shared.warnings(),
            self.shared.liveness.stuck(),
            audit,
        )
    }
}
