//! Seeded randomness. A randomised test draws its seed with [`seed`] (or [`seed_or`]): the
//! number in an environment variable when one is set, so a failure can be replayed, else a
//! fresh one; either way the seed is printed as the setting that replays it (libtest shows a
//! test's output when it fails). One generator, [`Rng`], serves every test and child process.

/// Environment variable that fixes the seed of a randomised test whose suite names no
/// variable of its own.
pub const SEED_ENV: &str = "SHMLANE_SEED";

/// The number in the environment variable `var`, if set; fails the test if it is not a number
/// (a mistyped setting must not silently run the default).
pub fn env_u64(var: &str) -> Option<u64> {
    let value = std::env::var(var).ok()?;
    Some(value.parse().unwrap_or_else(|_| panic!("{var}={value:?} is not a number")))
}

/// The seed of a randomised run: [`env_u64`]`(var)` if set, else a fresh one (from the clock
/// and the pid). Prints `var=seed`, the setting that replays the run.
pub fn seed(var: &str) -> u64 {
    let seed = env_u64(var).unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    eprintln!("seed: {var}={seed} replays this run");
    seed
}

/// [`seed`], but `default` unless `var` is set: for tests whose cases stay the same from run
/// to run unless asked to explore others.
pub fn seed_or(var: &str, default: u64) -> u64 {
    let seed = env_u64(var).unwrap_or(default);
    eprintln!("seed: {var}={seed} replays this run");
    seed
}

/// A small seeded generator (SplitMix64: any seed, zero included, gives a full-period stream).
/// Not for cryptography; enough to draw test cases, timings and hostile bytes reproducibly.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `p` percent.
    pub fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }

    /// Fills `bytes` with random bytes.
    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn a_seed_gives_the_splitmix64_stream_so_recorded_seeds_replay() {
        // The reference outputs of SplitMix64 for seed 0.
        let mut rng = Rng::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        let (mut x, mut y) = ([0; 13], [0; 13]);
        a.fill(&mut x);
        b.fill(&mut y);
        assert_eq!(x, y);
        assert!((0..1000).all(|_| a.below(7) < 7));
    }
}
