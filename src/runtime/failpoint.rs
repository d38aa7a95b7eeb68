//! Crash points, for tests of recovery: with `ROLLBACKD_FAILPOINT=<name>`
//! set, the process aborts — as `kill -9` would stop it, nothing flushed
//! or committed — the first time it reaches the named point.
//!
//! | name | where |
//! |---|---|
//! | `intake-after-send` | stage 1: evidence acknowledged by the broker, the raw offsets it covers not yet committed |

use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "ROLLBACKD_FAILPOINT";

/// Aborts the process if `name` is the configured crash point.
pub fn hit(name: &str) {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    let point = POINT.get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()));
    if point.as_deref() == Some(name) {
        eprintln!("{ENV}={name}: aborting here");
        std::process::abort();
    }
}
