//! The `rollbackd` command line: parses arguments and dispatches to the
//! subcommand's module in `cli/`.

#![forbid(unsafe_code)]

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

/// `--config FILE`, shared by every subcommand that reads a config.
#[derive(clap::Args)]
struct ConfigArg {
    /// The configuration file (TOML; every key has a default, see config/rollbackd.toml)
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the engine on a built-in simulated canary rollout (no setup)
    Demo,
    /// Replay recorded inputs (JSONL) through the engine; print the commands
    Replay {
        #[command(flatten)]
        config: ConfigArg,
        /// The recorded inputs, one JSON record per line
        #[arg(long, value_name = "FILE")]
        input: PathBuf,
        /// Also write every audit record to this file (JSONL)
        #[arg(long, value_name = "FILE")]
        audit: Option<PathBuf>,
        /// Also write a self-contained HTML report with per-deploy charts
        #[arg(long, value_name = "FILE")]
        report: Option<PathBuf>,
    },
    /// Run the agent: with a [kafka] table, consume Kafka and publish
    /// commands; without one, HTTP in (OTLP, deploy events, Alertmanager)
    /// and commands as JSON lines on stdout
    Run {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate a config file and print the effective policy per service
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Publish a deploy event (from a CI/CD pipeline)
    Announce(Box<cli::announce::Args>),
    /// Print the commands topic (or the results topic) as JSON lines, or
    /// follow the audit topic's decisions in words (--follow-audit)
    Tail(cli::tail::Args),
    /// Print a running agent's live status (GET /v1/status) as a table
    Status(cli::status::Args),
    /// The reference executor: run rollback commands with configured templates
    Execute {
        #[command(flatten)]
        config: ConfigArg,
        /// Print what would be done with each command up to the end of the
        /// topic, then exit; run, publish and commit nothing
        #[arg(long)]
        dry_run: bool,
    },
    /// Monte Carlo of healthy and bad deploys through the engine: the
    /// policy's false-rollback rate and time to decision per grid point
    Simulate(cli::simulate::Args),
    /// Send simulated canary traffic (OTLP spans) to Kafka, to a rollbackd
    /// over OTLP/HTTP, or to a replay file
    Loadgen(Box<cli::loadgen::Args>),
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Demo => cli::demo::main(),
        Cmd::Replay {
            config,
            input,
            audit,
            report,
        } => cli::replay::main(&config.config, &input, audit.as_deref(), report.as_deref()),
        Cmd::Run { config } => cli::run::main(&config.config),
        Cmd::CheckConfig { config } => cli::check_config::main(&config.config),
        Cmd::Announce(args) => cli::announce::main(*args),
        Cmd::Tail(args) => cli::tail::main(args),
        Cmd::Status(args) => cli::status::main(args),
        Cmd::Execute { config, dry_run } => cli::execute::main(&config.config, dry_run),
        Cmd::Loadgen(args) => cli::loadgen::main(*args),
        Cmd::Simulate(args) => cli::simulate::main(args),
    }
}
