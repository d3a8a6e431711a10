//! Experiment: one run start to end, and what it starts.
//!
//! - `run`: spawn or reach the system, set up, fire, drain, verify.
//! - `load`: one open-loop load, with its abort watcher and progress line.
//! - `capacity`: the capacity search, one load per rising step.
//! - `spawn`: the system's child processes and their CPU and memory.

pub mod capacity;
mod load;
pub mod run;
pub mod spawn;
