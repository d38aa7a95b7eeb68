//! Fault points, for tests of recovery: with `ROLLBACKD_FAILPOINT=<name>`
//! set, the named fault happens the first time the process reaches its
//! point — a crash point aborts the process, as `kill -9` would stop it,
//! nothing flushed or committed.
//!
//! | name | where | what |
//! |---|---|---|
//! | `intake-after-send` | stage 1: evidence acknowledged by the broker, the raw offsets it covers not yet committed | abort |
//! | `evidence-fatal` | stage 1: the first evidence batch, once acknowledged | the evidence producer's client dies, as after a fatal librdkafka error: every send on it fails as fatal, and the batch is sent again |
//! | `owner-fatal` | stage 2: a transaction with a command in it, its records sent, not committed | the owner's producer client dies, as after a fatal librdkafka error: a new client (`init_transactions`) publishes the batch again |
//! | `http-partial` | an HTTP request with evidence for two keys or more | the first key's evidence is sent, the others not, and the request answered 503 |

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// The environment variable naming the crash point.
pub const ENV: &str = "ROLLBACKD_FAILPOINT";

fn point() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT
        .get_or_init(|| std::env::var(ENV).ok().filter(|v| !v.is_empty()))
        .as_deref()
}

/// Aborts the process if `name` is the configured crash point.
pub fn hit(name: &str) {
    if point() == Some(name) {
        eprintln!("{ENV}={name}: aborting here");
        std::process::abort();
    }
}

/// Whether the fault `name` is to happen now: true the first time it is
/// asked for when configured, never again.
pub fn once(name: &str) -> bool {
    static FIRED: AtomicBool = AtomicBool::new(false);
    point() == Some(name) && !FIRED.swap(true, Ordering::AcqRel)
}
