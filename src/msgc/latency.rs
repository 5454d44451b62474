//! A latency histogram with fixed buckets, cheap enough for every own
//! publish: the time from a client's publish to its commit, which
//! `/metrics` exposes as a Prometheus histogram.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in seconds (the last bucket is +Inf).
pub const BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Observations per bucket of [`BOUNDS`] (not cumulative), then the
    /// ones above the last bound.
    pub counts: [u64; BOUNDS.len() + 1],
    pub sum_secs: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, d: Duration) {
        let s = d.as_secs_f64();
        let i = BOUNDS.iter().position(|&b| s <= b).unwrap_or(BOUNDS.len());
        self.counts[i] += 1;
        self.sum_secs += s;
        self.count += 1;
    }

    /// (upper bound, observations at or below it) for each bound, as
    /// Prometheus wants them.
    pub fn cumulative(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        BOUNDS
            .iter()
            .zip(&self.counts)
            .map(|(&b, &n)| {
                total += n;
                (b, total)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let mut h = Histogram::default();
        h.observe(Duration::from_micros(80));
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        assert_eq!(h.count, 4);
        let c = h.cumulative();
        assert_eq!(c[0], (0.0001, 2));
        assert_eq!(c[5], (0.005, 3));
        assert_eq!(c[15], (10.0, 3), "the minute is above every bound");
        assert!((h.sum_secs - 60.00318).abs() < 1e-9);
    }
}
