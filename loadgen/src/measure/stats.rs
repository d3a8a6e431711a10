//! What the run measured: HDR histograms of latency from each request's scheduled instant
//! (no coordinated omission), plain service time beside it, send lag, per-second timelines,
//! status counts, and the ledger of accepted events.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::verify::{Ledger, Window};
use crate::workload::generator::{EventRef, Expect};

/// One finished request.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub phase: usize,
    /// When it was due, from the start of the load.
    pub scheduled: Duration,
    /// Response time from the scheduled instant: what a provider waiting on us saw.
    pub latency: Duration,
    /// Response time from the actual send: the server's part only.
    pub service: Duration,
    /// From when the request could have gone (its due instant, or its connection's
    /// previous response if later) to when it went: the generator's own lateness.
    pub send_lag: Duration,
    /// `None` for a transport error or a client timeout.
    pub status: Option<u16>,
    pub expect: Expect,
    pub event: Option<EventRef>,
}

/// A per-second histogram: two significant digits and grown only to the values seen, so a
/// second costs a few KB rather than the 172 KB of a full-range, three-digit one.
fn small_hdr() -> Histogram<u64> {
    // Two significant digits is within the supported range, so this cannot fail.
    Histogram::new(2).expect("static HDR precision")
}

/// Points per halving of the distance to 100 %, as in HdrHistogram's own percentile output.
const DISTRIBUTION_TICKS: u32 = 5;

fn hdr() -> Histogram<u64> {
    // 1 µs .. 10 min; the bounds are constants, so this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static HDR bounds")
}

/// Timing of the load itself.
#[derive(Debug, Clone, Copy)]
pub struct LoadTiming {
    /// From the first scheduled instant to the last actual send.
    pub send_window_s: f64,
    /// From the first scheduled instant to the last response.
    pub wall_s: f64,
}

/// A send-lag p99 above this, with connections free, means the generator could not keep the
/// schedule; tokio's timer alone is late by up to a millisecond.
pub const GENERATOR_LAG_MS: f64 = 5.0;

#[derive(Debug, Default, Clone, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self { count: h.len(), p50_ms: ms(0.5), p90_ms: ms(0.9), p99_ms: ms(0.99), p999_ms: ms(0.999), max_ms: h.max() as f64 / 1000.0 }
    }
}

/// One second of the load, by scheduled instant; latency from schedule, all classes.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Second {
    pub t: u64,
    pub sent: u64,
    pub accepted: u64,
    pub refused: u64,
    pub shed: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
}

#[derive(Debug, Clone)]
pub struct PhaseTotals {
    pub sent: u64,
    pub accepted: u64,
    /// Scheduled time span of the phase's requests that were sent.
    pub last_scheduled_s: f64,
    /// Accepted requests' latency from schedule, for the phase's own gates.
    pub ack: Histogram<u64>,
    pub unexpected_status: u64,
}

impl Default for PhaseTotals {
    fn default() -> Self {
        Self { sent: 0, accepted: 0, last_scheduled_s: 0.0, ack: hdr(), unexpected_status: 0 }
    }
}

pub struct Recorder {
    allow_shedding: bool,
    by_class: BTreeMap<&'static str, Histogram<u64>>,
    all: Histogram<u64>,
    service: Histogram<u64>,
    send_lag: Histogram<u64>,
    seconds: Vec<(Second, Histogram<u64>)>,
    /// The latest actual send, from the start of the load.
    pub last_send: Duration,
    pub phases: Vec<PhaseTotals>,
    /// Answers by status code; `None` for a transport error or a timeout. Keyed by number
    /// so that counting an answer allocates nothing.
    by_status: BTreeMap<Option<u16>, u64>,
    pub sent: u64,
    pub accepted: u64,
    pub unexpected_status: u64,
    pub invalid_accepted: u64,
    pub ledger: Ledger,
    /// Why the load ended before its schedule did: an `abort_on_fail` gate that failed.
    pub aborted: Option<String>,
}

fn class(status: Option<u16>) -> &'static str {
    match status {
        Some(200..=299) => "2xx",
        Some(429) | Some(503) => "shed",
        Some(400..=499) => "4xx",
        Some(_) => "5xx",
        None => "error",
    }
}

impl Recorder {
    pub fn new(phases: usize, allow_shedding: bool) -> Self {
        Self {
            allow_shedding,
            by_class: BTreeMap::new(),
            all: hdr(),
            service: hdr(),
            send_lag: hdr(),
            seconds: Vec::new(),
            last_send: Duration::ZERO,
            phases: vec![PhaseTotals::default(); phases],
            by_status: BTreeMap::new(),
            sent: 0,
            accepted: 0,
            unexpected_status: 0,
            invalid_accepted: 0,
            ledger: Ledger::default(),
            aborted: None,
        }
    }

    pub fn record(&mut self, o: &Outcome) {
        let micros = |d: Duration| (d.as_micros() as u64).max(1);
        let c = class(o.status);
        self.by_class.entry(c).or_insert_with(hdr).saturating_record(micros(o.latency));
        self.all.saturating_record(micros(o.latency));
        self.service.saturating_record(micros(o.service));
        self.send_lag.saturating_record(micros(o.send_lag));
        *self.by_status.entry(o.status).or_default() += 1;
        self.sent += 1;
        let ok = c == "2xx";
        if ok {
            self.accepted += 1;
        }
        if let Some(p) = self.phases.get_mut(o.phase) {
            p.sent += 1;
            p.accepted += u64::from(ok);
            if ok {
                p.ack.saturating_record(micros(o.latency));
            }
            p.last_scheduled_s = p.last_scheduled_s.max(o.scheduled.as_secs_f64());
        }
        self.timeline(o, c);
        self.judge(o, c);
    }

    fn judge(&mut self, o: &Outcome, c: &'static str) {
        let expected = match (o.expect, c) {
            (_, "shed") => self.allow_shedding,
            (Expect::Apply | Expect::DeadLetter, "2xx") => true,
            (Expect::Refuse, "4xx") => true,
            (Expect::Ignore, "2xx") => {
                self.ledger.ignored += 1;
                true
            }
            (Expect::Refuse, "2xx") => {
                self.invalid_accepted += 1;
                false
            }
            _ => false,
        };
        if !expected {
            self.unexpected_status += 1;
            if let Some(p) = self.phases.get_mut(o.phase) {
                p.unexpected_status += 1;
            }
        }
        if let (Some(e), "2xx", Expect::Apply | Expect::DeadLetter) = (o.event, c, o.expect) {
            let answered = o.scheduled + o.latency;
            let window = Window { sent: answered.saturating_sub(o.service), answered };
            self.ledger.accept(e, o.expect == Expect::DeadLetter, window);
        }
    }

    fn timeline(&mut self, o: &Outcome, c: &'static str) {
        let t = o.scheduled.as_secs() as usize;
        while self.seconds.len() <= t {
            let second = Second { t: self.seconds.len() as u64, ..Default::default() };
            self.seconds.push((second, small_hdr()));
        }
        let (s, h) = &mut self.seconds[t];
        s.sent += 1;
        match c {
            "2xx" => s.accepted += 1,
            "4xx" => s.refused += 1,
            "shed" => s.shed += 1,
            _ => s.errors += 1,
        }
        // `record` grows an auto-resizing histogram to the value; `saturating_record` would
        // clamp it to the 2 µs the histogram starts with.
        let micros = (o.latency.as_micros() as u64).max(1);
        if h.record(micros).is_err() {
            h.saturating_record(micros);
        }
    }

    /// This record moved later by `secs` and behind `phases` earlier phases, so that a
    /// load run in steps merges into one timeline (the capacity search).
    pub fn shifted(mut self, secs: u64, phases: usize) -> Self {
        let empty = (0..secs).map(|t| (Second { t, ..Default::default() }, small_hdr()));
        self.seconds = empty.chain(self.seconds).enumerate().map(|(t, (s, h))| (Second { t: t as u64, ..s }, h)).collect();
        self.phases = std::iter::repeat_with(PhaseTotals::default).take(phases).chain(self.phases).collect();
        self.last_send += Duration::from_secs(secs);
        self
    }

    /// Adds another connection thread's record to this one.
    pub fn merge(&mut self, other: Recorder) {
        for (c, h) in &other.by_class {
            let _ = self.by_class.entry(c).or_insert_with(hdr).add(h);
        }
        let _ = self.all.add(&other.all);
        let _ = self.service.add(&other.service);
        let _ = self.send_lag.add(&other.send_lag);
        for (t, (s, h)) in other.seconds.into_iter().enumerate() {
            while self.seconds.len() <= t {
                let second = Second { t: self.seconds.len() as u64, ..Default::default() };
                self.seconds.push((second, small_hdr()));
            }
            let (mine, mh) = &mut self.seconds[t];
            mine.sent += s.sent;
            mine.accepted += s.accepted;
            mine.refused += s.refused;
            mine.shed += s.shed;
            mine.errors += s.errors;
            let _ = mh.add(&h);
        }
        if self.phases.len() < other.phases.len() {
            self.phases.resize(other.phases.len(), PhaseTotals::default());
        }
        for (p, o) in self.phases.iter_mut().zip(other.phases) {
            p.sent += o.sent;
            p.accepted += o.accepted;
            p.last_scheduled_s = p.last_scheduled_s.max(o.last_scheduled_s);
            let _ = p.ack.add(&o.ack);
            p.unexpected_status += o.unexpected_status;
        }
        for (k, n) in other.by_status {
            *self.by_status.entry(k).or_default() += n;
        }
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.unexpected_status += other.unexpected_status;
        self.invalid_accepted += other.invalid_accepted;
        self.last_send = self.last_send.max(other.last_send);
        self.ledger.merge(other.ledger);
        self.aborted = self.aborted.take().or(other.aborted);
    }

    /// Answers by status code as the report names them ("200", "error").
    pub fn statuses(&self) -> BTreeMap<String, u64> {
        self.by_status.iter().map(|(s, n)| (s.map_or_else(|| "error".into(), |s| s.to_string()), *n)).collect()
    }

    /// The generator's own lateness in sending (see `Outcome::send_lag`).
    pub fn send_lag(&self) -> Percentiles {
        Percentiles::of(&self.send_lag)
    }

    pub fn p99_ms(&self) -> f64 {
        self.all.value_at_quantile(0.99) as f64 / 1000.0
    }

    /// The accepted requests' p99 from schedule so far.
    pub fn ack_p99_ms(&self) -> f64 {
        self.by_class.get("2xx").map_or(0.0, |h| h.value_at_quantile(0.99) as f64 / 1000.0)
    }

    pub fn errors(&self) -> u64 {
        self.by_class.get("error").map_or(0, |h| h.len()) + self.by_class.get("5xx").map_or(0, |h| h.len())
    }

    pub fn latency_by_class(&self) -> BTreeMap<String, Percentiles> {
        let mut out: BTreeMap<String, Percentiles> = self.by_class.iter().map(|(k, h)| (k.to_string(), Percentiles::of(h))).collect();
        out.insert("all".into(), Percentiles::of(&self.all));
        out
    }

    pub fn accepted_latency(&self) -> Percentiles {
        self.by_class.get("2xx").map(Percentiles::of).unwrap_or_default()
    }

    pub fn service_time(&self) -> Percentiles {
        Percentiles::of(&self.service)
    }

    pub fn timeline_out(&self) -> Vec<Second> {
        self.seconds
            .iter()
            .map(|(s, h)| {
                let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
                Second { p50_ms: ms(0.5), p99_ms: ms(0.99), p999_ms: ms(0.999), ..s.clone() }
            })
            .collect()
    }

    /// Each second's latency from schedule, all answers, for the HDR interval log.
    pub fn per_second_histograms(&self) -> Vec<Histogram<u64>> {
        self.seconds.iter().map(|(_, h)| h.clone()).collect()
    }

    /// The accepted requests' latency from schedule at each percentile, as HdrHistogram's
    /// percentile distribution prints it: `(percentile, ms)`, denser towards the tail.
    pub fn ack_distribution(&self) -> Vec<(f64, f64)> {
        let Some(h) = self.by_class.get("2xx") else { return Vec::new() };
        h.iter_quantiles(DISTRIBUTION_TICKS).map(|v| (v.quantile_iterated_to() * 100.0, v.value_iterated_to() as f64 / 1000.0)).collect()
    }
}

/// One worker side from several worker processes' `/api/stats`: counters add up. Latency
/// percentiles do not, so only the count is kept; the merged distribution comes from the
/// workers' histograms added together (`window::Snapshot::add_e2e`).
pub fn merge_workers(each: &[serde_json::Value]) -> serde_json::Value {
    use serde_json::{Map, Value};
    let mut out = Map::new();
    let mut e2e_count = 0;
    for w in each.iter().filter_map(|s| s["worker"].as_object()) {
        for (k, v) in w {
            if let Some(n) = v.as_u64() {
                let sum = out.get(k).and_then(Value::as_u64).unwrap_or(0) + n;
                out.insert(k.clone(), sum.into());
            }
        }
        e2e_count += w.get("e2e_latency_us").and_then(|e| e["count"].as_u64()).unwrap_or(0);
    }
    out.insert("e2e_latency_us".into(), serde_json::json!({ "count": e2e_count }));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::oracle::EventType;
    use crate::workload::generator::Reuse;

    fn outcome(status: Option<u16>, expect: Expect, latency_ms: u64) -> Outcome {
        Outcome {
            phase: 0,
            scheduled: Duration::from_millis(1500),
            latency: Duration::from_millis(latency_ms),
            service: Duration::from_millis(1),
            send_lag: Duration::from_micros(20),
            status,
            expect,
            event: Some(EventRef { payment: 0, id: 1, ty: EventType::Success, amount: 1, currency: "USD", reuse: Reuse::No, form: 0 }),
        }
    }

    #[test]
    fn statuses_are_judged_against_what_was_expected() {
        let mut r = Recorder::new(1, false);
        r.record(&outcome(Some(200), Expect::Apply, 2));
        r.record(&outcome(Some(422), Expect::Refuse, 2));
        assert_eq!(r.unexpected_status, 0);
        r.record(&outcome(Some(200), Expect::Refuse, 2));
        assert_eq!((r.unexpected_status, r.invalid_accepted), (1, 1));
        r.record(&outcome(Some(503), Expect::Apply, 2));
        r.record(&outcome(None, Expect::Apply, 2));
        assert_eq!(r.unexpected_status, 3);
        assert_eq!(r.ledger.applied[&0].len(), 1, "only accepted events enter the ledger");
        let mut shedding = Recorder::new(1, true);
        shedding.record(&outcome(Some(429), Expect::Apply, 2));
        assert_eq!(shedding.unexpected_status, 0);
    }

    #[test]
    fn latency_counts_from_the_schedule_and_lands_in_its_second() {
        let mut r = Recorder::new(1, false);
        for ms in [1, 2, 3, 1000] {
            r.record(&outcome(Some(200), Expect::Apply, ms));
        }
        assert!(r.accepted_latency().max_ms >= 999.0);
        let t = r.timeline_out();
        assert_eq!(t.len(), 2);
        assert_eq!((t[1].sent, t[1].accepted), (4, 4));
        assert!(t[1].p50_ms >= 1.9 && t[1].p999_ms >= 990.0, "a second's percentiles are the latencies recorded in it: {:?}", t[1]);
    }

    #[test]
    fn a_seconds_histogram_grows_only_to_the_latencies_seen() {
        let mut r = Recorder::new(1, false);
        r.record(&outcome(Some(200), Expect::Apply, 20));
        let quiet = r.seconds[1].1.distinct_values() * 8;
        for ms in [1, 100, 1000, 10_000] {
            r.record(&outcome(Some(200), Expect::Apply, ms));
        }
        let stalled = r.seconds[1].1.distinct_values() * 8;
        assert!(quiet <= 12 * 1024 && stalled <= 20 * 1024, "{quiet} and {stalled} bytes of counts, against 172 KB for a full-range one");
    }

    #[test]
    fn merged_recorders_add_up_like_one() {
        let (mut one, mut a, mut b) = (Recorder::new(1, false), Recorder::new(1, false), Recorder::new(1, false));
        for (i, ms) in [1u64, 5, 900, 2, 3000].into_iter().enumerate() {
            let o = Outcome { scheduled: Duration::from_millis(700 * i as u64), ..outcome(Some(if ms > 800 { 503 } else { 200 }), Expect::Apply, ms) };
            one.record(&o);
            if i % 2 == 0 { a.record(&o) } else { b.record(&o) }
        }
        a.merge(b);
        assert_eq!((a.sent, a.accepted, a.unexpected_status), (one.sent, one.accepted, one.unexpected_status));
        assert_eq!(a.statuses(), one.statuses());
        assert_eq!(one.statuses().get("error"), None);
        assert_eq!((one.statuses().get("200"), one.statuses().get("503")), (Some(&3), Some(&2)));
        assert_eq!(a.latency_by_class().len(), one.latency_by_class().len());
        assert_eq!(a.accepted_latency().max_ms, one.accepted_latency().max_ms);
        let (ta, t1) = (a.timeline_out(), one.timeline_out());
        assert_eq!(ta.len(), t1.len());
        assert!(ta.iter().zip(&t1).all(|(x, y)| (x.sent, x.errors, x.p99_ms) == (y.sent, y.errors, y.p99_ms)));
    }

    #[test]
    fn worker_stats_add_up_and_percentiles_are_not_guessed() {
        let w = |processed: u64, p99: u64| serde_json::json!({"worker": {"processed": processed, "duplicates": 1, "e2e_latency_us": {"count": processed, "p99": p99}}});
        let merged = merge_workers(&[w(10, 500), w(5, 900)]);
        assert_eq!(merged["processed"], 15);
        assert_eq!(merged["duplicates"], 2);
        assert_eq!(merged["e2e_latency_us"]["count"], 15);
        assert!(merged["e2e_latency_us"]["p99"].is_null(), "the highest of the workers' p99s is not the merged p99");
    }
}
