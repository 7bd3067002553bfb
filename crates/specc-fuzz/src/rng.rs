//! A small seeded generator (splitmix64): campaigns repeat exactly for a
//! seed, and no dependency is needed for it.

pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5EED_5EED_5EED_5EED)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `1/n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
}

/// Values that break size and index arithmetic: zero and one, off-by-ones
/// around powers of two, the ends of i32 and i64, and products that wrap
/// (2^61 + 1 times 32 wraps to 32).
pub const INTERESTING_I64: &[i64] = &[
    0,
    1,
    2,
    3,
    -1,
    -2,
    7,
    16,
    255,
    256,
    4096,
    65535,
    65536,
    i32::MAX as i64,
    i32::MIN as i64,
    1 << 31,
    1 << 32,
    1 << 40,
    (1 << 61) + 1,
    1 << 62,
    i64::MAX,
    i64::MIN,
    i64::MIN + 1,
];
