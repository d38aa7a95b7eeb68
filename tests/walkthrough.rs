//! The README's walkthroughs, run exactly as printed: every shell block
//! marked `<!-- walkthrough -->`, in order, in one bash, from the root of
//! the checkout, against the real broker of scripts/kafka-broker.sh and the
//! release binary (through `cargo run --release`, as printed). Then what
//! the text promises is checked on what they printed.

mod support;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const README: &str = include_str!("../README.md");
const MARK: &str = "<!-- walkthrough -->";

/// The marked blocks, in order.
fn blocks() -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = README.lines();
    while let Some(l) = lines.next() {
        if l.trim() != MARK {
            continue;
        }
        assert_eq!(
            lines.next().map(str::trim),
            Some("```sh"),
            "{MARK} must precede a ```sh block"
        );
        let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        out.push(body.join("\n"));
    }
    out
}

fn in_use(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// Sends `signal` to every process of process group `pgid`. (`--` keeps
/// `kill` from reading the negative group id as an option: without it,
/// procps' kill signals other processes than the group's.)
fn kill_group(signal: &str, pgid: u32) {
    assert!(pgid > 1);
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .status();
}

/// Stops what a failed run may have left behind.
struct Cleanup(u32);

impl Drop for Cleanup {
    fn drop(&mut self) {
        kill_group("TERM", self.0);
        let _ = Command::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/kafka-broker.sh"
        ))
        .arg("stop")
        .env_remove("KAFKA_PORT")
        .output();
    }
}

#[test]
fn the_readme_walkthroughs_run_as_printed() {
    let _serial = support::serial();
    let blocks = blocks();
    assert_eq!(blocks.len(), 6, "the marked blocks of Try it");
    for (port, what) in [
        (19092, "the walkthrough broker"),
        (9464, "the agent's HTTP listener"),
    ] {
        assert!(
            !in_use(port),
            "port {port} ({what}) is in use: stop what listens there (scripts/kafka-broker.sh stop)"
        );
    }
    let mut script = String::from("set -eu\n");
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!(
            "echo '=== walkthrough block {}' >&2\n{b}\n",
            i + 1
        ));
    }
    script.push_str("echo '=== walkthroughs done' >&2\n");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KAFKA_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("bash");
    let _cleanup = Cleanup(child.id());
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    if status.is_none() {
        kill_group("KILL", child.id());
        let _ = child.wait();
    }
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    let context = format!("--- stdout\n{out}\n--- stderr\n{err}");
    assert!(
        status.is_some(),
        "the walkthroughs did not finish in 10 minutes\n{context}"
    );
    assert!(status.unwrap().success(), "a walkthrough failed\n{context}");
    assert!(err.contains("=== walkthroughs done"), "{context}");

    let commands: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.contains("rollbackd.command/v1"))
        .map(|l| serde_json::from_str(l).expect("a command is one JSON line"))
        .collect();
    let of = |deploy: &str| -> Vec<&serde_json::Value> {
        commands
            .iter()
            .filter(|c| c["deploy_id"] == deploy)
            .collect()
    };
    // Replay: the bad canary of the recording, not the healthy one.
    assert_eq!(of("d-checkout").len(), 1, "{context}");
    assert_eq!(of("d-checkout")[0]["decided_at"], "2026-11-26T12:00:10Z");
    assert!(of("d-search").is_empty(), "{context}");
    let report = std::fs::read_to_string("/tmp/rollbackd-replay-report.html").unwrap();
    assert!(
        report.contains("data-deploy-id=\"d-checkout\"")
            && report.contains("data-deploy-id=\"d-search\""),
        "the replay report"
    );
    // No deploy events: only the bad version found in the telemetry, the
    // revert fast-tracked.
    assert_eq!(of("inferred:shop:prod:v4").len(), 1, "{context}");
    let c = of("inferred:shop:prod:v4")[0];
    assert_eq!(c["decided_at"], "2026-11-26T12:15:30Z");
    assert_eq!(
        (&c["to_version"], &c["strategy"]),
        (&"v2".into(), &"inferred".into())
    );
    assert!(
        commands
            .iter()
            .all(|c| c["service"] != "shop" || c["deploy_id"] == "inferred:shop:prod:v4"),
        "{context}"
    );
    let started: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("\"event\":\"deploy.started\""))
        .collect();
    assert_eq!(started.len(), 4, "{context}");
    assert!(
        started[2].contains("inferred:shop:prod:v2@") && started[2].contains("\"how\":\"watched\""),
        "{context}"
    );
    // Without Kafka: a burn-rate decision, then an alert's (d-8 is printed
    // by `cat` and again by `tail -n 1`).
    assert_eq!(of("d-7").len(), 1, "{context}");
    assert_eq!(of("d-7")[0]["trigger"], "burn_rate");
    assert!(!of("d-8").is_empty(), "{context}");
    assert!(of("d-8").iter().all(|c| c["trigger"] == "alert"));
    // Against Kafka: tail printed the command, labels and all.
    assert_eq!(of("d-42").len(), 1, "{context}");
    let c = of("d-42")[0];
    assert_eq!(c["trigger"], "burn_rate");
    assert_eq!(c["labels"]["team"], "payments");
    assert_eq!(c["strategy"], "canary");
    // Executing: the dry run's plan, then the executor's result.
    let line = |key: &str| -> serde_json::Value {
        let l = out
            .lines()
            .find(|l| l.contains(key))
            .unwrap_or_else(|| panic!("no {key} line\n{context}"));
        serde_json::from_str(l).unwrap()
    };
    let plan = line("would_run");
    assert_eq!(plan["deploy_id"], "d-42");
    assert_eq!(
        plan["would_run"],
        serde_json::json!(["echo", "rolling back", "checkout", "in", "prod", "to", "v1"])
    );
    let result = line("\"status\":\"succeeded\"");
    assert_eq!(result["deploy_id"], "d-42");
    assert_eq!(result["command_id"], c["command_id"]);
    assert_eq!(result["message"], "echo exited 0");
    // Everything stopped again.
    assert!(!in_use(19092) && !in_use(9464), "{context}");
}
