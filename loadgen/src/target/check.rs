//! What was read against what loadgen's oracle expects, one payment or order at a time.

use std::collections::BTreeSet;

use super::read::{Normal, Observed};
use crate::workload::oracle::{OrderStatus, PaymentState};

/// The outcome of one comparison; everything but `Right` carries what a person needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    Right,
    /// Accepted events, and the receiver does not know the payment.
    Lost,
    /// Nothing should have been applied, and something was.
    Unexpected(String),
    Wrong(String),
    /// An event recorded more than once (only when the receiver lists its events).
    Doubled(String),
    /// The read itself failed: hung, closed, garbage, or a shape the mapping does not fit.
    Unreadable(String),
}

impl Finding {
    pub fn is_right(&self) -> bool {
        matches!(self, Self::Right)
    }

    pub fn describe(&self) -> String {
        match self {
            Self::Right => "as expected".into(),
            Self::Lost => "missing: accepted events were never applied".into(),
            Self::Unexpected(s) => format!("applied though it should not be: {s}"),
            Self::Wrong(s) => s.clone(),
            Self::Doubled(s) => format!("recorded twice: {s}"),
            Self::Unreadable(s) => format!("unreadable: {s}"),
        }
    }
}

fn shown(n: &Normal) -> String {
    format!("{} {} {}", n.status, n.amount.map_or("-".into(), |a| a.to_string()), n.currency.as_deref().unwrap_or("-"))
}

/// A payment: `expected` is `None` when nothing may be applied to it.
pub fn payment(expected: Option<&PaymentState>, seen: &Observed) -> Finding {
    let found = match (expected, seen) {
        (_, Observed::Bad(e)) => return Finding::Unreadable(e.clone()),
        (None, Observed::Missing) => return Finding::Right,
        (None, Observed::Found(n)) => return Finding::Unexpected(shown(n)),
        (Some(_), Observed::Missing) => return Finding::Lost,
        (Some(want), Observed::Found(n)) => (want, n),
    };
    let (want, n) = found;
    if let Some(ids) = &n.event_ids {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        if distinct.len() < ids.len() {
            let twice: BTreeSet<&String> = ids.iter().filter(|id| ids.iter().filter(|o| o == id).count() > 1).collect();
            return Finding::Doubled(twice.into_iter().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let right = n.status == want.rank.status() && n.amount == Some(want.amount) && n.currency.as_deref() == Some(want.currency.as_str());
    if right {
        Finding::Right
    } else {
        Finding::Wrong(format!("payment is {}, expected {} {} {}", shown(n), want.rank.status(), want.amount, want.currency))
    }
}

/// An order's status.
pub fn order(expected: OrderStatus, seen: &Observed) -> Finding {
    match seen {
        Observed::Bad(e) => Finding::Unreadable(e.clone()),
        Observed::Missing => Finding::Wrong(format!("order is missing, expected {}", expected.as_str())),
        Observed::Found(n) if n.status == expected.as_str() => Finding::Right,
        Observed::Found(n) => Finding::Wrong(format!("order is {}, expected {}", n.status, expected.as_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::oracle::{self, Charge, EventType};

    fn seen(status: &str, amount: i64, events: Option<&[&str]>) -> Observed {
        Observed::Found(Normal { status: status.into(), amount: Some(amount), currency: Some("USD".into()), event_ids: events.map(|e| e.iter().map(|s| s.to_string()).collect()) })
    }

    #[test]
    fn each_way_a_payment_can_be_wrong_is_named() {
        let want = oracle::payment([Charge { ty: EventType::Failed, amount: 100, currency: "USD" }, Charge { ty: EventType::Pending, amount: 100, currency: "USD" }]);
        let want = want.as_ref();
        assert!(payment(want, &seen("failed", 100, None)).is_right());
        assert!(matches!(payment(want, &seen("pending", 100, None)), Finding::Wrong(s) if s.contains("payment is pending 100 USD, expected failed")));
        assert!(matches!(payment(want, &seen("failed", 101, None)), Finding::Wrong(_)));
        assert_eq!(payment(want, &Observed::Missing), Finding::Lost);
        assert!(matches!(payment(want, &seen("failed", 100, Some(&["e1", "e2", "e1"]))), Finding::Doubled(s) if s == "e1"));
        assert!(matches!(payment(None, &seen("success", 1, None)), Finding::Unexpected(_)));
        assert!(payment(None, &Observed::Missing).is_right());
        assert!(matches!(payment(want, &Observed::Bad("GET /x: 500".into())), Finding::Unreadable(_)));
    }

    #[test]
    fn orders_compare_mapped_statuses() {
        let o = |s: &str| Observed::Found(Normal { status: s.into(), amount: None, currency: None, event_ids: None });
        assert!(order(OrderStatus::Paid, &o("paid")).is_right());
        assert!(matches!(order(OrderStatus::PaymentMismatch, &o("paid")), Finding::Wrong(s) if s == "order is paid, expected payment_mismatch"));
    }
}
