//! Latency samples and their percentiles. Every sample is kept (microseconds, 4 bytes each)
//! and sorted once at the end: exact percentiles, and a thousand idle workers cost nothing,
//! where a histogram per worker would cost hundreds of kilobytes each.

use std::time::Duration;

use serde_json::{Value, json};

/// A latency distribution in microseconds.
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<u32>);

impl Latencies {
    /// Adds one observation (saturating at about 71 minutes).
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    /// Adds every observation of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.0.extend_from_slice(&other.0);
    }

    /// `{count, mean, p50, p90, p99, p999, max}` in microseconds (nearest-rank percentiles).
    pub fn summary(&self) -> Value {
        let mut sorted = self.0.clone();
        sorted.sort_unstable();
        let rank = |q: f64| -> u32 {
            if sorted.is_empty() {
                return 0;
            }
            let index = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[index - 1]
        };
        let mean = if sorted.is_empty() {
            0.0
        } else {
            sorted.iter().map(|&v| f64::from(v)).sum::<f64>() / sorted.len() as f64
        };
        json!({
            "count": sorted.len(),
            "mean": (mean * 10.0).round() / 10.0,
            "p50": rank(0.50),
            "p90": rank(0.90),
            "p99": rank(0.99),
            "p999": rank(0.999),
            "max": sorted.last().copied().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::default();
        for micros in (1..=1000).rev() {
            latencies.record(Duration::from_micros(micros));
        }
        let summary = latencies.summary();
        assert_eq!(summary["count"], 1000);
        assert_eq!(summary["p50"], 500);
        assert_eq!(summary["p99"], 990);
        assert_eq!(summary["p999"], 999);
        assert_eq!(summary["max"], 1000);
        assert_eq!(summary["mean"], 500.5);
    }

    #[test]
    fn an_empty_distribution_summarises_to_zeros() {
        assert_eq!(Latencies::default().summary()["p99"], 0);
    }
}
