//! faultfs on a real FUSE mount: what is fsync'd survives a power cut, what is not does not,
//! and faults fire where they are set. Fails (never skips) where FUSE is missing.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use faultfs::{Mounted, Op, Target};

fn mounted() -> (tempfile::TempDir, tempfile::TempDir, Mounted) {
    let backing = tempfile::tempdir().expect("backing dir");
    let point = tempfile::tempdir().expect("mount point");
    let fs = Mounted::mount(backing.path(), point.path()).unwrap_or_else(|e| panic!("faultfs must mount for this test: {e}"));
    (backing, point, fs)
}

fn read(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    File::open(path).expect("open").read_to_end(&mut out).expect("read");
    out
}

#[test]
fn synced_data_survives_a_power_cut_and_unsynced_data_does_not() {
    let (backing, _point, fs) = mounted();
    let path = fs.path().join("log");
    let mut f = File::create(&path).expect("create");
    f.write_all(b"durable").expect("write");
    f.sync_data().expect("fdatasync");
    f.write_all(b" and lost").expect("write");
    assert_eq!(read(&path), b"durable and lost", "unsynced writes are visible before the cut");
    drop(f);
    let cut = fs.power_cut();
    assert_eq!(cut.files, 1);
    assert_eq!(read(&path), b"durable");
    assert_eq!(read(&backing.path().join("log")), b"durable", "the backing file holds only what was synced");
}

#[test]
fn a_failed_fsync_loses_the_data_and_a_retry_succeeds_over_the_loss() {
    let (_backing, _point, fs) = mounted();
    let path = fs.path().join("wal");
    let mut f = File::create(&path).expect("create");
    f.write_all(b"acked?").expect("write");
    fs.fail(Op::Fsync, Target::file("wal"), Some(1));
    let err = f.sync_data().expect_err("the injected fsync failure reaches the caller");
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    f.sync_data().expect("the retried fsync succeeds");
    drop(f);
    fs.power_cut();
    assert_eq!(read(&path), b"", "the data was gone despite the successful retry");
    assert_eq!(fs.injected(), 1);
}

#[test]
fn write_faults_hit_only_their_target_and_enospc_comes_past_the_budget() {
    let (_backing, _point, fs) = mounted();
    fs.fail(Op::Write, Target::file(".bad"), None);
    let mut bad = File::create(fs.path().join("x.bad")).expect("create");
    assert_eq!(bad.write_all(b"1").expect_err("EIO").raw_os_error(), Some(libc::EIO));
    let mut good = File::create(fs.path().join("x.good")).expect("create");
    good.write_all(b"1").expect("other files still work");

    fs.clear_faults();
    fs.limit_space(Target::All, 10_000);
    let mut big = OpenOptions::new().create(true).append(true).open(fs.path().join("big")).expect("create");
    big.write_all(&[0u8; 8_000]).expect("within the budget");
    let err = big.write_all(&[0u8; 8_000]).expect_err("past the budget");
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    fs.clear_faults();
    big.write_all(&[0u8; 8_000]).expect("space is back");
}

#[test]
fn directories_renames_and_truncation_pass_through() {
    let (backing, _point, fs) = mounted();
    std::fs::create_dir(fs.path().join("d")).expect("mkdir");
    let mut f = File::create(fs.path().join("d/a.tmp")).expect("create");
    f.write_all(&[7u8; 10_000]).expect("write");
    f.set_len(5).expect("truncate");
    f.sync_all().expect("fsync");
    drop(f);
    std::fs::rename(fs.path().join("d/a.tmp"), fs.path().join("d/a")).expect("rename");
    assert_eq!(read(&fs.path().join("d/a")), [7u8; 5]);
    let names: Vec<_> = std::fs::read_dir(fs.path().join("d")).expect("readdir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names, ["a"]);
    std::fs::remove_file(fs.path().join("d/a")).expect("unlink");
    assert!(!backing.path().join("d/a").exists());
}

#[test]
fn a_hard_link_names_the_same_file() {
    let (_backing, _point, fs) = mounted();
    let mut f = File::create(fs.path().join("id.tmp")).expect("create");
    f.write_all(b"abc").expect("write");
    f.sync_all().expect("fsync");
    drop(f);
    std::fs::hard_link(fs.path().join("id.tmp"), fs.path().join("id")).expect("link");
    std::fs::remove_file(fs.path().join("id.tmp")).expect("unlink the temporary name");
    assert_eq!(read(&fs.path().join("id")), b"abc");
}
