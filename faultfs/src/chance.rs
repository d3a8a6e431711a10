//! Seeded choices that replay. Each choice is a hash of the seed and of the question asked
//! (which cut, which file, which page), not the next number of one stream: the answer for a
//! page does not depend on how many other pages happened to be dirty, so a replay under a
//! slightly different timing still makes the same choices where it asks the same questions.

/// Answers yes-or-no questions as the seed decides.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chance {
    seed: u64,
}

impl Chance {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// A uniform draw in `[0, 2^64)` for the question named by `parts`.
    pub fn draw(&self, parts: &[u64]) -> u64 {
        parts.iter().fold(mix(self.seed), |h, &p| mix(h ^ mix(p)))
    }

    /// True with probability `quarters / 4` for this question.
    pub fn quarters(&self, quarters: u64, parts: &[u64]) -> bool {
        self.draw(parts) % 4 < quarters
    }
}

/// SplitMix64's finaliser: every input bit moves about half of the output bits.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable number for a name (FNV-1a), so that a file's choices follow its path.
pub(crate) fn name_key(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_question_gets_the_same_answer_and_seeds_differ() {
        let (a, b) = (Chance::new(1), Chance::new(2));
        assert_eq!(a.draw(&[3, 4]), a.draw(&[3, 4]));
        assert_ne!(a.draw(&[3, 4]), b.draw(&[3, 4]));
        assert_ne!(a.draw(&[3, 4]), a.draw(&[4, 3]));
        let yes = (0..4_000).filter(|&i| a.quarters(2, &[i])).count();
        assert!((1_800..2_200).contains(&yes), "about half: {yes}");
        assert!((0..100).all(|i| !a.quarters(0, &[i]) && a.quarters(4, &[i])));
    }
}
