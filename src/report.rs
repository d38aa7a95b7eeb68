//! `replay --report FILE.html`: one self-contained HTML file — inline SVG,
//! no script, nothing fetched — to backtest a policy on a recorded day and
//! show the result in a review: a summary table of every deploy the replay
//! watched, then per deploy its request rates, bad ratios and burn rates
//! over its life with each pair's threshold, the deploy events,
//! decisions, suppressions, commands, results and verifications marked on
//! them and listed in words.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::engine::evaluate::PairEval;
use crate::engine::history::Point;
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

/// Colours of the deploy sides and of the window pairs' lines.
const CANDIDATE: &str = "#d93a3a";
const BASELINE: &str = "#3b6fd6";
const PAIRS: [&str; 6] = [
    "#d93a3a", "#e8a317", "#3b6fd6", "#2e9e5b", "#8a4fd6", "#5b6475",
];

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
    charts(h, v, &markers);
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

/// A time as seconds on a chart's axis.
fn secs(t: Timestamp) -> f64 {
    t.0 as f64 / 1e9
}

/// `bad` of `requests`, 0 without requests.
fn ratio(bad: u32, requests: u32) -> f64 {
    if requests == 0 {
        0.0
    } else {
        bad as f64 / requests as f64
    }
}

/// A deploy's evaluations, to draw lines from.
struct Plot<'a> {
    points: &'a [Point],
}

impl Plot<'_> {
    /// The line of `y` at every evaluation (where it is a number).
    fn line(&self, label: &str, color: &'static str, y: &dyn Fn(&Point) -> f64) -> Series {
        Series {
            label: label.to_string(),
            color,
            points: self
                .points
                .iter()
                .map(|p| (secs(p.at), y(p)))
                .filter(|(_, y)| y.is_finite())
                .collect(),
        }
    }
}

/// The three charts of a deploy: request rates, bad ratios, burn rates.
fn charts(h: &mut String, v: &DeployView, markers: &[(Timestamp, String)]) {
    let points = &v.history;
    let Some(first_pair) = v.evaluation.pairs.first() else {
        h.push_str("<p class=\"meta\">no evaluation</p>");
        return;
    };
    if points.is_empty() {
        h.push_str("<p class=\"meta\">never evaluated</p>");
        return;
    }
    let x0 = secs(v.started_at).min(secs(points[0].at));
    let x1 = markers
        .iter()
        .map(|(t, _)| secs(*t))
        .chain(points.iter().map(|p| secs(p.at)))
        .fold(x0 + 1.0, f64::max);
    let frame = Frame { x0, x1, markers };
    let plot = Plot { points };
    let short = first_pair.short.as_secs_f64().max(1e-9);
    let long = first_pair.long.as_secs_f64().max(1e-9);
    let started = secs(v.started_at);
    frame.chart(
        h,
        "requests per second: candidate (first pair's short window) vs baseline (its long window)",
        &[
            // Until the short window has passed, the candidate's
            // traffic has only run since the start.
            plot.line("candidate", CANDIDATE, &|p| {
                let over = short.min(secs(p.at) - started).max(1.0);
                p.candidate.requests as f64 / over
            }),
            plot.line("baseline", BASELINE, &|p| p.baseline.requests as f64 / long),
        ],
        &[],
        |y| format!("{y:.1}/s"),
    );
    frame.chart(
        h,
        "bad ratio: errors and slow requests, candidate vs baseline",
        &[
            plot.line("candidate errors", CANDIDATE, &|p| {
                ratio(p.candidate.errors, p.candidate.requests)
            }),
            plot.line("baseline errors", BASELINE, &|p| {
                ratio(p.baseline.errors, p.baseline.requests)
            }),
            plot.line("candidate slow", "#e8a317", &|p| {
                ratio(p.candidate.slow, p.candidate.requests)
            }),
            plot.line("baseline slow", "#2e9e5b", &|p| {
                ratio(p.baseline.slow, p.baseline.requests)
            }),
        ],
        &[],
        |y| format!("{:.2}%", y * 100.0),
    );
    burn_chart(h, &frame, &plot, &v.evaluation.pairs);
}

/// The long-window burn rate of every window pair, with each distinct
/// threshold drawn once.
fn burn_chart(h: &mut String, frame: &Frame<'_>, plot: &Plot<'_>, pairs: &[PairEval]) {
    let burns: Vec<Series> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            plot.line(
                &format!("{} {}/{}", p.sli.as_str(), p.short, p.long),
                PAIRS[i % PAIRS.len()],
                &|pt| pt.burn.get(i).copied().unwrap_or(0.0) as f64,
            )
        })
        .collect();
    let mut thresholds: Vec<(f64, String)> = Vec::new();
    for p in pairs {
        if !thresholds.iter().any(|(b, _)| *b == p.burn_rate) {
            thresholds.push((
                p.burn_rate,
                format!("{}× ({}/{})", p.burn_rate, p.short, p.long),
            ));
        }
    }
    frame.chart(
        h,
        "long-window burn rate per window pair, with each pair's threshold",
        &burns,
        &thresholds,
        |y| format!("{y:.1}×"),
    );
}

/// One line of a chart.
struct Series {
    label: String,
    color: &'static str,
    points: Vec<(f64, f64)>,
}

/// The time axis and the event markers the charts of one deploy share.
struct Frame<'a> {
    x0: f64,
    x1: f64,
    markers: &'a [(Timestamp, String)],
}

const W: f64 = 760.0;
const H: f64 = 150.0;
const LEFT: f64 = 56.0;
const TOP: f64 = 18.0;
const BOTTOM: f64 = 18.0;

/// Where values go on one chart.
struct Scale {
    x0: f64,
    x1: f64,
    ymax: f64,
}

impl Scale {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - 8.0)
    }

    fn py(&self, y: f64) -> f64 {
        TOP + (1.0 - (y / self.ymax).clamp(0.0, 1.0)) * (H - TOP - BOTTOM)
    }
}

impl Frame<'_> {
    /// One chart: its frame, axes and title, the thresholds, the event
    /// markers, then each series and its legend.
    fn chart(
        &self,
        h: &mut String,
        title: &str,
        series: &[Series],
        thresholds: &[(f64, String)],
        fmt: impl Fn(f64) -> String,
    ) {
        let ymax = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .chain(thresholds.iter().map(|t| t.0))
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max);
        let scale = Scale {
            x0: self.x0,
            x1: self.x1,
            ymax: if ymax > 0.0 { ymax * 1.05 } else { 1.0 },
        };
        self.axes(h, title, &fmt(scale.ymax));
        for (y, label) in thresholds {
            let _ = write!(
                h,
                "<line class=\"threshold\" x1=\"{LEFT}\" x2=\"{}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#d93a3a\" stroke-dasharray=\"5 3\"><title>threshold {}</title></line>",
                W - 8.0,
                escape(label),
                y = scale.py(*y)
            );
        }
        for (t, label) in self.markers {
            let mx = scale.px(t.0 as f64 / 1e9);
            let _ = write!(
                h,
                "<line class=\"marker\" x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"#8a93a6\" stroke-width=\"1\"><title>{} {}</title></line>",
                H - BOTTOM,
                t,
                escape(label)
            );
        }
        let mut legend_x = LEFT + 8.0;
        for s in series {
            lines(h, &scale, s, legend_x);
            legend_x += 7.0 * s.label.chars().count() as f64 + 16.0;
        }
        h.push_str("</svg>");
    }

    /// The chart's frame, title and axis labels (`top`: the largest value).
    fn axes(&self, h: &mut String, title: &str, top: &str) {
        let _ = write!(
            h,
            "<svg viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{}\" fill=\"#fafbfc\" stroke=\"#d9dde5\"/>\
<text x=\"{LEFT}\" y=\"12\" font-size=\"11\" fill=\"#1d2330\">{t}</text>\
<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">{}</text>\
<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">0</text>\
<text x=\"{LEFT}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\">+0 s</text>\
<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">+{:.0} s</text>",
            W - LEFT - 8.0,
            H - TOP - BOTTOM,
            LEFT - 4.0,
            TOP + 8.0,
            escape(top),
            LEFT - 4.0,
            H - BOTTOM,
            H - 4.0,
            W - 8.0,
            H - 4.0,
            self.x1 - self.x0,
            t = escape(title),
        );
    }
}

/// One series: its path, and its legend at `legend_x`.
fn lines(h: &mut String, scale: &Scale, s: &Series, legend_x: f64) {
    if !s.points.is_empty() {
        let d: String = s
            .points
            .iter()
            .enumerate()
            .map(|(i, (x, y))| {
                format!(
                    "{}{:.1} {:.1}",
                    if i == 0 { "M" } else { " L" },
                    scale.px(*x),
                    scale.py(*y)
                )
            })
            .collect();
        let _ = write!(
            h,
            "<path d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\"/>",
            s.color
        );
    }
    let _ = write!(
        h,
        "<text x=\"{legend_x:.0}\" y=\"{}\" font-size=\"10\" fill=\"{}\">{}</text>",
        TOP + 12.0,
        s.color,
        escape(&s.label)
    );
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
