//! What people look at, loaded in headless Chromium: the live status page
//! (`GET /`) of a running agent fed a bad and a healthy canary, and the
//! report of a replay (`replay --report`) — what they render, that they
//! reach nothing off this machine, that hostile labels stay text; and the
//! status JSON's schema.

mod support;

use std::time::{Duration, Instant};

use rollbackd::model::{command_id, Action};
use serde_json::{json, Value};
use support::replay::{Encoding, Fixture, Stream};
use support::*;

const SLO: &str = "[slo]\nwarmup = \"1s\"\nevaluation_interval = \"1s\"\nmin_requests = 50\nwindows = [ { short = \"5s\", long = \"20s\", burn_rate = 14.4 } ]\n";

/// A service name no page may treat as markup.
const HOSTILE: &str = "<script>document.title='owned'</script><img src=x onerror=alert(1)>";

fn started(addr: &str, id: &str, service: &str) {
    post_started(
        addr,
        id,
        service,
        json!({"environment": "prod", "strategy": "canary"}),
    );
}

/// Canary traffic for a few seconds: checkout's v2 fails 3 requests in 20,
/// search's and the hostile one's none.
fn canaries(addr: &str, seconds: u64) {
    let until = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < until {
        for (svc, errs) in [("checkout", 3), ("search", 0), (HOSTILE, 0)] {
            for (v, n, e) in [("v1", 40, 0), ("v2", 20, errs)] {
                post_ok(
                    addr,
                    "/v1/traces",
                    &[("Content-Type", "application/x-protobuf")],
                    &spans_proto(svc, v, n, e),
                );
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_live_page_shows_the_rollback_with_its_evidence_and_nothing_leaves_loopback() {
    let _serial = serial();
    let agent = LocalAgent::start("", SLO, &[("ROLLBACKD_ADMIN_TOKEN", "admin-secret")]);
    let addr = agent.addr.clone();
    started(&addr, "d-bad", "checkout");
    started(&addr, "d-good", "search");
    started(&addr, "d-hostile", HOSTILE);
    canaries(&addr, 6);
    assert_eq!(agent.command(Duration::from_secs(10))["deploy_id"], "d-bad");

    // Without the token the page asks for it and shows no data.
    let page = load(&format!("http://{addr}/"), None);
    assert!(page.dom.contains("enter the admin token"), "{}", page.dom);
    assert!(!page.dom.contains("d-bad"));

    // With the token (the page keeps it in sessionStorage): a page that
    // sets it, then goes to the status page.
    let status = load_with_token(
        &addr,
        "admin-secret",
        Some(&screenshot_path("status-page.png")),
    );
    let dom = &status.dom;
    let bad = card(dom, "d-bad");
    assert!(bad.contains(">rollback<"), "{bad}");
    assert!(
        bad.contains("evidence: errors")
            && bad.contains("vs baseline")
            && bad.contains("threshold"),
        "{bad}"
    );
    assert!(bad.contains("<svg"), "charts: {bad}");
    assert!(bad.contains("class=\"threshold\""), "threshold line: {bad}");
    // Each chart's caption is above it and its colour key below: no words
    // drawn on the lines.
    assert!(!bad.contains("<text"), "words on a chart: {bad}");
    for key in [
        "candidate",
        "baseline",
        "errors 5s/20s",
        "latency 5s/20s",
        "threshold 14.4×",
    ] {
        assert!(bad.contains(&format!("{key}</span>")), "key {key}: {bad}");
    }
    let good = card(dom, "d-good");
    assert!(
        !good.contains(">rollback<") && !good.contains("evidence:"),
        "{good}"
    );
    assert!(good.contains("healthy so far"), "{good}");
    // The recent decisions table has the command.
    assert!(
        dom.contains("Rolling back checkout v2 → v1 in prod"),
        "{dom}"
    );

    // The hostile service name is text: escaped in the DOM, no element
    // made of it, no script of it run.
    assert!(
        dom.contains(
            "&lt;script&gt;document.title='owned'&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;"
        ),
        "{dom}"
    );
    assert!(!dom.contains("<img"), "{dom}");
    assert!(dom.contains("<title>rollbackd status</title>"));

    // Every request the page made stayed on loopback.
    assert!(
        status.requests.iter().any(|u| u.ends_with("/v1/status")),
        "{:?}",
        status.requests
    );
    for u in page.requests.iter().chain(&status.requests) {
        assert!(is_local(u), "the page requested {u}");
    }

    // A maintenance window shows, its reason as text.
    post_ok(
        &addr,
        "/v1/maintenance",
        &[
            ("Authorization", "Bearer admin-secret"),
            ("Content-Type", "application/json"),
        ],
        json!({"services": ["checkout"], "duration": "1h", "reason": HOSTILE})
            .to_string()
            .as_bytes(),
    );
    let dom = load_with_token(&addr, "admin-secret", None).dom;
    assert!(dom.contains("data-maintenance=\"m-"), "{dom}");
    assert!(dom.contains("(checkout): &lt;script&gt;"), "{dom}");
    assert!(!dom.contains("<img"), "{dom}");
}

/// The `y` attribute's values of every `<text` in `svg`.
fn text_ys(svg: &str) -> Vec<f64> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let y = t.split(" y=\"").nth(1)?;
            y[..y.find('"')?].parse().ok()
        })
        .collect()
}

/// Every chart has a key naming its lines, under the plot (whose bottom
/// is the `0` label's y): no word of it lies on a line.
fn charts_have_keys_under_their_lines(section: &str) {
    let svgs: Vec<&str> = section
        .split("<svg")
        .skip(1)
        .map(|s| &s[..s.find("</svg>").unwrap()])
        .collect();
    assert_eq!(svgs.len(), 3, "{section}");
    for svg in &svgs {
        let zero = svg.find(">0</text>").map(|i| &svg[..i]).unwrap();
        let bottom = text_ys(&zero[zero.rfind("<text").unwrap()..])[0];
        let keys: Vec<&str> = svg.split("<g class=\"key\">").skip(1).collect();
        assert!(keys.len() >= 3, "{svg}");
        for k in &keys {
            for y in text_ys(k) {
                assert!(
                    y > bottom + 10.0,
                    "a key's words at {y}, on the plot (bottom {bottom}): {svg}"
                );
            }
        }
        assert!(
            svg.contains("hover for what"),
            "the event markers are in the key: {svg}"
        );
    }
    // The burn chart's key names every pair and every threshold, dashed.
    let burn = svgs[2];
    for words in [
        "errors 1m/5m",
        "latency 5m/30m",
        "threshold 14.4× (1m/5m)",
        "threshold 6× (5m/30m)",
    ] {
        assert!(
            burn.contains(&format!(">{words}</text>")),
            "{words}: {burn}"
        );
    }
    assert_eq!(burn.matches("class=\"threshold\"").count(), 2, "{burn}");
}

/// A steady 10 rps candidate and 40 rps baseline draw level lines: no
/// climb while the long window fills, no sawtooth from exports arriving
/// in batches. Heights are measured from the plot's bottom, `y` = 138.
fn steady_rates(section: &str) {
    let svg = &section[section.find("<svg").unwrap()..];
    let svg = &svg[..svg.find("</svg>").unwrap()];
    assert!(svg.contains("averaged over 15 s"), "{svg}");
    let heights = |side: &str| -> Vec<f64> {
        let end = svg.find(&format!("<title>{side}</title>")).unwrap();
        let d = &svg[..end];
        let d = &d[d.rfind(" d=\"").unwrap() + 4..];
        let d = &d[..d.find('"').unwrap()];
        d.split(['M', 'L'])
            .filter(|p| !p.trim().is_empty())
            .map(|p| 138.0 - p.split_whitespace().nth(1).unwrap().parse::<f64>().unwrap())
            .collect()
    };
    // Once the averaging has left the first exports' delay behind (a
    // fifth of the chart for the baseline, a third for the candidate's
    // short window), each line is level.
    for (side, skip, spread) in [("candidate", 3, 1.1), ("baseline", 5, 1.1)] {
        let h = heights(side);
        let level = &h[h.len() / skip..];
        let (lo, hi) = level
            .iter()
            .fold((f64::MAX, 0.0f64), |(lo, hi), y| (lo.min(*y), hi.max(*y)));
        assert!(lo > 0.0 && hi / lo < spread, "{side}: {lo}..{hi} {h:?}");
    }
}

/// Loads the page with the admin token in its URL fragment (never sent to
/// the server), which the page keeps in the tab's sessionStorage and
/// removes from the address.
fn load_with_token(addr: &str, token: &str, shot: Option<&std::path::Path>) -> Page {
    load(&format!("http://{addr}/#token={token}"), shot)
}

#[test]
fn the_status_json_follows_its_schema() {
    let _serial = serial();
    let agent = LocalAgent::start("status_public = true", SLO, &[]);
    let addr = agent.addr.clone();
    started(&addr, "d-bad", "checkout");
    started(&addr, "d-good", "search");
    canaries(&addr, 6);
    assert_eq!(agent.command(Duration::from_secs(10))["deploy_id"], "d-bad");
    let (code, text) = http(&addr, "GET", "/v1/status", &[], b"");
    assert_eq!(code, 200, "status_public: no token needed");
    let s: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(s["schema"], "rollbackd.status/v1");
    for key in [
        "at",
        "instance",
        "ready",
        "not_ready",
        "role",
        "automation",
        "deploys",
        "deploys_total",
        "finished",
        "audit",
    ] {
        assert!(s.get(key).is_some(), "missing {key}: {s}");
    }
    assert_eq!(s["ready"], true);
    assert_eq!(s["role"]["owns"], "all");
    assert_eq!(s["automation"]["paused"], false);
    assert_eq!(s["automation"]["breaker_open"], false);
    assert_eq!(s["automation"]["maintenance"], json!([]));
    let deploys = s["deploys"].as_array().unwrap();
    assert_eq!(s["deploys_total"], 2);
    let bad = deploys.iter().find(|d| d["deploy_id"] == "d-bad").unwrap();
    assert_eq!(bad["state"], "rollback");
    assert_eq!(bad["environment"], "prod");
    assert!(
        bad["evidence"].as_str().unwrap().starts_with("errors "),
        "{bad}"
    );
    assert!(bad["age_seconds"].as_f64().unwrap() > 1.0);
    let history = bad["history"].as_array().unwrap();
    assert!(history.len() >= 3, "{bad}");
    let point = &history[history.len() - 1];
    assert!(point["at"].is_string() && point["verdict"].is_string());
    assert!(point["candidate"]["requests"].as_u64().unwrap() > 0);
    assert_eq!(
        point["burn"].as_array().unwrap().len(),
        bad["evaluation"]["pairs"].as_array().unwrap().len()
    );
    let good = deploys.iter().find(|d| d["deploy_id"] == "d-good").unwrap();
    assert_eq!(good["state"], "healthy so far");
    assert!(good["evidence"].is_null());
    let audit = s["audit"].as_array().unwrap();
    let command = audit.iter().find(|a| a["kind"] == "command").unwrap();
    assert_eq!(command["summary"], "Rolling back checkout v2 → v1 in prod");
    assert!(command["numbers"].as_str().unwrap().starts_with("errors "));
    assert_eq!(command["record"]["schema"], "rollbackd.audit/v1");

    // `rollbackd status` prints the same as a table.
    let table = rollbackd_ok(&["status", "--url", &format!("http://{addr}")]);
    let row = table
        .lines()
        .find(|l| l.starts_with("d-bad "))
        .expect(&table);
    assert!(
        row.contains("checkout")
            && row.contains("v1 → v2")
            && row.contains("rollback")
            && row.contains("errors "),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.starts_with("d-good "))
        .expect(&table);
    assert!(row.contains("healthy so far"), "{table}");
    assert!(
        table.contains("RECENT") && table.contains("Rolling back checkout v2 → v1 in prod"),
        "{table}"
    );

    // Without status_public the JSON needs the admin token.
    let private = LocalAgent::start("", SLO, &[("ROLLBACKD_ADMIN_TOKEN", "t")]);
    assert_eq!(http(&private.addr, "GET", "/v1/status", &[], b"").0, 401);
    assert_eq!(
        http(
            &private.addr,
            "GET",
            "/v1/status",
            &[("Authorization", "Bearer t")],
            b""
        )
        .0,
        200
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rollbackd"))
        .args(["status", "--url", &format!("http://{}", private.addr)])
        .env_remove("ROLLBACKD_ADMIN_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // The page itself holds no data and is served to anyone, with a
    // policy that lets it reach nothing but its own origin.
    let (code, page) = http(&private.addr, "GET", "/", &[], b"");
    assert_eq!(code, 200);
    assert!(page.contains("<title>rollbackd status</title>"));
    for reference in [" src=", " href=", "url(", "@import"] {
        assert!(!page.contains(reference), "the page refers to {reference}");
    }
}

#[test]
fn the_replay_report_charts_every_deploy_and_marks_the_decision() {
    let mut f = Fixture::new();
    f.started(60.0, "d-bad", "checkout", "v2", "v1");
    f.started(60.0, "d-good", "search", "v8", "v7");
    f.started(60.0, "d-hostile", HOSTILE, "v2", "v1");
    f.spans(Stream::new("checkout", "v1", 40.0).errors(0.0005));
    f.spans(
        Stream::new("checkout", "v2", 10.0)
            .errors(0.2)
            .between(60.0, 1e9),
    );
    f.spans(Stream::new("search", "v7", 40.0).errors(0.0005));
    f.spans(
        Stream::new("search", "v8", 10.0)
            .errors(0.0005)
            .between(60.0, 1e9),
    );
    f.spans(Stream::new(HOSTILE, "v1", 40.0));
    f.spans(Stream::new(HOSTILE, "v2", 10.0).between(60.0, 1e9));
    // The bad deploy's rollback succeeds, and v1 is verified for 2 minutes.
    f.config_extra = "[verify]\nwindow = \"2m\"\n".into();
    f.record(
        90.0,
        "rollback-results",
        json!({"command_id": command_id("d-bad", Action::Rollback), "deploy_id": "d-bad",
               "status": "succeeded", "at": support::replay::ts(90.0), "executor": "test",
               "message": "done"}),
    );
    let (input, config) = f.write(400.0, Encoding::Json);
    let report = input.with_file_name("report.html");
    let commands = rollbackd_ok(&[
        "replay".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
        "--report".as_ref(),
        report.as_os_str(),
    ]);
    assert_eq!(commands.lines().count(), 1, "{commands}");

    let page = load(
        &format!("file://{}", report.display()),
        Some(&screenshot_path("replay-report.png")),
    );
    let dom = &page.dom;
    // The summary table: one row per deploy, the bad one rolled back with
    // its time to decide, the others not.
    let row = |id: &str| {
        let start = dom
            .find(&format!("<tr data-deploy-id=\"{id}\""))
            .unwrap_or_else(|| panic!("no row {id}: {dom}"));
        &dom[start..start + dom[start..].find("</tr>").unwrap()]
    };
    assert!(
        row("d-bad").contains(">rollback<") && row("d-bad").contains("rollback (burn_rate)"),
        "{}",
        row("d-bad")
    );
    assert!(
        row("d-bad").contains(" s<"),
        "time to decide: {}",
        row("d-bad")
    );
    assert!(!row("d-good").contains(">rollback<"), "{}", row("d-good"));
    // The rollback measures: over the replay, per service, per deploy.
    let measure = |id: &str| {
        let start = dom
            .find(&format!("<tr data-measure=\"{id}\""))
            .unwrap_or_else(|| panic!("no measure {id}: {dom}"));
        &dom[start..start + dom[start..].find("</tr>").unwrap()]
    };
    for id in ["m1", "m2", "m3", "m4", "m6"] {
        assert!(
            measure(id).contains(" s (median of 1;") || id == "m6",
            "{}",
            measure(id)
        );
    }
    assert!(
        measure("m6").contains("points lower (median of 1)"),
        "{}",
        measure("m6")
    );
    assert!(
        measure("m5").contains(
            "1 of 1 executor results succeeded (100%); 1 of 1 verified rollbacks recovered"
        ),
        "{}",
        measure("m5")
    );
    assert!(
        measure("m7").contains("1 of 3 deploys rolled back (33%)"),
        "{}",
        measure("m7")
    );
    let by_deploy = &dom[dom.find("id=\"measures-by-deploy\"").unwrap()..];
    let by_deploy = &by_deploy[..by_deploy.find("</table>").unwrap()];
    assert!(
        by_deploy.contains("data-deploy-id=\"d-bad\"")
            && by_deploy.contains("succeeded, recovered"),
        "{by_deploy}"
    );
    assert!(!by_deploy.contains("d-good"), "{by_deploy}");
    // Each deploy's section: three charts, threshold lines, the decision
    // marked and its evidence in words.
    let section = |id: &str| card(&dom[dom.find("<section").unwrap()..], id).to_string();
    let bad = section("d-bad");
    assert_eq!(bad.matches("<svg").count(), 3, "{bad}");
    assert!(bad.contains("class=\"threshold\""), "{bad}");
    assert!(bad.contains("class=\"marker\""), "{bad}");
    assert!(bad.contains("evidence at the decision: errors "), "{bad}");
    assert!(bad.contains("Rolling back checkout v2 → v1"), "{bad}");
    charts_have_keys_under_their_lines(&bad);
    let good = section("d-good");
    charts_have_keys_under_their_lines(&good);
    steady_rates(&good);
    assert!(
        !good.contains("evidence at the decision") && !good.contains("data-kind=\"command\""),
        "{good}"
    );
    // Hostile labels are text; nothing is fetched, no script runs.
    assert!(
        dom.contains("&lt;script&gt;document.title='owned'&lt;/script&gt;"),
        "{dom}"
    );
    assert!(!dom.contains("<img") && !dom.contains("<script"), "{dom}");
    assert!(dom.contains("<title>rollbackd replay report</title>"));
    for u in &page.requests {
        assert!(is_local(u), "the report requested {u}");
    }
}
