//! What each rule sends: one case per payment, each with its own order, its steps in order,
//! and what the end state must be (loadgen's oracle over the events that should apply).

use crate::workload::oracle::{self, Charge, EventType, OrderStatus, PaymentState};

use super::rule::Check;
use super::send::{Event, Forgery};

#[derive(Debug, Clone)]
pub enum Step {
    /// Sent and answered; must be accepted.
    Send(Event),
    /// `n` copies at once; at least one must be accepted.
    Concurrent(Event, usize),
    /// Written whole, the answer never read.
    Abandon(Event),
    /// Wait until the receiver shows the payment at this status.
    AwaitStatus(EventType),
    /// Must be refused (4xx).
    Forged(Event, Forgery),
    /// Must be refused (4xx).
    Malformed { id: String, body: String },
}

#[derive(Debug, Clone)]
pub struct Case {
    /// What this payment tests, as a person reads it.
    pub label: String,
    pub payment: String,
    pub order: String,
    pub total: i64,
    pub steps: Vec<Step>,
    /// Whether its events should apply; otherwise nothing may.
    pub applies: bool,
}

pub const CURRENCY: &str = "USD";

impl Case {
    fn new(prefix: &str, n: usize, label: String, applies: bool) -> Self {
        Self { label, payment: format!("{prefix}-p{n}"), order: format!("{prefix}-o{n}"), total: 1000 + n as i64, steps: Vec::new(), applies }
    }

    /// An event of this case's payment, numbered `k` within it.
    pub fn event(&self, k: usize, ty: EventType) -> Event {
        self.charge(k, ty, self.total, CURRENCY)
    }

    fn charge(&self, k: usize, ty: EventType, amount: i64, currency: &'static str) -> Event {
        Event { id: format!("{}-e{k}", self.payment), ty, payment: self.payment.clone(), order: self.order.clone(), amount, currency }
    }

    /// The payment the oracle expects; `None` when nothing may be applied.
    pub fn expected(&self) -> Option<PaymentState> {
        if !self.applies {
            return None;
        }
        let mut events: Vec<&Event> = Vec::new();
        for s in &self.steps {
            if let Step::Send(e) | Step::Concurrent(e, _) | Step::Abandon(e) = s {
                if !events.iter().any(|seen| seen.id == e.id) {
                    events.push(e);
                }
            }
        }
        oracle::payment(events.into_iter().map(|e| Charge { ty: e.ty, amount: e.amount, currency: e.currency }))
    }

    pub fn expected_order(&self) -> OrderStatus {
        oracle::order(self.total, CURRENCY, self.expected().as_ref())
    }
}

use EventType::*;

/// Stories a payment lives, for the rules that are not about one particular order.
const STORIES: [&[EventType]; 3] = [&[Pending, Success], &[Pending, Failed], &[Pending, Failed, Success]];

fn story_label(story: &[EventType]) -> String {
    story.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

pub fn plan(check: &Check, prefix: &str) -> Vec<Case> {
    match *check {
        Check::Duplicates { payments, copies, concurrent } => (0..payments)
            .map(|n| {
                let story = STORIES[n % STORIES.len()];
                let how = if concurrent { "at once" } else { "one after another" };
                let mut c = Case::new(prefix, n, format!("{}, each sent {copies} times {how}", story_label(story)), true);
                for (k, ty) in story.iter().enumerate() {
                    let e = c.event(k, *ty);
                    if concurrent {
                        c.steps.push(Step::Concurrent(e, copies));
                    } else {
                        c.steps.extend(std::iter::repeat_n(Step::Send(e), copies));
                    }
                }
                c
            })
            .collect(),
        Check::OutOfOrder => {
            let types = [Pending, Failed, Success, Refunded];
            let pairs = types.iter().flat_map(|a| types.iter().filter(move |b| *b != a).map(move |b| (*a, *b)));
            pairs
                .enumerate()
                .map(|(n, (first, second))| {
                    let mut c = Case::new(prefix, n, format!("{} delivered before {}", first.as_str(), second.as_str()), true);
                    c.steps = vec![Step::Send(c.event(0, first)), Step::Send(c.event(1, second))];
                    c
                })
                .collect()
        }
        Check::SlowAnswer { payments } => (0..payments)
            .map(|n| {
                let story = STORIES[n % 2];
                let mut c = Case::new(prefix, n, format!("{} unanswered, {}, then {} again", story[0].as_str(), story[1].as_str(), story[0].as_str()), true);
                let (first, next) = (c.event(0, story[0]), c.event(1, story[1]));
                c.steps = vec![Step::Abandon(first.clone()), Step::Send(next), Step::Send(first)];
                c
            })
            .collect(),
        Check::RefundAfterSuccess { payments } => (0..payments)
            .map(|n| {
                let mut c = Case::new(prefix, n, "payment.pending, payment.success, shown as success, then payment.refunded".into(), true);
                c.steps = vec![Step::Send(c.event(0, Pending)), Step::Send(c.event(1, Success)), Step::AwaitStatus(Success), Step::Send(c.event(2, Refunded))];
                c
            })
            .collect(),
        Check::Amounts => {
            let variants: [(&str, i64, &'static str); 4] = [("the order's amount", 0, CURRENCY), ("one more than the order's amount", 1, CURRENCY), ("one less than the order's amount", -1, CURRENCY), ("the order's amount in EUR", 0, "EUR")];
            variants
                .iter()
                .enumerate()
                .map(|(n, (what, delta, currency))| {
                    let mut c = Case::new(prefix, n, format!("payment.success for {what}"), true);
                    c.steps = vec![Step::Send(c.charge(0, Success, c.total + delta, currency))];
                    c
                })
                .collect()
        }
        Check::BadSignatures => Forgery::ALL
            .iter()
            .enumerate()
            .map(|(n, how)| {
                let mut c = Case::new(prefix, n, format!("payment.success {}", how.as_str()), false);
                c.steps = vec![Step::Forged(c.event(0, Success), *how)];
                c
            })
            .collect(),
        Check::Malformed => MALFORMED
            .iter()
            .enumerate()
            .map(|(n, (what, template))| {
                let mut c = Case::new(prefix, n, (*what).into(), false);
                let body = template.replace("{p}", &c.payment).replace("{o}", &c.order).replace("{e}", &format!("{}-e0", c.payment));
                c.steps = vec![Step::Malformed { id: format!("{}-e0", c.payment), body }];
                c
            })
            .collect(),
        Check::Crash { payments, .. } => (0..payments)
            .map(|n| {
                let mut c = Case::new(prefix, n, "payment.pending, payment.success, the worker killed meanwhile".into(), true);
                c.steps = vec![Step::Send(c.event(0, Pending)), Step::Send(c.event(1, Success))];
                c
            })
            .collect(),
    }
}

/// Bodies that are not valid events, each naming its own payment so that "nothing applied"
/// can be checked.
const MALFORMED: [(&str, &str); 6] = [
    ("a body cut short (not JSON)", r#"{"event_type":"payment.success","payment_id":"{p}","order_id":"{o}","amount":"#),
    ("a negative amount", r#"{"event_type":"payment.success","payment_id":"{p}","order_id":"{o}","amount":-5,"currency":"USD","event_id":"{e}"}"#),
    ("an amount in a string", r#"{"event_type":"payment.success","payment_id":"{p}","order_id":"{o}","amount":"1000","currency":"USD","event_id":"{e}"}"#),
    ("no amount", r#"{"event_type":"payment.success","payment_id":"{p}","order_id":"{o}","currency":"USD","event_id":"{e}"}"#),
    ("an unknown event type", r#"{"event_type":"payment.stolen","payment_id":"{p}","order_id":"{o}","amount":5,"currency":"USD","event_id":"{e}"}"#),
    ("a currency that is not an ISO code", r#"{"event_type":"payment.success","payment_id":"{p}","order_id":"{o}","amount":5,"currency":"usd","event_id":"{e}"}"#),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_order_covers_every_ordered_pair_and_expects_the_higher_rank() {
        let cases = plan(&Check::OutOfOrder, "t");
        assert_eq!(cases.len(), 12);
        let late_pending = cases.iter().find(|c| c.label == "payment.failed delivered before payment.pending").unwrap();
        assert_eq!(late_pending.expected().map(|p| p.rank), Some(Failed));
        assert_eq!(late_pending.expected_order(), OrderStatus::Pending);
    }

    #[test]
    fn refusals_expect_nothing_and_a_retry_counts_once() {
        for c in plan(&Check::BadSignatures, "t").iter().chain(&plan(&Check::Malformed, "t")) {
            assert_eq!((c.expected(), c.expected_order()), (None, OrderStatus::Pending));
        }
        let slow = &plan(&Check::SlowAnswer { payments: 2 }, "t")[1];
        assert_eq!(slow.expected().map(|p| p.rank), Some(Failed));
        let mismatched = &plan(&Check::Amounts, "t")[1];
        assert_eq!(mismatched.expected_order(), OrderStatus::PaymentMismatch);
    }
}
