//! A batch decided in memory, for stores where every round trip costs: read the rows the
//! batch touches in a few queries, decide each event here in delivery order, then write the
//! net result in a few multi-row statements. The outcomes are those of deciding event by
//! event against the database: later events of the batch see the effects of earlier ones.

use std::collections::{BTreeMap, HashMap};

use super::{reused_id, Applied, DeadLetter};
use crate::domain::redelivery::Recorded;
use crate::domain::state::{self, Outcome};
use crate::domain::{OrderStatus, OrderTerms, Payment, PaymentEvent};

/// The rows a batch touches, as they were before it.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The batch's event ids already recorded, with what was recorded under them.
    pub recorded: HashMap<String, Recorded>,
    pub payments: HashMap<String, Payment>,
    pub orders: HashMap<String, OrderTerms>,
}

/// A payment's state after the batch, and how many of the batch's events it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRow {
    pub id: String,
    pub payment: Payment,
    pub recorded: i64,
}

/// What to write; rows are sorted by key, so that concurrent writers touch them in one order.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// One per event, in the batch's order.
    pub outcomes: Vec<Applied>,
    pub payments: Vec<PaymentRow>,
    pub events: Vec<(&'a PaymentEvent, Outcome)>,
    pub orders: Vec<(String, OrderStatus)>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Snapshot {
    pub fn plan(mut self, events: &[PaymentEvent]) -> Plan<'_> {
        let mut plan = Plan { outcomes: Vec::with_capacity(events.len()), ..Plan::default() };
        let mut recorded: BTreeMap<&str, i64> = BTreeMap::new();
        let mut orders_changed: BTreeMap<&str, OrderStatus> = BTreeMap::new();
        for e in events {
            if let Some(recorded) = self.recorded.get(&e.event_id) {
                match reused_id(recorded, e) {
                    None => plan.outcomes.push(Applied::Duplicate),
                    Some(letter) => {
                        plan.outcomes.push(Applied::IdReused(letter.error.clone()));
                        plan.dead_letters.push(letter);
                    }
                }
                continue;
            }
            let effect = match state::decide(e, self.payments.get(&e.payment_id), self.orders.get(&e.order_id)) {
                Ok(effect) => effect,
                // Not recorded, so a repeat is dead-lettered again, as it would be one by one.
                Err(conflict) => {
                    let letter = DeadLetter::for_event(e, conflict.to_string(), 1);
                    plan.outcomes.push(Applied::DeadLettered(letter.error.clone()));
                    plan.dead_letters.push(letter);
                    continue;
                }
            };
            if let (Some(status), Some(order)) = (effect.order_status, self.orders.get_mut(&e.order_id)) {
                order.status = status;
                orders_changed.insert(&e.order_id, status);
            }
            self.recorded.insert(e.event_id.clone(), Recorded::from(e));
            *recorded.entry(&e.payment_id).or_default() += 1;
            self.payments.insert(e.payment_id.clone(), effect.payment);
            plan.events.push((e, effect.outcome));
            plan.outcomes.push(effect.outcome.into());
        }
        plan.payments = recorded
            .into_iter()
            .filter_map(|(id, n)| self.payments.get(id).map(|p| PaymentRow { id: id.to_owned(), payment: p.clone(), recorded: n }))
            .collect();
        plan.orders = orders_changed.into_iter().map(|(id, s)| (id.to_owned(), s)).collect();
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventType, PaymentStatus};

    fn event(id: &str, t: EventType, payment: &str, order: &str, amount: i64) -> PaymentEvent {
        PaymentEvent {
            event_id: id.into(),
            event_type: t,
            payment_id: payment.into(),
            order_id: order.into(),
            amount,
            currency: "USD".into(),
            created_at: None,
            received_at_us: 0,
            request_id: None,
            traceparent: None,
        }
    }

    fn order(total: i64) -> OrderTerms {
        OrderTerms { total_amount: total, currency: "USD".into(), status: OrderStatus::Pending }
    }

    #[test]
    fn later_events_see_earlier_ones_and_rows_hold_the_net_result() {
        let events = [
            event("e1", EventType::Pending, "p1", "o1", 500),
            event("e2", EventType::Success, "p1", "o1", 500),
            event("e3", EventType::Pending, "p1", "o1", 500),
        ];
        let snap = Snapshot { orders: HashMap::from([("o1".into(), order(500))]), ..Snapshot::default() };
        let plan = snap.plan(&events);
        assert_eq!(plan.outcomes, [Applied::Applied, Applied::Applied, Applied::Stale]);
        assert_eq!(plan.payments.len(), 1);
        assert_eq!((plan.payments[0].payment.status, plan.payments[0].recorded), (PaymentStatus::Success, 3));
        assert_eq!(plan.orders, [("o1".to_owned(), OrderStatus::Paid)]);
        assert_eq!(plan.events.len(), 3);
    }

    #[test]
    fn a_repeat_within_the_batch_or_of_an_earlier_batch_is_a_duplicate() {
        let events = [event("e1", EventType::Success, "p1", "o1", 1), event("e1", EventType::Success, "p1", "o1", 1), event("old", EventType::Failed, "p1", "o1", 1)];
        let old = Recorded::from(&events[2]);
        let snap = Snapshot { recorded: HashMap::from([("old".to_owned(), old)]), ..Snapshot::default() };
        let plan = snap.plan(&events);
        assert_eq!(plan.outcomes, [Applied::Applied, Applied::Duplicate, Applied::Duplicate]);
        assert_eq!(plan.payments[0].recorded, 1);
        assert!(plan.orders.is_empty(), "an unknown order is not written");
    }

    #[test]
    fn a_conflict_is_dead_lettered_and_the_rest_of_the_batch_goes_on() {
        let existing = Payment { order_id: "o1".into(), status: PaymentStatus::Pending, amount: 1, currency: "USD".into(), conflicted: false, created: None };
        let events = [event("e1", EventType::Success, "p1", "other", 1), event("e1", EventType::Success, "p1", "other", 1), event("e2", EventType::Success, "p1", "o1", 1)];
        let snap = Snapshot { payments: HashMap::from([("p1".into(), existing)]), ..Snapshot::default() };
        let plan = snap.plan(&events);
        assert!(matches!(plan.outcomes[0], Applied::DeadLettered(_)));
        assert!(matches!(plan.outcomes[1], Applied::DeadLettered(_)), "a dead letter is not recorded, so its repeat is no duplicate");
        assert_eq!(plan.outcomes[2], Applied::Applied);
        assert_eq!(plan.dead_letters.len(), 2);
        assert_eq!(plan.dead_letters[0].event_id, "e1");
        assert_eq!((plan.payments[0].payment.status, plan.payments[0].recorded), (PaymentStatus::Success, 1));
    }

    #[test]
    fn an_id_reused_within_the_batch_or_from_an_earlier_one_is_dead_lettered() {
        let old = event("old", EventType::Pending, "p1", "o1", 1);
        let events = [
            event("e1", EventType::Success, "p1", "o1", 1),
            event("e1", EventType::Success, "p1", "o1", 2),
            event("old", EventType::Refunded, "p1", "o1", 1),
        ];
        let snap = Snapshot { recorded: HashMap::from([("old".to_owned(), Recorded::from(&old))]), ..Snapshot::default() };
        let plan = snap.plan(&events);
        assert_eq!(plan.outcomes[0], Applied::Applied);
        assert!(matches!(&plan.outcomes[1], Applied::IdReused(e) if e.contains("amount")), "{:?}", plan.outcomes[1]);
        assert!(matches!(&plan.outcomes[2], Applied::IdReused(e) if e.contains("event_type")), "{:?}", plan.outcomes[2]);
        assert_eq!(plan.dead_letters.len(), 2);
        assert_eq!((plan.payments[0].payment.amount, plan.payments[0].recorded), (1, 1), "neither reuse applied");
    }
}
