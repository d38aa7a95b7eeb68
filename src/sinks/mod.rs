//! Where the engine's outputs go. Every adapter hands [`Outgoing`] records
//! to a [`Publisher`], a bounded queue in front of one sink task:
//!
//! - [`crate::kafka::producer`]: commands, audit records and dead letters to
//!   their topics (`run` with Kafka);
//! - [`stdout`]: commands as JSON lines on stdout (`run` without Kafka);
//! - [`audit_file`]: audit records appended to `audit.path`, besides either.

pub mod audit_file;
pub mod stdout;

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::model::{AuditRecord, Command};

/// A command unacknowledged for this long makes the agent not ready.
pub const STUCK_AFTER: Duration = Duration::from_secs(3);

/// Records waiting for the publisher. Bounded: when it fills, the engine
/// thread that produced the outputs blocks, which stops consumption — back
/// pressure rather than unbounded memory.
pub const QUEUE: usize = 4096;

/// What the agent publishes.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// A command to emit (see [`CommandOut`]).
    Command(Box<CommandOut>),
    Audit(AuditRecord),
    DeadLetter {
        source_topic: String,
        partition: i32,
        offset: i64,
        error: String,
        key: Option<Vec<u8>>,
        payload: Vec<u8>,
    },
}

/// A command, when the record that decided it was consumed (for the
/// decision latency) if a record did, and the audit records of its emission
/// (`command`, and `breaker` if it opened the breaker), published only if
/// this instance emits the command.
#[derive(Debug, Clone)]
pub struct CommandOut {
    pub command: Command,
    pub consumed_at: Option<Instant>,
    pub audits: Vec<AuditRecord>,
}

/// Shared producer state, read by readiness and metrics.
#[derive(Debug, Default)]
pub struct PublisherState {
    /// Commands handed to the producer and not yet acknowledged, by id,
    /// with when they were first handed over.
    pub pending_commands: DashMap<String, Instant>,
    /// Command ids read back from the commands topic (by the control
    /// consumer): the record of what was emitted.
    pub on_topic: DashMap<String, ()>,
    /// Per control topic and partition, the next offset the control
    /// consumer will apply: how far `on_topic` (the commands topic) and the
    /// engine's view of every control topic are complete.
    pub control_next: DashMap<(String, i32), i64>,
    pub commands_acked: AtomicU64,
    pub delivery_failures: AtomicU64,
    pub audit_failures: AtomicU64,
    /// The lowest partition of the spans topic this instance holds (-1:
    /// none), which sets its [`claim_delay`]; 0 without Kafka.
    pub claim_slot: Arc<AtomicI64>,
    /// Called for every command this instance emitted (not for one found on
    /// the topic already), with its audit record.
    pub on_emitted: std::sync::OnceLock<EmitHook>,
}

/// See [`PublisherState::on_emitted`].
#[derive(Clone)]
pub struct EmitHook(pub Arc<EmitFn>);

/// What [`EmitHook`] calls.
pub type EmitFn = dyn Fn(&Command, &[AuditRecord]) + Send + Sync;

impl std::fmt::Debug for EmitHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EmitHook")
    }
}

impl PublisherState {
    pub fn emitted(&self, cmd: &Command, audits: &[AuditRecord]) {
        if let Some(h) = self.on_emitted.get() {
            (h.0)(cmd, audits);
        }
    }

    /// Whether every command was acknowledged (or is young enough).
    pub fn can_emit(&self) -> bool {
        self.pending_commands
            .iter()
            .all(|e| e.value().elapsed() < STUCK_AFTER)
    }
}

/// A cheap, cloneable handle to the publisher task.
#[derive(Clone)]
pub struct Publisher {
    pub tx: mpsc::Sender<Outgoing>,
    pub state: Arc<PublisherState>,
}

impl Publisher {
    /// Hands a record over from a non-async thread; blocks while the queue
    /// is full. Returns false once the publisher has shut down.
    pub fn send_blocking(&self, o: Outgoing) -> bool {
        if let Outgoing::Command(c) = &o {
            self.state
                .pending_commands
                .entry(c.command.command_id.clone())
                .or_insert_with(Instant::now);
        }
        self.tx.blocking_send(o).is_ok()
    }
}
