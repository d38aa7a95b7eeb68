//! Checks on `deploy/`: every metric the dashboard and the alert rules query
//! is one rollbackd exports, the in-cluster config is valid, the dashboard
//! is JSON, and every kustomization lists files that exist.

use std::path::{Path, PathBuf};

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy")
}

fn metric_tokens(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("rollbackd_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-' || c == '/' || c == '.') {
            out.push(tail[..end].to_string());
        }
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboards_and_rules_query_only_exported_metrics() {
    let names = rollbackd::telemetry::Metrics::new().names();
    let mut all = Vec::new();
    files(&deploy_dir(), &mut all);
    let mut checked = 0;
    for f in all.iter().filter(|f| {
        f.extension().is_some_and(|e| e == "json")
            || f.file_name().is_some_and(|n| n == "prometheusrule.yaml")
    }) {
        let text = std::fs::read_to_string(f).unwrap();
        for m in metric_tokens(&text) {
            assert!(
                names.contains(&m),
                "{}: {m} is not a rollbackd metric ({names:?})",
                f.display()
            );
            checked += 1;
        }
    }
    assert!(checked > 10, "found only {checked} metric references");
}

#[test]
fn dashboard_is_json_and_config_is_valid() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("grafana/rollbackd-dashboard.json")).unwrap(),
    )
    .unwrap();
    assert!(dash["panels"].as_array().unwrap().len() >= 10);
    rollbackd::config::Config::load(&deploy_dir().join("kubernetes/base/rollbackd.toml")).unwrap();
}

#[test]
fn kustomizations_list_files_that_exist() {
    let mut all = Vec::new();
    files(&deploy_dir().join("kubernetes"), &mut all);
    let mut seen = 0;
    for k in all
        .iter()
        .filter(|f| f.file_name().is_some_and(|n| n == "kustomization.yaml"))
    {
        let dir = k.parent().unwrap();
        let text = std::fs::read_to_string(k).unwrap();
        for line in text.lines() {
            let item = line.trim().strip_prefix("- ").unwrap_or("");
            let item = item.trim();
            if item.ends_with(".yaml") || item.ends_with(".toml") || item.starts_with("../") {
                let p = dir.join(item.trim_start_matches("path: "));
                assert!(
                    p.exists(),
                    "{}: {} does not exist",
                    k.display(),
                    p.display()
                );
                seen += 1;
            }
        }
    }
    assert!(seen >= 7);
}

/// The rules of the `PrometheusRule` resource, as a plain rules file.
fn rules_file() -> String {
    let text =
        std::fs::read_to_string(deploy_dir().join("kubernetes/base/prometheusrule.yaml")).unwrap();
    let spec = text.split_once("\nspec:\n").expect("a spec").1;
    spec.lines()
        .map(|l| l.strip_prefix("  ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn alert_rules_pass_promtool() {
    let dir = std::env::temp_dir().join(format!("rollbackd-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let rules = dir.join("rules.yml");
    std::fs::write(&rules, rules_file()).unwrap();
    let out = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("promtool (Debian package prometheus; scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("5 rules found"));
}
