//! `rollbackd execute`: the reference executor.
//!
//! Consumes `rollback-commands` in its own consumer group and, for
//! `action = "rollback"` only, runs the argv template configured for the
//! command's strategy (or `default`; see [`template`]), or commits the
//! rollback to a Git repository when the strategy is a Git one ([`git`]).
//! Each run has a timeout ([`process`]); its outcome goes to `rollback-results`
//! (`docs/formats.md#executor-results`). The results topic is the record of what ran: it is
//! read whole at start and read to its end again before every run (so a
//! result another executor wrote counts too), and a command id found there
//! is never executed again. `approval_required` commands are logged and
//! left alone: a person decides. SIGTERM or SIGINT lets the command being
//! run finish and its result be published, then the executor exits.
//!
//! A dry run ([`dry_run`]) changes nothing anywhere: it reads the commands
//! from where the executor's group stands (without joining the group or
//! committing), prints what would happen to each, and exits at the end of
//! the topic.

pub mod git;
pub mod process;
pub mod template;

use std::collections::HashSet;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde_json::json;
use tracing::{error, info, warn};

use crate::config::{redact_userinfo, Config, KafkaConfig};
use crate::kafka::consumer::ControlReader;
use crate::kafka::producer::{OutRecord, Producer, Until, TOOL_ACK_WITHIN};
use crate::kafka::{client_config, Error, InRecord};
use crate::model::{Action, Command, ExecutorResult};
use crate::time::Timestamp;

/// What the executor does with one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Runs this argv.
    Run(Vec<String>),
    /// Commits this change.
    Git(Box<git::Change>),
    /// Publishes a `rejected` result, with this reason.
    Reject(String),
    /// Leaves it alone, for this reason.
    Skip(&'static str),
}

/// The plan for `cmd`, given the command ids that already have a result.
pub fn plan(config: &Config, done: &HashSet<String>, cmd: &Command) -> Plan {
    if done.contains(&cmd.command_id) {
        Plan::Skip("already executed: a result is on record")
    } else if cmd.action == Action::ApprovalRequired {
        Plan::Skip("approval_required: left for a person")
    } else {
        let e = &config.executor;
        let strategy = cmd.strategy.as_deref().unwrap_or("default");
        // The strategy's own entry first, a template's or a Git one's (the
        // config allows one of them), then `default` the same way.
        let git = match e.git.get_key_value(strategy) {
            Some(found) => Some(found),
            None if e.templates.contains_key(strategy) => None,
            None => e.git.get_key_value("default"),
        };
        let planned = match git {
            Some((name, g)) => git::change(name, g, cmd).map(|c| Plan::Git(Box::new(c))),
            None => template::argv(config, cmd).map(Plan::Run),
        };
        planned.unwrap_or_else(Plan::Reject)
    }
}

/// The command ids with a result on the results topic, read whole, and the
/// reader (which can then follow the topic).
fn results_so_far(k: &KafkaConfig, topic: &str) -> Result<(ControlReader, HashSet<String>), Error> {
    let mut done = HashSet::new();
    let mut reader = ControlReader::new(k)?;
    reader.read_whole(topic, |rec: InRecord| {
        if let Ok(r) = crate::ingest::result::decode(&rec.payload) {
            done.insert(r.command_id);
        }
    })?;
    Ok((reader, done))
}

fn kafka(config: &Config) -> Result<&KafkaConfig, Error> {
    let k = config.kafka.as_ref().ok_or(Error::NoKafka)?;
    crate::kafka::check_reachable(k)?;
    Ok(k)
}

/// How long one command may take.
fn timeout(config: &Config) -> Duration {
    Duration::from_nanos(config.executor.timeout.nanos().max(0) as u64)
}

/// What the executor would do with `cmd`, as one JSON line: a Git
/// strategy's change is made in a clone of its own up to the commit, to
/// show its diff.
fn dry_run_line(config: &Config, done: &HashSet<String>, cmd: &Command) -> serde_json::Value {
    let mut line = json!({"command_id": cmd.command_id, "deploy_id": cmd.deploy_id});
    let (k, v) = match plan(config, done, cmd) {
        Plan::Run(argv) => ("would_run", json!(argv)),
        Plan::Reject(why) => ("would_reject", json!(why)),
        Plan::Skip(why) => ("would_skip", json!(why)),
        Plan::Git(c) => {
            let dir = git::clone_dir(&config.executor, &c.strategy, true);
            match git::apply(&c, cmd, &dir, timeout(config), true) {
                Ok(o) => match &o {
                    git::Outcome::WouldCommit { head, diff } => (
                        "would_commit",
                        json!({"repository": redact_userinfo(&c.config.repository),
                            "branch": c.config.branch, "parent": head, "file": c.file,
                            "message": o.message(&c), "diff": diff}),
                    ),
                    _ => ("would_succeed", json!(o.message(&c))),
                },
                Err(why) => ("would_fail", json!(why)),
            }
        }
    };
    line[k] = v;
    line
}

/// Prints, as JSON lines, what the executor would do with every command
/// from its group's committed position (the beginning if it has none) to
/// the end of the commands topic, then returns. Joins no group, commits
/// nothing, runs and publishes nothing.
pub fn dry_run(config: &Config, out: &mut impl Write) -> Result<(), Error> {
    let k = kafka(config)?;
    let t = &config.topics;
    let (_, done) = results_so_far(k, &t.results)?;
    let read = crate::kafka::tools::read_from_committed(
        k,
        &config.executor.group_id,
        &t.commands,
        |rec| {
            let line = match serde_json::from_slice::<Command>(&rec.payload) {
                Err(e) => {
                    json!({"partition": rec.partition, "offset": rec.offset, "would_skip": format!("not a command: {e}")})
                }
                Ok(cmd) => dry_run_line(config, &done, &cmd),
            };
            writeln!(out, "{line}")?;
            out.flush()
        },
    )?;
    eprintln!(
        "dry run: {read} command(s) from group {}'s position to the end of {}; nothing was run, published or committed",
        config.executor.group_id, t.commands
    );
    Ok(())
}

fn publish_result(
    rt: &tokio::runtime::Runtime,
    producer: &Producer,
    brokers: &str,
    topic: &str,
    key: &str,
    r: &ExecutorResult,
) -> Result<(), Error> {
    let record = OutRecord {
        topic: topic.to_string(),
        key: Some(key.as_bytes().to_vec()),
        payload: serde_json::to_vec(r)?,
        ..OutRecord::default()
    };
    let until = Until::Deadline(Instant::now() + TOOL_ACK_WITHIN);
    rt.block_on(producer.deliver(&[record], until))
        .map(|_| ())
        .map_err(|error| Error::NotAcknowledged {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            error: error.to_string(),
        })
}

/// What `cmd` comes to: run (its outcome), rejected, or `None` when it is
/// skipped (already executed, not a rollback, awaiting approval). `done`:
/// the command ids with a result on record — the results topic here, the
/// audit file for `run` without Kafka (`crate::runtime::local_exec`).
pub fn run_command(
    config: &Config,
    done: &HashSet<String>,
    cmd: &Command,
) -> Option<ExecutorResult> {
    let (status, message) = match plan(config, done, cmd) {
        Plan::Skip(why) => {
            info!(command_id = %cmd.command_id, deploy_id = %cmd.deploy_id, why, "skipped");
            return None;
        }
        Plan::Reject(why) => (crate::model::ResultStatus::Rejected, why),
        Plan::Run(argv) => {
            info!(command_id = %cmd.command_id, argv = ?argv, "executing");
            process::run(&argv, timeout(config))
        }
        Plan::Git(c) => {
            info!(command_id = %cmd.command_id, strategy = %c.strategy, file = %c.file, "executing as a commit");
            let dir = git::clone_dir(&config.executor, &c.strategy, false);
            match git::apply(&c, cmd, &dir, timeout(config), false) {
                Ok(o) => (crate::model::ResultStatus::Succeeded, o.message(&c)),
                Err(why) => (crate::model::ResultStatus::Failed, why),
            }
        }
    };
    Some(ExecutorResult {
        command_id: cmd.command_id.clone(),
        deploy_id: cmd.deploy_id.clone(),
        status,
        at: Timestamp::now_wall(),
        executor: config.executor.name.clone(),
        message,
    })
}

/// Set once SIGTERM or SIGINT arrives: the command in hand is finished,
/// then the executor stops.
fn stop_on_signal(rt: &tokio::runtime::Runtime) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    rt.spawn(async move {
        crate::shutdown::wait_for_signal().await;
        info!("signal received: finishing the command in hand, then stopping");
        flag.store(true, Ordering::Release);
    });
    stop
}

/// The executor's member of consumer group `group_id` on `commands`:
/// offsets stored by hand once a command's result is published, committed
/// automatically.
fn commands_consumer(
    k: &KafkaConfig,
    group_id: &str,
    commands: &str,
) -> Result<BaseConsumer, Error> {
    let consumer: BaseConsumer = client_config(
        k,
        &[
            ("group.id", group_id),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "6000"),
        ],
    )
    .create()?;
    consumer.subscribe(&[commands])?;
    Ok(consumer)
}

/// Runs the executor until interrupted.
pub fn execute(config: &Config) -> Result<(), Error> {
    let k = kafka(config)?;
    let t = &config.topics;
    // What already ran: the results topic, read whole, then followed.
    let (mut reader, mut done) = results_so_far(k, &t.results)?;
    reader.follow(&[&t.results])?;
    let consumer = commands_consumer(k, &config.executor.group_id, &t.commands)?;
    info!(
        already_executed = done.len(),
        group = %config.executor.group_id,
        topic = %t.commands,
        "executor starting; waiting for partition assignment from the group (a few seconds on some brokers)"
    );
    let producer = Producer::standalone(
        "results",
        client_config(k, &[("enable.idempotence", "true"), ("acks", "all")]),
    )?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = stop_on_signal(&rt);
    let mut assigned = false;
    while !stop.load(Ordering::Acquire) {
        let polled = consumer.poll(Duration::from_millis(500));
        if !assigned && consumer.assignment().is_ok_and(|a| a.count() > 0) {
            assigned = true;
            info!(group = %config.executor.group_id, "commands partitions assigned; executing");
        }
        let m = match polled {
            None => continue,
            Some(Err(e)) => {
                warn!(error = %e, "executor consumer error");
                continue;
            }
            Some(Ok(m)) => m,
        };
        let rec = InRecord::from_message(&m);
        drop(m);
        let cmd: Command = match serde_json::from_slice(&rec.payload) {
            Ok(c) => c,
            Err(e) => {
                warn!(offset = rec.offset, error = %e, "not a command; skipped");
                let _ = consumer.store_offset(&rec.topic, rec.partition, rec.offset);
                continue;
            }
        };
        // Results written since, by this executor or another one, up to
        // the topic's end as of now.
        while let Err(e) = reader.read_to_end(&t.results, |rec| {
            if let Ok(r) = crate::ingest::result::decode(&rec.payload) {
                done.insert(r.command_id);
            }
        }) {
            warn!(error = %e, "reading the results topic failed; the command waits");
            std::thread::sleep(Duration::from_secs(1));
        }
        let Some(result) = run_command(config, &done, &cmd) else {
            let _ = consumer.store_offset(&rec.topic, rec.partition, rec.offset);
            continue;
        };
        // Retried until acknowledged: the result is the record that this
        // command ran.
        while let Err(e) = publish_result(
            &rt,
            &producer,
            &k.brokers,
            &t.results,
            &cmd.service,
            &result,
        ) {
            error!(command_id = %cmd.command_id, error = %e, "publishing the result failed; retrying");
            std::thread::sleep(Duration::from_secs(1));
        }
        info!(command_id = %cmd.command_id, status = ?result.status, "result published");
        done.insert(cmd.command_id.clone());
        let _ = consumer.store_offset(&rec.topic, rec.partition, rec.offset);
    }
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "committing the commands offsets at exit failed"),
    }
    info!("executor stopped");
    Ok(())
}
