//! `rollbackd check-config`: validates a config and prints what it means.

use std::path::Path;
use std::process::ExitCode;

pub fn main(path: &Path) -> ExitCode {
    match super::load_config(path) {
        Ok(c) => {
            println!("config {} is valid", path.display());
            print!("{}", c.describe());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}
