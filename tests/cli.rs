//! Black-box tests of the command line: config checking, the demo,
//! simulate, and replay's handling of its arguments.

use std::process::Command;

/// `rollbackd ARGS` with the webhook token set, as `run` is started.
fn rollbackd(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .env("ROLLBACKD_WEBHOOK_TOKEN", "hook-secret")
        .output()
        .expect("run rollbackd");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(name: &str, body: &str) -> String {
    let dir = std::env::temp_dir().join(format!("rollbackd-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_configs_are_valid_and_described() {
    for file in [
        "config/rollbackd.toml",
        "config/demo.toml",
        "examples/rollbackd.toml",
        "examples/sidecar.toml",
    ] {
        let (code, out, err) = rollbackd(&["check-config", "--config", &repo(file)]);
        assert_eq!(code, 0, "{file}: {err}");
        assert!(out.contains("policy (default):"), "{out}");
        assert!(
            out.contains("window: short 1m long 5m burn_rate 14.4"),
            "{out}"
        );
    }
}

#[test]
fn check_config_prints_each_service_policy() {
    let p = write(
        "services.toml",
        "[slo.services.checkout]\nobjective = 0.9995\ndry_run = true\n[slo.services.search]\nlatency_threshold = \"250ms\"\n",
    );
    let (code, out, _) = rollbackd(&["check-config", "--config", &p]);
    assert_eq!(code, 0);
    assert!(out.contains("policy checkout:"));
    assert!(out.contains("objective 0.9995"));
    assert!(out.contains("policy search:"));
    assert!(out.contains("faster than 250ms"));
    assert!(out.contains("dry_run: true"));
}

#[test]
fn invalid_config_names_the_key_and_exits_2() {
    for (body, key) in [
        ("[slo]\nobjectiv = 0.9\n", "objectiv"),
        ("[slo]\nobjective = 2\n", "slo.objective"),
        ("[guards]\ncooldown = \"ten minutes\"\n", "cooldown"),
        ("[slo.services.a]\nwindows = []\n", "slo.services.a.windows"),
        ("[topics]\ncommands = \"otlp_spans\"\n", "topics.commands"),
        ("not toml at all [", "TOML"),
    ] {
        let p = write("bad.toml", body);
        for cmd in ["check-config", "replay"] {
            let mut args = vec![cmd, "--config", &p];
            if cmd == "replay" {
                args.extend(["--input", "/nonexistent"]);
            }
            let (code, out, err) = rollbackd(&args);
            assert_eq!(code, 2, "{cmd} {body:?}: {err}");
            assert!(out.is_empty());
            assert!(err.contains(key), "{body:?}: {err}");
        }
    }
    let (code, _, err) = rollbackd(&["check-config", "--config", "/nonexistent.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config"));
}

#[test]
fn replay_of_a_missing_file_fails_clearly() {
    let p = write("empty.toml", "");
    let (code, out, err) = rollbackd(&["replay", "--config", &p, "--input", "/nonexistent.jsonl"]);
    assert_eq!(code, 1);
    assert!(out.is_empty());
    assert!(err.contains("cannot open /nonexistent.jsonl"), "{err}");
}

#[test]
fn demo_catches_the_bad_deploy_and_leaves_the_good_one() {
    let (code, out, err) = rollbackd(&["demo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DECISION at"), "{out}");
    assert!(out.contains("\"deploy_id\": \"d-demo-2\""));
    assert!(!out.contains("\"deploy_id\": \"d-demo-1\""));
    let summary = out.lines().last().unwrap();
    assert!(
        summary.starts_with("summary: d-demo-1 (v42) left alone"),
        "{summary}"
    );
    assert!(summary.contains("d-demo-2 (v43) caught"), "{summary}");
    assert!(
        summary.ends_with("1 command(s) that would be published"),
        "{summary}"
    );
}

#[test]
fn demo_calls_nothing_healthy_that_burns_over_its_threshold() {
    let (_, out, _) = rollbackd(&["demo"]);
    // The bad canary's lines before the decision: burning, not decided yet.
    let bad = out.split("deploy d-demo-2").nth(1).unwrap();
    let before: Vec<&str> = bad
        .lines()
        .take_while(|l| !l.contains("DECISION"))
        .filter(|l| l.contains(" rps "))
        .collect();
    assert!(before.len() >= 2, "{bad}");
    for line in &before[..before.len() - 1] {
        assert!(line.ends_with("→ watching: not yet confident"), "{line}");
    }
    assert!(before[before.len() - 1].ends_with("→ rollback"), "{bad}");
    // The healthy canary stays healthy.
    let good = out.split("deploy d-demo-1").nth(1).unwrap();
    let good = good.split("deploy d-demo-2").next().unwrap();
    assert!(!good.contains("watching"), "{good}");
    assert!(good.contains("→ healthy"), "{good}");
}

#[test]
fn demo_says_how_soon_it_caught_the_bad_canary() {
    let (_, out, _) = rollbackd(&["demo"]);
    let summary = out.lines().last().unwrap();
    let secs: u64 = summary
        .split("caught ")
        .nth(1)
        .and_then(|s| s.split('s').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(secs <= 15, "caught {secs}s after it started");
}

#[test]
fn simulate_reports_a_grid_as_table_and_json() {
    let grid = write(
        "grid.toml",
        "runs = 20\nduration = \"10m\"\nevaluation_interval = \"1s\"\n[[rows]]\nname = \"bad\"\ncanary_rps = [10]\nbaseline_rps = [90]\nbaseline_bad = [0.0005]\ncandidate_bad = [1.0]\n[[rows]]\nname = \"healthy\"\ncanary_rps = [10]\ncanary_share = 0.1\nbaseline_bad = [0.0005]\n",
    );
    let cfg = repo("config/rollbackd.toml");
    let args = ["simulate", "--config", &cfg, "--grid", &grid, "--seed", "9"];
    let (code, table, err) = rollbackd(&args);
    assert_eq!(code, 0, "{err}");
    assert!(table.starts_with("row "), "{table}");
    // Its columns are named in words, and a key under it says what they mean.
    let header = table.lines().next().unwrap();
    for words in [
        "baseline bad",
        "canary bad",
        "P(rollback)",
        "upper 95%",
        "decided p50",
        "oracle",
        "p50/oracle",
    ] {
        assert!(header.contains(words), "{header}");
    }
    assert!(
        table.contains("\nP(rollback): the share of runs rolled back"),
        "{table}"
    );
    assert!(err.contains("2 grid points, 40 deploys"), "{err}");
    let (code, json, _) = rollbackd(&[&args[..], &["--json"]].concat());
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let points = v["points"].as_array().unwrap();
    assert_eq!(points[0]["rollbacks"], 20);
    assert_eq!(points[0]["time_to_decision"]["p50"], 5.0);
    // Beside the bad point, the oracle test that knows its fault's size:
    // 100 % errors against 0.6 % take it under one request; the median
    // waited for the 5 s warm-up.
    let oracle = &points[0]["oracle"];
    assert!(oracle["requests"].as_f64().unwrap() < 1.0, "{oracle}");
    assert!((oracle["threshold"].as_f64().unwrap() - 0.006).abs() < 1e-12);
    assert_eq!(oracle["warmup_bound"], true);
    assert_eq!(points[1]["healthy"], true);
    assert_eq!(points[1]["rollbacks"], 0);
    assert!(points[1]["oracle"].is_null());
    // Deterministic by seed.
    let (_, again, _) = rollbackd(&[&args[..], &["--json"]].concat());
    assert_eq!(json, again);
    // A bad grid is an error naming the key, exit 2.
    let bad = write(
        "badgrid.toml",
        "[[rows]]\ncanary_rps = [10]\nbaseline_bad = [1.5]\n",
    );
    let (code, out, err) = rollbackd(&["simulate", "--config", &cfg, "--grid", &bad]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("rows[0].baseline_bad"), "{err}");
    let (code, _, err) = rollbackd(&["simulate", "--config", &cfg, "--grid", "/nonexistent.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read grid /nonexistent.toml"), "{err}");
}

#[test]
fn announce_validates_before_sending() {
    let cfg = write("nobroker.toml", "[kafka]\nbrokers = \"127.0.0.1:1\"\n");
    let (code, out, err) = rollbackd(&[
        "announce",
        "started",
        "--deploy-id",
        "d-1",
        "--service",
        "s",
        "--version",
        "v2",
        "--data-migration",
        "sometimes",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("--data-migration"), "{err}");
    let (code, _, err) = rollbackd(&[
        "announce",
        "started",
        "--deploy-id",
        "d-1",
        "--service",
        "s",
        "--version",
        "v2",
        "--label",
        "novalue",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let (code, _, err) = rollbackd(&[
        "announce",
        "started",
        "--deploy-id",
        "d-1",
        "--service",
        "s",
        "--version",
        "v2",
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("--config") && err.contains("--url"), "{err}");
}

#[test]
fn announce_fails_when_nobody_acknowledges() {
    // Nothing listens on port 1: the broker never acknowledges.
    let cfg = write("nobroker2.toml", "[kafka]\nbrokers = \"127.0.0.1:1\"\n");
    let (code, out, err) = rollbackd(&[
        "announce",
        "completed",
        "--deploy-id",
        "d-1",
        "--service",
        "s",
        "--version",
        "v2",
        "--config",
        &cfg,
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(out.is_empty());
    // The address and the key it came from, once.
    assert!(
        err.contains("cannot reach Kafka at 127.0.0.1:1 (kafka.brokers)"),
        "{err}"
    );
    assert_eq!(err.matches("BrokerTransportFailure").count(), 1, "{err}");
    let (code, _, err) = rollbackd(&[
        "announce",
        "completed",
        "--deploy-id",
        "d-1",
        "--service",
        "s",
        "--version",
        "v2",
        "--url",
        "http://127.0.0.1:1",
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot POST to http://127.0.0.1:1/v1/deploy-events"),
        "{err}"
    );
}

/// The flags `rollbackd SUBCOMMAND --help` lists, without `--help`.
fn help_flags(sub: &str) -> std::collections::BTreeSet<String> {
    let (code, out, err) = rollbackd(&[sub, "--help"]);
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("--") || l.starts_with("-h, --"))
        .filter_map(|l| l.trim_start_matches("-h, ").split_whitespace().next())
        .map(|f| f.to_string())
        .filter(|f| f != "--help")
        .collect()
}

/// The README's command table names every subcommand and every flag that
/// `--help` shows, and nothing else; every option has a help line.
#[test]
fn the_readme_command_table_matches_the_help() {
    let (_, top, _) = rollbackd(&["--help"]);
    let subcommands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect();
    assert!(subcommands.len() >= 8, "{top}");
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let table: Vec<&str> = readme
        .lines()
        .skip_while(|l| *l != "## Commands")
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `rollbackd "))
        .collect();
    let mut documented = Vec::new();
    for row in &table {
        let cell = row.split("` |").next().unwrap();
        let sub = cell.split_whitespace().nth(2).unwrap().to_string();
        let flags: std::collections::BTreeSet<String> = cell
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.starts_with("--"))
            .map(String::from)
            .collect();
        assert_eq!(flags, help_flags(&sub), "README row of {sub}: {row}");
        documented.push(sub);
    }
    assert_eq!(documented, subcommands, "README rows, in --help's order");
    for sub in &subcommands {
        let (_, help, _) = rollbackd(&[sub, "--help"]);
        for l in help.lines().filter(|l| l.trim_start().starts_with("--")) {
            let described = l.trim().split_once("  ").is_some();
            let next_line_described = help
                .lines()
                .skip_while(|x| *x != l)
                .nth(1)
                .is_some_and(|n| n.starts_with("          "));
            assert!(
                described || next_line_described,
                "{sub}: {l} has no help line"
            );
        }
    }
}
