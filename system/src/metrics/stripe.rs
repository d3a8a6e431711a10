//! Stripe's counters: Prometheus families for `/metrics`, and the same counts by name for
//! `/api/stats` (a family cannot list its labels). The Stripe route counts; this keeps them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;

/// Distinct event types or API versions counted by name; more are counted as `other`, so a
/// flood of made-up names cannot grow the metrics without bound.
const MAX_LABELS: usize = 64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TypeLabels {
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    api_version: String,
}

/// Stripe's counters: Prometheus families for `/metrics`, and the same counts by name for
/// `/api/stats` (a family cannot list its labels).
#[derive(Clone, Default)]
pub struct StripeCounters {
    ignored: Family<TypeLabels, Counter>,
    api_versions: Family<VersionLabels, Counter>,
    for_operator: Counter,
    seen: Arc<Mutex<StripeStats>>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StripeStats {
    /// Events of types this system does not handle, answered 200, by type.
    pub ignored: BTreeMap<String, u64>,
    /// Every event read, by the API version Stripe rendered it with (`none` when unpinned).
    pub api_versions: BTreeMap<String, u64>,
    /// Events recorded as dead letters at ingress (no order id, unknown dispute outcome).
    pub for_operator: u64,
}

impl StripeCounters {
    pub fn register(&self, r: &mut Registry) {
        r.register("stripe_ignored", "Stripe events of types not handled, answered 200, by type", self.ignored.clone());
        r.register("stripe_api_version", "Stripe events read, by API version", self.api_versions.clone());
        r.register("stripe_for_operator", "Stripe events recorded as dead letters at ingress", self.for_operator.clone());
    }

    pub fn ignored(&self, event_type: &str) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let event_type = count(&mut seen.ignored, event_type);
        self.ignored.get_or_create(&TypeLabels { event_type }).inc();
    }

    pub fn api_version(&self, version: Option<&str>) {
        let Ok(mut seen) = self.seen.lock() else { return };
        let api_version = count(&mut seen.api_versions, version.unwrap_or("none"));
        self.api_versions.get_or_create(&VersionLabels { api_version }).inc();
    }

    pub fn for_operator(&self) {
        self.for_operator.inc();
        if let Ok(mut seen) = self.seen.lock() {
            seen.for_operator += 1;
        }
    }

    pub fn stats(&self) -> StripeStats {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// Counts `name` in `map` under itself, or under `other` once the map is full; returns the label used.
fn count(map: &mut BTreeMap<String, u64>, name: &str) -> String {
    let name: String = name.chars().take(64).collect();
    let label = if map.contains_key(&name) || map.len() < MAX_LABELS { name } else { "other".to_owned() };
    *map.entry(label.clone()).or_default() += 1;
    label
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_names_are_bounded() {
        let mut map = BTreeMap::new();
        for i in 0..MAX_LABELS + 10 {
            count(&mut map, &format!("type.{i}"));
        }
        count(&mut map, "type.0");
        assert_eq!(map.len(), MAX_LABELS + 1);
        assert_eq!((map["other"], map["type.0"]), (10, 2));
    }
}
