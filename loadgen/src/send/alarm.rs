//! Waking a connection loop at its request's due instant.
//!
//! tokio's timer counts whole milliseconds from its own start and rounds a deadline up, and
//! its wait rounds up once more: requests would leave a millisecond or more after their due
//! instant, all of it counted as the system's latency. A `timerfd` per connection fires at
//! the instant itself (within the kernel's timer slack).

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};

use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::time::Instant;

struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Falls back to tokio's millisecond timer when no `timerfd` can be had (none left): later,
/// never lost.
pub struct Alarm(Option<AsyncFd<Fd>>);

impl Alarm {
    /// Needs a tokio runtime with I/O enabled on this thread.
    pub fn new() -> Self {
        Self(timerfd().ok())
    }

    /// Returns at `due`, at once if it has passed.
    pub async fn until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        if let Some(fd) = &self.0 {
            if wait(fd, due).await.is_ok() {
                return;
            }
        }
        tokio::time::sleep_until(due).await;
    }
}

fn timerfd() -> io::Result<AsyncFd<Fd>> {
    let fd = TimerFd::new(ClockId::CLOCK_MONOTONIC, TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC)?;
    // SAFETY: the `TimerFd` owns its descriptor and moves into the `AsyncFd` with it, so it
    // stays open, and the same, until the `AsyncFd` is dropped.
    let registered = unsafe { AsyncFd::register_with_interest(Fd(fd), Interest::READABLE) };
    registered.map_err(io::Error::from)
}

async fn wait(fd: &AsyncFd<Fd>, due: Instant) -> io::Result<()> {
    let left = due.saturating_duration_since(Instant::now());
    // A zero expiry disarms a timerfd instead of firing it: a thread preempted between
    // `until`'s check and here would otherwise wait forever.
    if left.is_zero() {
        return Ok(());
    }
    fd.get_ref().0.set(Expiration::OneShot(TimeSpec::from_duration(left)), TimerSetTimeFlags::empty())?;
    loop {
        let mut ready = fd.readable().await?;
        // The read consumes the expiry; before it, it would block (and clears readiness).
        match ready.try_io(|fd| fd.get_ref().0.wait().map_err(io::Error::from)) {
            Ok(done) => return done,
            Err(_would_block) => continue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The point of the alarm: it is not rounded up to tokio's millisecond tick, on which a
    /// sub-millisecond wait overshoots to the next tick; the median is taken so that a few
    /// late wake-ups on a busy machine do not decide the test.
    #[tokio::test(flavor = "current_thread")]
    async fn waits_are_not_rounded_up_to_milliseconds() {
        let alarm = Alarm::new();
        assert!(alarm.0.is_some(), "no timerfd");
        let mut overshoot = Vec::with_capacity(21);
        for _ in 0..21 {
            let due = Instant::now() + Duration::from_micros(100);
            alarm.until(due).await;
            let now = Instant::now();
            assert!(now >= due, "woke before the due instant");
            overshoot.push(now - due);
        }
        overshoot.sort();
        assert!(overshoot[10] < Duration::from_micros(250), "median overshoot {:?}", overshoot[10]);
    }

    /// The race `until` cannot close: the instant passes after its check, before the timer
    /// is set. A zero expiry would disarm the timer and the wait would never end.
    #[tokio::test(flavor = "current_thread")]
    async fn an_instant_passed_before_the_timer_is_set_still_returns() {
        let fd = timerfd().expect("timerfd");
        let waited = tokio::time::timeout(Duration::from_secs(10), wait(&fd, Instant::now() - Duration::from_millis(1))).await;
        assert!(matches!(waited, Ok(Ok(()))), "the wait for a passed instant never returned: {waited:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_past_instant_returns_at_once() {
        let alarm = Alarm::new();
        let started = Instant::now();
        alarm.until(started - Duration::from_millis(5)).await;
        assert!(started.elapsed() < Duration::from_millis(5), "waited for a past instant");
    }
}
