//! Faults set by the test: which operation fails, on which file, how many times.

/// The operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    Fsync,
}

/// Which files a fault applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    All,
    /// Files whose name (last path component) ends with this, e.g. `queue.db-wal` or `.log`.
    NameEndsWith(String),
}

impl Target {
    pub fn file(suffix: &str) -> Self {
        Self::NameEndsWith(suffix.to_owned())
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            Self::All => true,
            Self::NameEndsWith(s) => name.ends_with(s.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct Failing {
    op: Op,
    target: Target,
    /// `None`: until cleared.
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
pub(crate) struct Faults {
    failing: Vec<Failing>,
    /// Bytes that may still be written to matching files before writes get ENOSPC.
    space: Option<(Target, u64)>,
    /// How many operations were failed, for the test's assertions.
    pub injected: u64,
}

impl Faults {
    pub fn fail(&mut self, op: Op, target: Target, times: Option<u32>) {
        self.failing.push(Failing { op, target, remaining: times });
    }

    pub fn limit_space(&mut self, target: Target, bytes: u64) {
        self.space = Some((target, bytes));
    }

    pub fn clear(&mut self) {
        self.failing.clear();
        self.space = None;
    }

    /// The errno the operation must fail with, if any; consumes one use of a counted fault.
    pub fn check(&mut self, op: Op, name: &str, bytes: u64) -> Option<i32> {
        if let Some(f) = self.failing.iter_mut().find(|f| f.op == op && f.target.matches(name) && f.remaining != Some(0)) {
            if let Some(n) = f.remaining.as_mut() {
                *n -= 1;
            }
            self.injected += 1;
            return Some(libc::EIO);
        }
        if op == Op::Write {
            if let Some((target, left)) = self.space.as_mut() {
                if target.matches(name) {
                    if bytes > *left {
                        *left = 0;
                        self.injected += 1;
                        return Some(libc::ENOSPC);
                    }
                    *left -= bytes;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_fires_that_many_times_on_matching_files_only() {
        let mut f = Faults::default();
        f.fail(Op::Fsync, Target::file(".wal"), Some(1));
        assert_eq!(f.check(Op::Fsync, "queue.db", 0), None);
        assert_eq!(f.check(Op::Write, "a.wal", 10), None);
        assert_eq!(f.check(Op::Fsync, "a.wal", 0), Some(libc::EIO));
        assert_eq!(f.check(Op::Fsync, "a.wal", 0), None);
        assert_eq!(f.injected, 1);
    }

    #[test]
    fn writes_past_the_budget_get_enospc_until_cleared() {
        let mut f = Faults::default();
        f.limit_space(Target::All, 100);
        assert_eq!(f.check(Op::Write, "x", 60), None);
        assert_eq!(f.check(Op::Write, "x", 60), Some(libc::ENOSPC));
        assert_eq!(f.check(Op::Write, "x", 1), Some(libc::ENOSPC));
        f.clear();
        assert_eq!(f.check(Op::Write, "x", 1_000), None);
    }
}
