//! From spans to an import: the span tree, the agents and their work, and the pieces of the
//! scenario and cassette they make.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::chat::{user_messages, ChatCall};
use super::dialogue::{Dialogue, Ending};
use super::scenario::{scenario_name, toml_string, ScenarioParts};
use super::span::{identifier, Op, Span};
use super::{Imported, NO_USER_TEXT};
use crate::llm::cassette::Cassette;

/// The agent that owns work outside any agent span.
pub(super) const DEFAULT_AGENT: &str = "assistant";

pub(super) struct Builder {
    pub(super) spans: Vec<Span>,
    pub(super) children: BTreeMap<usize, Vec<usize>>,
    /// Nearest agent-span ancestor of each span.
    pub(super) owner: Vec<Option<usize>>,
    pub(super) content_missing: bool,
    /// The span that roots each span's conversation (see `conversation_roots`), once the
    /// conversations are known.
    pub(super) root: Vec<Option<usize>>,
    /// The trace is agentsim's own export (it has `agentsim.*` attributes or fault events).
    pub(super) agentsim_export: bool,
}

/// The most attempts one model call took, from whether each call in turn failed and which
/// model it went to: a run of failures and the success after it on the same model, or a run of
/// failures the agent gave up after (at the end, or by turning to another model, its fallback).
fn attempts_taken(calls: &[(bool, String)]) -> u64 {
    let (mut run, mut most) = (0u64, 0u64);
    let mut model: Option<&str> = None;
    for (failed, this) in calls {
        if model.is_some_and(|m| m != this) {
            // Turned to another model: the run of failures before was all the attempts.
            most = most.max(run);
            run = 0;
        }
        model = Some(this);
        if *failed {
            run += 1;
        } else {
            most = most.max(run + 1);
            run = 0;
        }
    }
    most.max(run)
}

/// Cuts the parent links that close a cycle (spans that are each other's ancestors, which only a
/// broken exporter writes): the earliest span of each cycle becomes a root, so every walk up
/// the tree ends.
fn cut_cycles(parent_of: &mut [Option<usize>]) {
    const UNSEEN: u8 = 0;
    const ON_PATH: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![UNSEEN; parent_of.len()];
    let mut path = Vec::new();
    for start in 0..parent_of.len() {
        let mut at = Some(start);
        while let Some(i) = at {
            match state[i] {
                DONE => break,
                ON_PATH => {
                    let from = path.iter().position(|&p| p == i).unwrap_or(0);
                    if let Some(&earliest) = path[from..].iter().min() {
                        parent_of[earliest] = None;
                    }
                    break;
                }
                _ => {
                    state[i] = ON_PATH;
                    path.push(i);
                    at = parent_of[i];
                }
            }
        }
        for p in path.drain(..) {
            state[p] = DONE;
        }
    }
}

/// One call of a tool as the trace recorded it, for `recorded = [...]`.
pub(super) struct RecordedToolCall {
    pub(super) conv: u32,
    pub(super) latency_us: u64,
    pub(super) output: Option<String>,
}

/// The agents of a trace, in order of first appearance, and what each does.
#[derive(Default)]
struct Roster {
    agents: Vec<String>,
    agent_llm: BTreeMap<String, String>,
    /// Each agent's models (llm names) in order of first use, a later one only when the agent
    /// first turned to it right after a failed call (a fallback, not a second model by design).
    agent_models: BTreeMap<String, Vec<String>>,
    /// Whether each agent's latest model call failed, as the roster walks the calls in time order.
    last_call_failed: BTreeMap<String, bool>,
    agent_tools: BTreeMap<String, BTreeSet<String>>,
    handoffs: BTreeMap<String, BTreeSet<String>>,
    chat_count: BTreeMap<Option<usize>, u32>,
}

/// What the agents' work recorded: model answers, tool outputs and latencies, tool errors as
/// faults, agent timeouts and retry gaps.
#[derive(Default)]
struct Recorded {
    calls: Vec<ChatCall>,
    tool_latency: BTreeMap<String, Vec<u64>>,
    tool_output: BTreeMap<String, String>,
    tool_calls_total: usize,
    /// Each tool span's place among its tool's calls (1-based), in time order: the
    /// `on_message` of a fault on it.
    tool_ordinal: BTreeMap<usize, u32>,
    faults: String,
    tool_timeout_us: BTreeMap<String, u64>,
    retry_gap_us: BTreeMap<String, u64>,
    /// The attempts each agent's model calls took at most: a run of failed calls and the
    /// success after it, or the failed calls it gave up after.
    retry_attempts: BTreeMap<String, u64>,
    errors: usize,
}

impl Builder {
    pub(super) fn new(mut spans: Vec<Span>) -> Builder {
        spans.sort_by(|a, b| (a.start_ns, &a.trace_id, &a.span_id).cmp(&(b.start_ns, &b.trace_id, &b.span_id)));
        let index: BTreeMap<(String, String), usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| ((s.trace_id.clone(), s.span_id.clone()), i))
            .collect();
        let mut parent_of: Vec<Option<usize>> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let p = s
                    .parent
                    .as_ref()
                    .and_then(|p| index.get(&(s.trace_id.clone(), p.clone())).copied());
                p.filter(|&p| p != i)
            })
            .collect();
        cut_cycles(&mut parent_of);
        name_unnamed_tools(&mut spans);
        let agentsim_export = spans.iter().any(|s| {
            s.events.iter().any(|(name, _, _)| name == "agentsim.fault")
                || s.attrs.keys().any(|k| k.starts_with("agentsim."))
        });
        let mut children: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, p) in parent_of.iter().enumerate() {
            if let Some(p) = p {
                children.entry(*p).or_default().push(i);
            }
        }
        let mut owner = vec![None; spans.len()];
        for i in 0..spans.len() {
            // Walk up at most as many steps as there are spans: a cycle cannot hang the import.
            let mut at = parent_of[i];
            let mut steps = 0;
            while let Some(p) = at {
                if spans[p].op() == Op::Agent {
                    owner[i] = Some(p);
                    break;
                }
                steps += 1;
                if steps > spans.len() {
                    break;
                }
                at = parent_of[p];
            }
        }
        adopt_orphan_tools(&spans, &mut owner);
        Builder {
            spans,
            children,
            owner,
            content_missing: false,
            root: Vec::new(),
            agentsim_export,
        }
    }

    pub(super) fn build(mut self, file: &str) -> Result<Imported, String> {
        let ops: Vec<Op> = self.spans.iter().map(Span::op).collect();
        let chats: Vec<usize> = (0..ops.len()).filter(|&i| ops[i] == Op::Chat).collect();
        if chats.is_empty() {
            return Err(
                "expected at least one model call (a `chat` span, or an OpenInference LLM span), found none".into(),
            );
        }
        let work = self.work_items(&ops);
        let llms = models(&self.spans, &chats);
        let mut roster = self.roster(&ops, &llms);
        let mut recorded = Recorded {
            tool_ordinal: self.tool_ordinals(&ops),
            ..Recorded::default()
        };
        for (owner, items) in &work {
            let agent = owner.map_or(DEFAULT_AGENT.to_owned(), |a| self.spans[a].agent_name());
            for k in 0..items.len() {
                match ops[items[k]] {
                    Op::Chat => self.record_chat(&mut recorded, &agent, &llms, &ops, &items[k..]),
                    Op::Tool => self.record_tool(&mut recorded, &agent, &ops, &items[k..]),
                    _ => {}
                }
            }
            let failed: Vec<(bool, String)> = items
                .iter()
                .filter(|&&i| ops[i] == Op::Chat)
                .map(|&i| (self.spans[i].error.is_some(), self.spans[i].model()))
                .collect();
            let attempts = attempts_taken(&failed);
            if attempts > 1 {
                let slot = recorded.retry_attempts.entry(agent.clone()).or_insert(attempts);
                *slot = (*slot).max(attempts);
            }
        }
        let delegates = self.delegations(&mut recorded.calls, &mut roster);
        let chat_calls = recorded.calls.len();

        let origin_ns = self.spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let end_ns = self.spans.iter().map(|s| s.end_ns).max().unwrap_or(origin_ns);
        let (dialogues, explained) = self.dialogues(&ops, &chats, &recorded.calls, origin_ns);
        let (traffic, roots) = by_agent(dialogues);
        self.crashes_and_other_faults(origin_ns, &explained, &mut recorded.faults);
        let conversations = conversation_numbers(&traffic, &roots);
        let mut entries = self.cassette_entries(&recorded.calls, &conversations);
        let tool_calls = self.recorded_tool_calls(&ops, &conversations);
        let mut out_of_turns: BTreeMap<String, u32> = BTreeMap::new();
        for dialogue in traffic.values().flatten() {
            match &dialogue.ending {
                Ending::OutOfTurns { agent, calls } => {
                    let slot = out_of_turns.entry(agent.clone()).or_insert(*calls);
                    *slot = (*slot).min(*calls).max(1);
                }
                Ending::Failed { agent, error } => {
                    let conv = conversations[&dialogue.roots[0]];
                    let llm = roster.agent_llm.get(agent).cloned().unwrap_or_default();
                    entries.push(super::cassette::failure_entry(&entries, &llm, agent, conv, error));
                }
                Ending::Normal => {}
            }
        }

        let scenario = self.scenario_text(
            file,
            &ScenarioParts {
                agents: &roster.agents,
                agent_llm: &roster.agent_llm,
                agent_models: &roster.agent_models,
                agent_tools: &roster.agent_tools,
                handoffs: &roster.handoffs,
                delegates: &delegates,
                llms: &llms,
                tool_latency: &recorded.tool_latency,
                tool_output: &recorded.tool_output,
                tool_calls: &tool_calls,
                traffic: &traffic,
                faults: &recorded.faults,
                tool_timeout_us: &recorded.tool_timeout_us,
                retry_gap_us: &recorded.retry_gap_us,
                retry_attempts: &recorded.retry_attempts,
                chat_count: &roster.chat_count,
                out_of_turns: &out_of_turns,
                duration_us: (end_ns - origin_ns) / 1_000,
            },
        );
        let name = scenario_name(file);
        Ok(Imported {
            scenario,
            cassette: Cassette::to_jsonl(&name, &entries),
            agents: roster.agents.len(),
            chat_calls,
            tool_calls: recorded.tool_calls_total,
            errors: recorded.errors,
            content_missing: self.content_missing,
        })
    }

    /// The agent a span works for: its nearest agent-span ancestor (see [`adopt_orphan_tools`]),
    /// or the implicit agent.
    fn agent_of(&self, i: usize) -> String {
        self.owner[i].map_or(DEFAULT_AGENT.to_owned(), |a| self.spans[a].agent_name())
    }

    /// The work items of each agent span (or of the implicit agent), in time order.
    fn work_items(&self, ops: &[Op]) -> BTreeMap<Option<usize>, Vec<usize>> {
        let mut work: BTreeMap<Option<usize>, Vec<usize>> = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            if matches!(op, Op::Chat | Op::Tool) || (*op == Op::Agent && self.owner[i].is_some()) {
                work.entry(self.owner[i]).or_default().push(i);
            }
        }
        work
    }

    /// Agents, in order of first appearance, with their models, tools, handoffs and calls.
    fn roster(&self, ops: &[Op], llms: &BTreeMap<String, String>) -> Roster {
        let mut roster = Roster::default();
        for (i, &op) in ops.iter().enumerate() {
            let name = match op {
                Op::Agent => self.spans[i].agent_name(),
                Op::Chat | Op::Tool => self.agent_of(i),
                Op::Other => continue,
            };
            if !roster.agents.contains(&name) {
                roster.agents.push(name.clone());
            }
            match op {
                Op::Chat => {
                    let model = self.spans[i].model();
                    let after_failure = roster.last_call_failed.get(&name).copied().unwrap_or(false);
                    let used = roster.agent_models.entry(name.clone()).or_default();
                    if !used.contains(&llms[&model]) && (used.is_empty() || after_failure) {
                        used.push(llms[&model].clone());
                    }
                    roster
                        .last_call_failed
                        .insert(name.clone(), self.spans[i].error.is_some());
                    roster.agent_llm.entry(name).or_insert_with(|| llms[&model].clone());
                    *roster.chat_count.entry(self.owner[i]).or_default() += 1;
                }
                Op::Tool => {
                    roster
                        .agent_tools
                        .entry(name)
                        .or_default()
                        .insert(self.spans[i].tool_name());
                }
                Op::Agent => {
                    if let Some(parent) = self.owner[i] {
                        let from = self.spans[parent].agent_name();
                        if from != name {
                            roster.handoffs.entry(from).or_default().insert(name);
                        }
                    }
                }
                Op::Other => {}
            }
        }
        roster
    }

    /// A model call, `items[0]`, of `agent`, whose later work is the rest of `items`: its answer,
    /// and for an error the gap before the retry.
    fn record_chat(
        &mut self,
        recorded: &mut Recorded,
        agent: &str,
        llms: &BTreeMap<String, String>,
        ops: &[Op],
        items: &[usize],
    ) {
        let (i, rest) = (items[0], &items[1..]);
        let following: Vec<usize> = rest.iter().copied().take_while(|&j| ops[j] != Op::Chat).collect();
        let call = self.chat_call(agent, llms, i, &following);
        recorded.calls.push(call);
        let span = &self.spans[i];
        if span.error.is_some() {
            recorded.errors += 1;
            if let Some(&next) = rest.iter().find(|&&j| ops[j] == Op::Chat) {
                let gap = self.spans[next].start_ns.saturating_sub(span.end_ns) / 1_000;
                let slot = recorded.retry_gap_us.entry(agent.to_owned()).or_insert(gap);
                *slot = (*slot).min(gap);
            }
        }
    }

    /// A tool call, `items[0]`, of `agent`, whose later work is the rest of `items`: its latency
    /// and output, and for an error a fault and the agent's timeout.
    fn record_tool(&mut self, recorded: &mut Recorded, agent: &str, ops: &[Op], items: &[usize]) {
        let (i, rest) = (items[0], &items[1..]);
        let span = &self.spans[i];
        recorded.tool_calls_total += 1;
        let tool = span.tool_name();
        if span.error.is_none() {
            recorded
                .tool_latency
                .entry(tool.clone())
                .or_default()
                .push(span.duration_us());
        } else {
            recorded.tool_latency.entry(tool.clone()).or_default();
        }
        let count = recorded.tool_ordinal.get(&i).copied().unwrap_or(1);
        // An empty result is a result (a `think` tool returns nothing), not missing content.
        let result = span.tool_result();
        // A failed call has no result to record: its missing result is no missing content.
        match &result {
            Some(text) if span.error.is_none() => {
                recorded.tool_output.entry(tool.clone()).or_insert_with(|| text.clone());
            }
            None if span.error.is_none() => self.content_missing = true,
            _ => {}
        }
        let span = &self.spans[i];
        let Some(message) = &span.error else {
            return;
        };
        recorded.errors += 1;
        let timeout = message.to_ascii_lowercase().contains("timeout")
            || span
                .str("error.type")
                .is_some_and(|t| t.to_ascii_lowercase().contains("timeout"));
        let next_chat = rest.iter().find(|&&j| ops[j] == Op::Chat);
        // The agent stopped waiting before the tool answered: its timeout is when it went on.
        let abandoned_at = next_chat
            .map(|&next| self.spans[next].start_ns)
            .filter(|&next_ns| next_ns < span.end_ns);
        // A call that itself ended in a timeout error waited its whole span: that is the
        // agent's timeout, and the tool never answered within it (whatever it did meanwhile).
        let waited_ns = match abandoned_at {
            Some(next_ns) => Some(next_ns.saturating_sub(span.start_ns)),
            None if timeout => Some(span.end_ns.saturating_sub(span.start_ns)),
            None => None,
        };
        if let Some(waited_ns) = waited_ns {
            let waited = waited_ns / 1_000;
            let slot = recorded.tool_timeout_us.entry(agent.to_owned()).or_insert(waited);
            *slot = (*slot).min(waited).max(1_000);
        }
        let faults = &mut recorded.faults;
        let _ = writeln!(faults, "\n# {tool} call {count} failed in the trace: {message}");
        let _ = writeln!(faults, "[[fault]]");
        if timeout {
            // The side effect happens and the answer does not come in time: the agent's
            // `tool_timeout` ends the wait, as it did in the trace; abandoned, the answer still
            // comes when the span ended (a stale reply).
            let _ = writeln!(faults, "kind = \"tool.timeout\"");
            if abandoned_at.is_some() {
                let _ = writeln!(faults, "latency = \"{}us\"", span.duration_us().max(1));
            }
        } else {
            let _ = writeln!(faults, "kind = \"tool.error\"");
            let _ = writeln!(faults, "text = {}", toml_string(message));
        }
        let _ = writeln!(faults, "target = \"tool:{tool}\"");
        let _ = writeln!(faults, "on_message = {count}");
    }

    /// The agents each agent delegated to (`ask_<agent>` calls to agents of the trace): their
    /// agent spans nested in the delegator's are delegations, not handoffs. An `ask_` call to
    /// no agent of the trace is a tool call after all.
    fn delegations(&self, calls: &mut [ChatCall], roster: &mut Roster) -> BTreeMap<String, BTreeSet<String>> {
        let mut delegates: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for call in calls.iter_mut() {
            for (to, id, args) in std::mem::take(&mut call.delegates) {
                if roster.agents.contains(&to) {
                    delegates.entry(call.agent.clone()).or_default().insert(to.clone());
                    call.delegates.push((to, id, args));
                } else {
                    call.tool_calls
                        .push((format!("{}{to}", crate::llm::live::DELEGATE_TOOL_PREFIX), id, args));
                }
            }
        }
        for (from, to) in &delegates {
            if let Some(handoffs) = roster.handoffs.get_mut(from) {
                handoffs.retain(|h| !to.contains(h));
                if handoffs.is_empty() {
                    roster.handoffs.remove(from);
                }
            }
        }
        delegates
    }

    /// Each tool span's place among its tool's calls, in time order (the spans are sorted by
    /// start): the N of the `on_message = N` that replays its failure.
    fn tool_ordinals(&self, ops: &[Op]) -> BTreeMap<usize, u32> {
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        (0..ops.len())
            .filter(|&i| ops[i] == Op::Tool)
            .map(|i| {
                let n = seen.entry(self.spans[i].tool_name()).or_default();
                *n += 1;
                (i, *n)
            })
            .collect()
    }

    /// Each tool's recorded calls, by conversation in time order: latency, and the result of
    /// one that succeeded (a failed one's error is its fault).
    fn recorded_tool_calls(
        &self,
        ops: &[Op],
        conversations: &BTreeMap<usize, u32>,
    ) -> BTreeMap<String, Vec<RecordedToolCall>> {
        let mut by_tool: BTreeMap<String, Vec<RecordedToolCall>> = BTreeMap::new();
        // The spans are in time order.
        for i in (0..ops.len()).filter(|&i| ops[i] == Op::Tool) {
            let span = &self.spans[i];
            let Some(conv) = self.conversation_of(i, conversations) else {
                continue;
            };
            by_tool.entry(span.tool_name()).or_default().push(RecordedToolCall {
                conv,
                latency_us: span.duration_us(),
                output: span.error.is_none().then(|| span.tool_result()).flatten(),
            });
        }
        by_tool
    }

    /// The conversation a span belongs to: that of the span that roots it (the top-level agent
    /// span above it, or the first model call of its trace).
    pub(super) fn conversation_of(&self, span: usize, conversations: &BTreeMap<usize, u32>) -> Option<u32> {
        self.root
            .get(span)
            .copied()
            .flatten()
            .and_then(|root| conversations.get(&root).copied())
    }

    /// Faults that are not model or tool errors (those come from chat and tool spans): the
    /// `agentsim.fault` events of an agentsim export, else `exception` events on agent spans as
    /// crashes of that agent, each at the time it happened.
    fn crashes_and_other_faults(&self, origin_ns: u64, explained: &BTreeSet<usize>, out: &mut String) {
        // Exceptions that ended a conversation's run are its ending, not a crash to replay.
        let events = || {
            self.spans
                .iter()
                .enumerate()
                .filter(|(i, _)| !explained.contains(i))
                .flat_map(|(_, s)| s.events.iter().map(move |e| (s, e)))
        };
        let text = |attrs: &BTreeMap<String, Value>, key: &str| {
            attrs.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
        };
        let mut found: Vec<(u64, String, String, String)> = Vec::new();
        if events().any(|(_, (name, _, _))| name == "agentsim.fault") {
            for (_, (name, time_ns, attrs)) in events() {
                let kind = text(attrs, "agentsim.fault.kind");
                if name != "agentsim.fault" || kind.starts_with("llm.") || kind.starts_with("tool.") {
                    continue;
                }
                let why = format!("fault {} in the trace", text(attrs, "agentsim.fault.name"));
                found.push((*time_ns, kind, text(attrs, "agentsim.fault.target"), why));
            }
        } else {
            for (span, (name, time_ns, attrs)) in events() {
                if name == "exception" && span.op() == Op::Agent {
                    let why = format!("exception in the trace: {}", text(attrs, "exception.type"));
                    found.push((
                        *time_ns,
                        "actor.crash".into(),
                        format!("agent:{}", span.agent_name()),
                        why,
                    ));
                }
            }
        }
        found.sort();
        for (time_ns, kind, target, why) in found {
            if target.is_empty()
                || !kind
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '.' || c == '_' || c.is_ascii_digit())
            {
                continue;
            }
            let _ = writeln!(out, "\n# {}", why.replace('\n', " "));
            let _ = writeln!(out, "[[fault]]");
            let _ = writeln!(out, "kind = {}", toml_string(&kind));
            let _ = writeln!(out, "target = {}", toml_string(&target));
            let _ = writeln!(out, "at = \"{}us\"", time_ns.saturating_sub(origin_ns) / 1_000);
            let _ = writeln!(out, "count = 1");
        }
    }

    /// The user's message that opened a conversation, from the agent span or its first chat.
    pub(super) fn user_text(&mut self, root: usize) -> String {
        // The agent span's own input, else the first model call's user message.
        let mut candidates = vec![root];
        candidates.extend(
            self.children
                .get(&root)
                .map_or(&[][..], |c| c.as_slice())
                .iter()
                .copied()
                .filter(|&c| self.spans[c].op() == Op::Chat)
                .take(1),
        );
        for i in candidates {
            let span = &self.spans[i];
            let first = user_messages(span).and_then(|said| said.into_iter().find(|text| !text.is_empty()));
            if let Some(text) = first {
                return text;
            }
            if i == root {
                if let Some(text) = span.str("input.value") {
                    return text.to_owned();
                }
            }
        }
        self.content_missing = true;
        NO_USER_TEXT.to_owned()
    }
}

/// The conversations by the agent they opened with (in time order for each), and each root span
/// with its agent and its conversation's index there.
#[allow(clippy::type_complexity)]
fn by_agent(dialogues: Vec<Dialogue>) -> (BTreeMap<String, Vec<Dialogue>>, Vec<(usize, String, usize)>) {
    let mut traffic: BTreeMap<String, Vec<Dialogue>> = BTreeMap::new();
    let mut placed = Vec::new();
    for dialogue in dialogues {
        let script = traffic.entry(dialogue.agent.clone()).or_default();
        for &root in &dialogue.roots {
            placed.push((root, dialogue.agent.clone(), script.len()));
        }
        script.push(dialogue);
    }
    (traffic, placed)
}

/// The number each conversation gets in the imported run: traffic sources are written in agent
/// order (an agent's conversations split over several sources only where a user talks back),
/// and each numbers its conversations in a block of its own, in script order.
fn conversation_numbers(
    traffic: &BTreeMap<String, Vec<Dialogue>>,
    roots: &[(usize, String, usize)],
) -> BTreeMap<usize, u32> {
    let mut first = BTreeMap::new();
    let mut next = 0u32;
    for (agent, script) in traffic {
        first.insert(agent.as_str(), next);
        next += script.len() as u32;
    }
    roots
        .iter()
        .map(|(span, agent, index)| (*span, first[agent.as_str()] + *index as u32))
        .collect()
}

/// Models, named after themselves.
fn models(spans: &[Span], chats: &[usize]) -> BTreeMap<String, String> {
    let mut llms: BTreeMap<String, String> = BTreeMap::new();
    for &c in chats {
        let model = spans[c].model();
        let name = identifier(&model);
        llms.entry(model).or_insert(name);
    }
    llms
}

/// A tool span that names no tool (no `gen_ai.tool.name` or the like, a span called just
/// `execute_tool`) is named after the call its id answers: the tool call with that
/// `gen_ai.tool.call.id` in an earlier model call's answer of the same trace — in its output
/// messages (GenAI parts, or OpenAI's `function.name`) or in OpenLLMetry's flattened
/// `…tool_calls.K.id` and `…tool_calls.K.name`.
fn name_unnamed_tools(spans: &mut [Span]) {
    for i in 0..spans.len() {
        let tool = &spans[i];
        let unnamed = ["gen_ai.tool.name", "tool.name", "traceloop.entity.name"]
            .iter()
            .all(|k| tool.str(k).is_none())
            && tool.suffix("execute_tool").is_none();
        let Some(id) = tool
            .str("gen_ai.tool.call.id")
            .filter(|_| unnamed && tool.op() == Op::Tool)
        else {
            continue;
        };
        let name = spans[..i]
            .iter()
            .rev()
            .filter(|chat| chat.op() == Op::Chat && chat.trace_id == tool.trace_id)
            .find_map(|chat| called_name(chat, id));
        if let Some(name) = name {
            spans[i].attrs.insert("gen_ai.tool.name".into(), Value::String(name));
        }
    }
}

/// The name of the tool call `id` in a model call's answer, as far as its attributes say.
fn called_name(chat: &Span, id: &str) -> Option<String> {
    fn in_json(value: &Value, id: &str) -> Option<String> {
        match value {
            Value::Object(map) if map.get("id").and_then(Value::as_str) == Some(id) => map
                .get("name")
                .or_else(|| map.get("function").and_then(|f| f.get("name")))
                .and_then(Value::as_str)
                .map(str::to_owned),
            Value::Object(map) => map.values().find_map(|v| in_json(v, id)),
            Value::Array(items) => items.iter().find_map(|v| in_json(v, id)),
            _ => None,
        }
    }
    chat.attrs.iter().find_map(|(key, value)| {
        let text = value.as_str()?;
        if let Some(prefix) = key.strip_suffix(".id").filter(|_| text == id) {
            return chat.str(&format!("{prefix}.name")).map(str::to_owned);
        }
        let answer = key.contains("output") || key.contains("completion");
        if !answer || !text.contains(id) {
            return None;
        }
        in_json(&serde_json::from_str(text).ok()?, id)
    })
}

/// A tool span under no agent span, in a trace that has agent spans, works for the agent whose
/// model asked for it: the latest model call of the same trace before it that names its call id
/// (`gen_ai.tool.call.id`) in its attributes, else the latest model call before it. Tool spans
/// lose their parent when the tool runs on another thread or task than the one that holds the
/// agent's context; without this they would make up an agent of their own.
fn adopt_orphan_tools(spans: &[Span], owner: &mut [Option<usize>]) {
    let named = |chat: &Span, id: &str| {
        chat.attrs
            .values()
            .any(|v| v.as_str().is_some_and(|text| text.contains(id)))
    };
    for i in 0..spans.len() {
        if owner[i].is_some() || spans[i].op() != Op::Tool {
            continue;
        }
        let tool = &spans[i];
        let id = tool.str("gen_ai.tool.call.id");
        // Spans are in start order: the model calls that started by the tool's start are those
        // before `end`, latest last.
        let end = i + spans[i..].iter().take_while(|s| s.start_ns <= tool.start_ns).count();
        let mut latest = None;
        for c in (0..end).rev() {
            let chat = &spans[c];
            if owner[c].is_none() || chat.op() != Op::Chat || chat.trace_id != tool.trace_id {
                continue;
            }
            latest.get_or_insert(c);
            match id {
                Some(id) if named(chat, id) => {
                    latest = Some(c);
                    break;
                }
                Some(_) => {}
                None => break,
            }
        }
        if let Some(chat) = latest {
            owner[i] = owner[chat];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{attempts_taken, cut_cycles};

    #[test]
    fn attempts_are_the_longest_run_of_failures_and_the_call_that_succeeded_or_gave_up() {
        let on = |model: &str, failed: &[bool]| -> Vec<(bool, String)> {
            failed.iter().map(|&f| (f, model.to_owned())).collect()
        };
        assert_eq!(attempts_taken(&on("a", &[false, false])), 1);
        assert_eq!(attempts_taken(&on("a", &[true, true, false, false])), 3);
        // Three 429s and nothing after: three attempts, then it gave up.
        assert_eq!(attempts_taken(&on("a", &[false, true, true, true])), 3);
        assert_eq!(
            attempts_taken(&on("a", &[true, false, true, true, true, true, false])),
            5
        );
        // Two failures, then the fallback answered: two attempts on the primary.
        let mut turned = on("a", &[true, true]);
        turned.extend(on("b", &[false]));
        assert_eq!(attempts_taken(&turned), 2);
    }

    /// Whether every walk up from every span ends.
    fn acyclic(parent_of: &[Option<usize>]) -> bool {
        (0..parent_of.len()).all(|start| {
            let mut at = parent_of[start];
            (0..=parent_of.len()).any(|_| match at {
                None => true,
                Some(p) => {
                    at = parent_of[p];
                    false
                }
            })
        })
    }

    #[test]
    fn a_cycle_of_parents_is_cut_at_its_earliest_span_and_the_rest_of_the_tree_stays() {
        // 0 ↔ 1 (two agent spans naming each other as parent), 2 under 1, 3 → 4 → 5 → 3, 6 a root.
        let mut parent_of = vec![Some(1), Some(0), Some(1), Some(4), Some(5), Some(3), None];
        cut_cycles(&mut parent_of);
        assert!(acyclic(&parent_of));
        assert_eq!(parent_of, vec![None, Some(0), Some(1), None, Some(5), Some(3), None]);
        let mut self_parent = vec![Some(0)];
        cut_cycles(&mut self_parent);
        assert_eq!(self_parent, vec![None]);
    }
}
