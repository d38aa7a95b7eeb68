//! `rollbackd tail`: the commands topic (or the results topic) as JSON
//! lines, for the on-call engineer and for scripts.

use std::io;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file (its [kafka] table and topic names)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Start from the oldest retained record instead of now
    #[arg(long)]
    from_beginning: bool,
    /// Print the executors' results (topics.results) instead of the commands
    #[arg(long)]
    results: bool,
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
    let topic = if args.results {
        &cfg.topics.results
    } else {
        &cfg.topics.commands
    };
    let result = match &cfg.kafka {
        None => Err(anyhow::anyhow!(
            "{} has no [kafka] table",
            args.config.display()
        )),
        Some(k) => rollbackd::kafka::tools::tail(
            k,
            topic,
            args.from_beginning,
            args.limit,
            &mut io::stdout().lock(),
        )
        .map_err(Into::into),
    };
    super::finish("tail", result)
}
