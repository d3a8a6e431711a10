//! The control client: the system's HTTP API for setting up a run, reading its figures and
//! looking up the end state (the load itself goes through the sender's own connections).

use std::time::Duration;

use serde_json::Value;

use crate::measure::stats::merge_workers;
use crate::measure::window::Snapshot;
use crate::workload::generator::Renderer;

#[derive(Clone)]
pub struct Client {
    pub(crate) http: reqwest::Client,
    pub(crate) base: String,
    token: Option<String>,
    /// Stats addresses of worker processes, whose counters the server cannot report.
    pub(crate) workers: Vec<String>,
}

impl Client {
    pub(crate) fn new(base: &str, token: Option<String>, pool: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            // Below the server's 10 s header-read timeout, which also closes idle keep-alive
            // connections: reusing one just as the server closes it fails the request.
            .pool_idle_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self { http, base: base.trim_end_matches('/').to_owned(), token, workers: Vec::new() })
    }

    fn authed(&self, r: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.authed(self.http.get(format!("{}{path}", self.base))).send().await?;
        anyhow::ensure!(r.status().is_success(), "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    /// The system's /api/stats; a server-only target's worker side is filled in from its
    /// workers' own stats when loadgen started them.
    pub(crate) async fn stats(&self) -> Option<Value> {
        let mut stats = self.get_json("/api/stats").await.ok()?;
        if stats["worker"].is_null() && !self.workers.is_empty() {
            let mut each = Vec::with_capacity(self.workers.len());
            for w in &self.workers {
                let r = self.http.get(format!("{w}/api/stats")).send().await.ok()?;
                each.push(r.json::<Value>().await.ok()?);
            }
            stats["worker"] = merge_workers(&each);
            stats["queue"]["depth"] = each.iter().map(|w| w["queue"]["depth"].as_u64()).sum::<Option<u64>>().map_or(Value::Null, Value::from);
        }
        Some(stats)
    }

    /// The system's histograms now: the server's, with its workers' end-to-end ones added
    /// when it runs none itself.
    pub(crate) async fn histograms(&self) -> anyhow::Result<Snapshot> {
        let mut snap = Snapshot::of(&self.get_json("/api/stats?histograms=true").await?)?;
        if snap.e2e.is_none() {
            for w in &self.workers {
                let stats: Value = self.http.get(format!("{w}/api/stats?histograms=true")).send().await?.error_for_status()?.json().await?;
                snap.add_e2e(Snapshot::of(&stats)?.e2e)?;
            }
        }
        Ok(snap)
    }

    /// The Prometheus text of the server and of every worker process loadgen started.
    pub(crate) async fn metrics_texts(&self) -> Vec<String> {
        let mut out = Vec::with_capacity(1 + self.workers.len());
        for base in std::iter::once(&self.base).chain(&self.workers) {
            if let Ok(r) = self.authed(self.http.get(format!("{base}/metrics"))).send().await {
                out.extend(r.text().await.ok());
            }
        }
        out
    }

    pub(crate) async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let r = self.authed(self.http.post(format!("{}{path}", self.base))).json(body).send().await?;
        let status = r.status().as_u16();
        Ok((status, r.json().await.unwrap_or(Value::Null)))
    }

    /// Sends one rendered request through the control client (setup only; the load goes
    /// through the engine's own connections).
    pub(crate) async fn send(&self, r: &Renderer) -> Option<u16> {
        let mut req = self.http.post(format!("{}/api/webhooks/payment", self.base)).header("content-type", "application/json");
        for (k, v) in r.headers() {
            req = req.header(k, v);
        }
        req.body(r.body.clone()).send().await.ok().map(|resp| resp.status().as_u16())
    }
}
