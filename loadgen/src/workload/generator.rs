//! The seeded event stream: orders, payments and their stories, with duplicates, shuffled
//! (out-of-order) deliveries, invalid payloads, bad signatures, amount mismatches, unknown
//! orders, events that must end as dead letters, amounts and currencies that vary within a
//! payment, and event ids reused with another payload; in Stripe's envelope, partial refunds,
//! disputes and event types the system does not handle. The same seed gives the same stream.

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::fmt::Write as _;
use std::io::Write as _;

use crate::scenario::{Format, Scheme, Workload};
use crate::workload::oracle::{Charge, EventType};
use crate::workload::sign::{SigHeaders, Signer};
use crate::workload::stripe;

/// What the system must do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// 200, then applied exactly once.
    Apply,
    /// 200, then a dead letter (never applied).
    DeadLetter,
    /// A 4xx; never stored.
    Refuse,
    /// 200, counted as ignored, never stored (a Stripe type the system does not handle).
    Ignore,
}

/// One request of the stream, decided but not yet written: rendering it into bytes is
/// left to the connection that sends it, into its own reused buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: Kind,
    pub expect: Expect,
    /// The unix second it is signed for; a resend keeps its original's, so it is byte-identical.
    pub ts: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A valid event; `order` is the order it names (another than its payment's for a
    /// dead-letter event).
    Event { e: EventRef, order: OrderRef },
    /// One of the malformed bodies, numbered `n` in the stream.
    Invalid { variant: u8, n: u64 },
    /// A valid body signed with a key the system does not know.
    Forged { n: u64 },
    /// A Stripe event of a type the system does not handle, about payment `p` of `order`.
    Ignored { p: u32, order: OrderRef, variant: u8, n: u64 },
}

impl Planned {
    /// The event it carries, for the ledger, when it is a valid or dead-letter event.
    pub fn event(&self) -> Option<EventRef> {
        match self.kind {
            Kind::Event { e, .. } => Some(e),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef {
    pub payment: u32,
    pub id: u64,
    pub ty: EventType,
    pub amount: i64,
    pub currency: &'static str,
    pub reuse: Reuse,
    /// Which Stripe type (or field value) expresses `ty`; 0 in the flat format.
    pub form: u8,
}

impl EventRef {
    pub fn charge(&self) -> Charge<'static> {
        Charge { ty: self.ty, amount: self.amount, currency: self.currency }
    }
}

/// An event id sent twice with different payloads: the system keeps the one it records
/// first and dead-letters the other as "conflict: event id reused".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    No,
    /// The first payload under an id that is reused later.
    Original,
    /// The later payload under an already used id.
    Second,
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

/// Names every entity of a run; the nonce keeps reruns against one system apart. In Stripe's
/// format a payment is its PaymentIntent (`pi_...`) and an event Stripe's `evt_...`.
#[derive(Debug, Clone)]
pub struct Ids {
    pub prefix: String,
    pub format: Format,
}

impl Ids {
    pub fn order(&self, o: OrderRef) -> String {
        OrderName(&self.prefix, o).to_string()
    }
    pub fn payment(&self, p: u32) -> String {
        match self.format {
            Format::Flat => format!("{}-p{p}", self.prefix),
            Format::Stripe => stripe::payment_intent(&self.prefix, p),
        }
    }
    pub fn event(&self, e: u64) -> String {
        format!("{}{}-e{e}", self.event_prefix(), self.prefix)
    }
    fn event_prefix(&self) -> &'static str {
        match self.format {
            Format::Flat => "",
            Format::Stripe => "evt_",
        }
    }
}

/// Requests between an event and its non-concurrent resend, at most.
const RESEND_WINDOW: usize = 200;
/// The currency of every order; a varied payment event may carry the other one.
pub const CURRENCY: &str = "USD";
const OTHER_CURRENCY: &str = "EUR";
/// Payments whose events are interleaved together; spreads a payment's events apart.
const GROUP: usize = 32;

pub struct Generator {
    rng: StdRng,
    w: Workload,
    pub ids: Ids,
    /// Total amount of each created order.
    pub orders: Vec<i64>,
    pub payments: Vec<PaymentSpec>,
    /// Payments claimed by one order in the setup phase, with the other order their
    /// load-phase events name (so those events must be dead-lettered).
    pub claimed: Vec<(u32, u32)>,
    upcoming: VecDeque<(u32, Charge<'static>)>,
    resends: VecDeque<(usize, Planned)>,
    next_event: u64,
    unknown_orders: u32,
    sent: usize,
}

impl Generator {
    pub fn new(w: &Workload, seed: u64, prefix: String, expected_events: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let orders = (0..w.orders).map(|_| rng.random_range(100..100_000i64)).collect();
        let mut g = Self {
            rng,
            w: w.clone(),
            ids: Ids { prefix, format: w.format },
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
    pub fn claims(&mut self, ts: i64) -> Vec<Planned> {
        let claimed = self.claimed.clone();
        claimed.into_iter().map(|(p, _)| self.event(p, self.base(p, EventType::Pending), None, ts, Expect::Apply)).collect()
    }

    /// The next request of the stream, signed for `ts` (the unix second it is due).
    pub fn next(&mut self, ts: i64) -> Planned {
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
            let variant = self.rng.random_range(0..self.invalid_bodies());
            return Planned { kind: Kind::Invalid { variant, n: self.sent as u64 }, expect: Expect::Refuse, ts };
        }
        if u < invalid + bad_sig {
            return Planned { kind: Kind::Forged { n: self.sent as u64 }, expect: Expect::Refuse, ts };
        }
        if u > 1.0 - w.ignored_fraction && !self.payments.is_empty() {
            let p = self.rng.random_range(0..self.payments.len() as u32);
            let variant = self.rng.random_range(0..stripe::IGNORED.len() as u8);
            let kind = Kind::Ignored { p, order: self.payments[p as usize].order, variant, n: self.sent as u64 };
            return Planned { kind, expect: Expect::Ignore, ts };
        }
        if u < invalid + bad_sig + failing && !self.claimed.is_empty() {
            let (p, other) = self.claimed[self.rng.random_range(0..self.claimed.len())];
            let charge = self.base(p, EventType::Success);
            return self.event(p, charge, Some(OrderRef::Created(other)), ts, Expect::DeadLetter);
        }
        let (p, charge) = self.next_valid();
        let mut r = self.event(p, charge, None, ts, Expect::Apply);
        if self.rng.random::<f64>() < self.w.id_reuse_fraction {
            r = self.reuse_later(r);
        }
        if self.rng.random::<f64>() < self.w.duplicate_fraction {
            let gap = if self.rng.random::<f64>() < self.w.concurrent_duplicate_fraction { 0 } else { self.rng.random_range(1..RESEND_WINDOW) };
            self.resends.push_back((self.sent + gap, r));
        }
        r
    }

    /// Marks `r` as reused and plans its second payload (another amount under the same id)
    /// after at least a resend window, so it is usually sent after `r` was answered.
    fn reuse_later(&mut self, mut r: Planned) -> Planned {
        if let Kind::Event { e, order } = r.kind {
            let second = EventRef { amount: e.amount + 2, reuse: Reuse::Second, ..e };
            let gap = self.rng.random_range(RESEND_WINDOW..2 * RESEND_WINDOW);
            self.resends.push_back((self.sent + gap, Planned { kind: Kind::Event { e: second, order }, ..r }));
            r.kind = Kind::Event { e: EventRef { reuse: Reuse::Original, ..e }, order };
        }
        r
    }

    fn next_valid(&mut self) -> (u32, Charge<'static>) {
        if self.upcoming.is_empty() {
            self.refill();
        }
        // refill always adds at least one event per payment.
        self.upcoming.pop_front().unwrap_or((0, Charge { ty: EventType::Pending, amount: 1, currency: CURRENCY }))
    }

    /// A group of new payments, their events interleaved round-robin.
    fn refill(&mut self) {
        let mut stories: Vec<(u32, Vec<Charge<'static>>)> = (0..GROUP).map(|_| self.new_story()).collect();
        let longest = stories.iter().map(|(_, l)| l.len()).max().unwrap_or(0);
        for step in 0..longest {
            for (p, story) in stories.iter_mut() {
                if let Some(c) = story.get(step) {
                    self.upcoming.push_back((*p, *c));
                }
            }
        }
    }

    fn new_story(&mut self) -> (u32, Vec<Charge<'static>>) {
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
        let weights = [s.paid, s.failed, s.retried, s.refunded, s.partially_refunded, s.disputed];
        let mut pick = self.rng.random::<f64>() * weights.iter().sum::<f64>();
        let chosen = weights.iter().position(|w| {
            pick -= w;
            pick < 0.0
        });
        let story = match chosen {
            Some(0) => vec![Pending, Success],
            Some(1) => vec![Pending, Failed],
            Some(2) => vec![Pending, Failed, Success],
            // One partial refund, or two, the second sometimes of the rest.
            Some(4) => match self.rng.random_range(0..4u8) {
                0 | 1 => vec![Pending, Success, PartiallyRefunded],
                2 => vec![Pending, Success, PartiallyRefunded, PartiallyRefunded],
                _ => vec![Pending, Success, PartiallyRefunded, Refunded],
            },
            // A dispute, mostly closed.
            Some(5) => match self.rng.random_range(0..5u8) {
                0 => vec![Pending, Success, Disputed],
                1 | 2 => vec![Pending, Success, Disputed, DisputeWon],
                _ => vec![Pending, Success, Disputed, DisputeLost],
            },
            _ => vec![Pending, Success, Refunded],
        };
        let mut story: Vec<Charge<'static>> = story.into_iter().map(|ty| Charge { ty, amount, currency: CURRENCY }).collect();
        if self.rng.random::<f64>() < self.w.amount_variation_fraction {
            self.vary(&mut story);
        }
        if self.rng.random::<f64>() < self.w.out_of_order_fraction {
            story.shuffle(&mut self.rng);
        }
        (self.new_payment(order, amount), story)
    }

    /// Gives each event of a story its own amount or currency around the payment's, and adds
    /// one more event of a rank the story has with another pair, so that events of one rank
    /// disagree (the same-rank conflict rule) as well as events of different ranks.
    fn vary(&mut self, story: &mut Vec<Charge<'static>>) {
        let base = story.first().map(|c| c.amount).unwrap_or(1);
        let variant = |rng: &mut StdRng, not: Option<(i64, &str)>| loop {
            let (amount, currency) = match rng.random_range(0..4) {
                0 => (base, CURRENCY),
                1 => (base - 1, CURRENCY),
                2 => (base + 1, CURRENCY),
                _ => (base, OTHER_CURRENCY),
            };
            if not != Some((amount, currency)) {
                return (amount, currency);
            }
        };
        for c in story.iter_mut() {
            (c.amount, c.currency) = variant(&mut self.rng, None);
        }
        let twin = story[self.rng.random_range(0..story.len())];
        let (amount, currency) = variant(&mut self.rng, Some((twin.amount, twin.currency)));
        story.push(Charge { amount, currency, ..twin });
    }

    /// The payment's own amount and currency, for events that do not vary.
    fn base(&self, p: u32, ty: EventType) -> Charge<'static> {
        Charge { ty, amount: self.payments[p as usize].amount, currency: CURRENCY }
    }

    fn event(&mut self, p: u32, c: Charge<'static>, order: Option<OrderRef>, ts: i64, expect: Expect) -> Planned {
        let id = self.next_event;
        self.next_event += 1;
        let order = order.unwrap_or(self.payments[p as usize].order);
        let form = match self.w.format {
            Format::Flat => 0,
            Format::Stripe => self.rng.random_range(0..stripe::forms(c.ty)),
        };
        let e = EventRef { payment: p, id, ty: c.ty, amount: c.amount, currency: c.currency, reuse: Reuse::No, form };
        Planned { kind: Kind::Event { e, order }, expect, ts }
    }
}

/// Kinds of malformed flat body in the stream.
const INVALID_BODIES: u8 = 5;

impl Generator {
    fn invalid_bodies(&self) -> u8 {
        match self.w.format {
            Format::Flat => INVALID_BODIES,
            Format::Stripe => stripe::INVALID,
        }
    }
}

/// Turns planned requests into bytes: the body written into a reused buffer from the ids
/// and amounts that change, then signed; one per connection, so nothing is shared per send.
#[derive(Clone)]
pub struct Renderer {
    ids: Ids,
    signer: Signer,
    pub body: Vec<u8>,
    pub id: String,
    pub sig: SigHeaders,
}

impl Renderer {
    pub fn new(ids: Ids, signer: Signer) -> Self {
        Self { ids, signer, body: Vec::with_capacity(256), id: String::with_capacity(64), sig: SigHeaders::default() }
    }

    pub fn scheme(&self) -> Scheme {
        self.signer.scheme()
    }

    /// Writes `p`'s body, message id and signature into this renderer's buffers.
    pub fn render(&mut self, p: &Planned) {
        self.body.clear();
        self.id.clear();
        match self.ids.format {
            Format::Flat => self.flat(p),
            Format::Stripe => self.stripe(p),
        }
        self.signer.sign(&self.id, p.ts, &self.body, matches!(p.kind, Kind::Forged { .. }), &mut self.sig);
    }

    fn stripe(&mut self, p: &Planned) {
        let pfx = &self.ids.prefix;
        // Writing into a Vec or String cannot fail.
        let _ = match p.kind {
            Kind::Event { e, order } => {
                let _ = write!(self.id, "evt_{pfx}-e{}", e.id);
                let objects = stripe::Objects { prefix: pfx, payment: e.payment };
                stripe::event(&mut self.body, &self.id, &objects, &OrderName(pfx, order), (e.ty, e.form), e.amount, e.currency)
            }
            Kind::Ignored { p, order, variant, n } => {
                let _ = write!(self.id, "evt_{pfx}-ign{n}");
                stripe::ignored(&mut self.body, &self.id, &stripe::Objects { prefix: pfx, payment: p }, &OrderName(pfx, order), variant)
            }
            Kind::Invalid { variant, n } => {
                let _ = write!(self.id, "evt_{pfx}-bad{n}");
                stripe::invalid(&mut self.body, &self.id, pfx, variant)
            }
            Kind::Forged { n } => {
                let _ = write!(self.id, "evt_{pfx}-forged{n}");
                stripe::forged(&mut self.body, &self.id, pfx)
            }
        };
    }

    fn flat(&mut self, p: &Planned) {
        let pfx = &self.ids.prefix;
        // Writing into a Vec or String cannot fail.
        let _ = match p.kind {
            Kind::Event { e, order } => {
                let _ = write!(self.id, "{pfx}-e{}", e.id);
                write!(
                    self.body,
                    r#"{{"event_type":"{}","payment_id":"{pfx}-p{}","order_id":"{}","amount":{},"currency":"{}","event_id":"{}"}}"#,
                    e.ty.as_str(),
                    e.payment,
                    OrderName(pfx, order),
                    e.amount,
                    e.currency,
                    self.id
                )
            }
            Kind::Invalid { variant, n } => {
                let _ = write!(self.id, "{pfx}-bad{n}");
                let (ty, rest) = match variant {
                    0 => ("payment.success", r#","amount":-5,"currency":"USD"}"#),
                    1 => ("payment.success", r#","amount":5,"currency":"usd"}"#),
                    2 => ("payment.stolen", r#","amount":5,"currency":"USD"}"#),
                    _ => ("payment.success", r#","currency":"USD"}"#),
                };
                if variant >= INVALID_BODIES - 1 {
                    write!(self.body, r#"{{"event_type":"payment.success","payment_id":"{pfx}-p0","amount":"#)
                } else {
                    write!(self.body, r#"{{"event_type":"{ty}","payment_id":"{pfx}-p0","order_id":"{pfx}-o0"{rest}"#)
                }
            }
            Kind::Forged { n } => {
                let _ = write!(self.id, "{pfx}-forged{n}");
                write!(self.body, r#"{{"event_type":"payment.success","payment_id":"{pfx}-p0","order_id":"{pfx}-o0","amount":1,"currency":"USD"}}"#)
            }
            // The flat format has no ignored types; the scenario's checks keep them out.
            Kind::Ignored { .. } => Ok(()),
        };
    }

    /// The signature headers of the last rendered request, by name; no allocation.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, &str)> {
        let (sig, ts, id) = (self.sig.signature.as_str(), self.sig.timestamp.as_str(), self.id.as_str());
        let (list, n) = match self.scheme() {
            Scheme::None => ([("", ""); 3], 0),
            Scheme::Standard => ([("webhook-id", id), ("webhook-timestamp", ts), ("webhook-signature", sig)], 3),
            Scheme::Stripe => ([("stripe-signature", sig), ("", ""), ("", "")], 1),
        };
        list.into_iter().take(n)
    }
}

struct OrderName<'a>(&'a str, OrderRef);

impl std::fmt::Display for OrderName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            OrderRef::Created(i) => write!(f, "{}-o{i}", self.0),
            OrderRef::Unknown(i) => write!(f, "{}-u{i}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Stories;
    use EventType::*;

    fn workload() -> Workload {
        Workload {
            format: Format::Flat,
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
            amount_variation_fraction: 0.0,
            id_reuse_fraction: 0.0,
            ignored_fraction: 0.0,
        }
    }

    fn renderer(g: &Generator) -> Renderer {
        let signer = Signer::new(Scheme::Standard, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        Renderer::new(g.ids.clone(), signer)
    }

    type Bytes = (Vec<u8>, String, SigHeaders);

    fn rendered(g: &mut Generator, n: i64) -> Vec<(Planned, Bytes)> {
        let planned: Vec<Planned> = (0..n).map(|i| g.next(1_700_000_000 + i / 100)).collect();
        let mut r = renderer(g);
        planned
            .into_iter()
            .map(|p| {
                r.render(&p);
                (p, (r.body.clone(), r.id.clone(), r.sig.clone()))
            })
            .collect()
    }

    fn stream(seed: u64) -> Vec<Bytes> {
        let mut g = Generator::new(&workload(), seed, "t".into(), 2000);
        rendered(&mut g, 2000).into_iter().map(|(_, b)| b).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        assert_eq!(stream(7), stream(7));
        assert_ne!(stream(7), stream(8));
    }

    #[test]
    fn the_mix_has_every_kind_in_about_the_asked_proportions() {
        let mut g = Generator::new(&workload(), 1, "t".into(), 10_000);
        let all: Vec<Planned> = (0..10_000).map(|_| g.next(1_700_000_000)).collect();
        let count = |e: Expect| all.iter().filter(|p| p.expect == e).count();
        let refused = count(Expect::Refuse);
        assert!((700..1300).contains(&refused), "{refused} refused of 10000 (10% asked)");
        assert!(count(Expect::DeadLetter) > 50);
        let mut ids: Vec<u64> = all.iter().filter_map(|p| p.event().map(|e| e.id)).collect();
        let events = ids.len();
        ids.sort();
        ids.dedup();
        let dups = events - ids.len();
        assert!(dups > 1000, "{dups} exact resends");
        assert!(g.payments.iter().any(|p| matches!(p.order, OrderRef::Unknown(_))));
    }

    #[test]
    fn resends_are_byte_identical() {
        let mut g = Generator::new(&workload(), 3, "t".into(), 5000);
        let mut by_id = std::collections::HashMap::new();
        for (p, bytes) in rendered(&mut g, 5000).into_iter().filter(|(p, _)| p.event().is_some()) {
            if let Some(prev) = by_id.insert(p.event().map(|e| e.id), bytes.clone()) {
                assert_eq!(prev, bytes);
            }
        }
    }

    /// Every rendered valid body is JSON with the fields the system reads, and every
    /// malformed one is refused for the reason it was made for.
    #[test]
    fn rendered_bodies_are_what_they_claim() {
        let mut g = Generator::new(&workload(), 5, "t".into(), 3000);
        for (p, (body, id, sig)) in rendered(&mut g, 3000) {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&body);
            assert!(sig.signature.starts_with("v1,"), "{sig:?}");
            match p.kind {
                Kind::Event { e, order, .. } => {
                    let v = parsed.expect("valid event body");
                    assert_eq!(v["event_id"], id.as_str());
                    assert_eq!(v["payment_id"], g.ids.payment(e.payment));
                    assert_eq!(v["order_id"], g.ids.order(order));
                    assert_eq!(v["event_type"], e.ty.as_str());
                    assert_eq!(v["amount"], e.amount);
                    assert_eq!(v["currency"], e.currency);
                }
                Kind::Invalid { variant, .. } if variant == INVALID_BODIES - 1 => assert!(parsed.is_err()),
                Kind::Invalid { .. } => {
                    let v = parsed.expect("well-formed JSON with a bad field");
                    let bad = v["amount"].as_i64().is_none_or(|a| a < 0) || v["currency"] != "USD" || v["event_type"] == "payment.stolen";
                    assert!(bad, "{v}");
                }
                Kind::Forged { .. } => assert!(parsed.is_ok() && id.contains("forged")),
                Kind::Ignored { .. } => panic!("an ignored type in the flat format"),
            }
        }
    }

    /// A Stripe stream: every story's events, each rank in each of its Stripe forms, ignored
    /// types in about the asked share, and every event's envelope naming the ids the oracle
    /// checks.
    #[test]
    fn a_stripe_stream_has_every_rank_and_names_what_the_oracle_checks() {
        let w = Workload {
            format: Format::Stripe,
            stories: Stories { partially_refunded: 0.2, disputed: 0.2, ..Stories::default() },
            failing_fraction: 0.0,
            ignored_fraction: 0.05,
            ..workload()
        };
        let mut g = Generator::new(&w, 4, "t".into(), 10_000);
        let signer = Signer::new(Scheme::Stripe, "whsec_test").unwrap();
        let mut r = Renderer::new(g.ids.clone(), signer);
        let mut seen = std::collections::HashSet::new();
        let mut ignored = 0;
        for i in 0..10_000 {
            let p = g.next(1_700_000_000 + i / 100);
            r.render(&p);
            let v: Option<serde_json::Value> = serde_json::from_slice(&r.body).ok();
            match p.kind {
                Kind::Event { e, order } => {
                    let v = v.expect("valid envelope");
                    seen.insert((e.ty, e.form));
                    assert_eq!(v["id"], g.ids.event(e.id));
                    let o = &v["data"]["object"];
                    let pi = if o["object"] == "payment_intent" { &o["id"] } else { &o["payment_intent"] };
                    assert_eq!(pi, &g.ids.payment(e.payment));
                    assert_eq!(o["metadata"]["order_id"], g.ids.order(order));
                    assert!(r.headers().any(|(k, v)| k == "stripe-signature" && v.starts_with("t=")));
                }
                Kind::Ignored { .. } => {
                    ignored += 1;
                    assert!(stripe::IGNORED.contains(&v.expect("valid envelope")["type"].as_str().unwrap_or_default()));
                }
                _ => {}
            }
        }
        let all_forms: usize = [Pending, Failed, Success, PartiallyRefunded, Refunded, Disputed, DisputeWon, DisputeLost].map(|t| stripe::forms(t) as usize).iter().sum();
        assert_eq!(seen.len(), all_forms, "{seen:?}");
        assert!((300..700).contains(&ignored), "{ignored} ignored of 10000 (5% asked)");
    }
}
