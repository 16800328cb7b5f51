//! Validates `[[llm]]` tables: mode, live endpoint, cassette and price.

use toml::Spanned;

use super::Validator;
use crate::scenario::error::Diagnostic;
use crate::scenario::file::*;
use crate::scenario::model::*;

const DEFAULT_CONTEXT_WINDOW_TOKENS: u64 = 128_000;

impl Validator<'_> {
    pub(super) fn llm(&mut self, raw: &RawLlm) -> Llm {
        let name = raw.name.get_ref();
        let mode = match &raw.mode {
            None => LlmMode::Mock,
            Some(mode) => match mode.get_ref().as_str() {
                "mock" => LlmMode::Mock,
                "live" => LlmMode::Live,
                "replay" => LlmMode::Replay,
                other => {
                    self.error(
                        mode.span(),
                        format!("expected mode \"mock\", \"live\" or \"replay\", found \"{other}\""),
                    );
                    LlmMode::Mock
                }
            },
        };
        let endpoint = self.endpoint(raw, mode);
        let cassette = raw.cassette.as_ref().map(|c| std::path::PathBuf::from(c.get_ref()));
        if mode == LlmMode::Replay && cassette.is_none() {
            self.error(
                raw.mode.as_ref().map_or(raw.name.span(), |m| m.span()),
                format!("expected `cassette = \"FILE\"` for llm \"{name}\" in mode \"replay\""),
            );
        }
        let cassette_match = match &raw.cassette_match {
            None => CassetteMatch::Strict,
            Some(m) => match m.get_ref().as_str() {
                "strict" => CassetteMatch::Strict,
                "fifo" => CassetteMatch::Fifo,
                other => {
                    self.error(
                        m.span(),
                        format!("expected cassette_match \"strict\" or \"fifo\", found \"{other}\""),
                    );
                    CassetteMatch::Strict
                }
            },
        };
        let (price, price_source) = self.price(raw);
        let cache_min_tokens = raw
            .cache_min_tokens
            .as_ref()
            .map_or(DEFAULT_CACHE_MIN_TOKENS, |min| *min.get_ref());
        let context_window_tokens = match &raw.context_window {
            Some(w) if *w.get_ref() == 0 => {
                self.error(w.span(), "expected a context window of at least 1 token, found 0");
                DEFAULT_CONTEXT_WINDOW_TOKENS
            }
            Some(w) => *w.get_ref(),
            None => DEFAULT_CONTEXT_WINDOW_TOKENS,
        };
        Llm {
            name: raw.name.get_ref().clone(),
            model: raw
                .model
                .as_ref()
                .map_or_else(|| raw.name.get_ref().clone(), |m| m.get_ref().clone()),
            latency: self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            price,
            price_source,
            cache_min_tokens,
            context_window_tokens,
            rpm: raw.rpm.as_ref().map(|r| {
                if *r.get_ref() == 0 {
                    self.error(r.span(), "expected rpm of at least 1, found 0");
                }
                (*r.get_ref()).max(1)
            }),
            burst: raw.burst.as_ref().map_or_else(
                || raw.rpm.as_ref().map_or(1, |r| (*r.get_ref() / 6).max(1)),
                |b| (*b.get_ref()).max(1),
            ),
            retry_after_header: raw.retry_after_header.unwrap_or(true),
            mode,
            endpoint,
            cassette,
            cassette_match,
        }
    }

    /// The live endpoint: a URL that is https, or http to loopback (or allowed explicitly).
    fn endpoint(&mut self, raw: &RawLlm, mode: LlmMode) -> Endpoint {
        const TIMEOUT_US_DEFAULT: u64 = 60_000_000;
        const RESPONSE_BYTES_DEFAULT: u64 = 8 * 1024 * 1024;
        let allow_insecure_http = raw.allow_insecure_http.unwrap_or(false);
        let base_url = match &raw.base_url {
            Some(url) => {
                let text = url.get_ref().trim_end_matches('/').to_owned();
                match crate::scenario::endpoint::check_base_url(&text, allow_insecure_http) {
                    Ok(()) => {}
                    Err(message) => self.error(url.span(), message),
                }
                text
            }
            None => {
                if mode == LlmMode::Live {
                    self.error(
                        raw.mode.as_ref().map_or(raw.name.span(), |m| m.span()),
                        format!(
                            "expected `base_url = \"https://…/v1\"` for llm \"{}\" in mode \"live\"",
                            raw.name.get_ref()
                        ),
                    );
                }
                String::new()
            }
        };
        if let Some(env) = &raw.api_key_env {
            let ok = !env.get_ref().is_empty() && env.get_ref().chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !ok {
                self.error(
                    env.span(),
                    format!(
                        "expected the name of an environment variable (letters, digits, _), found \"{}\"",
                        env.get_ref()
                    ),
                );
            }
        }
        let temperature = raw.temperature.as_ref().map(|t| {
            let value = *t.get_ref();
            if !(0.0..=2.0).contains(&value) {
                self.error(
                    t.span(),
                    format!("expected a temperature between 0 and 2, found {value}"),
                );
            }
            value
        });
        let timeout_us = match &raw.timeout {
            Some(t) => {
                let us = self.duration(t);
                if us == 0 {
                    self.error(t.span(), "expected a timeout above zero");
                }
                us
            }
            None => TIMEOUT_US_DEFAULT,
        };
        let response_bytes_max = match &raw.max_response_bytes {
            Some(n) if *n.get_ref() == 0 => {
                self.error(n.span(), "expected max_response_bytes of at least 1, found 0");
                RESPONSE_BYTES_DEFAULT
            }
            Some(n) => *n.get_ref(),
            None => RESPONSE_BYTES_DEFAULT,
        };
        Endpoint {
            base_url,
            api_key_env: raw.api_key_env.as_ref().map(|e| e.get_ref().clone()),
            temperature,
            max_tokens: raw.max_tokens.as_ref().map(|m| *m.get_ref()),
            max_completion_tokens: self.max_completion_tokens(raw),
            assistant_content_empty: self.assistant_content(raw),
            timeout_us,
            allow_insecure_http,
            response_bytes_max,
        }
    }

    fn max_completion_tokens(&mut self, raw: &RawLlm) -> Option<u32> {
        let value = raw.max_completion_tokens.as_ref()?;
        if raw.max_tokens.is_some() {
            self.error(
                value.span(),
                "expected one of `max_tokens` and `max_completion_tokens`, found both",
            );
        }
        Some(*value.get_ref())
    }

    /// `assistant_content`: true for `"empty"`.
    fn assistant_content(&mut self, raw: &RawLlm) -> bool {
        match raw.assistant_content.as_ref().map(|a| (a.get_ref().as_str(), a.span())) {
            None | Some(("null", _)) => false,
            Some(("empty", _)) => true,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected assistant_content \"null\" or \"empty\", found \"{other}\""),
                );
                false
            }
        }
    }

    /// The LLM's price: `price` if given, else the price table's row for `model`, else nothing
    /// (a stand-in model without `model` costs nothing).
    fn price(&mut self, raw: &RawLlm) -> (Price, PriceSource) {
        if let Some(price) = &raw.price {
            let mut per_token = |value: &Spanned<f64>| {
                let usd_per_mtok = *value.get_ref();
                if !usd_per_mtok.is_finite() || !(0.0..=1_000_000.0).contains(&usd_per_mtok) {
                    self.diagnostics.push(Diagnostic::at(
                        value.span(),
                        format!(
                            "expected a price in USD per million tokens between 0 and 1000000, found {usd_per_mtok}"
                        ),
                    ));
                    return 0;
                }
                (usd_per_mtok * 1_000_000.0).round() as u64
            };
            let p = price.get_ref();
            let price = Price {
                input_pusd_per_token: per_token(&p.input_per_mtok),
                cached_input_pusd_per_token: p.cached_input_per_mtok.as_ref().map(&mut per_token),
                output_pusd_per_token: per_token(&p.output_per_mtok),
            };
            return (price, PriceSource::Scenario);
        }
        let Some(model) = &raw.model else {
            return (Price::default(), PriceSource::Unpriced);
        };
        if let Some(row) = crate::catalogue::prices::lookup(model.get_ref()) {
            return (row.price(), PriceSource::Table);
        }
        let suggestions = crate::catalogue::prices::closest_models(model.get_ref());
        let hint = match suggestions.as_slice() {
            [] => String::new(),
            [one] => format!("did you mean \"{one}\"? "),
            many => format!(
                "did you mean one of {}? ",
                many.iter().map(|m| format!("\"{m}\"")).collect::<Vec<_>>().join(", ")
            ),
        };
        self.error(
            model.span(),
            format!(
                "expected a model in the price table (taken {}; `agentsim list prices` shows it), found \"{}\"; \
                 {hint}{}give this [[llm]] its price: price = {{ input_per_mtok = ..., output_per_mtok = ... }}",
                crate::catalogue::prices::PRICES_TAKEN_ON,
                model.get_ref(),
                if hint.is_empty() { "" } else { "otherwise " },
            ),
        );
        (Price::default(), PriceSource::Unpriced)
    }
}
