//! The reference in `docs/` checked against the code, so that it cannot
//! drift from what rollbackd does:
//!
//! - every key in `docs/config.md`'s tables is accepted by the config
//!   parser, and a documented default, set explicitly, gives exactly the
//!   configuration of an empty file; every field the parser knows, and
//!   every key of `config/rollbackd.toml`, is documented;
//! - every metric rollbackd exports is in `docs/http.md`, and every metric
//!   named there exists;
//! - every route of the HTTP router is in `docs/http.md`, and every route
//!   named there exists;
//! - every subcommand of `rollbackd --help` has its section in
//!   `docs/cli.md`, with exactly the flags its `--help` lists; the exit
//!   statuses and environment variables named in the code are there;
//! - every audit `kind` (and suppression reason) is in `docs/formats.md`;
//! - every link between the pages (and to the README) points at a heading
//!   that exists.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use rollbackd::config::Config;

const INDEX_MD: &str = include_str!("../docs/README.md");
const CONFIG_MD: &str = include_str!("../docs/config.md");
const HTTP_MD: &str = include_str!("../docs/http.md");
const CLI_MD: &str = include_str!("../docs/cli.md");
const FORMATS_MD: &str = include_str!("../docs/formats.md");
const GUARANTEES_MD: &str = include_str!("../docs/guarantees.md");
const README: &str = include_str!("../README.md");
const EXAMPLE_CONFIG: &str = include_str!("../config/rollbackd.toml");
const ROUTER_SRC: &str = include_str!("../src/http/mod.rs");
const FAILPOINT_SRC: &str = include_str!("../src/runtime/failpoint.rs");

/// The reference pages, by file name.
const PAGES: [(&str, &str); 6] = [
    ("README.md", INDEX_MD),
    ("config.md", CONFIG_MD),
    ("http.md", HTTP_MD),
    ("cli.md", CLI_MD),
    ("formats.md", FORMATS_MD),
    ("guarantees.md", GUARANTEES_MD),
];

// ---------------------------------------------------------------------------
// Markdown helpers.

/// The cells of a table row (`| a | b |`), trimmed; `\|` stays inside a
/// cell. `None` for a line that is not a row.
fn cells(line: &str) -> Option<Vec<String>> {
    let line = line.trim();
    let inner = line.strip_prefix('|')?.strip_suffix('|')?;
    let mut out = Vec::new();
    let mut cell = String::new();
    let mut chars = inner.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'|') => {
                cell.push('|');
                chars.next();
            }
            '|' => out.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    out.push(cell.trim().to_string());
    Some(out)
}

/// The rows of every table of `doc` whose header is `header`.
fn table_rows(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in doc.lines() {
        match cells(line) {
            None => in_table = false,
            Some(c) if c == header => in_table = true,
            Some(c) if in_table && c.iter().all(|x| x.chars().all(|ch| ch == '-')) => {}
            Some(c) if in_table => rows.push(c),
            Some(_) => {}
        }
    }
    rows
}

/// The text inside the first pair of backticks of `s`.
fn first_code(s: &str) -> Option<&str> {
    let start = s.find('`')? + 1;
    let len = s[start..].find('`')?;
    Some(&s[start..start + len])
}

/// Every text between backticks in `s`.
fn codes(s: &str) -> Vec<&str> {
    s.split('`').skip(1).step_by(2).collect()
}

/// A heading's anchor, as GitHub makes it.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of `doc`'s headings.
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut in_code = false;
    let mut out = BTreeSet::new();
    for line in doc.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            out.insert(slug(&line[hashes..]));
        }
    }
    out
}

/// The section of `doc` under the heading line `heading`, up to the next
/// heading of the same level or higher.
fn section<'a>(doc: &'a str, heading: &str) -> Option<&'a str> {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = doc.find(&format!("{heading}\n"))? + heading.len() + 1;
    let rest = &doc[start..];
    let end = rest
        .lines()
        .scan(0usize, |at, line| {
            let here = *at;
            *at += line.len() + 1;
            Some((here, line))
        })
        .find(|(_, line)| {
            let h = line.chars().take_while(|&c| c == '#').count();
            (1..=level).contains(&h) && line[h..].starts_with(' ')
        })
        .map_or(rest.len(), |(at, _)| at);
    Some(&rest[..end])
}

// ---------------------------------------------------------------------------
// 1. Config keys and defaults.

/// A documented key written as TOML: the base config (the key's table,
/// empty) and the config that sets the key to `value`.
fn toml_for(key: &str, value: &str) -> (String, String) {
    if let Some(leaf) = key.strip_prefix("notify[N].") {
        // A sink needs a kind and one of url and url_env.
        let mut base: BTreeMap<&str, &str> = BTreeMap::new();
        base.insert("kind", "\"webhook\"");
        if matches!(leaf, "token_env" | "dashboard_uid") {
            // Keys of Grafana sinks, which need a token.
            base.insert("kind", "\"grafana\"");
            base.insert("token_env", "\"ROLLBACKD_REFERENCE_TEST_TOKEN\"");
        }
        if leaf == "url_env" {
            base.insert("url", "\"https://hooks.example/x\"");
        } else {
            base.insert("url_env", "\"ROLLBACKD_REFERENCE_TEST_URL\"");
        }
        return with_leaf("[[notify]]", base, leaf, value);
    }
    if let Some(leaf) = key.strip_prefix("guards.maintenance[N].") {
        // A window needs a start and an end, or a weekly schedule.
        let base = BTreeMap::from([
            ("start", "\"2026-12-05T00:00:00Z\""),
            ("end", "\"2026-12-06T00:00:00Z\""),
        ]);
        return with_leaf("[[guards.maintenance]]", base, leaf, value);
    }
    if let Some(leaf) = key.strip_prefix("executor.git.<strategy>.") {
        // A Git strategy needs a repository, a file and a pattern.
        let base = BTreeMap::from([
            ("repository", "\"/srv/git/deploy.git\""),
            ("file", "\"kustomization.yaml\""),
            ("pattern", "\"newTag: {version}\""),
        ]);
        return with_leaf("[executor.git.canary]", base, leaf, value);
    }
    let key = key
        .replace("<service>", "checkout")
        .replace("<strategy>", "canary")
        .replace("<name>", "client.id");
    // `kafka.properties.client.id`: the property name keeps its dots.
    let (table, leaf) = match key.strip_prefix("kafka.properties.") {
        Some(name) => ("kafka.properties".to_string(), name.to_string()),
        None => {
            let (t, l) = key.rsplit_once('.').expect("a key is table.leaf");
            (t.to_string(), l.to_string())
        }
    };
    let base = format!("[{table}]\n");
    let with = format!("[{table}]\n\"{leaf}\" = {value}\n");
    (base, with)
}

/// The table `header` with the keys `base` it needs, without and with
/// `leaf = value`.
fn with_leaf<'a>(
    header: &str,
    base: BTreeMap<&'a str, &'a str>,
    leaf: &'a str,
    value: &'a str,
) -> (String, String) {
    let table = |m: &BTreeMap<&str, &str>| {
        let mut s = format!("{header}\n");
        for (k, v) in m {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    };
    let mut with = base.clone();
    with.insert(leaf, value);
    (table(&base), table(&with))
}

/// Whether `text` is one TOML value.
fn is_toml_value(text: &str) -> bool {
    toml::from_str::<toml::Table>(&format!("v = {text}")).is_ok()
}

/// A value of the documented type, for a key without a literal default.
fn sample_for(key: &str, ty: &str) -> String {
    if let Some(v) = codes(ty).into_iter().find(|c| is_toml_value(c)) {
        return v.to_string();
    }
    let sample = if ty.contains("URL") {
        "\"https://rollbackd.example\""
    } else if ty.starts_with("array of strings") {
        "[\"true\"]"
    } else if ty.starts_with("string") {
        "\"x\""
    } else if ty.starts_with("bool") {
        "true"
    } else if ty.starts_with("integer") {
        "1"
    } else if ty.starts_with("float") {
        "0.5"
    } else if ty.starts_with("duration") {
        "\"1s\""
    } else if ty.starts_with("size") {
        "\"1KiB\""
    } else {
        panic!("{key}: no sample value for type {ty:?}");
    };
    sample.to_string()
}

fn parse(text: &str) -> Result<String, String> {
    Config::from_toml(text)
        .map(|c| format!("{c:?}"))
        .map_err(|e| e.to_string())
}

/// The documented config keys: key → (type, default cell).
fn documented_keys() -> Vec<(String, String, String)> {
    let rows = table_rows(CONFIG_MD, &["key", "type", "default", "meaning"]);
    assert!(rows.len() > 50, "config.md has {} key rows", rows.len());
    rows.into_iter()
        .map(|r| {
            assert_eq!(r.len(), 4, "a config row with {} cells: {r:?}", r.len());
            let key = first_code(&r[0])
                .unwrap_or_else(|| panic!("a config row without a key: {r:?}"))
                .to_string();
            (key, r[1].clone(), r[2].clone())
        })
        .collect()
}

#[test]
fn every_documented_config_key_is_accepted_with_its_documented_default() {
    // The check is worth something only if an unknown key is refused.
    for text in [
        "zz_not_a_key = 1\n",
        "[kafka]\nzz_not_a_key = 1\n",
        "[slo.services.checkout]\nzz_not_a_key = 1\n",
        "[[notify]]\nkind = \"slack\"\nurl = \"https://x.example\"\nzz_not_a_key = 1\n",
    ] {
        let err = parse(text).expect_err(text);
        assert!(err.contains("zz_not_a_key"), "{text}: {err}");
    }
    let keys = documented_keys();
    let mut seen = BTreeSet::new();
    let mut literal: BTreeMap<String, String> = BTreeMap::new();
    let mut compared = 0;
    for (key, ty, default) in &keys {
        assert!(seen.insert(key.clone()), "{key} is documented twice");
        let inherited = default
            .strip_prefix("inherits ")
            .and_then(first_code)
            .map(|from| {
                literal
                    .get(from)
                    .unwrap_or_else(|| {
                        panic!("{key} inherits {from}, which has no literal default")
                    })
                    .clone()
            });
        let whole_literal = default
            .strip_prefix('`')
            .and_then(|d| d.strip_suffix('`'))
            .filter(|d| !d.contains('`') && is_toml_value(d))
            .map(str::to_string);
        let (value, compare) = match (whole_literal, inherited) {
            (Some(v), _) => {
                literal.insert(key.clone(), v.clone());
                (v, true)
            }
            (None, Some(v)) => (v, true),
            (None, None) => (sample_for(key, ty), false),
        };
        let (base, with) = toml_for(key, &value);
        let got =
            parse(&with).unwrap_or_else(|e| panic!("{key} = {value} is refused: {e}\n{with}"));
        if compare {
            let want = parse(&base).unwrap_or_else(|e| panic!("{key}: base refused: {e}\n{base}"));
            assert_eq!(
                got, want,
                "{key}: the documented default {value} is not the default"
            );
            compared += 1;
        }
    }
    assert!(compared > 50, "only {compared} defaults compared");
}

/// The fields the parser knows in one table: from the error naming an
/// unknown one.
fn known_fields(toml_text: &str) -> Vec<String> {
    let err = parse(toml_text).expect_err(toml_text);
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("no field list in: {err}"))
        .1;
    codes(expected).into_iter().map(String::from).collect()
}

#[test]
fn every_field_the_config_parser_knows_is_documented() {
    let tables = [
        "kafka",
        "topics",
        "http",
        "slo",
        "guards",
        "alerts",
        "limits",
        "audit",
        "verify",
        "deploys",
        "log",
        "telemetry",
        "executor",
    ];
    let mut probes: Vec<(String, String)> = vec![
        (String::new(), "zz_not_a_key = 1\n".into()),
        (
            "slo.services.<service>".into(),
            "[slo.services.checkout]\nzz_not_a_key = 1\n".into(),
        ),
        (
            "executor.git.<strategy>".into(),
            "[executor.git.canary]\nzz_not_a_key = 1\n".into(),
        ),
        (
            "notify[N]".into(),
            "[[notify]]\nkind = \"slack\"\nurl = \"https://x.example\"\nzz_not_a_key = 1\n".into(),
        ),
        (
            "guards.maintenance[N]".into(),
            "[[guards.maintenance]]\nzz_not_a_key = 1\n".into(),
        ),
        (
            "guards.maintenance[N].weekly[M]".into(),
            "[[guards.maintenance]]\nweekly = [{ day = \"sat\", start = \"02:00\", end = \"04:00\", zz_not_a_key = 1 }]\n"
                .into(),
        ),
        (
            "slo.windows[N]".into(),
            "[slo]\nwindows = [{ short = \"1m\", long = \"5m\", burn_rate = 1.0, zz_not_a_key = 1 }]\n"
                .into(),
        ),
    ];
    for t in tables {
        probes.push((t.into(), format!("[{t}]\nzz_not_a_key = 1\n")));
    }
    for (prefix, text) in probes {
        let fields = known_fields(&text);
        assert!(!fields.is_empty(), "{text}");
        for f in fields {
            let documented = if prefix.is_empty() {
                CONFIG_MD.contains(&format!("`{f}.")) || CONFIG_MD.contains(&format!("`{f}["))
            } else {
                CONFIG_MD.contains(&format!("`{prefix}.{f}"))
            };
            assert!(documented, "config.md does not mention `{prefix}.{f}`");
        }
    }
}

/// Every key of a TOML table, flattened (`a.b.c`); an empty table is a key.
fn flatten(prefix: &str, table: &toml::Table, out: &mut Vec<String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) if !t.is_empty() => flatten(&key, t, out),
            _ => out.push(key),
        }
    }
}

#[test]
fn every_key_of_the_example_config_is_documented() {
    let example: toml::Table = toml::from_str(EXAMPLE_CONFIG).expect("config/rollbackd.toml");
    let mut keys = Vec::new();
    flatten("", &example, &mut keys);
    assert!(keys.len() > 40, "{keys:?}");
    let documented: Vec<String> = documented_keys().into_iter().map(|(k, _, _)| k).collect();
    for k in keys {
        assert!(
            documented
                .iter()
                .any(|d| *d == k || d.starts_with(&format!("{k}."))),
            "config/rollbackd.toml sets {k}, which config.md does not document"
        );
    }
    // And the example config is what it says: every value the default.
    assert_eq!(
        parse(EXAMPLE_CONFIG).expect("example config"),
        parse("[kafka]\n").expect("defaults"),
        "config/rollbackd.toml is not the defaults"
    );
}

#[test]
fn every_notification_event_is_documented() {
    for e in rollbackd::config::notify::NotifyEvent::ALL {
        let name = format!("`{}`", e.as_str());
        assert!(CONFIG_MD.contains(&name), "config.md: event {name}");
        assert!(FORMATS_MD.contains(&name), "formats.md: event {name}");
    }
}

// ---------------------------------------------------------------------------
// 2. Metrics.

/// Every `rollbackd_…` name in `text`.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("rollbackd_") {
        let before = rest[..i].chars().last();
        let tail = &rest[i..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && len > "rollbackd_".len()
        {
            out.insert(tail[..len].to_string());
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_metric_is_documented_and_every_documented_metric_exists() {
    let exported: BTreeSet<String> = rollbackd::metrics::Metrics::new()
        .names()
        .into_iter()
        .collect();
    assert!(exported.len() > 30, "{exported:?}");
    let histogram = |name: &str| exported.contains(&format!("{name}_bucket"));
    // A histogram's series are documented by its name.
    let family = |name: &str| -> String {
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(base) = name.strip_suffix(suffix) {
                if histogram(base) {
                    return base.to_string();
                }
            }
        }
        name.to_string()
    };
    let documented = metric_names(HTTP_MD);
    for name in &exported {
        let f = family(name);
        assert!(
            documented.contains(&f),
            "http.md does not document {f} (exported as {name})"
        );
    }
    for name in &documented {
        assert!(
            exported.contains(name) || histogram(name),
            "http.md names {name}, which rollbackd does not export"
        );
    }
    // Each has its row in the metrics table.
    let rows = table_rows(HTTP_MD, &["metric", "type", "labels", "meaning"]);
    let in_table: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| first_code(&r[0]).map(String::from))
        .collect();
    for name in &exported {
        let f = family(name);
        assert!(in_table.contains(&f), "http.md's metric table lacks {f}");
    }
}

// ---------------------------------------------------------------------------
// 3. Routes.

/// (method, path) of every route the router serves, from its source.
fn router_routes() -> BTreeSet<(String, String)> {
    let body = ROUTER_SRC
        .split_once("pub fn router<")
        .expect("fn router in src/http/mod.rs")
        .1;
    let body = &body[..body.find("\n}\n").expect("end of fn router")];
    let mut out = BTreeSet::new();
    for part in body.split(".route(\"").skip(1) {
        let (path, rest) = part.split_once('"').expect("a route's path");
        let handler = rest.trim_start_matches(',').trim_start();
        let method = handler
            .split('(')
            .next()
            .expect("a method router")
            .to_ascii_uppercase();
        assert!(
            ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str()),
            "route {path}: method {method}"
        );
        out.insert((method, path.to_string()));
    }
    out
}

#[test]
fn every_route_is_documented_and_every_documented_route_exists() {
    let routes = router_routes();
    assert!(routes.len() >= 16, "{routes:?}");
    for (method, path) in &routes {
        let written = format!("`{method} {path}`");
        assert!(HTTP_MD.contains(&written), "http.md lacks {written}");
        // In the routes table too.
        let rows = table_rows(HTTP_MD, &["method and path", "auth", "accepts", "success"]);
        assert!(
            rows.iter().any(|r| r[0] == written),
            "http.md's routes table lacks {written}"
        );
    }
    for code in codes(HTTP_MD) {
        let Some((method, path)) = code.split_once(' ') else {
            continue;
        };
        if !["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method) || !path.starts_with('/') {
            continue;
        }
        let path = path.split('?').next().unwrap_or(path);
        assert!(
            routes.contains(&(method.to_string(), path.to_string())),
            "http.md names `{code}`, which the router does not serve"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. The command line.

fn rollbackd(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(args)
        .output()
        .expect("rollbackd runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subcommands `rollbackd --help` lists.
fn subcommands() -> Vec<String> {
    let (code, help, _) = rollbackd(&["--help"]);
    assert_eq!(code, Some(0));
    let list = help.split_once("Commands:\n").expect("a Commands: list").1;
    list.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(String::from)
        .collect()
}

/// Every `--flag` in `text`.
fn flags(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("--") {
        let tail = &rest[i + 2..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '-'))
            .unwrap_or(tail.len());
        let before = rest[..i].chars().last();
        let starts = tail.starts_with(|c: char| c.is_ascii_lowercase());
        if starts && !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '-') {
            out.insert(format!("--{}", &tail[..len]));
        }
        rest = &tail[len..];
    }
    out
}

#[test]
fn every_subcommand_and_flag_is_documented() {
    let commands = subcommands();
    assert!(commands.len() >= 10, "{commands:?}");
    for cmd in &commands {
        let heading = format!("## rollbackd {cmd}");
        let text = section(CLI_MD, &heading)
            .unwrap_or_else(|| panic!("cli.md has no section {heading:?}"));
        let (code, help, _) = rollbackd(&[cmd, "--help"]);
        assert_eq!(code, Some(0), "{cmd} --help");
        let mut want = flags(&help);
        want.remove("--help");
        for flag in &want {
            assert!(
                text.contains(&format!("`{flag}")),
                "cli.md's {heading} lacks {flag}"
            );
        }
        for flag in flags(text) {
            assert!(
                want.contains(&flag),
                "cli.md's {heading} names {flag}, which `rollbackd {cmd} --help` does not list"
            );
        }
        // Positional arguments and their values.
        for line in help.lines() {
            if let Some(values) = line
                .split_once("[possible values: ")
                .and_then(|(_, v)| v.strip_suffix(']'))
            {
                for v in values.split(", ") {
                    assert!(
                        text.contains(&format!("`{v}`")),
                        "cli.md's {heading} lacks the value {v}"
                    );
                }
            }
        }
    }
    // No section for a subcommand that does not exist.
    for line in CLI_MD.lines() {
        if let Some(cmd) = line.strip_prefix("## rollbackd ") {
            assert!(
                commands.iter().any(|c| c == cmd),
                "cli.md documents `rollbackd {cmd}`, which does not exist"
            );
        }
    }
}

#[test]
fn the_exit_statuses_and_variables_of_the_code_are_documented() {
    let rows = table_rows(CLI_MD, &["status", "when"]);
    let statuses: BTreeSet<i32> = rows.iter().filter_map(|r| r[0].parse().ok()).collect();
    for status in [
        0,
        1,
        2,
        rollbackd::runtime::shared::POISONED,
        rollbackd::kafka::producer::CLIENT_LOST,
    ] {
        assert!(
            statuses.contains(&status),
            "cli.md's exit codes lack {status}"
        );
    }
    // A config error is 2, as documented.
    let dir = std::env::temp_dir().join(format!("rollbackd-reference-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[slo]\nzz_not_a_key = 1\n").unwrap();
    let (code, _, err) = rollbackd(&["check-config", "--config", bad.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("zz_not_a_key"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);

    let env = section(CLI_MD, "## Environment variables").expect("an env var section");
    let defaults = Config::default();
    for var in [
        rollbackd::runtime::failpoint::ENV,
        defaults.http.webhook_token_env.as_str(),
        defaults.http.admin_token_env.as_str(),
        "ROLLBACKD_LOG",
    ] {
        assert!(env.contains(&format!("`{var}`")), "cli.md lacks {var}");
    }
    // Every fault point the code defines.
    for line in FAILPOINT_SRC.lines() {
        if let Some(name) = line
            .strip_prefix("//! | `")
            .and_then(|l| l.split('`').next())
        {
            assert!(
                env.contains(&format!("`{name}`")),
                "cli.md lacks failpoint {name}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 5. Audit records.

/// Every `kind` an audit record can have.
fn audit_kinds() -> Vec<String> {
    rollbackd::model::audit::AuditEvent::KINDS
        .iter()
        .map(|k| k.to_string())
        .collect()
}

#[test]
fn every_audit_kind_is_documented() {
    let kinds = audit_kinds();
    assert!(kinds.len() >= 14, "{kinds:?}");
    let headings: BTreeSet<String> = FORMATS_MD
        .lines()
        .filter_map(|l| l.strip_prefix("### Audit: "))
        .map(String::from)
        .collect();
    for k in &kinds {
        assert!(
            headings.contains(k),
            "formats.md has no heading `### Audit: {k}`"
        );
    }
    for h in &headings {
        assert!(
            kinds.contains(h),
            "formats.md documents audit kind {h}, which does not exist"
        );
    }
    for reason in rollbackd::model::audit::SuppressionReason::ALL.map(|r| r.as_str()) {
        assert!(
            FORMATS_MD.contains(&format!("`{reason}`")),
            "formats.md lacks suppression reason {reason}"
        );
    }
    assert!(FORMATS_MD.contains(&format!("`\"{}\"`", rollbackd::model::AUDIT_SCHEMA)));
    assert!(FORMATS_MD.contains(&format!("`\"{}\"`", rollbackd::model::COMMAND_SCHEMA)));
    assert!(FORMATS_MD.contains(&format!("`\"{}\"`", rollbackd::model::ADMIN_SCHEMA)));
}

// ---------------------------------------------------------------------------
// The pages themselves.

#[test]
fn every_link_between_the_pages_points_at_a_heading() {
    let mut targets: BTreeMap<&str, BTreeSet<String>> = PAGES
        .iter()
        .map(|(name, doc)| (*name, anchors(doc)))
        .collect();
    targets.insert("../README.md", anchors(README));
    for (name, doc) in PAGES {
        for link in doc.split("](").skip(1) {
            let target = &link[..link.find(')').expect("a closed link")];
            if target.starts_with("http://") || target.starts_with("https://") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (if f.is_empty() { name } else { f }, Some(a)),
                None => (target, None),
            };
            let heads = targets
                .get(file)
                .unwrap_or_else(|| panic!("{name}: link to unknown page {target}"));
            if let Some(a) = anchor {
                assert!(heads.contains(a), "{name}: link to missing anchor {target}");
            }
        }
    }
    // The index names every page.
    for (name, _) in PAGES.iter().skip(1) {
        assert!(
            INDEX_MD.contains(&format!("]({name})")),
            "docs/README.md: {name}"
        );
    }
}

#[test]
fn the_pages_stand_on_their_own() {
    for (name, doc) in PAGES {
        for word in ["CONTRACT", "§"] {
            assert!(!doc.contains(word), "{name} mentions {word}");
        }
    }
}
