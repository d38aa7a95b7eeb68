//! `rollbackd demo`: the built-in simulated rollout, on stdout.

use std::io::{self, Write};
use std::process::ExitCode;

pub fn main() -> ExitCode {
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let result = rollbackd::demo::run(&mut out).and_then(|()| out.flush());
    super::finish("demo", result.map_err(Into::into))
}
