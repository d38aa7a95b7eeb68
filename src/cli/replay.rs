//! `rollbackd replay`: recorded inputs through the engine; commands on
//! stdout, audit records to a file, malformed lines on stderr.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use rollbackd::engine::Engine;
use rollbackd::replay::{self, ReplaySinks};

pub fn main(config: &Path, input: &Path, audit: Option<&Path>) -> ExitCode {
    let cfg = match super::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    super::finish("replay", run(cfg, input, audit))
}

fn run(cfg: rollbackd::config::Config, input: &Path, audit: Option<&Path>) -> anyhow::Result<()> {
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut audit_file = match audit {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
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
