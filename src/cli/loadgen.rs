//! `rollbackd loadgen`: simulated canary traffic (see `rollbackd::loadgen`)
//! sent to the Kafka of a config, to a rollbackd over OTLP/HTTP, or
//! written as a replay file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use prost::Message as _;
use rollbackd::config::OtlpEncoding;
use rollbackd::loadgen::{Canary, Export, Traffic};
use rollbackd::time::Timestamp;

#[derive(clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["config", "url", "jsonl"])))]
pub struct Args {
    /// A service being deployed, as SERVICE:BASELINE:CANDIDATE:ERRORS, e.g.
    /// checkout:v1:v2:0.2 (the candidate fails 20% of requests); repeatable
    #[arg(long = "canary", value_name = "SPEC", required = true)]
    canaries: Vec<Canary>,
    /// deployment.environment.name of every resource (none by default)
    #[arg(long)]
    environment: Option<String>,
    /// Requests a second, per version
    #[arg(long, default_value_t = 20)]
    rps: u32,
    /// Share of the baselines' requests that fail
    #[arg(long, default_value_t = 0.001)]
    baseline_errors: f64,
    /// How long to send
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// A rollout seen only in the telemetry, with no deploy event: each
    /// baseline serves alone for the first third of --seconds, both
    /// versions for the second, the candidate alone for the last
    #[arg(long)]
    rollout: bool,
    /// Seeds which requests fail
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Produce to topics.otlp_spans of the Kafka configured in this file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// POST OTLP/HTTP protobuf to the rollbackd at this base URL (token from ROLLBACKD_WEBHOOK_TOKEN)
    #[arg(long)]
    url: Option<String>,
    /// Write a replay file instead, at once: a deploy.started event per
    /// canary (deploy id d-SERVICE; none with --rollout), then the spans,
    /// with the default topic names
    #[arg(long, value_name = "FILE")]
    jsonl: Option<PathBuf>,
    /// With --jsonl: when the recording starts (RFC 3339)
    #[arg(
        long,
        value_name = "TIME",
        default_value = "2026-11-26T12:00:00Z",
        requires = "jsonl"
    )]
    start: String,
}

pub fn main(args: Args) -> ExitCode {
    if args.rps == 0 || !(0.0..=1.0).contains(&args.baseline_errors) {
        eprintln!("rollbackd: loadgen: --rps must be at least 1 and --baseline-errors from 0 to 1");
        return ExitCode::from(2);
    }
    let traffic = Traffic {
        canaries: args.canaries.clone(),
        environment: args.environment.clone(),
        rps: args.rps,
        baseline_errors: args.baseline_errors,
        seed: args.seed,
        rollout: args.rollout.then_some(args.seconds),
    };
    let result = match (&args.config, &args.url, &args.jsonl) {
        (Some(path), _, _) => {
            let cfg = match super::load_config(path) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match &cfg.kafka {
                None => Err(anyhow::anyhow!("{} has no [kafka] table", path.display())),
                Some(k) => kafka(
                    &traffic,
                    args.seconds,
                    k,
                    &cfg.topics.otlp_spans,
                    cfg.topics.otlp_encoding,
                ),
            }
        }
        (None, Some(url), _) => http(&traffic, args.seconds, url),
        (None, None, Some(path)) => match Timestamp::parse_rfc3339(&args.start) {
            Ok(start) => jsonl(&traffic, args.seconds, path, start),
            Err(e) => Err(anyhow::anyhow!("--start: {e}")),
        },
        (None, None, None) => unreachable!("clap requires a target"),
    };
    super::finish("loadgen", result)
}

/// Sends one second's exports at every wall-clock second, for `seconds`.
fn paced(
    traffic: &Traffic,
    seconds: u64,
    mut send: impl FnMut(&Export) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let (mut requests, mut errors) = (0u64, 0u64);
    for s in 0..seconds {
        let due = started + Duration::from_secs(s + 1);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        for e in traffic.second(s, Timestamp::now_wall()) {
            send(&e)?;
            requests += u64::from(e.requests);
            errors += u64::from(e.errors);
        }
        if (s + 1) % 10 == 0 || s + 1 == seconds {
            eprintln!(
                "loadgen: {}s sent, {requests} requests ({errors} failed)",
                s + 1
            );
        }
    }
    Ok(())
}

fn kafka(
    traffic: &Traffic,
    seconds: u64,
    k: &rollbackd::config::KafkaConfig,
    topic: &str,
    encoding: OtlpEncoding,
) -> anyhow::Result<()> {
    let spray = rollbackd::kafka::tools::Spray::new(k, topic)?;
    paced(traffic, seconds, |e| {
        let payload = match encoding {
            OtlpEncoding::Proto => e.request.encode_to_vec(),
            OtlpEncoding::Json => serde_json::to_vec(&e.request)?,
        };
        Ok(spray.send(&payload)?)
    })?;
    Ok(spray.flush()?)
}

fn http(traffic: &Traffic, seconds: u64, base: &str) -> anyhow::Result<()> {
    let url = format!("{}/v1/traces", base.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()?;
    let token = std::env::var("ROLLBACKD_WEBHOOK_TOKEN").ok();
    paced(traffic, seconds, |e| {
        let mut req = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(e.request.encode_to_vec());
        if let Some(t) = &token {
            req = req.bearer_auth(t);
        }
        let resp = req
            .send()
            .with_context(|| format!("cannot POST to {url}"))?;
        if !resp.status().is_success() {
            let status = resp.status();
            anyhow::bail!(
                "{url} answered {status}: {}",
                resp.text().unwrap_or_default().trim()
            );
        }
        Ok(())
    })
}

fn jsonl(traffic: &Traffic, seconds: u64, path: &PathBuf, start: Timestamp) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    let mut line = |topic: &str, at: Timestamp, key: Option<&str>, value: serde_json::Value| {
        let mut rec = serde_json::json!({"topic": topic, "timestamp": at, "value": value});
        if let Some(k) = key {
            rec["key"] = k.into();
        }
        writeln!(out, "{rec}")
    };
    let announced = if traffic.rollout.is_some() {
        &[][..]
    } else {
        &traffic.canaries[..]
    };
    for c in announced {
        let mut ev = serde_json::json!({
            "type": "deploy.started", "deploy_id": format!("d-{}", c.service),
            "service": c.service, "version": c.candidate, "previous_version": c.baseline, "at": start,
        });
        if let Some(env) = &traffic.environment {
            ev["environment"] = env.as_str().into();
        }
        line("deploy-events", start, Some(&c.service), ev)?;
    }
    for s in 0..seconds {
        let end = start.saturating_add(rollbackd::time::Duration::from_secs(s as i64 + 1));
        for e in traffic.second(s, end) {
            line("otlp_spans", end, None, serde_json::to_value(&e.request)?)?;
        }
    }
    out.flush()?;
    eprintln!(
        "loadgen: wrote {}s of {} canaries to {}",
        seconds,
        traffic.canaries.len(),
        path.display()
    );
    Ok(())
}
