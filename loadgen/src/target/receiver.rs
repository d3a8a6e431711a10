//! How a receiver names things: the seed design's API by default, a small table in a scenario
//! (`[target.receiver]`) or a file (`loadgen conform --receiver`) for one that differs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::scenario::Signing;

/// Payment statuses loadgen's oracle speaks.
pub const PAYMENT_STATUSES: [&str; 4] = ["pending", "failed", "success", "refunded"];
/// Order statuses loadgen's oracle speaks.
pub const ORDER_STATUSES: [&str; 5] = ["pending", "payment_mismatch", "paid", "payment_conflict", "refunded"];

#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Receiver {
    /// Where webhooks are posted (default /api/webhooks/payment).
    pub webhook_path: String,
    /// Where orders are created, with the seed's body: `id`, `user_id`, `items`, `total_amount`
    /// (default /api/orders).
    pub create_order_path: String,
    /// One order, `{id}` replaced by its id (default /api/orders/{id}).
    pub order_path: String,
    /// One payment, `{id}` replaced by its id (default /api/payments/{id}).
    pub payment_path: String,
    /// A path that answers 2xx once the receiver is up; default: none, any HTTP answer to
    /// `order_path` will do.
    pub health_path: Option<String>,
    /// The status field of an order and of a payment (default `status`).
    pub status_field: String,
    /// The amount and currency fields of a payment (default `amount`, `currency`).
    pub amount_field: String,
    pub currency_field: String,
    /// A payment's list of recorded events, each with an `event_id`, when the receiver keeps
    /// one: duplicates recorded twice are then counted. Default: none (the seed keeps none).
    pub events_field: Option<String>,
    /// The receiver's payment status values mapped to loadgen's (pending, failed, success,
    /// refunded); a value missing here is compared as it is.
    pub payment_statuses: BTreeMap<String, String>,
    /// The receiver's order status values mapped to loadgen's (pending, payment_mismatch,
    /// paid, payment_conflict, refunded). The seed marks an order `failed` when its payment
    /// fails; loadgen's rules leave it `pending`.
    pub order_statuses: BTreeMap<String, String>,
    /// Reads in flight at once, 1 to 256 (default 16).
    pub concurrency: usize,
    /// Seconds one request may take before it counts as hung (default 5).
    pub request_timeout_s: f64,
    /// How webhooks are signed for this receiver (`loadgen conform` only; a load scenario
    /// has its own `[signing]`).
    #[serde(skip_serializing)]
    pub signing: Signing,
}

fn identity(values: &[&str]) -> BTreeMap<String, String> {
    values.iter().map(|v| (v.to_string(), v.to_string())).collect()
}

impl Default for Receiver {
    /// The seed design's API, as peers/seed serves it.
    fn default() -> Self {
        let mut order_statuses = identity(&["pending", "paid", "refunded"]);
        order_statuses.insert("failed".into(), "pending".into());
        Self {
            webhook_path: "/api/webhooks/payment".into(),
            create_order_path: "/api/orders".into(),
            order_path: "/api/orders/{id}".into(),
            payment_path: "/api/payments/{id}".into(),
            health_path: None,
            status_field: "status".into(),
            amount_field: "amount".into(),
            currency_field: "currency".into(),
            events_field: None,
            payment_statuses: identity(&PAYMENT_STATUSES),
            order_statuses,
            concurrency: 16,
            request_timeout_s: 5.0,
            signing: Signing::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("{0}")]
    Invalid(String),
}

impl Receiver {
    pub fn load(path: &std::path::Path) -> Result<Self, ReceiverError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ReceiverError::Read(name.clone(), e))?;
        let mut r: Self = toml::from_str(&text).map_err(|e| ReceiverError::Parse(name.clone(), e))?;
        if let Some(var) = &r.signing.secret_env {
            r.signing.secret = std::env::var(var).map_err(|_| ReceiverError::Invalid(format!("{name}: signing.secret_env names {var}, which is not set")))?;
        }
        let problems = r.problems();
        if problems.is_empty() {
            Ok(r)
        } else {
            Err(ReceiverError::Invalid(format!("{name}: {}", problems.join("; "))))
        }
    }

    /// Every field out of its range, by name.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (field, path) in [("webhook_path", &self.webhook_path), ("create_order_path", &self.create_order_path), ("order_path", &self.order_path), ("payment_path", &self.payment_path)] {
            if !path.starts_with('/') {
                out.push(format!("{field} must start with /"));
            }
        }
        for (field, path) in [("order_path", &self.order_path), ("payment_path", &self.payment_path)] {
            if !path.contains("{id}") {
                out.push(format!("{field} must contain {{id}}"));
            }
        }
        for (field, map, allowed) in [("payment_statuses", &self.payment_statuses, &PAYMENT_STATUSES[..]), ("order_statuses", &self.order_statuses, &ORDER_STATUSES[..])] {
            for (theirs, ours) in map {
                if !allowed.contains(&ours.as_str()) {
                    out.push(format!("{field}: `{theirs}` maps to `{ours}`, which is not one of {allowed:?}"));
                }
            }
        }
        if !(1..=256).contains(&self.concurrency) {
            out.push("concurrency must be 1 to 256".into());
        }
        if !(self.request_timeout_s > 0.0 && self.request_timeout_s <= 300.0) {
            out.push("request_timeout_s must be above 0 and at most 300".into());
        }
        out
    }

    /// The path of one order or payment: `template` with `{id}` replaced.
    pub fn path(template: &str, id: &str) -> String {
        template.replace("{id}", id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_the_seed_and_is_valid() {
        let r = Receiver::default();
        assert!(r.problems().is_empty(), "{:?}", r.problems());
        assert_eq!(r.order_statuses["failed"], "pending");
        assert_eq!(Receiver::path(&r.payment_path, "p1"), "/api/payments/p1");
    }

    #[test]
    fn a_mapping_to_a_status_loadgen_does_not_know_is_refused() {
        let r: Receiver = toml::from_str("payment_path = \"/pay\"\n[payment_statuses]\nsucceeded = \"succeeded\"").unwrap();
        let problems = r.problems().join("; ");
        assert!(problems.contains("payment_path must contain {id}") && problems.contains("`succeeded` maps to `succeeded`"), "{problems}");
        assert!(toml::from_str::<Receiver>("status = \"x\"").is_err(), "unknown keys are errors");
    }
}
