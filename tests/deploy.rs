//! Checks on `deploy/`: every metric the dashboard and the alert rules query
//! is one rollbackd exports, the in-cluster config is valid, the dashboard
//! is JSON, the rules pass `promtool`, and scripts/check-manifests.py (YAML
//! parses, kustomizations build, the objects fit together) passes — and
//! fails on broken copies.

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
    let names = rollbackd::metrics::Metrics::new().names();
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
fn dashboard_shows_the_rollback_measures_in_its_executive_and_on_call_rows() {
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(deploy_dir().join("grafana/rollbackd-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dash["panels"].as_array().unwrap();
    let rows: Vec<&str> = panels
        .iter()
        .filter(|p| p["type"] == "row")
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert!(
        rows.len() == 2 && rows[0].starts_with("Executive") && rows[1].starts_with("On call"),
        "{rows:?}"
    );
    // The executive row: one panel per measure, M1 to M7, above the on-call row.
    let on_call_y = panels.iter().find(|p| p["title"] == rows[1]).unwrap()["gridPos"]["y"]
        .as_i64()
        .unwrap();
    let executive: Vec<&serde_json::Value> = panels
        .iter()
        .filter(|p| p["type"] != "row" && p["gridPos"]["y"].as_i64().unwrap() < on_call_y)
        .collect();
    for (m, series) in [
        ("M1", "rollbackd_time_to_detect_seconds_bucket"),
        ("M2", "rollbackd_detection_seconds_bucket"),
        ("M3", "rollbackd_time_to_rollback_seconds_bucket"),
        ("M4", "rollbackd_time_to_recover_seconds_bucket"),
        ("M5", "rollbackd_results_total"),
        ("M5", "rollbackd_rollback_verifications_total"),
        ("M6", "rollbackd_rollback_sli_delta_bucket"),
        ("M7", "rollbackd_deploys_started_total"),
    ] {
        assert!(
            executive
                .iter()
                .any(|p| p["title"].as_str().unwrap().starts_with(m)
                    && p["targets"].to_string().contains(series)),
            "no executive panel {m} on {series}"
        );
    }
}

/// scripts/check-manifests.py, with the test virtualenv's PyYAML.
fn check_manifests(args: &[&str]) -> (bool, String) {
    let python = Path::new(
        &std::env::var("ROLLBACKD_TOOLS").unwrap_or_else(|_| "/var/tmp/rollbackd-tools".into()),
    )
    .join("venv/bin/python");
    assert!(
        python.exists(),
        "the Python virtualenv is missing: run scripts/deps.sh (the test command does)"
    );
    let out = std::process::Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-manifests.py"))
        .args(["--rollbackd", env!("CARGO_BIN_EXE_rollbackd")])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn manifests_build_and_fit_together() {
    // kubectl kustomize where kubectl is installed, and the structural build.
    let (ok, text) = check_manifests(&[]);
    assert!(ok, "{text}");
    assert!(text.contains("manifests OK"), "{text}");
    // The structural build alone, as on a machine without kubectl.
    let (ok, text) = check_manifests(&["--no-kubectl"]);
    assert!(ok, "{text}");
    assert!(
        text.contains("deploy/kubernetes/daemonset: structural build"),
        "{text}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dest = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &dest);
        } else {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

#[test]
fn manifest_check_finds_broken_manifests() {
    let breakages: [(&str, &str, &str, &str); 9] = [
        (
            "kubernetes/base/deployment.yaml",
            "path: /readyz",
            "path: /ready",
            "readinessProbe path /ready, want /readyz",
        ),
        (
            "kubernetes/base/kustomization.yaml",
            "  - pdb.yaml\n",
            "  - pdb.yaml\n  - missing.yaml\n",
            "resource missing.yaml does not exist",
        ),
        (
            "kubernetes/base/rollbackd.toml",
            "0.0.0.0:9464",
            "127.0.0.1:9464",
            "is loopback; kubelet probes the pod IP",
        ),
        (
            "kubernetes/base/prometheusrule.yaml",
            "summary: malformed input",
            "summary: malformed: input",
            "YAML does not parse",
        ),
        (
            "otel-collector/collector.yaml",
            "topic: otlp_spans",
            "topic: spans",
            "traces topic spans is not rollbackd's otlp_spans",
        ),
        (
            "kubernetes/gate/analysistemplate.yaml",
            "inconclusiveLimit: 40",
            "inconclusiveLimit: 0",
            "an inconclusiveLimit of at least it",
        ),
        (
            "kubernetes/gate/analysistemplate.yaml",
            "failureCondition: result == \"fail\"",
            "failureCondition: result == \"wait\"",
            "failureCondition result == \"fail\"",
        ),
        (
            "kubernetes/gate/canary.yaml",
            "token: \"${ROLLBACKD_WEBHOOK_TOKEN}\"",
            "token: \"s3cret\"",
            "metadata.token must be the placeholder",
        ),
        (
            "kubernetes/gate/canary.yaml",
            "          type: confirm-promotion",
            "          type: rollout",
            "webhook rollbackd-promotion: metadata.type must repeat its type",
        ),
    ];
    for (i, (file, from, to, want)) in breakages.iter().enumerate() {
        let dir = std::env::temp_dir()
            .join(format!("rollbackd-manifests-{}-{i}", std::process::id()))
            .join("deploy");
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&deploy_dir(), &dir);
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
        let (ok, out) = check_manifests(&["--no-kubectl", "--deploy", dir.to_str().unwrap()]);
        assert!(!ok, "{file}: {from:?} -> {to:?} passed:\n{out}");
        assert!(out.contains(want), "{file}: want {want:?} in:\n{out}");
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }
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
    let count = rules_file().matches("- alert:").count();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{count} rules found")));
}

/// The Dockerfile's build stage copies everything `cargo build --bin
/// rollbackd` reads: the manifest, the sources, what they `include_str!`,
/// and the declared bench targets (Cargo checks they exist).
#[test]
fn dockerfile_copies_what_the_build_reads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let docker = std::fs::read_to_string(deploy_dir().join("Dockerfile")).unwrap();
    // The text between the first `FROM` (the build stage) and the next.
    let build_stage = docker.split("\nFROM ").nth(1).unwrap();
    let copied: Vec<String> = build_stage
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .flat_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            parts[..parts.len() - 1]
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    let covered = |rel: &Path| copied.iter().any(|c| rel.starts_with(c));
    let mut needed = vec![PathBuf::from("Cargo.toml"), PathBuf::from("Cargo.lock")];
    let mut sources = Vec::new();
    files(&root.join("src"), &mut sources);
    for f in sources {
        let rel = f.strip_prefix(root).unwrap().to_path_buf();
        let text = std::fs::read_to_string(&f).unwrap();
        for (i, _) in text.match_indices("include_str!(\"") {
            let arg = &text[i + "include_str!(\"".len()..];
            let arg = &arg[..arg.find('"').unwrap()];
            let mut p = rel.parent().unwrap().to_path_buf();
            for part in Path::new(arg).components() {
                match part {
                    std::path::Component::ParentDir => {
                        p.pop();
                    }
                    c => p.push(c),
                }
            }
            needed.push(p);
        }
        needed.push(rel);
    }
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for line in manifest.lines() {
        if let Some(name) = line
            .strip_prefix("name = \"")
            .and_then(|n| n.strip_suffix('"'))
        {
            if root.join("benches").join(format!("{name}.rs")).exists() {
                needed.push(PathBuf::from(format!("benches/{name}.rs")));
            }
        }
    }
    assert!(root.join("build.rs").exists() == covered(Path::new("build.rs")));
    for n in &needed {
        assert!(
            covered(n),
            "deploy/Dockerfile does not copy {} (copies {copied:?})",
            n.display()
        );
    }
    assert!(needed.len() > 20);
}

/// Every snippet the README quotes from `deploy/` (marked
/// `<!-- quote: PATH -->` before the fenced block) is a run of whole lines
/// of that file, every YAML or TOML block of "Deploying" is such a quote,
/// and the quotes cover each kind of deployment material.
#[test]
fn readme_quotes_deploy_files_exactly() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut quoted = Vec::new();
    let mut rest = readme.as_str();
    while let Some(i) = rest.find("<!-- quote: ") {
        let after = &rest[i + "<!-- quote: ".len()..];
        let path = &after[..after.find(" -->").unwrap()];
        let fence = after.find("\n```").unwrap();
        let body_start = fence + after[fence + 1..].find('\n').unwrap() + 2;
        let body_len = after[body_start..].find("```\n").unwrap();
        let body = &after[body_start..body_start + body_len];
        let file = std::fs::read_to_string(root.join(path))
            .unwrap_or_else(|e| panic!("README quotes {path}: {e}"));
        assert!(
            format!("\n{file}").contains(&format!("\n{body}")),
            "README's quote of {path} is not in the file:\n{body}"
        );
        assert!(
            body.lines().count() >= 3,
            "{path}: a quote this short says little"
        );
        quoted.push(path.to_string());
        rest = &after[body_start + body_len..];
    }
    for want in [
        "deploy/kubernetes/base/kustomization.yaml",
        "deploy/kubernetes/base/deployment.yaml",
        "deploy/kubernetes/daemonset/kustomization.yaml",
        "deploy/kubernetes/sidecar/collector-with-rollbackd.yaml",
        "deploy/kubernetes/executor/executor.toml",
        "deploy/kubernetes/base/prometheusrule.yaml",
        "deploy/alertmanager/alertmanager.yml",
        "deploy/otel-collector/collector.yaml",
    ] {
        assert!(
            quoted.iter().any(|q| q == want),
            "README does not quote {want}"
        );
    }
    let deploying = &readme[readme.find("\n## Deploying\n").unwrap()..];
    let deploying = &deploying[..deploying[1..].find("\n## ").unwrap()];
    for block in ["```yaml\n", "```toml\n"] {
        assert_eq!(
            deploying.matches(block).count(),
            deploying.matches(&format!(" -->\n{block}")).count(),
            "every {block:?} block of Deploying is a marked quote"
        );
    }
}
