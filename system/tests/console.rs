//! The operator console in a real browser: headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`), against the whole system in process on
//! loopback with an admin token set. Each view is saved as a screenshot in
//! `target/console-screenshots/`, so that a test run leaves the tree as it found it; with
//! `REFRESH_SCREENSHOTS=1` they go to `reports/console/` instead, the committed ones that
//! docs/operations.md shows.

mod common;

use std::ops::AsyncFn;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use webhooks::domain::{EventType, PaymentEvent};
use webhooks::store::sqlite::SqliteStore;
use webhooks::store::{DeadLetter, Store};

const TOKEN: &str = "console-test-token-7f3a";
const WAIT: Duration = Duration::from_secs(30);
/// Where a run's screenshots go, and where `REFRESH_SCREENSHOTS=1` sends them instead.
const SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/console-screenshots");
const COMMITTED_SHOTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../reports/console");

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

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    let args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"];
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

async fn text(b: &Client, css: &str) -> String {
    match b.find(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Polls `probe` until `check` holds; panics with the last value after WAIT.
async fn until<T: std::fmt::Debug>(what: &str, probe: impl AsyncFn() -> T, check: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let value = probe().await;
        if check(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{what} never matched; last {value:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_text(b: &Client, css: &str, check: impl Fn(&str) -> bool) -> String {
    until(css, async || text(b, css).await, |t: &String| check(t)).await
}

async fn rows(b: &Client, css: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for row in b.find_all(Locator::Css(css)).await.expect("find rows") {
        out.push((row.text().await.unwrap_or_default(), row.attr("class").await.ok().flatten().unwrap_or_default()));
    }
    out
}

async fn until_rows(b: &Client, css: &str, check: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
    until(css, async || rows(b, css).await, |r: &Vec<_>| check(r)).await
}

async fn click(b: &Client, css: &str) {
    b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn type_into(b: &Client, css: &str, value: &str) {
    let e = b.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}"));
    e.clear().await.expect("clear");
    e.send_keys(value).await.expect("type");
}

async fn displayed(b: &Client, css: &str) -> bool {
    b.find(Locator::Css(css)).await.expect("element").is_displayed().await.expect("displayed")
}

async fn screenshot(b: &Client, name: &str) {
    let dir = if std::env::var("REFRESH_SCREENSHOTS").as_deref() == Ok("1") { COMMITTED_SHOTS } else { SHOTS };
    std::fs::create_dir_all(dir).expect("screenshot dir");
    let png = b.screenshot().await.expect("screenshot");
    std::fs::write(format!("{dir}/{name}.png"), png).expect("write screenshot");
}

fn event(id: &str, payment: &str, order: &str, amount: i64) -> PaymentEvent {
    let received_at_us = webhooks::store::now_us();
    PaymentEvent { event_id: id.into(), event_type: EventType::Success, payment_id: payment.into(), order_id: order.into(), amount, currency: "USD".into(), created_at: None, received_at_us, request_id: None, traceparent: None }
}

/// Two dead letters, as the worker records them: one that failed for a reason that has since
/// gone away (it applies on replay), and a conflict on a payment the workload pays.
async fn seed_dead_letters(app: &TestApp) {
    let store = SqliteStore::open(&app.dir.path().join("store.db")).expect("open the app's store");
    let letters = [
        DeadLetter::for_event(&event("dl-1", "pay-dl", "ord-dl", 700), "store unavailable after 5 attempts".into(), 5),
        DeadLetter::for_event(&event("cwp3-2", "cwp3", "cwo3", 999), "conflict: event id reused with another payload".into(), 1),
    ];
    store.dead_letter("console-seed", &letters, &[]).await.expect("seed dead letters");
}

/// Every read the console makes is refused without the token, and so is a replay.
async fn nothing_readable_without_the_token(app: &TestApp) {
    for path in ["/api/stats", "/api/payments/cwp3", "/api/orders/cwo3", "/api/dead-letters", "/api/dead-letters/1"] {
        let r = app.http.get(format!("{}{path}", app.base)).send().await.expect("request");
        assert_eq!(r.status().as_u16(), 401, "{path} without the token");
    }
    let r = app.http.post(format!("{}/api/dead-letters/replay", app.base)).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 401, "replay without the token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_watches_finds_and_replays_in_a_real_browser() {
    let port = free_addr().port();
    let Some(_driver) = Driver::start(port) else { return };
    let app = TestApp::start(&["--admin-token", TOKEN]).await;
    nothing_readable_without_the_token(&app).await;
    let auth = format!("Bearer {TOKEN}");
    for (id, total) in [("cwo3", 100), ("ord-dl", 700)] {
        let r = app.http.post(format!("{}/api/orders", app.base)).header("authorization", &auth).json(&order(id, total)).send().await.expect("create order");
        assert_eq!(r.status().as_u16(), 201);
    }
    let b = browser(port).await;
    let console = format!("{}/console", app.base);

    // Without the token the page asks for it and shows nothing else; a wrong one is refused.
    b.goto(&console).await.expect("open console");
    until_text(&b, "#login h2", |t| t == "Admin token").await;
    assert!(!displayed(&b, "#app").await, "no data view before the token");
    assert!(!b.source().await.expect("source").contains(TOKEN), "the server never puts the token in the page");
    type_into(&b, "#token", "wrong-token").await;
    click(&b, "#login-form button").await;
    until_text(&b, "#login-error", |t| t == "That token was refused.").await;
    assert!(!displayed(&b, "#app").await);
    screenshot(&b, "token").await;

    // Live view: the counters follow the events sent.
    type_into(&b, "#token", TOKEN).await;
    click(&b, "#login-form button").await;
    until_text(&b, "#total-accepted", |t| t == "0").await;
    // In three waves, so that the counters are seen to move and the chart has a shape.
    let events = workload("cw", 30);
    let mut sent = 0;
    for wave in events.chunks(events.len().div_ceil(3)) {
        // One at a time: a payment's success never overtakes its pending, so all are applied.
        for e in wave {
            assert_eq!(post(&app.http, format!("{}/api/webhooks/payment", app.base), e).await.0, 200, "{e}");
        }
        sent += wave.len();
        until_text(&b, "#total-accepted", |t| t == sent.to_string()).await;
        until_text(&b, "#rate-accepted", |t| t == "0.0").await;
    }
    let chart = b.execute("return series.accepted", vec![]).await.expect("read the chart's points");
    let waves = chart.as_array().map(|p| p.iter().filter(|v| v.as_f64().is_some_and(|r| r > 0.0)).count()).unwrap_or(0);
    assert!(waves >= 3, "the chart shows each wave: {chart}");
    let r = app.http.post(format!("{}/api/webhooks/payment", app.base)).header("content-type", "application/json").body("{").send().await.expect("send");
    assert_eq!(r.status().as_u16(), 400);
    until_text(&b, "#total-rejected", |t| t == "1").await;
    until_text(&b, "#reasons", |t| t.contains("malformed 1")).await;
    until_text(&b, "#total-applied", |t| t == "60").await;
    until_text(&b, "#queue-depth", |t| t == "0").await;
    until_text(&b, "#ack-n", |t| t == sent.to_string()).await;
    screenshot(&b, "live").await;
    seed_dead_letters(&app).await;

    // Find a payment: its events in order, and the conflict shown apart.
    click(&b, "#tabs button[data-view=find]").await;
    type_into(&b, "#find-id", "cwp3").await;
    click(&b, "#find-form button").await;
    until_text(&b, "#payment-status", |t| t == "success").await;
    let history = until_rows(&b, "#history tbody tr", |r| r.len() == 3).await;
    assert!(history[0].0.contains("payment.pending") && history[0].1 == "outcome-applied", "{history:?}");
    assert!(history[1].0.contains("payment.success") && history[1].1 == "outcome-applied", "{history:?}");
    assert!(history[2].0.contains("conflict (dead letter)") && history[2].0.contains("conflict: event id reused"), "{history:?}");
    assert_eq!(history[2].1, "outcome-conflict-dead-lettered", "a conflict is shown as such: {history:?}");
    screenshot(&b, "find-payment").await;
    // Its order, with the payment's status.
    type_into(&b, "#find-id", "cwo3").await;
    click(&b, "#find-form button").await;
    until_text(&b, "#order-status", |t| t == "paid").await;
    until_rows(&b, "#order-payments tbody tr", |r| r.len() == 1 && r[0].0.contains("cwp3")).await;
    screenshot(&b, "find-order").await;

    // Dead letters: list, open one, replay it after confirming, see the result.
    click(&b, "#tabs button[data-view=dead]").await;
    let listed = until_rows(&b, "#dead-list tbody tr", |r| r.len() == 2).await;
    assert!(listed.iter().any(|(t, c)| t.contains("cwp3-2") && c.contains("outcome-conflict-dead-lettered")), "{listed:?}");
    let rows_found = b.find_all(Locator::Css("#dead-list tbody tr")).await.expect("rows");
    let mut target = None;
    for r in rows_found {
        if r.text().await.unwrap_or_default().contains("dl-1") {
            target = Some(r);
        }
    }
    target.expect("the seeded dead letter is listed").click().await.expect("open it");
    until_text(&b, "#detail-payload", |t| t.contains("\"payment_id\": \"pay-dl\"")).await;
    click(&b, "#replay-one").await;
    until_text(&b, "#confirm-text", |t| t.contains("Replay dead letter")).await;
    assert_eq!(text(&b, "#dead-result").await, "", "nothing happens before confirming");
    click(&b, "#confirm-yes").await;
    until_text(&b, "#dead-result", |t| t == "replayed 1 (dl-1)").await;
    until_rows(&b, "#dead-list tbody tr", |r| r.len() == 1).await;
    screenshot(&b, "dead-letters").await;

    // The replayed event applied: the payment is paid, its history shows the failure and the fix.
    click(&b, "#tabs button[data-view=find]").await;
    type_into(&b, "#find-id", "pay-dl").await;
    let status = async || {
        click(&b, "#find-form button").await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        text(&b, "#payment-status").await
    };
    until("the replayed event applied", status, |s| s == "success").await;
    let history = until_rows(&b, "#history tbody tr", |r| r.len() == 2).await;
    assert!(history[0].0.contains("store unavailable") && history[0].0.contains("replayed"), "{history:?}");
    assert_eq!(history[1].1, "outcome-applied", "{history:?}");
    screenshot(&b, "payment-after-replay").await;

    // Forgetting the token takes the operator back to the token form.
    click(&b, "#sign-out").await;
    until_text(&b, "#login h2", |t| t == "Admin token").await;
    assert!(!displayed(&b, "#app").await);
    b.close().await.expect("close browser");
    app.stop().await.expect("clean shutdown");
}
