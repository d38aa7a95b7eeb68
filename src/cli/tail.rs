//! `rollbackd tail`: the commands topic (or the results topic) as JSON
//! lines, for the on-call engineer and for scripts; with `--follow-audit`,
//! the decisions, suppressions, commands, results and verifications on the
//! audit topic as they happen, in words (or as JSON with `--json`).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use rollbackd::model::{summary, AuditRecord};

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (its [kafka] table and topic names)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Start from the oldest retained record instead of now
    #[arg(long)]
    from_beginning: bool,
    /// Print the executors' results (topics.results) instead of the commands
    #[arg(long, conflicts_with = "follow_audit")]
    results: bool,
    /// Follow the audit topic: decisions, suppressions, commands, results,
    /// verifications, breaker and pause changes, in words
    #[arg(long)]
    follow_audit: bool,
    /// With --follow-audit: the audit records as JSON lines instead
    #[arg(long, requires = "follow_audit")]
    json: bool,
    /// Exit after printing this many records (default: follow until interrupted)
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
}

pub fn main(args: Args) -> ExitCode {
    let cfg = match super::load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _telemetry = super::init_logging(&cfg);
    let topic = if args.follow_audit {
        &cfg.topics.audit
    } else if args.results {
        &cfg.topics.results
    } else {
        &cfg.topics.commands
    };
    let mut out = io::stdout().lock();
    let print = |payload: &[u8]| -> io::Result<bool> {
        if !args.follow_audit {
            return line(&mut out, payload);
        }
        let Ok(record) = serde_json::from_slice::<AuditRecord>(payload) else {
            return Ok(false);
        };
        if !summary::notable(record.kind()) {
            return Ok(false);
        }
        if args.json {
            // The record as it is on the topic.
            let json = summary::printable(&String::from_utf8_lossy(payload));
            return line(&mut out, json.as_bytes());
        }
        line(&mut out, human(&record).as_bytes())
    };
    let result = match &cfg.kafka {
        None => Err(anyhow::anyhow!(
            "{} has no [kafka] table",
            args.config.display()
        )),
        Some(k) => rollbackd::kafka::tools::tail(k, topic, args.from_beginning, args.limit, print)
            .map_err(Into::into),
    };
    super::finish("tail", result)
}

fn line(out: &mut impl Write, bytes: &[u8]) -> io::Result<bool> {
    out.write_all(bytes)?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(true)
}

/// `2026-11-26T12:01:30.500Z  command       Rolling back checkout v2 → v1 in prod — errors 5.45% (…)`
fn human(record: &AuditRecord) -> String {
    let mut s = format!(
        "{}  {:<12}  {}",
        record.at,
        record.kind(),
        summary::line(record)
    );
    if let Some(n) = summary::numbers(record) {
        s.push_str(" — ");
        s.push_str(&n);
    }
    summary::printable(&s)
}
