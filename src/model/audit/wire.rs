//! Serde helpers the layouts of audit details share.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Duration;

/// An optional duration as seconds, `f64` or `null`: the `…_seconds` keys.
/// Read back to a nanosecond count that gives the same seconds, so a value
/// rollbackd wrote is written again with the same digits.
pub(super) mod seconds {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        d.map(Duration::as_secs_f64).serialize(s)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.map(from_secs))
    }

    /// The duration of `secs` seconds. Past about a day an `f64` of
    /// seconds is coarser than a nanosecond and `secs × 10⁹` may land a
    /// nanosecond off the count that was written: the neighbour that gives
    /// `secs` back is taken.
    fn from_secs(secs: f64) -> Duration {
        let near = (secs * 1e9).round() as i64;
        [near, near - 1, near + 1, near - 2, near + 2]
            .into_iter()
            .map(Duration)
            .find(|d| d.as_secs_f64() == secs)
            .unwrap_or(Duration(near))
    }
}

/// A value written with the keys of its objects sorted, at every depth, as
/// a detail is — for a value whose own layout is not (a command, inside a
/// dry run's suppression). It goes through `serde_json::Value`, whose
/// objects keep their keys sorted (the crate is built without
/// `preserve_order`; the golden tests fail if that changes).
pub(super) fn sorted<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    serde_json::to_value(v)
        .map_err(serde::ser::Error::custom)?
        .serialize(s)
}

/// `v`, or the error that `field` is missing.
pub(super) fn need<T, E: serde::de::Error>(v: Option<T>, field: &'static str) -> Result<T, E> {
    v.ok_or_else(|| E::missing_field(field))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Any duration written as seconds reads back as one that is
        /// written with the same digits, however long.
        #[test]
        fn seconds_keep_their_digits(nanos in 0i64..i64::MAX / 2) {
            let secs = Duration(nanos).as_secs_f64();
            let json = serde_json::to_string(&secs).unwrap();
            let back = seconds::deserialize(&mut serde_json::Deserializer::from_str(&json)).unwrap();
            prop_assert_eq!(back.map(Duration::as_secs_f64), Some(secs));
        }
    }
}
