//! Stripe's event envelope for the load (docs/stripe.md): the documented shape, written from
//! the ids and amounts that change into a reused buffer, as the flat body is. Each rank of the
//! oracle has one or more Stripe types that express it (its forms), and the generator picks
//! one per event, so that a resend is byte-identical.

use std::fmt::Display;
use std::io::{self, Write};

use crate::workload::oracle::EventType;

/// Stripe's `created` for a payment's events: the payment's slot plus the event's rank. Every
/// story's ranks rise in the order Stripe would create its events, so the time Stripe created
/// an event and its rank agree, and a shuffled delivery still ends as ranks alone say.
const CREATED_BASE: i64 = 1_760_000_000;

/// The API version every event of the load is rendered with.
const API_VERSION: &str = "2024-06-20";

/// Event types the system does not handle, each with the object it would carry; every one
/// names a payment of the run with an amount of 1, so that one applied by mistake shows as a
/// wrong state as well as a miscount.
pub const IGNORED: [&str; 5] = ["payment_intent.created", "charge.captured", "charge.dispute.funds_withdrawn", "charge.refund.updated", "customer.created"];

/// Signed correctly, each wrong in one way the route must refuse with a 4xx.
pub const INVALID: u8 = 5;

/// How many Stripe types (or field values) express a rank.
pub fn forms(ty: EventType) -> u8 {
    match ty {
        EventType::Pending | EventType::DisputeLost => 1,
        EventType::Failed => 3,
        EventType::Success | EventType::PartiallyRefunded | EventType::Refunded | EventType::Disputed | EventType::DisputeWon => 2,
    }
}

/// The names of one payment's objects: its PaymentIntent, charge and dispute.
pub struct Objects<'a> {
    pub prefix: &'a str,
    pub payment: u32,
}

impl Objects<'_> {
    fn pi(&self) -> String {
        payment_intent(self.prefix, self.payment)
    }
}

/// The PaymentIntent id that is the payment's id in the system.
pub fn payment_intent(prefix: &str, p: u32) -> String {
    format!("pi_{prefix}-p{p}")
}

/// Writes the envelope of a handled event: `ty` in its `form`, for `amount` in `currency`.
pub fn event(out: &mut Vec<u8>, id: &str, o: &Objects, order: &dyn Display, (ty, form): (EventType, u8), amount: i64, currency: &str) -> io::Result<()> {
    let created = CREATED_BASE + i64::from(o.payment) * 8 + ty as i64;
    let (pi, p, pfx) = (o.pi(), o.payment, o.prefix);
    let cur = currency.to_ascii_lowercase();
    let meta = format!(r#""metadata":{{"order_id":"{order}"}}"#);
    let charge = |refunded: i64, full: bool| {
        format!(r#"{{"id":"ch_{pfx}-p{p}","object":"charge","amount":{amount},"amount_refunded":{refunded},"currency":"{cur}","refunded":{full},"payment_intent":"{pi}","status":"succeeded",{meta}}}"#)
    };
    let intent = |status: &str| format!(r#"{{"id":"{pi}","object":"payment_intent","amount":{amount},"currency":"{cur}","status":"{status}",{meta}}}"#);
    let dispute = |status: &str| {
        format!(r#"{{"id":"dp_{pfx}-p{p}","object":"dispute","amount":{amount},"currency":"{cur}","charge":"ch_{pfx}-p{p}","payment_intent":"{pi}","status":"{status}",{meta}}}"#)
    };
    let (kind, object) = match (ty, form) {
        (EventType::Pending, _) => ("payment_intent.processing", intent("processing")),
        (EventType::Failed, 0) => ("payment_intent.payment_failed", intent("requires_payment_method")),
        (EventType::Failed, 1) => ("payment_intent.canceled", intent("canceled")),
        (EventType::Failed, _) => ("charge.failed", charge(0, false).replace(r#""status":"succeeded""#, r#""status":"failed""#)),
        (EventType::Success, 0) => ("payment_intent.succeeded", intent("succeeded")),
        (EventType::Success, _) => ("charge.succeeded", charge(0, false)),
        (EventType::PartiallyRefunded, f) => ("charge.refunded", charge(amount * (i64::from(f) + 1) / 3, false)),
        // A full refund: Stripe's flag, or the whole amount back with the flag not (yet) set.
        (EventType::Refunded, f) => ("charge.refunded", charge(amount, f == 0)),
        (EventType::Disputed, f) => ("charge.dispute.created", dispute(if f == 0 { "needs_response" } else { "warning_needs_response" })),
        (EventType::DisputeWon, f) => ("charge.dispute.closed", dispute(if f == 0 { "won" } else { "warning_closed" })),
        (EventType::DisputeLost, _) => ("charge.dispute.closed", dispute("lost")),
    };
    envelope(out, id, kind, created, false, &object)
}

/// Writes an event of a type the system does not handle, about payment `o`.
pub fn ignored(out: &mut Vec<u8>, id: &str, o: &Objects, order: &dyn Display, variant: u8) -> io::Result<()> {
    let (pi, p, pfx) = (o.pi(), o.payment, o.prefix);
    let meta = format!(r#""metadata":{{"order_id":"{order}"}}"#);
    let kind = IGNORED[usize::from(variant) % IGNORED.len()];
    let object = match kind {
        "payment_intent.created" => format!(r#"{{"id":"{pi}","object":"payment_intent","amount":1,"currency":"usd","status":"requires_payment_method",{meta}}}"#),
        "charge.captured" => format!(r#"{{"id":"ch_{pfx}-p{p}","object":"charge","amount":1,"amount_refunded":0,"currency":"usd","refunded":false,"payment_intent":"{pi}",{meta}}}"#),
        "charge.dispute.funds_withdrawn" => format!(r#"{{"id":"dp_{pfx}-p{p}","object":"dispute","amount":1,"currency":"usd","charge":"ch_{pfx}-p{p}","payment_intent":"{pi}","status":"lost",{meta}}}"#),
        "charge.refund.updated" => format!(r#"{{"id":"re_{pfx}-p{p}","object":"refund","amount":1,"currency":"usd","charge":"ch_{pfx}-p{p}","payment_intent":"{pi}","status":"succeeded"}}"#),
        _ => format!(r#"{{"id":"cus_{pfx}-p{p}","object":"customer","email":null,{meta}}}"#),
    };
    envelope(out, id, kind, CREATED_BASE + i64::from(p) * 8, false, &object)
}

/// Writes refused bodies: each is signed, so only its content is wrong.
pub fn invalid(out: &mut Vec<u8>, id: &str, prefix: &str, variant: u8) -> io::Result<()> {
    let pi = payment_intent(prefix, 0);
    let meta = format!(r#""metadata":{{"order_id":"{prefix}-o0"}}"#);
    let good = format!(r#"{{"id":"{pi}","object":"payment_intent","amount":5,"currency":"usd",{meta}}}"#);
    match variant {
        // A string where Stripe sends an integer in the smallest currency unit.
        0 => envelope(out, id, "payment_intent.succeeded", CREATED_BASE, false, &good.replace(r#""amount":5"#, r#""amount":"5""#)),
        1 => envelope(out, id, "payment_intent.succeeded", CREATED_BASE, false, &good.replace(r#""currency":"usd""#, r#""currency":"dollars""#)),
        // A known event type carrying an object of another type.
        2 => envelope(out, id, "charge.succeeded", CREATED_BASE, false, &good),
        // Live-mode data at an endpoint that serves test mode.
        3 => envelope(out, id, "payment_intent.succeeded", CREATED_BASE, true, &good),
        _ => write!(out, r#"{{"id":"{id}","object":"event","type":"payment_intent.succeeded","data":{{"object":"#),
    }
}

/// Writes a well-formed event for payment 0, for the forged signature.
pub fn forged(out: &mut Vec<u8>, id: &str, prefix: &str) -> io::Result<()> {
    let pi = payment_intent(prefix, 0);
    let object = format!(r#"{{"id":"{pi}","object":"payment_intent","amount":1,"currency":"usd","metadata":{{"order_id":"{prefix}-o0"}}}}"#);
    envelope(out, id, "payment_intent.succeeded", CREATED_BASE, false, &object)
}

fn envelope(out: &mut Vec<u8>, id: &str, kind: &str, created: i64, livemode: bool, object: &str) -> io::Result<()> {
    write!(
        out,
        r#"{{"id":"{id}","object":"event","api_version":"{API_VERSION}","created":{created},"livemode":{livemode},"pending_webhooks":1,"request":{{"id":null,"idempotency_key":null}},"type":"{kind}","data":{{"object":{object}}}}}"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn parsed(out: &[u8]) -> Value {
        serde_json::from_slice(out).expect("valid JSON")
    }

    #[test]
    fn every_form_of_every_rank_is_the_documented_envelope() {
        use EventType::*;
        for ty in [Pending, Failed, Success, PartiallyRefunded, Refunded, Disputed, DisputeWon, DisputeLost] {
            for form in 0..forms(ty) {
                let mut out = Vec::new();
                event(&mut out, "evt_x-e1", &Objects { prefix: "x", payment: 3 }, &"x-o2", (ty, form), 900, "USD").unwrap();
                let v = parsed(&out);
                let o = &v["data"]["object"];
                assert_eq!((v["id"].as_str(), v["object"].as_str(), v["livemode"].as_bool()), (Some("evt_x-e1"), Some("event"), Some(false)));
                assert_eq!((o["amount"].as_i64(), o["currency"].as_str(), o["metadata"]["order_id"].as_str()), (Some(900), Some("usd"), Some("x-o2")));
                let pi = o["payment_intent"].as_str().or(o["id"].as_str().filter(|_| o["object"] == "payment_intent"));
                assert_eq!(pi, Some("pi_x-p3"), "{ty:?} {form}: every object names the payment's intent");
                let refunded = o["amount_refunded"].as_i64();
                match ty {
                    PartiallyRefunded => assert!(refunded.is_some_and(|r| r > 0 && r < 900) && o["refunded"] == false),
                    Refunded => assert!(refunded == Some(900)),
                    _ => {}
                }
            }
        }
    }

    #[test]
    fn ignored_and_invalid_bodies_are_what_they_claim() {
        for variant in 0..IGNORED.len() as u8 {
            let mut out = Vec::new();
            ignored(&mut out, "evt_x-e9", &Objects { prefix: "x", payment: 1 }, &"x-o1", variant).unwrap();
            assert_eq!(parsed(&out)["type"].as_str(), Some(IGNORED[variant as usize]));
        }
        let bodies: Vec<Vec<u8>> = (0..INVALID)
            .map(|v| {
                let mut out = Vec::new();
                invalid(&mut out, "evt_x-bad", "x", v).unwrap();
                out
            })
            .collect();
        assert!(parsed(&bodies[0])["data"]["object"]["amount"].is_string());
        assert_eq!(parsed(&bodies[2])["data"]["object"]["object"], "payment_intent");
        assert_eq!(parsed(&bodies[3])["livemode"], true);
        assert!(serde_json::from_slice::<Value>(&bodies[4]).is_err());
    }
}
