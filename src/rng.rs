//! Deterministic pseudo-randomness for simulated traffic (`demo`,
//! `loadgen`, `simulate`): SplitMix64, and the count distributions a
//! simulated second of traffic needs. Not for anything secret.

/// A well-mixed 64-bit hash (SplitMix64's finaliser).
pub fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64): the same seed gives the
/// same sequence on every machine.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        splitmix(self.0.wrapping_sub(0x9e37_79b9_7f4a_7c15))
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u = 1.0 - self.unit(); // (0, 1]
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    /// Poisson with mean `lambda`: exact (Knuth) up to a mean of 30, the
    /// rounded normal approximation above (its error is far below what a
    /// count of requests per second can show).
    pub fn poisson(&mut self, lambda: f64) -> u64 {
        if lambda <= 0.0 || !lambda.is_finite() {
            return 0;
        }
        if lambda > 30.0 {
            return (lambda + lambda.sqrt() * self.normal()).round().max(0.0) as u64;
        }
        let limit = (-lambda).exp();
        let (mut k, mut p) = (0u64, self.unit());
        while p > limit {
            k += 1;
            p *= self.unit();
        }
        k
    }

    /// Binomial: how many of `n` trials succeed with probability `p`, by
    /// geometric skips (work grows with the smaller of the two outcomes).
    pub fn binomial(&mut self, n: u64, p: f64) -> u64 {
        if n == 0 || p <= 0.0 || p.is_nan() {
            return 0;
        }
        if p >= 1.0 {
            return n;
        }
        if p > 0.5 {
            return n - self.binomial(n, 1.0 - p);
        }
        let log_q = (1.0 - p).ln();
        let (mut count, mut pos) = (0u64, 0u64);
        loop {
            let skip = ((1.0 - self.unit()).ln() / log_q).floor();
            if !skip.is_finite() || skip >= (n - pos) as f64 {
                return count;
            }
            pos += skip as u64 + 1;
            count += 1;
            if pos >= n {
                return count;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mean(mut f: impl FnMut() -> u64, n: usize) -> f64 {
        (0..n).map(|_| f() as f64).sum::<f64>() / n as f64
    }

    #[test]
    fn same_seed_same_sequence() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        assert!((0..100).all(|_| a.next_u64() == b.next_u64()));
    }

    #[test]
    fn counts_have_their_means() {
        let mut r = Rng::new(1);
        for lambda in [0.5, 2.0, 10.0, 90.0, 900.0] {
            let m = mean(|| r.poisson(lambda), 20_000);
            assert!(
                (m - lambda).abs() < 4.0 * (lambda / 20_000.0).sqrt() + 1e-9,
                "{lambda}: {m}"
            );
        }
        for (n, p) in [
            (10, 0.5),
            (90, 0.0005),
            (100, 0.05),
            (50, 0.98),
            (7, 1.0),
            (7, 0.0),
        ] {
            let m = mean(|| r.binomial(n, p), 20_000);
            let sd = (n as f64 * p * (1.0 - p) / 20_000.0).sqrt();
            assert!((m - n as f64 * p).abs() <= 4.0 * sd + 1e-9, "{n} {p}: {m}");
        }
        assert!((0..1000).all(|_| r.binomial(20, 0.3) <= 20));
    }
}
