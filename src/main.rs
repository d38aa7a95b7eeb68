//! The `rollbackd` command line: parses arguments and wires the library.

#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use rollbackd::config::Config;
use rollbackd::engine::Engine;
use rollbackd::replay::{self, ReplaySinks};

#[derive(Parser)]
#[command(
    name = "rollbackd",
    version,
    about = "Decides within seconds that a deploy is hurting users, and says roll it back"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay recorded inputs (JSONL) through the engine; print the commands
    Replay {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        input: PathBuf,
        /// Also write every audit record to this file (JSONL)
        #[arg(long)]
        audit: Option<PathBuf>,
    },
    /// Run the agent: consume Kafka, decide, publish commands
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Run the engine on a built-in simulated canary rollout
    Demo,
    /// Publish a deploy event (from a CI/CD pipeline)
    Announce(Box<AnnounceArgs>),
    /// The reference executor: run rollback commands with configured templates
    Execute {
        #[arg(long)]
        config: PathBuf,
        /// Print what would run instead of running it
        #[arg(long)]
        dry_run: bool,
    },
    /// Print the commands topic as JSON lines
    Tail {
        #[arg(long)]
        config: PathBuf,
        /// Start from the oldest retained command instead of now
        #[arg(long)]
        from_beginning: bool,
    },
    /// Validate a config file and print the effective policy per service
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum Phase {
    Started,
    Completed,
    RolledBack,
    Aborted,
}

#[derive(clap::Args)]
struct AnnounceArgs {
    /// started, completed, rolled-back or aborted
    #[arg(value_enum)]
    phase: Phase,
    #[arg(long)]
    deploy_id: String,
    #[arg(long)]
    service: String,
    #[arg(long)]
    version: String,
    #[arg(long)]
    previous_version: Option<String>,
    #[arg(long)]
    environment: Option<String>,
    #[arg(long)]
    strategy: Option<String>,
    #[arg(long)]
    release_id: Option<String>,
    /// none, reversible or irreversible
    #[arg(long)]
    data_migration: Option<String>,
    /// Percent of traffic on the new version
    #[arg(long)]
    canary_weight: Option<f64>,
    /// A label copied into commands, as key=value (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// When it happened (RFC 3339); default now
    #[arg(long)]
    at: Option<String>,
    /// Publish to the Kafka configured here
    #[arg(long, conflicts_with = "url")]
    config: Option<PathBuf>,
    /// POST to a rollbackd at this base URL instead (token from ROLLBACKD_WEBHOOK_TOKEN)
    #[arg(long)]
    url: Option<String>,
}

fn announce(args: AnnounceArgs) -> ExitCode {
    use rollbackd::time::Timestamp;
    let kind = match args.phase {
        Phase::Started => "deploy.started",
        Phase::Completed => "deploy.completed",
        Phase::RolledBack => "deploy.rolled_back",
        Phase::Aborted => "deploy.aborted",
    };
    let mut labels = serde_json::Map::new();
    for l in &args.labels {
        match l.split_once('=') {
            Some((k, v)) if !k.is_empty() => {
                labels.insert(k.to_string(), serde_json::Value::String(v.to_string()));
            }
            _ => {
                eprintln!("rollbackd: announce: --label {l:?} is not KEY=VALUE");
                return ExitCode::from(2);
            }
        }
    }
    let at = args
        .at
        .clone()
        .unwrap_or_else(|| Timestamp::now_wall().to_string());
    let mut ev = serde_json::json!({
        "type": kind,
        "deploy_id": args.deploy_id,
        "service": args.service,
        "version": args.version,
        "at": at,
    });
    if let serde_json::Value::Object(m) = &mut ev {
        for (k, v) in [
            ("previous_version", &args.previous_version),
            ("environment", &args.environment),
            ("strategy", &args.strategy),
            ("release_id", &args.release_id),
            ("data_migration", &args.data_migration),
        ] {
            if let Some(v) = v {
                m.insert(k.into(), serde_json::Value::String(v.clone()));
            }
        }
        if let Some(w) = args.canary_weight {
            m.insert("canary_weight".into(), serde_json::json!(w));
        }
        if !labels.is_empty() {
            m.insert("labels".into(), serde_json::Value::Object(labels));
        }
    }
    // The same validation the agent applies: a bad event never leaves here.
    if let Err(e) = rollbackd::ingest::deploy::from_value(&ev) {
        eprintln!("rollbackd: announce: {e}");
        return ExitCode::from(2);
    }
    let payload = ev.to_string();
    let result = match (&args.config, &args.url) {
        (Some(path), _) => {
            let cfg = match load_config(path) {
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
            rollbackd::kafka::tools::announce_kafka(
                k,
                &cfg.topics.deploy_events,
                &args.service,
                payload.as_bytes(),
            )
            .map(|(p, o)| format!("{} partition {p} offset {o}", cfg.topics.deploy_events))
        }
        (None, Some(url)) => {
            let token = std::env::var("ROLLBACKD_WEBHOOK_TOKEN").ok();
            rollbackd::kafka::tools::announce_http(url, token.as_deref(), payload.as_bytes())
                .map(|status| format!("{url} ({status})"))
        }
        (None, None) => {
            eprintln!("rollbackd: announce: give --config (Kafka) or --url (HTTP)");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(where_) => {
            println!("{payload}");
            eprintln!("announced {kind} for {} to {where_}", args.deploy_id);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rollbackd: announce: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs (text or JSON on stderr) and, when `telemetry.otlp_endpoint` is
/// set, rollbackd's own spans exported over OTLP/HTTP. The returned
/// provider is shut down (flushed) at exit.
fn init_logging(
    cfg: &rollbackd::config::Config,
) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLBACKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let fmt = match cfg.log.format {
        rollbackd::config::LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(io::stderr)
            .with_target(false)
            .boxed(),
        rollbackd::config::LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(io::stderr)
            .with_ansi(ansi)
            .with_target(false)
            .boxed(),
    };
    let endpoint = cfg.telemetry.otlp_endpoint.trim();
    let provider = if endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build();
        match exporter {
            Ok(exporter) => Some(
                opentelemetry_sdk::trace::SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        opentelemetry_sdk::Resource::builder()
                            .with_service_name("rollbackd")
                            .build(),
                    )
                    .build(),
            ),
            Err(e) => {
                eprintln!("rollbackd: telemetry.otlp_endpoint: {e}; own spans are not exported");
                None
            }
        }
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("rollbackd")));
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    provider
}

fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("rollbackd: {e}");
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Demo => {
            let stdout = io::stdout();
            let mut out = stdout.lock();
            match rollbackd::demo::run(&mut out).and_then(|()| out.flush()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbackd: demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Run { config } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let telemetry = init_logging(&cfg);
            let result = if cfg.kafka.is_some() {
                rollbackd::app::run_kafka(cfg)
            } else {
                rollbackd::app::run_local(cfg)
            };
            if let Some(p) = telemetry {
                let _ = p.shutdown();
            }
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "rollbackd failed");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Announce(args) => announce(*args),
        Cmd::Execute { config, dry_run } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let _telemetry = init_logging(&cfg);
            let stdout = io::stdout();
            match rollbackd::kafka::executor::execute(&cfg, dry_run, &mut stdout.lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbackd: execute: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Tail {
            config,
            from_beginning,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let _telemetry = init_logging(&cfg);
            let stdout = io::stdout();
            match rollbackd::kafka::tools::tail(&cfg, from_beginning, &mut stdout.lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbackd: tail: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::CheckConfig { config } => match load_config(&config) {
            Ok(c) => {
                println!("config {} is valid", config.display());
                print!("{}", c.describe());
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Replay {
            config,
            input,
            audit,
        } => {
            let cfg = match load_config(&config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            match run_replay(cfg, &input, audit.as_ref()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("rollbackd: replay: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_replay(cfg: Config, input: &Path, audit: Option<&PathBuf>) -> io::Result<()> {
    let file = File::open(input)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", input.display())))?;
    let mut audit_file = match audit {
        Some(p) => Some(BufWriter::new(File::create(p).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", p.display()))
        })?)),
        None => None,
    };
    let stdout = io::stdout();
    let mut commands = BufWriter::new(stdout.lock());
    let stderr = io::stderr();
    let mut errors = stderr.lock();
    let mut engine = Engine::new(Arc::new(cfg));
    let mut sinks = ReplaySinks {
        commands: &mut commands,
        audit: audit_file.as_mut().map(|f| f as &mut dyn Write),
        errors: &mut errors,
    };
    let summary = replay::replay(
        &mut engine,
        BufReader::with_capacity(1 << 20, file),
        &mut sinks,
    )?;
    eprintln!(
        "replay: {} records ({} malformed), {} commands, {} audit records",
        summary.records, summary.malformed, summary.commands, summary.audits
    );
    Ok(())
}
