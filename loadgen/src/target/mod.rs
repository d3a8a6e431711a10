//! Receivers that are not ours: how to reach one and read its end state.
//!
//! - `receiver`: the mapping from a receiver's paths, fields and status values to ours; by
//!   default the seed design's API (peers/seed).
//! - `read`: its orders and payments read one at a time, with bounded concurrency, each
//!   answer normalised or reported as what came back.
//! - `check`: the expected end state (loadgen's oracle) against what was read.
//! - `verify`: a load run's end-state check, payment by payment and order by order.

pub mod check;
pub mod read;
pub mod receiver;
pub mod verify;

pub use read::{Observed, Reader, Reading};
pub use receiver::Receiver;
