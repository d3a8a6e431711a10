//! What an event does to a payment and its order. Pure decisions; the stores only persist them.
//!
//! Both state machines only move forward by rank, which makes the final state independent
//! of delivery order: a late `payment.pending` after `payment.success` is recorded but
//! changes nothing, and a refund that overtakes its success still ends `refunded`.

use serde::{Deserialize, Serialize};

use super::event::{EventType, PaymentEvent};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Failed,
    Success,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Success => "success",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Failed, Self::Success, Self::Refunded].into_iter().find(|v| v.as_str() == s)
    }

    fn from_event(t: EventType) -> Self {
        match t {
            EventType::Pending => Self::Pending,
            EventType::Failed => Self::Failed,
            EventType::Success => Self::Success,
            EventType::Refunded => Self::Refunded,
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
    Refunded,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::PaymentMismatch => "payment_mismatch",
            Self::Paid => "paid",
            Self::Refunded => "refunded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::PaymentMismatch, Self::Paid, Self::Refunded].into_iter().find(|v| v.as_str() == s)
    }
}

/// A payment's persisted state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub order_id: String,
    pub status: PaymentStatus,
    pub amount: i64,
    pub currency: String,
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
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
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
        Some(current) if incoming <= current.status && !crate::fault::skips_stale_rule() => (current.clone(), Outcome::Stale),
        _ => (
            Payment {
                order_id: event.order_id.clone(),
                status: incoming,
                amount: event.amount,
                currency: event.currency.clone(),
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

/// What one payment, in its current state, says about its order's status.
pub fn contribution(order: &OrderTerms, payment: &Payment) -> OrderStatus {
    match payment.status {
        PaymentStatus::Pending | PaymentStatus::Failed => OrderStatus::Pending,
        PaymentStatus::Refunded => OrderStatus::Refunded,
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
        use EventType::*;
        let all = [Pending, Failed, Success, Refunded];
        // Every permutation of every subset: the final state is the max-rank event's.
        for mask in 1u32..16 {
            let subset: Vec<EventType> = all.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, t)| *t).collect();
            let expected = run(&subset.iter().map(|t| event(*t, 1000)).collect::<Vec<_>>(), Some(order()));
            for perm in permutations(&subset) {
                let got = run(&perm.iter().map(|t| event(*t, 1000)).collect::<Vec<_>>(), Some(order()));
                assert_eq!(got, expected, "order {perm:?}");
            }
        }
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
        let paid = Payment { order_id: "order_1".into(), status: PaymentStatus::Success, amount: 1000, currency: "USD".into() };
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
