//! One gate's verdict, as report.json, report.md and the JUnit file show it.

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct GateResult {
    pub gate: String,
    pub limit: f64,
    pub value: f64,
    pub pass: bool,
}
