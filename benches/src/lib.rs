//! Shared fixtures for the benches in `benches/`: sample events, bodies and signed headers.

use webhooks::domain::{EventType, PaymentEvent};

pub const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const STRIPE_SECRET: &str = "whsec_stripe_bench_secret";

pub fn body(i: usize) -> String {
    format!(
        r#"{{"event_type":"payment.success","payment_id":"pay_{i}","order_id":"order_{i}","amount":1000,"currency":"USD","event_id":"evt_{i}"}}"#
    )
}

pub fn event(i: usize) -> PaymentEvent {
    PaymentEvent {
        event_id: format!("evt_{i}"),
        event_type: EventType::Success,
        payment_id: format!("pay_{i}"),
        order_id: format!("order_{}", i / 2),
        amount: 1000,
        currency: "USD".into(),
        created_at: None,
        received_at_us: 0,
        request_id: None,
        traceparent: None,
    }
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}
