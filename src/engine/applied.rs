//! What the owner of a key has applied already, so evidence that reaches
//! it twice counts once:
//!
//! - per raw Kafka (topic, partition), the last raw offset whose evidence
//!   is applied — stage 1 sends a batch again after a crash or a fatal
//!   client error;
//! - the HTTP requests applied in the last [`REQUESTS_KEPT_FOR`] (at most
//!   [`MAX_REQUESTS`] per key) — an OTLP exporter sends a request again
//!   after a 503, and a 503 can come after some of the request's keys'
//!   evidence was sent.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::model::evidence::{RawOffset, RequestId};
use crate::time::{Duration, Timestamp};

/// How long an HTTP request is remembered: longer than an OTLP exporter
/// keeps sending one again (the Collector's `retry_on_failure` gives up
/// after 5 minutes by default).
pub const REQUESTS_KEPT_FOR: Duration = Duration::from_secs(600);

/// At most this many HTTP requests are remembered per key, the oldest
/// forgotten first.
pub const MAX_REQUESTS: usize = 10_000;

#[derive(Debug, Default)]
pub struct Applied {
    /// Per raw topic, per partition: the last offset applied.
    raw: HashMap<String, HashMap<i32, i64>>,
    requests: HashSet<RequestId>,
    /// When each remembered request was applied, oldest first.
    order: VecDeque<(Timestamp, RequestId)>,
}

impl Applied {
    /// Whether an item from `raw` is not applied yet.
    pub fn fresh(&self, raw: Option<&RawOffset>) -> bool {
        raw.is_none_or(|r| {
            self.raw
                .get(r.topic.as_str())
                .and_then(|p| p.get(&r.partition))
                .is_none_or(|&done| r.offset > done)
        })
    }

    /// The last raw offset of (`topic`, `partition`) applied, if any.
    pub fn last(&self, topic: &str, partition: i32) -> Option<i64> {
        self.raw.get(topic)?.get(&partition).copied()
    }

    /// Raw records up to `last` of (`topic`, `partition`) are applied.
    pub fn raw_applied(&mut self, topic: &str, partition: i32, last: i64) {
        let partitions = match self.raw.get_mut(topic) {
            Some(p) => p,
            None => self.raw.entry(topic.to_string()).or_default(),
        };
        let done = partitions.entry(partition).or_insert(last);
        *done = (*done).max(last);
    }

    /// Takes the HTTP request `id` at `now`: false when it was applied
    /// already.
    pub fn request(&mut self, id: RequestId, now: Timestamp) -> bool {
        while let Some(&(at, old)) = self.order.front() {
            if self.order.len() < MAX_REQUESTS && at.saturating_add(REQUESTS_KEPT_FOR) > now {
                break;
            }
            self.order.pop_front();
            self.requests.remove(&old);
        }
        if !self.requests.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }

    pub fn is_empty(&self) -> bool {
        self.raw.is_empty() && self.requests.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_counts_once_while_it_is_remembered() {
        let mut a = Applied::default();
        let t = Timestamp(1_000_000_000_000);
        assert!(a.request(RequestId(7), t));
        assert!(!a.request(RequestId(7), t.saturating_add(Duration::from_secs(300))));
        assert!(a.request(RequestId(8), t));
        // Forgotten once its time is up.
        assert!(a.request(RequestId(7), t.saturating_add(REQUESTS_KEPT_FOR)));
    }

    #[test]
    fn at_most_max_requests_are_remembered() {
        let mut a = Applied::default();
        let t = Timestamp(1);
        for i in 0..=MAX_REQUESTS as u64 {
            assert!(a.request(RequestId(i), t));
        }
        assert_eq!(a.requests.len(), MAX_REQUESTS);
        assert!(a.request(RequestId(0), t), "the oldest is forgotten first");
    }

    #[test]
    fn raw_offsets_up_to_the_last_applied_are_not_fresh() {
        let mut a = Applied::default();
        let raw = |offset| RawOffset {
            topic: "otlp_spans".into(),
            partition: 1,
            offset,
        };
        assert!(a.fresh(Some(&raw(5))));
        a.raw_applied("otlp_spans", 1, 5);
        a.raw_applied("otlp_spans", 1, 3);
        assert!(!a.fresh(Some(&raw(5))));
        assert!(a.fresh(Some(&raw(6))));
        assert!(a.fresh(None));
        assert!(!a.is_empty());
    }
}
