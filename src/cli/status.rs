//! `rollbackd status --url URL`: a running agent's `GET /v1/status` as a
//! table, for an ssh session (or as it is with `--json`).

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use rollbackd::model::summary::printable;
use serde_json::Value;

#[derive(clap::Args)]
pub struct Args {
    /// The agent's HTTP address, e.g. http://127.0.0.1:9464
    #[arg(long, value_name = "URL")]
    url: String,
    /// The env var holding the admin token (not needed with http.status_public)
    #[arg(long, value_name = "VAR", default_value = "ROLLBACKD_ADMIN_TOKEN")]
    token_env: String,
    /// Print the status JSON as it is
    #[arg(long)]
    json: bool,
}

pub fn main(args: Args) -> ExitCode {
    super::finish("status", run(&args))
}

fn run(args: &Args) -> anyhow::Result<()> {
    let url = format!("{}/v1/status", args.url.trim_end_matches('/'));
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut req = client.get(&url);
    if let Some(token) = std::env::var(&args.token_env)
        .ok()
        .filter(|t| !t.is_empty())
    {
        req = req.bearer_auth(token);
    }
    let resp = req.send().with_context(|| format!("cannot reach {url}"))?;
    let code = resp.status();
    let body = resp.text()?;
    if !code.is_success() {
        let said: String = printable(body.trim()).chars().take(300).collect();
        anyhow::bail!(
            "{url} answered {code}: {said} (set {} to the admin token)",
            args.token_env
        );
    }
    let status: Value =
        serde_json::from_str(&body).with_context(|| format!("{url} did not answer JSON"))?;
    let mut out = io::stdout().lock();
    if args.json {
        // Written again from what parsed: nothing but JSON reaches the
        // terminal.
        writeln!(out, "{}", printable(&serde_json::to_string(&status)?))?;
    } else {
        out.write_all(table(&status).as_bytes())?;
    }
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => printable(s),
        Value::Null => "-".into(),
        other => printable(&other.to_string()),
    }
}

/// Rows as aligned columns.
fn columns(rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut s = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// Whose view of a deploy a row is, and how old: `i1 (here)`, `i2 4s
/// old`, `i2 4s old, owner changing`, or `-` before its owner's.
fn view(d: &Value) -> String {
    let age = d["view_age_seconds"].as_f64().unwrap_or(0.0);
    match d["view"].as_str() {
        Some("live") => format!("{} (here)", text(&d["owner"])),
        Some("published") => format!("{} {age:.0}s old", text(&d["owner"])),
        Some("owner changing") => format!("{} {age:.0}s old, owner changing", text(&d["owner"])),
        _ => "-".into(),
    }
}

/// The status as a person reads it.
pub fn table(s: &Value) -> String {
    let a = &s["automation"];
    let mut out = format!(
        "rollbackd {} · {} · {} · {} · {}\n\n",
        text(&s["instance"]),
        if s["ready"] == true {
            "ready".to_string()
        } else {
            format!("NOT READY: {}", text(&s["not_ready"]))
        },
        match (a["paused"] == true, a["breaker_open"] == true) {
            (false, false) => "automation on".to_string(),
            (paused, open) => [
                paused.then(|| format!("PAUSED by {}", text(&a["paused_by"]))),
                open.then(|| format!("BREAKER OPEN since {}", text(&a["breaker_open_since"]))),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", "),
        },
        text(&s["role"]["description"]),
        text(&s["at"]),
    );
    for w in a["maintenance"].as_array().into_iter().flatten() {
        let services = match w["services"].as_array() {
            Some(s) if !s.is_empty() => s.iter().map(text).collect::<Vec<_>>().join(", "),
            _ => "every service".into(),
        };
        out.insert_str(
            out.len() - 1,
            &format!(
                "MAINTENANCE {} until {} ({services}): {}\n",
                text(&w["name"]),
                text(&w["until"]),
                text(&w["reason"])
            ),
        );
    }
    let mut rows = vec![[
        "DEPLOY", "SERVICE", "ENV", "VERSIONS", "AGE", "STATE", "VIEW", "EVIDENCE",
    ]
    .map(String::from)
    .to_vec()];
    for d in s["deploys"].as_array().into_iter().flatten() {
        rows.push(vec![
            text(&d["deploy_id"]),
            text(&d["service"]),
            text(&d["environment"]),
            format!("{} → {}", text(&d["previous_version"]), text(&d["version"])),
            format!("{:.0}s", d["age_seconds"].as_f64().unwrap_or(0.0)),
            text(&d["state"]),
            view(d),
            d["evidence"].as_str().map(printable).unwrap_or_default(),
        ]);
    }
    if rows.len() == 1 {
        out.push_str("no active deploys\n");
    } else {
        out.push_str(&columns(&rows));
    }
    let audit = s["audit"].as_array().map(Vec::as_slice).unwrap_or_default();
    if !audit.is_empty() {
        out.push_str("\nRECENT\n");
        let rows: Vec<Vec<String>> = audit
            .iter()
            .take(15)
            .map(|a| {
                vec![
                    text(&a["at"]),
                    text(&a["kind"]),
                    match a["numbers"].as_str() {
                        Some(n) => format!("{} — {}", text(&a["summary"]), printable(n)),
                        None => text(&a["summary"]),
                    },
                ]
            })
            .collect();
        out.push_str(&columns(&rows));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maintenance_windows_are_listed_under_the_header() {
        let s = serde_json::json!({"instance": "r-0", "ready": true, "at": "2026-12-05T02:30:00Z",
            "role": {"description": "decides for every service"},
            "automation": {"paused": false, "breaker_open": false, "maintenance": [
                {"name": "saturday-patching", "services": [], "until": "2026-12-05T04:00:00Z", "reason": "patching"},
                {"name": "m-1", "services": ["checkout", "billing"], "until": "2026-12-05T03:00:00Z", "reason": "failover"}]},
            "deploys": [], "audit": []});
        let t = table(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("rollbackd r-0 · ready"), "{t}");
        assert_eq!(
            lines[1],
            "MAINTENANCE saturday-patching until 2026-12-05T04:00:00Z (every service): patching"
        );
        assert_eq!(
            lines[2],
            "MAINTENANCE m-1 until 2026-12-05T03:00:00Z (checkout, billing): failover"
        );
        assert_eq!(lines[3], "");
    }
}
