//! loadgen: scenario-driven, open-loop load for the webhooks system, with HDR latency
//! measured from each request's scheduled instant and a check of the end state.
//!
//! Folders by stage, each importing only from the ones listed before it:
//! - `scenario`: the TOML description of an experiment.
//! - `workload`: the seeded event stream, its signatures, and the oracle of the rules.
//! - `verify`: the expected end state against the stored one.
//! - `target`: receivers that are not ours: how they name things, and their end state read
//!   one order and payment at a time.
//! - `measure`: loadgen's histograms and the system's own figures.
//! - `send`: the schedule and the open-loop sender.
//! - `report`: the report's files, charts and gates, and `compare` between two reports.
//! - `experiment`: one run start to end, the capacity search, the system's processes.
//! - `conform`: the conformance suite, one rule a payment receiver must keep per scenario.

pub mod conform;
pub mod experiment;
pub mod measure;
pub mod report;
pub mod scenario;
pub mod send;
pub mod target;
pub mod verify;
pub mod workload;

/// Exit code of a run whose gates failed, apart from crashes (1), as k6 does.
pub const GATES_FAILED: i32 = 99;

/// Exit code of a run that an `abort_on_fail` gate ended early; its report is still written.
pub const ABORTED: i32 = 98;

/// Exit code of `compare` when the two runs differ in scenario, seed, machine or CPU.
pub const NOT_COMPARABLE: i32 = 3;
