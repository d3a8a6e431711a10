//! loadgen's own model of the rules a payment and its order follow, written from the
//! documented guarantees (docs/guarantees.md), apart from the system's `domain` module: a bug
//! there must show up here as a wrong state, not be mirrored.
//!
//! The model works on the set of accepted events, never on an arrival order: the rules make
//! the final state the same for every order, so a set is all the oracle needs.

/// Payment event types, declared in rank order: a payment only moves up this list. After the
/// money moved: a partial refund, a full one, a dispute (which can follow either), its close.
/// The last four arrive only in Stripe's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EventType {
    Pending,
    Failed,
    Success,
    PartiallyRefunded,
    Refunded,
    Disputed,
    DisputeWon,
    DisputeLost,
}

impl EventType {
    /// The `event_type` on the wire (the flat format has the first four).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "payment.pending",
            Self::Failed => "payment.failed",
            Self::Success => "payment.success",
            Self::PartiallyRefunded => "payment.partially_refunded",
            Self::Refunded => "payment.refunded",
            Self::Disputed => "payment.disputed",
            Self::DisputeWon => "payment.dispute_won",
            Self::DisputeLost => "payment.dispute_lost",
        }
    }

    /// The payment `status` the system reports for a payment at this rank.
    pub fn status(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Success => "success",
            Self::PartiallyRefunded => "partially_refunded",
            Self::Refunded => "refunded",
            Self::Disputed => "disputed",
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
        }
    }
}

/// Order statuses, declared in rank order: an order takes the highest its payments give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum OrderStatus {
    Pending,
    PaymentMismatch,
    Paid,
    /// Same-rank success events disagreed on the amount or currency: a person must look.
    PaymentConflict,
    PartiallyRefunded,
    Refunded,
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
}

/// One accepted event's effect-relevant fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge<'a> {
    pub ty: EventType,
    pub amount: i64,
    pub currency: &'a str,
}

/// A payment's final state as the rules define it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentState {
    pub rank: EventType,
    pub amount: i64,
    pub currency: String,
    /// Events of the top rank disagreed on amount or currency.
    pub conflicted: bool,
}

/// The final state from a payment's accepted events, whatever order they arrived in: the
/// top rank wins (lower ones are stale); within it, the smallest (currency, amount) pair
/// defines the payment, and more than one distinct pair marks it conflicted.
pub fn payment<'a>(events: impl IntoIterator<Item = Charge<'a>>) -> Option<PaymentState> {
    let events: Vec<Charge> = events.into_iter().collect();
    let rank = events.iter().map(|c| c.ty).max()?;
    let mut top: Vec<(&str, i64)> = events.iter().filter(|c| c.ty == rank).map(|c| (c.currency, c.amount)).collect();
    top.sort_unstable();
    top.dedup();
    let (currency, amount) = *top.first()?;
    Some(PaymentState { rank, amount, currency: currency.to_owned(), conflicted: top.len() > 1 })
}

/// What one payment says about its order.
fn contribution(total: i64, currency: &str, p: &PaymentState) -> OrderStatus {
    match p.rank {
        EventType::Pending | EventType::Failed => OrderStatus::Pending,
        EventType::PartiallyRefunded => OrderStatus::PartiallyRefunded,
        EventType::Refunded => OrderStatus::Refunded,
        EventType::Disputed => OrderStatus::Disputed,
        EventType::DisputeWon => OrderStatus::DisputeWon,
        EventType::DisputeLost => OrderStatus::DisputeLost,
        EventType::Success if p.conflicted => OrderStatus::PaymentConflict,
        EventType::Success if p.amount == total && p.currency == currency => OrderStatus::Paid,
        EventType::Success => OrderStatus::PaymentMismatch,
    }
}

/// An order's final status: the highest its payments give, `pending` without any.
pub fn order<'a>(total: i64, currency: &str, payments: impl IntoIterator<Item = &'a PaymentState>) -> OrderStatus {
    payments.into_iter().map(|p| contribution(total, currency, p)).max().unwrap_or(OrderStatus::Pending).max(OrderStatus::Pending)
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventType::*;

    fn usd(ty: EventType, amount: i64) -> Charge<'static> {
        Charge { ty, amount, currency: "USD" }
    }

    #[test]
    fn the_top_rank_wins_and_lower_ones_are_stale() {
        let p = payment([usd(Success, 100), usd(Pending, 100), usd(Failed, 100)]).unwrap();
        assert_eq!((p.rank, p.conflicted), (Success, false));
        assert_eq!(payment([usd(Refunded, 100), usd(Success, 100)]).unwrap().rank, Refunded);
        assert_eq!(payment(std::iter::empty()), None);
    }

    #[test]
    fn same_rank_disagreement_takes_the_smaller_pair_and_marks_a_conflict() {
        let p = payment([usd(Success, 500), usd(Success, 300), Charge { ty: Success, amount: 1, currency: "XTS" }]).unwrap();
        // Currency code first: "USD" < "XTS", so the smallest pair is (USD, 300).
        assert_eq!((p.amount, p.currency.as_str(), p.conflicted), (300, "USD", true));
        assert_eq!(order(300, "USD", [&p]), OrderStatus::PaymentConflict);
        // A higher rank clears the flag, with its own amount.
        let p = payment([usd(Success, 500), usd(Success, 300), usd(Refunded, 500)]).unwrap();
        assert_eq!((p.amount, p.conflicted), (500, false));
        // Conflicted below success contributes pending, as before.
        let p = payment([usd(Pending, 5), usd(Pending, 6)]).unwrap();
        assert_eq!(order(5, "USD", [&p]), OrderStatus::Pending);
    }

    #[test]
    fn orders_take_the_highest_contribution() {
        let paid = payment([usd(Success, 100)]).unwrap();
        let off = payment([usd(Success, 99)]).unwrap();
        let refunded = payment([usd(Refunded, 1)]).unwrap();
        assert_eq!(order(100, "USD", [&paid]), OrderStatus::Paid);
        assert_eq!(order(100, "EUR", [&paid]), OrderStatus::PaymentMismatch);
        assert_eq!(order(100, "USD", [&off]), OrderStatus::PaymentMismatch);
        assert_eq!(order(100, "USD", [&off, &paid]), OrderStatus::Paid);
        assert_eq!(order(100, "USD", [&paid, &refunded]), OrderStatus::Refunded);
        assert_eq!(order(100, "USD", []), OrderStatus::Pending);
    }

    #[test]
    fn refunds_and_disputes_rank_above_success_in_any_order() {
        let partly = payment([usd(PartiallyRefunded, 100), usd(Success, 100), usd(PartiallyRefunded, 100)]).unwrap();
        assert_eq!((partly.rank, partly.conflicted), (PartiallyRefunded, false), "a second partial refund changes nothing");
        assert_eq!(order(100, "USD", [&partly]), OrderStatus::PartiallyRefunded);
        let lost = payment([usd(DisputeLost, 100), usd(Refunded, 100), usd(Disputed, 100), usd(Success, 100)]).unwrap();
        assert_eq!(lost.rank, DisputeLost, "a dispute's close that overtakes its opening still ends closed");
        let won = payment([usd(Disputed, 100), usd(DisputeWon, 100)]).unwrap();
        assert_eq!(order(100, "USD", [&won, &partly]), OrderStatus::DisputeWon);
        assert_eq!(order(100, "USD", [&payment([usd(Disputed, 100)]).unwrap()]), OrderStatus::Disputed);
    }
}
