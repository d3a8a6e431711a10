//! Damage to the embedded log on disk, through the real binary: a torn last record (a write
//! the power cut short) and a corrupt record in the middle of the newest segment. Recovery
//! keeps every record before the damage, cuts the rest, says what it cut in its log, and the
//! system goes on taking and applying events. (The log's own unit tests cover the same cuts
//! byte by byte; this is what an operator sees.)

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

/// The records of a segment: each frame's start and its payload, decoded as JSON. The frame
/// is `[len u32 LE][crc32c u32 LE][payload]`, read here independently of the system's code;
/// the zeros the appender preallocates after the records end them.
fn records(segment: &Path) -> Vec<(usize, Value)> {
    let bytes = std::fs::read(segment).expect("read segment");
    let (mut at, mut out) = (0, Vec::new());
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        out.push((at, serde_json::from_slice(payload).expect("a stored event")));
        at += 8 + len;
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
    let end = last + 8 + u32::from_le_bytes(bytes[*last..last + 4].try_into().expect("4 bytes")) as usize;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_in_the_middle_keeps_every_record_before_it_and_says_what_it_cut() {
    let mut node = Node::new();
    node.queue_events(20).await;
    let segment = node.segment();
    let whole = records(&segment);
    let damaged = whole.len() / 2;
    let (at, _) = whole[damaged];
    let mut bytes = std::fs::read(&segment).expect("read segment");
    bytes[at + 8] ^= 0x01; // one bit of the payload: the checksum no longer matches
    std::fs::write(&segment, &bytes).expect("damage a record");

    let (_system, log) = node.start("standalone");
    wait_healthy(&client(), &node.base).await;
    assert_exactly_once(&client(), &node.base, &ledger_of(&whole[..damaged])).await;
    let text = log_text(&log);
    let cut = bytes.len() - at;
    assert!(text.contains(CUT) && text.contains(&format!("bytes_cut={cut}")), "recovery says what it cut ({cut} bytes):\n{text}");
    // The records after the damage were cut, not applied: the stats count only those before.
    let processed = |s: &Value| s["worker"]["processed"].as_u64().unwrap_or(0) + s["worker"]["duplicates"].as_u64().unwrap_or(0);
    let stats = eventually(&client(), format!("{}/api/stats", node.base), Duration::from_secs(30), |s| processed(s) >= damaged as u64).await;
    assert_eq!(processed(&stats), damaged as u64, "{stats}");
    still_works(&node).await;
}
