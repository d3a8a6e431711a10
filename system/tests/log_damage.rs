//! Damage to the embedded log on disk, through the real binary: a torn last record (a write
//! the power cut short), cut at recovery; and a damaged record in the middle of the newest
//! segment (its payload, or its length after a power cut took the `durable` file), read
//! past: dead-lettered if it was not applied yet, reported by offset in the log and
//! `/readyz`, and no event acknowledged afterwards lost. (The log's own unit tests cover the
//! same cases byte by byte; this is what an operator sees.)

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The log line recovery writes when it cuts (system/src/queue/log/recovery.rs).
const CUT: &str = "cutting the log's tail at recovery";

struct Node {
    dir: tempfile::TempDir,
    base: String,
    listen: String,
    starts: usize,
}

impl Node {
    fn new() -> Self {
        let addr = free_addr();
        Self { dir: tempfile::tempdir().expect("temp dir"), base: format!("http://{addr}"), listen: addr.to_string(), starts: 0 }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("run-{n}.log"))
    }

    /// `webhooks ROLE` on the node's data directory; returns the process and its log file.
    fn start(&mut self, role: &str) -> (Proc, PathBuf) {
        self.starts += 1;
        let (data, log) = (self.data(), self.log(self.starts));
        let args = [role, "--data-dir", data.to_str().expect("utf-8 path"), "--listen", &self.listen];
        (Proc::spawn(role, &args, &[], &log), log)
    }

    /// Events queued by a server alone (no worker), so that all of them are still on the log.
    async fn queue_events(&mut self, payments: usize) {
        let (mut server, _) = self.start("server");
        wait_healthy(&client(), &self.base).await;
        send_all(&client(), &self.base, workload("d", payments)).await;
        server.terminate();
    }

    fn segment(&self) -> PathBuf {
        let dir = self.data().join("log");
        let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
            .filter_map(|e| Some(e.ok()?.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        assert_eq!(segments.len(), 1, "one segment: {segments:?}");
        segments.remove(0)
    }
}

/// Bytes before a record's payload: `[len u32 LE][crc32c u32 LE][offset u64 LE]`.
const HEADER: usize = 16;
/// The length's top bit marks a group's first record.
const GROUP_START: u32 = 1 << 31;

/// The payload length in the frame at `at`.
fn length(bytes: &[u8], at: usize) -> usize {
    (u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) & !GROUP_START) as usize
}

/// The records of a segment: each frame's start and its payload, decoded as JSON. A segment
/// is a 4-byte magic, then frames, read here independently of the system's code; the zeros
/// the appender preallocates after the records end them.
fn records(segment: &Path) -> Vec<(usize, Value)> {
    let bytes = std::fs::read(segment).expect("read segment");
    let (mut at, mut out) = (4, Vec::new());
    while at + HEADER <= bytes.len() {
        let len = length(&bytes, at);
        if len == 0 {
            break;
        }
        let payload = &bytes[at + HEADER..at + HEADER + len];
        out.push((at, serde_json::from_slice(payload).expect("a stored event")));
        at += HEADER + len;
    }
    out
}

/// What the records must leave applied: their event ids per payment.
fn ledger_of(records: &[(usize, Value)]) -> Ledger {
    let mut ledger = Ledger::new();
    for (_, e) in records {
        note_accepted(&mut ledger, e["payment_id"].as_str().expect("payment_id"), e["event_id"].as_str().expect("event_id"));
    }
    ledger
}

/// After recovery the system still takes and applies new events.
async fn still_works(node: &Node) {
    let ledger = send_all(&client(), &node.base, workload("after", 3)).await;
    assert_exactly_once(&client(), &node.base, &ledger).await;
}

fn log_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_record_is_cut_and_every_record_before_it_applied() {
    let mut node = Node::new();
    node.queue_events(20).await;
    let segment = node.segment();
    let whole = records(&segment);
    // A frame whose header promises 200 bytes, of which 10 reached the disk.
    let mut torn = 200u32.to_le_bytes().to_vec();
    torn.extend_from_slice(&[0xAB; 4]);
    torn.extend_from_slice(&[b'{'; 10]);
    // Where the next group would go: over the zeros preallocated after the last record.
    let (last, _) = whole.last().expect("records");
    let bytes = std::fs::read(&segment).expect("read segment");
    let end = last + HEADER + length(&bytes, *last);
    let file = std::fs::OpenOptions::new().write(true).open(&segment).expect("open segment");
    std::os::unix::fs::FileExt::write_all_at(&file, &torn, end as u64).expect("tear the tail");
    let cut = file.metadata().expect("stat").len() as usize - end;

    let (_system, log) = node.start("standalone");
    wait_healthy(&client(), &node.base).await;
    assert_exactly_once(&client(), &node.base, &ledger_of(&whole)).await;
    let text = log_text(&log);
    assert!(text.contains(CUT) && text.contains(&format!("bytes_cut={cut}")), "recovery says what it cut ({cut} bytes):\n{text}");
    still_works(&node).await;
}

/// Flips one bit of the record in the middle of the newest segment, `within` bytes into its frame.
fn damage_the_middle_record(node: &Node, within: usize) -> (Vec<(usize, Value)>, usize) {
    let segment = node.segment();
    let whole = records(&segment);
    let damaged = whole.len() / 2;
    let (at, _) = whole[damaged];
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes[at + within] ^= 0x01;
    std::fs::write(&segment, &bytes).expect("damage a record");
    (whole, damaged)
}

/// In the payload: the checksum no longer matches; the length still does.
const PAYLOAD: usize = HEADER;
/// The length's second byte: the frame now claims 256 more bytes than it has.
const LENGTH: usize = 1;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_not_yet_applied_is_dead_lettered_and_every_other_record_applied() {
    damaged_record_dead_lettered_and_the_rest_applied(PAYLOAD, false).await;
}

/// The released log lost this in silence: after a power cut the `durable` file (never
/// synced) can be stale or gone, and recovery took a flipped length for a torn tail, cut the
/// segment there with every acknowledged record behind it, and gave their offsets out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_length_after_the_durable_file_was_lost_costs_that_record_alone() {
    damaged_record_dead_lettered_and_the_rest_applied(LENGTH, true).await;
}

async fn damaged_record_dead_lettered_and_the_rest_applied(within: usize, lose_durable_file: bool) {
    let mut node = Node::new();
    node.queue_events(20).await;
    let (whole, damaged) = damage_the_middle_record(&node, within);
    if lose_durable_file {
        std::fs::remove_file(node.data().join("log").join("durable")).expect("remove the durable file");
    }

    let (_system, log) = node.start("standalone");
    wait_healthy(&client(), &node.base).await;
    let mut intact = whole.clone();
    intact.remove(damaged);
    assert_exactly_once(&client(), &node.base, &ledger_of(&intact)).await;
    let offset = damaged + 1;
    let letters = eventually(&client(), format!("{}/api/dead-letters", node.base), Duration::from_secs(30), |d| d["count"] == 1).await;
    let letter = &letters["items"][0];
    assert_eq!(letter["event_id"], format!("undecodable:0:{offset}"), "{letters}");
    assert!(letter["error"].as_str().is_some_and(|e| e.contains("damaged record in the log")), "{letters}");
    let text = log_text(&log);
    assert!(text.contains(&format!("damaged records at offsets [{offset}]")), "recovery names the offset:\n{text}");
    let (_, ready) = get(&client(), format!("{}/readyz", node.base)).await;
    assert!(ready["degraded"][0].as_str().is_some_and(|d| d.contains(&format!("[{offset}]"))), "readiness shows it: {ready}");
    still_works(&node).await;
}

/// The damage lies behind the worker's stored position. Recovery once cut the log at the
/// damaged record and numbered new appends from there again, behind that position: of 15
/// events acknowledged after the restart, 11 were never applied, and nothing said so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_behind_the_stored_position_loses_no_event_acknowledged_after_it() {
    let mut node = Node::new();
    let (mut system, _) = node.start("standalone");
    wait_healthy(&client(), &node.base).await;
    let before = send_all(&client(), &node.base, workload("d", 20)).await;
    assert_exactly_once(&client(), &node.base, &before).await;
    system.terminate();
    damage_the_middle_record(&node, PAYLOAD);

    let (_system, log) = node.start("standalone");
    wait_healthy(&client(), &node.base).await;
    let after = send_all(&client(), &node.base, workload("after", 15)).await;
    assert_exactly_once(&client(), &node.base, &after).await;
    assert_exactly_once(&client(), &node.base, &before).await;
    assert!(log_text(&log).contains("acknowledged records damaged or lost"), "recovery reports the damage:\n{}", log_text(&log));
}
