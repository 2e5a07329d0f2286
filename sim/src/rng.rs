//! A small seeded PRNG: xoshiro256++ seeded through splitmix64 (Blackman and Vigna).
//!
//! Not cryptographic; fast, 256 bits of state, and reproducible from a `u64` seed, which is
//! all a Monte Carlo run needs. Written out here so the crate needs no `rand`.

/// splitmix64: used to expand seeds and to derive independent per-chunk streams.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
}

/// splitmix64's output function: a bijective 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xoshiro256++.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose 256-bit state is four splitmix64 outputs from `seed` (never all
    /// zero: splitmix64 is a bijection of a counter, so four consecutive outputs differ).
    pub(crate) fn from_seed(seed: u64) -> Self {
        let mut sm = SplitMix64::new(seed);
        Self {
            s: [sm.next_u64(), sm.next_u64(), sm.next_u64(), sm.next_u64()],
        }
    }

    /// The generator for chunk `chunk` of stream `stream` of a run seeded with `seed`.
    /// Chunks of one run, and the streams of one seed, are seeded far apart.
    pub(crate) fn for_chunk(seed: u64, stream: u64, chunk: u64) -> Self {
        Self::from_seed(mix64(mix64(seed ^ mix64(stream)) ^ chunk))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[0].wrapping_add(s[3]).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform on (0, 1]: never 0, so `ln` of it is finite.
    #[inline]
    pub(crate) fn open01(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform on [0, 1).
    #[inline]
    pub(crate) fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Exponential with rate `rate` (> 0): mean `1 / rate`.
    #[inline]
    pub(crate) fn exp(&mut self, rate: f64) -> f64 {
        -self.open01().ln() / rate
    }

    /// Uniform on `0..n` (`n > 0`), exactly: Lemire's multiply-shift with rejection.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        let mut m = u128::from(self.next_u64()) * u128::from(n);
        if (m as u64) < n {
            let floor = n.wrapping_neg() % n;
            while (m as u64) < floor {
                m = u128::from(self.next_u64()) * u128::from(n);
            }
        }
        (m >> 64) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_reference_values() {
        // First outputs of splitmix64 seeded with 0 (reference implementation by Vigna).
        let mut sm = SplitMix64::new(0);
        assert_eq!(sm.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(sm.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(sm.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro_reference_values() {
        // xoshiro256++ from state [1, 2, 3, 4] (as in the reference test vectors).
        let mut r = Rng { s: [1, 2, 3, 4] };
        let got: Vec<u64> = (0..4).map(|_| r.next_u64()).collect();
        assert_eq!(
            got,
            [
                41_943_041,
                58_720_359,
                3_588_806_011_781_223,
                3_591_011_842_654_386
            ]
        );
    }

    #[test]
    fn draws_have_the_right_moments() {
        let mut r = Rng::from_seed(7);
        let n = 200_000;
        let (mut su, mut se) = (0.0, 0.0);
        for _ in 0..n {
            let u = r.open01();
            assert!(u > 0.0 && u <= 1.0);
            su += u;
            se += r.exp(4.0);
        }
        let (mu, me) = (su / f64::from(n), se / f64::from(n));
        // Standard errors: 0.29 / sqrt(n) = 6.5e-4 and 0.25 / sqrt(n) = 5.6e-4.
        assert!((mu - 0.5).abs() < 4e-3, "uniform mean {mu}");
        assert!((me - 0.25).abs() < 4e-3, "exponential mean {me}");
    }

    #[test]
    fn below_is_uniform() {
        let mut r = Rng::from_seed(8);
        for n in [1u64, 2, 3, 7, 10] {
            let mut counts = vec![0u32; n as usize];
            for _ in 0..70_000 {
                let x = r.below(n);
                assert!(x < n);
                counts[x as usize] += 1;
            }
            // Each count is binomial(70 000, 1/n): within 5 standard deviations.
            let want = 70_000.0 / n as f64;
            let sd = (want * (1.0 - 1.0 / n as f64)).sqrt();
            for c in counts {
                assert!((f64::from(c) - want).abs() <= 5.0 * sd + 1e-9, "{n}: {c}");
            }
        }
        // Huge ranges stay in range, and the top half is reached.
        let top = (0..64).map(|_| r.below(u64::MAX - 1)).max().unwrap();
        assert!(top > u64::MAX / 2 && top < u64::MAX - 1);
    }

    #[test]
    fn chunks_and_streams_differ() {
        let a = Rng::for_chunk(1, 0, 0).next_u64();
        assert_ne!(a, Rng::for_chunk(1, 0, 1).next_u64());
        assert_ne!(a, Rng::for_chunk(1, 1, 0).next_u64());
        assert_ne!(a, Rng::for_chunk(2, 0, 0).next_u64());
        assert_eq!(a, Rng::for_chunk(1, 0, 0).next_u64());
    }
}
