//! Spool schedules that found holes, kept as regressions (docs/simulator.md, what it found).

use simulator::schedule;

/// The durable offset's publish failed after an event was spooled; the drainer took the
/// stale offset for an empty spool, resumed sending to the broker directly and stranded the
/// event behind every later one.
#[test]
fn an_unpublished_spooled_event_keeps_the_spool_in_front() {
    let o = schedule::run(4029);
    assert!(o.spool, "seed 4029 is a spool schedule");
    assert_eq!(o.violation, None, "{}", o.tail);
}

/// With nothing appended after it, an event whose publish failed waited for a restart: the
/// drain now sends nothing new until every acknowledged event is at the broker.
#[test]
fn an_unpublished_spooled_event_is_forwarded_without_another_append() {
    let o = schedule::run(3202);
    assert!(o.spool, "seed 3202 is a spool schedule");
    assert_eq!(o.violation, None, "{}", o.tail);
}

/// Recovery numbered past offsets it cut; the spool's depth, counted from its backlog in
/// offsets, went down by events forwarded, so it never reached zero again and the server
/// kept spooling every event until a restart.
#[test]
fn offsets_recovery_numbered_past_leave_the_spool_depth() {
    let o = schedule::run(19930);
    assert!(o.spool, "seed 19930 is a spool schedule");
    assert_eq!(o.violation, None, "{}", o.tail);
}
