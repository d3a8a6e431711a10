//! faultfs on a real FUSE mount: what is fsync'd survives a power cut, what is not does not
//! (or only as the seed decides), directory entries need their directory synced, and faults
//! fire where they are set. Fails (never skips) where FUSE is missing.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use faultfs::{Damage, FailedFsync, Mounted, Op, Options, Target, WriteBack};

const PAGE: usize = 4096;

struct Disk {
    backing: tempfile::TempDir,
    _point: tempfile::TempDir,
    fs: Mounted,
}

impl Disk {
    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.fs.path().join(rel)
    }

    /// fsync of a directory, opened read-only as programs do: FUSE hands it over as fsyncdir.
    fn sync_dir(&self, rel: &str) {
        File::open(self.path(rel)).expect("open dir").sync_all().expect("fsync dir");
    }

    fn cut(&self) -> faultfs::PowerCut {
        self.fs.power_cut().expect("power cut")
    }

    /// What the disk itself holds, read around the mount.
    fn on_disk(&self, rel: &str) -> Option<Vec<u8>> {
        std::fs::read(self.backing.path().join(rel)).ok()
    }
}

fn mounted_with(options: Options) -> Disk {
    let backing = tempfile::tempdir().expect("backing dir");
    let point = tempfile::tempdir().expect("mount point");
    let fs = Mounted::mount_with(backing.path(), point.path(), options).unwrap_or_else(|e| panic!("faultfs must mount for this test: {e}"));
    Disk { backing, _point: point, fs }
}

/// Nothing unsynced reaches the disk: outcomes that do not depend on a seed.
fn mounted() -> Disk {
    mounted_with(Options { write_back: WriteBack::Lost, ..Options::default() })
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).expect("open").read_to_end(&mut out).expect("read");
    out
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir).expect("readdir").map(|e| e.expect("entry").file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

/// A file whose name is durable, holding `data` synced.
fn durable_file(disk: &Disk, rel: &str, data: &[u8]) -> File {
    let mut f = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(disk.path(rel)).expect("create");
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
    disk.sync_dir("");
    f
}

#[test]
fn synced_data_survives_a_power_cut_and_unsynced_data_does_not() {
    let disk = mounted();
    let mut f = durable_file(&disk, "log", b"durable");
    f.write_all(b" and lost").expect("write");
    assert_eq!(read(&disk.path("log")), b"durable and lost", "unsynced writes are visible before the cut");
    drop(f);
    let cut = disk.cut();
    assert_eq!((cut.files, cut.written_back, cut.entries), (1, 0, vec![]));
    assert_eq!(read(&disk.path("log")), b"durable");
    assert_eq!(disk.on_disk("log").expect("on disk"), b"durable", "the backing file holds only what was synced");
}

#[test]
fn a_synced_file_vanishes_with_its_data_if_its_directory_was_never_synced() {
    let disk = mounted();
    std::fs::create_dir(disk.path("d")).expect("mkdir");
    let mut f = File::create(disk.path("d/new")).expect("create");
    f.write_all(b"synced").expect("write");
    f.sync_all().expect("fsync");
    disk.sync_dir("d");
    drop(f);
    let cut = disk.cut();
    assert_eq!(names(disk.fs.path()), Vec::<String>::new(), "the root never learnt of d/: {cut:?}");
    std::fs::create_dir(disk.path("d")).expect("mkdir again");
    durable_file(&disk, "d/new", b"synced");
    disk.sync_dir("d");
    disk.cut();
    assert_eq!(read(&disk.path("d/new")), b"synced", "d/ and d/new were both synced into their parents");
}

#[test]
fn unsynced_renames_unlinks_links_and_rmdirs_are_undone() {
    let disk = mounted();
    std::fs::create_dir(disk.path("gone")).expect("mkdir");
    durable_file(&disk, "a.tmp", b"a");
    durable_file(&disk, "b", b"b");
    std::fs::rename(disk.path("a.tmp"), disk.path("a")).expect("rename");
    std::fs::remove_file(disk.path("b")).expect("unlink");
    std::fs::hard_link(disk.path("a"), disk.path("link")).expect("link");
    std::fs::remove_dir(disk.path("gone")).expect("rmdir");
    assert_eq!(names(disk.fs.path()), ["a", "link"]);
    let cut = disk.cut();
    assert_eq!(names(disk.fs.path()), ["a.tmp", "b", "gone"], "{cut:?}");
    assert_eq!(read(&disk.path("b")), b"b", "the unlinked file is back with its data");

    std::fs::rename(disk.path("a.tmp"), disk.path("a")).expect("rename");
    disk.sync_dir("");
    disk.cut();
    assert_eq!(names(disk.fs.path()), ["a", "b", "gone"], "a synced rename stays");
    assert_eq!(names(disk.backing.path()), ["a", "b", "gone"], "the disk holds the same, and nothing of faultfs's own");
}

#[test]
fn a_failed_directory_sync_leaves_its_entries_volatile() {
    let disk = mounted();
    File::create(disk.path("f")).expect("create");
    disk.fs.fail(Op::SyncDir, Target::All, Some(1));
    let err = File::open(disk.fs.path()).expect("open").sync_all().expect_err("the injected failure");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    disk.cut();
    assert!(!disk.path("f").exists());
    assert_eq!(disk.fs.injected(), 1);
}

#[test]
fn a_failed_fsync_loses_the_data_and_a_retry_succeeds_over_the_loss() {
    let disk = mounted();
    let mut f = durable_file(&disk, "wal", b"");
    f.write_all(b"acked?").expect("write");
    disk.fs.fail(Op::Fsync, Target::file("wal"), Some(1));
    let err = f.sync_data().expect_err("the injected fsync failure reaches the caller");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    f.sync_data().expect("the retried fsync succeeds");
    drop(f);
    assert_eq!(read(&disk.path("wal")), b"", "the pages are dropped at once");
    disk.cut();
    assert_eq!(read(&disk.path("wal")), b"");
    assert_eq!(disk.fs.injected(), 1);
}

#[test]
fn pages_kept_after_a_failed_fsync_read_back_until_the_next_cut_loses_them() {
    let disk = mounted_with(Options { failed_fsync: FailedFsync::KeepPages, write_back: WriteBack::Lost, ..Options::default() });
    let mut f = durable_file(&disk, "wal", b"");
    f.write_all(b"acked?").expect("write");
    disk.fs.fail(Op::Fsync, Target::file("wal"), Some(1));
    f.sync_data().expect_err("the injected fsync failure");
    f.write_all(b" later").expect("write after the failure");
    f.sync_data().expect("the next fsync succeeds");
    drop(f);
    assert_eq!(read(&disk.path("wal")), b"acked? later", "a restarted reader sees the failed pages as if written");
    disk.cut();
    assert_eq!(read(&disk.path("wal")), b"acked? later", "the page was rewritten after the failure, so it was synced whole");

    let f = durable_file(&disk, "seg", &[1u8; 2 * PAGE]);
    f.write_all_at(&[2u8; PAGE], 0).expect("write");
    disk.fs.fail(Op::Fsync, Target::file("seg"), Some(1));
    f.sync_data().expect_err("the injected fsync failure");
    f.write_all_at(&[3u8; PAGE], PAGE as u64).expect("write another page");
    f.sync_data().expect("the next fsync succeeds");
    drop(f);
    assert_eq!(read(&disk.path("seg"))[..PAGE], [2u8; PAGE], "readable before the cut");
    disk.cut();
    let after = read(&disk.path("seg"));
    assert_eq!((after[..PAGE].to_vec(), after[PAGE..].to_vec()), (vec![1u8; PAGE], vec![3u8; PAGE]), "lost at the cut");
}

#[test]
fn write_faults_hit_only_their_target() {
    let disk = mounted();
    disk.fs.fail(Op::Write, Target::file(".bad"), None);
    let mut bad = File::create(disk.path("x.bad")).expect("create");
    assert_eq!(bad.write_all(b"1").expect_err("EIO").raw_os_error(), Some(libc::EIO));
    let mut good = File::create(disk.path("x.good")).expect("create");
    good.write_all(b"1").expect("other files still work");
}

#[test]
fn a_write_crossing_the_space_limit_is_short_and_the_next_gets_enospc() {
    let disk = mounted();
    disk.fs.limit_space(Target::All, 10_000);
    let mut big = OpenOptions::new().create(true).append(true).open(disk.path("big")).expect("create");
    big.write_all(&[0u8; 8_000]).expect("within the limit");
    assert_eq!(big.write(&[1u8; 8_000]).expect("a short write"), 2_000, "the part that fits");
    let err = big.write(&[0u8; 8_000]).expect_err("past the limit");
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    let inside = OpenOptions::new().write(true).open(disk.path("big")).expect("open");
    inside.write_all_at(&[2u8; 8_000], 0).expect("overwriting allocated bytes needs no space");
    assert_eq!(inside.write_at(&[2u8; 8_000], 6_000).expect("short"), 4_000, "up to the end of the file");
    disk.fs.clear_faults();
    big.write_all(&[0u8; 8_000]).expect("space is back");
    assert_eq!(std::fs::metadata(disk.path("big")).expect("stat").len(), 18_000);
}

#[test]
fn damaged_bytes_read_back_flipped_or_fail_but_pages_in_memory_do_not() {
    let disk = mounted();
    drop(durable_file(&disk, "seg", &[0u8; 3 * PAGE]));
    disk.fs.damage(Target::file("seg"), 10, Damage::Flip(0b100));
    disk.fs.damage(Target::file("seg"), 2 * PAGE as u64 + 5, Damage::Eio);
    let f = File::open(disk.path("seg")).expect("open");
    let mut first = [0u8; 16];
    f.read_exact_at(&mut first, 0).expect("a flipped bit reads silently");
    assert_eq!(first[10], 4);
    let err = f.read_exact_at(&mut [0u8; 16], 2 * PAGE as u64).expect_err("a latent sector error");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    let mut clean = [1u8; 16];
    f.read_exact_at(&mut clean, PAGE as u64).expect("the page between is clean");
    assert_eq!(clean, [0u8; 16]);
    drop(f);

    let w = OpenOptions::new().write(true).open(disk.path("seg")).expect("open");
    w.write_all_at(&[7u8; 16], 0).expect("rewrite, not synced");
    drop(w);
    let mut rewritten = [0u8; 16];
    File::open(disk.path("seg")).expect("open").read_exact_at(&mut rewritten, 0).expect("read");
    assert_eq!(rewritten[10], 7, "a page still in memory reads as written");
    disk.fs.clear_faults();
    assert!(disk.fs.injected() >= 2);
}

/// Writes 32 unsynced pages into a file whose name is durable, cuts, and returns which pages
/// reached the disk, and whether the new size did.
fn torn_cut(seed: u64) -> (Vec<bool>, bool) {
    let disk = mounted_with(Options { seed, ..Options::default() });
    let f = durable_file(&disk, "seg", &[1u8; 16 * PAGE]);
    f.write_all_at(&[2u8; 32 * PAGE], 0).expect("write");
    drop(f);
    let cut = disk.cut();
    let data = disk.on_disk("seg").expect("the name was durable");
    let pages = (0..32).map(|i| data.get(i * PAGE).is_some_and(|&b| b == 2)).collect::<Vec<_>>();
    assert_eq!(cut.written_back, pages.iter().filter(|&&p| p).count() as u64 * PAGE as u64, "{cut:?}");
    (pages, data.len() == 32 * PAGE)
}

#[test]
fn a_cut_persists_a_seeded_subset_of_the_unsynced_pages_and_the_seed_replays_it() {
    let runs: Vec<_> = (1..=12).map(torn_cut).collect();
    assert_eq!(torn_cut(7), runs[6], "the same seed makes the same choices");
    let torn = |(pages, _): &(Vec<bool>, bool)| pages.iter().any(|&p| p) && !pages.iter().all(|&p| p);
    assert!(runs.iter().any(torn), "some seed tears the write-back");
    assert!(runs.iter().any(|(pages, _)| pages.iter().all(|&p| !p)), "some seed loses it all");
    assert!(runs.iter().any(|(_, grew)| *grew) && runs.iter().any(|(_, grew)| !*grew), "the new size reaches the disk or not");
}

#[test]
fn a_hard_link_names_the_same_file() {
    let disk = mounted();
    drop(durable_file(&disk, "id.tmp", b"abc"));
    std::fs::hard_link(disk.path("id.tmp"), disk.path("id")).expect("link");
    std::fs::remove_file(disk.path("id.tmp")).expect("unlink the temporary name");
    assert_eq!(read(&disk.path("id")), b"abc");
    disk.sync_dir("");
    disk.cut();
    assert_eq!(names(disk.fs.path()), ["id"]);
}

#[test]
fn truncation_and_renames_in_a_subdirectory_pass_through() {
    let disk = mounted();
    std::fs::create_dir(disk.path("d")).expect("mkdir");
    let mut f = File::create(disk.path("d/a.tmp")).expect("create");
    f.write_all(&[7u8; 10_000]).expect("write");
    f.set_len(5).expect("truncate");
    f.sync_all().expect("fsync");
    drop(f);
    std::fs::rename(disk.path("d/a.tmp"), disk.path("d/a")).expect("rename");
    assert_eq!(read(&disk.path("d/a")), [7u8; 5]);
    assert_eq!(names(&disk.path("d")), ["a"]);
    std::fs::remove_file(disk.path("d/a")).expect("unlink");
    assert!(!disk.backing.path().join("d/a").exists());
}
