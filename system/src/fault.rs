//! Deliberate faults, compiled in only with the `fault-injection` feature (off by default)
//! and switched on by hidden flags of the `webhooks-fault` binary: wrong rules, so that
//! loadgen's oracle can be shown to catch a wrong system, and extra work per event, so that
//! the CI speed gates can be shown to trip. Never for production.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(feature = "fault-injection")]
use std::time::{Duration, Instant};

#[cfg(feature = "fault-injection")]
static SKIP_STALE_RULE: AtomicBool = AtomicBool::new(false);
#[cfg(feature = "fault-injection")]
static LARGER_AMOUNT_WINS: AtomicBool = AtomicBool::new(false);
#[cfg(feature = "fault-injection")]
static BUSY_US_PER_EVENT: AtomicU64 = AtomicU64::new(0);

/// From now on, apply stale events as if they were new: a late `pending` undoes a `success`.
#[cfg(feature = "fault-injection")]
pub fn skip_stale_rule() {
    SKIP_STALE_RULE.store(true, Ordering::Relaxed);
}

/// From now on, two same-rank events that disagree settle on the larger (currency, amount).
#[cfg(feature = "fault-injection")]
pub fn let_larger_amount_win() {
    LARGER_AMOUNT_WINS.store(true, Ordering::Relaxed);
}

/// From now on, every accepted webhook burns this much CPU first: a regression of known size.
#[cfg(feature = "fault-injection")]
pub fn busy_per_event(us: u64) {
    BUSY_US_PER_EVENT.store(us, Ordering::Relaxed);
}

/// Whether the stale-event rule is switched off; always false without the feature.
#[inline]
pub fn skips_stale_rule() -> bool {
    #[cfg(feature = "fault-injection")]
    return SKIP_STALE_RULE.load(Ordering::Relaxed);
    #[cfg(not(feature = "fault-injection"))]
    false
}

/// Whether the same-rank rule is inverted; always false without the feature.
#[inline]
pub fn larger_amount_wins() -> bool {
    #[cfg(feature = "fault-injection")]
    return LARGER_AMOUNT_WINS.load(Ordering::Relaxed);
    #[cfg(not(feature = "fault-injection"))]
    false
}

/// Spins for the configured time; a no-op without the feature. Spinning rather than sleeping,
/// so that the cost shows as CPU per event, as a real regression would.
#[inline]
pub fn busy_work() {
    #[cfg(feature = "fault-injection")]
    {
        let us = BUSY_US_PER_EVENT.load(Ordering::Relaxed);
        if us > 0 {
            let until = Instant::now() + Duration::from_micros(us);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
    }
}
