//! The scenario text: models, agents, tools, traffic and faults as the trace showed them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use super::build::Builder;
use super::span::identifier;
use super::NO_TOOL_OUTPUT;

/// What the scenario is written from.
pub(super) struct ScenarioParts<'a> {
    pub(super) agents: &'a [String],
    pub(super) agent_llm: &'a BTreeMap<String, String>,
    pub(super) agent_models: &'a BTreeMap<String, Vec<String>>,
    pub(super) agent_tools: &'a BTreeMap<String, BTreeSet<String>>,
    pub(super) handoffs: &'a BTreeMap<String, BTreeSet<String>>,
    pub(super) delegates: &'a BTreeMap<String, BTreeSet<String>>,
    pub(super) llms: &'a BTreeMap<String, String>,
    pub(super) tool_latency: &'a BTreeMap<String, Vec<u64>>,
    pub(super) tool_output: &'a BTreeMap<String, String>,
    pub(super) tool_calls: &'a BTreeMap<String, Vec<super::build::RecordedToolCall>>,
    pub(super) traffic: &'a BTreeMap<String, Vec<super::dialogue::Dialogue>>,
    pub(super) faults: &'a str,
    pub(super) tool_timeout_us: &'a BTreeMap<String, u64>,
    pub(super) retry_gap_us: &'a BTreeMap<String, u64>,
    pub(super) retry_attempts: &'a BTreeMap<String, u64>,
    pub(super) chat_count: &'a BTreeMap<Option<usize>, u32>,
    /// Agents that ran out of turns in a conversation, with the model calls of that turn.
    pub(super) out_of_turns: &'a BTreeMap<String, u32>,
    pub(super) duration_us: u64,
}

impl Builder {
    pub(super) fn scenario_text(&self, file: &str, parts: &ScenarioParts) -> String {
        let mut out = String::new();
        self.write_header(&mut out, file, parts);
        write_llms(&mut out, parts);
        for agent in parts.agents {
            self.write_agent(&mut out, agent, parts);
        }
        write_tools(&mut out, parts);
        write_traffic(&mut out, parts);
        out.push_str(parts.faults);
        out
    }

    /// The comments that say where the scenario came from, and the `[scenario]` table.
    fn write_header(&self, out: &mut String, file: &str, parts: &ScenarioParts) {
        let source = Path::new(file)
            .file_name()
            .map_or(file.to_owned(), |n| n.to_string_lossy().into_owned());
        let _ = writeln!(out, "# Imported by `agentsim import` from {source}.");
        let _ = writeln!(
            out,
            "# Model answers come from cassette.jsonl (in order per agent and conversation); each tool call"
        );
        let _ = writeln!(
            out,
            "# answers as recorded (in order per conversation; calls beyond those take the median latency);\n# failed tool calls are faults on the call where they failed."
        );
        if self.content_missing {
            let _ = writeln!(
                out,
                "# The trace did not carry all message content: this scenario reproduces the structure"
            );
            let _ = writeln!(
                out,
                "# (call graph, timing, tokens, errors); texts in [brackets] are placeholders."
            );
        }
        let _ = writeln!(out, "\n[scenario]");
        let _ = writeln!(out, "name = {}", toml_string(&scenario_name(file)));
        let description = if self.content_missing {
            format!("Imported from {source}; message content was not in the trace, so the structure is reproduced, not the words.")
        } else {
            format!("Imported from {source}.")
        };
        let _ = writeln!(out, "description = {}", toml_string(&description));
        let limit_us = (parts.duration_us.saturating_mul(4)).max(600_000_000);
        let _ = writeln!(out, "max_virtual_time = \"{limit_us}us\"");
    }

    /// One `[[agent]]` table: its model, tools, handoffs, turns, tool timeout and retry policy.
    fn write_agent(&self, out: &mut String, agent: &str, parts: &ScenarioParts) {
        let _ = writeln!(out, "\n[[agent]]");
        let _ = writeln!(out, "name = {}", toml_string(agent));
        let llm = parts
            .agent_llm
            .get(agent)
            .or_else(|| parts.llms.values().next())
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(out, "llm = {}", toml_string(&llm));
        let list = |set: Option<&BTreeSet<String>>| {
            set.map_or(String::new(), |s| {
                s.iter().map(|t| toml_string(t)).collect::<Vec<_>>().join(", ")
            })
        };
        if let Some(tools) = parts.agent_tools.get(agent) {
            let _ = writeln!(out, "tools = [{}]", list(Some(tools)));
        }
        if let Some(to) = parts.handoffs.get(agent) {
            let _ = writeln!(out, "handoffs = [{}]", list(Some(to)));
        }
        if let Some(to) = parts.delegates.get(agent) {
            let _ = writeln!(out, "delegates = [{}]", list(Some(to)));
        }
        // What the trace says of the agent (an agentsim export does), else a guess from the calls.
        let agent_spans = || {
            self.spans
                .iter()
                .filter(|s| s.op() == super::span::Op::Agent && s.agent_name() == *agent)
        };
        let said = |key: &str| agent_spans().find_map(|s| s.u64(&[key]));
        // A policy the export wrote as a scenario's inline table, when it is one.
        let said_table = |key: &str| {
            agent_spans()
                .find_map(|s| s.str(key))
                .filter(|text| toml::from_str::<toml::Table>(&format!("t = {text}")).is_ok_and(|t| t["t"].is_table()))
        };
        let turns = parts
            .chat_count
            .iter()
            .filter(|(owner, _)| owner.map_or("assistant".to_owned(), |o| self.spans[o].agent_name()) == *agent)
            .map(|(_, c)| *c)
            .max()
            .unwrap_or(1);
        // An agent that ran out of turns had exactly as many as it used then.
        let max_turns = said("agentsim.agent.max_turns")
            .or_else(|| parts.out_of_turns.get(agent).map(|&n| n as u64))
            .unwrap_or(turns as u64 + 2);
        let _ = writeln!(out, "max_turns = {max_turns}");
        if let Some(us) = parts.tool_timeout_us.get(agent) {
            let _ = writeln!(out, "tool_timeout = \"{us}us\"");
        }
        // The attempts the trace names (an agentsim export does), else enough for every error
        // recorded; the gap between attempts as the trace shows it.
        let attempts = said("agentsim.agent.retry.attempts");
        let gap_us = parts
            .retry_gap_us
            .get(agent)
            .copied()
            .or_else(|| attempts.and(said("agentsim.agent.retry.base_us")));
        // A second model the agent called is its fallback (an agentsim export names it, and the
        // circuit breaker that sends calls there while the primary fails).
        let exported_fallback = agent_spans()
            .find_map(|s| s.str("agentsim.agent.fallback.model"))
            .and_then(|model| parts.llms.get(model));
        let fallback = exported_fallback.or_else(|| {
            parts
                .agent_models
                .get(agent)
                .and_then(|used| used.iter().find(|m| **m != llm))
        });
        if let Some(fallback) = fallback {
            let _ = writeln!(out, "fallback = {}", toml_string(fallback));
        }
        if let Some(breaker) = said_table("agentsim.agent.circuit_breaker") {
            let _ = writeln!(out, "circuit_breaker = {breaker}");
        }
        // The whole policy, when the trace is agentsim's own export and the text is a table.
        if let Some(policy) = said_table("agentsim.agent.retry") {
            let _ = writeln!(out, "retry = {policy}");
        } else if let Some(gap_us) = gap_us {
            // Without a retry of the same model (the agent turned to its fallback at once), no
            // retry policy.
            let attempts = attempts.or_else(|| parts.retry_attempts.get(agent).copied());
            if let Some(attempts) = attempts.filter(|&a| a > 1) {
                let _ = writeln!(
                    out,
                    "retry = {{ attempts = {attempts}, backoff = \"constant\", base = \"{}us\", jitter = \"none\", honor_retry_after = false }}",
                    gap_us.max(1)
                );
            }
        }
    }
}

/// One `[[llm]]` table per model, replaying from the cassette.
fn write_llms(out: &mut String, parts: &ScenarioParts) {
    for (model, name) in parts.llms {
        let _ = writeln!(out, "\n[[llm]]");
        let _ = writeln!(out, "name = {}", toml_string(name));
        let _ = writeln!(out, "model = {}", toml_string(model));
        if crate::catalogue::prices::lookup(model).is_none() {
            // Without a price a model outside the price table does not validate.
            let _ = writeln!(
                out,
                "# Not in agentsim's price table (`agentsim list prices`): set its price."
            );
            let _ = writeln!(out, "price = {{ input_per_mtok = 0.0, output_per_mtok = 0.0 }}");
        }
        let _ = writeln!(out, "mode = \"replay\"");
        let _ = writeln!(out, "cassette = \"cassette.jsonl\"");
    }
}

/// One `[[tool]]` table per tool: the median latency and a recorded output, and each recorded
/// call's latency and result in order per conversation.
fn write_tools(out: &mut String, parts: &ScenarioParts) {
    for (tool, latencies) in parts.tool_latency {
        let mut sorted = latencies.clone();
        sorted.sort_unstable();
        // The median of the calls that succeeded; failed ones are faults of their own.
        let median = sorted.get(sorted.len().saturating_sub(1) / 2).copied().unwrap_or(0);
        let _ = writeln!(out, "\n[[tool]]");
        let _ = writeln!(out, "name = {}", toml_string(tool));
        let _ = writeln!(out, "latency = \"{median}us\"");
        let output = parts.tool_output.get(tool).map_or(NO_TOOL_OUTPUT, String::as_str);
        // Tool outputs are templates: recorded braces must not open one.
        let _ = writeln!(out, "output = {}", toml_string(&escape_template(output)));
        let calls = parts.tool_calls.get(tool).map_or(&[][..], Vec::as_slice);
        if !calls.is_empty() {
            // Exact per call: the median and the output above are for calls beyond these.
            let _ = writeln!(out, "recorded = [");
            for call in calls {
                let output = call
                    .output
                    .as_ref()
                    .map(|o| format!(", output = {}", toml_string(o)))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {{ conv = {}, latency = \"{}us\"{output} }},",
                    call.conv, call.latency_us
                );
            }
            let _ = writeln!(out, "]");
        }
    }
}

/// Scripted `[[traffic]]` per agent that opened a conversation: its single-message
/// conversations together, and each conversation where the user talked back as a source of its
/// own with a scripted `[[user]]` who says the rest of the user's messages in order.
fn write_traffic(out: &mut String, parts: &ScenarioParts) {
    let mut conv = 0u32;
    for (agent, dialogues) in parts.traffic {
        let mut rest = &dialogues[..];
        while !rest.is_empty() {
            let single = rest.iter().take_while(|d| d.messages.len() == 1).count();
            let (these, user) = match single {
                0 => (&rest[..1], Some(&rest[0])),
                n => (&rest[..n], None),
            };
            if let Some(dialogue) = user {
                let _ = writeln!(
                    out,
                    "\n# Conversation {conv}: the user said {} messages.",
                    dialogue.messages.len()
                );
                let _ = writeln!(out, "[[user]]");
                let _ = writeln!(out, "name = \"recorded-{conv}\"");
                let _ = writeln!(out, "kind = \"scripted\"");
                let _ = writeln!(out, "max_turns = {}", dialogue.messages.len());
                let _ = writeln!(out, "think = \"{}us\"", dialogue.think_us);
                let _ = writeln!(out, "script = [");
                for message in &dialogue.messages[1..] {
                    let _ = writeln!(out, "  {},", toml_string(&escape_template(message)));
                }
                let _ = writeln!(out, "]");
            }
            let _ = writeln!(out, "\n[[traffic]]");
            let _ = writeln!(out, "kind = \"script\"");
            let _ = writeln!(out, "to = {}", toml_string(agent));
            if user.is_some() {
                let _ = writeln!(out, "user = \"recorded-{conv}\"");
            }
            let _ = writeln!(out, "script = [");
            for dialogue in these {
                let _ = writeln!(
                    out,
                    "  {{ at = \"{}us\", message = {} }},",
                    dialogue.at_us,
                    toml_string(&dialogue.messages[0])
                );
            }
            let _ = writeln!(out, "]");
            conv += these.len() as u32;
            rest = &rest[these.len()..];
        }
    }
}

/// Recorded text in a place that reads `{{templates}}`: braces must not open one.
fn escape_template(text: &str) -> String {
    text.replace("{{", "{ {").replace("}}", "} }")
}

pub(super) fn scenario_name(file: &str) -> String {
    let stem = Path::new(file)
        .file_stem()
        .map_or("incident".into(), |s| s.to_string_lossy().into_owned());
    format!("imported-{}", identifier(&stem))
}

/// A TOML basic string.
pub(super) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}
