//! Data directories written before the segment log kept the queue in SQLite (`queue.db`, and
//! `spool.db` for the spool). At start-up, before the appender opens the new log, what is left
//! in such a file moves into the log under the same offsets, so positions that the store
//! recorded against the old log stay right, and the file is then retired (renamed).

use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use super::log::{identity, record, segment, LogError};
use super::QueueError;

/// Moves the rows left in `db` into the log in `dir`; does nothing when `db` does not exist.
pub fn drain(db: &Path, dir: &Path) -> Result<(), QueueError> {
    if !db.exists() {
        return Ok(());
    }
    identity::load_or_create(dir).map_err(storage)?;
    if segment::list(dir).map_err(storage)?.is_empty() {
        let (base, rows) = read_rows(db)?;
        write_segment(dir, base, &rows).map_err(storage)?;
        tracing::warn!(file = %db.display(), events = rows.len(), first_offset = base, "moved the old SQLite queue's events into the segment log");
    }
    // Reached with segments present also when an earlier start stopped between the two steps.
    retire(db).map_err(storage)
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

/// The first offset for the new log and the payloads left, in order.
fn read_rows(db: &Path) -> Result<(u64, Vec<Vec<u8>>), QueueError> {
    let conn = Connection::open(db).map_err(storage)?;
    let last: i64 = conn
        .query_row("SELECT seq FROM sqlite_sequence WHERE name = 'log'", [], |r| r.get(0))
        .optional()
        .map_err(storage)?
        .unwrap_or(0);
    let mut stmt = conn.prepare("SELECT seq, payload FROM log ORDER BY seq").map_err(storage)?;
    let rows: Vec<(i64, Vec<u8>)> = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).map_err(storage)?.collect::<Result<_, _>>().map_err(storage)?;
    let first = rows.first().map_or(last + 1, |r| r.0);
    // Offsets carry over only if the rows are the unbroken run up to the last sequence number.
    let unbroken = rows.iter().enumerate().all(|(i, r)| r.0 == first + i as i64) && first + rows.len() as i64 == last + 1;
    if !unbroken || first < 1 {
        return Err(QueueError::Storage(format!("{}: rows are not one unbroken run ending at {last}; drain it with the previous version", db.display())));
    }
    Ok((first as u64, rows.into_iter().map(|r| r.1).collect()))
}

/// Writes the whole segment under a temporary name, then renames it into place: a crash
/// leaves either no segment (the drain runs again) or the complete one.
fn write_segment(dir: &Path, base: u64, rows: &[Vec<u8>]) -> Result<(), LogError> {
    let mut buf = record::MAGIC.to_vec();
    // Synced whole before its name appears: every record may start a group.
    for (i, payload) in rows.iter().enumerate() {
        record::encode_into(&mut buf, base + i as u64, payload, true);
    }
    let tmp = dir.join("drain.tmp");
    let mut f = std::fs::File::create(&tmp).map_err(LogError::io("create", &tmp))?;
    f.write_all(&buf).and_then(|_| f.sync_all()).map_err(LogError::io("write", &tmp))?;
    let path = segment::path(dir, base);
    std::fs::rename(&tmp, &path).map_err(LogError::io("rename drained segment to", &path))?;
    segment::sync_dir(dir)
}

/// Renames the database and its WAL files out of the way, keeping them for inspection.
fn retire(db: &Path) -> Result<(), LogError> {
    for suffix in ["", "-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", db.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}.retired{suffix}", db.display()));
            std::fs::rename(&from, &to).map_err(LogError::io("retire", &from))?;
        }
    }
    match db.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => segment::sync_dir(parent),
        _ => segment::sync_dir(Path::new(".")),
    }
}
