//! A conformance scenario: one rule a payment receiver must keep, in a small TOML file
//! (`scenarios/conformance/*.toml`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Short, as the table prints it.
    pub name: String,
    /// The rule in one sentence.
    pub about: String,
    /// Seconds the whole rule may take, sending, waiting and reading included, 1 to 600
    /// (default 60); past it the rule is reported unfinished, with what it found so far.
    #[serde(default = "sixty")]
    pub limit_s: f64,
    /// Seconds to wait for the end state to become what the rule expects once every event
    /// was sent and the receiver has processed a later one (default 3).
    #[serde(default = "three")]
    pub settle_s: f64,
    pub check: Check,
}

fn sixty() -> f64 {
    60.0
}

fn three() -> f64 {
    3.0
}

/// What the rule sends, and so what it checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Check {
    /// Every event sent `copies` times (2 to 10), one after another or all at once.
    Duplicates { payments: usize, copies: usize, concurrent: bool },
    /// Every ordered pair of two different event types, the later one delivered first.
    OutOfOrder,
    /// An event written and abandoned unanswered, the payment's next event, then the
    /// provider's retry of the first.
    SlowAnswer { payments: usize },
    /// A refund sent once the receiver shows the payment succeeded.
    RefundAfterSuccess { payments: usize },
    /// Successes whose amount or currency differ from the order's.
    Amounts,
    /// Valid bodies with every kind of wrong signature: refused, nothing applied.
    BadSignatures,
    /// Bodies that are not valid events: refused, nothing applied.
    Malformed,
    /// A stream of payments while the restart command kills and restarts the receiver's
    /// worker halfway through; skipped without a restart command.
    Crash { payments: usize, rate: f64 },
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0}: {1}")]
    Parse(String, toml::de::Error),
    #[error("{0}: {1}")]
    Invalid(String, String),
}

impl Rule {
    pub fn load(path: &Path) -> Result<Self, RuleError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RuleError::Read(name.clone(), e))?;
        let rule: Self = toml::from_str(&text).map_err(|e| RuleError::Parse(name.clone(), e))?;
        rule.validate().map_err(|e| RuleError::Invalid(name, e))?;
        Ok(rule)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1.0..=600.0).contains(&self.limit_s) || !(0.0..=self.limit_s).contains(&self.settle_s) {
            return Err("limit_s must be 1 to 600 and settle_s 0 to limit_s".into());
        }
        match self.check {
            Check::Duplicates { payments, copies, .. } if !(1..=1000).contains(&payments) || !(2..=10).contains(&copies) => Err("duplicates: payments 1 to 1000, copies 2 to 10".into()),
            Check::SlowAnswer { payments } | Check::RefundAfterSuccess { payments } if !(1..=1000).contains(&payments) => Err("payments must be 1 to 1000".into()),
            Check::Crash { payments, rate } if !(1..=100_000).contains(&payments) || !(rate > 0.0 && rate <= 10_000.0) => Err("crash: payments 1 to 100000, rate above 0 and at most 10000".into()),
            _ => Ok(()),
        }
    }
}

/// The suite: every `*.toml` of `dir` (receiver files in sub-folders are not rules), by name.
pub fn suite(dir: &Path) -> Result<Vec<(PathBuf, Rule)>, RuleError> {
    let listing = std::fs::read_dir(dir).map_err(|e| RuleError::Read(dir.display().to_string(), e))?;
    let mut paths: Vec<PathBuf> = listing.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "toml")).collect();
    paths.sort();
    paths.into_iter().map(|p| Rule::load(&p).map(|r| (p, r))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_checked_in_rule_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/conformance");
        let rules = suite(&dir).unwrap();
        assert!(rules.len() >= 8, "{} rules", rules.len());
        let mut names: Vec<&str> = rules.iter().map(|(_, r)| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rules.len(), "rule names are unique");
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let bad = "name = \"d\"\nabout = \"x\"\n[check]\nkind = \"duplicates\"\npayments = 3\ncopies = 1\nconcurrent = false";
        let rule: Rule = toml::from_str(bad).unwrap();
        assert!(rule.validate().unwrap_err().contains("copies 2 to 10"));
        assert!(toml::from_str::<Rule>("name = \"d\"\nabout = \"x\"\n[check]\nkind = \"teleport\"").is_err());
    }
}
