//! What a refused caller leaves behind: a count per reason (`/metrics`, `/api/stats`), a log
//! line at a bounded rate, and, for bad admin tokens, a budget per address. Once an address
//! has spent its budget the management API answers it 429 without looking at its token, so
//! a guesser learns nothing until the wait is over; webhooks never pass through here.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{NotKeyed, StateStore};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use super::error::ApiError;
use super::signature::SignatureError;
use crate::metrics::Metrics;

/// Bad admin tokens an address may send at once; then one more every 6 seconds.
const BAD_TOKENS_PER_MINUTE: NonZeroU32 = NonZeroU32::new(10).expect("non-zero");
/// Refusal log lines of one kind at once; then one every 10 seconds, with a count of those held back.
const LOG_LINES_PER_MINUTE: NonZeroU32 = NonZeroU32::new(6).expect("non-zero");

/// Why the management API refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    MissingToken,
    WrongToken,
    /// The address spent its budget of bad tokens (429).
    Throttled,
}

impl AdminRefusal {
    pub const ALL: [AdminRefusal; 3] = [Self::MissingToken, Self::WrongToken, Self::Throttled];

    /// A stable name for counting refusals by reason.
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::WrongToken => "wrong_token",
            Self::Throttled => "throttled",
        }
    }
}

/// One per process: the budgets and log gates that refusals share.
pub struct Refusals {
    bad_tokens: RateLimiter<Probe, Ledger, DefaultClock>,
    /// Forgets addresses whose budget is whole again, at most once a minute.
    sweep: DefaultDirectRateLimiter,
    admin_log: LogGate,
    signature_log: LogGate,
    webhook_log: LogGate,
}

impl Default for Refusals {
    fn default() -> Self {
        Self {
            bad_tokens: RateLimiter::new(Quota::per_minute(BAD_TOKENS_PER_MINUTE), Ledger::default(), DefaultClock::default()),
            sweep: RateLimiter::direct(Quota::per_minute(NonZeroU32::MIN)),
            admin_log: LogGate::default(),
            signature_log: LogGate::default(),
            webhook_log: LogGate::default(),
        }
    }
}

impl Refusals {
    /// How long `from` must wait before the management API looks at its token again, once it
    /// has spent its budget of bad tokens; `None` while it has some left. Takes nothing.
    pub fn admin_wait(&self, from: IpAddr) -> Option<Duration> {
        let probe = Probe { from: bucket(from), take: false };
        let clock = self.bad_tokens.clock();
        self.bad_tokens.check_key(&probe).err().map(|not_until| not_until.wait_time_from(clock.now()))
    }

    /// Counts and logs a refused management request; a wrong token spends one of the budget of `from`.
    pub fn admin(&self, metrics: &Metrics, why: AdminRefusal, from: IpAddr, path: &str) {
        if why == AdminRefusal::WrongToken {
            // `admin_wait` said there was room; a concurrent refusal may have taken it, which
            // only brings the wait forward.
            let _ = self.bad_tokens.check_key(&Probe { from: bucket(from), take: true });
            if self.sweep.check().is_ok() {
                self.bad_tokens.retain_recent();
            }
        }
        metrics.admin_refusal(why.reason());
        if let Some(held_back) = self.admin_log.admit() {
            tracing::warn!(%from, reason = why.reason(), path, held_back, "management API request refused");
        }
    }

    /// Counts and logs a webhook whose signature was refused. A timestamp outside the tolerance
    /// is said apart: a run of them is a clock to fix, not a forger.
    /// `request_id` is the one the sender got in its answer, which its dashboard shows.
    pub fn signature(&self, metrics: &Metrics, err: &SignatureError, from: Option<IpAddr>, request_id: &str) {
        metrics.signature_refusal(err.reason());
        if let Some(held_back) = self.signature_log.admit() {
            let from = from.map(|ip| ip.to_string()).unwrap_or_default();
            if let SignatureError::Expired(_) = err {
                tracing::warn!(%from, request_id, reason = err.reason(), held_back, error = %err, "webhook timestamp outside the tolerance: clock skew between the provider and this host, or a replay");
            } else {
                tracing::warn!(%from, request_id, reason = err.reason(), held_back, error = %err, "webhook signature refused");
            }
        }
    }

    /// Logs a webhook refused for its content or form (4xx other than its signature), with the
    /// reason and the message the sender got, which names the field but never carries the body.
    pub fn webhook(&self, err: &ApiError, from: Option<IpAddr>, request_id: &str) {
        if let Some(held_back) = self.webhook_log.admit() {
            let from = from.map(|ip| ip.to_string()).unwrap_or_default();
            tracing::warn!(%from, request_id, status = err.status().as_u16(), reason = err.code(), held_back, error = %err, "webhook refused");
        }
    }
}

/// One budget per IPv4 address and per IPv6 /64, the block one host is usually given, so
/// that walking through its addresses buys an attacker nothing.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// Lets a line through at a bounded rate and counts the ones it held back.
struct LogGate {
    lines: DefaultDirectRateLimiter,
    held_back: AtomicU64,
}

impl Default for LogGate {
    fn default() -> Self {
        Self { lines: RateLimiter::direct(Quota::per_minute(LOG_LINES_PER_MINUTE)), held_back: AtomicU64::new(0) }
    }
}

impl LogGate {
    /// `Some(lines held back since the last one)` when a line may be written now.
    fn admit(&self) -> Option<u64> {
        if self.lines.check().is_ok() {
            Some(self.held_back.swap(0, Ordering::Relaxed))
        } else {
            self.held_back.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

/// A key of the bad-token budget: the address, and whether the check spends a cell or only looks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probe {
    from: IpAddr,
    take: bool,
}

/// governor's map of per-address state, with looks that never change it: governor has no
/// "peek", and the budget must be read before the token is, yet spent only by a wrong one.
#[derive(Default)]
struct Ledger(DashMapStateStore<IpAddr>);

impl StateStore for Ledger {
    type Key = Probe;

    fn measure_and_replace<T, F, E>(&self, key: &Probe, decide: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        if key.take {
            return self.0.measure_and_replace(&key.from, decide);
        }
        // An address with no entry has its whole budget: nothing to create for a look.
        let Some(state) = self.0.get(&key.from) else { return decide(None).map(|(t, _)| t) };
        // Hand the decision out through the error side, which leaves the state as it was.
        match state.measure_and_replace(&NotKeyed::NonKey, |tat| Err::<(std::convert::Infallible, Nanos), _>(decide(tat))) {
            Err(decision) => decision.map(|(t, _)| t),
            Ok(never) => match never {},
        }
    }
}

impl ShrinkableKeyedStateStore<Probe> for Ledger {
    fn retain_recent(&self, drop_below: Nanos) {
        self.0.retain_recent(drop_below)
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 7));

    #[test]
    fn looking_spends_nothing_and_wrong_tokens_spend_the_budget() {
        let r = Refusals::default();
        let m = Metrics::new();
        for _ in 0..100 {
            assert_eq!(r.admin_wait(HOST), None, "looks are free");
        }
        for _ in 0..BAD_TOKENS_PER_MINUTE.get() {
            assert_eq!(r.admin_wait(HOST), None);
            r.admin(&m, AdminRefusal::WrongToken, HOST, "/api/stats");
        }
        let wait = r.admin_wait(HOST).expect("budget spent");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(6), "{wait:?}");
        assert_eq!(r.admin_wait("192.0.2.8".parse().expect("ip")), None, "another address has its own budget");
    }

    #[test]
    fn missing_tokens_and_throttled_requests_spend_nothing() {
        let r = Refusals::default();
        let m = Metrics::new();
        for _ in 0..50 {
            r.admin(&m, AdminRefusal::MissingToken, HOST, "/api/stats");
            r.admin(&m, AdminRefusal::Throttled, HOST, "/api/stats");
        }
        assert_eq!(r.admin_wait(HOST), None);
    }

    #[test]
    fn an_ipv6_host_has_one_budget_for_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
        assert_eq!(bucket(a), bucket(b));
        assert_ne!(bucket(a), bucket("2001:db8:1:3::1".parse().expect("ip")));
        assert_eq!(bucket("::ffff:192.0.2.7".parse().expect("ip")), HOST);
    }

    #[test]
    fn the_log_gate_lets_a_burst_through_then_counts_what_it_holds_back() {
        let gate = LogGate::default();
        for _ in 0..LOG_LINES_PER_MINUTE.get() {
            assert_eq!(gate.admit(), Some(0));
        }
        assert_eq!(gate.admit(), None);
        assert_eq!(gate.admit(), None);
        assert_eq!(gate.held_back.load(Ordering::Relaxed), 2);
    }
}
