//! `run` without Kafka, with `[executor]` templates or Git strategies
//! ([`crate::config::Config::executes_locally`]): the commands it emits are
//! executed in this process as well as printed.
//!
//! The stdout sink offers each command printed to a bounded queue; one
//! thread takes them one at a time, off the engine's lock, and runs each
//! as `rollbackd execute` does ([`crate::executor::run_command`]: the same
//! templates, the same Git strategies, the same timeout). Its result is
//! applied to the engine like one read from the results topic: audited,
//! and a successful rollback's verification starts.
//!
//! The audit file (`audit.path`) is the record of what ran: the command
//! ids with a `result` record there are read at start and never executed
//! again, nor is a command this process already ran. As with the
//! reference executor, a command cut off by a crash before its result was
//! recorded may run again if it is emitted again.

use std::collections::HashSet;
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::model::{Command, ExecutorResult};

/// How many commands may wait for the executor: a rollback of as many
/// deploys at once.
const QUEUE: usize = 1024;

/// Where the stdout sink offers the commands it printed.
pub struct Queue(SyncSender<Command>);

impl Queue {
    /// Hands `cmd` to the executor without waiting: a full queue or a
    /// stopped executor leaves it unexecuted, and says so.
    pub fn offer(&self, cmd: &Command) {
        let why = match self.0.try_send(cmd.clone()) {
            Ok(()) => return,
            Err(TrySendError::Full(_)) => "the executor's queue is full",
            Err(TrySendError::Disconnected(_)) => "the executor has stopped",
        };
        error!(command_id = %cmd.command_id, deploy_id = %cmd.deploy_id, why, "command printed but not executed here");
    }
}

/// The queue and its other end, for [`start`].
pub fn queue() -> (Queue, Receiver<Command>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
    (Queue(tx), rx)
}

/// Starts the executor's thread: it runs the commands from `commands`
/// that have no result in the audit file, hands each result to `feed`
/// (which applies it to the engine), and stops once `cancel` is
/// cancelled, after the command in hand.
pub fn start(
    config: Arc<Config>,
    commands: Receiver<Command>,
    feed: impl Fn(ExecutorResult) + Send + 'static,
    cancel: CancellationToken,
) -> std::io::Result<JoinHandle<()>> {
    let mut done = crate::sinks::audit_file::results_in(&config.audit.path)?;
    info!(
        already_executed = done.len(),
        audit = %config.audit.path,
        "executing commands here (executor.templates or executor.git without [kafka])"
    );
    std::thread::Builder::new()
        .name("rollbackd-executor".into())
        .spawn(move || {
            while !cancel.is_cancelled() {
                match commands.recv_timeout(Duration::from_millis(200)) {
                    Ok(cmd) => execute(&config, &mut done, &cmd, &feed),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
            let left = commands.try_iter().count();
            if left > 0 {
                warn!(
                    commands = left,
                    "stopping: commands printed but not executed here"
                );
            }
        })
}

/// Runs `cmd` unless it already ran, and feeds its result back.
fn execute(
    config: &Config,
    done: &mut HashSet<String>,
    cmd: &Command,
    feed: &impl Fn(ExecutorResult),
) {
    if let Some(result) = crate::executor::run_command(config, done, cmd) {
        let status = result.status;
        done.insert(cmd.command_id.clone());
        feed(result);
        info!(command_id = %cmd.command_id, status = ?status, "result recorded");
    }
}
