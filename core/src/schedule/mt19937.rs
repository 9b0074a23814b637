//! CPython's `random.Random` generator, as far as the schedule needs it.
//!
//! CPython seeds MT19937 with `init_by_array` over the 32-bit words of
//! `abs(seed)`, least significant first (seed 0 gives the key `[0]`),
//! `getrandbits(k <= 32)` keeps the top `k` bits of one output, and
//! `randint(a, b)` is `a + _randbelow(b - a + 1)`, which draws
//! `getrandbits(bit_length(n))` until the value is below `n`.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// A Mersenne Twister that produces the same stream as CPython's
/// `random.Random(seed)` for a non-negative integer seed.
///
/// The state is 2.5 KB; it lives on the caller's stack only while a port
/// list is drawn.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; N],
    index: usize,
}

impl Mt19937 {
    /// Seeds the generator the way `random.Random(seed)` does for an integer
    /// seed that fits in 64 bits.
    pub fn from_seed(seed: u64) -> Self {
        let low = seed as u32;
        let high = (seed >> 32) as u32;
        if high == 0 {
            Self::from_key(&[low])
        } else {
            Self::from_key(&[low, high])
        }
    }

    fn init_genrand(seed: u32) -> Self {
        let mut state = [0u32; N];
        state[0] = seed;
        for i in 1..N {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: N }
    }

    /// `init_by_array` from the reference implementation (and CPython).
    ///
    /// # Panics
    /// If `key` is empty (CPython never passes an empty key).
    pub fn from_key(key: &[u32]) -> Self {
        assert!(!key.is_empty(), "init_by_array needs at least one word");
        let mut mt = Self::init_genrand(19_650_218);
        let s = &mut mt.state;
        let mut i = 1usize;
        let mut j = 0usize;
        for _ in 0..N.max(key.len()) {
            let prev = s[i - 1];
            s[i] = (s[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = s[i - 1];
            s[i] =
                (s[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                s[0] = s[N - 1];
                i = 1;
            }
        }
        s[0] = 0x8000_0000;
        mt
    }

    fn twist(&mut self) {
        let s = &mut self.state;
        for k in 0..N {
            let y = (s[k] & UPPER_MASK) | (s[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 0 { 0 } else { MATRIX_A };
            s[k] = s[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The next 32-bit output (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// CPython's `getrandbits(k)` for `1 <= k <= 32`.
    ///
    /// # Panics
    /// If `k` is 0 or above 32.
    pub fn getrandbits(&mut self, k: u32) -> u32 {
        assert!(
            (1..=32).contains(&k),
            "getrandbits supports 1..=32 bits here"
        );
        self.next_u32() >> (32 - k)
    }

    /// CPython's `_randbelow(n)`: uniform in `0..n` by rejection.
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        assert!(n > 0, "randbelow(0) is empty");
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.getrandbits(k);
            if r < n {
                return r;
            }
        }
    }

    /// CPython's `randint(low, high)`, both ends included.
    ///
    /// # Panics
    /// If `high < low` or the span does not fit in 32 bits.
    pub fn randint(&mut self, low: u32, high: u32) -> u32 {
        assert!(
            high >= low && high - low < u32::MAX,
            "randint span out of range"
        );
        low + self.randbelow(high - low + 1)
    }
}
