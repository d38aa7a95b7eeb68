//! `rollbackd execute`: the reference executor (see `rollbackd::executor`).

use std::io;
use std::path::Path;
use std::process::ExitCode;

pub fn main(path: &Path, dry_run: bool) -> ExitCode {
    let cfg = match super::load_config(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let _telemetry = super::init_logging(&cfg);
    let result = if dry_run {
        rollbackd::executor::dry_run(&cfg, &mut io::stdout().lock())
    } else {
        rollbackd::executor::execute(&cfg)
    };
    super::finish("execute", result.map_err(Into::into))
}
