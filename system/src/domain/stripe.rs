//! Stripe's event envelope, and what each Stripe event type means for a payment.
//!
//! The payment is the PaymentIntent (`pi_...`): a charge and a dispute name theirs, so every
//! event about one purchase lands on one payment. Legacy charges made without a PaymentIntent
//! are their own payment (`ch_...`). The mapping table is in docs/stripe.md.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::event::{validate_amount, validate_currency, validate_id, EventType, Invalid, PaymentEvent};

/// The metadata key that names the order unless configured otherwise.
pub const DEFAULT_ORDER_KEY: &str = "order_id";

/// The fields every Stripe event carries, whatever its type.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    pub id: String,
    pub object: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub created: i64,
    pub livemode: bool,
    /// `null` for events of accounts that never pinned a version.
    #[serde(default)]
    pub api_version: Option<String>,
    pub data: Data<ObjectKind>,
}

#[derive(Debug, Deserialize)]
pub struct Data<T> {
    pub object: T,
}

/// Only the object's type, to check it before reading the rest. Optional here, so that an
/// event type this system ignores is answered 200 whatever its object looks like; a handled
/// type without it is refused for naming no object.
#[derive(Debug, Deserialize)]
pub struct ObjectKind {
    #[serde(default)]
    pub object: String,
}

/// The envelope again, with the object read as the type the event names.
#[derive(Debug, Deserialize)]
pub struct Typed<T> {
    pub data: Data<T>,
}

#[derive(Debug, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Charge {
    pub id: String,
    pub amount: i64,
    pub amount_refunded: i64,
    pub currency: String,
    /// True once the whole amount went back.
    pub refunded: bool,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Dispute {
    pub id: String,
    pub amount: i64,
    pub currency: String,
    pub charge: String,
    pub status: String,
    #[serde(default)]
    pub payment_intent: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Which object an event type carries, and so which struct reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    PaymentIntent,
    Charge,
    Dispute,
}

impl Kind {
    /// Stripe's name for the object, as in its `object` field.
    pub fn object_name(self) -> &'static str {
        match self {
            Self::PaymentIntent => "payment_intent",
            Self::Charge => "charge",
            Self::Dispute => "dispute",
        }
    }
}

/// The object a handled event type carries; `None` for types this system ignores.
pub fn kind_of(event_type: &str) -> Option<Kind> {
    match event_type {
        "payment_intent.succeeded" | "payment_intent.payment_failed" | "payment_intent.processing" | "payment_intent.canceled" => {
            Some(Kind::PaymentIntent)
        }
        "charge.succeeded" | "charge.failed" | "charge.refunded" => Some(Kind::Charge),
        "charge.dispute.created" | "charge.dispute.closed" => Some(Kind::Dispute),
        _ => None,
    }
}

/// A handled event, read, before its order is known for sure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub event: PaymentEvent,
    /// From the object's metadata; `None` when absent, to be looked up or left to an operator.
    pub order_id: Option<String>,
}

/// Why a well-formed, correctly signed event cannot be applied however often Stripe sends it:
/// answered 200 and recorded for an operator, since a 4xx would only make Stripe retry for days.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForOperator {
    #[error("no order id: metadata.{0} is missing, and no earlier event of payment {1} named its order")]
    NoOrder(String, String),
    #[error("order id in metadata.{0} is unusable: {1}")]
    BadOrder(String, Invalid),
    #[error("dispute {0} closed with status {1:?}; expected won, lost or warning_closed")]
    DisputeStatus(String, String),
}

/// What a PaymentIntent event does.
pub fn payment_intent(event_type: &str, pi: PaymentIntent, head: &Envelope, order_key: &str, received_at_us: i64) -> Result<Mapped, Invalid> {
    let t = match event_type {
        "payment_intent.succeeded" => EventType::Success,
        "payment_intent.processing" => EventType::Pending,
        // A canceled intent never took money: for the order it is a failed attempt, and a
        // new intent may still pay it.
        _ => EventType::Failed,
    };
    let order_id = pi.metadata.get(order_key).cloned();
    build(head, t, ("data.object.id", pi.id), pi.amount, &pi.currency, order_id, received_at_us)
}

/// What a charge event does. A partial refund leaves the payment `partially_refunded` (and its
/// order too) at the charge's full amount: the order still stands, for what was not refunded.
pub fn charge(event_type: &str, ch: Charge, head: &Envelope, order_key: &str, received_at_us: i64) -> Result<Mapped, Invalid> {
    validate_amount("data.object.amount_refunded", ch.amount_refunded)?;
    let t = match event_type {
        "charge.succeeded" => EventType::Success,
        "charge.failed" => EventType::Failed,
        _ if ch.refunded || ch.amount_refunded >= ch.amount => EventType::Refunded,
        _ => EventType::PartiallyRefunded,
    };
    let payment = match ch.payment_intent {
        Some(pi) => ("data.object.payment_intent", pi),
        None => ("data.object.id", ch.id),
    };
    let order_id = ch.metadata.get(order_key).cloned();
    build(head, t, payment, ch.amount, &ch.currency, order_id, received_at_us)
}

/// What a dispute event does. A dispute's own metadata rarely names the order; then the
/// order is the one its payment was recorded with.
pub fn dispute(event_type: &str, d: Dispute, head: &Envelope, order_key: &str, received_at_us: i64) -> Result<Result<Mapped, ForOperator>, Invalid> {
    let t = match (event_type, d.status.as_str()) {
        ("charge.dispute.created", _) => EventType::Disputed,
        (_, "won" | "warning_closed") => EventType::DisputeWon,
        (_, "lost") => EventType::DisputeLost,
        (_, other) => return Ok(Err(ForOperator::DisputeStatus(d.id, other.to_owned()))),
    };
    let payment = match d.payment_intent {
        Some(pi) => ("data.object.payment_intent", pi),
        None => ("data.object.charge", d.charge),
    };
    let order_id = d.metadata.get(order_key).cloned();
    build(head, t, payment, d.amount, &d.currency, order_id, received_at_us).map(Ok)
}

/// Validates what every mapping shares. Currencies arrive lower-case from Stripe and are kept
/// upper-case, so that they compare equal to the order's whatever case either was written in.
fn build(
    head: &Envelope,
    event_type: EventType,
    (payment_field, payment_id): (&'static str, String),
    amount: i64,
    currency: &str,
    order_id: Option<String>,
    received_at_us: i64,
) -> Result<Mapped, Invalid> {
    validate_id("id", &head.id)?;
    validate_id(payment_field, &payment_id)?;
    validate_amount("data.object.amount", amount)?;
    let currency = currency.to_ascii_uppercase();
    validate_currency(&currency).map_err(|_| Invalid { field: "data.object.currency", reason: "must be a 3-letter ISO 4217 code".into() })?;
    let event = PaymentEvent {
        event_id: head.id.clone(),
        event_type,
        payment_id,
        order_id: String::new(),
        amount,
        currency,
        created_at: Some(head.created),
        received_at_us,
        request_id: None,
        traceparent: None,
    };
    Ok(Mapped { event, order_id })
}

impl Mapped {
    /// The event with its order: from the metadata, else `recorded` (the order the payment
    /// was first recorded with), else a reason for an operator.
    pub fn with_order(self, order_key: &str, recorded: Option<String>) -> Result<PaymentEvent, ForOperator> {
        let Some(order_id) = self.order_id.or(recorded) else {
            return Err(ForOperator::NoOrder(order_key.to_owned(), self.event.payment_id));
        };
        validate_id("order_id", &order_id).map_err(|e| ForOperator::BadOrder(order_key.to_owned(), e))?;
        Ok(PaymentEvent { order_id, ..self.event })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(t: &str) -> Envelope {
        Envelope {
            id: "evt_1".into(),
            object: "event".into(),
            event_type: t.into(),
            created: 1_700_000_000,
            livemode: false,
            api_version: Some("2024-06-20".into()),
            data: Data { object: ObjectKind { object: "charge".into() } },
        }
    }

    fn ch(amount_refunded: i64, refunded: bool) -> Charge {
        Charge {
            id: "ch_1".into(),
            amount: 2000,
            amount_refunded,
            currency: "usd".into(),
            refunded,
            payment_intent: Some("pi_1".into()),
            metadata: BTreeMap::from([("order_id".to_owned(), "order_1".to_owned())]),
        }
    }

    #[test]
    fn a_charge_is_its_payment_intent_in_upper_case_currency() {
        let m = charge("charge.succeeded", ch(0, false), &head("charge.succeeded"), "order_id", 7).unwrap();
        let e = m.with_order("order_id", None).unwrap();
        assert_eq!((e.payment_id.as_str(), e.order_id.as_str(), e.currency.as_str()), ("pi_1", "order_1", "USD"));
        assert_eq!((e.event_type, e.amount, e.created_at, e.event_id.as_str()), (EventType::Success, 2000, Some(1_700_000_000), "evt_1"));
    }

    #[test]
    fn refunds_are_partial_until_the_whole_amount_is_back() {
        let t = |c: Charge| charge("charge.refunded", c, &head("charge.refunded"), "order_id", 0).unwrap().event.event_type;
        assert_eq!(t(ch(500, false)), EventType::PartiallyRefunded);
        assert_eq!(t(ch(2000, true)), EventType::Refunded);
        assert_eq!(t(ch(2000, false)), EventType::Refunded, "all of it back is a full refund whatever the flag says");
    }

    #[test]
    fn a_dispute_closes_won_or_lost_and_otherwise_needs_a_person() {
        let d = |status: &str| Dispute {
            id: "dp_1".into(),
            amount: 2000,
            currency: "usd".into(),
            charge: "ch_1".into(),
            status: status.into(),
            payment_intent: None,
            metadata: BTreeMap::new(),
        };
        let closed = |s: &str| dispute("charge.dispute.closed", d(s), &head("charge.dispute.closed"), "order_id", 0).unwrap();
        assert_eq!(closed("won").unwrap().event.event_type, EventType::DisputeWon);
        assert_eq!(closed("warning_closed").unwrap().event.event_type, EventType::DisputeWon);
        assert_eq!(closed("lost").unwrap().event.event_type, EventType::DisputeLost);
        assert!(matches!(closed("needs_response"), Err(ForOperator::DisputeStatus(..))));
        let created = dispute("charge.dispute.created", d("needs_response"), &head("charge.dispute.created"), "order_id", 0).unwrap().unwrap();
        assert_eq!((created.event.event_type, created.event.payment_id.as_str()), (EventType::Disputed, "ch_1"), "no intent: the charge is the payment");
    }

    #[test]
    fn the_order_comes_from_metadata_then_the_payment_then_an_operator() {
        let mut c = ch(0, false);
        c.metadata.clear();
        let m = charge("charge.succeeded", c, &head("charge.succeeded"), "order_id", 0).unwrap();
        assert_eq!(m.clone().with_order("order_id", Some("order_9".into())).unwrap().order_id, "order_9");
        assert!(matches!(m.clone().with_order("order_id", None), Err(ForOperator::NoOrder(..))));
        assert!(matches!(m.with_order("order_id", Some("has space".into())), Err(ForOperator::BadOrder(..))));
        let custom = BTreeMap::from([("shop_order".to_owned(), "o_7".to_owned())]);
        let m = charge("charge.succeeded", Charge { metadata: custom, ..ch(0, false) }, &head("charge.succeeded"), "shop_order", 0).unwrap();
        assert_eq!(m.order_id.as_deref(), Some("o_7"));
    }

    #[test]
    fn bad_values_name_the_stripe_field() {
        let c = Charge { amount: -1, ..ch(0, false) };
        assert_eq!(charge("charge.succeeded", c, &head("charge.succeeded"), "order_id", 0).unwrap_err().field, "data.object.amount");
        let c = Charge { currency: "dollars".into(), ..ch(0, false) };
        assert_eq!(charge("charge.succeeded", c, &head("charge.succeeded"), "order_id", 0).unwrap_err().field, "data.object.currency");
        let c = Charge { payment_intent: Some(String::new()), ..ch(0, false) };
        assert_eq!(charge("charge.succeeded", c, &head("charge.succeeded"), "order_id", 0).unwrap_err().field, "data.object.payment_intent");
        assert_eq!(kind_of("customer.created"), None);
        assert_eq!(kind_of("charge.dispute.closed"), Some(Kind::Dispute));
    }
}
