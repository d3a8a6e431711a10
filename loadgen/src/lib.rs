//! loadgen: scenario-driven, open-loop load for the webhooks system, with HDR latency
//! measured from each request's scheduled instant and a check of the end state.
//!
//! - `scenario`: the TOML description of an experiment.
//! - `plan`: when each request is due (constant, ramp, burst phases).
//! - `workload`: the seeded stream of events and what the system must do with each.
//! - `run`: spawn or reach the system, set up, fire, drain, verify; `engine`: the
//!   connection loops that fire, over `wire`'s hand-written HTTP/1.1; `sign`: loadgen's own request signing.
//! - `oracle`: loadgen's own model of the payment and order rules; `stats`: histograms
//!   and timelines; `sampler`: the system's queue depth, processing rate and end-to-end
//!   latency once a second; `charts`: the report's SVG charts; `verify`: the expected end state against the stored one; `report`: files
//!   and gates; `compare`: regression checks between two reports; `spawn`: child processes;
//!   `window`: the system's histograms over the run alone, subtracted and merged exactly;
//!   `export`: the files for other tools (timeline NDJSON and CSV, HDR interval log, JUnit).

mod abort;
mod alarm;
pub mod capacity;
pub mod charts;
pub mod compare;
pub mod engine;
pub mod export;
pub mod oracle;
pub mod plan;
pub mod report;
pub mod run;
pub mod sampler;
pub mod scenario;
pub mod sign;
pub mod spawn;
pub mod stats;
pub mod verify;
pub mod wire;
pub mod window;
pub mod workload;

/// Exit code of a run whose gates failed, apart from crashes (1), as k6 does.
pub const GATES_FAILED: i32 = 99;

/// Exit code of a run that an `abort_on_fail` gate ended early; its report is still written.
pub const ABORTED: i32 = 98;

/// Exit code of `compare` when the two runs differ in scenario, seed, machine or CPU.
pub const NOT_COMPARABLE: i32 = 3;
