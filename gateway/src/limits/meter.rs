//! What one request really used, written by the provider adapters as usage shows up and read
//! once when the request's reservation settles.

use std::sync::Mutex;

use llm_gateway_crds::llm_provider::ModelInfo;

use super::Outcome;
use crate::metrics::TargetLabels;
use crate::request::TokenUsage;

/// Prices in US dollars per million tokens of each kind a provider bills apart.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    /// Input neither read from nor written to a cache.
    pub input: f64,
    /// Output, reasoning included.
    pub output: f64,
    /// Input read from the prompt cache.
    pub cache_read: f64,
    /// Input written to the prompt cache (five minutes).
    pub cache_write: f64,
    /// Input written to the prompt cache for an hour.
    pub cache_write_1h: f64,
}

impl Rates {
    /// The higher of each rate.
    fn max(self, other: Self) -> Self {
        Self {
            input: self.input.max(other.input),
            output: self.output.max(other.output),
            cache_read: self.cache_read.max(other.cache_read),
            cache_write: self.cache_write.max(other.cache_write),
            cache_write_1h: self.cache_write_1h.max(other.cache_write_1h),
        }
    }

    /// The cost of each kind of `usage` in micro-dollars ($1 per million tokens is one
    /// micro-dollar a token), in [`crate::chargeback::KINDS`] order.
    fn by_kind(self, usage: &TokenUsage) -> [f64; 5] {
        let reasoning = usage.reasoning_tokens.min(usage.completion_tokens);
        [
            usage.uncached_tokens() as f64 * self.input,
            usage.cache_read_tokens as f64 * self.cache_read,
            usage.cache_write_tokens as f64 * self.cache_write
                + usage.cache_write_1h_tokens as f64 * self.cache_write_1h,
            (usage.completion_tokens - reasoning) as f64 * self.output,
            reasoning as f64 * self.output,
        ]
    }

    /// The cost of `usage` in billionths of a dollar, rounded once, and of each kind in
    /// trillionths (so the kinds add up to the total within half a nano-dollar).
    fn bill(self, usage: &TokenUsage) -> (i64, [i64; 5]) {
        let kinds = self.by_kind(usage);
        let total = (kinds.iter().sum::<f64>() * 1e3).round() as i64;
        (total, kinds.map(|micros| (micros * 1e6).round() as i64))
    }
}

/// Most price tiers a model may have (the CRD's limit).
const MAX_TIERS: usize = 4;

/// The prices of one upstream model: its rates, and other rates above prompt sizes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Price {
    base: Rates,
    /// `(above this many input tokens, rates)`, in increasing size.
    tiers: [Option<(u64, Rates)>; MAX_TIERS],
}

impl Price {
    /// The catalogue price of a model (free when unlisted or unpriced; see [`model_rates`]).
    pub fn of(model: Option<&ModelInfo>) -> Self {
        let Some(model) = model else {
            return Self::default();
        };
        let base = model_rates(model.prices.in_order());
        let mut tiers = [None; MAX_TIERS];
        for (slot, tier) in tiers.iter_mut().zip(&model.tiers) {
            let own = tier.prices.in_order();
            *slot = Some((tier.above_input_tokens, tier_rates(base, own)));
        }
        Self { base, tiers }
    }

    /// Flat rates: `input` and `output` per million tokens, caches at the input price.
    #[cfg(test)]
    pub fn flat(input: f64, output: f64) -> Self {
        Self {
            base: model_rates([Some(input), Some(output), None, None, None]),
            tiers: [None; MAX_TIERS],
        }
    }

    /// The highest rates of either price, at any prompt size (to reserve for a route whose
    /// target and prompt size are not known yet).
    pub fn max(self, other: Self) -> Self {
        Self {
            base: self.highest().max(other.highest()),
            tiers: [None; MAX_TIERS],
        }
    }

    fn highest(self) -> Rates {
        self.tiers
            .iter()
            .flatten()
            .fold(self.base, |top, (_, rates)| top.max(*rates))
    }

    /// The reservation of `input_tokens` and `output_tokens`: the prompt at the highest rate
    /// any of it may settle at (a cache write costs more than plain input), so a settlement
    /// never exceeds its reservation.
    pub fn nanos(self, input_tokens: u64, output_tokens: u64) -> i64 {
        let top = self.highest();
        let prompt = top.input.max(top.cache_write).max(top.cache_write_1h);
        let cost = input_tokens as f64 * prompt + output_tokens as f64 * top.output;
        (cost * 1e3).round() as i64
    }

    /// The bill of `usage` in nano-dollars (each kind at its rate, the rates of the largest
    /// tier its prompt passes), and each kind's part of it in pico-dollars.
    pub fn bill(self, usage: &TokenUsage) -> (i64, [i64; 5]) {
        let rates = self
            .tiers
            .iter()
            .flatten()
            .rev()
            .find(|(above, _)| usage.prompt_tokens > *above)
            .map_or(self.base, |(_, rates)| *rates);
        rates.bill(usage)
    }
}

/// A model's rates from its prices, in [`Rates`] field order: a cache price left out is the
/// input price (an hour-long write: the cache-write price), so an unpriced cache is never
/// billed below plain input.
fn model_rates([input, output, read, write, hour]: [Option<f64>; 5]) -> Rates {
    let input = input.unwrap_or(0.0);
    let cache_write = write.unwrap_or(input);
    Rates {
        input,
        output: output.unwrap_or(0.0),
        cache_read: read.unwrap_or(input),
        cache_write,
        cache_write_1h: hour.unwrap_or(cache_write),
    }
}

/// A tier's rates: each price it leaves out is the model's own.
fn tier_rates(model: Rates, [input, output, read, write, hour]: [Option<f64>; 5]) -> Rates {
    Rates {
        input: input.unwrap_or(model.input),
        output: output.unwrap_or(model.output),
        cache_read: read.unwrap_or(model.cache_read),
        cache_write: write.unwrap_or(model.cache_write),
        cache_write_1h: hour.unwrap_or(model.cache_write_1h),
    }
}

/// Usage of one request, however it ended. Dropped after the response body and the limiter's
/// settlement (both hold it), which is when its [`Meter::when_done`] callback runs.
#[derive(Debug, Default)]
pub struct Meter {
    state: Mutex<Measured>,
}

/// Called once with the request's final usage (usage events).
pub type Done = Box<dyn FnOnce(Summary) + Send>;

#[derive(Default)]
struct Measured {
    /// Usage the upstream reported, at the serving target's price.
    reported: Option<(TokenUsage, Price)>,
    /// A stream cut short without a usage report: completion events delivered, and the price.
    partial: Option<(u64, Price)>,
    /// The route model and provider that served it (for chargeback), and its upstream model.
    served_by: Option<(TargetLabels, String)>,
    /// Prompt tokens estimated from the body, billed for a stream cut short.
    prompt_estimate: u64,
    /// Seconds from arrival to the first streamed token.
    first_token: Option<f64>,
    /// Whether a limiter reservation settles this usage.
    settled: bool,
    done: Option<Done>,
}

impl std::fmt::Debug for Measured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Measured")
            .field("reported", &self.reported)
            .field("partial", &self.partial)
            .field("served_by", &self.served_by)
            .field("settled", &self.settled)
            .finish_non_exhaustive()
    }
}

/// Where a request's billed usage came from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// No upstream answered with usage.
    #[default]
    None,
    /// The upstream's usage report.
    Reported,
    /// A stream cut short: the prompt estimate plus one token per delivered event.
    Estimated,
}

/// A request's final usage, as its settlement counted it.
#[derive(Debug, Default)]
pub struct Summary {
    /// Tokens and spend.
    pub billed: Outcome,
    /// Where they came from.
    pub source: UsageSource,
    /// Who served it: route model and provider, and the upstream model.
    pub served_by: Option<(TargetLabels, String)>,
    /// Seconds from arrival to the first streamed token.
    pub first_token: Option<f64>,
    /// Whether a limiter reservation settled it (counted in Redis or in memory).
    pub settled: bool,
}

impl Meter {
    /// Records usage the upstream reported (only the first report counts), and who served it.
    pub fn report(&self, usage: TokenUsage, price: Price, served_by: &TargetLabels, model: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.reported.get_or_insert((usage, price));
            state.served(served_by, model);
        }
    }

    /// Records a stream that ended without a usage report after `delivered` completion events.
    pub fn partial(&self, delivered: u64, price: Price, served_by: &TargetLabels, model: &str) {
        if let Ok(mut state) = self.state.lock() {
            state.partial.get_or_insert((delivered, price));
            state.served(served_by, model);
        }
    }

    /// Records the first streamed token, `seconds` after arrival (the first call counts).
    pub fn first_token(&self, seconds: f64) {
        if let Ok(mut state) = self.state.lock() {
            state.first_token.get_or_insert(seconds);
        }
    }

    /// Records the admitted demand's prompt estimate, and whether a reservation settles it.
    pub fn admitted(&self, prompt_estimate: u64, settled: bool) {
        if let Ok(mut state) = self.state.lock() {
            state.prompt_estimate = prompt_estimate;
            state.settled = settled;
        }
    }

    /// Runs `done` with the final usage once the request is over (the meter is dropped).
    pub fn when_done(&self, done: Done) {
        if let Ok(mut state) = self.state.lock() {
            state.done = Some(done);
        }
    }

    /// The route model and provider whose usage was recorded, if any was.
    pub fn served_by(&self) -> Option<TargetLabels> {
        let state = self.state.lock().ok()?;
        state.served_by.as_ref().map(|(labels, _)| labels.clone())
    }

    /// What to bill: the reported usage; else, for a stream cut short, the prompt estimate plus
    /// one token per delivered completion event; else nothing (no upstream answered).
    pub fn outcome(&self) -> Outcome {
        self.state
            .lock()
            .map_or_else(|_| Outcome::default(), |s| s.billed().0)
    }
}

impl Measured {
    fn served(&mut self, labels: &TargetLabels, model: &str) {
        self.served_by
            .get_or_insert_with(|| (labels.clone(), model.to_owned()));
    }

    fn billed(&self) -> (Outcome, UsageSource) {
        let (usage, price, source) = match (self.reported, self.partial) {
            (Some((usage, price)), _) => (usage, price, UsageSource::Reported),
            (None, Some((delivered, price))) => (
                TokenUsage::new(self.prompt_estimate, delivered),
                price,
                UsageSource::Estimated,
            ),
            (None, None) => return (Outcome::default(), UsageSource::None),
        };
        let (spend_nanos, spend_picos) = price.bill(&usage);
        let outcome = Outcome {
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cache_read_tokens: usage.cache_read_tokens,
            cache_write_tokens: usage.cache_write_tokens + usage.cache_write_1h_tokens,
            reasoning_tokens: usage.reasoning_tokens,
            spend_nanos,
            spend_picos,
        };
        (outcome, source)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let Ok(state) = self.state.get_mut() else {
            return;
        };
        if let Some(done) = state.done.take() {
            let (billed, source) = state.billed();
            done(Summary {
                billed,
                source,
                served_by: state.served_by.take(),
                first_token: state.first_token,
                settled: state.settled,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_are_exact_in_nano_dollars() {
        let price = Price::flat(0.15, 0.6);
        assert_eq!(price.nanos(1, 1), 750);
        // Reserved at the one-hour cache write rate: what the same prompt may settle at.
        let mut written = Price::flat(3.0, 15.0);
        written.base.cache_write_1h = 6.0;
        let worst = TokenUsage {
            cache_write_1h_tokens: 1000,
            ..TokenUsage::new(1000, 10)
        };
        assert!(written.nanos(1000, 10) >= written.bill(&worst).0);
        assert_eq!(price.nanos(1_000_000, 0), 150_000_000);
    }

    fn served() -> TargetLabels {
        TargetLabels {
            model: "m".into(),
            provider: "p".into(),
        }
    }

    #[test]
    fn a_report_wins_over_a_partial_stream() {
        let meter = Meter::default();
        let price = Price::flat(1.0, 2.0);
        meter.admitted(10, true);
        meter.partial(3, price, &served(), "u");
        assert_eq!(meter.outcome().output_tokens, 3);
        meter.report(TokenUsage::new(11, 7), price, &served(), "u");
        let outcome = meter.outcome();
        assert_eq!((outcome.input_tokens, outcome.output_tokens), (11, 7));
        assert_eq!(outcome.spend_nanos, 11_000 + 14_000);
        assert_eq!(Meter::default().outcome(), Outcome::default());
    }

    #[test]
    fn the_final_usage_is_handed_over_when_the_last_holder_lets_go() {
        let meter = std::sync::Arc::new(Meter::default());
        let (tx, rx) = std::sync::mpsc::channel();
        meter.when_done(Box::new(move |summary| tx.send(summary).unwrap_or(())));
        meter.admitted(10, true);
        let relay = meter.clone();
        drop(meter);
        assert!(rx.try_recv().is_err(), "handed over while a holder remains");
        relay.partial(4, Price::flat(1.0, 2.0), &served(), "u");
        drop(relay);
        let summary = rx.try_recv().unwrap_or_default();
        assert_eq!(summary.source, UsageSource::Estimated);
        assert_eq!(
            (summary.billed.input_tokens, summary.billed.output_tokens),
            (10, 4)
        );
        assert!(summary.settled);
        assert_eq!(
            summary.served_by.map(|(_, model)| model).as_deref(),
            Some("u")
        );
    }
}
