//! Secure by default once reachable, with the real binary: an address other machines can
//! reach is refused without a webhook secret and an admin token unless `--insecure`;
//! loopback keeps its open defaults with a warning per open surface; refusals are counted,
//! logged at a bounded rate, and a burst of bad admin tokens from one address is slowed.

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::{json, Value};
use webhooks::ingress::signature::sign;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const TOKEN: &str = "secure-test-token-51c2";
/// What the refusal names for each missing secret, and how to set it.
const NO_WEBHOOK_SECRET: [&str; 2] = ["no webhook secret", "WEBHOOK_SECRET"];
const NO_ADMIN_TOKEN: [&str; 2] = ["no admin token", "openssl rand -hex 32"];

/// The binary with none of the secrets of the environment it was started from.
fn webhooks() -> Command {
    let mut c = Command::new(BIN);
    for var in ["WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET", "ADMIN_TOKEN", "INSECURE", "LISTEN"] {
        c.env_remove(var);
    }
    c
}

fn run(role: &str, data: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let data = data.to_str().expect("utf-8 temp path");
    webhooks().args([role, "--data-dir", data]).args(args).envs(env.iter().copied()).output().expect("run webhooks")
}

/// Flags, environment, what the refusal must name, and what it must not (being set).
type Refusal<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a [[&'a str; 2]], &'a [[&'a str; 2]]);

#[test]
fn an_open_api_on_a_reachable_address_is_refused_naming_what_is_missing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let cases: [Refusal; 4] = [
        (&["--listen", "0.0.0.0:0"], &[], &[NO_WEBHOOK_SECRET, NO_ADMIN_TOKEN], &[]),
        (&["--listen", "[::]:0", "--admin-token", TOKEN], &[], &[NO_WEBHOOK_SECRET], &[NO_ADMIN_TOKEN]),
        (&[], &[("LISTEN", "0.0.0.0:0"), ("WEBHOOK_SECRET", SECRET)], &[NO_ADMIN_TOKEN], &[NO_WEBHOOK_SECRET]),
        (&["--listen", "0.0.0.0:0", "--admin-token", ""], &[("STRIPE_WEBHOOK_SECRET", "whsec_s")], &[NO_ADMIN_TOKEN], &[NO_WEBHOOK_SECRET]),
    ];
    for role in ["standalone", "server"] {
        for (args, env, missing, present) in cases {
            let out = run(role, &data, args, env);
            let said = String::from_utf8_lossy(&out.stderr);
            let case = format!("{role} {args:?} {env:?}");
            assert_eq!(out.status.code(), Some(2), "{case}: a usage error: {said}");
            assert!(said.contains("refusing to listen on") && said.contains("--insecure"), "{case}: {said}");
            for [what, how] in missing {
                assert!(said.contains(what) && said.contains(how), "{case}: does not name {what} and {how}: {said}");
            }
            for [what, _] in present {
                assert!(!said.contains(what), "{case}: names {what}, which is set: {said}");
            }
            assert!(!said.contains(TOKEN) && !said.contains(SECRET), "{case}: echoes a secret: {said}");
            assert!(!data.exists(), "{case}: a refusal opens nothing");
        }
    }
}

/// A child process of the real binary with its log, listening on `listen`.
struct Running {
    proc: Proc,
    log: std::path::PathBuf,
    base: String,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts `role` on `listen` and waits until it answers on loopback at `port`.
    async fn start(role: &str, listen: &str, port: u16, args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let log = dir.path().join("webhooks.log");
        let mut all = vec![role, "--data-dir", data.to_str().expect("utf-8"), "--listen", listen];
        all.extend_from_slice(args);
        let mut env: Vec<(&str, &str)> = env.to_vec();
        // `Proc::spawn` inherits the environment: make sure no secret comes from there.
        for var in ["WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET", "ADMIN_TOKEN", "INSECURE"] {
            if !env.iter().any(|(k, _)| *k == var) {
                env.push((var, ""));
            }
        }
        let proc = Proc::spawn(role, &all, &env, &log);
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&client(), &base).await;
        Self { proc, log, base, _dir: dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).expect("log")
    }

    fn stop(mut self) -> String {
        assert!(self.proc.terminate().is_some_and(|s| s.success()), "clean stop: {}", self.log());
        self.log()
    }
}

const UNSIGNED: &str = "unsigned webhooks are accepted";
const OPEN_API: &str = "the management API (orders, payments, dead letters and their replay, stats) is open";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_starts_open_on_a_reachable_address_and_says_so() {
    let port = free_addr().port();
    let any = format!("0.0.0.0:{port}");
    // The environment variable, as a container would set it.
    let app = Running::start("standalone", &any, port, &[], &[("INSECURE", "1")]).await;
    let http = client();
    let ready = readiness(&http, &app.base).await;
    assert_eq!(ready, (200, json!({"queue": "ok", "store": "ok", "insecure": ["unsigned_webhooks", "open_management_api"]})));
    assert_eq!(post(&http, format!("{}/api/webhooks/payment", app.base), &event("payment.pending", "pi", "oi", 1, "i1")).await.0, 200);
    let log = app.stop();
    for warning in [UNSIGNED, OPEN_API, "--insecure: listening with the surfaces above open"] {
        assert!(log.contains(warning), "no warning {warning:?} in: {log}");
    }

    // With one secret set, --insecure still lets it start, and only the other surface is open.
    let port = free_addr().port();
    let any = format!("0.0.0.0:{port}");
    let app = Running::start("server", &any, port, &["--insecure", "--webhook-secret", SECRET], &[]).await;
    assert_eq!(get(&http, format!("{}/readyz", app.base)).await.1["insecure"], json!(["open_management_api"]));
    let log = app.stop();
    assert!(log.contains(OPEN_API) && !log.contains(UNSIGNED), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_secret_set_a_reachable_address_starts_without_insecure() {
    let port = free_addr().port();
    let any = format!("0.0.0.0:{port}");
    let app = Running::start("server", &any, port, &["--admin-token", TOKEN], &[("WEBHOOK_SECRET", SECRET)]).await;
    assert_eq!(readiness(&client(), &app.base).await, (200, json!({"queue": "ok", "store": "ok"})));
    let log = app.stop();
    assert!(!log.contains(UNSIGNED) && !log.contains(OPEN_API) && !log.contains("--insecure"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_keeps_its_open_defaults_with_a_warning_for_each() {
    let addr = free_addr();
    let app = Running::start("standalone", &addr.to_string(), addr.port(), &[], &[]).await;
    let http = client();
    assert_eq!(readiness(&http, &app.base).await, (200, json!({"queue": "ok", "store": "ok"})));
    assert_eq!(post(&http, format!("{}/api/webhooks/payment", app.base), &event("payment.pending", "pl", "ol", 1, "l1")).await.0, 200);
    assert_eq!(get(&http, format!("{}/api/stats", app.base)).await.0, 200, "no token needed");
    let log = app.stop();
    for warning in [UNSIGNED, OPEN_API] {
        assert_eq!(log.matches(warning).count(), 1, "one warning {warning:?} in: {log}");
    }
    assert!(!log.contains("--insecure"), "{log}");
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs() as i64
}

/// A webhook with these Standard Webhooks headers; `sign_with` signs it, `None` leaves it unsigned.
async fn webhook(http: &reqwest::Client, base: &str, id: &str, sign_with: Option<(&str, i64)>, extra: &[(&str, &str)]) -> reqwest::Response {
    let body = event("payment.pending", &format!("p{id}"), &format!("o{id}"), 1, id).to_string();
    let mut req = http.post(format!("{base}/api/webhooks/payment")).header("content-type", "application/json");
    if let Some((secret, ts)) = sign_with {
        let sig = sign::standard(secret, id, ts, body.as_bytes()).expect("sign");
        req = req.header("webhook-id", id).header("webhook-timestamp", ts.to_string()).header("webhook-signature", sig);
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.body(body).send().await.expect("request")
}

async fn admin(http: &reqwest::Client, base: &str, token: Option<&str>) -> reqwest::Response {
    let req = http.get(format!("{base}/api/stats"));
    let req = if let Some(t) = token { req.bearer_auth(t) } else { req };
    req.send().await.expect("request")
}

/// A refused signature's reason, how the webhook is signed (secret, timestamp), and extra headers.
type BadSignature<'a> = (&'a str, Option<(&'a str, i64)>, &'a [(&'a str, &'a str)]);

/// `name{reason="…"} n` from Prometheus text.
fn counter(metrics: &str, name: &str, reason: &str) -> u64 {
    let prefix = format!("{name}{{reason=\"{reason}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|n| n.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_counted_logged_sparingly_and_bad_tokens_are_slowed() {
    let addr = free_addr();
    let app = Running::start("standalone", &addr.to_string(), addr.port(), &["--admin-token", TOKEN], &[("WEBHOOK_SECRET", SECRET)]).await;
    let (http, base) = (client(), app.base.clone());

    // Refused signatures, one per reason.
    let refused: [BadSignature; 5] = [
        ("missing", None, &[]),
        ("mismatch", Some(("whsec_b3RoZXItc2VjcmV0", now())), &[]),
        ("expired", Some((SECRET, now() - 3600)), &[]),
        ("malformed", None, &[("webhook-id", "m"), ("webhook-timestamp", "soon"), ("webhook-signature", "v1,AAAA")]),
        ("scheme_not_configured", None, &[("stripe-signature", "t=1,v1=00")]),
    ];
    for (i, (reason, signed, extra)) in refused.into_iter().enumerate() {
        assert_eq!(webhook(&http, &base, &format!("s{i}"), signed, extra).await.status().as_u16(), 401, "{reason}");
    }

    // Bad admin tokens: the budget is spent, then even the right token waits, and says how long.
    for _ in 0..2 {
        assert_eq!(admin(&http, &base, None).await.status().as_u16(), 401, "missing");
    }
    for i in 0..10 {
        assert_eq!(admin(&http, &base, Some("guess")).await.status().as_u16(), 401, "wrong token {i}");
    }
    for token in ["guess", TOKEN] {
        let r = admin(&http, &base, Some(token)).await;
        assert_eq!(r.status().as_u16(), 429, "throttled, whatever the token");
        let wait: u64 = r.headers()["retry-after"].to_str().ok().and_then(|s| s.parse().ok()).expect("Retry-After in seconds");
        assert!((1..=6).contains(&wait), "Retry-After {wait}");
    }
    // Webhooks from the same address are not slowed.
    assert_eq!(webhook(&http, &base, "ok1", Some((SECRET, now())), &[]).await.status().as_u16(), 200);

    // Another address has its own budget: 127.0.0.2 reaches the same loopback listener.
    let other = reqwest::Client::builder().local_address(IpAddr::from([127, 0, 0, 2])).build().expect("client");
    let stats: Value = admin(&other, &base, Some(TOKEN)).await.json().await.expect("stats");
    assert_eq!(stats["auth"]["admin_refused"], json!({"missing_token": 2, "wrong_token": 10, "throttled": 2}));
    let by_reason: Value = refused.iter().map(|(r, ..)| (r.to_string(), json!(1))).collect::<serde_json::Map<_, _>>().into();
    assert_eq!(stats["auth"]["signatures_refused"], by_reason);
    assert_eq!(stats["ingress"]["rejected"]["bad_signature"], 4);
    assert_eq!(stats["ingress"]["rejected"]["expired_timestamp"], 1);

    let metrics = http.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert_eq!(counter(&metrics, "webhooks_admin_refused_total", "wrong_token"), 10, "{metrics}");
    assert_eq!(counter(&metrics, "webhooks_admin_refused_total", "throttled"), 2);
    assert_eq!(counter(&metrics, "webhooks_signature_refused_total", "mismatch"), 1);

    // 14 management refusals in a few seconds: a burst of lines, then a count of those held back.
    let log = app.stop();
    let lines = log.matches("management API request refused").count();
    assert!((1..=7).contains(&lines), "{lines} lines for 14 refusals: {log}");
    assert!(log.contains("webhook signature refused") && log.contains("reason=\"mismatch\""), "{log}");
}
