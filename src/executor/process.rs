//! Running one program with a timeout, without a shell.

use std::io::Read;
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use crate::model::ResultStatus;

/// How much of a failing program's stderr becomes the result's message.
const STDERR_KEPT: usize = 2000;

/// Runs `argv` with `timeout`: the status and a short message.
pub fn run(argv: &[String], timeout: Duration) -> (ResultStatus, String) {
    let Some(program) = argv.first() else {
        return (ResultStatus::Rejected, "empty argv".into());
    };
    let mut child = match Process::new(program)
        .args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => return (ResultStatus::Failed, format!("cannot start {program}: {e}")),
    };
    // Drained while the program runs, so a chatty one cannot fill the pipe
    // and stall; the message keeps its last bytes.
    let stderr = child.stderr.take().map(|mut e| {
        std::thread::spawn(move || {
            let mut kept: Vec<u8> = Vec::new();
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    });
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                let stderr = stderr
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                return if status.success() {
                    (ResultStatus::Succeeded, format!("{program} exited 0"))
                } else {
                    (
                        ResultStatus::Failed,
                        format!("{program} exited {status}: {}", stderr.trim()),
                    )
                };
            }
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return (ResultStatus::Failed, format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return (ResultStatus::Failed, format!("waiting for {program}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_with_a_timeout() {
        let (s, _) = run(&["true".to_string()], Duration::from_secs(5));
        assert_eq!(s, ResultStatus::Succeeded);
        let (s, m) = run(&["false".to_string()], Duration::from_secs(5));
        assert_eq!(s, ResultStatus::Failed, "{m}");
        let (s, m) = run(
            &["sleep".to_string(), "5".to_string()],
            Duration::from_millis(200),
        );
        assert_eq!(s, ResultStatus::Failed);
        assert!(m.contains("timed out"));
        let (s, _) = run(
            &["/nonexistent/program".to_string()],
            Duration::from_secs(1),
        );
        assert_eq!(s, ResultStatus::Failed);
    }
}
