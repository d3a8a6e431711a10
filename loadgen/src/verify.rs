//! The end-state check: loadgen's own model of what every payment and order must look like,
//! from what the system accepted, compared with what the system stored.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::Value;
use crate::oracle::{self, Charge, EventType, OrderStatus, PaymentState};

use crate::workload::{EventRef, Ids, OrderRef, PaymentSpec};

/// What the system acknowledged with a 200, by payment.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Accepted event ids and types, per payment index.
    pub applied: HashMap<u32, HashMap<u64, EventType>>,
    /// Accepted events that must end as dead letters.
    pub dead: HashSet<u64>,
}

impl Ledger {
    pub fn accept(&mut self, e: EventRef, dead_letter: bool) {
        if dead_letter {
            self.dead.insert(e.id);
        } else {
            self.applied.entry(e.payment).or_default().insert(e.id, e.ty);
        }
    }

    pub fn merge(&mut self, other: Ledger) {
        for (p, events) in other.applied {
            self.applied.entry(p).or_default().extend(events);
        }
        self.dead.extend(other.dead);
    }
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Verdict {
    pub payments_checked: u64,
    pub orders_checked: u64,
    /// Accepted events missing from the store (or from dead letters, for failing ones).
    pub lost: u64,
    /// Events recorded more than once, or effects counted more than once.
    pub double_applied: u64,
    pub wrong_payment_state: u64,
    pub wrong_order_state: u64,
    /// Events recorded that were never accepted (for example a refused request that got in),
    /// or dead-letter events that were applied.
    pub unexpected_applied: u64,
    pub dead_letters_found: u64,
    /// A few examples, for a person to start from.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn wrong_state(&self) -> u64 {
        self.wrong_payment_state + self.wrong_order_state
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < 10 {
            self.examples.push(s);
        }
    }
}

/// Orders and payments in this workload are all in USD.
const CURRENCY: &str = "USD";

/// The final state the oracle predicts for a payment from its accepted events.
pub fn expected_payment(spec: &PaymentSpec, events: &HashMap<u64, EventType>) -> Option<PaymentState> {
    oracle::payment(events.values().map(|ty| Charge { ty: *ty, amount: spec.amount, currency: CURRENCY }))
}

/// The final order statuses the oracle predicts, for created orders.
pub fn expected_orders(orders: &[i64], specs: &[PaymentSpec], ledger: &Ledger) -> Vec<OrderStatus> {
    let mut by_order: HashMap<u32, Vec<PaymentState>> = HashMap::new();
    for (p, events) in &ledger.applied {
        let spec = &specs[*p as usize];
        if let (OrderRef::Created(o), Some(state)) = (spec.order, expected_payment(spec, events)) {
            by_order.entry(o).or_default().push(state);
        }
    }
    orders.iter().enumerate().map(|(i, total)| oracle::order(*total, CURRENCY, by_order.get(&(i as u32)).into_iter().flatten())).collect()
}

/// Compares one stored payment (`GET /api/payments/{id}` shape) with the ledger.
pub fn check_payment(v: &mut Verdict, ids: &Ids, spec: &PaymentSpec, accepted: &HashMap<u64, EventType>, stored: Option<&Value>) {
    v.payments_checked += 1;
    let Some(stored) = stored else {
        v.lost += accepted.len() as u64;
        v.note(format!("payment with {} accepted events is missing", accepted.len()));
        return;
    };
    let recorded: Vec<&str> = stored["events"].as_array().into_iter().flatten().filter_map(|e| e["event_id"].as_str()).collect();
    let distinct: BTreeSet<&str> = recorded.iter().copied().collect();
    let wanted: HashSet<String> = accepted.keys().map(|e| ids.event(*e)).collect();
    let missing = wanted.iter().filter(|e| !distinct.contains(e.as_str())).count() as u64;
    let extra = distinct.iter().filter(|e| !wanted.contains(**e)).count() as u64;
    let effects = stored["applied_events"].as_u64().unwrap_or(0);
    let doubled = (recorded.len() - distinct.len()) as u64 + effects.saturating_sub(distinct.len() as u64);
    v.lost += missing;
    v.unexpected_applied += extra;
    v.double_applied += doubled;
    if missing + extra + doubled > 0 {
        v.note(format!("{}: missing {missing}, unexpected {extra}, doubled {doubled}", stored["id"]));
    }
    let expected = expected_payment(spec, accepted).map(|p| p.rank.status());
    if stored["status"].as_str() != expected {
        v.wrong_payment_state += 1;
        v.note(format!("{}: status {} expected {expected:?}", stored["id"], stored["status"]));
    }
}

pub fn check_order(v: &mut Verdict, expected: OrderStatus, stored: Option<&Value>) {
    v.orders_checked += 1;
    match stored {
        Some(o) if o["status"].as_str() == Some(expected.as_str()) => {}
        Some(o) => {
            v.wrong_order_state += 1;
            v.note(format!("{}: status {} expected {}", o["id"], o["status"], expected.as_str()));
        }
        None => {
            v.wrong_order_state += 1;
            v.note("a created order is missing".into());
        }
    }
}

/// Every accepted failing event must be a dead letter, and never applied.
pub fn check_dead_letters(v: &mut Verdict, ids: &Ids, ledger: &Ledger, listed: &[Value]) {
    let found: HashSet<&str> = listed.iter().filter_map(|d| d["event_id"].as_str()).collect();
    let mine = ledger.dead.iter().filter(|e| found.contains(ids.event(**e).as_str())).count() as u64;
    v.dead_letters_found = mine;
    let missing = ledger.dead.len() as u64 - mine;
    if missing > 0 {
        v.lost += missing;
        v.note(format!("{missing} failing events are not in dead letters"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ids() -> Ids {
        Ids { prefix: "t".into() }
    }

    fn spec() -> PaymentSpec {
        PaymentSpec { order: OrderRef::Created(0), amount: 100 }
    }

    fn accepted(events: &[(u64, EventType)]) -> HashMap<u64, EventType> {
        events.iter().copied().collect()
    }

    #[test]
    fn the_model_takes_the_highest_rank_whatever_the_order() {
        use EventType::*;
        let spec = PaymentSpec { order: OrderRef::Created(0), amount: 100 };
        assert_eq!(expected_payment(&spec, &accepted(&[(1, Refunded), (2, Pending), (3, Success)])).map(|p| p.rank), Some(Refunded));
        assert_eq!(expected_payment(&spec, &accepted(&[(1, Failed), (2, Pending)])).map(|p| p.rank), Some(Failed));
        let specs = vec![
            PaymentSpec { order: OrderRef::Created(0), amount: 100 },
            PaymentSpec { order: OrderRef::Created(1), amount: 99 },
            PaymentSpec { order: OrderRef::Unknown(1), amount: 5 },
        ];
        let mut ledger = Ledger::default();
        ledger.accept(EventRef { payment: 0, id: 1, ty: Success }, false);
        ledger.accept(EventRef { payment: 1, id: 2, ty: Success }, false);
        ledger.accept(EventRef { payment: 2, id: 3, ty: Success }, false);
        assert_eq!(expected_orders(&[100, 100, 7], &specs, &ledger), [OrderStatus::Paid, OrderStatus::PaymentMismatch, OrderStatus::Pending]);
    }

    #[test]
    fn lost_doubled_unexpected_and_wrong_states_are_counted() {
        use EventType::*;
        let acc = accepted(&[(1, Pending), (2, Success)]);
        let mut v = Verdict::default();
        check_payment(&mut v, &ids(), &spec(), &acc, Some(&json!({"id": "t-p0", "status": "success", "applied_events": 2,
            "events": [{"event_id": "t-e1"}, {"event_id": "t-e2"}]})));
        assert_eq!((v.lost, v.double_applied, v.unexpected_applied, v.wrong_payment_state), (0, 0, 0, 0));

        check_payment(&mut v, &ids(), &spec(), &acc, Some(&json!({"id": "t-p0", "status": "pending", "applied_events": 3,
            "events": [{"event_id": "t-e1"}, {"event_id": "t-e9"}]})));
        assert_eq!((v.lost, v.double_applied, v.unexpected_applied, v.wrong_payment_state), (1, 1, 1, 1));

        check_payment(&mut v, &ids(), &spec(), &acc, None);
        assert_eq!(v.lost, 3);
        check_order(&mut v, OrderStatus::Paid, Some(&json!({"id": "t-o0", "status": "pending"})));
        assert_eq!(v.wrong_order_state, 1);
    }

    #[test]
    fn failing_events_must_be_dead_letters() {
        let mut ledger = Ledger::default();
        ledger.accept(EventRef { payment: 0, id: 7, ty: EventType::Success }, true);
        ledger.accept(EventRef { payment: 0, id: 8, ty: EventType::Success }, true);
        let mut v = Verdict::default();
        check_dead_letters(&mut v, &ids(), &ledger, &[json!({"event_id": "t-e7"})]);
        assert_eq!((v.dead_letters_found, v.lost), (1, 1));
    }
}
