//! The gate's values (`docs/http.md#gate`): the verdict a controller is
//! given, and the record by which the owner of a deploy's key tells every
//! instance that the deploy was shown healthy (`docs/formats.md#gate-records`).

use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

/// Schema of the gate records on the admin topic.
pub const GATE_SCHEMA: &str = "rollbackd.gate/v1";

/// What the gate answers for a deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateVerdict {
    /// Shown healthy: within the lowest threshold and no worse than its
    /// baseline by the margin, anytime-valid. Once shown, for good —
    /// unless a command is decided.
    Pass,
    /// A command was decided for it.
    Fail,
    /// Neither yet.
    Wait,
}

impl GateVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            GateVerdict::Pass => "pass",
            GateVerdict::Fail => "fail",
            GateVerdict::Wait => "wait",
        }
    }
}

/// A deploy shown healthy, as its owner publishes it on the admin topic:
/// every instance applies it, so every instance answers `pass`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub schema: String,
    pub deploy_id: String,
    pub service: String,
    pub environment: String,
    pub version: String,
    /// The evaluation that showed it.
    pub passed_at: Timestamp,
    /// The numbers behind it (`docs/http.md#gate`).
    pub evidence: serde_json::Value,
}

impl GateRecord {
    /// Decodes a gate record; anything else is malformed.
    pub fn decode(payload: &[u8]) -> Result<GateRecord, String> {
        let r: GateRecord =
            serde_json::from_slice(payload).map_err(|e| format!("invalid gate record: {e}"))?;
        if r.schema != GATE_SCHEMA {
            return Err(format!(
                "gate record schema {:?}, want {GATE_SCHEMA:?}",
                r.schema
            ));
        }
        Ok(r)
    }
}
