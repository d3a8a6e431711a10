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
