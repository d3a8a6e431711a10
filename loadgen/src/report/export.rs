//! Files for other tools beside the report: the per-second timeline as NDJSON and CSV, the
//! per-second latency histograms as an HdrHistogram interval log (read by HdrHistogram's
//! `HistogramLogProcessor` and its ports), and the gates as JUnit XML for CI systems.

use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::V2DeflateSerializer;
use hdrhistogram::Histogram;

use crate::measure::stats::Second;
use crate::report::gate::GateResult;

/// The interval log's tag: latency from each request's scheduled instant, all answers.
pub const LATENCY_TAG: &str = "latency_from_schedule_us";

#[derive(Debug, thiserror::Error)]
#[error("cannot write the interval log: {0}")]
pub struct IntervalLogError(String);

/// One JSON object a line, one line a second.
pub fn timeline_ndjson(seconds: &[Second]) -> String {
    seconds.iter().filter_map(|s| serde_json::to_string(s).ok()).map(|l| l + "\n").collect()
}

const CSV_HEADER: &str = "t,sent,accepted,refused,shed,errors,p50_ms,p99_ms,p999_ms";

/// The same as CSV, with a header line; every field is a number, so nothing needs quoting.
pub fn timeline_csv(seconds: &[Second]) -> String {
    let mut out = format!("{CSV_HEADER}\n");
    for s in seconds {
        let _ = writeln!(out, "{},{},{},{},{},{},{},{},{}", s.t, s.sent, s.accepted, s.refused, s.shed, s.errors, s.p50_ms, s.p99_ms, s.p999_ms);
    }
    out
}

/// One histogram per second of the load, in microseconds, timed from `base_unix_s` (the
/// load's first scheduled instant), V2-deflate encoded as HdrHistogram's own tools write them.
pub fn interval_log(base_unix_s: f64, seconds: &[Histogram<u64>]) -> Result<Vec<u8>, IntervalLogError> {
    let base = std::time::UNIX_EPOCH + Duration::from_secs_f64(base_unix_s.max(0.0));
    let mut out = Vec::new();
    let mut serializer = V2DeflateSerializer::new();
    let mut log = IntervalLogWriterBuilder::new()
        .add_comment("loadgen: latency from each request's scheduled instant, microseconds, one histogram a second")
        .with_start_time(base)
        .with_base_time(base)
        .begin_log_with(&mut out, &mut serializer)
        .map_err(|e| IntervalLogError(e.to_string()))?;
    let tag = Tag::new(LATENCY_TAG);
    for (t, h) in seconds.iter().enumerate() {
        log.write_histogram(h, Duration::from_secs(t as u64), Duration::from_secs(1), tag).map_err(|e| IntervalLogError(format!("{e:?}")))?;
    }
    Ok(out)
}

/// The gates as one JUnit test suite, a test case a gate; an aborted run adds a failed case
/// that says why, so that a CI page shows it.
pub fn junit(scenario: &str, gates: &[GateResult], aborted: Option<&str>) -> String {
    let failures = gates.iter().filter(|g| !g.pass).count() + usize::from(aborted.is_some());
    let tests = gates.len() + usize::from(aborted.is_some());
    let suite = xml_escape(scenario);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(out, "<testsuites name=\"loadgen\" tests=\"{tests}\" failures=\"{failures}\">");
    let _ = writeln!(out, "  <testsuite name=\"{suite}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">");
    for g in gates {
        let name = xml_escape(&g.gate);
        let _ = write!(out, "    <testcase classname=\"loadgen.{suite}\" name=\"{name}\">");
        if !g.pass {
            let _ = write!(out, "<failure message=\"{name}: {} against a limit of {}\"/>", g.value, g.limit);
        }
        out.push_str("</testcase>\n");
    }
    if let Some(why) = aborted {
        let _ = writeln!(out, "    <testcase classname=\"loadgen.{suite}\" name=\"abort_on_fail\"><failure message=\"{}\"/></testcase>", xml_escape(why));
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&apos;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::Deserializer;

    fn seconds() -> Vec<Second> {
        vec![Second { t: 0, sent: 10, accepted: 9, errors: 1, p99_ms: 2.5, ..Default::default() }, Second { t: 1, sent: 20, accepted: 20, p50_ms: 0.75, ..Default::default() }]
    }

    #[test]
    fn the_timeline_reads_back_as_csv_and_as_json_lines() {
        let csv = timeline_csv(&seconds());
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        assert_eq!(reader.headers().unwrap().iter().collect::<Vec<_>>(), CSV_HEADER.split(',').collect::<Vec<_>>());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!((&rows[0][1], &rows[0][5], &rows[0][7]), ("10", "1", "2.5"));
        assert_eq!(&rows[1][6], "0.75");

        let lines: Vec<serde_json::Value> = timeline_ndjson(&seconds()).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2);
        assert_eq!((lines[1]["t"].as_u64(), lines[1]["sent"].as_u64()), (Some(1), Some(20)));
    }

    #[test]
    fn the_interval_log_reads_back_with_hdrhistograms_own_parser() {
        let mut hs = Vec::new();
        for values in [&[100u64, 200, 300][..], &[5000, 6000]] {
            let mut h = Histogram::new(2).unwrap();
            for v in values {
                h.record(*v).unwrap();
            }
            hs.push(h);
        }
        let log = interval_log(1_700_000_000.5, &hs).unwrap();
        let mut read = Vec::new();
        let mut base = None;
        for entry in IntervalLogIterator::new(&log) {
            match entry.unwrap() {
                LogEntry::BaseTime(t) => base = Some(t),
                LogEntry::Interval(i) => {
                    assert_eq!(i.tag().map(|t| t.as_str()), Some(LATENCY_TAG));
                    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, i.encoded_histogram()).unwrap();
                    let h: Histogram<u64> = Deserializer::new().deserialize(&mut bytes.as_slice()).unwrap();
                    read.push((i.start_timestamp().as_secs(), h.len(), h.max()));
                }
                LogEntry::StartTime(_) => {}
            }
        }
        assert_eq!(base.map(|b| b.as_secs()), Some(1_700_000_000));
        assert_eq!(read.len(), 2);
        assert_eq!((read[0].0, read[0].1), (0, 3));
        assert_eq!((read[1].0, read[1].1), (1, 2));
        assert!(hs[1].equivalent(read[1].2, 6000));
    }

    #[test]
    fn the_gates_read_back_as_junit() {
        let gates = vec![
            GateResult { gate: "max_lost".into(), limit: 0.0, value: 0.0, pass: true },
            GateResult { gate: "phase <a & \"b\">: max_p99_ack_ms".into(), limit: 5.0, value: 7.5, pass: false },
        ];
        let xml = junit("ci", &gates, Some("gate max_unexpected_status failed during the load"));
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let suite = doc.descendants().find(|n| n.has_tag_name("testsuite")).unwrap();
        assert_eq!((suite.attribute("name"), suite.attribute("tests"), suite.attribute("failures")), (Some("ci"), Some("3"), Some("2")));
        let cases: Vec<_> = suite.children().filter(|n| n.has_tag_name("testcase")).collect();
        assert_eq!(cases[1].attribute("name"), Some("phase <a & \"b\">: max_p99_ack_ms"));
        let failure = cases[1].children().find(|n| n.has_tag_name("failure")).unwrap();
        assert!(failure.attribute("message").is_some_and(|m| m.contains("7.5 against a limit of 5")));
        assert!(cases[0].children().all(|n| !n.has_tag_name("failure")));
        assert_eq!(cases[2].attribute("name"), Some("abort_on_fail"));
    }
}
