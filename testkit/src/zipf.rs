//! A Zipf distribution over indices, for the benchmarks' skewed key choices.

/// Indices `0..n` with probability ∝ 1/(i+1)^s (s = 0: uniform).
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Over `0..n` (`n` ≥ 1) with exponent `s`.
    pub fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf = Vec::with_capacity(n);
        for i in 0..n {
            acc += 1.0 / ((i + 1) as f64).powf(s);
            cdf.push(acc);
        }
        for c in cdf.iter_mut() {
            *c /= acc;
        }
        Zipf { cdf }
    }

    /// The index that `u`, uniform in `[0, 1)`, falls on.
    pub fn index(&self, u: f64) -> usize {
        self.cdf.partition_point(|c| *c < u).min(self.cdf.len() - 1)
    }

    /// A draw with `rng`.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> usize {
        self.index(rng.random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_index_is_the_most_likely_and_every_index_can_come() {
        let z = Zipf::new(4, 1.0);
        assert_eq!(z.index(0.0), 0);
        assert_eq!(z.index(0.999_999), 3);
        let u = Zipf::new(4, 0.0);
        assert_eq!((u.index(0.24), u.index(0.26), u.index(0.76)), (0, 1, 3));
    }
}
