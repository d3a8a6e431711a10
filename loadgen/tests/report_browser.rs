//! report.html and compare.html from two real short runs and a short capacity search against
//! the real system (spawned `webhooks standalone`), opened in headless Chromium over
//! WebDriver (Debian's `chromium` and `chromium-driver`): every chart must be drawn, with
//! plotted lines of real extent, and the browser's screenshots are kept beside the reports
//! in `target/loadgen/report-browser/`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use loadgen::experiment::run;
use loadgen::scenario::Scenario;
use serde_json::{json, Value};

const OUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/loadgen/report-browser");
const WAIT: Duration = Duration::from_secs(30);

/// The system and workload of every run here; each run adds its load.
const SCENARIO: &str = r#"
name = "report-browser"
seed = 11

[target]
spawn = "standalone"

[signing]
scheme = "standard"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

[workload]
orders = 200
duplicate_fraction = 0.1
invalid_fraction = 0.02

[load]
max_in_flight = 64

[drain]
timeout_s = 60
"#;

/// A ramp past what the worker applies at once, so that queue depth and end-to-end latency move.
const RAMP: &str = r#"
[[load.phases]]
kind = "ramp"
from = 300
to = 2000
duration_s = 4
"#;

/// Three small steps, with limits no step on loopback passes, so that all three are drawn.
const CAPACITY: &str = r#"
[capacity]
start_rate = 200
step_rate = 200
step_duration_s = 1.5
max_steps = 3
max_p99_ack_ms = 60000
max_shortfall_pct = 90

[ceiling]
enabled = true
duration_s = 1
"#;

/// chromedriver on a free port, killed when dropped.
struct Driver(Child);

impl Driver {
    /// `None` (the test skips) when chromedriver is not installed, unless REQUIRE_SERVICES=1.
    fn start(port: u16) -> Option<Self> {
        match Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
            Ok(child) => Some(Self(child)),
            Err(_) if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("chromedriver missing but REQUIRE_SERVICES=1"),
            Err(e) => {
                eprintln!("skipped: cannot run chromedriver ({e}); apt-get install chromium chromium-driver");
                None
            }
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn session(port: u16) -> Client {
    let args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,1000", "--allow-file-access-from-files"];
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "args": args }));
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + WAIT;
    loop {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        match ClientBuilder::new(connector).capabilities(caps.clone()).connect(&url).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session at {url}: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn short_run(load: &str, seed: u64, dir: &Path) {
    let mut s = Scenario::parse(&format!("{SCENARIO}{load}")).expect("scenario");
    s.seed = seed;
    let mut m = run::run(&s, false).await.expect("run");
    assert!(m.judge(&s.gates), "{}", m.summary());
    m.write(dir).expect("write the report");
}

/// Per chart: its title, how many series lines it has with at least three points, and the
/// widest and tallest of their boxes as the browser laid them out.
const MEASURE: &str = r#"
return [...document.querySelectorAll('figure.chart')].map(f => {
  const lines = [...f.querySelectorAll('svg polyline[stroke-width="2"]')].filter(p => p.points.numberOfItems >= 3);
  const boxes = lines.map(p => p.getBoundingClientRect());
  return { title: f.querySelector('h2').textContent, lines: lines.length,
           width: Math.max(0, ...boxes.map(b => b.width)), height: Math.max(0, ...boxes.map(b => b.height)),
           labels: f.querySelectorAll('svg text').length };
});
"#;

/// Opens `page`, checks every chart, saves a full-page screenshot beside it; the charts' figures.
async fn open_and_check(b: &Client, page: &Path, lines_per_chart: u64) -> Vec<Value> {
    b.goto(&format!("file://{}", page.display())).await.expect("open the page");
    let scripts = b.execute("return document.scripts.length", vec![]).await.expect("count scripts");
    assert_eq!(scripts, json!(0), "the page is static: no script, so no script error");
    let charts = b.execute(MEASURE, vec![]).await.expect("measure charts");
    let charts = charts.as_array().cloned().unwrap_or_default();
    assert!(charts.len() >= 6, "{}: only {} charts", page.display(), charts.len());
    for c in &charts {
        let n = |k: &str| c[k].as_f64().unwrap_or(0.0);
        assert!(n("lines") >= lines_per_chart as f64, "{c} lacks plotted lines");
        assert!(n("width") > 100.0, "{c}: its lines span no time or percentiles");
        assert!(n("labels") >= 8.0, "{c}: its axes are not labelled");
    }
    b.execute("document.body.style.width = '1000px'", vec![]).await.expect("fix the width");
    let height = b.execute("return document.documentElement.scrollHeight", vec![]).await.expect("height").as_u64().unwrap_or(1000);
    b.set_window_size(1100, height as u32 + 100).await.expect("resize to the whole page");
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(page.with_extension("png"), png).expect("write the screenshot");
    charts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_real_runs_draw_every_chart_in_a_real_browser() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let Some(_driver) = Driver::start(port) else { return };
    let out = PathBuf::from(OUT);
    let (base, new) = (out.join("base"), out.join("new"));
    short_run(RAMP, 11, &base).await;
    short_run(RAMP, 12, &new).await;
    short_run(CAPACITY, 13, &out.join("capacity")).await;
    let read = |d: &Path| -> Value { serde_json::from_str(&std::fs::read_to_string(d.join("report.json")).expect("report.json")).expect("json") };
    let compared = loadgen::report::compare::compare(&read(&base), &read(&new), &loadgen::report::compare::Options { tolerance: 0.2, fail_on: Vec::new() });
    std::fs::write(out.join("compare.html"), loadgen::report::compare::html(&read(&base), &read(&new), &compared.table).expect("compare page")).expect("write compare.html");

    let b = session(port).await;
    let run_charts = open_and_check(&b, &base.join("report.html"), 1).await;
    let distribution = run_charts.iter().find(|c| c["title"].as_str().is_some_and(|t| t.contains("percentile"))).expect("a distribution chart");
    assert!(distribution["height"].as_f64().unwrap_or(0.0) > 20.0, "the latency rises along the percentiles: {distribution}");
    let ack = &run_charts[0];
    assert!(ack["lines"].as_u64() == Some(3), "p50, p99 and p99.9 on one chart: {ack}");
    open_and_check(&b, &out.join("compare.html"), 2).await;
    let capacity_charts = open_and_check(&b, &out.join("capacity/report.html"), 1).await;
    let search = capacity_charts.iter().find(|c| c["title"].as_str().is_some_and(|t| t.starts_with("Capacity"))).expect("a capacity chart");
    assert_eq!(search["lines"].as_u64(), Some(2), "accepted/s and ack p99 over the three steps: {search}");
    b.close().await.expect("close the browser");
}
