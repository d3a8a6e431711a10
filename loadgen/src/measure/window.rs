//! The system's latency over the run alone. Its histograms count from the process's start,
//! so a run against a long-running system would be judged on the system's lifetime; they
//! come whole instead (`/api/stats?histograms=true`, HdrHistogram's V2-deflate serialization
//! in base64), are taken at the start and at the end of the load and subtracted, and several
//! worker processes' are added, which is exact where merging their percentiles is not.

use std::collections::BTreeMap;

use base64::Engine as _;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum HistogramError {
    #[error("{what}: not base64")]
    Base64 { what: &'static str, source: base64::DecodeError },
    #[error("{what}: not an HdrHistogram serialization ({source:?})")]
    Decode { what: &'static str, source: hdrhistogram::serialization::DeserializeError },
    #[error("cannot serialize a histogram ({0:?})")]
    Encode(hdrhistogram::serialization::V2DeflateSerializeError),
    #[error("{what}: the end histogram holds less than the start one (did the system restart during the run?)")]
    Shrank { what: &'static str },
    #[error("{what}: histograms of different ranges cannot be added")]
    Add { what: &'static str },
}

/// Decodes one base64 V2(-deflate) histogram; `what` names it in errors.
pub fn decode(what: &'static str, b64: &str) -> Result<Histogram<u64>, HistogramError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).map_err(|source| HistogramError::Base64 { what, source })?;
    Deserializer::new().deserialize(&mut bytes.as_slice()).map_err(|source| HistogramError::Decode { what, source })
}

/// Encodes a histogram as the system does, so that other HdrHistogram tools can read it.
pub fn encode(h: &Histogram<u64>) -> Result<String, HistogramError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes).map_err(HistogramError::Encode)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The system's ack and end-to-end histograms at one instant, in microseconds; `None` where
/// the system has no such histogram (no worker in the process, or too old to send them).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub ack: Option<Histogram<u64>>,
    pub e2e: Option<Histogram<u64>>,
    /// Each worker process's own end-to-end histogram, when several were added: the report
    /// shows them beside the merged one, so an imbalance between workers is visible.
    pub e2e_by_worker: Vec<Histogram<u64>>,
}

impl Snapshot {
    /// From one process's `/api/stats?histograms=true`.
    pub fn of(stats: &Value) -> Result<Self, HistogramError> {
        let get = |what: &'static str, key: &str| stats["histograms"][key].as_str().map(|b| decode(what, b)).transpose();
        Ok(Self { ack: get("ack histogram", "ack_latency_us")?, e2e: get("end-to-end histogram", "e2e_latency_us")?, e2e_by_worker: Vec::new() })
    }

    /// Adds another worker process's end-to-end histogram to this one.
    pub fn add_e2e(&mut self, other: Option<Histogram<u64>>) -> Result<(), HistogramError> {
        self.e2e_by_worker.extend(other.clone());
        match (&mut self.e2e, other) {
            (Some(mine), Some(theirs)) => mine.add(&theirs).map_err(|_| HistogramError::Add { what: "end-to-end histogram" }),
            (mine @ None, theirs) => {
                *mine = theirs;
                Ok(())
            }
            (Some(_), None) => Ok(()),
        }
    }

    /// What was recorded between `start` and this snapshot.
    pub fn since(&self, start: &Snapshot) -> Result<Snapshot, HistogramError> {
        // Per worker only when both snapshots saw the same workers: otherwise no pairing holds.
        let e2e_by_worker = if self.e2e_by_worker.len() == start.e2e_by_worker.len() {
            let pairs = self.e2e_by_worker.iter().zip(&start.e2e_by_worker);
            pairs.map(|(end, start)| difference("a worker's end-to-end histogram", &Some(end.clone()), &Some(start.clone()))).filter_map(Result::transpose).collect::<Result<_, _>>()?
        } else {
            Vec::new()
        };
        Ok(Snapshot { ack: difference("ack histogram", &self.ack, &start.ack)?, e2e: difference("end-to-end histogram", &self.e2e, &start.e2e)?, e2e_by_worker })
    }
}

/// `end - start`; `None` when either is missing, since neither alone is the window.
fn difference(what: &'static str, end: &Option<Histogram<u64>>, start: &Option<Histogram<u64>>) -> Result<Option<Histogram<u64>>, HistogramError> {
    let (Some(end), Some(start)) = (end, start) else { return Ok(None) };
    let mut window = end.clone();
    window.subtract(start).map_err(|_| HistogramError::Shrank { what })?;
    Ok(Some(window))
}

/// What the system's latency figures in a report cover.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coverage {
    /// From the start of the load to the end of the drain: the run's own figures.
    Run,
    /// Since the system started (it did not send its histograms): not the run's figures.
    #[default]
    Lifetime,
}

/// A histogram of microseconds as the report shows the system's percentiles: milliseconds,
/// keyed as `/api/stats` keys them, with `count` as is.
pub fn ms_percentiles(h: &Histogram<u64>) -> BTreeMap<String, f64> {
    let ms = |us: u64| us as f64 / 1000.0;
    let mut out: BTreeMap<String, f64> = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)].into_iter().map(|(k, q)| (k.to_owned(), ms(h.value_at_quantile(q)))).collect();
    out.insert("max".into(), ms(h.max()));
    out.insert("count".into(), h.len() as f64);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn system_hdr(values: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        for v in values {
            h.record(*v).unwrap();
        }
        h
    }

    fn stats(ack: &[u64], e2e: Option<&[u64]>) -> Value {
        json!({"histograms": {"ack_latency_us": encode(&system_hdr(ack)).unwrap(), "e2e_latency_us": e2e.map(|v| encode(&system_hdr(v)).unwrap())}})
    }

    #[test]
    fn the_window_is_the_end_minus_the_start() {
        let lifetime_slow: Vec<u64> = vec![400_000; 1000];
        let start = Snapshot::of(&stats(&lifetime_slow, Some(&lifetime_slow))).unwrap();
        let mut later = lifetime_slow.clone();
        later.extend([1000, 2000, 3000]);
        let window = Snapshot::of(&stats(&later, Some(&later))).unwrap().since(&start).unwrap();
        let e2e = window.e2e.unwrap();
        assert_eq!(e2e.len(), 3);
        assert!(e2e.max() < 3100, "the slow lifetime is gone: {}", e2e.max());
        assert_eq!(ms_percentiles(&window.ack.unwrap())["count"], 3.0);
    }

    #[test]
    fn a_restart_between_the_snapshots_is_an_error_not_a_window() {
        let start = Snapshot::of(&stats(&[10, 20, 30], None)).unwrap();
        let restarted = Snapshot::of(&stats(&[10], None)).unwrap();
        assert!(matches!(restarted.since(&start), Err(HistogramError::Shrank { .. })));
    }

    #[test]
    fn workers_merge_into_the_distribution_of_all_their_values() {
        // One busy fast worker and one idle slow one: the highest of the workers' p99s
        // (the old upper bound) is the slow one's; the merged p99 is the fast one's.
        let fast: Vec<u64> = vec![1000; 990];
        let slow: Vec<u64> = vec![900_000; 10];
        let mut all = Snapshot::default();
        all.add_e2e(Snapshot::of(&stats(&[], Some(&fast))).unwrap().e2e).unwrap();
        all.add_e2e(Snapshot::of(&stats(&[], Some(&slow))).unwrap().e2e).unwrap();
        let merged = all.e2e.clone().unwrap();
        let both: Vec<u64> = fast.iter().chain(&slow).copied().collect();
        let exact = system_hdr(&both);
        assert_eq!(merged.len(), 1000);
        for q in [0.5, 0.9, 0.99, 0.999] {
            assert_eq!(merged.value_at_quantile(q), exact.value_at_quantile(q), "q {q}");
        }
        assert!(merged.value_at_quantile(0.99) < 1100);
        assert_eq!(all.e2e_by_worker.iter().map(|h| h.len()).collect::<Vec<_>>(), [990, 10], "each worker kept apart too");
        let window = all.since(&Snapshot { e2e_by_worker: vec![system_hdr(&[1000]), system_hdr(&[])], ..Snapshot::default() }).unwrap();
        assert_eq!(window.e2e_by_worker.iter().map(|h| h.len()).collect::<Vec<_>>(), [989, 10], "each worker's window is its own end minus its own start");
    }

    #[test]
    fn garbage_is_an_error_that_names_the_histogram() {
        let e = Snapshot::of(&json!({"histograms": {"ack_latency_us": "not base64!"}})).unwrap_err();
        assert!(e.to_string().contains("ack histogram"), "{e}");
        let e = Snapshot::of(&json!({"histograms": {"e2e_latency_us": "AAAA"}})).unwrap_err();
        assert!(e.to_string().contains("end-to-end histogram"), "{e}");
    }
}
