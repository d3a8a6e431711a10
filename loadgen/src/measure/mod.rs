//! Measure: what loadgen records of its own requests and what it reads of the system's.
//!
//! - `stats`: histograms from each request's scheduled instant, timelines and the ledger.
//! - `client`: the system's HTTP API, for set-up, its figures and the end state.
//! - `sampler`: the system's queue depth, processing rate and end-to-end latency each second.
//! - `window`: the system's histograms over the run alone, subtracted and merged exactly.

pub mod client;
pub mod sampler;
pub mod stats;
pub mod window;
