//! What one request really used, written by the provider adapters as usage shows up and read
//! once when the request's reservation settles.

use std::sync::Mutex;

use llm_gateway_crds::llm_provider::ModelInfo;

use super::Outcome;
use crate::request::TokenUsage;

/// Prices of one upstream model in US dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    /// Per million prompt tokens.
    pub input_per_million: f64,
    /// Per million completion tokens.
    pub output_per_million: f64,
}

impl Price {
    /// The catalogue price of a model (free when unlisted or unpriced).
    pub fn of(model: Option<&ModelInfo>) -> Self {
        model.map_or_else(Self::default, |m| Self {
            input_per_million: m.input_per_million_usd.unwrap_or(0.0),
            output_per_million: m.output_per_million_usd.unwrap_or(0.0),
        })
    }

    /// The higher of each price (to reserve for a route whose target is not picked yet).
    pub fn max(self, other: Self) -> Self {
        Self {
            input_per_million: self.input_per_million.max(other.input_per_million),
            output_per_million: self.output_per_million.max(other.output_per_million),
        }
    }

    /// Cost in billionths of a dollar ($1 per million tokens is 1,000 nano-dollars a token).
    pub fn nanos(self, input_tokens: u64, output_tokens: u64) -> i64 {
        let nanos = input_tokens as f64 * self.input_per_million * 1e3
            + output_tokens as f64 * self.output_per_million * 1e3;
        nanos.round() as i64
    }
}

/// Usage of one request, however it ended.
#[derive(Debug, Default)]
pub struct Meter {
    state: Mutex<Measured>,
}

#[derive(Debug, Default)]
struct Measured {
    /// Usage the upstream reported, at the serving target's price.
    reported: Option<(TokenUsage, Price)>,
    /// A stream cut short without a usage report: completion events delivered, and the price.
    partial: Option<(u64, Price)>,
}

impl Meter {
    /// Records usage the upstream reported (only the first report counts).
    pub fn report(&self, usage: TokenUsage, price: Price) {
        if let Ok(mut state) = self.state.lock() {
            state.reported.get_or_insert((usage, price));
        }
    }

    /// Records a stream that ended without a usage report after `delivered` completion events.
    pub fn partial(&self, delivered: u64, price: Price) {
        if let Ok(mut state) = self.state.lock() {
            state.partial.get_or_insert((delivered, price));
        }
    }

    /// What to bill: the reported usage; else, for a stream cut short, the prompt estimate plus
    /// one token per delivered completion event; else nothing (no upstream answered).
    pub fn outcome(&self, prompt_estimate: u64) -> Outcome {
        let Ok(state) = self.state.lock() else {
            return Outcome::default();
        };
        let (input_tokens, output_tokens, price) = match (state.reported, state.partial) {
            (Some((usage, price)), _) => (usage.prompt_tokens, usage.completion_tokens, price),
            (None, Some((delivered, price))) => (prompt_estimate, delivered, price),
            (None, None) => return Outcome::default(),
        };
        Outcome {
            input_tokens,
            output_tokens,
            spend_nanos: price.nanos(input_tokens, output_tokens),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_in_nano_dollars() {
        let price = Price {
            input_per_million: 0.15,
            output_per_million: 0.6,
        };
        assert_eq!(price.nanos(1, 1), 750);
        assert_eq!(price.nanos(1_000_000, 0), 150_000_000);
    }

    #[test]
    fn a_report_wins_over_a_partial_stream() {
        let meter = Meter::default();
        let price = Price {
            input_per_million: 1.0,
            output_per_million: 2.0,
        };
        meter.partial(3, price);
        assert_eq!(meter.outcome(10).output_tokens, 3);
        meter.report(
            TokenUsage {
                prompt_tokens: 11,
                completion_tokens: 7,
            },
            price,
        );
        let outcome = meter.outcome(10);
        assert_eq!((outcome.input_tokens, outcome.output_tokens), (11, 7));
        assert_eq!(outcome.spend_nanos, 11_000 + 14_000);
        assert_eq!(Meter::default().outcome(10), Outcome::default());
    }
}
