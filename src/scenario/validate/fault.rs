//! Validates `[[fault]]` tables: kind, target, trigger and parameters.

use std::ops::Range;

use super::Validator;
use crate::kernel::number_duplicates;
use crate::scenario::error::did_you_mean;
use crate::scenario::file::*;
use crate::scenario::glob::glob_match;
use crate::scenario::model::*;
use toml::Spanned;

impl Validator<'_> {
    pub(super) fn faults(&mut self, raw: &[Spanned<RawFault>], logical_ids: &[String]) -> Vec<Fault> {
        let names = fault_stream_names(raw.iter().map(|f| {
            let f = f.get_ref();
            (
                f.name.as_ref().map(|n| n.get_ref().clone()),
                f.kind.get_ref().clone(),
                f.target.as_ref().map_or(String::new(), |t| t.get_ref().clone()),
            )
        }));
        // A name given twice would be numbered as an unnamed fault is (`NAME#2`), and `after`,
        // profiles and reports would silently mean the first.
        let mut named = std::collections::BTreeSet::new();
        for name in raw.iter().filter_map(|f| f.get_ref().name.as_ref()) {
            if !named.insert(name.get_ref().as_str()) {
                self.second_name("fault", name);
            }
        }
        let mut faults = Vec::new();
        for (index, fault) in raw.iter().enumerate() {
            if let Some(parsed) = self.fault(fault.get_ref(), logical_ids, &names, index) {
                faults.push(parsed);
            }
        }
        faults
    }

    fn fault(&mut self, raw: &RawFault, logical_ids: &[String], names: &[String], index: usize) -> Option<Fault> {
        let kind = self.fault_kind(raw)?;
        let Some(target) = &raw.target else {
            self.error(
                raw.kind.span(),
                "expected `target = \"agent:NAME\"` (globs such as \"agent:*\" allowed) for this fault",
            );
            return None;
        };
        self.fault_target(kind, target, logical_ids);
        let trigger = self.trigger(raw, names, index);
        let params = self.fault_params(raw, kind, logical_ids);
        Some(Fault {
            name: names[index].clone(),
            kind,
            target: target.get_ref().clone(),
            trigger,
            params,
        })
    }

    /// The fault's kind, from the catalogue.
    fn fault_kind(&mut self, raw: &RawFault) -> Option<FaultKind> {
        let Some(kind) = FaultKind::from_name(raw.kind.get_ref()) else {
            self.error(raw.kind.span(), unknown_fault_kind(raw.kind.get_ref()));
            return None;
        };
        Some(kind)
    }

    /// Checks that the target glob matches some actor of a layer the kind applies to.
    fn fault_target(&mut self, kind: FaultKind, target: &Spanned<String>, logical_ids: &[String]) {
        use crate::catalogue::faults::Layer;
        let Some((prefixes, example)) = kind.layer().scenario_targets() else {
            // Only the proxies act these kinds.
            let message = if kind.layer() == Layer::Stream {
                format!(
                    "fault kind \"{}\" acts on streamed HTTP answers, which a simulated run does not have; \
                     expected it in a faults file for `agentsim proxy --faults FILE`",
                    kind.name()
                )
            } else {
                format!(
                    "fault kind \"{}\" acts on Model Context Protocol exchanges, which only `agentsim proxy --mcp` \
                     sees; expected it in a faults file for the proxy (a scenario's tools take the tool.* kinds)",
                    kind.name()
                )
            };
            self.error(target.span(), message);
            return;
        };
        let eligible: Vec<&String> = logical_ids
            .iter()
            .filter(|id| prefixes.iter().any(|p| id.starts_with(p)))
            .collect();
        if !eligible.iter().any(|id| glob_match(target.get_ref(), id)) {
            // Each name once, even where the file repeats one (an error of its own).
            let mut seen = std::collections::BTreeSet::new();
            let known: Vec<&str> = eligible
                .iter()
                .map(|s| s.as_str())
                .filter(|s| seen.insert(*s))
                .take(6)
                .collect();
            self.error(
                target.span(),
                format!(
                    "fault target \"{}\" matches no actor this kind applies to; expected {example} (here: {})",
                    target.get_ref(),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
    }

    /// When the fault fires: `probability`, `at`, `between`, `on_message`, `after` and
    /// `message_contains`, at least one of them.
    fn trigger(&mut self, raw: &RawFault, names: &[String], index: usize) -> Trigger {
        let between_us = raw.between.as_ref().and_then(|b| self.fault_between(b));
        let after = raw.after.as_ref().and_then(|a| self.fault_after(a, names, index));
        let mut trigger = Trigger {
            probability: raw.probability.as_ref().map(|p| self.probability(p)),
            at_us: raw.at.as_ref().map(|a| self.duration(a)),
            on_message: raw.on_message.as_ref().map(|n| {
                if *n.get_ref() == 0 {
                    self.error(n.span(), "expected on_message counted from 1, found 0");
                }
                *n.get_ref()
            }),
            count: raw.count.as_ref().map(|c| {
                if *c.get_ref() == 0 {
                    self.error(
                        c.span(),
                        "expected count of at least 1 (a fault with count = 0 never fires), found 0",
                    );
                }
                *c.get_ref()
            }),
            between_us,
            after,
            message_contains: raw.message_contains.as_ref().map(|m| m.get_ref().clone()),
        };
        if trigger.at_us.is_some() && trigger.probability.is_none() && trigger.count.is_none() {
            // "at 12s" means once, at the first eligible message from 12s on.
            trigger.count = Some(1);
        }
        // Judged on what the file gives: a trigger given wrongly has its own error.
        if raw.probability.is_none()
            && raw.at.is_none()
            && raw.on_message.is_none()
            && raw.between.is_none()
            && raw.after.is_none()
            && raw.message_contains.is_none()
        {
            self.error(
                raw.kind.span(),
                "expected a trigger: `probability`, `at`, `between`, `on_message`, `after` or `message_contains`",
            );
        }
        trigger
    }

    /// `between = [FROM, TO]`: two durations, FROM before TO.
    fn fault_between(&mut self, b: &Spanned<Vec<String>>) -> Option<(u64, u64)> {
        crate::scenario::units::parse_between_us(b.get_ref())
            .map_err(|message| self.error(b.span(), message))
            .ok()
    }

    /// `after = "FAULT"`: the index of another fault, by its stream name.
    fn fault_after(&mut self, a: &Spanned<String>, names: &[String], index: usize) -> Option<usize> {
        let position = names.iter().position(|n| n == a.get_ref());
        match position {
            Some(p) if p != index => Some(p),
            Some(_) => {
                self.error(a.span(), "a fault cannot wait for itself");
                None
            }
            None => {
                let hint = did_you_mean(a.get_ref(), names.iter().map(String::as_str))
                    .map(|s| format!("did you mean \"{s}\"? "))
                    .unwrap_or_default();
                self.error(a.span(), format!("`after` names fault \"{}\", which does not exist; {hint}faults are named by `name`, or KIND@TARGET", a.get_ref()));
                None
            }
        }
    }

    /// The kind's parameters; a parameter the kind does not take is an error.
    fn fault_params(&mut self, raw: &RawFault, kind: FaultKind, logical_ids: &[String]) -> FaultParams {
        let mut params = FaultParams::default();
        if let Some(d) = &raw.retry_after {
            if self.param_applies(kind, "retry_after", d.span()) {
                params.retry_after_us = Some(self.duration(d));
            }
        }
        if let Some(d) = &raw.latency {
            if self.param_applies(kind, "latency", d.span()) {
                params.latency_us = Some(self.duration(d));
            }
        }
        if let Some(t) = &raw.text {
            if self.param_applies(kind, "text", t.span()) {
                params.text = Some(t.get_ref().clone());
            }
        }
        if let Some(t) = &raw.tool {
            if self.param_applies(kind, "tool", t.span()) {
                params.tool = Some(t.get_ref().clone());
            }
        }
        if let Some(m) = &raw.mode {
            if self.param_applies(kind, "mode", m.span()) {
                params.mode = self.malformed_mode(m);
            }
        }
        if let Some(p) = &raw.peer {
            if self.param_applies(kind, "peer", p.span()) {
                if !logical_ids.iter().any(|id| glob_match(p.get_ref(), id)) {
                    self.error(p.span(), format!("partition peer \"{}\" matches no actor", p.get_ref()));
                }
                params.peer = Some(p.get_ref().clone());
            }
        } else if kind == FaultKind::NetworkPartition {
            self.error(
                raw.kind.span(),
                "expected `peer = \"agent:NAME\"`: the other side of the partition",
            );
        }
        params
    }

    /// Whether fault `kind` takes parameter `name`; reports it if not.
    fn param_applies(&mut self, kind: FaultKind, name: &str, span: Range<usize>) -> bool {
        if kind.takes(name) {
            return true;
        }
        let takes: Vec<&str> = kind.entry().params.iter().map(|p| p.name).collect();
        let list = if takes.is_empty() {
            "no parameters".to_owned()
        } else {
            takes.join(", ")
        };
        self.error(
            span,
            format!(
                "`{name}` does not apply to fault kind \"{}\", which takes {list}",
                kind.name()
            ),
        );
        false
    }

    fn malformed_mode(&mut self, m: &Spanned<String>) -> Option<MalformedMode> {
        match m.get_ref().as_str() {
            "truncated" => Some(MalformedMode::Truncated),
            "trailing_garbage" => Some(MalformedMode::TrailingGarbage),
            "wrong_type" => Some(MalformedMode::WrongType),
            "missing_field" => Some(MalformedMode::MissingField),
            other => {
                self.error(
                    m.span(),
                    format!("expected mode \"truncated\", \"trailing_garbage\", \"wrong_type\" or \"missing_field\", found \"{other}\""),
                );
                None
            }
        }
    }
}

/// Logical ids of every actor a raw scenario will have (for fault targets).
pub(super) fn logical_ids(raw: &RawScenario) -> Vec<String> {
    let mut ids = Vec::new();
    ids.extend(
        raw.agent
            .iter()
            .map(|a| format!("agent:{}", a.get_ref().name.get_ref())),
    );
    ids.extend(raw.tool.iter().map(|t| format!("tool:{}", t.get_ref().name.get_ref())));
    ids.extend(raw.llm.iter().map(|l| format!("llm:{}", l.get_ref().name.get_ref())));
    ids.extend(
        raw.guardrail
            .iter()
            .map(|g| format!("guardrail:{}", g.get_ref().name.get_ref())),
    );
    ids
}

/// A stable name per fault, also its random stream's name: its `name`, or `KIND@TARGET` with
/// `#N` for the Nth fault of the same kind and target. Adding or reordering other faults does not
/// rename a fault.
fn fault_stream_names(faults: impl Iterator<Item = (Option<String>, String, String)>) -> Vec<String> {
    number_duplicates(faults.map(|(name, kind, target)| name.unwrap_or_else(|| format!("{kind}@{target}"))))
}

/// What is said of a fault kind the catalogue does not have, with the nearest name.
pub fn unknown_fault_kind(name: &str) -> String {
    use crate::catalogue::faults::CATALOGUE;
    let hint = did_you_mean(name, CATALOGUE.iter().map(|e| e.kind))
        .map(|s| format!("did you mean \"{s}\"? "))
        .unwrap_or_default();
    format!("unknown fault kind \"{name}\"; {hint}`agentsim list faults` shows the catalogue")
}
