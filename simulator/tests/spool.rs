//! Spool schedules that found holes, kept as regressions (docs/simulator.md, what it found).

use simulator::schedule;

fn passes(seed: u64) {
    let o = schedule::run(seed);
    assert!(o.spool, "seed {seed} is a spool schedule");
    assert_eq!(o.violation, None, "seed {seed}\n{}", o.tail);
}

/// The durable offset's publish failed after an event was spooled; the drainer took the
/// stale offset for an empty spool, resumed sending to the broker directly and stranded the
/// event behind every later one.
#[test]
fn an_unpublished_spooled_event_keeps_the_spool_in_front() {
    passes(4029);
}

/// With nothing appended after it, an event whose publish failed waited for a restart: the
/// drain now sends nothing new until every acknowledged event is at the broker.
#[test]
fn an_unpublished_spooled_event_is_forwarded_without_another_append() {
    passes(3202);
}

/// Recovery numbered past offsets it cut; the spool's depth, counted from its backlog in
/// offsets, went down by events forwarded, so it never reached zero again and the server
/// kept spooling every event until a restart.
#[test]
fn offsets_recovery_numbered_past_leave_the_spool_depth() {
    passes(19930);
}

/// With the power cut inside a spooled append's fsync, recovery numbered past a torn tail of
/// more offsets than the spool may hold: its depth counted them until an event after them was
/// forwarded, and every event was refused as the spool being full, so none ever came. The
/// drainer now takes the offsets it passed over off the depth once it has caught up.
#[test]
fn offsets_recovery_numbered_past_never_fill_the_spool() {
    passes(58659);
}

/// A server whose spool's appender stopped after a failed fsync fails its readiness; the
/// schedule's supervisor did not restart it, and the drain waited on it for ever.
#[test]
fn a_server_whose_spool_failed_is_restarted() {
    passes(16036);
}
