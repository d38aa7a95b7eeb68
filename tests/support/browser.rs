//! Headless Chromium (Debian's `chromium`, installed by scripts/deps.sh):
//! a page's DOM after its scripts ran, every request the page made, and a
//! screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use super::procs::unique_dir;

/// A page as Chromium rendered it.
pub struct Page {
    /// The DOM after its scripts ran (`--dump-dom`).
    pub dom: String,
    /// Every request the page itself made (not the browser's own
    /// background requests): its URL.
    pub requests: Vec<String>,
}

fn chromium(profile: &Path) -> Command {
    let mut c = Command::new("chromium");
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-sync",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        // Nothing but loopback resolves: a page that reached out would
        // fail, and the net log below would show it.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--window-size=1280,1800",
        "--virtual-time-budget=8000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

/// Loads `url`, lets its scripts run, and returns the DOM and the page's
/// requests (from Chromium's net log); with `screenshot`, also saves one
/// there.
pub fn load(url: &str, screenshot: Option<&Path>) -> Page {
    let dir = unique_dir("chromium");
    let netlog = dir.join("netlog.json");
    let out = chromium(&dir.join("profile"))
        .arg(format!("--log-net-log={}", netlog.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium (scripts/deps.sh installs it)");
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    if let Some(path) = screenshot {
        let shot = chromium(&dir.join("profile-shot"))
            .arg(format!("--screenshot={}", path.display()))
            .arg(url)
            .output()
            .expect("run chromium");
        assert!(
            shot.status.success() && path.exists(),
            "no screenshot: {}",
            String::from_utf8_lossy(&shot.stderr)
        );
    }
    Page {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        requests: page_requests(&netlog),
    }
}

/// The URLs of the requests a page initiated, from a net log: the
/// browser's own requests have no initiating origin.
fn page_requests(netlog: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(netlog).expect("the net log");
    // A net log cut short lacks its closing brackets.
    let log: Value = serde_json::from_str(&text)
        .or_else(|_| serde_json::from_str(&format!("{}]}}", text.trim_end().trim_end_matches(','))))
        .expect("a net log");
    let start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"].clone();
    log["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == start_job)
        .filter(|e| e["params"]["initiator"] != "not an origin")
        .filter_map(|e| e["params"]["url"].as_str().map(String::from))
        .collect()
}

/// Whether a URL stays on this machine.
pub fn is_local(url: &str) -> bool {
    ["http://127.0.0.1", "file://", "data:", "about:", "blob:"]
        .iter()
        .any(|p| url.starts_with(p))
}

/// Where screenshots go: `$ROLLBACKD_SCREENSHOTS` when set (to refresh the
/// README's), else a scratch directory.
pub fn screenshot_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("ROLLBACKD_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| unique_dir("screenshots"));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The HTML of one deploy's card.
pub fn card<'a>(dom: &'a str, deploy_id: &str) -> &'a str {
    let start = dom
        .find(&format!("data-deploy-id=\"{deploy_id}\""))
        .unwrap_or_else(|| panic!("no card for {deploy_id}: {dom}"));
    let rest = &dom[start..];
    let end = rest.find("</section>").unwrap_or(rest.len());
    &rest[..end]
}
