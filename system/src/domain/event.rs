//! A payment event as it travels from ingress to the worker, and the rules that make one valid.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Ids longer than this are refused: they end up in primary keys and logs.
pub const MAX_ID_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "payment.pending")]
    Pending,
    #[serde(rename = "payment.success")]
    Success,
    #[serde(rename = "payment.failed")]
    Failed,
    #[serde(rename = "payment.refunded")]
    Refunded,
    /// Part of the amount went back to the customer; the rest stays captured.
    #[serde(rename = "payment.partially_refunded")]
    PartiallyRefunded,
    /// The customer's bank opened a dispute (chargeback or inquiry): the money is held.
    #[serde(rename = "payment.disputed")]
    Disputed,
    /// The dispute closed in the merchant's favour (won, or an inquiry closed without a chargeback).
    #[serde(rename = "payment.dispute_won")]
    DisputeWon,
    /// The dispute closed in the customer's favour: the money is gone.
    #[serde(rename = "payment.dispute_lost")]
    DisputeLost,
}

impl EventType {
    pub const ALL: [EventType; 8] = [
        Self::Pending,
        Self::Success,
        Self::Failed,
        Self::Refunded,
        Self::PartiallyRefunded,
        Self::Disputed,
        Self::DisputeWon,
        Self::DisputeLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "payment.pending",
            Self::Success => "payment.success",
            Self::Failed => "payment.failed",
            Self::Refunded => "payment.refunded",
            Self::PartiallyRefunded => "payment.partially_refunded",
            Self::Disputed => "payment.disputed",
            Self::DisputeWon => "payment.dispute_won",
            Self::DisputeLost => "payment.dispute_lost",
        }
    }

    /// The types the flat body (`POST /api/webhooks/payment`) takes, as it always did; partial
    /// refunds and disputes arrive only in Stripe's events, with the fields that define them.
    pub const FLAT: [EventType; 4] = [Self::Pending, Self::Success, Self::Failed, Self::Refunded];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// The webhook body as the provider sends it, before validation.
/// Field types are loose on purpose so that validation can name what is wrong.
#[derive(Debug, Deserialize)]
pub struct WebhookBody {
    pub event_type: String,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default)]
    pub event_id: Option<String>,
    #[serde(default)]
    pub created_at: Option<i64>,
}

/// A validated event, stamped at ingress; this is what the queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEvent {
    pub event_id: String,
    pub event_type: EventType,
    pub payment_id: String,
    pub order_id: String,
    pub amount: i64,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    /// Microseconds since the Unix epoch when ingress accepted it; end-to-end latency starts here.
    pub received_at_us: i64,
    /// The id of the HTTP request that delivered it, for following it into the worker's logs
    /// and dead letters. Absent in records written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C `traceparent` of the delivery, so the worker's span joins the request's trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// Why a syntactically fine body is still not a payment event we accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    pub field: &'static str,
    pub reason: String,
}

impl Invalid {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self { field, reason: reason.into() }
    }
}

/// Checks an identifier: non-empty, bounded, printable ASCII without spaces, so it is safe as a key and in logs.
pub fn validate_id(field: &'static str, value: &str) -> Result<(), Invalid> {
    if value.is_empty() {
        return Err(Invalid::new(field, "must not be empty"));
    }
    if value.len() > MAX_ID_LEN {
        return Err(Invalid::new(field, format!("longer than {MAX_ID_LEN} bytes")));
    }
    if !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid::new(field, "may contain only printable ASCII without spaces"));
    }
    Ok(())
}

pub fn validate_currency(value: &str) -> Result<(), Invalid> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(Invalid::new("currency", "must be a 3-letter upper-case ISO 4217 code"))
    }
}

pub fn validate_amount(field: &'static str, value: i64) -> Result<(), Invalid> {
    if value < 0 {
        return Err(Invalid::new(field, "must be >= 0 (minor units)"));
    }
    Ok(())
}

impl WebhookBody {
    /// Validates the body and resolves the event's identity: the transport's id (for example
    /// the `webhook-id` header) wins, then the body's `event_id`, then a hash of the payload,
    /// so that a provider's retry of the same event always carries the same id.
    pub fn into_event(self, transport_id: Option<&str>, received_at_us: i64) -> Result<PaymentEvent, Invalid> {
        let event_type = EventType::FLAT.into_iter().find(|t| t.as_str() == self.event_type).ok_or_else(|| {
            Invalid::new("event_type", format!("unknown event type (expected one of {})", type_list()))
        })?;
        validate_id("payment_id", &self.payment_id)?;
        validate_id("order_id", &self.order_id)?;
        validate_amount("amount", self.amount)?;
        validate_currency(&self.currency)?;
        if let Some(id) = &self.event_id {
            validate_id("event_id", id)?;
        }
        let event_id = match transport_id.or(self.event_id.as_deref()) {
            Some(id) => {
                validate_id("webhook-id", id)?;
                id.to_owned()
            }
            None => self.content_id(event_type),
        };
        Ok(PaymentEvent {
            event_id,
            event_type,
            payment_id: self.payment_id,
            order_id: self.order_id,
            amount: self.amount,
            currency: self.currency,
            created_at: self.created_at,
            received_at_us,
            request_id: None,
            traceparent: None,
        })
    }

    /// A stable id derived from the fields that define the event; field order and
    /// whitespace in the JSON do not change it.
    fn content_id(&self, event_type: EventType) -> String {
        let mut h = Sha256::new();
        for part in [event_type.as_str(), &self.payment_id, &self.order_id, &self.currency] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        h.update(self.amount.to_be_bytes());
        h.update(self.created_at.unwrap_or(i64::MIN).to_be_bytes());
        let digest = h.finalize();
        format!("evt_{}", hex::encode(&digest[..16]))
    }
}

/// The event types the flat body accepts, for messages.
pub fn type_list() -> String {
    EventType::FLAT.map(EventType::as_str).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body() -> WebhookBody {
        serde_json::from_str(
            r#"{"event_type":"payment.success","payment_id":"pay_1","order_id":"order_1","amount":1000,"currency":"USD"}"#,
        )
        .expect("valid body")
    }

    #[test]
    fn identity_prefers_transport_then_body_then_hash() {
        let mut b = body();
        b.event_id = Some("evt_body".into());
        assert_eq!(b.into_event(Some("msg_hdr"), 0).unwrap().event_id, "msg_hdr");
        let mut b = body();
        b.event_id = Some("evt_body".into());
        assert_eq!(b.into_event(None, 0).unwrap().event_id, "evt_body");
        let hashed = body().into_event(None, 0).unwrap().event_id;
        assert!(hashed.starts_with("evt_") && hashed.len() == 36);
    }

    #[test]
    fn content_id_is_stable_and_sensitive_to_fields() {
        let reordered: WebhookBody = serde_json::from_str(
            r#"{ "currency":"USD", "amount":1000, "order_id":"order_1", "payment_id":"pay_1", "event_type":"payment.success" }"#,
        )
        .unwrap();
        let a = body().into_event(None, 1).unwrap().event_id;
        assert_eq!(a, reordered.into_event(None, 2).unwrap().event_id);
        let mut other = body();
        other.amount = 1001;
        assert_ne!(a, other.into_event(None, 1).unwrap().event_id);
    }

    #[test]
    fn validation_names_the_field() {
        let cases: [(fn(&mut WebhookBody), &str); 7] = [
            (|b| b.event_type = "payment.unknown".into(), "event_type"),
            (|b| b.event_type = "payment.disputed".into(), "event_type"),
            (|b| b.payment_id = String::new(), "payment_id"),
            (|b| b.order_id = "a b".into(), "order_id"),
            (|b| b.amount = -1, "amount"),
            (|b| b.currency = "usd".into(), "currency"),
            (|b| b.event_id = Some("x".repeat(MAX_ID_LEN + 1)), "event_id"),
        ];
        for (mutate, field) in cases {
            let mut b = body();
            mutate(&mut b);
            assert_eq!(b.into_event(None, 0).unwrap_err().field, field);
        }
    }

    #[test]
    fn queue_encoding_round_trips() {
        let e = body().into_event(Some("msg_1"), 42).unwrap();
        let bytes = serde_json::to_vec(&e).unwrap();
        assert_eq!(serde_json::from_slice::<PaymentEvent>(&bytes).unwrap(), e);
    }

    #[test]
    fn records_without_a_request_id_still_decode_and_new_ones_keep_it() {
        let old = r#"{"event_id":"evt_1","event_type":"payment.success","payment_id":"pay_1","order_id":"order_1","amount":1000,"currency":"USD","received_at_us":7}"#;
        let e: PaymentEvent = serde_json::from_str(old).unwrap();
        assert_eq!((e.request_id.as_deref(), e.traceparent.as_deref()), (None, None));
        assert_eq!(serde_json::to_string(&e).unwrap(), old, "absent fields are not written");
        let traced = PaymentEvent { request_id: Some("req-1".into()), traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()), ..e };
        let back: PaymentEvent = serde_json::from_slice(&serde_json::to_vec(&traced).unwrap()).unwrap();
        assert_eq!(back, traced);
    }
}
