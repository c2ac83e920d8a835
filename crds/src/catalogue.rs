//! The built-in price catalogue (`catalogue/prices.yaml`): list prices of well-known models,
//! dated, that an LlmProvider opts into with `spec.priceCatalogue` and overrides per model.

use std::sync::LazyLock;

use serde::Deserialize;

use crate::llm_provider::{ModelInfo, ProviderType};

#[derive(Debug, Deserialize)]
struct Catalogue {
    /// When the prices were last checked against the providers' pages.
    reviewed: String,
    #[serde(default)]
    anthropic: Vec<ModelInfo>,
    #[serde(default)]
    openai: Vec<ModelInfo>,
    #[serde(default)]
    gemini: Vec<ModelInfo>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    // Checked by a unit test, so a malformed file fails the build's tests, not a gateway.
    serde_yaml::from_str(include_str!("../catalogue/prices.yaml")).unwrap_or(Catalogue {
        reviewed: String::new(),
        anthropic: Vec::new(),
        openai: Vec::new(),
        gemini: Vec::new(),
    })
});

/// The date the catalogue's prices were last reviewed.
pub fn reviewed() -> &'static str {
    &CATALOGUE.reviewed
}

/// The catalogue's models for a provider type (OpenAI's for Azure OpenAI and
/// OpenAI-compatible servers of the same models; none for the fake provider).
pub fn models(provider_type: ProviderType) -> &'static [ModelInfo] {
    match provider_type {
        ProviderType::Anthropic => &CATALOGUE.anthropic,
        ProviderType::OpenAi | ProviderType::AzureOpenAi | ProviderType::OpenAiCompatible => {
            &CATALOGUE.openai
        }
        ProviderType::Gemini => &CATALOGUE.gemini,
        ProviderType::Fake => &[],
    }
}

/// The alias a dated snapshot name extends: `claude-sonnet-4-5-20250929` and
/// `gpt-4o-2024-11-20` name snapshots of `claude-sonnet-4-5` and `gpt-4o`.
pub fn alias_of(model: &str) -> Option<&str> {
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((alias, date)) = model.rsplit_once('-')
        && digits(date, 8)
    {
        return Some(alias);
    }
    let (rest, day) = model.rsplit_once('-')?;
    let (rest, month) = rest.rsplit_once('-')?;
    let (alias, year) = rest.rsplit_once('-')?;
    (digits(year, 4) && digits(month, 2) && digits(day, 2)).then_some(alias)
}

/// `own` with every price it leaves out taken from the catalogue's `listed` entry (and its
/// tiers, when it has none).
pub fn overlay(own: &ModelInfo, listed: &ModelInfo) -> ModelInfo {
    let (mine, theirs) = (&own.prices, &listed.prices);
    let mut merged = own.clone();
    merged.prices = crate::pricing::Prices {
        input_per_million_usd: mine.input_per_million_usd.or(theirs.input_per_million_usd),
        output_per_million_usd: mine
            .output_per_million_usd
            .or(theirs.output_per_million_usd),
        cache_read_per_million_usd: mine
            .cache_read_per_million_usd
            .or(theirs.cache_read_per_million_usd),
        cache_write_per_million_usd: mine
            .cache_write_per_million_usd
            .or(theirs.cache_write_per_million_usd),
        cache_write_1h_per_million_usd: mine
            .cache_write_1h_per_million_usd
            .or(theirs.cache_write_1h_per_million_usd),
    };
    if merged.tiers.is_empty() {
        merged.tiers.clone_from(&listed.tiers);
    }
    merged
}

/// Targets whose spend a budget cannot count: a caller with a budget may call their route, and
/// their model has no input or output price (`llm-gateway check` warns about each).
pub fn unpriced_under_budget(config: &crate::compiled::CompiledConfig) -> Vec<String> {
    let mut found = Vec::new();
    for route in config.routes.values() {
        let budgeted = config
            .keys
            .iter()
            .filter(|key| key.allows_model(&route.model))
            .find_map(|key| match key.quotas.iter().find(|q| q.budget.is_some()) {
                _ if key.budget.is_some() => Some(key.name.clone()),
                Some(quota) => Some(format!("the LlmQuota {}", quota.id)),
                None => None,
            })
            .into_iter()
            .chain(
                (config.auth.jwt.is_some()
                    && (config.auth.jwt_policy.budget.is_some()
                        || config
                            .auth
                            .jwt_policy
                            .team_quotas
                            .values()
                            .flatten()
                            .any(|q| q.budget.is_some()))
                    && config.auth.jwt_policy.allows_model(&route.model))
                .then(|| "token callers".to_owned()),
            )
            .next();
        let Some(budgeted) = budgeted else { continue };
        for target in &route.targets {
            let provider = &config.providers[target.provider];
            let prices = provider
                .models
                .get(&target.upstream_model)
                .map(|m| &m.prices);
            let priced = prices.is_some_and(|p| {
                p.input_per_million_usd.is_some() || p.output_per_million_usd.is_some()
            });
            if !priced && provider.provider_type != ProviderType::Fake {
                found.push(format!(
                    "route {} target {}/{} has no price, so the budget of {budgeted} does not count its spend (set spec.models[].inputPerMillionUsd and outputPerMillionUsd, or spec.priceCatalogue: true)",
                    route.model, provider.name, target.upstream_model
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_parses_and_prices_what_it_lists() {
        assert!(reviewed().starts_with("20"), "dated: {:?}", reviewed());
        for provider in [
            ProviderType::Anthropic,
            ProviderType::OpenAi,
            ProviderType::Gemini,
        ] {
            let models = models(provider);
            assert!(!models.is_empty(), "{provider:?}");
            for model in models {
                assert!(
                    model.prices.input_per_million_usd.is_some(),
                    "{}",
                    model.name
                );
                let sizes: Vec<u64> = model.tiers.iter().map(|t| t.above_input_tokens).collect();
                assert!(sizes.windows(2).all(|p| p[0] < p[1]), "{}", model.name);
            }
        }
        let sonnet = models(ProviderType::Anthropic)
            .iter()
            .find(|m| m.name == "claude-sonnet-4-5")
            .unwrap();
        assert_eq!(sonnet.prices.cache_read_per_million_usd, Some(0.3));
    }

    #[test]
    fn a_dated_snapshot_is_priced_as_its_alias() {
        assert_eq!(
            alias_of("claude-sonnet-4-5-20250929"),
            Some("claude-sonnet-4-5")
        );
        assert_eq!(alias_of("gpt-4o-2024-11-20"), Some("gpt-4o"));
        assert_eq!(alias_of("gpt-4o"), None);
        assert_eq!(alias_of("o4-mini"), None);
        assert_eq!(alias_of("gemini-2.5-flash"), None);
    }
}
