//! `rollbackd check-config`: validates a config and prints what it means.

use std::path::Path;
use std::process::ExitCode;

pub fn main(path: &Path) -> ExitCode {
    match super::load_config(path) {
        // What `run` reads from the environment and needs beyond a valid
        // file, checked the same way.
        Ok(c) => match c.check_run().and_then(|()| c.secrets()) {
            Ok(secrets) => {
                let text = format!(
                    "config {} is valid\n{}{}",
                    path.display(),
                    c.describe(),
                    c.describe_secrets(&secrets)
                );
                super::finish("check-config", super::print(&text).map_err(Into::into))
            }
            Err(e) => {
                eprintln!("rollbackd: {e}");
                ExitCode::from(2)
            }
        },
        Err(code) => code,
    }
}
