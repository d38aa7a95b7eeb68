//! Running one program with a timeout, without a shell.

use std::io::Read;
use std::process::{Child, Command as Process, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::model::ResultStatus;

/// How much of a failing program's stderr becomes the result's message.
const STDERR_KEPT: usize = 2000;

/// What a program that ran to its end left.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// Everything it wrote, when asked for ([`capture`]); else empty.
    pub stdout: Vec<u8>,
    /// The last 2000 bytes it wrote to stderr (`STDERR_KEPT`).
    pub stderr: String,
}

/// Runs `argv` with `timeout`: the status and a short message.
pub fn run(argv: &[String], timeout: Duration) -> (ResultStatus, String) {
    let Some(program) = argv.first() else {
        return (ResultStatus::Rejected, "empty argv".into());
    };
    let mut process = Process::new(program);
    process.args(&argv[1..]).stdout(Stdio::null());
    match wait(process, timeout) {
        Ok(f) if f.status.success() => (ResultStatus::Succeeded, format!("{program} exited 0")),
        Ok(f) => (
            ResultStatus::Failed,
            format!("{program} exited {}: {}", f.status, f.stderr.trim()),
        ),
        Err(why) => (ResultStatus::Failed, why),
    }
}

/// Runs `process` (its program, arguments, directory and environment set
/// by the caller) with `timeout`, keeping all of its stdout.
pub fn capture(mut process: Process, timeout: Duration) -> Result<Finished, String> {
    process.stdout(Stdio::piped());
    wait(process, timeout)
}

/// Starts `process` with an empty stdin and a drained stderr, and waits
/// for it at most `timeout`: killed past it. Why it could not finish, in
/// words, as the error.
fn wait(mut process: Process, timeout: Duration) -> Result<Finished, String> {
    let program = process.get_program().to_string_lossy().into_owned();
    let mut child = process
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    // Drained while the program runs, so a chatty one cannot fill a pipe
    // and stall; stderr keeps its last bytes.
    let stdout = child.stdout.take().map(|mut o| {
        std::thread::spawn(move || {
            let mut all = Vec::new();
            let _ = o.read_to_end(&mut all);
            all
        })
    });
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
    let status = until_exit(&mut child, &program, timeout)?;
    Ok(Finished {
        status,
        stdout: joined(stdout),
        stderr: joined(stderr),
    })
}

fn joined<T: Default>(h: Option<JoinHandle<T>>) -> T {
    h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
}

fn until_exit(child: &mut Child, program: &str, timeout: Duration) -> Result<ExitStatus, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if start.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {program}: {e}")),
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

    #[test]
    fn capture_keeps_stdout_and_the_tail_of_stderr() {
        let mut p = Process::new("sh");
        p.args(["-c", "echo out; echo err >&2; exit 3"]);
        let f = capture(p, Duration::from_secs(5)).unwrap();
        assert_eq!(f.stdout, b"out\n");
        assert_eq!(f.stderr, "err\n");
        assert_eq!(f.status.code(), Some(3));
        let mut p = Process::new("sleep");
        p.arg("5");
        let e = capture(p, Duration::from_millis(200)).unwrap_err();
        assert!(e.contains("timed out"), "{e}");
    }
}
