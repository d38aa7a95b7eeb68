//! What a window reads: its counts, where they came from, and the two
//! service level indicators they are read for.

use crate::config::Policy;

/// Where a window's counts came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SliSource {
    None,
    Spans,
    Metrics,
}

/// The totals of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WindowCounts {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    pub source: SliSource,
}

impl WindowCounts {
    pub const EMPTY: WindowCounts = WindowCounts {
        requests: 0,
        errors: 0,
        slow: 0,
        source: SliSource::None,
    };

    pub fn bad(&self, sli: Sli) -> u64 {
        match sli {
            Sli::Errors => self.errors,
            Sli::Latency => self.slow,
        }
    }

    /// The counts added since `start` (an earlier reading of the same
    /// totals), or `None` when the source changed in between.
    pub fn since(self, start: WindowCounts) -> Option<WindowCounts> {
        if start.source != SliSource::None && start.source != self.source {
            return None;
        }
        Some(WindowCounts {
            requests: self.requests.saturating_sub(start.requests),
            errors: self.errors.saturating_sub(start.errors),
            slow: self.slow.saturating_sub(start.slow),
            source: self.source,
        })
    }

    /// Bad share of requests; zero when there were none.
    pub fn ratio(&self, sli: Sli) -> f64 {
        if self.requests == 0 {
            0.0
        } else {
            self.bad(sli) as f64 / self.requests as f64
        }
    }
}

/// The two service level indicators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sli {
    Errors,
    Latency,
}

impl Sli {
    pub const ALL: [Sli; 2] = [Sli::Errors, Sli::Latency];

    /// Its error budget under `policy` (1 − its objective).
    pub fn budget(self, policy: &Policy) -> f64 {
        match self {
            Sli::Errors => policy.error_budget(),
            Sli::Latency => policy.latency_budget(),
        }
    }

    /// Its place in per-SLI arrays: errors 0, latency 1.
    pub fn index(self) -> usize {
        match self {
            Sli::Errors => 0,
            Sli::Latency => 1,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Sli::Errors => "errors",
            Sli::Latency => "latency",
        }
    }
}
