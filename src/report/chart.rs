//! The report's charts of one deploy, as inline SVG: request rates, bad
//! ratios and burn rates over its life, the deploy's events marked on
//! them, and under each a key naming every line.

use std::fmt::Write as _;

use super::escape;
use crate::engine::evaluate::PairEval;
use crate::engine::history::Point;
use crate::engine::DeployView;
use crate::time::Timestamp;

/// Colours of the deploy sides and of the window pairs' lines.
const CANDIDATE: &str = "#d93a3a";
const BASELINE: &str = "#3b6fd6";
const PAIRS: [&str; 6] = [
    "#d93a3a", "#e8a317", "#3b6fd6", "#2e9e5b", "#8a4fd6", "#5b6475",
];
const MARKER: &str = "#8a93a6";

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
            dashed: false,
            points: self
                .points
                .iter()
                .map(|p| (secs(p.at), y(p)))
                .filter(|(_, y)| y.is_finite())
                .collect(),
        }
    }
}

/// `points` averaged over the trailing `span` seconds: each point is the
/// mean of itself and the points before it within `span`.
fn moving_average(points: &[(f64, f64)], span: f64) -> Vec<(f64, f64)> {
    let mut from = 0;
    points
        .iter()
        .enumerate()
        .map(|(i, &(x, _))| {
            while points[from].0 <= x - span {
                from += 1;
            }
            let window = &points[from..=i];
            let mean = window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64;
            (x, mean)
        })
        .collect()
}

/// The three charts of a deploy: request rates, bad ratios, burn rates.
pub(super) fn charts(h: &mut String, v: &DeployView, markers: &[(Timestamp, String)]) {
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
    rates_chart(h, &frame, &plot, first_pair, secs(v.started_at));
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
        |y| format!("{:.2}%", y * 100.0),
    );
    burn_chart(h, &frame, &plot, &v.evaluation.pairs);
}

/// Requests per second of one side in a window of `window` seconds at
/// every evaluation: its count over the time the count covers. Telemetry
/// arrives in exports, a few seconds after its requests: between two
/// exports the count stands still while the clock moves on, so the time
/// covered ends at the last evaluation the count grew at, not at the
/// evaluation itself (dividing by the clock would draw a sawtooth), and
/// begins at the window's start or the deploy's, whichever is later
/// (dividing by the whole window would draw a climb while it fills).
/// Before the first requests arrive there is no rate to draw.
fn rates(
    points: &[Point],
    started: f64,
    window: f64,
    requests: fn(&Point) -> u32,
) -> Vec<(f64, f64)> {
    let mut grew_at = None;
    let mut before = 0;
    points
        .iter()
        .filter_map(|p| {
            let at = secs(p.at);
            let n = requests(p);
            if n > before {
                grew_at = Some(at);
            }
            before = n;
            let covered = grew_at? - started.max(at - window);
            Some((at, f64::from(n) / covered.max(1.0)))
        })
        .collect()
}

/// Requests per second of each side over the window the tests read (the
/// candidate's short window, the baseline's long one), averaged over a
/// quarter of the short window to take out what is left of the exports'
/// rhythm and the noise of a few requests a second.
fn rates_chart(h: &mut String, frame: &Frame<'_>, plot: &Plot<'_>, pair: &PairEval, started: f64) {
    let short = pair.short.as_secs_f64().max(1e-9);
    let long = pair.long.as_secs_f64().max(1e-9);
    let span = (short / 4.0).max(1.0);
    let rate = |label: &str, color, window: f64, requests: fn(&Point) -> u32| Series {
        label: label.to_string(),
        color,
        dashed: false,
        points: moving_average(&rates(plot.points, started, window, requests), span),
    };
    frame.chart(
        h,
        &format!(
            "requests per second: candidate over {}, baseline over {} (the first pair's windows), averaged over {span:.0} s",
            pair.short, pair.long
        ),
        &[
            rate("candidate", CANDIDATE, short, |p| p.candidate.requests),
            rate("baseline", BASELINE, long, |p| p.baseline.requests),
        ],
        |y| format!("{y:.1}/s"),
    );
}

/// The long-window burn rate of every window pair, and each distinct
/// threshold once, dashed in the colour of the first pair it is for.
fn burn_chart(h: &mut String, frame: &Frame<'_>, plot: &Plot<'_>, pairs: &[PairEval]) {
    let mut lines: Vec<Series> = pairs
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
    let mut thresholds: Vec<f64> = Vec::new();
    for (i, p) in pairs.iter().enumerate() {
        if thresholds.contains(&p.burn_rate) {
            continue;
        }
        thresholds.push(p.burn_rate);
        lines.push(Series {
            label: format!("threshold {}× ({}/{})", p.burn_rate, p.short, p.long),
            color: PAIRS[i % PAIRS.len()],
            dashed: true,
            points: vec![(frame.x0, p.burn_rate), (frame.x1, p.burn_rate)],
        });
    }
    frame.chart(
        h,
        "long-window burn rate per window pair, with each pair's threshold",
        &lines,
        |y| format!("{y:.1}×"),
    );
}

/// One line of a chart.
struct Series {
    label: String,
    color: &'static str,
    /// Thresholds are dashed.
    dashed: bool,
    points: Vec<(f64, f64)>,
}

/// The time axis and the event markers the charts of one deploy share.
struct Frame<'a> {
    x0: f64,
    x1: f64,
    markers: &'a [(Timestamp, String)],
}

const W: f64 = 760.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 8.0;
/// The plot area's top and height.
const TOP: f64 = 18.0;
const PLOT: f64 = 120.0;
/// Below the plot: the time axis' labels, then the key's rows.
const AXIS: f64 = 14.0;
const KEY_ROW: f64 = 15.0;
/// Approximate width of a character of the key's 10 px text.
const CHAR: f64 = 6.0;

/// Where values go on one chart.
struct Scale {
    x0: f64,
    x1: f64,
    ymax: f64,
}

impl Scale {
    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x0) / (self.x1 - self.x0) * (W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        TOP + (1.0 - (y / self.ymax).clamp(0.0, 1.0)) * PLOT
    }
}

/// One entry of a chart's key: a swatch and its words.
struct KeyItem<'a> {
    label: &'a str,
    color: &'static str,
    dashed: bool,
    /// The event markers' swatch is a short vertical line.
    vertical: bool,
}

/// The key's entries laid out left to right, wrapping at the chart's
/// width: each with its (x, row).
fn key_layout(items: &[KeyItem<'_>]) -> Vec<(f64, usize)> {
    let mut x = LEFT;
    let mut row = 0;
    items
        .iter()
        .map(|it| {
            let width = 22.0 + CHAR * it.label.chars().count() as f64 + 14.0;
            if x > LEFT && x + width > W - RIGHT {
                x = LEFT;
                row += 1;
            }
            let at = (x, row);
            x += width;
            at
        })
        .collect()
}

impl Frame<'_> {
    /// One chart: its frame, axes and title, the event markers, each
    /// line, then the key under the time axis.
    fn chart(&self, h: &mut String, title: &str, series: &[Series], fmt: impl Fn(f64) -> String) {
        let ymax = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite())
            .fold(0.0, f64::max);
        let scale = Scale {
            x0: self.x0,
            x1: self.x1,
            ymax: if ymax > 0.0 { ymax * 1.05 } else { 1.0 },
        };
        let mut items: Vec<KeyItem<'_>> = series
            .iter()
            .map(|s| KeyItem {
                label: &s.label,
                color: s.color,
                dashed: s.dashed,
                vertical: false,
            })
            .collect();
        if !self.markers.is_empty() {
            items.push(KeyItem {
                label: "event (deploy, decision, command, result…; hover for what)",
                color: MARKER,
                dashed: false,
                vertical: true,
            });
        }
        let layout = key_layout(&items);
        let rows = layout.last().map_or(0, |l| l.1 + 1);
        let height = TOP + PLOT + AXIS + rows as f64 * KEY_ROW + 4.0;
        self.axes(h, title, &fmt(scale.ymax), height);
        for (t, label) in self.markers {
            let mx = scale.px(secs(*t));
            let _ = write!(
                h,
                "<line class=\"marker\" x1=\"{mx:.1}\" x2=\"{mx:.1}\" y1=\"{TOP}\" y2=\"{}\" stroke=\"{MARKER}\" stroke-width=\"1\"><title>{} {}</title></line>",
                TOP + PLOT,
                t,
                escape(label)
            );
        }
        for s in series {
            path(h, &scale, s);
        }
        for (it, (x, row)) in items.iter().zip(layout) {
            key_item(h, it, x, TOP + PLOT + AXIS + KEY_ROW * (row as f64 + 0.5));
        }
        h.push_str("</svg>");
    }

    /// The chart's frame, title and axis labels (`top`: the largest value).
    fn axes(&self, h: &mut String, title: &str, top: &str, height: f64) {
        let _ = write!(
            h,
            "<svg viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"{t}\"><title>{t}</title>\
<rect x=\"{LEFT}\" y=\"{TOP}\" width=\"{}\" height=\"{PLOT}\" fill=\"#fafbfc\" stroke=\"#d9dde5\"/>\
<text x=\"{LEFT}\" y=\"12\" font-size=\"11\" fill=\"#1d2330\">{t}</text>\
<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">{}</text>\
<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">0</text>\
<text x=\"{LEFT}\" y=\"{axis}\" font-size=\"10\" fill=\"#5b6475\">+0 s</text>\
<text x=\"{}\" y=\"{axis}\" font-size=\"10\" fill=\"#5b6475\" text-anchor=\"end\">+{:.0} s</text>",
            W - LEFT - RIGHT,
            LEFT - 4.0,
            TOP + 8.0,
            escape(top),
            LEFT - 4.0,
            TOP + PLOT,
            W - RIGHT,
            self.x1 - self.x0,
            t = escape(title),
            axis = TOP + PLOT + 11.0,
        );
    }
}

/// One series' line.
fn path(h: &mut String, scale: &Scale, s: &Series) {
    if s.points.is_empty() {
        return;
    }
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
        "<path{} d=\"{d}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.6\"{}><title>{}</title></path>",
        if s.dashed { " class=\"threshold\"" } else { "" },
        s.color,
        if s.dashed { " stroke-dasharray=\"5 3\"" } else { "" },
        escape(&s.label)
    );
}

/// One entry of the key, its middle at height `y`.
fn key_item(h: &mut String, it: &KeyItem<'_>, x: f64, y: f64) {
    let swatch = if it.vertical {
        format!(
            "<line x1=\"{m:.1}\" x2=\"{m:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"{}\" stroke-width=\"1\"/>",
            y - 5.0,
            y + 5.0,
            it.color,
            m = x + 9.0
        )
    } else {
        format!(
            "<line x1=\"{x:.1}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{}\" stroke-width=\"2\"{}/>",
            x + 18.0,
            it.color,
            if it.dashed { " stroke-dasharray=\"5 3\"" } else { "" }
        )
    };
    let _ = write!(
        h,
        "<g class=\"key\">{swatch}<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" fill=\"#1d2330\">{}</text></g>",
        x + 22.0,
        y + 3.5,
        escape(it.label)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::history::SideCounts;
    use crate::model::Verdict;

    fn point(at: f64, candidate: u32) -> Point {
        Point {
            at: Timestamp((at * 1e9) as i64),
            verdict: Verdict::Healthy,
            candidate: SideCounts {
                requests: candidate,
                ..SideCounts::default()
            },
            baseline: SideCounts::default(),
            burn: vec![],
        }
    }

    #[test]
    fn a_rate_is_over_the_time_its_count_covers() {
        // 5 rps from a deploy started at 100 s, in a 60 s window,
        // evaluated every second, exported every 5 s (each arriving 0.5 s
        // after its last request).
        let points: Vec<Point> = (100..260)
            .map(|t| {
                let t = t as f64;
                let through = ((t - 100.5) / 5.0).floor() * 5.0 + 100.0;
                let from = (t - 60.0).max(100.0);
                point(t, (5.0 * (through - from).max(0.0)) as u32)
            })
            .collect();
        let r = rates(&points, 100.0, 60.0, |p| p.candidate.requests);
        assert!(r[0].0 > 100.0, "no rate before the first export: {r:?}");
        // Each export arrives a second after its requests: a sixth of the
        // first export's 6 s, a sixtieth of a full window. No sawtooth: the
        // clock moving on between exports does not dilute the count.
        for (at, rps) in &r {
            let within = if *at < 160.0 { 0.2 } else { 0.03 };
            assert!((rps / 5.0 - 1.0).abs() <= within, "{at}: {rps}");
        }
    }

    #[test]
    fn the_moving_average_takes_out_an_alternation() {
        // 5 rps read in exports: one evaluation short, the next not.
        let saw: Vec<(f64, f64)> = (0..20)
            .map(|i| (i as f64 * 5.0, if i % 2 == 0 { 4.0 } else { 6.0 }))
            .collect();
        let smooth = moving_average(&saw, 30.0);
        assert_eq!(smooth.len(), saw.len());
        assert_eq!(smooth[0], (0.0, 4.0), "the first point is its own mean");
        for (x, y) in &smooth[5..] {
            assert!((y - 5.0).abs() < 1e-9, "{x}: {y}");
        }
    }

    #[test]
    fn the_key_wraps_within_the_chart() {
        let label = "a label of some thirty characters";
        let items: Vec<KeyItem<'_>> = (0..8)
            .map(|_| KeyItem {
                label,
                color: CANDIDATE,
                dashed: false,
                vertical: false,
            })
            .collect();
        let layout = key_layout(&items);
        assert_eq!(layout[0], (LEFT, 0));
        assert!(layout.last().unwrap().1 >= 2, "{layout:?}");
        for (it, (x, _)) in items.iter().zip(&layout) {
            let end = x + 22.0 + CHAR * it.label.chars().count() as f64;
            assert!(end <= W - RIGHT, "{x}");
        }
    }
}
