//! The price table: USD per million tokens (input, cached input, output) of common OpenAI,
//! Anthropic and Google models, looked up by a scenario's `model` string.
//!
//! # Where the numbers come from
//!
//! The table was taken on [`PRICES_TAKEN_ON`]. It holds the prices the providers publish for
//! their standard (pay-as-you-go, non-batch) API tier, as recorded in the public
//! `pydantic/genai-prices` database (snapshot of 2026-08-21, whose entries were last checked
//! against the providers between 2025-07 and 2026-07), compared with copies of the providers'
//! own pages:
//!
//! - OpenAI: <https://developers.openai.com/api/docs/pricing> and the model pages under
//!   <https://developers.openai.com/api/docs/models>;
//! - Anthropic: <https://platform.claude.com/docs/en/about-claude/pricing> ("cache hits and
//!   refreshes" is the cached-input price);
//! - Google: <https://ai.google.dev/gemini-api/docs/pricing> ("context caching" price, text input).
//!
//! agentsim could not reach the providers' pages when the table was taken. Prices change and
//! models are retired: check the providers' pages before relying on a number, and give
//! `price = { ... }` in the scenario to use another one.
//!
//! # What the table leaves out
//!
//! - Long-prompt tiers: Gemini 2.5 Pro (and, for a time, Claude Sonnet 4.5 and 4.6 with a
//!   1M-token context) charge more above 200,000 prompt tokens; the table holds the price up to
//!   200,000.
//! - Anthropic's cache writes (1.25× the input price for a 5-minute cache): the first call that
//!   fills the cache is billed at the plain input price.
//! - Batch, priority and flex tiers, audio and image tokens, storage fees, tool fees.
//! - Older snapshots priced differently from their family (for example `gpt-4o-2024-05-13`,
//!   launched at a higher price than `gpt-4o`): a dated name is priced as its family.

use serde::Serialize;

use super::edit_distance;

/// Price of tokens, in pico-USD per token (equal to micro-USD per million tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Price {
    pub input_pusd_per_token: u64,
    /// The price of input tokens read from the provider's prompt cache; `None`: the model has
    /// no cached-input price, so nothing is billed as cached.
    pub cached_input_pusd_per_token: Option<u64>,
    pub output_pusd_per_token: u64,
}

impl Price {
    /// Cost of a call in pico-USD: `input_tokens` counts all input tokens, of which
    /// `cached_input_tokens` are billed at the cached price.
    pub fn cost_pusd(&self, input_tokens: u32, cached_input_tokens: u32, output_tokens: u32) -> u64 {
        let cached = cached_input_tokens.min(input_tokens) as u128;
        let fresh = input_tokens as u128 - cached;
        let cached_price = self.cached_input_pusd_per_token.unwrap_or(self.input_pusd_per_token);
        let pusd = fresh * self.input_pusd_per_token as u128
            + cached * cached_price as u128
            + output_tokens as u128 * self.output_pusd_per_token as u128;
        // Saturates rather than wraps: no budget reaches u64::MAX (see `BUDGET_USD_MAX`).
        u64::try_from(pusd).unwrap_or(u64::MAX)
    }
}

/// The day the table was taken (UTC, ISO 8601).
pub const PRICES_TAKEN_ON: &str = "2026-11-27";

/// Where the table's numbers come from, in one line (shown by `agentsim list prices`).
pub const PRICES_SOURCE: &str = "providers' published standard-tier API prices, as recorded by pydantic/genai-prices \
     (snapshot 2026-08-21) and compared with copies of the providers' pricing pages; check them before relying on them";

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    /// The model's id at its provider (`gpt-4o-mini`, `claude-sonnet-4-5`).
    pub model: &'static str,
    /// `openai`, `anthropic` or `google`.
    pub provider: &'static str,
    /// Other names the provider accepts for the same model (`claude-sonnet-4-0`).
    pub aliases: &'static [&'static str],
    /// Micro-USD per million tokens, which is pico-USD per token.
    pub input_pusd_per_token: u64,
    pub cached_input_pusd_per_token: u64,
    pub output_pusd_per_token: u64,
}

impl ModelPrice {
    /// The price as a scenario uses it.
    pub fn price(&self) -> Price {
        Price {
            input_pusd_per_token: self.input_pusd_per_token,
            cached_input_pusd_per_token: Some(self.cached_input_pusd_per_token),
            output_pusd_per_token: self.output_pusd_per_token,
        }
    }
}

/// USD per million tokens, written with up to six decimals, as micro-USD per million tokens.
const fn usd(dollars: u64, micros: u64) -> u64 {
    dollars * 1_000_000 + micros
}

const fn row(
    model: &'static str,
    provider: &'static str,
    aliases: &'static [&'static str],
    input: u64,
    cached_input: u64,
    output: u64,
) -> ModelPrice {
    ModelPrice {
        model,
        provider,
        aliases,
        input_pusd_per_token: input,
        cached_input_pusd_per_token: cached_input,
        output_pusd_per_token: output,
    }
}

/// The table, by provider, then by model.
pub const PRICE_TABLE: &[ModelPrice] = &[
    // OpenAI
    row("gpt-4o", "openai", &[], usd(2, 500_000), usd(1, 250_000), usd(10, 0)),
    row(
        "gpt-4o-mini",
        "openai",
        &[],
        usd(0, 150_000),
        usd(0, 75_000),
        usd(0, 600_000),
    ),
    row("gpt-4.1", "openai", &[], usd(2, 0), usd(0, 500_000), usd(8, 0)),
    row(
        "gpt-4.1-mini",
        "openai",
        &[],
        usd(0, 400_000),
        usd(0, 100_000),
        usd(1, 600_000),
    ),
    row(
        "gpt-4.1-nano",
        "openai",
        &[],
        usd(0, 100_000),
        usd(0, 25_000),
        usd(0, 400_000),
    ),
    // o3's price since 2025-06-10 (it launched at $10 / $40).
    row("o3", "openai", &[], usd(2, 0), usd(0, 500_000), usd(8, 0)),
    row(
        "o4-mini",
        "openai",
        &[],
        usd(1, 100_000),
        usd(0, 275_000),
        usd(4, 400_000),
    ),
    row("gpt-5", "openai", &[], usd(1, 250_000), usd(0, 125_000), usd(10, 0)),
    row("gpt-5-mini", "openai", &[], usd(0, 250_000), usd(0, 25_000), usd(2, 0)),
    row(
        "gpt-5-nano",
        "openai",
        &[],
        usd(0, 50_000),
        usd(0, 5_000),
        usd(0, 400_000),
    ),
    // Anthropic
    row(
        "claude-opus-4",
        "anthropic",
        &["claude-opus-4-0"],
        usd(15, 0),
        usd(1, 500_000),
        usd(75, 0),
    ),
    row(
        "claude-opus-4-1",
        "anthropic",
        &[],
        usd(15, 0),
        usd(1, 500_000),
        usd(75, 0),
    ),
    row(
        "claude-opus-4-5",
        "anthropic",
        &[],
        usd(5, 0),
        usd(0, 500_000),
        usd(25, 0),
    ),
    row(
        "claude-opus-4-6",
        "anthropic",
        &[],
        usd(5, 0),
        usd(0, 500_000),
        usd(25, 0),
    ),
    row(
        "claude-sonnet-4",
        "anthropic",
        &["claude-sonnet-4-0"],
        usd(3, 0),
        usd(0, 300_000),
        usd(15, 0),
    ),
    row(
        "claude-sonnet-4-5",
        "anthropic",
        &[],
        usd(3, 0),
        usd(0, 300_000),
        usd(15, 0),
    ),
    row(
        "claude-sonnet-4-6",
        "anthropic",
        &[],
        usd(3, 0),
        usd(0, 300_000),
        usd(15, 0),
    ),
    row(
        "claude-haiku-4-5",
        "anthropic",
        &[],
        usd(1, 0),
        usd(0, 100_000),
        usd(5, 0),
    ),
    row(
        "claude-3-5-haiku",
        "anthropic",
        &[],
        usd(0, 800_000),
        usd(0, 80_000),
        usd(4, 0),
    ),
    // Google (text input; prompts up to 200,000 tokens)
    row(
        "gemini-2.5-pro",
        "google",
        &[],
        usd(1, 250_000),
        usd(0, 125_000),
        usd(10, 0),
    ),
    row(
        "gemini-2.5-flash",
        "google",
        &[],
        usd(0, 300_000),
        usd(0, 30_000),
        usd(2, 500_000),
    ),
    row(
        "gemini-2.5-flash-lite",
        "google",
        &[],
        usd(0, 100_000),
        usd(0, 10_000),
        usd(0, 400_000),
    ),
];

/// The table's row for `model`: by its id or an alias, else with a snapshot suffix removed
/// (`gpt-4o-2024-08-06`, `claude-sonnet-4-5-20250929`, `claude-3-5-haiku-latest`).
/// Case is ignored.
pub fn lookup(model: &str) -> Option<&'static ModelPrice> {
    let model = model.trim();
    exact(model).or_else(|| strip_snapshot(model).and_then(exact))
}

fn exact(model: &str) -> Option<&'static ModelPrice> {
    PRICE_TABLE.iter().find(|row| {
        row.model.eq_ignore_ascii_case(model) || row.aliases.iter().any(|alias| alias.eq_ignore_ascii_case(model))
    })
}

/// `NAME` of `NAME-YYYY-MM-DD`, `NAME-YYYYMMDD` or `NAME-latest`.
fn strip_snapshot(model: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(base) = model.strip_suffix("-latest") {
        return Some(base);
    }
    let (base, last) = model.rsplit_once('-')?;
    if last.len() == 8 && digits(last) {
        return Some(base);
    }
    // -YYYY-MM-DD: three numeric parts of 4, 2 and 2 digits.
    let (rest, day) = (base, last);
    let (rest, month) = rest.rsplit_once('-')?;
    let (base, year) = rest.rsplit_once('-')?;
    let shape = [(year, 4), (month, 2), (day, 2)];
    shape
        .iter()
        .all(|(part, len)| part.len() == *len && digits(part))
        .then_some(base)
}

/// Up to three model names of the table closest to `model` (for "did you mean"), closest first.
pub fn closest_models(model: &str) -> Vec<&'static str> {
    const SUGGESTIONS_MAX: usize = 3;
    let wanted = model.trim().to_ascii_lowercase();
    let wanted = strip_snapshot(&wanted).unwrap_or(&wanted).to_owned();
    let limit = (wanted.chars().count() / 3).max(2);
    let mut ranked: Vec<(usize, &'static str)> = PRICE_TABLE
        .iter()
        .map(|row| {
            let distance = edit_distance(&wanted, row.model);
            // A family name (`claude-sonnet`) is close to each of its versions.
            let family = row.model.starts_with(&wanted) && wanted.len() >= 4;
            (if family { 0 } else { distance }, row.model)
        })
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    ranked.sort();
    // Only the nearest names: a typo one edit away hides names three edits away.
    let nearest = ranked.first().map_or(0, |(distance, _)| *distance);
    ranked
        .into_iter()
        .take_while(|(distance, _)| *distance <= nearest + 1)
        .take(SUGGESTIONS_MAX)
        .map(|(_, name)| name)
        .collect()
}

/// One row of `agentsim list prices --json`.
#[derive(Debug, Clone, Serialize)]
pub struct PriceRow {
    pub model: &'static str,
    pub provider: &'static str,
    pub aliases: &'static [&'static str],
    pub input_per_mtok: f64,
    pub cached_input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// The whole table as `agentsim list prices --json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PriceList {
    pub taken_on: &'static str,
    pub source: &'static str,
    pub unit: &'static str,
    pub models: Vec<PriceRow>,
}

/// The table, ready to print.
pub fn price_list() -> PriceList {
    let per_mtok = |pusd_per_token: u64| pusd_per_token as f64 / 1e6;
    PriceList {
        taken_on: PRICES_TAKEN_ON,
        source: PRICES_SOURCE,
        unit: "USD per million tokens",
        models: PRICE_TABLE
            .iter()
            .map(|row| PriceRow {
                model: row.model,
                provider: row.provider,
                aliases: row.aliases,
                input_per_mtok: per_mtok(row.input_pusd_per_token),
                cached_input_per_mtok: per_mtok(row.cached_input_pusd_per_token),
                output_per_mtok: per_mtok(row.output_pusd_per_token),
            })
            .collect(),
    }
}

/// Micro-USD per million tokens as dollars, without trailing zeros past the cents (`$0.075`).
pub fn format_usd_per_mtok(pusd_per_token: u64) -> String {
    let dollars = pusd_per_token / 1_000_000;
    let micros = pusd_per_token % 1_000_000;
    let mut fraction = format!("{micros:06}");
    while fraction.len() > 2 && fraction.ends_with('0') {
        fraction.pop();
    }
    format!("${dollars}.{fraction}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_model_and_alias_is_listed_once() {
        let mut names: Vec<&str> = PRICE_TABLE
            .iter()
            .flat_map(|row| std::iter::once(row.model).chain(row.aliases.iter().copied()))
            .collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count, "a model name appears twice in the table");
    }

    #[test]
    fn cached_input_is_never_dearer_than_input_nor_output_cheaper_than_input() {
        for row in PRICE_TABLE {
            assert!(
                row.cached_input_pusd_per_token < row.input_pusd_per_token,
                "{}",
                row.model
            );
            assert!(row.output_pusd_per_token > row.input_pusd_per_token, "{}", row.model);
        }
    }

    #[test]
    fn snapshot_suffixes_are_recognised_and_nothing_else() {
        assert_eq!(strip_snapshot("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(strip_snapshot("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(strip_snapshot("claude-3-5-haiku-latest"), Some("claude-3-5-haiku"));
        assert_eq!(strip_snapshot("gpt-4o-mini"), None);
        assert_eq!(strip_snapshot("claude-opus-4-1"), None);
        assert_eq!(strip_snapshot("gpt-4o-24-08-06"), None);
    }

    #[test]
    fn dollars_print_with_at_least_cents() {
        assert_eq!(format_usd_per_mtok(usd(0, 75_000)), "$0.075");
        assert_eq!(format_usd_per_mtok(usd(10, 0)), "$10.00");
        assert_eq!(format_usd_per_mtok(usd(0, 5_000)), "$0.005");
        assert_eq!(format_usd_per_mtok(usd(2, 500_000)), "$2.50");
    }
}
