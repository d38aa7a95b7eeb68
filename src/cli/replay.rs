//! `rollbackd replay`: recorded inputs through the engine; commands on
//! stdout, audit records to a file, malformed lines on stderr, and with
//! `--report` an HTML report of every deploy.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use rollbackd::engine::{Engine, EngineConfig};
use rollbackd::replay::{self, ReplaySinks};
use rollbackd::report::{self, ReportDeploy};

pub fn main(config: &Path, input: &Path, audit: Option<&Path>, report: Option<&Path>) -> ExitCode {
    let cfg = match super::load_config(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    super::finish("replay", run(cfg, input, audit, report))
}

fn run(
    cfg: rollbackd::config::Config,
    input: &Path,
    audit: Option<&Path>,
    report: Option<&Path>,
) -> anyhow::Result<()> {
    let file = File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let mut audit_file = match audit {
        Some(p) => Some(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    // Created before the replay: a path that cannot be written fails now.
    let mut report_file = match report {
        Some(p) => Some((
            p,
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => None,
    };
    let stdout = io::stdout();
    let mut commands = BufWriter::new(stdout.lock());
    let stderr = io::stderr();
    let mut errors = stderr.lock();
    let mut engine = Engine::new(EngineConfig::from(&cfg));
    let mut kept = Vec::new();
    if report.is_some() {
        engine.keep_finished(usize::MAX);
    }
    let mut sinks = ReplaySinks {
        commands: &mut commands,
        audit: audit_file.as_mut().map(|f| f as &mut dyn Write),
        errors: &mut errors,
        kept: report.is_some().then_some(&mut kept),
    };
    let summary = replay::replay(
        &mut engine,
        &cfg,
        BufReader::with_capacity(1 << 20, file),
        &mut sinks,
    )?;
    eprintln!(
        "replay: {} records ({} malformed), {} commands, {} audit records",
        summary.records, summary.malformed, summary.commands, summary.audits
    );
    if let Some((path, f)) = report_file.as_mut() {
        let mut deploys: Vec<ReportDeploy> =
            engine.finished().cloned().map(ReportDeploy::from).collect();
        deploys.extend(
            engine
                .latest_views(usize::MAX)
                .0
                .into_iter()
                .map(|view| ReportDeploy {
                    view,
                    finished: None,
                }),
        );
        deploys.sort_by_key(|d| d.view.started_at);
        let html = report::render(&input.display().to_string(), &deploys, &kept);
        f.write_all(html.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!(
            "replay: report of {} deploys in {}",
            deploys.len(),
            path.display()
        );
    }
    Ok(())
}
