//! Event-time slots: the bucket widths of windows, the finest slot that
//! lands in one bucket of each, how many pair slots cover the lateness,
//! and how late evidence is.

use super::BUCKETS;
use crate::time::{Duration, Timestamp};

/// The most pair slots a series keeps per ring, whatever the policy: with
/// the finest slot of a second, over an hour of lateness (and ~160 KiB a
/// series). A longer `allowed_lateness` on such fine slots only loses the
/// late data of slots already overwritten; nothing is misread (a bucket
/// knows its epoch).
pub const MAX_PAIR_SLOTS: usize = 4096;

/// How many pair slots of `width` (ns) cover `allowed_lateness` past a
/// slot's end, plus the wait for the evaluation that reads it last (one
/// `evaluation_interval`) and a margin of three slots.
pub fn pair_slots_kept(
    allowed_lateness: Duration,
    evaluation_interval: Duration,
    width: i64,
) -> usize {
    let width = width.max(1);
    let span = allowed_lateness
        .nanos()
        .max(0)
        .saturating_add(evaluation_interval.nanos().max(0));
    let slots = span.div_euclid(width).saturating_add(1 + 3);
    usize::try_from(slots)
        .unwrap_or(MAX_PAIR_SLOTS)
        .clamp(4, MAX_PAIR_SLOTS)
}

/// The bucket width (ns) of a window of `length`.
pub fn bucket_width(length: Duration) -> i64 {
    let len = length.nanos().max(BUCKETS as i64);
    (len + BUCKETS as i64 - 1) / BUCKETS as i64
}

/// The finest time slot (ns) that lands in one bucket of every window of
/// `lengths`: the greatest common divisor of their bucket widths (one
/// second for the default 1m/5m/30m windows). Counts made at a slot's
/// start fill every window exactly as the requests inside it would have.
pub fn slot(lengths: &[Duration]) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    lengths.iter().map(|&l| bucket_width(l)).fold(0, gcd).max(1)
}

/// How late evidence of event time `t` is at `now` when it is later than
/// `allowed_lateness`: measured from the end of its `slot` (ns; see
/// [`slot`]) — the event time evidence carries is its slot's start — so
/// `None` until `allowed_lateness` has passed since the slot ended.
pub fn past_lateness(
    t: Timestamp,
    slot: i64,
    allowed_lateness: Duration,
    now: Timestamp,
) -> Option<Duration> {
    let slot = slot.max(1);
    let end = Timestamp(
        t.nanos()
            .div_euclid(slot)
            .saturating_add(1)
            .saturating_mul(slot),
    );
    let late_by = now.since(end);
    (late_by >= allowed_lateness.max(Duration::ZERO)).then_some(late_by)
}
