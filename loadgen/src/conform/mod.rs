//! `loadgen conform URL`: the rules a payment receiver must keep, one small scenario each
//! (`scenarios/conformance/*.toml`), run against any receiver and judged by loadgen's oracle.
//!
//! - `rule`: the scenario format; `cases`: what each rule sends and expects, per payment.
//! - `send`: one webhook at a time, signed, forged, malformed or abandoned unanswered.
//! - `execute`: one rule start to end; `report`: the table, JSON, Markdown and HTML, and
//!   the comparison with a list of failures known beforehand.

pub mod cases;
pub mod execute;
pub mod report;
pub mod rule;
pub mod send;

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::target::{Reader, Receiver};
use execute::{Outcome, Target};

pub struct Options {
    pub url: String,
    pub receiver: Receiver,
    pub restart: Option<String>,
    pub suite: PathBuf,
    /// Only the rules with these names (all when empty).
    pub only: Vec<String>,
}

/// Runs every rule of the suite in turn (one at a time: the crash rule restarts the worker
/// under the others' feet otherwise).
pub async fn run(o: &Options) -> anyhow::Result<Vec<Outcome>> {
    let rules = rule::suite(&o.suite)?;
    anyhow::ensure!(!rules.is_empty(), "no *.toml rules in {}", o.suite.display());
    for name in &o.only {
        anyhow::ensure!(rules.iter().any(|(_, r)| &r.name == name), "no rule named {name} in {}", o.suite.display());
    }
    if let Err(e) = crate::target::read::wait_ready(&o.url, &o.receiver).await {
        // Each rule then reports, request by request, what the receiver did instead.
        eprintln!("loadgen: {e:#}; running the rules anyway");
    }
    let target = Target { sender: send::Sender::new(&o.url, &o.receiver)?, reader: Reader::new(&o.url, &o.receiver, None)?, restart: o.restart.clone() };
    let nonce = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() % 0xFFF_FFFF).unwrap_or(0);
    let mut out = Vec::new();
    for (_, r) in rules.iter().filter(|(_, r)| o.only.is_empty() || o.only.contains(&r.name)) {
        let prefix = format!("cf{nonce:x}-{}", r.name);
        let outcome = execute::run(&target, r, &prefix).await;
        eprintln!("  {:<24} {}", outcome.name, report::verdict_word(outcome.verdict));
        out.push(outcome);
    }
    Ok(out)
}
