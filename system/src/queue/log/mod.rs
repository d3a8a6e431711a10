//! A segment log: the durable path of the embedded queue and of the Kafka-mode spool.
//!
//! A directory holds append-only segment files ([`segment`]) of framed, checksummed records
//! ([`record`]) numbered from 1, and a random identity ([`identity`]) that lets a stored
//! position be matched to the log it points into. One [`appender`] thread writes each group
//! of concurrent appends with one `write` and one `fdatasync` and answers the group
//! together; [`recovery`] cuts a torn or corrupt tail before it starts; a [`reader`] hands
//! out only durable records and follows the files across segments.
//!
//! One appender per log: it holds the log's [`WriterLock`] (a lock file inside the log's own
//! directory), so a second writer (another server, a `dlq replay` beside a running one) is
//! refused by the log itself, whatever role locks its process took.

pub mod appender;
pub mod identity;
pub mod reader;
pub mod record;
pub mod recovery;
pub mod segment;

use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::datadir::LockError;
use crate::disk::{Disk, Os};

/// Segments roll past this size by default; deletion works in whole segments.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("corrupt record in {path} at byte {at}: {why}")]
    Corrupt { path: PathBuf, at: u64, why: &'static str },
    /// A write or fsync failed in a way that leaves the file's state unknown. After a failed
    /// fsync Linux may drop the dirty pages and report success on the next one (PostgreSQL's
    /// "fsyncgate"), so nothing more is accepted until the log is reopened and recovered.
    #[error("the log stopped after a failed write or fsync; restart to recover it: {0}")]
    Failed(String),
    /// A write failed (a full disk) and was undone; the log continues.
    #[error("append not written: {0}")]
    Unwritten(String),
    #[error("too many appends waiting")]
    Full,
    #[error("the log's appender stopped")]
    Stopped,
    #[error("position {position} is not in this log (records {first}..={last}); it belongs to another log or the log lost records")]
    OutOfRange { position: u64, first: u64, last: u64 },
    #[error("invalid log identity in {0}")]
    Identity(PathBuf),
    #[error(transparent)]
    Writer(#[from] LockError),
}

impl LogError {
    /// For `map_err`: an I/O error on `path` while doing `what`.
    pub fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
        let path = path.to_owned();
        move |source| LogError::Io { what, path, source }
    }
}

/// The right to append to the log in one directory, held until dropped or the process ends.
#[derive(Debug)]
pub struct WriterLock {
    dir: PathBuf,
    disk: Arc<dyn Disk>,
    _held: Option<Box<dyn Debug + Send + Sync>>,
}

impl WriterLock {
    /// Creates the log's directory if needed; fails at once if another process writes the log.
    pub fn acquire(dir: &Path) -> Result<Self, LogError> {
        Self::acquire_on(Arc::new(Os), dir)
    }

    /// [`WriterLock::acquire`] on `disk`, which the log is then written through.
    pub fn acquire_on(disk: Arc<dyn Disk>, dir: &Path) -> Result<Self, LogError> {
        crate::durable_dir::create_all(&*disk, dir).map_err(LogError::io("create log directory", dir))?;
        let held = match crate::holes::open(crate::holes::Hole::SecondWriter) {
            true => None,
            false => Some(disk.lock(dir, "writer.lock", "log writer")?),
        };
        Ok(Self { dir: dir.to_owned(), disk, _held: held })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn disk(&self) -> &Arc<dyn Disk> {
        &self.disk
    }
}
