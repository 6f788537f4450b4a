//! One small pseudo-random generator (xorshift64*) for what needs variety, not secrecy: the
//! bench's masking keys and churn lifetimes, the client's reconnect jitter, the simulation's
//! choices. Nothing here may be used for keys, tokens or anything an attacker must not guess.

use std::time::{SystemTime, UNIX_EPOCH};

/// xorshift64*: a 64-bit state, a multiply on output; fast, statistically decent, not secure.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator that always yields the same sequence for the same seed.
    pub fn seeded(seed: u64) -> Self {
        // The state must never be zero; mix the seed so nearby seeds diverge at once.
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A generator seeded from the clock and the process id (different every run).
    pub fn from_time() -> Self {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Self::seeded(nanos ^ u64::from(std::process::id()).rotate_left(32))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..bound` (0 when `bound` is 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            0
        } else {
            self.next_u64() % bound
        }
    }

    /// A WebSocket masking key.
    pub fn mask(&mut self) -> [u8; 4] {
        (self.next_u64() as u32).to_le_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_sequence() {
        let (mut a, mut b) = (Rng::seeded(7), Rng::seeded(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
        assert_ne!(Rng::seeded(7).next_u64(), Rng::seeded(8).next_u64());
        assert_ne!(Rng::seeded(0).next_u64(), 0, "even a zero seed works");
    }

    #[test]
    fn values_spread_over_the_range() {
        let mut rng = Rng::seeded(42);
        let mut buckets = [0u32; 10];
        for _ in 0..10_000 {
            buckets[rng.below(10) as usize] += 1;
        }
        assert!(buckets.iter().all(|&n| (800..1200).contains(&n)), "{buckets:?}");
        assert_eq!(rng.below(0), 0);
    }
}
