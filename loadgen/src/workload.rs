//! The seeded event stream: orders, payments and their stories, with duplicates, shuffled
//! (out-of-order) deliveries, invalid payloads, bad signatures, amount mismatches, unknown
//! orders and events that must end as dead letters. The same seed gives the same stream.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use webhooks::domain::EventType;
use webhooks::ingress::signature::sign;

use crate::scenario::{Scheme, Signing, Workload};

/// What the system must do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200, then applied exactly once.
    Apply,
    /// 200, then a dead letter (never applied).
    DeadLetter,
    /// A 4xx; never stored.
    Refuse,
}

/// A request ready to send: body and headers are final, signatures included.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Vec<u8>,
    pub headers: Vec<(&'static str, String)>,
    pub expect: Expect,
    /// The event it carries, for the ledger, when it is a valid or dead-letter event.
    pub event: Option<EventRef>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef {
    pub payment: u32,
    pub id: u64,
    pub ty: EventType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderRef {
    Created(u32),
    /// Never created: the payment must exist while the order stays unknown.
    Unknown(u32),
}

#[derive(Debug, Clone)]
pub struct PaymentSpec {
    pub order: OrderRef,
    pub amount: i64,
}

/// Names every entity of a run; the nonce keeps reruns against one system apart.
#[derive(Debug, Clone)]
pub struct Ids {
    pub prefix: String,
}

impl Ids {
    pub fn order(&self, o: OrderRef) -> String {
        match o {
            OrderRef::Created(i) => format!("{}-o{i}", self.prefix),
            OrderRef::Unknown(i) => format!("{}-u{i}", self.prefix),
        }
    }
    pub fn payment(&self, p: u32) -> String {
        format!("{}-p{p}", self.prefix)
    }
    pub fn event(&self, e: u64) -> String {
        format!("{}-e{e}", self.prefix)
    }
}

/// Requests between an event and its non-concurrent resend, at most.
const RESEND_WINDOW: usize = 200;
/// Payments whose events are interleaved together; spreads a payment's events apart.
const GROUP: usize = 32;

pub struct Generator {
    rng: StdRng,
    w: Workload,
    signing: Signing,
    pub ids: Ids,
    /// Total amount of each created order.
    pub orders: Vec<i64>,
    pub payments: Vec<PaymentSpec>,
    /// Payments claimed by one order in the setup phase, with the other order their
    /// load-phase events name (so those events must be dead-lettered).
    pub claimed: Vec<(u32, u32)>,
    upcoming: VecDeque<(u32, EventType)>,
    resends: VecDeque<(usize, Prepared)>,
    next_event: u64,
    unknown_orders: u32,
    sent: usize,
}

impl Generator {
    pub fn new(w: &Workload, signing: &Signing, seed: u64, prefix: String, expected_events: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let orders = (0..w.orders).map(|_| rng.random_range(100..100_000i64)).collect();
        let mut g = Self {
            rng,
            w: w.clone(),
            signing: signing.clone(),
            ids: Ids { prefix },
            orders,
            payments: Vec::new(),
            claimed: Vec::new(),
            upcoming: VecDeque::new(),
            resends: VecDeque::new(),
            next_event: 0,
            unknown_orders: 0,
            sent: 0,
        };
        let claims = ((expected_events as f64 * w.failing_fraction / 4.0).ceil() as usize).min(1000);
        if w.failing_fraction > 0.0 && g.orders.len() >= 2 {
            for _ in 0..claims.max(1) {
                let owner = g.rng.random_range(0..g.orders.len() as u32);
                let other = (owner + 1) % g.orders.len() as u32;
                let p = g.new_payment(OrderRef::Created(owner), 100);
                g.claimed.push((p, other));
            }
        }
        g
    }

    fn new_payment(&mut self, order: OrderRef, amount: i64) -> u32 {
        self.payments.push(PaymentSpec { order, amount });
        (self.payments.len() - 1) as u32
    }

    /// The setup events that claim payments for their owner orders, sent before the load.
    pub fn claims(&mut self, ts: i64) -> Vec<Prepared> {
        let claimed = self.claimed.clone();
        claimed.into_iter().map(|(p, _)| self.event(p, EventType::Pending, None, ts, Expect::Apply)).collect()
    }

    /// The next request of the stream, signed for `ts` (the unix second it is due).
    pub fn next(&mut self, ts: i64) -> Prepared {
        self.sent += 1;
        if let Some(pos) = self.resends.iter().position(|(due, _)| *due <= self.sent) {
            if let Some((_, r)) = self.resends.remove(pos) {
                return r;
            }
        }
        let w = &self.w;
        let (invalid, bad_sig, failing) = (w.invalid_fraction, w.bad_signature_fraction, w.failing_fraction);
        let u: f64 = self.rng.random();
        if u < invalid {
            return self.invalid(ts);
        }
        if u < invalid + bad_sig {
            return self.bad_signature(ts);
        }
        if u < invalid + bad_sig + failing && !self.claimed.is_empty() {
            let (p, other) = self.claimed[self.rng.random_range(0..self.claimed.len())];
            return self.event(p, EventType::Success, Some(OrderRef::Created(other)), ts, Expect::DeadLetter);
        }
        let (p, ty) = self.next_valid();
        let r = self.event(p, ty, None, ts, Expect::Apply);
        if self.rng.random::<f64>() < self.w.duplicate_fraction {
            let gap = if self.rng.random::<f64>() < self.w.concurrent_duplicate_fraction { 0 } else { self.rng.random_range(1..RESEND_WINDOW) };
            self.resends.push_back((self.sent + gap, r.clone()));
        }
        r
    }

    fn next_valid(&mut self) -> (u32, EventType) {
        if self.upcoming.is_empty() {
            self.refill();
        }
        // refill always adds at least one event per payment.
        self.upcoming.pop_front().unwrap_or((0, EventType::Pending))
    }

    /// A group of new payments, their events interleaved round-robin.
    fn refill(&mut self) {
        let mut lives: Vec<(u32, Vec<EventType>)> = (0..GROUP).map(|_| self.new_story()).collect();
        let longest = lives.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
        for step in 0..longest {
            for (p, life) in lives.iter_mut() {
                if let Some(ty) = life.get(step) {
                    self.upcoming.push_back((*p, *ty));
                }
            }
        }
    }

    fn new_story(&mut self) -> (u32, Vec<EventType>) {
        use EventType::*;
        let order = if self.rng.random::<f64>() < self.w.unknown_order_fraction {
            self.unknown_orders += 1;
            OrderRef::Unknown(self.unknown_orders)
        } else {
            OrderRef::Created(self.rng.random_range(0..self.orders.len() as u32))
        };
        let total = match order {
            OrderRef::Created(o) => self.orders[o as usize],
            OrderRef::Unknown(_) => self.rng.random_range(100..100_000),
        };
        let amount = if self.rng.random::<f64>() < self.w.mismatch_fraction { total + 1 } else { total };
        let s = &self.w.stories;
        let pick = self.rng.random::<f64>() * (s.paid + s.failed + s.retried + s.refunded);
        let mut life = if pick < s.paid {
            vec![Pending, Success]
        } else if pick < s.paid + s.failed {
            vec![Pending, Failed]
        } else if pick < s.paid + s.failed + s.retried {
            vec![Pending, Failed, Success]
        } else {
            vec![Pending, Success, Refunded]
        };
        if self.rng.random::<f64>() < self.w.out_of_order_fraction {
            life.shuffle(&mut self.rng);
        }
        (self.new_payment(order, amount), life)
    }

    fn event(&mut self, p: u32, ty: EventType, order: Option<OrderRef>, ts: i64, expect: Expect) -> Prepared {
        let id = self.next_event;
        self.next_event += 1;
        let spec = &self.payments[p as usize];
        let body = json!({
            "event_type": ty.as_str(),
            "payment_id": self.ids.payment(p),
            "order_id": self.ids.order(order.unwrap_or(spec.order)),
            "amount": spec.amount,
            "currency": "USD",
            "event_id": self.ids.event(id),
        })
        .to_string()
        .into_bytes();
        let headers = self.sign(&self.ids.event(id), ts, &body, false);
        Prepared { body, headers, expect, event: Some(EventRef { payment: p, id, ty }) }
    }

    fn invalid(&mut self, ts: i64) -> Prepared {
        let p = self.ids.payment(0);
        let o = self.ids.order(OrderRef::Created(0));
        let bodies = [
            json!({"event_type": "payment.success", "payment_id": p, "order_id": o, "amount": -5, "currency": "USD"}).to_string(),
            json!({"event_type": "payment.success", "payment_id": p, "order_id": o, "amount": 5, "currency": "usd"}).to_string(),
            json!({"event_type": "payment.stolen", "payment_id": p, "order_id": o, "amount": 5, "currency": "USD"}).to_string(),
            json!({"event_type": "payment.success", "payment_id": p, "order_id": o, "currency": "USD"}).to_string(),
            format!(r#"{{"event_type":"payment.success","payment_id":"{p}","amount":"#),
        ];
        let body = bodies[self.rng.random_range(0..bodies.len())].clone().into_bytes();
        let id = format!("{}-bad{}", self.ids.prefix, self.sent);
        let headers = self.sign(&id, ts, &body, false);
        Prepared { body, headers, expect: Expect::Refuse, event: None }
    }

    fn bad_signature(&mut self, ts: i64) -> Prepared {
        let body = json!({"event_type": "payment.success", "payment_id": self.ids.payment(0),
                          "order_id": self.ids.order(OrderRef::Created(0)), "amount": 1, "currency": "USD"})
        .to_string()
        .into_bytes();
        let id = format!("{}-forged{}", self.ids.prefix, self.sent);
        let headers = self.sign(&id, ts, &body, true);
        Prepared { body, headers, expect: Expect::Refuse, event: None }
    }

    fn sign(&self, id: &str, ts: i64, body: &[u8], forge: bool) -> Vec<(&'static str, String)> {
        // A forger signs with a key of its own.
        let secret = if forge { "whsec_Zm9yZ2VkLWtleS1mb3ItdGVzdHM=" } else { self.signing.secret.as_str() };
        match self.signing.scheme {
            Scheme::None => Vec::new(),
            Scheme::Standard => vec![
                ("webhook-id", id.to_owned()),
                ("webhook-timestamp", ts.to_string()),
                ("webhook-signature", sign::standard(secret, id, ts, body).unwrap_or_default()),
            ],
            Scheme::Stripe => vec![("stripe-signature", sign::stripe(secret, ts, body).unwrap_or_default())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Stories;

    fn workload() -> Workload {
        Workload {
            orders: 50,
            stories: Stories::default(),
            duplicate_fraction: 0.2,
            concurrent_duplicate_fraction: 0.5,
            out_of_order_fraction: 0.3,
            invalid_fraction: 0.05,
            bad_signature_fraction: 0.05,
            mismatch_fraction: 0.1,
            unknown_order_fraction: 0.1,
            failing_fraction: 0.02,
        }
    }

    fn signing() -> Signing {
        Signing { scheme: Scheme::Standard, secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into() }
    }

    fn stream(seed: u64) -> Vec<(Vec<u8>, Vec<(&'static str, String)>)> {
        let mut g = Generator::new(&workload(), &signing(), seed, "t".into(), 2000);
        (0..2000).map(|i| g.next(1_700_000_000 + i / 100)).map(|p| (p.body, p.headers)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        assert_eq!(stream(7), stream(7));
        assert_ne!(stream(7), stream(8));
    }

    #[test]
    fn the_mix_has_every_kind_in_about_the_asked_proportions() {
        let mut g = Generator::new(&workload(), &signing(), 1, "t".into(), 10_000);
        let all: Vec<Prepared> = (0..10_000).map(|_| g.next(1_700_000_000)).collect();
        let count = |e: Expect| all.iter().filter(|p| p.expect == e).count();
        let refused = count(Expect::Refuse);
        assert!((700..1300).contains(&refused), "{refused} refused of 10000 (10% asked)");
        assert!(count(Expect::DeadLetter) > 50);
        let mut ids: Vec<u64> = all.iter().filter_map(|p| p.event.map(|e| e.id)).collect();
        let events = ids.len();
        ids.sort();
        ids.dedup();
        let dups = events - ids.len();
        assert!(dups > 1000, "{dups} exact resends");
        assert!(g.payments.iter().any(|p| matches!(p.order, OrderRef::Unknown(_))));
    }

    #[test]
    fn resends_are_byte_identical() {
        let mut g = Generator::new(&workload(), &signing(), 3, "t".into(), 5000);
        let all: Vec<Prepared> = (0..5000).map(|_| g.next(1_700_000_000)).collect();
        let mut by_id = std::collections::HashMap::new();
        for p in all.iter().filter(|p| p.event.is_some()) {
            let prev = by_id.insert(p.event.map(|e| e.id), (&p.body, &p.headers));
            if let Some(prev) = prev {
                assert_eq!(prev, (&p.body, &p.headers));
            }
        }
    }
}
