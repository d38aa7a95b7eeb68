//! One module per subcommand; what they share: loading the config (exit 2
//! with the key named when it is invalid), logging, and how an error ends
//! the process.

pub mod announce;
pub mod check_config;
pub mod demo;
pub mod execute;
pub mod loadgen;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod status;
pub mod tail;

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use rollbackd::config::{Config, LogFormat};

/// Loads and validates `path`; an invalid config is reported and exits 2.
pub fn load_config(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("rollbackd: {e}");
        ExitCode::from(2)
    })
}

/// Writes `text` to stdout (never `print!`, which panics on a closed
/// stdout).
pub fn print(text: &str) -> io::Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Whether `e` is, or was caused by, a closed stdout (`| head`).
fn closed_stdout(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        let kind = c
            .downcast_ref::<io::Error>()
            .map(io::Error::kind)
            .or_else(|| c.downcast_ref::<serde_json::Error>()?.io_error_kind());
        kind == Some(io::ErrorKind::BrokenPipe)
    })
}

/// Reports `result` of subcommand `what` on stderr: exit 0, or 1 with the
/// error and its causes. A closed stdout (`| head`) is not an error.
pub fn finish(what: &str, result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if closed_stdout(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rollbackd: {what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs (text or JSON on stderr) and, when `telemetry.otlp_endpoint` is
/// set, rollbackd's own spans exported over OTLP/HTTP. The returned
/// provider is shut down (flushed) at exit.
pub fn init_logging(cfg: &Config) -> Option<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::Layer as _;

    let filter = tracing_subscriber::EnvFilter::try_from_env("ROLLBACKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let fmt = match cfg.log.format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(io::stderr)
            .with_target(false)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
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
