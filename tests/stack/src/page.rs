//! A run's picture: one self-contained HTML page (inline SVG and CSS, no script, no
//! external asset), so it opens anywhere, offline, and can be attached to a report.
//!
//! The demo writes timelines (group capacity, members UP per host, requests per second
//! and failures) above a strip of marks (scale requests, lifecycle events, reloads, the
//! fault); `e2e-bench --html` writes latency distributions per approach side by side
//! ([`latencies`]). Every plotted series is one `<polyline class="series">` carrying
//! its data, so a test (or a curious reader) can check the picture against the run's
//! report without reading pixels:
//!
//! - `data-series`: the series' name; `data-values`: its samples, `t:v` pairs (a
//!   timeline, seconds on the run's clock) or sorted values (a distribution, ms);
//! - `data-total` on a rate: the count it was computed from; `data-count`, `data-p50`,
//!   `data-p99` on a distribution;
//! - each mark is a `<line class="mark" data-mark="KIND" data-t="T">` with a `<title>`.

use std::fmt::Write as _;
use std::path::Path;

const WIDTH: f64 = 960.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 104.0;
const RIGHT: f64 = 24.0;
const TOP: f64 = 28.0;
const BOTTOM: f64 = 36.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line of a timeline: samples `(t, value)`, `t` in seconds on the run's clock.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Its name (`data-series`); letters, digits, `-` and `_` keep it easy to select.
    pub name: String,
    /// What the legend says.
    pub label: String,
    /// The samples, in time order.
    pub points: Vec<(f64, f64)>,
    /// Drawn as steps (a value holds until the next sample), e.g. a desired capacity.
    pub step: bool,
    /// For a rate: the total count it comes from (`data-total`).
    pub total: Option<u64>,
}

impl Series {
    /// A series drawn as a line between samples.
    pub fn line(name: &str, label: &str, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            label: label.into(),
            points,
            step: false,
            total: None,
        }
    }
}

/// Something that happened at one moment: a lifecycle event, a reload, a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Mark {
    /// When, seconds on the run's clock.
    pub t: f64,
    /// Its kind (`data-mark`): one row of the strip per kind.
    pub kind: String,
    /// What the tooltip says.
    pub label: String,
}

/// A chart of lines over time.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Its heading.
    pub title: String,
    /// What the y axis counts.
    pub y_label: String,
    /// Its lines.
    pub series: Vec<Series>,
}

/// A latency distribution of one approach (or stage), in ms.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// Its name (`data-series`).
    pub name: String,
    /// The samples, ms.
    pub values_ms: Vec<u64>,
}

/// One part of the page.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Lines over the run's time.
    Timeline(Timeline),
    /// Marks over the run's time, one row per kind.
    Marks {
        /// Its heading.
        title: String,
        /// The marks.
        marks: Vec<Mark>,
    },
    /// Cumulative distributions side by side (log-scaled ms).
    Cdf {
        /// Its heading.
        title: String,
        /// What the x axis measures.
        x_label: String,
        /// One line per approach.
        distributions: Vec<Distribution>,
    },
}

/// A whole page: a title, a few facts, the charts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The heading and `<title>`.
    pub title: String,
    /// One line under the title saying what the run was.
    pub subtitle: String,
    /// Figures of the run, shown as a table (name, value).
    pub facts: Vec<(String, String)>,
    /// The charts, in order; timelines and marks share one time axis.
    pub charts: Vec<Chart>,
}

/// Text safe inside HTML elements and attribute values.
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

/// A number for data attributes: integers without a decimal point, else up to 3
/// decimals.
fn num(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The smallest "nice" number (1, 2, 5 times a power of ten) at least `v`.
fn nice_ceil(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

/// The time span of every timeline and mark: from 0 (the run's start) to the last.
fn time_span(charts: &[Chart]) -> (f64, f64) {
    let mut any = false;
    let mut hi = f64::NEG_INFINITY;
    for c in charts {
        let ts: Vec<f64> = match c {
            Chart::Timeline(t) => t
                .series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0))
                .collect(),
            Chart::Marks { marks, .. } => marks.iter().map(|m| m.t).collect(),
            Chart::Cdf { .. } => Vec::new(),
        };
        for t in ts {
            any = true;
            hi = hi.max(t);
        }
    }
    // The run's clock starts at 0.
    (0.0, if any && hi > 0.0 { hi } else { 1.0 })
}

/// Maps x and y data to the plot area.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
    height: f64,
    log_x: bool,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        let (v, a, b) = if self.log_x {
            (v.max(1.0).log10(), self.x0.log10(), self.x1.log10())
        } else {
            (v, self.x0, self.x1)
        };
        LEFT + (v - a) / (b - a).max(f64::EPSILON) * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        let bottom = self.height - BOTTOM;
        bottom - (v - self.y0) / (self.y1 - self.y0).max(f64::EPSILON) * (bottom - TOP)
    }
}

/// The time axis at the bottom of a chart: ticks at nice seconds.
fn time_axis(out: &mut String, f: &Frame) {
    let bottom = f.height - BOTTOM;
    let _ = writeln!(
        out,
        r##"<line x1="{LEFT}" y1="{bottom}" x2="{}" y2="{bottom}" stroke="#444"/>"##,
        WIDTH - RIGHT
    );
    let step = nice_ceil((f.x1 - f.x0) / 10.0);
    let mut t = (f.x0 / step).ceil() * step;
    let mut n = 0;
    while t <= f.x1 + 1e-9 && n < 50 {
        let x = f.x(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{bottom}" x2="{x:.1}" y2="{}" stroke="#444"/><text x="{x:.1}" y="{}" text-anchor="middle">{}s</text>"##,
            bottom + 4.0,
            bottom + 16.0,
            num(t)
        );
        t += step;
        n += 1;
    }
}

fn legend(out: &mut String, entries: &[(String, &str)]) {
    let mut x = LEFT;
    for (label, color) in entries {
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="8" width="12" height="4" fill="{color}"/><text x="{:.1}" y="14">{}</text>"#,
            x + 16.0,
            escape(label)
        );
        x += 30.0 + 7.0 * label.chars().count() as f64;
    }
}

fn timeline_svg(t: &Timeline, span: (f64, f64)) -> String {
    let ymax = t
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let f = Frame {
        x0: span.0,
        x1: span.1,
        y0: 0.0,
        // Four ticks of a nice step: 0, 2, 4, 6, 8 rather than 0, 2.5, 5...
        y1: 4.0 * nice_ceil(ymax * 1.05 / 4.0),
        height: HEIGHT,
        log_x: false,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg class="chart" data-chart="timeline" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{}">"#,
        escape(&t.title)
    );
    // y grid and labels
    for i in 0..=4 {
        let v = f.y1 * f64::from(i) / 4.0;
        let y = f.y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            num((v * 100.0).round() / 100.0)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="12" y="{:.1}" transform="rotate(-90 12 {:.1})" text-anchor="middle">{}</text>"#,
        HEIGHT / 2.0,
        HEIGHT / 2.0,
        escape(&t.y_label)
    );
    time_axis(&mut out, &f);
    let mut entries = Vec::new();
    for (i, s) in t.series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut pts = Vec::new();
        for (j, (x, y)) in s.points.iter().enumerate() {
            if s.step && j > 0 {
                pts.push(format!("{:.1},{:.1}", f.x(*x), f.y(s.points[j - 1].1)));
            }
            pts.push(format!("{:.1},{:.1}", f.x(*x), f.y(*y)));
        }
        let values: Vec<String> = s
            .points
            .iter()
            .map(|(x, y)| format!("{}:{}", num(*x), num(*y)))
            .collect();
        let total = s
            .total
            .map(|n| format!(r#" data-total="{n}""#))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            r#"<polyline class="series" data-series="{}" data-values="{}"{total} points="{}" fill="none" stroke="{color}" stroke-width="1.6"><title>{}</title></polyline>"#,
            escape(&s.name),
            values.join(" "),
            pts.join(" "),
            escape(&s.label)
        );
        entries.push((s.label.clone(), color));
    }
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

fn marks_svg(marks: &[Mark], span: (f64, f64)) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for m in marks {
        if !kinds.contains(&m.kind.as_str()) {
            kinds.push(&m.kind);
        }
    }
    let row = 22.0;
    let height = TOP + BOTTOM + row * kinds.len().max(1) as f64;
    let f = Frame {
        x0: span.0,
        x1: span.1,
        y0: 0.0,
        y1: 1.0,
        height,
        log_x: false,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg class="chart" data-chart="marks" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="events">"#
    );
    for (i, k) in kinds.iter().enumerate() {
        let y = TOP + row * i as f64;
        let color = PALETTE[i % PALETTE.len()];
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            y + row / 2.0,
            WIDTH - RIGHT,
            y + row / 2.0,
            LEFT - 6.0,
            y + row / 2.0 + 4.0,
            escape(k)
        );
        for m in marks.iter().filter(|m| m.kind == *k) {
            let x = f.x(m.t);
            let _ = writeln!(
                out,
                r#"<line class="mark" data-mark="{}" data-t="{}" x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-width="2"><title>{}s {}</title></line>"#,
                escape(&m.kind),
                num(m.t),
                y + 3.0,
                y + row - 3.0,
                num((m.t * 10.0).round() / 10.0),
                escape(&m.label)
            );
        }
    }
    time_axis(&mut out, &f);
    out.push_str("</svg>\n");
    out
}

fn cdf_svg(x_label: &str, dists: &[Distribution]) -> String {
    let all = || dists.iter().flat_map(|d| d.values_ms.iter().copied());
    let lo = all().min().unwrap_or(1).max(1) as f64;
    let hi = all().max().unwrap_or(10).max(2) as f64;
    let f = Frame {
        x0: 10f64.powf(lo.log10().floor()),
        x1: 10f64.powf(hi.log10().ceil()).max(10.0),
        y0: 0.0,
        y1: 1.0,
        height: HEIGHT + 20.0,
        log_x: true,
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg class="chart" data-chart="cdf" viewBox="0 0 {WIDTH} {}" width="{WIDTH}" height="{}" role="img" aria-label="{}">"#,
        f.height,
        f.height,
        escape(x_label)
    );
    for i in 0..=4 {
        let v = f64::from(i) / 4.0;
        let y = f.y(v);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{}%</text>"##,
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            i * 25
        );
    }
    let bottom = f.height - BOTTOM;
    // Ticks at 1, 2 and 5 of every decade.
    let mut decade = f.x0;
    let mut n = 0;
    while decade <= f.x1 * 1.0001 && n < 12 {
        for m in [1.0, 2.0, 5.0] {
            let d = decade * m;
            if d > f.x1 * 1.0001 {
                break;
            }
            let x = f.x(d);
            let _ = writeln!(
                out,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{bottom}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{} ms</text>"##,
                bottom + 16.0,
                num(d)
            );
        }
        decade *= 10.0;
        n += 1;
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{} (log scale; the share of samples at or below)</text>"#,
        (LEFT + WIDTH - RIGHT) / 2.0,
        f.height - 4.0,
        escape(x_label)
    );
    let mut entries = Vec::new();
    for (i, dist) in dists.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut v = dist.values_ms.clone();
        v.sort_unstable();
        let count = v.len();
        let mut pts = Vec::new();
        for (j, ms) in v.iter().enumerate() {
            let x = f.x(*ms as f64);
            pts.push(format!("{x:.1},{:.1}", f.y(j as f64 / count as f64)));
            pts.push(format!("{x:.1},{:.1}", f.y((j + 1) as f64 / count as f64)));
        }
        let (p50, p99) = (crate::percentile(&v, 50.0), crate::percentile(&v, 99.0));
        let values: Vec<String> = v.iter().map(ToString::to_string).collect();
        let label = format!("{} (n={count}, p50 {p50} ms, p99 {p99} ms)", dist.name);
        let _ = writeln!(
            out,
            r#"<polyline class="series" data-series="{}" data-values="{}" data-count="{count}" data-p50="{p50}" data-p99="{p99}" points="{}" fill="none" stroke="{color}" stroke-width="1.6"><title>{}</title></polyline>"#,
            escape(&dist.name),
            values.join(" "),
            pts.join(" "),
            escape(&label)
        );
        entries.push((label, color));
    }
    legend(&mut out, &entries);
    out.push_str("</svg>\n");
    out
}

impl Page {
    /// The whole page as HTML.
    pub fn render(&self) -> String {
        let span = time_span(&self.charts);
        let mut out = String::new();
        out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(out, "<title>{}</title>", escape(&self.title));
        out.push_str(
            "<style>\nbody{font-family:sans-serif;margin:24px;color:#222;max-width:1000px}\n\
             h1{font-size:20px;margin:0 0 4px} h2{font-size:15px;margin:22px 0 4px}\n\
             p.sub{color:#555;margin:0 0 12px}\n\
             table.facts{border-collapse:collapse;font-size:13px}\n\
             table.facts td,table.facts th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}\n\
             table.facts th{font-weight:normal;color:#555}\n\
             svg.chart{font-size:11px;display:block}\n</style>\n</head>\n<body>\n",
        );
        let _ = writeln!(out, "<h1>{}</h1>", escape(&self.title));
        if !self.subtitle.is_empty() {
            let _ = writeln!(out, "<p class=\"sub\">{}</p>", escape(&self.subtitle));
        }
        if !self.facts.is_empty() {
            out.push_str("<table class=\"facts\">\n");
            for (k, v) in &self.facts {
                let _ = writeln!(out, "<tr><th>{}</th><td>{}</td></tr>", escape(k), escape(v));
            }
            out.push_str("</table>\n");
        }
        for c in &self.charts {
            match c {
                Chart::Timeline(t) => {
                    let _ = writeln!(out, "<h2>{}</h2>", escape(&t.title));
                    out.push_str(&timeline_svg(t, span));
                }
                Chart::Marks { title, marks } => {
                    let _ = writeln!(out, "<h2>{}</h2>", escape(title));
                    out.push_str(&marks_svg(marks, span));
                }
                Chart::Cdf {
                    title,
                    x_label,
                    distributions,
                } => {
                    let _ = writeln!(out, "<h2>{}</h2>", escape(title));
                    out.push_str(&cdf_svg(x_label, distributions));
                }
            }
        }
        out.push_str("</body>\n</html>\n");
        out
    }

    /// Writes the page to `path`.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.render())
    }
}

/// Per second rates from cumulative counts sampled at `(t, count)`: one point per
/// interval, at its end.
pub fn rates(cumulative: &[(f64, u64)]) -> Vec<(f64, f64)> {
    cumulative
        .windows(2)
        .filter_map(|w| {
            let dt = w[1].0 - w[0].0;
            (dt > 0.0).then(|| (w[1].0, w[1].1.saturating_sub(w[0].1) as f64 / dt))
        })
        .collect()
}

/// One approach of a benchmark: its name, event -> serving (ms) and event -> out of
/// maintenance (ms, without the health-check rise) per sample.
pub type LatencyRow = (String, Vec<u64>, Vec<u64>);

/// The latency page of a benchmark: per approach, the event-to-serving distribution
/// and the same without the health-check rise, side by side, and a table of figures.
pub fn latencies(title: &str, subtitle: &str, rows: &[LatencyRow]) -> Page {
    let facts = rows
        .iter()
        .map(|(name, serving, excl)| {
            (
                name.clone(),
                format!(
                    "event to serving: n={} p50 {} ms p99 {} ms; excluding the health-check rise: p50 {} ms p99 {} ms",
                    serving.len(),
                    crate::percentile(serving, 50.0),
                    crate::percentile(serving, 99.0),
                    crate::percentile(excl, 50.0),
                    crate::percentile(excl, 99.0),
                ),
            )
        })
        .collect();
    let dist = |pick: fn(&LatencyRow) -> &Vec<u64>| {
        rows.iter()
            .map(|r| Distribution {
                name: r.0.clone(),
                values_ms: pick(r).clone(),
            })
            .collect()
    };
    Page {
        title: title.into(),
        subtitle: subtitle.into(),
        facts,
        charts: vec![
            Chart::Cdf {
                title: "Auto Scaling's event -> the new instance's first request served through HAProxy".into(),
                x_label: "event to serving".into(),
                distributions: dist(|r| &r.1),
            },
            Chart::Cdf {
                title: "Auto Scaling's event -> its server out of maintenance on the last host (without the health-check rise)".into(),
                x_label: "event to out of maintenance".into(),
                distributions: dist(|r| &r.2),
            },
        ],
    }
}

/// The opening tags `<name ...>` of a drawn page, as their attribute text: to read a
/// page back (its checks, the demo's test).
pub fn tags<'a>(html: &'a str, name: &str) -> Vec<&'a str> {
    html.split(&format!("<{name}"))
        .skip(1)
        .filter(|s| s.starts_with(' '))
        .filter_map(|s| s.split('>').next())
        .collect()
}

/// Attribute `name`'s value in a tag's attribute text ([`tags`]).
pub fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    tag.get(start..)?.split('"').next()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Page {
        Page {
            title: "run <1> & \"quotes\"".into(),
            subtitle: "a test".into(),
            facts: vec![("requests".into(), "10".into())],
            charts: vec![
                Chart::Timeline(Timeline {
                    title: "capacity".into(),
                    y_label: "instances".into(),
                    series: vec![
                        Series {
                            step: true,
                            ..Series::line("desired", "desired", vec![(0.0, 2.0), (5.0, 3.0)])
                        },
                        Series::line("running", "running", vec![(0.5, 2.0), (6.0, 3.0)]),
                    ],
                }),
                Chart::Timeline(Timeline {
                    title: "requests".into(),
                    y_label: "per s".into(),
                    series: vec![Series {
                        total: Some(10),
                        ..Series::line("rps", "requests/s", rates(&[(0.0, 0), (2.0, 4), (4.0, 10)]))
                    }],
                }),
                Chart::Marks {
                    title: "events".into(),
                    marks: vec![
                        Mark {
                            t: 1.0,
                            kind: "reload".into(),
                            label: "proxy-1 <reload>".into(),
                        },
                        Mark {
                            t: 2.5,
                            kind: "launch".into(),
                            label: "i-1".into(),
                        },
                    ],
                },
            ],
        }
    }

    #[test]
    fn every_series_is_one_polyline_carrying_its_data() {
        let html = page().render();
        let lines = tags(&html, "polyline");
        let names: Vec<&str> = lines
            .iter()
            .filter_map(|t| attr(t, "data-series"))
            .collect();
        assert_eq!(names, ["desired", "running", "rps"]);
        assert_eq!(attr(lines[0], "data-values"), Some("0:2 5:3"));
        assert_eq!(attr(lines[2], "data-values"), Some("2:2 4:3"));
        assert_eq!(attr(lines[2], "data-total"), Some("10"));
        // A step series holds its value until the next sample: one more point.
        assert_eq!(attr(lines[0], "points").unwrap().split(' ').count(), 3);
        let marks: Vec<&str> = tags(&html, "line")
            .into_iter()
            .filter(|t| attr(t, "class") == Some("mark"))
            .collect();
        assert_eq!(marks.len(), 2);
        assert_eq!(attr(marks[0], "data-mark"), Some("reload"));
        assert!(html.contains("data-mark=\"reload\" data-t=\"1\""));
        assert!(html.contains("proxy-1 &lt;reload&gt;"));
        assert!(html.contains("<title>run &lt;1&gt; &amp; &quot;quotes&quot;</title>"));
    }

    #[test]
    fn the_page_is_self_contained() {
        for html in [
            page().render(),
            latencies(
                "bench",
                "x",
                &[("ours".into(), vec![5, 300, 20], vec![1, 2])],
            )
            .render(),
        ] {
            for banned in [
                "<script", "src=", "href=", "url(", "@import", "http:", "https:",
            ] {
                assert!(!html.contains(banned), "{banned} in the page");
            }
            assert!(html.starts_with("<!DOCTYPE html>"));
            assert!(html.trim_end().ends_with("</html>"));
        }
    }

    #[test]
    fn distributions_are_sorted_with_their_percentiles() {
        let p = latencies(
            "bench",
            "",
            &[
                ("ours".into(), vec![300, 5, 20], vec![3, 1, 2]),
                ("polling".into(), vec![4000], vec![3900]),
            ],
        );
        let html = p.render();
        let lines = tags(&html, "polyline");
        assert_eq!(lines.len(), 4, "two charts, one line per approach each");
        let ours = lines[0];
        assert_eq!(attr(ours, "data-series"), Some("ours"));
        assert_eq!(attr(ours, "data-values"), Some("5 20 300"));
        assert_eq!(attr(ours, "data-count"), Some("3"));
        assert_eq!(attr(ours, "data-p50"), Some("20"));
        assert_eq!(attr(ours, "data-p99"), Some("300"));
        assert_eq!(attr(lines[1], "data-series"), Some("polling"));
        assert_eq!(p.facts.len(), 2);
    }

    #[test]
    fn rates_are_per_interval() {
        assert_eq!(
            rates(&[(0.0, 0), (0.5, 10), (1.5, 10), (1.5, 12), (2.0, 20)]),
            [(0.5, 20.0), (1.5, 0.0), (2.0, 16.0)]
        );
        assert_eq!(nice_ceil(7.0), 10.0);
        assert_eq!(nice_ceil(0.3), 0.5);
        assert_eq!(num(3.0), "3");
        assert_eq!(num(2.25), "2.25");
    }
}
