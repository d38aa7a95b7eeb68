//! `rollbackd execute`: the reference executor.
//!
//! Consumes `rollback-commands` in its own consumer group and, for
//! `action = "rollback"` only, runs the argv template configured for the
//! command's strategy (or `default`). Placeholders are whole arguments and
//! the program runs without a shell, so nothing in a command can inject
//! options or shell syntax; values that are empty, start with `-` or hold
//! control characters are refused. Each run has a timeout; its outcome goes
//! to `rollback-results` (CONTRACT §1.4). The results topic is the record
//! of what ran: it is read whole at start and followed while running (so a
//! result another executor wrote counts too), and a command id found there
//! is never executed again. `approval_required` commands are logged and
//! left alone: a person decides. SIGTERM or SIGINT lets the command being
//! run finish and its result be published, then the executor exits.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;
use tracing::{error, info, warn};

use super::consumer::ControlReader;
use super::{client_config, InRecord};
use crate::config::{Config, KafkaConfig};
use crate::model::{Action, Command, ExecutorResult, ResultStatus};
use crate::time::Timestamp;

/// The argv for `cmd`, or why it cannot run.
pub fn argv(config: &Config, cmd: &Command) -> Result<Vec<String>, String> {
    let t = &config.executor.templates;
    let strategy = cmd.strategy.as_deref().unwrap_or("default");
    let template = t
        .get(strategy)
        .or_else(|| t.get("default"))
        .ok_or_else(|| format!("no executor template for strategy {strategy:?} and no default"))?;
    template
        .iter()
        .map(|a| {
            let value = match a.as_str() {
                "{service}" => Some(cmd.service.as_str()),
                "{environment}" => Some(cmd.environment.as_str()),
                "{to_version}" => Some(cmd.to_version.as_deref().unwrap_or("")),
                "{deploy_id}" => Some(cmd.deploy_id.as_str()),
                _ => None,
            };
            match value {
                None => Ok(a.clone()),
                Some("") => Err(format!("{a} is empty in this command")),
                Some(v) if v.starts_with('-') => Err(format!("{a} = {v:?} starts with '-'")),
                Some(v) if v.chars().any(char::is_control) => {
                    Err(format!("{a} holds control characters"))
                }
                Some(v) => Ok(v.to_string()),
            }
        })
        .collect()
}

/// Runs `argv` with `timeout`: the status and a short message.
fn run(argv: &[String], timeout: Duration) -> (ResultStatus, String) {
    let mut child = match Process::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return (
                ResultStatus::Failed,
                format!("cannot start {}: {e}", argv[0]),
            )
        }
    };
    // Drained while the program runs, so a chatty one cannot fill the pipe
    // and stall; the message keeps its last 2000 bytes.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2000 {
                    kept.drain(..kept.len() - 2000);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    });
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let stderr = stderr
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                return if status.success() {
                    (ResultStatus::Succeeded, format!("{} exited 0", argv[0]))
                } else {
                    (
                        ResultStatus::Failed,
                        format!("{} exited {}: {}", argv[0], status, stderr.trim()),
                    )
                };
            }
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return (ResultStatus::Failed, format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => {
                return (
                    ResultStatus::Failed,
                    format!("waiting for {}: {e}", argv[0]),
                )
            }
        }
    }
}

fn publish_result(
    rt: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    r: &ExecutorResult,
) -> anyhow::Result<()> {
    let payload = serde_json::to_vec(r)?;
    rt.block_on(producer.send(
        FutureRecord::to(topic).key(key).payload(&payload),
        Timeout::After(Duration::from_secs(10)),
    ))
    .map(|_| ())
    .map_err(|(e, _)| anyhow::anyhow!("result not acknowledged: {e}"))
}

/// Runs the executor until interrupted.
pub fn execute(config: &Config, dry_run: bool, out: &mut impl Write) -> anyhow::Result<()> {
    let k: &KafkaConfig = config
        .kafka
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("no [kafka] table in the config"))?;
    let t = &config.topics;
    // What already ran: the results topic, read whole, then followed.
    let mut done: HashSet<String> = HashSet::new();
    let mut reader = ControlReader::new(k)?;
    reader.read_whole(&t.results, |rec: InRecord| {
        if let Ok(r) = crate::ingest::result::decode(&rec.payload) {
            done.insert(r.command_id);
        }
    })?;
    reader.follow(&[&t.results])?;
    info!(already_executed = done.len(), dry_run, "executor starting");
    let consumer: BaseConsumer = client_config(
        k,
        &[
            ("group.id", config.executor.group_id.as_str()),
            ("enable.auto.commit", "true"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "6000"),
        ],
    )
    .create()?;
    consumer.subscribe(&[&t.commands])?;
    let producer: FutureProducer =
        client_config(k, &[("enable.idempotence", "true"), ("acks", "all")]).create()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        rt.spawn(async move {
            crate::app::wait_for_signal().await;
            info!("signal received: finishing the command in hand, then stopping");
            stop.store(true, Ordering::Release);
        });
    }
    while !stop.load(Ordering::Acquire) {
        let m = match consumer.poll(Duration::from_millis(500)) {
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
        // Results written since (by this executor or another one).
        while let Some(Ok(rec)) = reader.poll(Duration::ZERO) {
            if let Ok(r) = crate::ingest::result::decode(&rec.payload) {
                done.insert(r.command_id);
            }
        }
        if done.contains(&cmd.command_id) {
            info!(command_id = %cmd.command_id, "already executed; skipped");
        } else if cmd.action == Action::ApprovalRequired {
            warn!(command_id = %cmd.command_id, deploy_id = %cmd.deploy_id, "approval required: left for a person");
        } else {
            let (status, message, argv) = match argv(config, &cmd) {
                Ok(argv) if dry_run => (None, String::new(), argv),
                Ok(argv) => {
                    info!(command_id = %cmd.command_id, argv = ?argv, "executing");
                    let (s, msg) = run(
                        &argv,
                        Duration::from_nanos(config.executor.timeout.nanos().max(0) as u64),
                    );
                    (Some(s), msg, argv)
                }
                Err(why) => (Some(ResultStatus::Rejected), why, Vec::new()),
            };
            match status {
                None => {
                    writeln!(
                        out,
                        "{}",
                        json!({"command_id": cmd.command_id, "deploy_id": cmd.deploy_id, "would_run": argv})
                    )?;
                    out.flush()?;
                }
                Some(status) => {
                    let result = ExecutorResult {
                        command_id: cmd.command_id.clone(),
                        deploy_id: cmd.deploy_id.clone(),
                        status,
                        at: Timestamp::now_wall(),
                        executor: config.executor.name.clone(),
                        message,
                    };
                    // Retried until acknowledged: the result is the record
                    // that this command ran.
                    while let Err(e) =
                        publish_result(&rt, &producer, &t.results, &cmd.service, &result)
                    {
                        error!(command_id = %cmd.command_id, error = %e, "publishing the result failed; retrying");
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    info!(command_id = %cmd.command_id, status = ?result.status, "result published");
                    done.insert(cmd.command_id.clone());
                }
            }
        }
        let _ = consumer.store_offset(&rec.topic, rec.partition, rec.offset);
    }
    match consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => warn!(error = %e, "committing the commands offsets at exit failed"),
    }
    info!("executor stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(service: &str, to: Option<&str>, strategy: Option<&str>) -> Command {
        Command {
            schema: crate::model::COMMAND_SCHEMA.into(),
            command_id: "c".into(),
            action: Action::Rollback,
            trigger: crate::model::Trigger::BurnRate,
            deploy_id: "d-1".into(),
            release_id: None,
            service: service.into(),
            environment: "prod".into(),
            from_version: "v2".into(),
            to_version: to.map(String::from),
            strategy: strategy.map(String::from),
            labels: Default::default(),
            evidence: serde_json::Value::Null,
            decided_at: Timestamp(0),
            issued_at: Timestamp(0),
        }
    }

    #[test]
    fn templates_substitute_whole_arguments_and_refuse_injection() {
        let c = Config::from_toml(
            "[executor.templates]\nhelm = [\"helm\", \"rollback\", \"{service}\", \"--namespace\", \"{environment}\"]\ndefault = [\"kubectl\", \"rollout\", \"undo\", \"deployment/{service}\"]\n",
        );
        assert!(c.is_err(), "placeholders inside arguments are refused");
        let c = Config::from_toml(
            "[executor.templates]\nhelm = [\"helm\", \"rollback\", \"{service}\", \"--namespace\", \"{environment}\"]\ndefault = [\"kubectl\", \"rollout\", \"undo\", \"{service}\"]\n",
        )
        .unwrap();
        assert_eq!(
            argv(&c, &cmd("checkout", Some("v1"), Some("helm"))).unwrap(),
            ["helm", "rollback", "checkout", "--namespace", "prod"]
        );
        assert_eq!(
            argv(&c, &cmd("checkout; rm -rf /", None, Some("canary"))).unwrap(),
            ["kubectl", "rollout", "undo", "checkout; rm -rf /"],
            "one argument, no shell: harmless"
        );
        assert!(argv(&c, &cmd("--kubeconfig=/x", None, None)).is_err());
        assert!(argv(&c, &cmd("a\nb", None, None)).is_err());
        let none = Config::from_toml("").unwrap();
        assert!(argv(&none, &cmd("x", None, None)).is_err());
    }

    #[test]
    fn runs_with_a_timeout() {
        let (s, _) = run(&["true".to_string()], Duration::from_secs(5));
        assert_eq!(s, ResultStatus::Succeeded);
        let (s, m) = run(&["false".to_string()], Duration::from_secs(5));
        assert_eq!(s, ResultStatus::Failed, "{m}");
        let (s, m) = run(
            &["sleep".to_string(), "5".to_string()],
            Duration::from_millis(200),
        );
        assert_eq!(s, ResultStatus::Failed);
        assert!(m.contains("timed out"));
        let (s, _) = run(
            &["/nonexistent/program".to_string()],
            Duration::from_secs(1),
        );
        assert_eq!(s, ResultStatus::Failed);
    }
}
