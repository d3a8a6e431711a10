//! Upgrades. The data directory the previous release leaves behind (tests/fixtures, written by
//! scripts/make-upgrade-fixture.sh: events its worker applied, events still queued, a
//! redelivery) is started by this build: every queued event is applied exactly once, none the
//! old worker applied is applied again, the schema is brought up to date and the log's
//! positions go on where they were. And the rule for an older schema: only `webhooks migrate`
//! and `standalone` change it; a worker or a server refuses it and names the command.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::Value;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/upgrade-previous-release.tar.gz");

/// Unpacks the fixture into `into` (its `data/` and `manifest.json`); returns the manifest.
fn unpack(into: &Path) -> Value {
    let status = Command::new("tar").args(["-xzf", FIXTURE, "-C"]).arg(into).status().expect("run tar");
    assert!(status.success(), "cannot unpack {FIXTURE}");
    serde_json::from_slice(&std::fs::read(into.join("manifest.json")).expect("manifest.json")).expect("manifest is JSON")
}

fn webhooks(args: &[&str]) -> Output {
    Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run webhooks")
}

/// The version `webhooks migrate` leaves the store in `data` at.
fn migrated_version(data: &str) -> u32 {
    let out = webhooks(&["migrate", "--data-dir", data]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    said.trim().rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no version in {said:?}"))
}

/// The manifest's event ids per payment, from the groups named.
fn ledger(manifest: &Value, groups: &[&str]) -> Ledger {
    let mut out = Ledger::new();
    for group in groups {
        for (payment, ids) in manifest[group].as_object().unwrap_or_else(|| panic!("manifest has no {group}")) {
            for id in ids.as_array().expect("event ids") {
                note_accepted(&mut out, payment, id.as_str().expect("an event id"));
            }
        }
    }
    out
}

fn events_in(ledger: &Ledger) -> u64 {
    ledger.values().map(|ids| ids.len() as u64).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_releases_data_directory_applies_what_it_had_queued_exactly_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let manifest = unpack(dir.path());
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8");
    let log_id = std::fs::read_to_string(dir.path().join("data/log/log.id")).expect("the log's identity");
    let position = manifest["position"].as_u64().expect("the store's position");
    let queued = ledger(&manifest, &["queued"]);
    let redelivered = manifest["redelivered"].as_array().expect("redelivered").len() as u64;

    let addr = free_addr().to_string();
    let base = format!("http://{addr}");
    let mut app = Proc::spawn("standalone", &["standalone", "--listen", &addr, "--data-dir", data], &[], &dir.path().join("standalone.log"));
    let http = client();
    wait_healthy(&http, &base).await;

    let mut everything = ledger(&manifest, &["applied", "queued"]);
    assert_exactly_once(&http, &base, &everything).await;
    for order in manifest["orders"].as_object().expect("orders").keys() {
        eventually(&http, format!("{base}/api/orders/{order}"), Duration::from_secs(30), |o| o["status"] == "paid").await;
    }
    // This build applied the queued events and knew the redelivery; nothing the old worker had
    // applied came round again, as it would have had the positions been lost.
    let stats = eventually(&http, format!("{base}/api/stats"), Duration::from_secs(30), |s| s["worker"]["applied"].as_u64() == Some(events_in(&queued))).await;
    assert_eq!(stats["worker"]["duplicates"].as_u64(), Some(redelivered), "{stats}");
    assert_eq!(stats["worker"]["dead_lettered"].as_u64(), Some(0), "{stats}");

    // The log goes on after the records the old release wrote.
    let (status, _) = post(&http, format!("{base}/api/webhooks/payment"), &event("payment.success", "up_p7", "up_o7", 700, "up_e7b")).await;
    assert_eq!(status, 200);
    note_accepted(&mut everything, "up_p7", "up_e7b");
    assert_exactly_once(&http, &base, &everything).await;
    assert!(app.terminate().is_some_and(|s| s.success()), "a clean stop");

    let fresh = tempfile::tempdir().expect("temp dir");
    let current = migrated_version(fresh.path().to_str().expect("utf-8"));
    assert!(manifest["schema_version"].as_u64().expect("fixture's schema") <= u64::from(current));
    assert_eq!(migrated_version(data), current, "standalone brought the schema up to date");
    let db = rusqlite::Connection::open(dir.path().join("data/store.db")).expect("open the store");
    let (consumer, at): (String, i64) = db
        .query_row("SELECT consumer, position FROM consumer_positions ORDER BY position DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("a stored position");
    assert_eq!(consumer, format!("webhooks-worker@{}", log_id.trim()), "positions stay bound to the same log");
    assert_eq!(at as u64, position + events_in(&queued) + redelivered + 1, "every record the old release queued, then the new one, each at its own offset");
}

#[test]
fn an_older_schema_is_refused_by_a_worker_and_a_server_which_name_the_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let current = migrated_version(data);
    // What an older release left: its last version recorded. (The columns stay, so this store
    // can only be refused; the migration itself is tested on a real older schema in the store.)
    let db = rusqlite::Connection::open(dir.path().join("store.db")).expect("open");
    db.execute("DELETE FROM schema_version WHERE version = ?1", [current]).expect("an older version");
    drop(db);
    for role in ["worker", "server"] {
        let addr = free_addr().to_string();
        let args: Vec<&str> = if role == "server" { vec![role, "--data-dir", data, "--listen", &addr] } else { vec![role, "--data-dir", data] };
        let refused = webhooks(&args);
        assert!(!refused.status.success(), "{role} started on an older schema");
        let why = String::from_utf8_lossy(&refused.stderr);
        assert!(why.contains("older than this binary's") && why.contains("webhooks migrate"), "{role}: {why}");
    }
}

#[test]
fn a_worker_and_a_server_create_the_schema_in_a_new_data_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_str().expect("utf-8");
    let mut worker = Proc::spawn("worker", &["worker", "--data-dir", data], &[], &dir.path().join("worker.log"));
    let db = dir.path().join("store.db");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let version = loop {
        let found = rusqlite::Connection::open(&db).ok().and_then(|c| c.query_row("SELECT MAX(version) FROM schema_version", [], |r| r.get::<_, u32>(0)).ok());
        if let Some(v) = found {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "the worker created no schema");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(worker.terminate().is_some_and(|s| s.success()));
    let fresh = tempfile::tempdir().expect("temp dir");
    assert_eq!(version, migrated_version(fresh.path().to_str().expect("utf-8")), "at the current version, with no migrate step");
}
