//! The proxy's faults file: `[[fault]]` tables in the scenario's fault syntax (kinds from the
//! catalogue, `target = "llm:MODEL-GLOB"`, `probability`, `on_message`, `count`, `between`,
//! `after`, `message_contains`) plus `route`, and `[[invariant]]` tables over what the app did.
//! `mcp.*` faults (`target = "mcp:TOOL-GLOB"`) are for `agentsim proxy --mcp`, and count an
//! MCP session's `tools/call` requests.
//!
//! Every decision is a pure function of the seed, the fault's name, the session and the call's
//! number in that session: the same app run gets the same faults whatever order its requests
//! reach the proxy in, and adding a fault does not move the draws of the others.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use crate::catalogue::faults::{FaultKind, Layer};
use crate::proxy::shape::Api;
use crate::scenario::error::{did_you_mean, humanize_toml_message, Diagnostic, ScenarioError};
use crate::scenario::glob::glob_match;
use crate::scenario::units::{parse_between_us, parse_duration_us};
use crate::scenario::validate::unknown_fault_kind;
use crate::scenario::MalformedMode;

/// Largest faults file read, in bytes.
const FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    fault: Vec<Spanned<RawFault>>,
    #[serde(default)]
    invariant: Vec<Spanned<RawInvariant>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFault {
    name: Option<Spanned<String>>,
    kind: Spanned<String>,
    target: Option<Spanned<String>>,
    route: Option<Spanned<String>>,
    probability: Option<Spanned<f64>>,
    between: Option<Spanned<Vec<String>>>,
    on_message: Option<Spanned<u32>>,
    count: Option<Spanned<u32>>,
    after: Option<Spanned<String>>,
    message_contains: Option<Spanned<String>>,
    retry_after: Option<Spanned<String>>,
    latency: Option<Spanned<String>>,
    after_frames: Option<Spanned<u32>>,
    text: Option<Spanned<String>>,
    tool: Option<Spanned<String>>,
    mode: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInvariant {
    name: Spanned<String>,
    budget: Option<Spanned<RawBudget>>,
    detect: Option<Spanned<String>>,
    threshold: Option<Spanned<u32>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    cost_usd: Option<Spanned<f64>>,
    tokens: Option<Spanned<u64>>,
    calls: Option<Spanned<u64>>,
    per: Option<Spanned<String>>,
}

/// When a fault fires, per session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Trigger {
    pub probability: Option<f64>,
    /// The session's Nth call (from 1).
    pub on_message: Option<u32>,
    /// At most this many times per session.
    pub count: Option<u32>,
    /// Only within `[from, to)` of wall time since the session's first call.
    pub between_us: Option<(u64, u64)>,
    /// Only once the fault at this index has fired in the session.
    pub after: Option<usize>,
    /// Only on requests whose latest message contains this text.
    pub message_contains: Option<String>,
}

/// One fault of the file.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyFault {
    pub name: String,
    pub kind: FaultKind,
    /// Glob over the request's `model` (`llm:` targets), or the called tool's name (`mcp:`).
    pub model: String,
    /// Glob over the request path (`/v1/chat/completions`); `None`: the model APIs' paths
    /// (chat completions, Responses, Anthropic Messages), or any MCP method.
    pub route: Option<String>,
    pub trigger: Trigger,
    pub retry_after_us: Option<u64>,
    pub latency_us: Option<u64>,
    pub after_frames: u32,
    pub text: Option<String>,
    pub tool: Option<String>,
    pub mode: Option<MalformedMode>,
}

/// What an invariant limits.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// Spend, tokens or calls at most this much, per session or over the whole run.
    Budget {
        cost_pusd: Option<u64>,
        tokens: Option<u64>,
        calls: Option<u64>,
        per_session: bool,
    },
    /// Every retry waited at least the `retry-after` it was given.
    EarlyRetry,
    /// No request retried more than `threshold` times.
    RetryStorm { threshold: u32 },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProxyInvariant {
    pub name: String,
    pub check: Check,
}

/// A validated faults file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultsFile {
    /// The file as the user named it.
    pub file: String,
    pub faults: Vec<ProxyFault>,
    pub invariants: Vec<ProxyInvariant>,
    /// BLAKE3 of the file's bytes, hex.
    pub hash: String,
}

/// One call as the trigger sees it.
#[derive(Debug, Clone, Copy)]
pub struct CallFacts<'a> {
    pub session: &'a str,
    /// The call's number in its session, from 1: among the session's model calls for a call on a
    /// model API, among its other requests for one on another path.
    pub call: u32,
    pub model: &'a str,
    pub route: &'a str,
    /// The latest message's text.
    pub text: &'a str,
    /// Wall time since the session's first call.
    pub elapsed_us: u64,
    pub streamed: bool,
}

/// The faults chosen for one call: at most one that answers instead of the provider (or breaks
/// its answer), and at most one that acts on its stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decision {
    pub answer: Option<usize>,
    pub stream: Option<usize>,
}

impl FaultsFile {
    /// Reads and validates the faults file at `path` for the model proxy (`mcp` false) or the
    /// MCP proxy (true); every problem is reported with its line and column, a kind the other
    /// proxy acts on among them.
    pub fn load(path: &std::path::Path, mcp: bool) -> Result<FaultsFile, String> {
        let file = path.display().to_string();
        let size = std::fs::metadata(path)
            .map_err(|e| format!("{file}: cannot read the faults file: {e}"))?
            .len();
        if size > FILE_BYTES_MAX {
            return Err(format!(
                "{file}: expected a faults file of at most {FILE_BYTES_MAX} bytes, found {size} bytes"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{file}: cannot read the faults file: {e}"))?;
        FaultsFile::parse_for(&file, &text, Some(mcp)).map_err(|e| e.to_string())
    }

    /// Parses faults-file text for either proxy; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<FaultsFile, ScenarioError> {
        FaultsFile::parse_for(file, text, None)
    }

    /// Parses faults-file text; `file` names it in errors. With `mcp`, only the kinds that proxy
    /// acts on are accepted (`Some(true)`: `mcp.*`; `Some(false)`: the others).
    fn parse_for(file: &str, text: &str, mcp: Option<bool>) -> Result<FaultsFile, ScenarioError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            let diagnostic = match e.span() {
                Some(span) => Diagnostic::at(span, humanize_toml_message(e.message())),
                None => Diagnostic::whole_file(humanize_toml_message(e.message())),
            };
            ScenarioError::single(file, text, diagnostic)
        })?;
        let mut check = Checker {
            mcp,
            ..Checker::default()
        };
        let names: Vec<String> = raw
            .fault
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let f = f.get_ref();
                f.name
                    .as_ref()
                    .map_or_else(|| format!("{}#{}", f.kind.get_ref(), i + 1), |n| n.get_ref().clone())
            })
            .collect();
        // Decisions are drawn per fault name: two faults of one name would share their draws.
        let mut seen = std::collections::BTreeSet::new();
        for name in raw.fault.iter().filter_map(|f| f.get_ref().name.as_ref()) {
            if !seen.insert(name.get_ref()) {
                check.error(
                    name.span(),
                    format!(
                        "expected unique fault names, found a second fault named \"{}\"",
                        name.get_ref()
                    ),
                );
            }
        }
        let faults = raw
            .fault
            .iter()
            .enumerate()
            .filter_map(|(i, f)| check.fault(f, &names, i))
            .collect();
        let invariants = raw.invariant.iter().filter_map(|i| check.invariant(i)).collect();
        if !check.diagnostics.is_empty() {
            return Err(ScenarioError {
                file: file.to_owned(),
                diagnostics: check.diagnostics,
                source_text: text.to_owned(),
            });
        }
        Ok(FaultsFile {
            file: file.to_owned(),
            faults,
            invariants,
            hash: blake3::hash(text.as_bytes()).to_hex().to_string(),
        })
    }

    /// The faults for one call. `fired` counts, per fault, how often it fired in this session;
    /// the chosen faults are counted in it.
    pub fn decide(&self, seed: u64, facts: CallFacts<'_>, fired: &mut Vec<u32>) -> Decision {
        fired.resize(self.faults.len(), 0);
        let mut decision = Decision::default();
        for (index, fault) in self.faults.iter().enumerate() {
            if fault.kind.layer() == Layer::Mcp {
                continue;
            }
            let stream = fault.kind.layer() == Layer::Stream;
            let slot = if stream { decision.stream } else { decision.answer };
            if slot.is_some() || (stream && !facts.streamed) || !self.eligible(seed, index, facts, fired) {
                continue;
            }
            fired[index] += 1;
            if stream {
                decision.stream = Some(index);
            } else {
                decision.answer = Some(index);
            }
        }
        // A provider error has no stream to act on.
        let errs = decision
            .answer
            .is_some_and(|i| self.faults[i].kind.layer() == Layer::Provider);
        if errs {
            if let Some(index) = decision.stream.take() {
                fired[index] -= 1;
            }
        }
        decision
    }

    /// The fault for one MCP `tools/call`, if any: the first eligible `mcp.*` fault, whose glob
    /// is over the tool's name (`facts.model`) and whose `message_contains` over the arguments.
    /// `eligible` says whether a kind can act on this transport (session expiry needs HTTP).
    pub fn decide_mcp(
        &self,
        seed: u64,
        facts: CallFacts<'_>,
        fired: &mut Vec<u32>,
        eligible: impl Fn(FaultKind) -> bool,
    ) -> Option<usize> {
        fired.resize(self.faults.len(), 0);
        let index = (0..self.faults.len()).find(|&index| {
            let kind = self.faults[index].kind;
            kind.layer() == Layer::Mcp && eligible(kind) && self.eligible(seed, index, facts, fired)
        })?;
        fired[index] += 1;
        Some(index)
    }

    fn eligible(&self, seed: u64, index: usize, facts: CallFacts<'_>, fired: &[u32]) -> bool {
        let fault = &self.faults[index];
        let t = &fault.trigger;
        glob_match(&fault.model, facts.model)
            && match &fault.route {
                Some(route) => glob_match(route, facts.route),
                None => fault.kind.layer() == Layer::Mcp || Api::of_path(facts.route) != Api::Other,
            }
            && t.on_message.is_none_or(|n| n == facts.call)
            && t.count.is_none_or(|max| fired[index] < max)
            && t.between_us
                .is_none_or(|(from, to)| facts.elapsed_us >= from && facts.elapsed_us < to)
            && t.after.is_none_or(|other| fired[other] > 0)
            && t.message_contains.as_deref().is_none_or(|m| facts.text.contains(m))
            && t.probability
                .is_none_or(|p| draw(seed, &fault.name, facts.session, facts.call) < p)
    }
}

/// A uniform number in `[0, 1)` for one (seed, fault, session, call).
pub fn draw(seed: u64, fault: &str, session: &str, call: u32) -> f64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"agentsim proxy fault draw\0");
    hasher.update(&seed.to_le_bytes());
    hasher.update(fault.as_bytes());
    hasher.update(b"\0");
    hasher.update(session.as_bytes());
    hasher.update(b"\0");
    hasher.update(&call.to_le_bytes());
    let bytes = hasher.finalize();
    let word = u64::from_le_bytes(bytes.as_bytes()[..8].try_into().expect("8 bytes"));
    (word >> 11) as f64 / (1u64 << 53) as f64
}

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
    /// The proxy the file is for: MCP (`Some(true)`), a model API (`Some(false)`), either.
    mcp: Option<bool>,
}

impl Checker {
    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::at(span, message));
    }

    fn duration(&mut self, value: &Spanned<String>) -> Option<u64> {
        match parse_duration_us(value.get_ref()) {
            Ok(us) => Some(us),
            Err(e) => {
                self.error(value.span(), e);
                None
            }
        }
    }

    fn fault(&mut self, spanned: &Spanned<RawFault>, names: &[String], index: usize) -> Option<ProxyFault> {
        let raw = spanned.get_ref();
        let Some(kind) = FaultKind::from_name(raw.kind.get_ref()) else {
            self.error(raw.kind.span(), unknown_fault_kind(raw.kind.get_ref()));
            return None;
        };
        if !proxy_acts(kind) {
            self.error(
                raw.kind.span(),
                format!(
                    "expected a fault the proxy can act on (llm.* provider and content faults, stream.*, mcp.*), \
                     found \"{}\" ({} layer: it needs a simulated run)",
                    kind.name(),
                    serde_json::to_value(kind.layer())
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default()
                ),
            );
            return None;
        }
        let for_mcp = kind.layer() == Layer::Mcp;
        if let Some(mcp) = self.mcp.filter(|&mcp| mcp != for_mcp) {
            let (this, other) = if mcp {
                (
                    "`agentsim proxy --mcp` acts on mcp.* faults only",
                    "the model proxy, without --mcp",
                )
            } else {
                (
                    "`agentsim proxy` acts on llm.* and stream.* faults only",
                    "`agentsim proxy --mcp`",
                )
            };
            self.error(
                raw.kind.span(),
                format!(
                    "expected a fault this proxy acts on: {this}; found \"{}\", which {other} acts on",
                    kind.name()
                ),
            );
            return None;
        }
        let (prefix, example) = match kind.layer() {
            Layer::Mcp => ("mcp:", "a glob over the called tool's name, such as \"mcp:search*\""),
            _ => ("llm:", "a glob over the request's model, such as \"llm:gpt-4o*\""),
        };
        let model = match &raw.target {
            None => "*".to_owned(),
            Some(target) => match target.get_ref().strip_prefix(prefix) {
                Some(model) => model.to_owned(),
                None => {
                    self.error(
                        target.span(),
                        format!(
                            "expected `target = \"{prefix}…\"` for a {} fault ({example}), found \"{}\"",
                            kind.name(),
                            target.get_ref()
                        ),
                    );
                    "*".to_owned()
                }
            },
        };
        for (given, name) in [
            (raw.retry_after.as_ref().map(Spanned::span), "retry_after"),
            (raw.latency.as_ref().map(Spanned::span), "latency"),
            (raw.after_frames.as_ref().map(Spanned::span), "after_frames"),
            (raw.text.as_ref().map(Spanned::span), "text"),
            (raw.tool.as_ref().map(Spanned::span), "tool"),
            (raw.mode.as_ref().map(Spanned::span), "mode"),
        ] {
            if let Some(span) = given {
                if !kind.takes(name) {
                    self.error(span, format!("fault kind \"{}\" takes no `{name}`", kind.name()));
                }
            }
        }
        let trigger = self.trigger(raw, names, index);
        if trigger == Trigger::default() {
            self.error(
                spanned.span(),
                "expected a trigger for this fault: `probability`, `on_message`, `between`, `after` or `message_contains`",
            );
        }
        let mode = raw.mode.as_ref().and_then(|m| match m.get_ref().as_str() {
            "truncated" => Some(MalformedMode::Truncated),
            "trailing_garbage" => Some(MalformedMode::TrailingGarbage),
            "wrong_type" => Some(MalformedMode::WrongType),
            "missing_field" => Some(MalformedMode::MissingField),
            other => {
                self.error(
                    m.span(),
                    format!(
                        "expected mode truncated, trailing_garbage, wrong_type or missing_field, found \"{other}\""
                    ),
                );
                None
            }
        });
        let default_latency = kind
            .entry()
            .params
            .iter()
            .find(|p| p.name == "latency")
            .and_then(|p| parse_duration_us(p.default).ok());
        Some(ProxyFault {
            name: names[index].clone(),
            kind,
            model,
            route: raw.route.as_ref().map(|r| r.get_ref().clone()),
            trigger,
            retry_after_us: raw.retry_after.as_ref().and_then(|r| self.duration(r)),
            latency_us: raw.latency.as_ref().and_then(|l| self.duration(l)).or(default_latency),
            after_frames: raw.after_frames.as_ref().map_or(2, |a| *a.get_ref()),
            text: raw.text.as_ref().map(|t| t.get_ref().clone()),
            tool: raw.tool.as_ref().map(|t| t.get_ref().clone()),
            mode,
        })
    }

    fn trigger(&mut self, raw: &RawFault, names: &[String], index: usize) -> Trigger {
        let probability = raw.probability.as_ref().map(|p| {
            let value = *p.get_ref();
            if !(0.0..=1.0).contains(&value) {
                self.error(p.span(), format!("expected a probability from 0 to 1, found {value}"));
            }
            value
        });
        let on_message = raw.on_message.as_ref().map(|n| {
            if *n.get_ref() == 0 {
                self.error(
                    n.span(),
                    "expected on_message counted from 1 (the session's first call), found 0",
                );
            }
            *n.get_ref()
        });
        let between_us = raw.between.as_ref().and_then(|b| {
            parse_between_us(b.get_ref())
                .map_err(|message| self.error(b.span(), message))
                .ok()
        });
        let after = raw.after.as_ref().and_then(|a| {
            let found = names.iter().position(|n| n == a.get_ref());
            match found {
                Some(other) if other != index => Some(other),
                _ => {
                    let others = names
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| *i != index)
                        .map(|(_, n)| n.as_str());
                    let hint = did_you_mean(a.get_ref(), others)
                        .map(|s| format!(" (did you mean \"{s}\"?)"))
                        .unwrap_or_default();
                    self.error(
                        a.span(),
                        format!(
                            "expected `after` to name another fault of this file, found \"{}\"{hint}",
                            a.get_ref()
                        ),
                    );
                    None
                }
            }
        });
        Trigger {
            probability,
            on_message,
            count: raw.count.as_ref().map(|c| *c.get_ref()),
            between_us,
            after,
            message_contains: raw.message_contains.as_ref().map(|m| m.get_ref().clone()),
        }
    }

    fn invariant(&mut self, spanned: &Spanned<RawInvariant>) -> Option<ProxyInvariant> {
        let raw = spanned.get_ref();
        let name = raw.name.get_ref().clone();
        let check = match (&raw.budget, &raw.detect) {
            (Some(budget), None) => {
                let b = budget.get_ref();
                let per_session = match b.per.as_ref().map(|p| p.get_ref().as_str()) {
                    None | Some("run") => false,
                    Some("session") => true,
                    Some(other) => {
                        let span = b.per.as_ref().map(Spanned::span).unwrap_or(budget.span());
                        self.error(
                            span,
                            format!("expected per = \"run\" or \"session\", found \"{other}\""),
                        );
                        false
                    }
                };
                let cost_pusd = b.cost_usd.as_ref().map(|c| {
                    crate::scenario::units::budget_pusd(*c.get_ref()).unwrap_or_else(|problem| {
                        self.error(c.span(), problem);
                        0
                    })
                });
                let (tokens, calls) = (
                    b.tokens.as_ref().map(|t| *t.get_ref()),
                    b.calls.as_ref().map(|c| *c.get_ref()),
                );
                if cost_pusd.is_none() && tokens.is_none() && calls.is_none() {
                    self.error(
                        budget.span(),
                        "expected `budget = { cost_usd = 0.50 }` (or `tokens`, or `calls`)",
                    );
                    return None;
                }
                Check::Budget {
                    cost_pusd,
                    tokens,
                    calls,
                    per_session,
                }
            }
            (None, Some(detect)) => match detect.get_ref().as_str() {
                "early_retry" => Check::EarlyRetry,
                "retry_storm" => Check::RetryStorm {
                    threshold: raw.threshold.as_ref().map_or(3, |t| *t.get_ref()),
                },
                other => {
                    let hint = did_you_mean(other, ["early_retry", "retry_storm"])
                        .map(|s| format!("did you mean \"{s}\"? "))
                        .unwrap_or_default();
                    self.error(
                        detect.span(),
                        format!("unknown detector \"{other}\"; {hint}expected \"early_retry\" or \"retry_storm\""),
                    );
                    return None;
                }
            },
            _ => {
                self.error(
                    spanned.span(),
                    "expected exactly one of `budget = { … }` and `detect = \"early_retry\" | \"retry_storm\"`",
                );
                return None;
            }
        };
        Some(ProxyInvariant { name, check })
    }
}

/// Whether the proxy can act a fault of this kind on an HTTP exchange.
pub fn proxy_acts(kind: FaultKind) -> bool {
    matches!(kind.layer(), Layer::Provider | Layer::Stream | Layer::Mcp)
        || matches!(
            kind,
            FaultKind::LlmEmptyAnswer
                | FaultKind::LlmRefusal
                | FaultKind::LlmHallucinatedTool
                | FaultKind::LlmMalformedToolArgs
                | FaultKind::LlmTruncated
                | FaultKind::LlmDuplicateToolCallIds
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(session: &str, call: u32) -> CallFacts<'_> {
        CallFacts {
            session,
            call,
            model: "gpt-4o-mini",
            route: "/v1/chat/completions",
            text: "hello",
            elapsed_us: 0,
            streamed: false,
        }
    }

    #[test]
    fn decisions_depend_on_seed_session_and_call_only() {
        let file = FaultsFile::parse("f.toml", "[[fault]]\nkind = \"llm.rate_limit\"\nprobability = 0.5\n").unwrap();
        let pattern = |seed: u64| -> Vec<bool> {
            (1..=64)
                .map(|call| file.decide(seed, facts("s-a", call), &mut Vec::new()).answer.is_some())
                .collect()
        };
        assert_eq!(pattern(7), pattern(7));
        assert_ne!(pattern(7), pattern(8));
        let fired = pattern(7).iter().filter(|f| **f).count();
        assert!((16..48).contains(&fired), "about half of 64 calls, got {fired}");
    }

    #[test]
    fn a_fault_without_a_route_acts_on_the_model_apis_only() {
        let file = FaultsFile::parse(
            "f.toml",
            "[[fault]]\nkind = \"llm.rate_limit\"\nprobability = 1.0\n[[fault]]\nkind = \"llm.server_error\"\nroute = \"*/models\"\nprobability = 1.0\n",
        )
        .unwrap();
        let at = |route: &'static str| {
            let facts = CallFacts { route, ..facts("s", 1) };
            file.decide(0, facts, &mut Vec::new()).answer
        };
        assert_eq!(at("/v1/chat/completions"), Some(0));
        assert_eq!(at("/v1/responses"), Some(0));
        assert_eq!(at("/v1/messages"), Some(0));
        assert_eq!(at("/v1/models"), Some(1), "only where a route says so");
        assert_eq!(at("/v1/files"), None);
    }

    #[test]
    fn on_message_count_and_after_hold_per_session() {
        let file = FaultsFile::parse(
            "f.toml",
            "[[fault]]\nname = \"first\"\nkind = \"llm.rate_limit\"\non_message = 1\n\
             [[fault]]\nkind = \"llm.server_error\"\nafter = \"first\"\ncount = 1\nmessage_contains = \"hel\"\n",
        )
        .unwrap();
        let mut fired = Vec::new();
        assert_eq!(file.decide(1, facts("s", 1), &mut fired).answer, Some(0));
        assert_eq!(file.decide(1, facts("s", 2), &mut fired).answer, Some(1));
        assert_eq!(file.decide(1, facts("s", 3), &mut fired).answer, None);
    }

    #[test]
    fn bad_files_name_the_place_and_what_was_expected() {
        let error = FaultsFile::parse("f.toml", "[[fault]]\nkind = \"llm.rate_limt\"\non_message = 1\n").unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("f.toml:2:8") && text.contains("did you mean \"llm.rate_limit\""),
            "{text}"
        );
        let error = FaultsFile::parse("f.toml", "[[fault]]\nkind = \"tool.error\"\non_message = 1\n").unwrap_err();
        assert!(error.to_string().contains("needs a simulated run"), "{error}");
        let error = FaultsFile::parse("f.toml", "[[fault]]\nkind = \"stream.cut\"\n").unwrap_err();
        assert!(error.to_string().contains("expected a trigger"), "{error}");
        let twice = "[[fault]]\nname = \"x\"\nkind = \"llm.rate_limit\"\non_message = 1\n\
                     [[fault]]\nname = \"x\"\nkind = \"llm.server_error\"\non_message = 2\n";
        let error = FaultsFile::parse("f.toml", twice).unwrap_err().to_string();
        assert!(
            error.contains("f.toml:6:8") && error.contains("a second fault named \"x\""),
            "{error}"
        );
    }
}

#[cfg(test)]
mod stream_tests {
    use super::*;

    #[test]
    fn a_stream_fault_is_chosen_for_a_streamed_call_only() {
        let file = FaultsFile::parse(
            "f.toml",
            "[[fault]]\nkind = \"stream.cut\"\non_message = 1\nafter_frames = 2\n",
        )
        .unwrap();
        let mut facts = CallFacts {
            session: "s",
            call: 1,
            model: "gpt-4o-mini",
            route: "/v1/chat/completions",
            text: "x",
            elapsed_us: 0,
            streamed: false,
        };
        assert_eq!(file.decide(0, facts, &mut Vec::new()), Decision::default());
        facts.streamed = true;
        assert_eq!(file.decide(0, facts, &mut Vec::new()).stream, Some(0));
    }
}
