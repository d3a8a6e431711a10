//! Deliberate faults, compiled in only with the `fault-injection` feature (off by default),
//! so that loadgen's oracle can be shown to catch a wrong system. Never for production.

#[cfg(feature = "fault-injection")]
use std::sync::atomic::{AtomicBool, Ordering};

#[cfg(feature = "fault-injection")]
static SKIP_STALE_RULE: AtomicBool = AtomicBool::new(false);

/// From now on, apply stale events as if they were new: a late `pending` undoes a `success`.
#[cfg(feature = "fault-injection")]
pub fn skip_stale_rule() {
    SKIP_STALE_RULE.store(true, Ordering::Relaxed);
}

/// Whether the stale-event rule is switched off; always false without the feature.
#[inline]
pub fn skips_stale_rule() -> bool {
    #[cfg(feature = "fault-injection")]
    return SKIP_STALE_RULE.load(Ordering::Relaxed);
    #[cfg(not(feature = "fault-injection"))]
    false
}
