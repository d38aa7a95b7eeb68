//! Tools, ports, directories and the serial lock.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;

/// Kafka tests run one at a time: each starts a broker and agents and
/// measures behaviour in wall time, which two cores cannot do for several
/// tests at once without making them flaky.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// Where scripts/deps.sh installs tansu and the Python virtualenv.
fn tools() -> PathBuf {
    std::env::var("ROLLBACKD_TOOLS")
        .unwrap_or_else(|_| "/var/tmp/rollbackd-tools".into())
        .into()
}

/// The Python with the OpenTelemetry SDK and PyYAML (tests/python/requirements.txt).
pub fn venv_python() -> PathBuf {
    let p = tools().join("venv/bin/python");
    assert!(
        p.exists(),
        "the Python virtualenv is missing: run scripts/deps.sh (the test command does)"
    );
    p
}

/// Runs `tests/python/<script>` with [`venv_python`] and `args`, to its
/// end; panics with its stderr when it fails.
pub fn run_python(script: &str, args: &[&str]) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/python")
        .join(script);
    let out = std::process::Command::new(venv_python())
        .arg(path)
        .args(args)
        .output()
        .expect("the Python virtualenv (scripts/deps.sh makes it)");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn tansu() -> PathBuf {
    if let Ok(p) = std::env::var("ROLLBACKD_TANSU") {
        return PathBuf::from(p);
    }
    let p = tools().join("bin/tansu");
    if p.exists() {
        return p;
    }
    panic!("the tansu broker is not installed: run scripts/kafka-broker.sh install (the test command does)");
}

/// noida-db, the broker with transactions.
pub fn noida() -> PathBuf {
    let p = tools().join("bin/noida-db");
    assert!(
        p.exists(),
        "noida-db is not installed: run scripts/kafka-broker.sh install (the test command does)"
    );
    p
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn unique_dir(tag: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("rollbackd-{tag}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

pub fn rfc3339_now() -> String {
    rollbackd::time::Timestamp::now_wall().to_string()
}

/// CPU time a process has used so far (user + system, every thread), from
/// `/proc/<pid>/stat`; `None` once it is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name (in parentheses, which may hold
    // spaces): utime and stime are the 14th and 15th of the line.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    // Clock ticks: 100 a second on Linux (USER_HZ).
    Some((utime + stime) / 100.0)
}
