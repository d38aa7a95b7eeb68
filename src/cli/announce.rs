//! `rollbackd announce`: publishes one deploy event to Kafka, or POSTs it
//! to a rollbackd; exits non-zero unless it was acknowledged.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use rollbackd::model::{DataMigration, DeployEvent, DeployEventKind};
use rollbackd::time::Timestamp;

#[derive(clap::ValueEnum, Clone, Copy)]
pub enum Phase {
    Started,
    Completed,
    RolledBack,
    Aborted,
}

#[derive(clap::Args)]
pub struct Args {
    /// Which event: started, completed, rolled-back or aborted
    #[arg(value_enum)]
    phase: Phase,
    /// The deploy's unique id
    #[arg(long)]
    deploy_id: String,
    /// The service (the telemetry's service.name)
    #[arg(long)]
    service: String,
    /// The version being rolled out (the telemetry's service.version)
    #[arg(long)]
    version: String,
    /// The known-good version: the baseline and the rollback target
    #[arg(long)]
    previous_version: Option<String>,
    /// The environment (default "default"; matched against deployment.environment.name)
    #[arg(long)]
    environment: Option<String>,
    /// canary, blue-green, rolling, serverless-alias, or your own
    #[arg(long)]
    strategy: Option<String>,
    /// Groups deploys of several services that ship together
    #[arg(long)]
    release_id: Option<String>,
    /// none, reversible or irreversible (irreversible: commands need approval)
    #[arg(long)]
    data_migration: Option<String>,
    /// Percent of traffic on the new version
    #[arg(long)]
    canary_weight: Option<f64>,
    /// A label copied into commands, as KEY=VALUE (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// When it happened (RFC 3339); default now
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Publish to the Kafka configured in this file (topics.deploy_events)
    #[arg(long, value_name = "FILE", conflicts_with = "url")]
    config: Option<PathBuf>,
    /// POST to the rollbackd at this base URL instead (token from ROLLBACKD_WEBHOOK_TOKEN)
    #[arg(long)]
    url: Option<String>,
}

/// The event these arguments describe, or why they describe none.
fn event(args: &Args) -> Result<DeployEvent, String> {
    let kind = match args.phase {
        Phase::Started => DeployEventKind::Started,
        Phase::Completed => DeployEventKind::Completed,
        Phase::RolledBack => DeployEventKind::RolledBack,
        Phase::Aborted => DeployEventKind::Aborted,
    };
    let mut labels = BTreeMap::new();
    for l in &args.labels {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), v.to_string());
            }
            _ => return Err(format!("--label {l:?} is not KEY=VALUE")),
        }
    }
    let at = match &args.at {
        Some(s) => Timestamp::parse_rfc3339(s).map_err(|e| format!("--at: {e}"))?,
        None => Timestamp::now_wall(),
    };
    let data_migration = match &args.data_migration {
        None => DataMigration::None,
        Some(s) => DataMigration::parse(s).ok_or_else(|| {
            format!("--data-migration {s:?} is not none, reversible or irreversible")
        })?,
    };
    Ok(DeployEvent {
        kind,
        deploy_id: args.deploy_id.clone(),
        service: args.service.clone(),
        version: args.version.clone(),
        at,
        environment: args.environment.clone(),
        previous_version: args.previous_version.clone(),
        strategy: args.strategy.clone(),
        release_id: args.release_id.clone(),
        data_migration,
        canary_weight: args.canary_weight,
        labels,
    })
}

pub fn main(args: Args) -> ExitCode {
    let ev = match event(&args) {
        Ok(ev) => ev,
        Err(e) => {
            eprintln!("rollbackd: announce: {e}");
            return ExitCode::from(2);
        }
    };
    let payload = match serde_json::to_vec(&ev) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rollbackd: announce: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The same validation the agent applies: a bad event never leaves here.
    if let Err(e) = rollbackd::ingest::deploy::decode(&payload) {
        eprintln!("rollbackd: announce: {e}");
        return ExitCode::from(2);
    }
    let sent = match (&args.config, &args.url) {
        (Some(path), _) => {
            let cfg = match super::load_config(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(k) = &cfg.kafka else {
                eprintln!(
                    "rollbackd: announce: {} has no [kafka] table",
                    path.display()
                );
                return ExitCode::from(2);
            };
            let topic = &cfg.topics.deploy_events;
            rollbackd::kafka::tools::announce(k, topic, &ev.service, &payload)
                .map(|(p, o)| format!("{topic} partition {p} offset {o}"))
                .map_err(Into::into)
        }
        (None, Some(url)) => post(url, &payload),
        (None, None) => {
            eprintln!("rollbackd: announce: give --config (Kafka) or --url (HTTP)");
            return ExitCode::from(2);
        }
    };
    match sent {
        Ok(where_) => {
            eprintln!(
                "announced {} for {} to {where_}",
                ev.kind.as_str(),
                ev.deploy_id
            );
            let line = format!("{}\n", String::from_utf8_lossy(&payload));
            super::finish("announce", super::print(&line).map_err(Into::into))
        }
        Err(e) => {
            eprintln!("rollbackd: announce: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// POSTs the event to `{base}/v1/deploy-events`.
fn post(base: &str, payload: &[u8]) -> anyhow::Result<String> {
    let url = format!("{}/v1/deploy-events", base.trim_end_matches('/'));
    let mut req = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .build()?
        .post(&url)
        .header("content-type", "application/json")
        .body(payload.to_vec());
    if let Ok(token) = std::env::var("ROLLBACKD_WEBHOOK_TOKEN") {
        req = req.bearer_auth(token);
    }
    let resp = req
        .send()
        .with_context(|| format!("cannot POST to {url}"))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {}", body.trim());
    }
    Ok(format!("{url} ({})", status.as_u16()))
}
