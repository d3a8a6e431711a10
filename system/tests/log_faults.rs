//! The durable path's components over faultfs, in this process: a failed sync of a file or a
//! directory, a full disk in the middle of preallocation, a kill between a group's write and
//! its sync, and a failed checkpoint of the SQLite store. Each case once lost or stalled
//! acknowledged events; each test here failed before its fix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use faultfs::{FailedFsync, Mounted, Op, Options, Target, WriteBack};
use webhooks::domain::{EventType, PaymentEvent};
use webhooks::metrics::Metrics;
use webhooks::queue::log::appender::{Appender, AppenderConfig};
use webhooks::queue::log::reader::Reader;
use webhooks::queue::log::{record, segment, LogError, WriterLock};
use webhooks::store::sqlite::{Durability, SqliteStore};
use webhooks::store::Store;

/// A faultfs disk for one test; what a cut keeps is fixed (nothing unsynced) unless said.
struct Disk {
    fs: Mounted,
    _backing: tempfile::TempDir,
    _point: tempfile::TempDir,
}

impl Disk {
    fn new(failed_fsync: FailedFsync) -> Self {
        let backing = tempfile::tempdir().expect("backing dir");
        let point = tempfile::tempdir().expect("mount point");
        let options = Options { seed: 1, write_back: WriteBack::Lost, failed_fsync };
        let fs = Mounted::mount_with(backing.path(), point.path(), options).unwrap_or_else(|e| panic!("these tests need FUSE (fuse3): {e}"));
        Self { fs, _backing: backing, _point: point }
    }

    fn log(&self) -> PathBuf {
        self.fs.path().join("log")
    }
}

fn cfg(segment_bytes: u64) -> AppenderConfig {
    AppenderConfig { segment_bytes, max_pending: 1000, min_sync_interval: Duration::ZERO }
}

fn start(dir: &Path, segment_bytes: u64) -> Result<Appender, LogError> {
    Appender::start(WriterLock::acquire(dir)?, 0, &cfg(segment_bytes), Metrics::new(), Arc::default())
}

/// Every durable record of the log, in order: its offset and payload (or why it is damaged).
/// After a power cut, recovery must run first: the `durable` file it publishes is not synced.
fn read_all(dir: &Path) -> Vec<(u64, Result<Vec<u8>, String>)> {
    let mut reader = Reader::open(dir, 0);
    let read = reader.read(10_000).expect("read the log");
    read.into_iter().map(|(o, p)| (o, p.map_err(|d| d.why))).collect()
}

/// Restarts the appender after a cut (recovery), then reads the log.
fn recovered(dir: &Path, segment_bytes: u64) -> Vec<(u64, Vec<u8>)> {
    drop(start(dir, segment_bytes).expect("recover after the cut"));
    payloads(dir)
}

fn payloads(dir: &Path) -> Vec<(u64, Vec<u8>)> {
    read_all(dir).into_iter().map(|(o, p)| (o, p.unwrap_or_else(|why| panic!("record {o} damaged: {why}")))).collect()
}

/// A group written but never synced, as a process killed between its write and its fdatasync
/// leaves it: in the page cache, readable, not on the disk. Once a restarted appender read it
/// as durable without syncing it, and a power cut took it after the worker had applied it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_recovery_reads_as_durable_it_makes_durable() {
    let disk = Disk::new(FailedFsync::DropPages);
    let dir = disk.log();
    let appender = start(&dir, 1 << 20).expect("start");
    for i in 1..=3 {
        appender.append(format!("acked {i}").into_bytes()).await.expect("append");
    }
    drop(appender);
    let seg = segment::path(&dir, 1);
    let end: usize = record::MAGIC.len() + (1..=3).map(|i| record::HEADER + format!("acked {i}").len()).sum::<usize>();
    let mut killed = Vec::new();
    record::encode_into(&mut killed, 4, b"written, never synced", true);
    std::os::unix::fs::FileExt::write_all_at(&std::fs::File::options().write(true).open(&seg).expect("open"), &killed, end as u64).expect("write");

    // Recovery alone, with no append after it whose sync would carry the page along.
    drop(start(&dir, 1 << 20).expect("restart"));
    let handed_out = payloads(&dir);
    assert_eq!(handed_out.last(), Some(&(4, b"written, never synced".to_vec())), "recovery kept the unsynced group");
    disk.fs.power_cut().expect("power cut");
    assert_eq!(recovered(&dir, 1 << 20), handed_out, "what was handed out as durable survives the cut");
}

/// After a failed fdatasync Linux may keep the group's pages readable and clean without ever
/// writing them. A restart read them back as records and appended behind them; the next cut
/// lost those pages and, with them, the acknowledged records written after the hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_a_failed_sync_left_readable_are_not_taken_for_records() {
    let disk = Disk::new(FailedFsync::KeepPages);
    let dir = disk.log();
    let appender = start(&dir, 1 << 20).expect("start");
    appender.append(b"first".to_vec()).await.expect("append");
    disk.fs.fail(Op::Fsync, Target::file(".seg"), Some(1));
    // Pages wholly inside the failed group are not rewritten by the next group.
    let unsynced = vec![b'u'; 16 * 1024];
    assert!(matches!(appender.append(unsynced).await, Err(LogError::Failed(_))), "a failed sync is not an acknowledgement");
    drop(appender);
    disk.fs.clear_faults();

    let appender = start(&dir, 1 << 20).expect("restart");
    let acked = appender.append(b"acknowledged after the restart".to_vec()).await.expect("append");
    drop(appender);
    disk.fs.power_cut().expect("power cut");
    let after = recovered(&dir, 1 << 20);
    assert_eq!(after.last(), Some(&(acked, b"acknowledged after the restart".to_vec())), "lost behind unsynced pages: {:?}", after.iter().map(|r| r.0).collect::<Vec<_>>());
}

/// A segment created at a roll whose directory sync failed: the roll was treated as a write
/// that could be retried, the next roll found the file there ("exists"), and every later
/// append was refused while the log still said it was ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_directory_sync_at_a_roll_stops_the_log_until_restarted() {
    let disk = Disk::new(FailedFsync::DropPages);
    let dir = disk.log();
    let appender = start(&dir, 100).expect("start");
    appender.append(vec![b'a'; 60]).await.expect("append");
    disk.fs.fail(Op::SyncDir, Target::file("log"), Some(1));
    assert!(appender.append(vec![b'b'; 60]).await.is_err(), "the new segment's name is not durable");
    assert!(appender.ready().is_err(), "readiness says the log stopped");
    drop(appender);
    let appender = start(&dir, 100).expect("restart");
    let offset = appender.append(vec![b'c'; 60]).await.expect("appends go on after a restart");
    drop(appender);
    disk.fs.power_cut().expect("power cut");
    assert!(recovered(&dir, 100).iter().any(|(o, p)| *o == offset && p[0] == b'c'), "the acknowledged append survives");
}

/// A full disk while zeros were preallocated after a group: the short write left some zeros,
/// the roll did not cut them, and the finished segment ended in zeros the reader took for a
/// record of impossible length, stalling the worker for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_preallocation_at_a_full_disk_leaves_no_zeros_in_a_finished_segment() {
    let disk = Disk::new(FailedFsync::DropPages);
    let dir = disk.log();
    let appender = start(&dir, 256 * 1024).expect("start");
    // Room for the magic, the group and 1,000 bytes of the zeros preallocated after it.
    disk.fs.limit_space(Target::file(".seg"), 140_020 + 1000);
    appender.append(vec![b'a'; 140_000]).await.expect("the group fits; its preallocation does not");
    disk.fs.clear_faults();
    appender.append(vec![b'b'; 130_000]).await.expect("the next group rolls to a new segment");
    assert_eq!(segment::list(&dir).expect("list"), [1, 2]);
    let finished = std::fs::metadata(segment::path(&dir, 1)).expect("stat").len();
    assert_eq!(finished, 140_020, "a finished segment ends at its last record");
}

fn event(i: usize) -> PaymentEvent {
    PaymentEvent {
        event_id: format!("evt_{i}"),
        event_type: EventType::Success,
        payment_id: format!("pay_{i}"),
        order_id: format!("order_{i}"),
        amount: 100,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 1,
        request_id: None,
        traceparent: None,
    }
}

/// SQLite's automatic checkpoint ignored a failed sync of the WAL, and a later checkpoint
/// reported success over pages never written, so the log deleted events whose effects were
/// not on disk. A failed checkpoint now keeps the store from calling itself durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_checkpoint_keeps_the_store_from_calling_itself_durable() {
    let disk = Disk::new(FailedFsync::DropPages);
    let store = SqliteStore::open_with(&disk.fs.path().join("store.db"), Durability::Checkpoint).expect("store");
    disk.fs.fail(Op::Fsync, Target::file("store.db-wal"), Some(1));
    for batch in 0..40 {
        let events: Vec<PaymentEvent> = (0..100).map(|i| event(batch * 100 + i)).collect();
        store.apply_batch("worker@log", &events, &[]).await.expect("unsynced commits succeed");
    }
    assert!(disk.fs.injected() > 0, "the automatic checkpoint met the failed sync");
    assert!(store.make_durable().await.is_err(), "a checkpoint after the failed one must not report success");
    assert!(store.ping().await.is_err(), "readiness shows it until a restart");
    drop(store);
    unmapped(disk.fs.path()).await;
}

/// Waits until this process maps no file under `dir`. SQLite maps its `-shm` file, and its
/// threads close the store after the handle is dropped: unmounted first, the mapping would be
/// torn down at exit by the mount's own server thread, which then waits on itself for good.
async fn unmapped(dir: &Path) {
    let dir = dir.to_string_lossy().into_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_to_string("/proc/self/maps").expect("/proc/self/maps").contains(&dir) {
        assert!(tokio::time::Instant::now() < deadline, "files under {dir} still mapped after 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
