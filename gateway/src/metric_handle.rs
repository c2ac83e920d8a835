//! A handle on one series of a metric family, made on its first use: kept where a request
//! would otherwise build and hash the series' labels every time, without exporting a series
//! (an empty histogram, a zero counter) that nothing has recorded yet.

use std::hash::Hash;
use std::sync::OnceLock;

use prometheus_client::metrics::family::{Family, MetricConstructor};

/// The series `labels` of `family`, looked up once, when first used.
#[derive(Debug)]
pub struct OnFirstUse<L, M, C = fn() -> M> {
    family: Family<L, M, C>,
    labels: L,
    series: OnceLock<M>,
}

impl<L, M, C> OnFirstUse<L, M, C>
where
    L: Clone + Hash + Eq,
    M: Clone,
    C: MetricConstructor<M> + Clone,
{
    /// A handle on `family`'s series `labels` (the family is shared, not copied).
    pub fn new(family: &Family<L, M, C>, labels: L) -> Self {
        Self {
            family: family.clone(),
            labels,
            series: OnceLock::new(),
        }
    }

    /// The series, made in the family the first time.
    pub fn get(&self) -> &M {
        self.series
            .get_or_init(|| self.family.get_or_create_owned(&self.labels))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::registry::Registry;

    #[test]
    fn a_series_exists_once_used_and_counts_into_the_family() {
        let family: Family<Vec<(String, String)>, Counter> = Family::default();
        let mut registry = Registry::default();
        registry.register("calls", "Calls", family.clone());
        let handle = OnFirstUse::new(&family, vec![("route".to_owned(), "fast".to_owned())]);
        let text = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).expect("encode");
            text
        };
        assert!(!text(&registry).contains("calls_total{"), "not used yet");
        handle.get().inc_by(2);
        handle.get().inc();
        assert!(text(&registry).contains(r#"calls_total{route="fast"} 3"#));
    }
}
