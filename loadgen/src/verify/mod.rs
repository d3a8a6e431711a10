//! The end-state check: loadgen's own model of what every payment and order must look like,
//! from what the system accepted, compared with what the system stored.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::workload::generator::{EventRef, Ids, OrderRef, PaymentSpec, Reuse, CURRENCY};
use crate::workload::oracle::{self, Charge, OrderStatus, PaymentState};

/// When a request went and when its 200 came back, from the start of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub sent: Duration,
    pub answered: Duration,
}

/// Both payloads sent under one reused event id, as far as they were accepted.
#[derive(Debug, Default, Clone)]
pub struct Reused {
    pub payment: u32,
    /// The first payload and its earliest 200.
    pub original: Option<(Charge<'static>, Duration)>,
    /// The second payload and when it was sent.
    pub second: Option<(Charge<'static>, Duration)>,
}

/// What the system acknowledged with a 200, by payment.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Accepted events, per payment index and event id; a reused id holds the payload the
    /// system must keep (settled by `settle_reuses`). A B-tree, filled while the load runs:
    /// a large hash map grows by doubling in one go on the sending thread, and the requests
    /// due meanwhile would wait for it.
    pub applied: BTreeMap<u32, HashMap<u64, Charge<'static>>>,
    /// Accepted events that must end as dead letters.
    pub dead: HashSet<u64>,
    pub reused: HashMap<u64, Reused>,
    /// Requests of types the system does not handle that it answered 200.
    pub ignored: u64,
}

impl Ledger {
    pub fn accept(&mut self, e: EventRef, dead_letter: bool, w: Window) {
        if dead_letter {
            self.dead.insert(e.id);
            return;
        }
        let events = self.applied.entry(e.payment).or_default();
        match e.reuse {
            Reuse::No => {
                events.insert(e.id, e.charge());
            }
            Reuse::Original => {
                let r = self.reused.entry(e.id).or_insert_with(|| Reused { payment: e.payment, ..Default::default() });
                let answered = r.original.map_or(w.answered, |(_, a)| a.min(w.answered));
                r.original = Some((e.charge(), answered));
                // Until the dead letters say otherwise, the original keeps the id.
                events.insert(e.id, e.charge());
            }
            Reuse::Second => {
                let r = self.reused.entry(e.id).or_insert_with(|| Reused { payment: e.payment, ..Default::default() });
                r.second = Some((e.charge(), w.sent));
                events.entry(e.id).or_insert(e.charge());
            }
        }
    }

    pub fn merge(&mut self, other: Ledger) {
        for (p, events) in other.applied {
            let mine = self.applied.entry(p).or_default();
            for (id, c) in events {
                mine.entry(id).or_insert(c);
            }
        }
        self.dead.extend(other.dead);
        self.ignored += other.ignored;
        for (id, r) in other.reused {
            let mine = self.reused.entry(id).or_insert_with(|| Reused { payment: r.payment, ..Default::default() });
            if let Some((c, a)) = r.original {
                mine.original = Some((c, mine.original.map_or(a, |(_, b)| a.min(b))));
            }
            mine.second = mine.second.or(r.second);
        }
        // An original accepted by another thread takes the id back from its second payload.
        for (id, r) in &self.reused {
            if let (Some((orig, _)), Some(_)) = (r.original, r.second) {
                self.applied.entry(r.payment).or_default().insert(*id, orig);
            }
        }
    }

    /// Decides, for each id whose two payloads were both accepted, which one the system had
    /// to keep, from its "conflict: event id reused" dead letters: the one recorded first
    /// wins. When the second payload was sent after the original's 200, the original was
    /// recorded first, so the system must have kept it; only sends that overlapped leave the
    /// choice to the system, and then the dead letter says which it made.
    pub fn settle_reuses(&mut self, v: &mut Verdict, ids: &Ids, conflicts: &[Value]) {
        let by_id: HashMap<&str, Vec<&Value>> = conflicts.iter().fold(HashMap::new(), |mut m, d| {
            if let Some(id) = d["event_id"].as_str() {
                m.entry(id).or_default().push(d);
            }
            m
        });
        for (id, r) in &self.reused {
            let (Some((orig, answered)), Some((second, sent))) = (r.original, r.second) else { continue };
            v.reuses_checked += 1;
            let name = ids.event(*id);
            let letters = by_id.get(name.as_str()).map(Vec::as_slice).unwrap_or_default();
            let [letter] = letters else {
                v.lost += 1;
                v.note(format!("{name}: reused with another payload, {} conflict dead letters (expected 1)", letters.len()));
                continue;
            };
            let Some(loser) = dead_charge(letter) else {
                v.lost += 1;
                v.note(format!("{name}: conflict dead letter without a readable payload"));
                continue;
            };
            let ordered = sent > answered;
            let kept = if loser == (second.amount, second.currency.to_owned()) {
                orig
            } else if loser == (orig.amount, orig.currency.to_owned()) && !ordered {
                v.reuses_overlapped += 1;
                second
            } else {
                v.wrong_conflict += 1;
                v.note(format!("{name}: dead-lettered {loser:?}, but the original was answered before the reuse was sent"));
                continue;
            };
            self.applied.entry(r.payment).or_default().insert(*id, kept);
        }
    }
}

/// The amount and currency of a dead letter's stored event.
fn dead_charge(letter: &Value) -> Option<(i64, String)> {
    let payload: Value = serde_json::from_str(letter["payload"].as_str()?).ok()?;
    Some((payload["amount"].as_i64()?, payload["currency"].as_str()?.to_owned()))
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Verdict {
    pub payments_checked: u64,
    pub orders_checked: u64,
    /// Accepted events missing from the store (or from dead letters, for failing ones and
    /// reused ids).
    pub lost: u64,
    /// Events recorded more than once, or effects counted more than once.
    pub double_applied: u64,
    /// Payments whose status, amount, currency or conflict flag differ from the oracle's.
    pub wrong_payment_state: u64,
    pub wrong_order_state: u64,
    /// Reused ids where the system kept the later payload though the earlier one was
    /// acknowledged before the later one was sent.
    pub wrong_conflict: u64,
    /// Events recorded that were never accepted (for example a refused request that got in),
    /// or dead-letter events that were applied.
    pub unexpected_applied: u64,
    pub dead_letters_found: u64,
    /// Reused ids with both payloads accepted, and of those, how many were sent so close
    /// together that either could be recorded first.
    pub reuses_checked: u64,
    pub reuses_overlapped: u64,
    /// Payments the oracle expects flagged `conflicted` (same-rank events disagreed).
    pub conflicted_expected: u64,
    /// Stripe events of unhandled types answered 200, each of which the system must count as
    /// ignored (a shortfall is counted in `unexpected_applied`).
    pub ignored_checked: u64,
    /// A few examples, for a person to start from.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn wrong_state(&self) -> u64 {
        self.wrong_payment_state + self.wrong_order_state + self.wrong_conflict
    }

    fn note(&mut self, s: String) {
        if self.examples.len() < 10 {
            self.examples.push(s);
        }
    }
}

/// The final state the oracle predicts for a payment from its accepted events.
pub fn expected_payment(events: &HashMap<u64, Charge<'static>>) -> Option<PaymentState> {
    oracle::payment(events.values().copied())
}

/// The final order statuses the oracle predicts, for created orders.
pub fn expected_orders(orders: &[i64], specs: &[PaymentSpec], ledger: &Ledger) -> Vec<OrderStatus> {
    let mut by_order: HashMap<u32, Vec<PaymentState>> = HashMap::new();
    for (p, events) in &ledger.applied {
        if let (OrderRef::Created(o), Some(state)) = (specs[*p as usize].order, expected_payment(events)) {
            by_order.entry(o).or_default().push(state);
        }
    }
    orders.iter().enumerate().map(|(i, total)| oracle::order(*total, CURRENCY, by_order.get(&(i as u32)).into_iter().flatten())).collect()
}

/// Compares one stored payment (`GET /api/payments/{id}` shape) with the ledger.
pub fn check_payment(v: &mut Verdict, ids: &Ids, accepted: &HashMap<u64, Charge<'static>>, stored: Option<&Value>) {
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
    v.conflicted_expected += u64::from(expected_payment(accepted).is_some_and(|p| p.conflicted));
    let found = (stored["status"].as_str(), stored["amount"].as_i64(), stored["currency"].as_str(), stored["conflicted"].as_bool());
    let expected = expected_payment(accepted);
    let wanted = expected.as_ref().map(|p| (Some(p.rank.status()), Some(p.amount), Some(p.currency.as_str()), Some(p.conflicted)));
    if wanted != Some(found) {
        v.wrong_payment_state += 1;
        v.note(format!("{}: (status, amount, currency, conflicted) {found:?} expected {wanted:?}", stored["id"]));
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

/// Every unhandled event answered 200 must be counted as ignored, not queued. `counted` is the
/// system's count over the run; `None` when it does not say.
pub fn check_ignored(v: &mut Verdict, ledger: &Ledger, counted: Option<u64>) {
    v.ignored_checked = ledger.ignored;
    let counted = counted.unwrap_or(0);
    if counted != ledger.ignored {
        v.unexpected_applied += ledger.ignored.abs_diff(counted);
        v.note(format!("{} unhandled Stripe events answered 200, the system counted {counted} as ignored", ledger.ignored));
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
    use crate::workload::oracle::EventType::{self, *};
    use crate::scenario::Format;
    use serde_json::json;

    fn ids() -> Ids {
        Ids { prefix: "t".into(), format: Format::Flat }
    }

    fn ev(payment: u32, id: u64, ty: EventType, amount: i64) -> EventRef {
        EventRef { payment, id, ty, amount, currency: CURRENCY, reuse: Reuse::No, form: 0 }
    }

    fn at(sent_ms: u64, answered_ms: u64) -> Window {
        Window { sent: Duration::from_millis(sent_ms), answered: Duration::from_millis(answered_ms) }
    }

    fn accepted(events: &[(u64, EventType)]) -> HashMap<u64, Charge<'static>> {
        events.iter().map(|(id, ty)| (*id, Charge { ty: *ty, amount: 100, currency: CURRENCY })).collect()
    }

    #[test]
    fn the_model_takes_the_highest_rank_whatever_the_order() {
        assert_eq!(expected_payment(&accepted(&[(1, Refunded), (2, Pending), (3, Success)])).map(|p| p.rank), Some(Refunded));
        assert_eq!(expected_payment(&accepted(&[(1, Failed), (2, Pending)])).map(|p| p.rank), Some(Failed));
        let specs = vec![
            PaymentSpec { order: OrderRef::Created(0), amount: 100 },
            PaymentSpec { order: OrderRef::Created(1), amount: 99 },
            PaymentSpec { order: OrderRef::Unknown(1), amount: 5 },
        ];
        let mut ledger = Ledger::default();
        ledger.accept(ev(0, 1, Success, 100), false, at(0, 1));
        ledger.accept(ev(1, 2, Success, 99), false, at(0, 1));
        ledger.accept(ev(2, 3, Success, 5), false, at(0, 1));
        assert_eq!(expected_orders(&[100, 100, 7], &specs, &ledger), [OrderStatus::Paid, OrderStatus::PaymentMismatch, OrderStatus::Pending]);
    }

    #[test]
    fn lost_doubled_unexpected_and_wrong_states_are_counted() {
        let acc = accepted(&[(1, Pending), (2, Success)]);
        let mut v = Verdict::default();
        let good = json!({"id": "t-p0", "status": "success", "amount": 100, "currency": "USD", "conflicted": false, "applied_events": 2,
            "events": [{"event_id": "t-e1"}, {"event_id": "t-e2"}]});
        check_payment(&mut v, &ids(), &acc, Some(&good));
        assert_eq!((v.lost, v.double_applied, v.unexpected_applied, v.wrong_payment_state), (0, 0, 0, 0));

        check_payment(&mut v, &ids(), &acc, Some(&json!({"id": "t-p0", "status": "pending", "applied_events": 3,
            "events": [{"event_id": "t-e1"}, {"event_id": "t-e9"}]})));
        assert_eq!((v.lost, v.double_applied, v.unexpected_applied, v.wrong_payment_state), (1, 1, 1, 1));

        check_payment(&mut v, &ids(), &acc, None);
        assert_eq!(v.lost, 3);
        check_order(&mut v, OrderStatus::Paid, Some(&json!({"id": "t-o0", "status": "pending"})));
        assert_eq!(v.wrong_order_state, 1);
    }

    #[test]
    fn amount_currency_and_the_conflict_flag_are_checked() {
        let mut acc = accepted(&[(1, Success)]);
        acc.insert(2, Charge { ty: Success, amount: 90, currency: CURRENCY });
        let stored = |amount: i64, conflicted: bool| {
            json!({"id": "t-p0", "status": "success", "amount": amount, "currency": "USD", "conflicted": conflicted, "applied_events": 2,
                "events": [{"event_id": "t-e1"}, {"event_id": "t-e2"}]})
        };
        let mut v = Verdict::default();
        check_payment(&mut v, &ids(), &acc, Some(&stored(90, true)));
        assert_eq!(v.wrong_payment_state, 0, "{:?}", v.examples);
        check_payment(&mut v, &ids(), &acc, Some(&stored(100, true)));
        check_payment(&mut v, &ids(), &acc, Some(&stored(90, false)));
        assert_eq!(v.wrong_payment_state, 2);
    }

    #[test]
    fn failing_events_must_be_dead_letters() {
        let mut ledger = Ledger::default();
        ledger.accept(ev(0, 7, Success, 1), true, at(0, 1));
        ledger.accept(ev(0, 8, Success, 1), true, at(0, 1));
        let mut v = Verdict::default();
        check_dead_letters(&mut v, &ids(), &ledger, &[json!({"event_id": "t-e7"})]);
        assert_eq!((v.dead_letters_found, v.lost), (1, 1));
    }

    fn reused_pair(second_sent_ms: u64) -> Ledger {
        let mut ledger = Ledger::default();
        ledger.accept(EventRef { reuse: Reuse::Original, ..ev(0, 5, Success, 100) }, false, at(0, 10));
        ledger.accept(EventRef { reuse: Reuse::Second, ..ev(0, 5, Success, 102) }, false, at(second_sent_ms, second_sent_ms + 1));
        ledger
    }

    fn letter(amount: i64) -> Value {
        json!({"event_id": "t-e5", "error": "conflict: event id reused", "payload": json!({"amount": amount, "currency": "USD"}).to_string()})
    }

    #[test]
    fn a_reused_id_keeps_the_payload_recorded_first() {
        // Sent after the original's 200: the original must win.
        let mut ledger = reused_pair(20);
        let mut v = Verdict::default();
        ledger.settle_reuses(&mut v, &ids(), &[letter(102)]);
        assert_eq!((v.reuses_checked, v.wrong_conflict, v.lost), (1, 0, 0));
        assert_eq!(ledger.applied[&0][&5].amount, 100);
        let mut v = Verdict::default();
        reused_pair(20).settle_reuses(&mut v, &ids(), &[letter(100)]);
        assert_eq!(v.wrong_conflict, 1, "the later payload kept although the original was answered first");

        // Overlapping sends: either may win, and the dead letter says which.
        let mut ledger = reused_pair(5);
        let mut v = Verdict::default();
        ledger.settle_reuses(&mut v, &ids(), &[letter(100)]);
        assert_eq!((v.reuses_overlapped, v.wrong_conflict), (1, 0));
        assert_eq!(ledger.applied[&0][&5].amount, 102);

        // No dead letter: the second payload vanished silently.
        let mut v = Verdict::default();
        reused_pair(20).settle_reuses(&mut v, &ids(), &[]);
        assert_eq!(v.lost, 1);
    }

    #[test]
    fn merged_ledgers_give_the_id_to_the_original() {
        let mut a = Ledger::default();
        a.accept(EventRef { reuse: Reuse::Second, ..ev(0, 5, Success, 102) }, false, at(20, 21));
        let mut b = Ledger::default();
        b.accept(EventRef { reuse: Reuse::Original, ..ev(0, 5, Success, 100) }, false, at(0, 10));
        a.merge(b);
        assert_eq!(a.applied[&0][&5].amount, 100);
        assert!(a.reused[&5].original.is_some() && a.reused[&5].second.is_some());
    }
}
