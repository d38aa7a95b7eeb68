//! Closed by default, and loud when not: `run` and `check-config` refuse a
//! config whose webhook routes would serve anyone; routes that change
//! state take no body a web page could send cross-origin; a deploy event
//! from a wrong clock is refused; a closed stdout ends a command quietly.

mod support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::{http, rfc3339_now, unique_dir, LocalAgent};

const TOKEN: &str = "hook-secret";
const ADMIN: &str = "admin-secret";

fn config(body: &str) -> std::path::PathBuf {
    let p = unique_dir("closed").join("config.toml");
    std::fs::write(&p, body).unwrap();
    p
}

/// `rollbackd ARGS` with only `env` of the webhook and admin tokens set:
/// (exit code, stdout, stderr).
fn rollbackd(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .env_remove("ROLLBACKD_WEBHOOK_TOKEN")
        .env_remove("ROLLBACKD_ADMIN_TOKEN")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run rollbackd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn run_and_check_config_refuse_open_webhook_routes() {
    let cfg = config("[http]\nlisten = \"127.0.0.1:0\"\n");
    let cfg = cfg.to_str().unwrap();
    for cmd in ["run", "check-config"] {
        let (code, out, err) = rollbackd(&[cmd, "--config", cfg], &[]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(out.is_empty(), "{out}");
        for named in ["ROLLBACKD_WEBHOOK_TOKEN", "http.allow_unauthenticated"] {
            assert!(err.contains(named), "{cmd} does not name {named}: {err}");
        }
        assert!(
            !err.contains("http listening"),
            "{cmd} opened a socket: {err}"
        );
    }
    // With the token: valid, and said so without showing it.
    let (code, out, err) = rollbackd(
        &["check-config", "--config", cfg],
        &[("ROLLBACKD_WEBHOOK_TOKEN", TOKEN)],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("webhook routes: bearer token from ROLLBACKD_WEBHOOK_TOKEN (set)"),
        "{out}"
    );
    assert!(out.contains("admin routes: disabled"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    // Opened on purpose: valid, and said loudly.
    let open = config("[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n");
    let (code, out, err) = rollbackd(&["check-config", "--config", open.to_str().unwrap()], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("webhook routes: OPEN"), "{out}");
}

#[test]
fn check_config_checks_the_env_vars_run_checks_and_lists_the_sinks() {
    let cfg = config(
        "[[notify]]\nkind = \"webhook\"\nname = \"pager\"\nurl = \"http://127.0.0.1:1/hook\"\nsecret_env = \"ROLLBACKD_TEST_CLOSED_SECRET\"\n",
    );
    let cfg = cfg.to_str().unwrap();
    let token = ("ROLLBACKD_WEBHOOK_TOKEN", TOKEN);
    for cmd in ["check-config", "run"] {
        let (code, _, err) = rollbackd(&[cmd, "--config", cfg], &[token]);
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(err.contains("notify[0].secret_env"), "{cmd}: {err}");
        assert!(err.contains("ROLLBACKD_TEST_CLOSED_SECRET"), "{cmd}: {err}");
    }
    let (code, out, err) = rollbackd(
        &["check-config", "--config", cfg],
        &[token, ("ROLLBACKD_TEST_CLOSED_SECRET", "s3cret")],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("notify pager: webhook events"), "{out}");
    assert!(out.contains("signed"), "{out}");
    assert!(!out.contains("s3cret"), "{out}");
}

/// An agent started with `allow_unauthenticated` says so at start and on
/// its status.
#[test]
fn open_webhook_routes_are_announced() {
    let cfg = config(
        "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\nstatus_public = true\n",
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env_remove("ROLLBACKD_WEBHOOK_TOKEN")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut before = String::new();
    let addr = loop {
        let mut l = String::new();
        assert!(err.read_line(&mut l).unwrap() > 0, "exited: {before}");
        before.push_str(&l);
        if let Some(a) = l.split("addr=").nth(1) {
            break a.split_whitespace().next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in err.lines() {});
    assert!(
        before.contains("webhook routes are open to anyone"),
        "{before}"
    );
    let (code, body) = http(&addr, "GET", "/v1/status", &[], b"");
    assert_eq!(code, 200, "{body}");
    let status: Value = serde_json::from_str(&body).unwrap();
    let warnings = status["warnings"].as_array().unwrap();
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("allow_unauthenticated")),
        "{status}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// An agent without Kafka, with both tokens set.
fn with_tokens() -> LocalAgent {
    LocalAgent::start(
        "",
        "",
        &[
            ("ROLLBACKD_WEBHOOK_TOKEN", TOKEN),
            ("ROLLBACKD_ADMIN_TOKEN", ADMIN),
        ],
    )
}

fn started(id: &str, at: &str) -> Vec<u8> {
    json!({"type": "deploy.started", "deploy_id": id, "service": "checkout", "version": "v2",
           "previous_version": "v1", "at": at})
    .to_string()
    .into_bytes()
}

/// What a web page can send cross-origin without a preflight: a body as
/// `text/plain`, a form, or no content type — never taken by a route that
/// changes anything, even with the right token (a page cannot add one, but
/// nothing here relies on that alone).
#[test]
fn routes_that_change_state_take_only_their_media_types() {
    let agent = with_tokens();
    let addr = &agent.addr;
    let bearer = format!("Bearer {TOKEN}");
    let admin = format!("Bearer {ADMIN}");
    let event = started("d-cors", &rfc3339_now());
    for path in ["/v1/deploy-events", "/v1/alerts/alertmanager"] {
        for ct in [
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("multipart/form-data; boundary=x"),
            None,
        ] {
            // Without the token: refused before anything is read.
            let mut headers = Vec::new();
            if let Some(ct) = ct {
                headers.push(("Content-Type", ct));
            }
            assert_eq!(http(addr, "POST", path, &headers, &event).0, 401, "{path}");
            headers.push(("Authorization", bearer.as_str()));
            let (code, body) = http(addr, "POST", path, &headers, &event);
            assert_eq!(code, 415, "{path} {ct:?}: {body}");
            assert!(body.contains("application/json"), "{body}");
        }
    }
    for path in ["/v1/traces", "/v1/metrics"] {
        for ct in [Some("text/plain"), None] {
            let mut headers = vec![("Authorization", bearer.as_str())];
            if let Some(ct) = ct {
                headers.push(("Content-Type", ct));
            }
            assert_eq!(http(addr, "POST", path, &headers, b"{}").0, 415, "{path}");
        }
    }
    let (code, _) = http(
        addr,
        "POST",
        "/v1/automation/pause",
        &[
            ("Authorization", admin.as_str()),
            ("Content-Type", "text/plain"),
        ],
        br#"{"actor":"mallory"}"#,
    );
    assert_eq!(code, 415);
    // Nothing of them was applied.
    let (code, body) = http(
        addr,
        "GET",
        "/v1/deploys",
        &[("Authorization", admin.as_str())],
        b"",
    );
    assert_eq!(code, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!([]));
    let (_, body) = http(
        addr,
        "GET",
        "/v1/status",
        &[("Authorization", admin.as_str())],
        b"",
    );
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["automation"]["paused"], false);
    assert_eq!(status["warnings"], json!([]));
    // The same event as JSON is taken.
    let json = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json; charset=utf-8"),
    ];
    assert_eq!(
        http(addr, "POST", "/v1/deploy-events", &json, &event).0,
        200
    );
}

/// A deploy event from a clock years ahead is malformed (400, audited) and
/// does not hold the service: the real deploy that follows is taken.
#[test]
fn a_deploy_from_a_wrong_clock_is_refused_and_holds_nothing() {
    let agent = with_tokens();
    let addr = &agent.addr;
    let bearer = format!("Bearer {TOKEN}");
    let json = [
        ("Authorization", bearer.as_str()),
        ("Content-Type", "application/json"),
    ];
    let (code, body) = http(
        addr,
        "POST",
        "/v1/deploy-events",
        &json,
        &started("d-2031", "2031-01-01T00:00:00Z"),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("limits.max_clock_skew"), "{body}");
    let (code, body) = http(
        addr,
        "POST",
        "/v1/deploy-events",
        &json,
        &started("d-now", &rfc3339_now()),
    );
    assert_eq!(code, 200, "{body}");
    let admin = format!("Bearer {ADMIN}");
    let (_, body) = http(
        addr,
        "GET",
        "/v1/deploys",
        &[("Authorization", admin.as_str())],
        b"",
    );
    let deploys: Value = serde_json::from_str(&body).unwrap();
    let ids: Vec<&str> = deploys
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["deploy_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["d-now"]);
    let (_, body) = http(
        addr,
        "GET",
        "/v1/audit?limit=100",
        &[("Authorization", admin.as_str())],
        b"",
    );
    let audit: Value = serde_json::from_str(&body).unwrap();
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "malformed"
                && a["detail"]["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("max_clock_skew")),
        "{audit}"
    );
}

/// `rollbackd … | head`: the reader goes away, the command ends quietly
/// with 0, never a panic (101).
#[test]
fn a_closed_stdout_ends_a_command_quietly() {
    let cfg = config("[http]\nallow_unauthenticated = true\n");
    let cfg = cfg.to_str().unwrap();
    let replay_input = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/recorded.jsonl");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rollbackd.toml");
    for args in [
        vec!["demo"],
        vec!["check-config", "--config", cfg],
        vec!["replay", "--config", example, "--input", replay_input],
    ] {
        // A pipe whose reader is gone before the first write.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(&args)
            .stdout(writer)
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        // And one that reads a little, then goes.
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        let _ = child.stdout.as_mut().unwrap().read(&mut first);
        drop(child.stdout.take());
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}");
    }
}

/// No broker listens: `run` says once what it waits for, and meanwhile
/// its listener answers `/healthz` and says why it is not ready on
/// `/readyz` and the status.
#[test]
fn waiting_for_kafka_is_said_once_and_shown() {
    let port = support::free_port();
    let cfg = config(&format!(
        "[kafka]\nbrokers = \"127.0.0.1:{port}\"\n[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n"
    ));
    let mut child = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("ROLLBACKD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = support::stderr_lines(&mut child);
    let mut log = String::new();
    let addr = loop {
        let l = lines
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("a log line");
        log.push_str(&l);
        log.push('\n');
        if let Some(a) = l.split("addr=").nth(1) {
            break a.split_whitespace().next().unwrap().to_string();
        }
    };
    // Two reachability checks (10 s each) and more: still said once.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(25);
    let mut readyz = (0, String::new());
    while std::time::Instant::now() < deadline {
        readyz = http(&addr, "GET", "/readyz", &[], b"");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    while let Ok(l) = lines.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    assert_eq!(readyz.0, 503, "{readyz:?}");
    assert!(
        readyz.1.contains(&format!(
            "cannot reach Kafka at 127.0.0.1:{port} (kafka.brokers)"
        )),
        "{readyz:?}"
    );
    assert_eq!(http(&addr, "GET", "/healthz", &[], b"").0, 200);
    let (code, status) = http(&addr, "GET", "/v1/status", &[], b"");
    assert_eq!(code, 503);
    assert!(status.contains("waiting for Kafka"), "{status}");
    assert_eq!(log.matches("waiting for Kafka").count(), 1, "{log}");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
}
