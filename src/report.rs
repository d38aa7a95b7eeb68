//! `replay --report FILE.html`: one self-contained HTML file — inline SVG,
//! no script, nothing fetched — to backtest a policy on a recorded day and
//! show the result in a review: a summary table of every deploy the replay
//! watched, the rollback measures (`measures`), then per deploy its request rates, bad ratios and burn rates
//! over its life with each pair's threshold, the deploy events,
//! decisions, suppressions, commands, results and verifications marked on
//! them and listed in words.

use std::collections::BTreeMap;
use std::fmt::Write as _;

mod chart;
mod measures;

use crate::engine::{DeployView, FinishedDeploy};
use crate::model::{summary, AuditEvent, AuditRecord};
use crate::time::Timestamp;

/// A deploy in the report: how it was when it finished (or when the input
/// ended).
pub struct ReportDeploy {
    pub view: DeployView,
    /// When and why it stopped being watched; `None`: still watched at the
    /// end of the input.
    pub finished: Option<(Timestamp, String)>,
}

impl From<FinishedDeploy> for ReportDeploy {
    fn from(f: FinishedDeploy) -> ReportDeploy {
        ReportDeploy {
            view: f.deploy,
            finished: Some((f.finished_at, f.finished_because)),
        }
    }
}

/// Text made safe for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,Helvetica,Arial,sans-serif;margin:24px;color:#1d2330;max-width:1100px}\
h1{font-size:20px}h2{font-size:16px;margin-top:28px;border-top:1px solid #d9dde5;padding-top:14px}\
table{border-collapse:collapse;width:100%;font-size:13px}th,td{text-align:left;padding:4px 6px;border-bottom:1px solid #eceef2;vertical-align:top}\
th{color:#5b6475}.num{text-align:right;font-variant-numeric:tabular-nums}.meta{color:#5b6475;font-size:13px}\
.state{font-weight:600}.state.rollback{color:#d93a3a}.evidence{background:#fff4f4;border-left:3px solid #d93a3a;padding:4px 8px}\
svg{display:block;margin:6px 0;width:100%;height:auto}.events td:first-child{white-space:nowrap}";

/// The report's HTML. `title` names what was replayed.
pub fn render(title: &str, deploys: &[ReportDeploy], audit: &[AuditRecord]) -> String {
    let mut by_deploy: BTreeMap<&str, Vec<&AuditRecord>> = BTreeMap::new();
    for a in audit {
        if let Some(id) = a.deploy_id.as_deref() {
            by_deploy.entry(id).or_default().push(a);
        }
    }
    let mut h = String::with_capacity(64 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
<title>rollbackd replay report</title><style>{STYLE}</style></head><body>\
<h1>rollbackd replay report</h1><p class=\"meta\">{} · {} deploys</p>",
        escape(title),
        deploys.len()
    );
    h.push_str(
        "<table id=\"summary\"><thead><tr><th>deploy</th><th>service</th><th>environment</th><th>versions</th>\
<th>verdict</th><th class=\"num\">time to decide</th><th>command</th><th class=\"num\">suppressed</th><th>result</th><th>verification</th></tr></thead><tbody>",
    );
    for d in deploys {
        summary_row(&mut h, d, by_deploy.get(d.view.deploy_id.as_str()));
    }
    h.push_str("</tbody></table>");
    measures::section(&mut h, deploys, &by_deploy);
    for d in deploys {
        section(&mut h, d, by_deploy.get(d.view.deploy_id.as_str()));
    }
    h.push_str("</body></html>\n");
    h
}

/// A deploy's audit records, in order.
type Records<'a> = Option<&'a Vec<&'a AuditRecord>>;

/// The events of a deploy's records.
fn events<'a>(records: Records<'a>) -> impl Iterator<Item = &'a AuditEvent> + 'a {
    records.into_iter().flatten().map(|a| &a.event)
}

fn summary_row(h: &mut String, d: &ReportDeploy, records: Records<'_>) {
    let v = &d.view;
    let command = events(records).find_map(|e| match e {
        AuditEvent::Command(c) => Some(c),
        _ => None,
    });
    let decided = command
        .and_then(|c| c.detected_after)
        .map(|took| format!("{:.0} s", took.as_secs_f64()))
        .unwrap_or_else(|| "—".into());
    let command_text = command
        .map(|c| format!("{} ({})", c.action.as_str(), c.trigger.as_str()))
        .unwrap_or_else(|| "—".into());
    let suppressed = events(records)
        .filter(|e| matches!(e, AuditEvent::Suppressed(_)))
        .count();
    let result = events(records)
        .filter_map(|e| match e {
            AuditEvent::Result(r) => Some(r.status.as_str()),
            _ => None,
        })
        .last()
        .unwrap_or("—");
    let verification = events(records)
        .filter_map(|e| match e {
            AuditEvent::Verification(v) => Some(v.outcome.as_str()),
            _ => None,
        })
        .last()
        .unwrap_or("—");
    let _ = write!(
        h,
        "<tr data-deploy-id=\"{id}\"><td><a href=\"#deploy-{id}\">{id}</a></td><td>{}</td><td>{}</td><td>{}</td>\
<td class=\"state {}\">{}</td><td class=\"num\">{decided}</td><td>{}</td><td class=\"num\">{suppressed}</td><td>{}</td><td>{}</td></tr>",
        escape(&v.service),
        escape(&v.environment),
        escape(&versions(v)),
        if v.state == "rollback" { "rollback" } else { "" },
        escape(&v.state),
        escape(&command_text),
        escape(result),
        escape(verification),
        id = escape(&v.deploy_id),
    );
}

fn versions(v: &DeployView) -> String {
    match &v.previous_version {
        Some(p) => format!("{p} → {}", v.version),
        None => v.version.clone(),
    }
}

fn section(h: &mut String, d: &ReportDeploy, records: Records<'_>) {
    let v = &d.view;
    let id = escape(&v.deploy_id);
    let _ = write!(
        h,
        "<section class=\"deploy\" id=\"deploy-{id}\" data-deploy-id=\"{id}\"><h2>{} · {} · {id}</h2>\
<p class=\"meta\">{}{} · started {} · <span class=\"state {}\">{}</span>{}</p>",
        escape(&v.service),
        escape(&v.environment),
        escape(&versions(v)),
        v.strategy
            .as_deref()
            .map(|s| format!(" · {}", escape(s)))
            .unwrap_or_default(),
        v.started_at,
        if v.state == "rollback" { "rollback" } else { "" },
        escape(&v.state),
        match &d.finished {
            Some((at, why)) => format!(" · finished {at} ({})", escape(why)),
            None => " · still watched at the end of the input".into(),
        }
    );
    let of_kind = |kind: &'static str| {
        records
            .into_iter()
            .flatten()
            .filter(move |a| a.kind() == kind)
    };
    if let Some(decision) = of_kind("command")
        .chain(of_kind("decision"))
        .find_map(|a| summary::numbers(a))
    {
        let _ = write!(
            h,
            "<p class=\"evidence\">evidence at the decision: {}</p>",
            escape(&decision)
        );
    }
    let markers: Vec<(Timestamp, String)> = records
        .into_iter()
        .flatten()
        .filter(|a| !matches!(a.event, AuditEvent::Alert(_)))
        .map(|a| (a.at, format!("{}: {}", a.kind(), summary::line(a))))
        .collect();
    chart::charts(h, v, &markers);
    h.push_str("<table class=\"events\"><thead><tr><th>at</th><th>kind</th><th>what</th></tr></thead><tbody>");
    for a in records.into_iter().flatten() {
        let numbers = summary::numbers(a)
            .map(|n| format!(" — {}", escape(&n)))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr data-kind=\"{kind}\"><td>{}</td><td>{kind}</td><td>{}{numbers}</td></tr>",
            a.at,
            escape(&summary::line(a)),
            kind = escape(a.kind()),
        );
    }
    h.push_str("</tbody></table></section>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        assert_eq!(
            escape("<script>\"x\" & 'y'</script>"),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
    }

    #[test]
    fn an_empty_replay_is_a_report() {
        let html = render("nothing", &[], &[]);
        assert!(html.contains("0 deploys") && html.ends_with("</html>\n"));
    }
}
