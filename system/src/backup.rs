//! `webhooks backup`: an online copy of a SQLite store and of the logs beside it, consistent
//! with each other, taken while the system runs.
//!
//! Order: the store first (one snapshot, `VACUUM INTO`), then the logs. The log deletes a
//! segment only once the store has made everything in it durable, so a log copied after the
//! snapshot still holds every event after the snapshot's position, unless the worker released
//! a segment between the two copies. That case is seen (the copied log's oldest segment starts
//! after the snapshot's position) and the backup starts over. The other order would be wrong
//! both ways: the store could then be ahead of the log's end, which a restored system refuses.
//! PostgreSQL is backed up with its own tools (docs/operations.md).

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection, OptionalExtension};

use crate::queue::log::{identity, segment};

/// Attempts before giving up, each lost to a segment released during the copy.
const ATTEMPTS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} exists and is not empty: back up into a new directory")]
    NotEmpty(PathBuf),
    #[error("the store is PostgreSQL: back it up with pg_dump (see docs/operations.md, \"Backups\")")]
    Postgres,
    #[error("store: {0}")]
    Store(#[from] rusqlite::Error),
    #[error("I/O on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("the log: {0}")]
    Log(String),
    #[error("the worker released log segments during each of {ATTEMPTS} attempts; try again")]
    Raced,
}

/// What a backup holds.
#[derive(Debug)]
pub struct Saved {
    /// The highest position of the store's consumers in the embedded log, if any.
    pub position: Option<u64>,
    /// The first offset of the oldest copied segment.
    pub oldest_segment: Option<u64>,
    pub log_files: usize,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

/// Copies the store at `store` and the logs (`log/`, `spool/`) of `data_dir` into `to`.
pub fn run(store: &Path, data_dir: &Path, to: &Path) -> Result<Saved, BackupError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    if std::fs::read_dir(to).map_err(io(to))?.next().is_some() {
        return Err(BackupError::NotEmpty(to.to_owned()));
    }
    for _ in 0..ATTEMPTS {
        let snapshot = to.join("store.db");
        snapshot_store(store, &snapshot)?;
        let log = data_dir.join("log");
        let log_files = copy_log(&log, &to.join("log"))?;
        copy_log(&data_dir.join("spool"), &to.join("spool"))?;
        let (position, oldest_segment) = coverage(&snapshot, &to.join("log"))?;
        if matches!((position, oldest_segment), (Some(p), Some(first)) if first > p + 1) {
            tracing::info!(position, oldest_segment, "a log segment was released during the copy; starting over");
            std::fs::remove_dir_all(to).map_err(io(to))?;
            std::fs::create_dir_all(to).map_err(io(to))?;
            continue;
        }
        return Ok(Saved { position, oldest_segment, log_files });
    }
    Err(BackupError::Raced)
}

/// One read transaction's view of the store, written as a compact database file: consistent
/// while writers go on, and never a torn copy of the WAL.
fn snapshot_store(store: &Path, to: &Path) -> Result<(), BackupError> {
    let conn = Connection::open_with_flags(store, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let to = to.to_str().ok_or_else(|| BackupError::Log(format!("{} is not UTF-8", to.display())))?;
    conn.execute("VACUUM INTO ?1", params![to])?;
    Ok(())
}

/// Copies a log directory: its identity and `durable` offset first, so that the offset can
/// only lag the segments copied after it (recovery expects that), then the segments, oldest
/// first. The active segment may end in a torn record, which recovery cuts, as after a crash.
fn copy_log(from: &Path, to: &Path) -> Result<usize, BackupError> {
    if !from.exists() {
        return Ok(0);
    }
    std::fs::create_dir_all(to).map_err(io(to))?;
    let mut names: Vec<String> = std::fs::read_dir(from)
        .map_err(io(from))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n != "writer.lock")
        .collect();
    // Everything but the segments first; segments in offset order (their names sort so).
    names.sort_by_key(|n| (n.ends_with(".seg"), n.clone()));
    let mut copied = 0;
    for name in names {
        let (src, dst) = (from.join(&name), to.join(&name));
        match std::fs::copy(&src, &dst) {
            Ok(_) => copied += 1,
            // Released by the worker between the listing and the copy: the coverage check decides.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&src)(e)),
        }
    }
    Ok(copied)
}

/// The snapshot's position in the copied log, and the first offset of the copied log's oldest segment.
fn coverage(snapshot: &Path, log: &Path) -> Result<(Option<u64>, Option<u64>), BackupError> {
    let oldest = if log.exists() { segment::list(log).map_err(|e| BackupError::Log(e.to_string()))?.first().copied() } else { None };
    if oldest.is_none() {
        return Ok((None, None));
    }
    let id = identity::load_or_create(log).map_err(|e| BackupError::Log(e.to_string()))?;
    let conn = Connection::open(snapshot)?;
    // Positions into a log are stored as `<consumer>@<log id>` (see `Store::log_position`).
    let position: Option<i64> = conn
        .query_row("SELECT MAX(position) FROM consumer_positions WHERE consumer LIKE '%@' || ?1", params![id], |r| r.get(0))
        .optional()?
        .flatten();
    Ok((position.map(|p| p.max(0) as u64), oldest))
}
