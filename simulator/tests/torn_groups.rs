//! Schedules of the durable path that found holes once the power could go inside a group's
//! fsync, kept as regressions (docs/simulator.md, what it found).

use simulator::schedule;

fn passes(seed: u64) {
    let o = schedule::run(seed);
    assert!(!o.spool, "seed {seed} is a schedule of the durable path");
    assert_eq!(o.violation, None, "seed {seed}\n{}", o.tail);
}

/// The cut wrote back a later page of the group and not its first: recovery read past the
/// damage to the whole records after it, and the worker dead-lettered offsets 54 and 55,
/// never acknowledged, as damaged acknowledged records.
#[test]
fn a_group_torn_in_its_fsync_is_cut_not_read_as_damage() {
    passes(30);
}

/// A recovery that cut such a group failed after starting its new segment (a failed fsync),
/// so the torn group stayed behind it; the next recovery started cleanly and the reader
/// handed out offsets 5 to 20 as damaged.
#[test]
fn the_cut_of_a_recovery_that_failed_half_way_is_finished() {
    passes(52447);
}

/// Finishing that cut by scanning the segment again cut an acknowledged record a bit flip
/// had damaged since (offset 33): the cut is finished at the length the failed recovery
/// noted, and the flipped record is left for the reader to report.
#[test]
fn finishing_a_cut_keeps_what_that_recovery_had_kept() {
    passes(89454);
}

/// That recovery's cut was made in the page cache, and then its fsync failed; the next
/// recovery found the segment at the noted length already, did not sync it, and dropped the
/// note: the next power cut brought the torn group back, to be read as damage (a fresh seed
/// of a CI run). Every cut a note asks for is now synced, whatever size the file shows.
#[test]
fn a_cut_whose_sync_failed_is_synced_by_the_recovery_that_finishes_it() {
    passes(1_796_524_127_043_527_531);
}
