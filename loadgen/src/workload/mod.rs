//! Workload and oracle: what is sent, and what the system must make of it.
//!
//! - `generator`: the seeded stream of events and what the system must do with each.
//! - `oracle`: loadgen's own model of the payment and order rules.
//! - `sign`: the requests' signatures, made as a payment provider makes them.
//! - `stripe`: Stripe's event envelope, for `format = "stripe"`.

pub mod generator;
pub mod oracle;
pub mod sign;
pub mod stripe;
