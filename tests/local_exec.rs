//! `rollbackd run` without Kafka, with `[executor]` templates: the commands
//! it prints are executed in the process, once each across restarts (the
//! audit file is the record), and their results start verification.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{http, metric, spans_proto, LocalAgent};

const SLO: &str = "[slo]\nwarmup = \"1s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\nwindows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n";

/// The config after `[audit]`: the SLO and a template appending the
/// deploy id of every rollback to `ran`.
fn extra(ran: &Path) -> String {
    format!(
        "{SLO}[executor]\nname = \"here\"\ntimeout = \"10s\"\n[executor.templates]\ndefault = [\"sh\", \"-c\", 'echo \"$0\" >> {}', \"{{deploy_id}}\"]\n",
        ran.display()
    )
}

/// Deploy `id` of `service` announced (with the fields of `more`), then
/// a bad canary over OTLP/HTTP until its command is printed.
fn bad_canary_with(l: &LocalAgent, id: &str, service: &str, more: Value) -> Value {
    support::post_started(&l.addr, id, service, more);
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        for (v, n, e) in [("v1", 40, 0), ("v2", 20, 3)] {
            let body = spans_proto(service, v, n, e);
            let ct = [("Content-Type", "application/x-protobuf")];
            assert_eq!(http(&l.addr, "POST", "/v1/traces", &ct, &body).0, 200);
        }
        if let Ok(line) = l.stdout.recv_timeout(Duration::from_millis(200)) {
            return serde_json::from_str(&line).unwrap();
        }
    }
    panic!("no command for {id}");
}

fn bad_canary(l: &LocalAgent, id: &str, service: &str) -> Value {
    bad_canary_with(l, id, service, json!({}))
}

/// The audit records of kind `kind`.
fn audits(l: &LocalAgent, kind: &str) -> Vec<Value> {
    std::fs::read_to_string(&l.audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|a| serde_json::from_str::<Value>(a).ok())
        .filter(|a| a["kind"] == kind)
        .collect()
}

/// Waits for the `result` record of `command_id`.
fn result_of(l: &LocalAgent, command_id: &Value) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    while Instant::now() < until {
        let found = audits(l, "result");
        if let Some(r) = found
            .into_iter()
            .find(|r| r["detail"]["command_id"] == *command_id)
        {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no result for {command_id}");
}

fn ran(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_command_is_executed_here_once_across_restarts_and_its_verification_starts() {
    let _serial = support::serial();
    let dir = support::unique_dir("local-exec");
    let ran_file = dir.join("ran");
    let l = LocalAgent::start_in(&dir, "", &extra(&ran_file), &[]);
    let cmd = bad_canary(&l, "d-exec", "checkout");
    assert_eq!(cmd["deploy_id"], "d-exec");
    let r = result_of(&l, &cmd["command_id"]);
    assert_eq!(r["detail"]["status"], "succeeded", "{r}");
    assert_eq!(r["detail"]["executor"], "here", "{r}");
    assert_eq!(ran(&ran_file), ["d-exec"]);
    // The result was applied: the restored version is under verification.
    let (_, text) = http(&l.addr, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric(&text, r#"rollbackd_deploys{state="verifying"}"#),
        1.0,
        "{text}"
    );
    drop(l);

    // Started again with the same audit file, the same deploy's command is
    // printed again (its id is the same) and not executed: a command
    // printed after it is, so it was seen first.
    let l = LocalAgent::start_in(&dir, "", &extra(&ran_file), &[]);
    let again = bad_canary(&l, "d-exec", "checkout");
    assert_eq!(again["command_id"], cmd["command_id"]);
    let other = bad_canary(&l, "d-other", "search");
    let r = result_of(&l, &other["command_id"]);
    assert_eq!(r["detail"]["status"], "succeeded", "{r}");
    assert_eq!(ran(&ran_file), ["d-exec", "d-other"]);
    assert_eq!(audits(&l, "result").len(), 2);
}

#[test]
fn a_failing_template_is_a_failed_result_and_no_verification() {
    let _serial = support::serial();
    let dir = support::unique_dir("local-exec");
    let extra =
        format!("{SLO}[executor.templates]\ndefault = [\"sh\", \"-c\", \"echo no >&2; exit 3\"]\n");
    let l = LocalAgent::start_in(&dir, "", &extra, &[]);
    let cmd = bad_canary(&l, "d-fail", "checkout");
    let r = result_of(&l, &cmd["command_id"]);
    assert_eq!(r["detail"]["status"], "failed", "{r}");
    let (_, text) = http(&l.addr, "GET", "/metrics", &[], b"");
    assert_eq!(
        metric(&text, r#"rollbackd_deploys{state="verifying"}"#),
        0.0,
        "{text}"
    );
}

#[test]
fn executing_here_without_an_audit_file_is_a_config_error_naming_both_keys() {
    let dir = support::unique_dir("local-exec");
    let cfg = dir.join("config.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"127.0.0.1:0\"\nallow_unauthenticated = true\n[executor.templates]\ndefault = [\"true\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["run", "--config"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("audit.path") && stderr.contains("executor.templates"),
        "{stderr}"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["check-config", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&check.stderr).contains("audit.path"));
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_git_strategy_commits_the_rollback_from_run_without_kafka() {
    let _serial = support::serial();
    let dir = support::unique_dir("local-exec-git");
    git(
        &dir,
        &["init", "--quiet", "--bare", "-b", "main", "origin.git"],
    );
    git(&dir, &["clone", "--quiet", "origin.git", "dev"]);
    let dev = dir.join("dev");
    let file = "apps/checkout/prod/kustomization.yaml";
    std::fs::create_dir_all(dev.join("apps/checkout/prod")).unwrap();
    std::fs::write(
        dev.join(file),
        "images:\n- name: shop/checkout\n  newTag: v2\n",
    )
    .unwrap();
    for args in [
        &["checkout", "--quiet", "-b", "main"][..],
        &["add", file],
        &[
            "-c",
            "user.name=ci",
            "-c",
            "user.email=ci@example.com",
            "commit",
            "--quiet",
            "-m",
            "v2",
        ],
        &["push", "--quiet", "origin", "main"],
    ] {
        git(&dev, args);
    }
    let extra = format!(
        "{SLO}[executor]\nwork_dir = \"{}\"\n[executor.git.default]\nrepository = \"{}\"\nfile = \"apps/{{service}}/{{environment}}/kustomization.yaml\"\npattern = \"newTag: {{version}}\"\n",
        dir.join("work").display(),
        dir.join("origin.git").display()
    );
    let l = LocalAgent::start_in(&dir, "", &extra, &[]);
    let cmd = bad_canary_with(&l, "d-git", "checkout", json!({"environment": "prod"}));
    let r = result_of(&l, &cmd["command_id"]);
    assert_eq!(r["detail"]["status"], "succeeded", "{r}");
    let bare = dir.join("origin.git");
    assert!(git(&bare, &["show", &format!("main:{file}")]).contains("newTag: v1"));
    let message = git(&bare, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains(cmd["command_id"].as_str().unwrap()),
        "{message}"
    );
}
