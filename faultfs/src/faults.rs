//! Faults set by the test: which operation fails, on which file, how many times; how much
//! space is left; which bytes of the disk read back damaged.

/// The operations a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Write,
    /// fsync or fdatasync of a file.
    Fsync,
    /// fsync of a directory (FUSE's fsyncdir): its entries stay as volatile as before.
    SyncDir,
}

/// What the disk returns for a damaged byte: a latent sector error or silent corruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The read covering it fails with EIO.
    Eio,
    /// The byte reads back XORed with this mask.
    Flip(u8),
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
    /// Bytes by which matching files may still grow before writes get ENOSPC.
    space: Option<(Target, u64)>,
    /// Byte offsets of matching files that read back damaged from the disk.
    damaged: Vec<(Target, u64, Damage)>,
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

    pub fn damage(&mut self, target: Target, offset: u64, damage: Damage) {
        self.damaged.push((target, offset, damage));
    }

    pub fn clear(&mut self) {
        self.failing.clear();
        self.space = None;
        self.damaged.clear();
    }

    /// The errno the operation must fail with, if any; consumes one use of a counted fault.
    pub fn check(&mut self, op: Op, name: &str) -> Option<i32> {
        let f = self.failing.iter_mut().find(|f| f.op == op && f.target.matches(name) && f.remaining != Some(0))?;
        if let Some(n) = f.remaining.as_mut() {
            *n -= 1;
        }
        self.injected += 1;
        Some(libc::EIO)
    }

    /// How many of `bytes` fit, as Linux writes them: the part that fits, and ENOSPC only when
    /// nothing does. The first `inside` bytes overwrite the file within its size, which takes no
    /// new space (its blocks are allocated already); the rest grows it.
    pub fn take_space(&mut self, name: &str, bytes: u64, inside: u64) -> Result<u64, i32> {
        let Some((_, left)) = self.space.as_mut().filter(|(t, _)| t.matches(name)) else {
            return Ok(bytes);
        };
        let inside = inside.min(bytes);
        let grows = bytes - inside;
        if grows > *left {
            self.injected += 1;
        }
        if inside == 0 && *left == 0 && bytes > 0 {
            return Err(libc::ENOSPC);
        }
        let taken = grows.min(*left);
        *left -= taken;
        Ok(inside + taken)
    }

    /// The damaged bytes of file `name` within `start..end`.
    pub fn damaged_in(&self, name: &str, start: u64, end: u64) -> Vec<(u64, Damage)> {
        self.damaged.iter().filter(|(t, at, _)| t.matches(name) && (start..end).contains(at)).map(|&(_, at, d)| (at, d)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_fault_fires_that_many_times_on_matching_files_only() {
        let mut f = Faults::default();
        f.fail(Op::Fsync, Target::file(".wal"), Some(1));
        assert_eq!(f.check(Op::Fsync, "queue.db"), None);
        assert_eq!(f.check(Op::Write, "a.wal"), None);
        assert_eq!(f.check(Op::Fsync, "a.wal"), Some(libc::EIO));
        assert_eq!(f.check(Op::Fsync, "a.wal"), None);
        assert_eq!(f.injected, 1);
    }

    #[test]
    fn a_write_crossing_the_budget_is_short_and_the_next_gets_enospc_until_cleared() {
        let mut f = Faults::default();
        f.limit_space(Target::file(".seg"), 100);
        assert_eq!(f.take_space("a.db", 1_000, 0), Ok(1_000), "other files have room");
        assert_eq!(f.take_space("a.seg", 60, 0), Ok(60));
        assert_eq!(f.take_space("a.seg", 60, 0), Ok(40), "the part that fits");
        assert_eq!(f.take_space("a.seg", 1, 0), Err(libc::ENOSPC));
        assert_eq!(f.take_space("a.seg", 50, 50), Ok(50), "overwriting takes no new space");
        assert_eq!(f.take_space("a.seg", 50, 20), Ok(20), "the overwritten part, short");
        f.clear();
        assert_eq!(f.take_space("a.seg", 1_000, 0), Ok(1_000));
    }

    #[test]
    fn damage_is_found_by_file_and_range() {
        let mut f = Faults::default();
        f.damage(Target::file(".seg"), 10, Damage::Flip(1));
        f.damage(Target::file(".seg"), 20, Damage::Eio);
        assert_eq!(f.damaged_in("1.seg", 0, 10), []);
        assert_eq!(f.damaged_in("1.seg", 10, 21), [(10, Damage::Flip(1)), (20, Damage::Eio)]);
        assert_eq!(f.damaged_in("1.db", 0, 100), []);
    }
}
