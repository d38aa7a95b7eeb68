//! `rollbackd simulate`: the policy's false-rollback rate and detection
//! speed over a grid of simulated deploys, as a table or JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use rollbackd::simulate::{self, Grid};

#[derive(clap::Args)]
pub struct Args {
    /// The configuration file whose [slo] policy is simulated
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// The grid (TOML, see config/simulate.toml); the built-in one when omitted
    #[arg(long, value_name = "FILE")]
    grid: Option<PathBuf>,
    /// Seed of the simulated traffic: the same seed, the same report
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
    /// Worker threads (default: one per core)
    #[arg(long)]
    threads: Option<usize>,
}

pub fn main(args: Args) -> ExitCode {
    let cfg = match super::load_config(&args.config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let grid = match load_grid(args.grid.as_deref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("rollbackd: {e:#}");
            return ExitCode::from(2);
        }
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let started = Instant::now();
    let outcomes = match simulate::simulate(&cfg, &grid, args.seed, threads) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rollbackd: {e}");
            return ExitCode::from(2);
        }
    };
    let deploys: usize = outcomes.iter().map(|o| o.point.runs).sum();
    let result = if args.json {
        serde_json::to_string_pretty(&serde_json::json!({
            "seed": args.seed,
            "points": outcomes,
        }))
        .map_err(anyhow::Error::from)
        .and_then(|s| Ok(super::print(&(s + "\n"))?))
    } else {
        super::print(&simulate::table(&outcomes)).map_err(Into::into)
    };
    eprintln!(
        "simulate: {} grid points, {deploys} deploys in {:.1}s on {threads} threads (seed {})",
        outcomes.len(),
        started.elapsed().as_secs_f64(),
        args.seed
    );
    super::finish("simulate", result)
}

fn load_grid(path: Option<&Path>) -> anyhow::Result<Grid> {
    let text = match path {
        Some(p) => std::fs::read_to_string(p)
            .with_context(|| format!("cannot read grid {}", p.display()))?,
        None => simulate::DEFAULT_GRID.to_string(),
    };
    Ok(Grid::from_toml(&text)?)
}
