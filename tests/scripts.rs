//! The project's scripts, run as a person runs them.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

fn broker_script(port: u16, tools: &Path, arg: &str) -> std::process::Output {
    Command::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/kafka-broker.sh"
    ))
    .arg(arg)
    .env("KAFKA_PORT", port.to_string())
    .env("ROLLBACKD_TOOLS", tools)
    .output()
    .expect("run scripts/kafka-broker.sh")
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// `stop` ends the broker itself (not just the shell that started it) and
/// returns only once its port is closed.
#[test]
fn broker_script_stop_leaves_nothing_running() {
    let _serial = support::serial();
    // A tools directory of its own (the broker's run directory lives
    // there), with the installed tansu linked in.
    let tools = support::unique_dir("broker-script");
    std::fs::create_dir_all(tools.join("bin")).unwrap();
    std::os::unix::fs::symlink(support::tansu(), tools.join("bin/tansu")).unwrap();
    let port = support::free_port();

    let out = broker_script(port, &tools, "start");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listening(port));
    let pid: i32 = std::fs::read_to_string(tools.join(format!("broker-{port}/pid")))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(
        comm.contains("tansu") && comm.contains(&format!("127.0.0.1:{port}")),
        "the pid file names the broker itself: {comm:?}"
    );
    // A second start finds it running.
    let again = broker_script(port, &tools, "start");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));

    let out = broker_script(port, &tools, "stop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!listening(port), "port {port} closed when stop returns");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "no broker process left (pid {pid})"
    );
    // Stopping a stopped broker is fine.
    assert!(broker_script(port, &tools, "stop").status.success());
    let _ = std::fs::remove_dir_all(&tools);
}
