//! `[[guards.maintenance]]`: known maintenance windows, during which
//! automatic commands are held back (`docs/config.md#guards`,
//! `docs/guarantees.md#guards`).
//!
//! A window is absolute (`start`, `end`, RFC 3339), weekly (`weekly`: a
//! day, a time of day and a fixed offset from UTC), or both — the weekly
//! schedule then counts only between `start` and `end`. Times of day are
//! in UTC or a fixed offset: rollbackd carries no time-zone database, so
//! a window written for a zone with summer time moves by an hour twice a
//! year unless it is written twice.
//!
//! [`MaintenanceWindow::until`] says whether a window covers an instant,
//! and until when: the engine asks it at its own clock.

use std::fmt;

use serde::{Deserialize, Deserializer};

use super::{invalid, ConfigError};
use crate::time::Timestamp;

const NANOS_PER_MINUTE: i64 = 60 * 1_000_000_000;
const NANOS_PER_DAY: i64 = 24 * 60 * NANOS_PER_MINUTE;

/// One `[[guards.maintenance]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// In audit records and on the status page; default `maintenance-<N>`.
    #[serde(default)]
    pub name: String,
    /// The services it covers; empty: every service.
    #[serde(default)]
    pub services: Vec<String>,
    #[serde(default)]
    pub start: Option<Timestamp>,
    #[serde(default)]
    pub end: Option<Timestamp>,
    #[serde(default)]
    pub weekly: Vec<Weekly>,
    /// Why, for people.
    #[serde(default)]
    pub reason: String,
}

/// One weekly occurrence: `day`, from `start` to `end` (times of day in
/// `timezone`). An `end` not after `start` ends on the next day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weekly {
    pub day: Weekday,
    pub start: TimeOfDay,
    pub end: TimeOfDay,
    #[serde(default)]
    pub timezone: UtcOffset,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Weekday {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Weekday {
    /// Monday is 0.
    fn index(self) -> i64 {
        self as i64
    }
}

/// A time of day, `"HH:MM"` from `00:00` to `24:00`, in minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeOfDay(pub u16);

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_hhmm(&s)
            .filter(|&m| m <= 24 * 60)
            .map(TimeOfDay)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "invalid time of day {s:?}: expected \"HH:MM\", from \"00:00\" to \"24:00\""
                ))
            })
    }
}

/// `"HH:MM"` in minutes (not checked against a day's length).
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let two = |x: &str| -> Option<u16> {
        (x.len() == 2 && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse().ok())?
    };
    let (h, m) = (two(h)?, two(m)?);
    (m < 60).then_some(h * 60 + m)
}

/// A fixed offset from UTC, in minutes: `"UTC"`, `"Z"`, `"+02:00"`,
/// `"-05:30"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UtcOffset(pub i16);

impl<'de> Deserialize<'de> for UtcOffset {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_offset(&s).map(UtcOffset).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timezone {s:?}: expected \"UTC\" or a fixed offset such as \"+02:00\" (zone names are not supported)"
            ))
        })
    }
}

fn parse_offset(s: &str) -> Option<i16> {
    if s == "UTC" || s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let m = parse_hhmm(rest).filter(|&m| m <= 18 * 60)?;
    Some(sign * m as i16)
}

impl Weekly {
    /// When the occurrence covering `t` ends, if one does.
    fn until(&self, t: Timestamp) -> Option<Timestamp> {
        let offset = i64::from(self.timezone.0) * NANOS_PER_MINUTE;
        let local = t.0.checked_add(offset)?;
        let day = local.div_euclid(NANOS_PER_DAY);
        let since_midnight = local.rem_euclid(NANOS_PER_DAY);
        // 1970-01-01 was a Thursday.
        let weekday = (day + 3).rem_euclid(7);
        let start = i64::from(self.start.0) * NANOS_PER_MINUTE;
        let end = i64::from(self.end.0) * NANOS_PER_MINUTE;
        let midnight = t.0 - since_midnight;
        let today = weekday == self.day.index();
        if end > start {
            return (today && (start..end).contains(&since_midnight))
                .then_some(Timestamp(midnight + end));
        }
        // Past midnight: started today, or yesterday and not over yet.
        if today && since_midnight >= start {
            return Some(Timestamp(midnight + NANOS_PER_DAY + end));
        }
        let yesterday = (weekday - 1).rem_euclid(7) == self.day.index();
        (yesterday && since_midnight < end).then_some(Timestamp(midnight + end))
    }
}

impl MaintenanceWindow {
    /// Whether it covers `service`.
    pub fn covers(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }

    /// When the window covering `t` ends, if it covers `t`.
    pub fn until(&self, t: Timestamp) -> Option<Timestamp> {
        if self.start.is_some_and(|s| t < s) || self.end.is_some_and(|e| t >= e) {
            return None;
        }
        if self.weekly.is_empty() {
            return self.end;
        }
        let until = self.weekly.iter().filter_map(|w| w.until(t)).max()?;
        Some(self.end.map_or(until, |e| until.min(e)))
    }
}

/// `name: services, from start to end, weekly …`, for `check-config`.
impl fmt::Display for MaintenanceWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.name)?;
        if self.services.is_empty() {
            f.write_str("every service")?;
        } else {
            write!(f, "services {}", self.services.join(", "))?;
        }
        if let (Some(s), Some(e)) = (self.start, self.end) {
            write!(f, ", from {s} to {e}")?;
        }
        for w in &self.weekly {
            let hhmm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
            let tz = match w.timezone.0 {
                0 => "UTC".to_string(),
                m => format!(
                    "{}{}",
                    if m < 0 { '-' } else { '+' },
                    hhmm(m.unsigned_abs())
                ),
            };
            write!(
                f,
                ", weekly {:?} {}-{} {tz}",
                w.day,
                hhmm(w.start.0),
                hhmm(w.end.0)
            )?;
        }
        Ok(())
    }
}

/// Checks the `[[guards.maintenance]]` tables and names the unnamed ones.
pub(super) fn validate(
    windows: Vec<MaintenanceWindow>,
) -> Result<Vec<MaintenanceWindow>, ConfigError> {
    let mut out: Vec<MaintenanceWindow> = Vec::with_capacity(windows.len());
    for (i, mut w) in windows.into_iter().enumerate() {
        let key = |k: &str| format!("guards.maintenance[{i}].{k}");
        if w.name.is_empty() {
            w.name = format!("maintenance-{i}");
        }
        super::check_name(key("name"), &w.name, out.iter().map(|o| o.name.as_str()))?;
        if w.services.iter().any(|s| s.trim().is_empty()) {
            return Err(invalid(key("services"), "a service name is empty"));
        }
        match (w.start, w.end) {
            (Some(s), Some(e)) if e <= s => {
                return Err(invalid(key("end"), "must be after start"));
            }
            (Some(_), None) => return Err(invalid(key("end"), "set with start")),
            (None, Some(_)) => return Err(invalid(key("start"), "set with end")),
            (None, None) if w.weekly.is_empty() => {
                return Err(invalid(key("start"), "set start and end, or weekly"));
            }
            _ => {}
        }
        for (j, occurrence) in w.weekly.iter().enumerate() {
            let key = |k: &str| format!("guards.maintenance[{i}].weekly[{j}].{k}");
            if occurrence.start.0 >= 24 * 60 {
                return Err(invalid(key("start"), "must be before \"24:00\""));
            }
            if occurrence.start == occurrence.end {
                return Err(invalid(
                    key("end"),
                    "must differ from start (a whole day: \"00:00\" to \"24:00\")",
                ));
            }
        }
        out.push(w);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn weekly(day: Weekday, start: &str, end: &str, tz: &str) -> Weekly {
        Weekly {
            day,
            start: TimeOfDay(parse_hhmm(start).unwrap()),
            end: TimeOfDay(parse_hhmm(end).unwrap()),
            timezone: UtcOffset(parse_offset(tz).unwrap()),
        }
    }

    fn window(weekly: Vec<Weekly>) -> MaintenanceWindow {
        MaintenanceWindow {
            name: "w".into(),
            services: vec![],
            start: None,
            end: None,
            weekly,
            reason: String::new(),
        }
    }

    #[test]
    fn a_weekly_window_covers_its_day_and_hours() {
        // 2026-12-05 is a Saturday.
        let w = window(vec![weekly(Weekday::Sat, "02:00", "04:00", "UTC")]);
        assert_eq!(w.until(ts("2026-12-05T01:59:59Z")), None);
        assert_eq!(
            w.until(ts("2026-12-05T02:00:00Z")),
            Some(ts("2026-12-05T04:00:00Z"))
        );
        assert_eq!(
            w.until(ts("2026-12-05T03:59:59Z")),
            Some(ts("2026-12-05T04:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-05T04:00:00Z")), None);
        assert_eq!(w.until(ts("2026-12-06T02:30:00Z")), None);
        assert_eq!(
            w.until(ts("2026-12-12T02:30:00Z")),
            Some(ts("2026-12-12T04:00:00Z"))
        );
    }

    #[test]
    fn offsets_and_midnight() {
        // Saturday 02:00–04:00 at +02:00 is Saturday 00:00–02:00 UTC.
        let w = window(vec![weekly(Weekday::Sat, "02:00", "04:00", "+02:00")]);
        assert_eq!(
            w.until(ts("2026-12-05T00:30:00Z")),
            Some(ts("2026-12-05T02:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-05T02:30:00Z")), None);
        // Sunday 23:00 to Monday 01:00, across the week's end.
        let w = window(vec![weekly(Weekday::Sun, "23:00", "01:00", "UTC")]);
        assert_eq!(
            w.until(ts("2026-12-06T23:30:00Z")),
            Some(ts("2026-12-07T01:00:00Z"))
        );
        assert_eq!(
            w.until(ts("2026-12-07T00:59:00Z")),
            Some(ts("2026-12-07T01:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-07T01:00:00Z")), None);
        assert_eq!(w.until(ts("2026-12-06T00:30:00Z")), None);
        // A whole day.
        let w = window(vec![weekly(Weekday::Mon, "00:00", "24:00", "-05:00")]);
        assert_eq!(
            w.until(ts("2026-12-07T05:00:00Z")),
            Some(ts("2026-12-08T05:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-07T04:59:59Z")), None);
    }

    #[test]
    fn start_and_end_bound_a_weekly_schedule() {
        let mut w = window(vec![weekly(Weekday::Sat, "02:00", "04:00", "UTC")]);
        w.start = Some(ts("2026-12-01T00:00:00Z"));
        w.end = Some(ts("2026-12-05T03:00:00Z"));
        assert_eq!(
            w.until(ts("2026-12-05T02:30:00Z")),
            Some(ts("2026-12-05T03:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-12T02:30:00Z")), None);
        assert_eq!(w.until(ts("2026-11-28T02:30:00Z")), None);
        w.weekly.clear();
        assert_eq!(
            w.until(ts("2026-12-03T12:00:00Z")),
            Some(ts("2026-12-05T03:00:00Z"))
        );
        assert_eq!(w.until(ts("2026-12-05T03:00:00Z")), None);
    }

    #[test]
    fn times_and_offsets_are_read_strictly() {
        assert_eq!(parse_hhmm("02:30"), Some(150));
        assert_eq!(parse_hhmm("24:00"), Some(1440));
        for bad in ["2:30", "02:60", "0230", "02:3", "+1:00", ""] {
            assert_eq!(parse_hhmm(bad), None, "{bad}");
        }
        assert_eq!(parse_offset("UTC"), Some(0));
        assert_eq!(parse_offset("-05:30"), Some(-330));
        for bad in ["Europe/Paris", "+19:00", "02:00", "utc"] {
            assert_eq!(parse_offset(bad), None, "{bad}");
        }
    }
}
