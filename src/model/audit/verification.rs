//! `verification` records: how a successful rollback turned out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::seconds;
use crate::time::Duration;

/// How a successful rollback turned out (the restored version watched for
/// `verify.window`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationOutcome {
    /// The restored version is confidently below every firing threshold.
    Recovered,
    /// The restored version still burns: a firing pair on it.
    NotRecovered,
    /// Too little traffic (or the deploy was superseded) to tell.
    Inconclusive,
}

impl VerificationOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            VerificationOutcome::Recovered => "recovered",
            VerificationOutcome::NotRecovered => "not_recovered",
            VerificationOutcome::Inconclusive => "inconclusive",
        }
    }
}

/// A bad ratio with the counts behind it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratio {
    pub bad: u64,
    /// `bad / requests` to six decimals (0 without requests).
    pub ratio: f64,
    pub requests: u64,
}

impl Ratio {
    pub fn new(bad: u64, requests: u64) -> Ratio {
        let ratio = if requests == 0 {
            0.0
        } else {
            (bad as f64 / requests as f64 * 1e6).round() / 1e6
        };
        Ratio {
            requests,
            bad,
            ratio,
        }
    }
}

/// The outcome of watching a rolled-back deploy's restored version. The
/// durations are written as seconds (`time_to_…_seconds`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerificationAudit {
    /// The restored version's bad ratio since the rollback.
    pub after: Ratio,
    /// The restored version's bad ratio while the deploy ran (the baseline
    /// at the decision).
    pub before: Option<Ratio>,
    pub command_id: String,
    /// The candidate's bad ratio at the decision.
    pub during: Option<Ratio>,
    /// Why, for `not_recovered` (the firing pair) and `inconclusive`.
    pub evidence: Value,
    pub outcome: VerificationOutcome,
    pub restored_version: Option<String>,
    /// The SLI the decision was about (`errors` or `latency`).
    pub sli: String,
    /// From the deploy's start to the decision.
    #[serde(rename = "time_to_decide_seconds", with = "seconds", default)]
    pub time_to_decide: Option<Duration>,
    /// From the candidate's first bad request to the decision.
    #[serde(rename = "time_to_detect_seconds", with = "seconds", default)]
    pub time_to_detect: Option<Duration>,
    /// From the executor's result to recovery.
    #[serde(
        rename = "time_to_recover_from_result_seconds",
        with = "seconds",
        default
    )]
    pub time_to_recover_from_result: Option<Duration>,
    /// From the decision to recovery.
    #[serde(rename = "time_to_recover_seconds", with = "seconds", default)]
    pub time_to_recover: Option<Duration>,
    /// From the decision to the executor's result.
    #[serde(rename = "time_to_rollback_seconds", with = "seconds", default)]
    pub time_to_rollback: Option<Duration>,
}
