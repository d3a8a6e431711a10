//! The charts of report.html and of `loadgen compare --out`, drawn by `plotters` into inline
//! SVG (the page stays one self-contained file): latency from schedule over time at p50, p99
//! and p99.9; the HdrHistogram percentile distribution; end-to-end latency and queue depth
//! over time; sent, accepted and processed rates; resident memory; for a capacity search,
//! accepted rate and ack p99 against the offered rate of each step. A comparison draws the
//! same charts with one line per run.

use std::fmt::Write as _;
use std::ops::Range;

use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use serde::Deserialize;

use crate::measure::sampler::SystemSample;
use crate::measure::stats::Second;
use crate::report::capacity::CapacityReport;

const SIZE: (u32, u32) = (960, 340);
/// The distribution's x axis is `1 / (1 - p)`: 10 is p90, 1000 is p99.9. It ends at p99.999.
const TAIL_AXIS: Range<f64> = 1.0..100_000.0;
const BASE: RGBColor = RGBColor(31, 119, 180);
const NEW: RGBColor = RGBColor(255, 127, 14);
const PERCENTILE_COLORS: [RGBColor; 3] = [RGBColor(44, 160, 44), RGBColor(31, 119, 180), RGBColor(214, 39, 40)];

#[derive(Debug, thiserror::Error)]
#[error("drawing the chart {chart:?}: {message}")]
pub struct ChartError {
    chart: String,
    message: String,
}

/// What the charts need from a report.json; older reports lack some series, which then draw empty.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RunData {
    pub timeline: Vec<Second>,
    pub ack_distribution: Vec<(f64, f64)>,
    pub system: SystemData,
    pub capacity: Option<CapacityReport>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SystemData {
    pub timeline: Vec<SystemSample>,
    pub rss_samples_mb: Vec<f64>,
}

pub struct Chart {
    pub title: String,
    pub svg: String,
}

struct Line {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

impl Line {
    fn new(label: impl Into<String>, color: RGBColor, points: impl IntoIterator<Item = (f64, f64)>) -> Self {
        Self { label: label.into(), color, points: points.into_iter().filter(|(x, y)| x.is_finite() && y.is_finite()).collect() }
    }
}

/// One run's charts; each percentile or rate has its own colour.
pub fn of_run(r: &RunData) -> Result<Vec<Chart>, ChartError> {
    let at = |s: &Second, v: f64| (s.t as f64, v);
    let tl = &r.timeline;
    let sys = &r.system.timeline;
    let [p50, p99, p999] = PERCENTILE_COLORS;
    let mut charts = vec![
        over_time(
            "Ack latency from schedule, per second",
            "latency (ms)",
            vec![
                Line::new("p50", p50, tl.iter().map(|s| at(s, s.p50_ms))),
                Line::new("p99", p99, tl.iter().map(|s| at(s, s.p99_ms))),
                Line::new("p99.9", p999, tl.iter().map(|s| at(s, s.p999_ms))),
            ],
        )?,
        distribution(vec![Line::new("accepted (2xx)", p99, r.ack_distribution.iter().map(|&(p, ms)| (tail_x(p), ms)))])?,
        over_time(
            "End-to-end latency (accepted to applied), per second",
            "latency (ms)",
            vec![
                Line::new("p50", p50, sys.iter().filter_map(|s| Some((s.t_s, s.e2e_p50_ms?)))),
                Line::new("p99", p99, sys.iter().filter_map(|s| Some((s.t_s, s.e2e_p99_ms?)))),
            ],
        )?,
        over_time("Queue depth", "events queued", vec![Line::new("queue depth", p99, depth(sys))])?,
        over_time(
            "Rates",
            "requests or events per second",
            vec![
                Line::new("sent", BASE, tl.iter().map(|s| at(s, s.sent as f64))),
                Line::new("accepted (2xx)", p50, tl.iter().map(|s| at(s, s.accepted as f64))),
                Line::new("processed by the worker", p999, processed(sys)),
            ],
        )?,
        over_time("System resident memory", "MB", vec![Line::new("RSS", p99, rss(&r.system.rss_samples_mb))])?,
    ];
    if let Some(c) = &r.capacity {
        charts.push(capacity(c)?);
    }
    Ok(charts)
}

/// Two runs overlaid: one colour per run, the same charts as a run's.
pub fn compared(base: &RunData, new: &RunData) -> Result<Vec<Chart>, ChartError> {
    let both = |f: &dyn Fn(&RunData) -> Vec<(f64, f64)>| vec![Line::new("base", BASE, f(base)), Line::new("new", NEW, f(new))];
    Ok(vec![
        over_time("Ack latency from schedule, p99 per second", "latency (ms)", both(&|r| r.timeline.iter().map(|s| (s.t as f64, s.p99_ms)).collect()))?,
        distribution(both(&|r| r.ack_distribution.iter().map(|&(p, ms)| (tail_x(p), ms)).collect()))?,
        over_time("End-to-end latency, p99 per second", "latency (ms)", both(&|r| r.system.timeline.iter().filter_map(|s| Some((s.t_s, s.e2e_p99_ms?))).collect()))?,
        over_time("Queue depth", "events queued", both(&|r| depth(&r.system.timeline).collect()))?,
        over_time("Accepted per second", "requests per second", both(&|r| r.timeline.iter().map(|s| (s.t as f64, s.accepted as f64)).collect()))?,
        over_time("Processed by the worker per second", "events per second", both(&|r| processed(&r.system.timeline).collect()))?,
    ])
}

/// A self-contained page: the summary as preformatted text, then the charts.
pub fn page(title: &str, summary: &str, charts: &[Chart]) -> String {
    let mut out = format!(
        "<!doctype html><meta charset=utf-8><title>{title}</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:1000px}}pre{{background:#f4f4f4;padding:1em;overflow-x:auto}}\
         figure{{margin:1.5em 0}}</style><h1>{title}</h1><pre>{}</pre>",
        summary.replace('&', "&amp;").replace('<', "&lt;")
    );
    for c in charts {
        let _ = write!(out, "<figure class=chart><figcaption><h2>{}</h2></figcaption>{}</figure>", c.title, c.svg);
    }
    out
}

fn depth(sys: &[SystemSample]) -> impl Iterator<Item = (f64, f64)> + '_ {
    sys.iter().filter_map(|s| Some((s.t_s, s.queue_depth? as f64)))
}

/// The first sample has no previous one to take a rate from.
fn processed(sys: &[SystemSample]) -> impl Iterator<Item = (f64, f64)> + '_ {
    sys.iter().skip(1).map(|s| (s.t_s, s.processed_per_s))
}

/// The memory sampler runs twice a second from the system's start.
fn rss(mb: &[f64]) -> impl Iterator<Item = (f64, f64)> + '_ {
    mb.iter().enumerate().map(|(i, m)| (i as f64 * 0.5, *m))
}

/// A percentile's position on the distribution chart's x axis.
fn tail_x(percentile: f64) -> f64 {
    (1.0 / (1.0 - percentile / 100.0)).clamp(TAIL_AXIS.start, TAIL_AXIS.end)
}

/// The label of a point on that axis: 10 is "90%", 1000 is "99.9%".
fn tail_label(x: &f64) -> String {
    let p = 100.0 * (1.0 - 1.0 / x.max(1.0));
    let digits = (x.log10().round() as usize).saturating_sub(2);
    format!("{p:.digits$}%")
}

fn upper(lines: &[Line], axis: fn(&(f64, f64)) -> f64) -> f64 {
    lines.iter().flat_map(|l| l.points.iter().map(axis)).fold(0.0, f64::max)
}

fn over_time(title: &str, y_desc: &str, lines: Vec<Line>) -> Result<Chart, ChartError> {
    let x = 0.0..upper(&lines, |p| p.0).max(1.0);
    draw(title, x, "time since the load started (s)", &|v| format!("{v}"), y_desc, &lines)
}

fn distribution(lines: Vec<Line>) -> Result<Chart, ChartError> {
    let title = "Ack latency by percentile (HdrHistogram distribution, whole run)";
    draw(title, TAIL_AXIS.log_scale(), "percentile (log scale of 1 / (1 - p))", &tail_label, "latency from schedule (ms)", &lines)
}

const CEILING: RGBColor = RGBColor(127, 127, 127);
const GRID: RGBColor = RGBColor(235, 235, 235);

type Drawn = Result<(), Box<dyn std::error::Error>>;

/// One chart drawn into an SVG string: a white canvas with the margins and label areas
/// every chart shares (and a right axis's when asked), handed to `draw`.
fn svg_chart(title: &str, right_axis: bool, draw: impl FnOnce(&mut ChartBuilder<'_, '_, SVGBackend<'_>>) -> Drawn) -> Result<Chart, ChartError> {
    let mut svg = String::new();
    let drawn = (|| -> Drawn {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE)?;
        let mut builder = ChartBuilder::on(&root);
        builder.margin(12).x_label_area_size(42).y_label_area_size(70);
        if right_axis {
            builder.right_y_label_area_size(70);
        }
        draw(&mut builder)?;
        root.present()?;
        Ok(())
    })();
    drawn.map_err(|e| ChartError { chart: title.into(), message: e.to_string() })?;
    Ok(Chart { title: title.into(), svg })
}

/// A legend sample: a short stroke in the series' style.
fn legend(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style)
}

fn line_series<DB: DrawingBackend>(l: &Line) -> LineSeries<DB, (f64, f64)> {
    LineSeries::new(l.points.iter().copied(), l.color.stroke_width(2))
}

/// The capacity search: accepted rate (left axis) and ack p99 (right axis) at each step's
/// offered rate, the bare-HTTP ceiling as a dashed line, the knee as a dashed upright.
fn capacity(c: &CapacityReport) -> Result<Chart, ChartError> {
    let [accepted_color, _, p99_color] = PERCENTILE_COLORS;
    let accepted = [Line::new("accepted/s (left)", accepted_color, c.steps.iter().map(|s| (s.offered_rate, s.accepted_per_s)))];
    let p99 = [Line::new("ack p99 ms (right)", p99_color, c.steps.iter().map(|s| (s.offered_rate, s.ack_p99_ms)))];
    let x_top = upper(&accepted, |p| p.0).max(1.0) * 1.1;
    let rate_top = upper(&accepted, |p| p.1).max(c.ceiling_rps.unwrap_or(0.0)).max(1.0) * 1.1;
    let p99_top = upper(&p99, |p| p.1).max(1.0) * 1.1;
    svg_chart("Capacity search: accepted rate and ack p99 by offered rate", true, |builder| {
        let mut chart = builder.build_cartesian_2d(0.0..x_top, 0.0..rate_top)?.set_secondary_coord(0.0..x_top, 0.0..p99_top);
        let whole = |v: &f64| format!("{v:.0}");
        let mut mesh = chart.configure_mesh();
        mesh.x_desc("offered rate (requests/s)").y_desc("accepted (requests/s)").x_label_formatter(&whole).y_label_formatter(&whole);
        mesh.light_line_style(GRID).draw()?;
        chart.configure_secondary_axes().y_desc("ack p99 from schedule (ms)").draw()?;
        let [a] = &accepted;
        chart.draw_series(line_series(a).point_size(3))?.label(a.label.as_str()).legend(legend(a.color.stroke_width(2)));
        let [p] = &p99;
        chart.draw_secondary_series(line_series(p).point_size(3))?.label(p.label.as_str()).legend(legend(p.color.stroke_width(2)));
        if let Some(ceiling) = c.ceiling_rps {
            let line = DashedLineSeries::new([(0.0, ceiling), (x_top, ceiling)], 6, 4, CEILING.stroke_width(1));
            chart.draw_series(line)?.label(format!("bare-HTTP ceiling {ceiling:.0}/s")).legend(legend(CEILING.stroke_width(1)));
        }
        if let Some(k) = &c.knee {
            let upright = DashedLineSeries::new([(k.offered_rate, 0.0), (k.offered_rate, rate_top)], 3, 3, BLACK.stroke_width(1));
            chart.draw_series(upright)?.label(format!("knee {:.0}/s offered", k.offered_rate)).legend(legend(BLACK.stroke_width(1)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}

fn draw<X>(title: &str, x: X, x_desc: &str, x_fmt: &dyn Fn(&f64) -> String, y_desc: &str, lines: &[Line]) -> Result<Chart, ChartError>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    // A flat zero line (an idle queue) gets a 0..1 axis rather than ticks in thousandths.
    let y_top = upper(lines, |p| p.1).max(1.0) * 1.1;
    svg_chart(title, false, |builder| {
        let mut chart = builder.build_cartesian_2d(x, 0.0..y_top)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).x_label_formatter(x_fmt).light_line_style(GRID).draw()?;
        for l in lines {
            chart.draw_series(line_series(l))?.label(l.label.as_str()).legend(legend(l.color.stroke_width(2)));
        }
        chart.configure_series_labels().position(SeriesLabelPosition::UpperLeft).background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_axis_puts_each_nine_a_decade_further() {
        assert!((tail_x(90.0) - 10.0).abs() < 1e-9);
        assert!((tail_x(99.9) - 1000.0).abs() < 1e-6);
        assert_eq!(tail_x(100.0), TAIL_AXIS.end, "p100 stays on the axis");
        assert_eq!(tail_x(0.0), 1.0);
        assert_eq!([1.0, 10.0, 100.0, 1000.0, 10_000.0].map(|x| tail_label(&x)), ["0%", "90%", "99%", "99.9%", "99.99%"]);
    }

    /// The contents of the SVG's text elements.
    fn texts(svg: &str) -> impl Iterator<Item = &str> {
        svg.split("<text").skip(1).filter_map(|t| Some(t.split_once('>')?.1.split_once("</text>")?.0.trim()))
    }

    #[test]
    fn every_line_of_a_run_is_drawn_with_its_axes() {
        let timeline = (0..5).map(|t| Second { t, sent: 100, accepted: 90, p50_ms: 1.0, p99_ms: 5.0, p999_ms: 9.0, ..Default::default() }).collect();
        let system = SystemData {
            timeline: (0..5).map(|t| SystemSample { t_s: t as f64, queue_depth: Some(t * 3), processed_per_s: 80.0, e2e_p50_ms: Some(2.0), e2e_p99_ms: Some(7.0) }).collect(),
            rss_samples_mb: vec![40.0, 42.0, 41.0],
        };
        let run = RunData { timeline, ack_distribution: vec![(0.0, 1.0), (50.0, 1.2), (99.0, 5.0), (99.9, 9.0)], system, capacity: None };
        let charts = of_run(&run).expect("charts");
        assert_eq!(charts.len(), 6);
        for c in &charts {
            assert!(c.svg.contains("<polyline"), "{} has no line", c.title);
            assert!(c.svg.contains("<text"), "{} has no axis labels", c.title);
        }
        assert!(texts(&charts[1].svg).any(|t| t == "99.9%"), "the distribution's axis is labelled in percentiles");
        let overlaid = compared(&run, &RunData::default()).expect("charts");
        assert!(overlaid.iter().all(|c| texts(&c.svg).any(|t| t == "base") && texts(&c.svg).any(|t| t == "new")), "both runs are in every legend");
    }

    #[test]
    fn a_capacity_search_is_drawn_with_its_knee_and_ceiling() {
        use crate::report::capacity::StepResult;
        let step = |rate: f64, accepted: f64, p99: f64, ok: bool| StepResult {
            offered_rate: rate,
            achieved_send_rate: rate,
            send_shortfall_pct: 0.0,
            accepted_per_s: accepted,
            ack_p99_ms: p99,
            system_cpu_us_per_event: None,
            loadgen_us_per_request: 10.0,
            generator_limited: false,
            within_limits: ok,
        };
        let steps = vec![step(1500.0, 1500.0, 4.0, true), step(3000.0, 2990.0, 9.0, true), step(4500.0, 3600.0, 250.0, false)];
        let report = CapacityReport { knee: Some(steps[1].clone()), steps, ceiling_rps: Some(9000.0), knee_ceiling_ratio: Some(0.33) };
        let charts = of_run(&RunData { capacity: Some(report), ..RunData::default() }).expect("charts");
        let c = charts.last().expect("a capacity chart");
        assert!(c.title.starts_with("Capacity"));
        // The longest line of that colour: its legend sample has two points.
        let points_in = |color: &str| {
            let lines = c.svg.split("<polyline").filter(|p| p.contains(&format!("stroke=\"{color}\"")));
            lines.filter_map(|l| l.split("points=\"").nth(1)?.split('"').next().map(|p| p.split_whitespace().count())).max().unwrap_or(0)
        };
        assert_eq!(points_in("#2CA02C"), 3, "accepted/s at each step");
        assert_eq!(points_in("#D62728"), 3, "ack p99 at each step");
        let labels: Vec<&str> = texts(&c.svg).collect();
        for want in ["offered rate (requests/s)", "accepted (requests/s)", "ack p99 from schedule (ms)", "bare-HTTP ceiling 9000/s", "knee 3000/s offered"] {
            assert!(labels.contains(&want), "{want:?} missing from {labels:?}");
        }
        assert_eq!(of_run(&RunData::default()).expect("charts").len(), 6, "no capacity chart without a search");
    }
}
