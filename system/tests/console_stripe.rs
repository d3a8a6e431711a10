//! The console's live view shows what Stripe was answered 200 for without it being queued:
//! ignored types, events kept for an operator, and the API versions Stripe sent; its dead
//! letters show a kept event under Stripe's own id and type. Headless
//! Chromium over WebDriver, as in tests/console.rs; skipped without chromedriver unless
//! REQUIRE_SERVICES=1.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;
use webhooks::ingress::signature::sign;

const SECRET: &str = "whsec_console_stripe";
const WAIT: Duration = Duration::from_secs(30);

/// chromedriver on a free port, killed when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn driver(port: u16) -> Option<Driver> {
    match Command::new("chromedriver").arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn() {
        Ok(child) => Some(Driver(child)),
        Err(_) if std::env::var("REQUIRE_SERVICES").as_deref() == Ok("1") => panic!("chromedriver missing but REQUIRE_SERVICES=1"),
        Err(e) => {
            eprintln!("skipped: cannot run chromedriver ({e})");
            None
        }
    }
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".into(), json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] }));
    let deadline = Instant::now() + WAIT;
    loop {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new()).capabilities(caps.clone()).connect(&format!("http://127.0.0.1:{port}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("no WebDriver session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn send(app: &TestApp, id: &str, event_type: &str, object: serde_json::Value) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let body = json!({"id": id, "object": "event", "type": event_type, "created": now, "livemode": false,
                      "api_version": "2024-06-20", "data": {"object": object}})
    .to_string();
    let r = app
        .http
        .post(format!("{}/api/webhooks/stripe", app.base))
        .header("content-type", "application/json")
        .header("stripe-signature", sign::stripe(SECRET, now, body.as_bytes()).expect("sign"))
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_shows_what_stripe_sent_that_was_not_queued() {
    let port = free_addr().port();
    let Some(_driver) = driver(port) else { return };
    let app = TestApp::start(&["--stripe-webhook-secret", SECRET]).await;
    send(&app, "evt_c1", "customer.created", json!({"id": "cus_1", "object": "customer"})).await;
    let intent = json!({"id": "pi_c2", "object": "payment_intent", "amount": 100, "currency": "usd", "metadata": {}});
    send(&app, "evt_c2", "payment_intent.succeeded", intent).await;
    let b = browser(port).await;
    b.goto(&format!("{}/console", app.base)).await.expect("open console");
    let deadline = Instant::now() + WAIT;
    let want = ["ignored customer.created 1", "kept for an operator 1", "API version 2024-06-20 2"];
    loop {
        let shown = match b.find(Locator::Css("#stripe")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if want.iter().all(|w| shown.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "the console's Stripe table shows {want:?}; it shows {shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The event kept for an operator, under Stripe's own id and type.
    b.find(Locator::Css("button[data-view='dead']")).await.expect("dead letters tab").click().await.expect("open dead letters");
    let want = ["evt_c2", "Stripe payment_intent.succeeded", "pi_c2"];
    let deadline = Instant::now() + WAIT;
    loop {
        let shown = match b.find(Locator::Css("#dead-list")).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if want.iter().all(|w| shown.contains(w)) {
            break;
        }
        assert!(Instant::now() < deadline, "the dead letters list shows {want:?}; it shows {shown:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    b.close().await.expect("close browser");
    app.stop().await.expect("clean stop");
}
