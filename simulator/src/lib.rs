//! A deterministic simulator for the durable path (docs/simulator.md).
//!
//! The segment log's writer, recovery and reader, the embedded queue's consumer and the
//! worker loop, all the production code, run in one thread over a simulated disk
//! ([`disk`]), tokio's paused clock and a store model ([`store`]); a seed decides every
//! choice ([`rng`]), so a schedule ([`schedule`]) replays exactly from its seed, and its
//! [`trace`] hashes every operation to prove it. A share of the seeds runs a [`spool`]
//! schedule instead: the Kafka mode's spool and its drainer in front of a simulated
//! [`broker`].

pub mod broker;
pub mod disk;
pub mod rng;
pub mod schedule;
pub mod spool;
pub mod store;
pub mod trace;
