//! Schedule and send: when each request is due, and the open-loop sender that fires it over
//! hand-written HTTP/1.1.
//!
//! - `schedule`: each request's due instant (constant, ramp and burst phases).
//! - `engine`: the connection loops that claim due slots and send them; `alarm`: their timer.
//! - `wire`: the HTTP/1.1 connection and request template.
//! - `abort`: ends the load early when an `abort_on_fail` gate trips.

pub(crate) mod abort;
mod alarm;
pub mod engine;
pub mod schedule;
pub mod wire;
