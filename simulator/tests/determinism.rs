//! A schedule is a function of its seed: the same seed gives the same trace, operation for
//! operation, which is what makes a failure replayable from the seed it prints.

use simulator::schedule;

#[test]
fn the_same_seed_gives_the_same_trace() {
    for seed in [1, 7, 163, 4242, 99_999] {
        let (a, b) = (schedule::run(seed), schedule::run(seed));
        assert_eq!((a.hash, a.ops, a.crashes, a.faults), (b.hash, b.ops, b.crashes, b.faults), "seed {seed}");
        assert_eq!(a.tail, b.tail, "seed {seed}");
        assert!(a.ops > 0 || a.violation.is_some(), "seed {seed} ran no operation");
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let hashes: std::collections::BTreeSet<u64> = (1..=50).map(|seed| schedule::run(seed).hash).collect();
    assert_eq!(hashes.len(), 50);
}
