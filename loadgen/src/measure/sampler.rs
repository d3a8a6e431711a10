//! The system's side over time, for the charts: queue depth, events processed per second and
//! end-to-end latency, sampled once a second from the load's start until the end state is verified.
//!
//! The system's `/api/stats` percentiles cover its whole life, so a second's end-to-end
//! latency comes from the difference of two scrapes of its Prometheus histogram instead:
//! exact counts per bucket, but the buckets double in width, so a percentile is interpolated
//! within a factor-of-two bucket, as Prometheus's `histogram_quantile` does.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::measure::client::Client;

const EVERY: Duration = Duration::from_secs(1);
const E2E_BUCKET: &str = "webhooks_e2e_latency_seconds_bucket{le=\"";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SystemSample {
    /// Seconds from the load's first scheduled instant.
    pub t_s: f64,
    pub queue_depth: Option<u64>,
    /// Events the worker finished (applied, stale, dead-lettered or duplicate) per second
    /// since the previous sample.
    pub processed_per_s: f64,
    pub e2e_p50_ms: Option<f64>,
    pub e2e_p99_ms: Option<f64>,
}

/// The sampling task; `finish` stops it and returns what it saw.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<SystemSample>>,
}

impl Sampler {
    pub fn start(client: Client, t0: Instant) -> Self {
        let (stop, stopped) = oneshot::channel();
        Self { stop, task: tokio::spawn(sample(client, t0, stopped)) }
    }

    pub async fn finish(self) -> Vec<SystemSample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn sample(client: Client, t0: Instant, mut stopped: oneshot::Receiver<()>) -> Vec<SystemSample> {
    let mut out = Vec::new();
    let mut prev: Option<(Instant, u64, Buckets)> = None;
    let mut tick = tokio::time::interval_at(t0, EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut stopped => return out,
        }
        let now = Instant::now();
        let stats = client.stats().await.unwrap_or(Value::Null);
        let processed = stats["worker"]["processed"].as_u64().unwrap_or(0) + stats["worker"]["duplicates"].as_u64().unwrap_or(0);
        let buckets = Buckets::sum(client.metrics_texts().await.iter().map(|t| Buckets::parse(t)));
        let mut s = SystemSample { t_s: now.saturating_duration_since(t0).as_secs_f64(), queue_depth: stats["queue"]["depth"].as_u64(), ..Default::default() };
        if let Some((at, p, b)) = &prev {
            s.processed_per_s = processed.saturating_sub(*p) as f64 / now.duration_since(*at).as_secs_f64().max(1e-3);
            let second = buckets.since(b);
            s.e2e_p50_ms = second.quantile(0.5).map(|v| v * 1000.0);
            s.e2e_p99_ms = second.quantile(0.99).map(|v| v * 1000.0);
        }
        out.push(s);
        prev = Some((now, processed, buckets));
    }
}

/// A Prometheus histogram's cumulative counts: `(upper bound in seconds, count ≤ bound)`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Buckets(Vec<(f64, u64)>);

impl Buckets {
    fn parse(text: &str) -> Self {
        let bucket = |line: &str| {
            let (le, count) = line.strip_prefix(E2E_BUCKET)?.split_once("\"}")?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().ok()? };
            Some((le, count.trim().parse().ok()?))
        };
        Self(text.lines().filter_map(bucket).collect())
    }

    /// Several processes' histograms (a server and its workers) as one.
    fn sum(each: impl Iterator<Item = Self>) -> Self {
        each.fold(Self::default(), |acc, b| if acc.0.is_empty() { b } else { Self(acc.0.iter().zip(&b.0).map(|(x, y)| (x.0, x.1 + y.1)).collect()) })
    }

    /// The observations made after `earlier`.
    fn since(&self, earlier: &Self) -> Self {
        Self(self.0.iter().enumerate().map(|(i, (le, n))| (*le, n.saturating_sub(earlier.0.get(i).map_or(0, |e| e.1)))).collect())
    }

    /// The `q` quantile in seconds, interpolated linearly within its bucket; `None` without
    /// observations.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.0.last()?.1;
        if total == 0 {
            return None;
        }
        let rank = q * total as f64;
        let (mut lower, mut below) = (0.0, 0u64);
        for (le, n) in &self.0 {
            if *n as f64 >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let within = (*n - below).max(1) as f64;
                return Some(lower + (le - lower) * (rank - below as f64) / within);
            }
            (lower, below) = (*le, *n);
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRAPE: &str = "# TYPE webhooks_e2e_latency_seconds histogram\n\
        webhooks_e2e_latency_seconds_sum 1.5\n\
        webhooks_e2e_latency_seconds_bucket{le=\"0.001\"} 10\n\
        webhooks_e2e_latency_seconds_bucket{le=\"0.002\"} 90\n\
        webhooks_e2e_latency_seconds_bucket{le=\"0.004\"} 100\n\
        webhooks_e2e_latency_seconds_bucket{le=\"+Inf\"} 100\n\
        webhooks_ack_latency_seconds_bucket{le=\"0.001\"} 7\n";

    #[test]
    fn reads_only_the_end_to_end_buckets() {
        let b = Buckets::parse(SCRAPE);
        assert_eq!(b.0, vec![(0.001, 10), (0.002, 90), (0.004, 100), (f64::INFINITY, 100)]);
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_that_holds_the_rank() {
        let b = Buckets::parse(SCRAPE);
        let p50 = b.quantile(0.5).expect("observations");
        assert!((p50 - 0.0015).abs() < 1e-9, "rank 50 is halfway through the (1 ms, 2 ms] bucket: {p50}");
        let p99 = b.quantile(0.99).expect("observations");
        assert!((p99 - 0.0038).abs() < 1e-9, "rank 99 is 9/10 through (2 ms, 4 ms]: {p99}");
        assert_eq!(Buckets::default().quantile(0.5), None);
    }

    #[test]
    fn a_second_is_the_difference_of_two_scrapes_summed_over_processes() {
        let earlier = Buckets(vec![(0.001, 5), (0.002, 5), (f64::INFINITY, 5)]);
        let server = Buckets(vec![(0.001, 0), (0.002, 0), (f64::INFINITY, 0)]);
        let worker = Buckets(vec![(0.001, 5), (0.002, 15), (f64::INFINITY, 15)]);
        let second = Buckets::sum([server, worker].into_iter()).since(&earlier);
        assert_eq!(second.0, vec![(0.001, 0), (0.002, 10), (f64::INFINITY, 10)]);
        assert_eq!(Buckets(vec![(1.0, 0), (f64::INFINITY, 0)]).quantile(0.99), None);
    }
}
