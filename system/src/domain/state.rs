//! What an event does to a payment and its order. Pure decisions; the stores only persist them.
//!
//! Both state machines only move forward by rank, which makes the final state independent
//! of delivery order: a late `payment.pending` after `payment.success` is recorded but
//! changes nothing, and a refund that overtakes its success still ends `refunded`. Two events
//! of one rank that disagree on amount or currency settle on the smaller `(currency, amount)`
//! whichever came first, and mark the payment conflicted, so that order does not matter either.
//!
//! Before any money moved (pending, failed), the provider's `created` time comes first and
//! rank second: a customer who retries after a failure makes the payment pending again, and
//! the later attempt is the truth. Events without `created` sort before those with one, so the
//! flat format, which rarely sends it, keeps ranks alone. Once a payment succeeded, no
//! earlier-stage event moves it back, whenever it was created.
//!
//! After the money moved, ranks follow what can still happen to it: a partial refund, then a
//! full one, then a dispute (which can follow either), then the dispute's close. A charge has
//! at most one dispute, so won and lost never meet on one payment; their relative rank only
//! keeps the order total.

use serde::{Deserialize, Serialize};

use super::event::{EventType, PaymentEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Failed,
    Success,
    PartiallyRefunded,
    Refunded,
    Disputed,
    DisputeWon,
    DisputeLost,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Success => "success",
            Self::Refunded => "refunded",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Disputed => "disputed",
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        EventType::ALL.map(Self::from_event).into_iter().find(|v| v.as_str() == s)
    }

    fn from_event(t: EventType) -> Self {
        match t {
            EventType::Pending => Self::Pending,
            EventType::Failed => Self::Failed,
            EventType::Success => Self::Success,
            EventType::Refunded => Self::Refunded,
            EventType::PartiallyRefunded => Self::PartiallyRefunded,
            EventType::Disputed => Self::Disputed,
            EventType::DisputeWon => Self::DisputeWon,
            EventType::DisputeLost => Self::DisputeLost,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Created, no successful payment yet.
    Pending,
    /// A payment succeeded but its amount or currency differs from the order: needs a person.
    PaymentMismatch,
    Paid,
    /// Two successes of one payment disagree on amount or currency: needs a person, even if
    /// one of them matches; only a refund moves the order on.
    PaymentConflict,
    /// Paid, then part of it refunded: the order stands, for the rest.
    PartiallyRefunded,
    Refunded,
    /// Its payment is disputed: needs a person (evidence to submit) until the dispute closes.
    Disputed,
    DisputeWon,
    DisputeLost,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PaymentMismatch => "payment_mismatch",
            Self::Paid => "paid",
            Self::PaymentConflict => "payment_conflict",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Disputed => "disputed",
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
        }
    }

    const ALL: [Self; 9] = [
        Self::Pending,
        Self::PaymentMismatch,
        Self::Paid,
        Self::PaymentConflict,
        Self::PartiallyRefunded,
        Self::Refunded,
        Self::Disputed,
        Self::DisputeWon,
        Self::DisputeLost,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A payment's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
    /// Events of its current rank disagree on amount or currency; cleared by a higher rank.
    pub conflicted: bool,
    /// The provider's `created` time of the event that set the current state, while no money
    /// moved (see [`precedence`]); `None` after, where ranks alone decide.
    pub created: Option<i64>,
}

/// What an order expects to be paid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderTerms {
    pub total_amount: i64,
    pub currency: String,
    pub status: OrderStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The event moved the payment's state.
    Applied,
    /// Recorded, but older than the state it found, so it changed nothing.
    Stale,
    /// Recorded; same rank as the state it found but another amount or currency: the payment
    /// keeps the smaller of the two and is marked conflicted.
    Conflict,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
            Self::Conflict => "conflict",
        }
    }
}

/// The decision for one new event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    pub payment: Payment,
    pub outcome: Outcome,
    /// The order's new status when it changes; `None` when the order is unknown or stays as it is.
    pub order_status: Option<OrderStatus>,
}

/// An event that can never apply, however often it is retried: it goes to dead letters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("payment {payment_id} belongs to order {existing}, event names order {claimed}")]
    OrderMismatch { payment_id: String, existing: String, claimed: String },
    /// Operators and tooling match on the `conflict: event id reused` prefix.
    #[error("conflict: event id reused: {event_id} was recorded with {field} {was:?}, redelivered with {now:?}")]
    IdReused { event_id: String, field: &'static str, was: String, now: String },
}

/// Decides what `event` does, given the payment and order as they are now.
/// The caller has already made sure the event was not applied before.
pub fn decide(event: &PaymentEvent, payment: Option<&Payment>, order: Option<&OrderTerms>) -> Result<Effect, Conflict> {
    let incoming = PaymentStatus::from_event(event.event_type);
    let (payment, outcome) = match payment {
        Some(current) if current.order_id != event.order_id => {
            return Err(Conflict::OrderMismatch {
                payment_id: event.payment_id.clone(),
                existing: current.order_id.clone(),
                claimed: event.order_id.clone(),
            })
        }
        Some(current) if precedence(current, incoming, event.created_at).is_lt() && !crate::fault::skips_stale_rule() => {
            (current.clone(), Outcome::Stale)
        }
        Some(current) if precedence(current, incoming, event.created_at).is_eq() => same_rank(current, event),
        _ => (
            Payment {
                order_id: event.order_id.clone(),
                status: incoming,
                amount: event.amount,
                currency: event.currency.clone(),
                conflicted: false,
                created: event.created_at.filter(|_| is_early(incoming)),
            },
            Outcome::Applied,
        ),
    };
    let order_status = order.and_then(|o| {
        let next = o.status.max(contribution(o, &payment));
        (next != o.status).then_some(next)
    });
    Ok(Effect { payment, outcome, order_status })
}

/// How an incoming state compares with the payment's: by `(created, rank)` while both are
/// before any money moved, by rank otherwise. A total order over events, so the highest one
/// wins whichever came first.
fn precedence(current: &Payment, incoming: PaymentStatus, created: Option<i64>) -> std::cmp::Ordering {
    if is_early(current.status) && is_early(incoming) {
        (created, incoming).cmp(&(current.created, current.status))
    } else {
        incoming.cmp(&current.status)
    }
}

/// Before any money moved.
fn is_early(s: PaymentStatus) -> bool {
    s <= PaymentStatus::Failed
}

/// A second event of the payment's current rank. The smaller pair wins, never the larger
/// credit, so the result is the same whichever of the two arrived first.
fn same_rank(current: &Payment, event: &PaymentEvent) -> (Payment, Outcome) {
    let held = (current.currency.as_str(), current.amount);
    let claimed = (event.currency.as_str(), event.amount);
    if held == claimed {
        return (current.clone(), Outcome::Stale);
    }
    let (currency, amount) = if crate::fault::larger_amount_wins() { held.max(claimed) } else { held.min(claimed) };
    let payment = Payment { amount, currency: currency.to_owned(), conflicted: true, ..current.clone() };
    (payment, Outcome::Conflict)
}

/// What one payment, in its current state, says about its order's status.
pub fn contribution(order: &OrderTerms, payment: &Payment) -> OrderStatus {
    match payment.status {
        PaymentStatus::Pending | PaymentStatus::Failed => OrderStatus::Pending,
        PaymentStatus::PartiallyRefunded => OrderStatus::PartiallyRefunded,
        PaymentStatus::Refunded => OrderStatus::Refunded,
        PaymentStatus::Disputed => OrderStatus::Disputed,
        PaymentStatus::DisputeWon => OrderStatus::DisputeWon,
        PaymentStatus::DisputeLost => OrderStatus::DisputeLost,
        PaymentStatus::Success if payment.conflicted => OrderStatus::PaymentConflict,
        PaymentStatus::Success if payment.amount == order.total_amount && payment.currency == order.currency => {
            OrderStatus::Paid
        }
        PaymentStatus::Success => OrderStatus::PaymentMismatch,
    }
}

/// The status of an order created after some of its payments arrived.
pub fn status_from_payments<'a>(order: &OrderTerms, payments: impl IntoIterator<Item = &'a Payment>) -> OrderStatus {
    payments.into_iter().map(|p| contribution(order, p)).fold(order.status, OrderStatus::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(t: EventType, amount: i64) -> PaymentEvent {
        PaymentEvent {
            event_id: format!("evt_{}", t.as_str()),
            event_type: t,
            payment_id: "pay_1".into(),
            order_id: "order_1".into(),
            amount,
            currency: "USD".into(),
            created_at: None,
            received_at_us: 0,
            request_id: None,
            traceparent: None,
        }
    }

    fn order() -> OrderTerms {
        OrderTerms { total_amount: 1000, currency: "USD".into(), status: OrderStatus::Pending }
    }

    /// Applies events in sequence, the way a store would, and returns the final states.
    fn run(events: &[PaymentEvent], mut o: Option<OrderTerms>) -> (Payment, Option<OrderStatus>) {
        let mut p: Option<Payment> = None;
        for e in events {
            let eff = decide(e, p.as_ref(), o.as_ref()).expect("no conflict");
            if let (Some(o), Some(s)) = (o.as_mut(), eff.order_status) {
                o.status = s;
            }
            p = Some(eff.payment);
        }
        (p.expect("at least one event"), o.map(|o| o.status))
    }

    #[test]
    fn success_pays_a_matching_order() {
        let (p, o) = run(&[event(EventType::Success, 1000)], Some(order()));
        assert_eq!(p.status, PaymentStatus::Success);
        assert_eq!(o, Some(OrderStatus::Paid));
    }

    #[test]
    fn amount_or_currency_mismatch_never_pays() {
        let (_, o) = run(&[event(EventType::Success, 999)], Some(order()));
        assert_eq!(o, Some(OrderStatus::PaymentMismatch));
        let mut e = event(EventType::Success, 1000);
        e.currency = "EUR".into();
        assert_eq!(run(&[e], Some(order())).1, Some(OrderStatus::PaymentMismatch));
    }

    #[test]
    fn late_pending_is_stale_and_changes_nothing() {
        let p = run(&[event(EventType::Success, 1000)], None).0;
        let eff = decide(&event(EventType::Pending, 1000), Some(&p), Some(&OrderTerms { status: OrderStatus::Paid, ..order() })).unwrap();
        assert_eq!(eff.outcome, Outcome::Stale);
        assert_eq!(eff.payment.status, PaymentStatus::Success);
        assert_eq!(eff.order_status, None);
    }

    #[test]
    fn failed_then_success_is_a_retried_charge() {
        let (p, o) = run(&[event(EventType::Failed, 1000), event(EventType::Success, 1000)], Some(order()));
        assert_eq!(p.status, PaymentStatus::Success);
        assert_eq!(o, Some(OrderStatus::Paid));
    }

    #[test]
    fn final_state_does_not_depend_on_arrival_order() {
        let all = EventType::ALL;
        // Every permutation of every subset: the final state is the max-rank event's.
        for mask in 1u32..(1 << all.len()) {
            let subset: Vec<EventType> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| *t).collect();
            let expected = run(&subset.iter().map(|t| event(*t, 1000)).collect::<Vec<_>>(), Some(order()));
            for perm in permutations(&subset) {
                let got = run(&perm.iter().map(|t| event(*t, 1000)).collect::<Vec<_>>(), Some(order()));
                assert_eq!(got, expected, "order {perm:?}");
            }
        }
    }

    /// Any events of one payment, with amounts and currencies that disagree within a rank,
    /// in two arrival orders: the same payment and order, whether the order existed first
    /// or was created after its payments.
    #[test]
    fn same_rank_disagreements_do_not_depend_on_arrival_order() {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};

        let created = prop::sample::select(vec![None, Some(1i64), Some(2)]);
        let one = (prop::sample::select(EventType::ALL.to_vec()), prop::sample::select(vec![900i64, 1000, 1100]), prop::sample::select(vec!["EUR", "USD"]), created);
        let events = proptest::collection::vec(one, 1..8).prop_flat_map(|v| {
            let n = v.len();
            (Just(v), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        });
        let mut runner = TestRunner::new(Config { cases: 2000, failure_persistence: None, ..Config::default() });
        runner
            .run(&events, |(raw, shuffle)| {
                let events: Vec<PaymentEvent> = raw
                    .iter()
                    .map(|&(t, amount, currency, created_at)| PaymentEvent { currency: currency.into(), created_at, ..event(t, amount) })
                    .collect();
                let shuffled: Vec<PaymentEvent> = shuffle.iter().map(|&i| events[i].clone()).collect();
                let (first, order_first) = run(&events, Some(order()));
                let (second, order_second) = run(&shuffled, Some(order()));
                prop_assert_eq!(&first, &second);
                prop_assert_eq!(order_first, order_second);
                prop_assert_eq!(order_first, Some(status_from_payments(&order(), [&first])), "an order created late agrees");
                Ok(())
            })
            .expect("arrival order does not matter");
    }

    #[test]
    fn two_successes_that_disagree_keep_the_smaller_pair_and_need_a_person() {
        let (p, o) = run(&[event(EventType::Success, 1000), event(EventType::Success, 900)], Some(order()));
        assert_eq!((p.amount, p.conflicted), (900, true));
        assert_eq!(o, Some(OrderStatus::PaymentConflict), "above paid, although the first one matched");
        let mut eur = event(EventType::Success, 5000);
        eur.currency = "EUR".into();
        let (p, _) = run(&[event(EventType::Success, 1000), eur], Some(order()));
        assert_eq!((p.currency.as_str(), p.amount), ("EUR", 5000), "currency first, then amount");
        let again = decide(&event(EventType::Success, 1000), Some(&p), None).unwrap();
        assert_eq!(again.outcome, Outcome::Conflict);
        let same = decide(&eur_event(5000), Some(&p), None).unwrap();
        assert_eq!((same.outcome, same.payment.conflicted), (Outcome::Stale, true), "agreeing with the kept pair changes nothing");
    }

    fn eur_event(amount: i64) -> PaymentEvent {
        PaymentEvent { currency: "EUR".into(), ..event(EventType::Success, amount) }
    }

    #[test]
    fn a_refund_clears_the_conflict_and_wins() {
        let (p, o) = run(&[event(EventType::Success, 1000), event(EventType::Success, 900), event(EventType::Refunded, 1000)], Some(order()));
        assert_eq!((p.status, p.amount, p.conflicted), (PaymentStatus::Refunded, 1000, false));
        assert_eq!(o, Some(OrderStatus::Refunded));
    }

    #[test]
    fn refunds_and_disputes_rank_above_the_payment_they_follow() {
        use EventType::*;
        let cases = [
            (vec![Success, PartiallyRefunded], PaymentStatus::PartiallyRefunded, OrderStatus::PartiallyRefunded),
            (vec![PartiallyRefunded, Refunded, Success], PaymentStatus::Refunded, OrderStatus::Refunded),
            (vec![Disputed, Success], PaymentStatus::Disputed, OrderStatus::Disputed),
            (vec![DisputeWon, Disputed, Success], PaymentStatus::DisputeWon, OrderStatus::DisputeWon),
            (vec![Success, Refunded, DisputeLost, Disputed], PaymentStatus::DisputeLost, OrderStatus::DisputeLost),
        ];
        for (types, payment, order_status) in cases {
            let (p, o) = run(&types.iter().map(|t| event(*t, 1000)).collect::<Vec<_>>(), Some(order()));
            assert_eq!((p.status, o), (payment, Some(order_status)), "{types:?}");
        }
    }

    #[test]
    fn before_money_moves_the_later_created_attempt_wins() {
        let at = |t, created| PaymentEvent { created_at: Some(created), ..event(t, 1000) };
        let (p, _) = run(&[at(EventType::Pending, 1), at(EventType::Failed, 2), at(EventType::Pending, 3)], Some(order()));
        assert_eq!(p.status, PaymentStatus::Pending, "retried after the failure");
        let (p, _) = run(&[at(EventType::Pending, 3), at(EventType::Failed, 2)], Some(order()));
        assert_eq!((p.status, p.created), (PaymentStatus::Pending, Some(3)), "an older failure arriving late is stale");
        let (p, _) = run(&[at(EventType::Success, 1), at(EventType::Pending, 9)], Some(order()));
        assert_eq!(p.status, PaymentStatus::Success, "nothing moves a success back");
        let (p, _) = run(&[event(EventType::Failed, 1000), event(EventType::Pending, 1000)], Some(order()));
        assert_eq!(p.status, PaymentStatus::Failed, "without created, ranks alone");
    }

    #[test]
    fn every_status_round_trips_through_its_name() {
        for t in EventType::ALL {
            let s = PaymentStatus::from_event(t);
            assert_eq!(PaymentStatus::parse(s.as_str()), Some(s));
        }
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn a_conflict_below_success_still_counts_as_pending() {
        let (p, o) = run(&[event(EventType::Pending, 1000), event(EventType::Pending, 900)], Some(order()));
        assert!(p.conflicted);
        assert_eq!(o, Some(OrderStatus::Pending));
    }

    #[test]
    fn a_payment_cannot_move_to_another_order() {
        let p = run(&[event(EventType::Pending, 1000)], None).0;
        let mut e = event(EventType::Success, 1000);
        e.order_id = "order_2".into();
        assert!(matches!(decide(&e, Some(&p), None), Err(Conflict::OrderMismatch { .. })));
    }

    #[test]
    fn order_created_late_picks_up_its_payments() {
        let paid = Payment { order_id: "order_1".into(), status: PaymentStatus::Success, amount: 1000, currency: "USD".into(), conflicted: false, created: None };
        let failed = Payment { status: PaymentStatus::Failed, ..paid.clone() };
        assert_eq!(status_from_payments(&order(), [&failed, &paid]), OrderStatus::Paid);
        assert_eq!(status_from_payments(&order(), [&failed]), OrderStatus::Pending);
        assert_eq!(status_from_payments(&order(), []), OrderStatus::Pending);
    }

    fn permutations(items: &[EventType]) -> Vec<Vec<EventType>> {
        if items.len() <= 1 {
            return vec![items.to_vec()];
        }
        let mut out = Vec::new();
        for i in 0..items.len() {
            let mut rest = items.to_vec();
            let head = rest.remove(i);
            for mut tail in permutations(&rest) {
                tail.insert(0, head);
                out.push(tail);
            }
        }
        out
    }
}
