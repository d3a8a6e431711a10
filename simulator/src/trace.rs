//! The trace of a schedule: a hash over every operation (the determinism check) and the last
//! operations kept readable for a failure's report.

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

/// Operations kept for a failure's report.
const KEPT: usize = 60;

/// One operation (a fault's name starts with `!`): what, on what, and up to two numbers (offsets, lengths, outcomes).
#[derive(Debug, Clone)]
pub struct Op {
    pub what: &'static str,
    pub on: String,
    pub a: u64,
    pub b: u64,
}

#[derive(Debug, Default)]
struct Inner {
    hash: u64,
    count: u64,
    /// Operations that were faults (their names start with `!`).
    faults: u64,
    last: VecDeque<Op>,
}

/// Shared by the disk, the store model and the driver of one schedule.
#[derive(Debug, Clone, Default)]
pub struct Trace(Arc<Mutex<Inner>>);

impl Trace {
    pub fn record(&self, what: &'static str, on: &str, a: u64, b: u64) {
        let Ok(mut t) = self.0.lock() else { return };
        let mut h = t.hash ^ 0xcbf2_9ce4_8422_2325;
        for byte in what.bytes().chain(on.bytes()).chain(a.to_le_bytes()).chain(b.to_le_bytes()) {
            h = (h ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        t.hash = h;
        t.count += 1;
        t.faults += what.starts_with('!') as u64;
        if t.last.len() == KEPT {
            t.last.pop_front();
        }
        t.last.push_back(Op { what, on: on.to_owned(), a, b });
    }

    pub fn hash(&self) -> u64 {
        self.0.lock().map_or(0, |t| t.hash)
    }

    pub fn count(&self) -> u64 {
        self.0.lock().map_or(0, |t| t.count)
    }

    pub fn faults(&self) -> u64 {
        self.0.lock().map_or(0, |t| t.faults)
    }

    /// The last operations, one a line.
    pub fn tail(&self) -> String {
        let mut out = String::new();
        if let Ok(t) = self.0.lock() {
            let first = t.count - t.last.len() as u64;
            for (i, op) in t.last.iter().enumerate() {
                let _ = writeln!(out, "  #{:<6} {:<18} {:<32} {} {}", first + i as u64, op.what, op.on, op.a, op.b);
            }
        }
        out
    }
}
