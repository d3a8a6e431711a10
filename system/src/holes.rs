//! Holes of the durable path, fixed long ago, that the simulator can reopen one at a time to
//! show it finds them (`scripts/simulate.sh --bugs`). Compiled in only with the
//! `simulator-holes` feature, which only the simulator enables; without it every hole is shut
//! and the checks fold away.

/// A fix that can be taken out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Hole {
    /// No writer lock: a second process appends to a live log.
    SecondWriter = 1,
    /// Recovery numbers from the end it finds, not past the published durable offset and
    /// the stored positions.
    ReusedOffsets,
    /// The reader drops the records it took before an error.
    DroppedOnReadError,
    /// After a failed fdatasync the unsynced pages are left in the segment.
    KeptUnsyncedPages,
    /// New directories' parents are not synced.
    UnsyncedDirectories,
    /// Recovery reads past damage in the last group as if it were synced: a group a power
    /// cut tore is dead-lettered as damaged acknowledged records.
    TornGroupReadPast,
    /// Recovery forgets the cut an earlier, failed recovery noted: the torn tail it left
    /// behind a newer segment is read as damage.
    UnfinishedCut,
}

impl Hole {
    pub const ALL: [Hole; 7] = [
        Hole::SecondWriter,
        Hole::ReusedOffsets,
        Hole::DroppedOnReadError,
        Hole::KeptUnsyncedPages,
        Hole::UnsyncedDirectories,
        Hole::TornGroupReadPast,
        Hole::UnfinishedCut,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hole::SecondWriter => "second-writer",
            Hole::ReusedOffsets => "reused-offsets",
            Hole::DroppedOnReadError => "dropped-on-read-error",
            Hole::KeptUnsyncedPages => "kept-unsynced-pages",
            Hole::UnsyncedDirectories => "unsynced-directories",
            Hole::TornGroupReadPast => "torn-group-read-past",
            Hole::UnfinishedCut => "unfinished-cut",
        }
    }
}

#[cfg(feature = "simulator-holes")]
static OPEN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Whether `hole` is open (never, outside the simulator's build).
#[inline(always)]
pub fn open(hole: Hole) -> bool {
    #[cfg(feature = "simulator-holes")]
    return OPEN.load(std::sync::atomic::Ordering::Relaxed) == hole as u8;
    #[cfg(not(feature = "simulator-holes"))]
    {
        let _ = hole;
        false
    }
}

/// Opens one hole for the whole process (`None` shuts them all).
#[cfg(feature = "simulator-holes")]
pub fn reopen(hole: Option<Hole>) {
    OPEN.store(hole.map_or(0, |h| h as u8), std::sync::atomic::Ordering::Relaxed);
}
