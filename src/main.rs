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
    /// Run the engine on a built-in simulated canary rollout
    Demo,
    /// Validate a config file and print the effective policy per service
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
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
