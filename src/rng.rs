//! SplitMix64: the one seeded generator of the daemon and its simulator —
//! tiny, fair enough for queue-group picks and fault schedules, and
//! deterministic for a seed, so simulations and tests replay.

#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo))
    }

    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.below(den) < num
    }

    /// An index into `0..len` by multiply-shift (no modulo bias worth
    /// caring about at these sizes); `None` when `len` is 0.
    pub fn index(&mut self, len: usize) -> Option<usize> {
        (len > 0).then(|| ((u128::from(self.next_u64()) * len as u128) >> 64) as usize)
    }
}
