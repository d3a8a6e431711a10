//! Whether an event id seen before names the same event delivered again, or was reused for
//! another one. Providers redeliver freely, so the first is routine; the second is a bug or
//! an attack on the provider's side, and must reach an operator rather than vanish as a duplicate.

use super::event::{EventType, PaymentEvent};
use super::state::Conflict;

/// What was recorded under an event id: every field that decides the event's effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub payment_id: String,
    pub order_id: String,
    pub event_type: EventType,
    pub amount: i64,
    pub currency: String,
}

impl From<&PaymentEvent> for Recorded {
    fn from(e: &PaymentEvent) -> Self {
        Self { payment_id: e.payment_id.clone(), order_id: e.order_id.clone(), event_type: e.event_type, amount: e.amount, currency: e.currency.clone() }
    }
}

/// `Ok` for a redelivery of the recorded event (a duplicate); a conflict naming the first
/// field that differs when the id was reused for another event.
pub fn check(recorded: &Recorded, event: &PaymentEvent) -> Result<(), Conflict> {
    let differs = |field: &'static str, was: String, now: String| Conflict::IdReused { event_id: event.event_id.clone(), field, was, now };
    let r = recorded;
    if r.payment_id != event.payment_id {
        return Err(differs("payment_id", r.payment_id.clone(), event.payment_id.clone()));
    }
    if r.order_id != event.order_id {
        return Err(differs("order_id", r.order_id.clone(), event.order_id.clone()));
    }
    if r.event_type != event.event_type {
        return Err(differs("event_type", r.event_type.as_str().into(), event.event_type.as_str().into()));
    }
    if r.amount != event.amount {
        return Err(differs("amount", r.amount.to_string(), event.amount.to_string()));
    }
    if r.currency != event.currency {
        return Err(differs("currency", r.currency.clone(), event.currency.clone()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> PaymentEvent {
        PaymentEvent {
            event_id: "evt_1".into(),
            event_type: EventType::Success,
            payment_id: "pay_1".into(),
            order_id: "order_1".into(),
            amount: 1000,
            currency: "USD".into(),
            created_at: None,
            received_at_us: 0,
            request_id: None,
            traceparent: None,
        }
    }

    #[test]
    fn the_same_event_again_is_a_redelivery() {
        let mut again = event();
        again.received_at_us = 99;
        again.created_at = Some(5);
        assert_eq!(check(&Recorded::from(&event()), &again), Ok(()), "arrival stamps are not the payload");
    }

    #[test]
    fn any_field_that_decides_the_effect_makes_it_a_reuse() {
        let recorded = Recorded::from(&event());
        let variants = [
            PaymentEvent { payment_id: "pay_2".into(), ..event() },
            PaymentEvent { order_id: "order_2".into(), ..event() },
            PaymentEvent { event_type: EventType::Refunded, ..event() },
            PaymentEvent { amount: 999, ..event() },
            PaymentEvent { currency: "EUR".into(), ..event() },
        ];
        for v in variants {
            let err = check(&recorded, &v).expect_err("a reuse");
            assert!(err.to_string().starts_with("conflict: event id reused"), "{err}");
        }
    }
}
