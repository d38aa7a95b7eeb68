//! `rollbackd run`: the daemon, with Kafka or HTTP only.

use std::path::Path;
use std::process::ExitCode;

pub fn main(path: &Path) -> ExitCode {
    let cfg = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let telemetry = super::init_logging(&cfg);
    let result = rollbackd::runtime::run(cfg);
    if let Some(p) = telemetry {
        let _ = p.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // An env var the config names (a token, a `[[notify]]` URL): a
        // config error, found before anything started.
        Err(rollbackd::runtime::RunError::Config(e)) => {
            eprintln!("rollbackd: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "rollbackd failed");
            eprintln!("rollbackd: run: {e:#}");
            ExitCode::FAILURE
        }
    }
}
