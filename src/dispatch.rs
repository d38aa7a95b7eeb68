//! From bytes to the engine: which input a topic stands for, and applying
//! one decoded input. Shared by `replay`, `run` over Kafka and the HTTP
//! listener, so every adapter feeds the engine the same way.

use crate::config::{Config, OtlpEncoding};
use crate::engine::Engine;
use crate::ingest::{self, DecodeError};
use crate::model::{AdminRecord, Command, Output};

/// Which input a record's topic stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DeployEvents,
    Spans,
    Metrics,
    Results,
    Commands,
    Admin,
    Alertmanager,
}

impl Source {
    /// Maps a topic name (or `"alertmanager"`) to its input.
    pub fn from_topic(config: &Config, topic: &str) -> Option<Source> {
        let t = &config.topics;
        Some(if topic == t.deploy_events {
            Source::DeployEvents
        } else if topic == t.otlp_spans {
            Source::Spans
        } else if topic == t.otlp_metrics {
            Source::Metrics
        } else if topic == t.results {
            Source::Results
        } else if topic == t.commands {
            Source::Commands
        } else if topic == t.admin {
            Source::Admin
        } else if topic == "alertmanager" {
            Source::Alertmanager
        } else {
            return None;
        })
    }

    /// The `source` label of an input, as used in metrics and audit records.
    pub fn label(self) -> &'static str {
        match self {
            Source::DeployEvents => "deploy_events",
            Source::Spans => "otlp_spans",
            Source::Metrics => "otlp_metrics",
            Source::Results => "results",
            Source::Commands => "commands",
            Source::Admin => "admin",
            Source::Alertmanager => "alertmanager",
        }
    }
}

/// Applies one decoded input to the engine. Shared by every adapter that
/// feeds the engine from bytes.
pub fn apply(
    engine: &mut Engine,
    source: Source,
    bytes: &[u8],
    json_form: bool,
) -> Result<Vec<Output>, DecodeError> {
    let enc = if json_form {
        OtlpEncoding::Json
    } else {
        engine.config().topics.otlp_encoding
    };
    Ok(match source {
        Source::DeployEvents => engine.apply_deploy_event(ingest::deploy::decode(bytes)?),
        Source::Spans => {
            let batch = match enc {
                OtlpEncoding::Json => ingest::otlp::decode_traces_json(bytes)?,
                OtlpEncoding::Proto => ingest::otlp::decode_traces_proto(bytes)?,
            };
            engine.apply_telemetry(&batch);
            Vec::new()
        }
        Source::Metrics => {
            let batch = match enc {
                OtlpEncoding::Json => ingest::otlp::decode_metrics_json(bytes)?,
                OtlpEncoding::Proto => ingest::otlp::decode_metrics_proto(bytes)?,
            };
            engine.apply_telemetry(&batch);
            Vec::new()
        }
        Source::Results => engine.apply_result(&ingest::result::decode(bytes)?).0,
        Source::Commands => {
            let cmd: Command = serde_json::from_slice(bytes)
                .map_err(|e| DecodeError::new(format!("invalid command: {e}")))?;
            engine.restore_command(&cmd)
        }
        Source::Admin => {
            let record = AdminRecord::decode(bytes).map_err(DecodeError::new)?;
            engine.apply_admin(&record);
            Vec::new()
        }
        Source::Alertmanager => engine.apply_alerts(&ingest::alertmanager::decode(bytes)?),
    })
}
