//! OTLP/JSON export of a run, following the OpenTelemetry GenAI semantic conventions
//! (version [`SEMCONV_VERSION`]).
//!
//! The spans are a pure function of the trace: one trace per run under an
//! `invoke_workflow {scenario}` root; `invoke_agent {agent}` per agent and conversation,
//! `chat {model}` per model call, `execute_tool {tool}` per tool call. Errors are span status,
//! faults, guardrail verdicts, failures and restarts are span events. Ids come from BLAKE3 of
//! the scenario hash, the seed and the span's index, and times from a fixed epoch plus virtual
//! time, so the same run always exports the same bytes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::scenario::{LlmMode, Scenario};
use crate::trace::record::msg_field as field;
use crate::trace::Record;

/// The GenAI semantic conventions version the attributes follow.
pub const SEMCONV_VERSION: &str = "1.37.0";
/// Virtual time 0 is exported as 2025-01-01T00:00:00Z.
pub const EPOCH_UNIX_NANOS: u64 = 1_735_689_600_000_000_000;

/// Attributes in the order they are set.
type Attributes = Vec<(String, Value)>;
/// A span event: virtual time, name, attributes.
type SpanEvent = (u64, String, Attributes);

/// A span under construction.
#[derive(Debug, Clone)]
struct Span {
    parent: Option<usize>,
    name: String,
    /// 1 INTERNAL, 3 CLIENT.
    kind: u8,
    start_us: u64,
    end_us: Option<u64>,
    attributes: Vec<(String, Value)>,
    events: Vec<SpanEvent>,
    /// `(code, message)`: 2 is ERROR.
    status: Option<(u8, String)>,
    /// `agent:NAME` for agent spans, for parent look-ups.
    agent: Option<String>,
}

impl Span {
    fn attr(&mut self, key: &str, value: Value) {
        self.attributes.push((key.to_owned(), value));
    }
}

/// Builds the spans of one trace.
struct Exporter<'a> {
    scenario: &'a Scenario,
    spans: Vec<Span>,
    /// Open agent span per (conversation, agent id).
    agents: BTreeMap<(u64, String), usize>,
    /// Open tool span per (conversation, calling agent, call id): call ids count per agent, so
    /// delegates working in parallel in one conversation reuse them.
    tools: BTreeMap<(u64, String, u64), usize>,
    /// Fault records waiting for the delivery they hit, by seq.
    faults: BTreeMap<u64, Vec<(u64, Attributes)>>,
    /// The model whose answer a guardrail holds, per (conversation, guardrail): a
    /// `model_output` guardrail relays it to the agent.
    relayed_from: BTreeMap<(u64, String), String>,
}

/// Exports `trace` (the bytes of a `trace.jsonl`) as one OTLP/JSON `TracesData` line.
pub fn export(trace: &[u8], scenario: &Scenario) -> Result<String, String> {
    let records = crate::trace::records::parse("trace", trace)?;
    let Some(Record::Header {
        seed, scenario_hash, ..
    }) = records.first()
    else {
        return Err("the trace has no header".to_owned());
    };
    let seed = *seed;
    let mut exporter = Exporter {
        scenario,
        spans: vec![Span {
            parent: None,
            name: format!("invoke_workflow {}", scenario.name),
            kind: 1,
            start_us: 0,
            end_us: None,
            attributes: vec![
                ("gen_ai.operation.name".into(), json!("invoke_workflow")),
                ("gen_ai.workflow.name".into(), json!(scenario.name)),
                ("agentsim.seed".into(), json!(seed)),
            ],
            events: Vec::new(),
            status: None,
            agent: None,
        }],
        agents: BTreeMap::new(),
        tools: BTreeMap::new(),
        faults: BTreeMap::new(),
        relayed_from: BTreeMap::new(),
    };
    let mut end_us = 0;
    for record in &records[1..] {
        let t_us = record.t_us();
        end_us = end_us.max(t_us);
        exporter.record(record, t_us);
    }
    exporter.finish(end_us);
    Ok(exporter.encode(scenario_hash, seed))
}

/// `agentsim.KEY` attributes of a supervision event, in the given (key) order.
fn supervision_attributes(pairs: &[(&str, String)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(key, value)| (format!("agentsim.{key}"), json!(value)))
        .collect()
}

fn number(msg: &str, key: &str) -> Option<u64> {
    field(msg, key).and_then(|v| v.parse().ok())
}

/// A quoted value (`user="..."`), unescaped; runs to the closing quote.
fn quoted(msg: &str, key: &str) -> Option<String> {
    let start = msg.find(&format!(" {key}=\""))? + key.len() + 3;
    let mut out = String::new();
    let mut chars = msg[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

impl Exporter<'_> {
    fn open(&mut self, span: Span) -> usize {
        self.spans.push(span);
        self.spans.len() - 1
    }

    fn span(&self, parent: Option<usize>, name: String, kind: u8, start_us: u64) -> Span {
        Span {
            parent: Some(parent.unwrap_or(0)),
            name,
            kind,
            start_us,
            end_us: None,
            attributes: Vec::new(),
            events: Vec::new(),
            status: None,
            agent: None,
        }
    }

    /// The open span of `agent` in `conv`, else its latest open span, else the root.
    fn agent_span(&self, conv: Option<u64>, agent: &str) -> usize {
        if let Some(conv) = conv {
            if let Some(&i) = self.agents.get(&(conv, agent.to_owned())) {
                return i;
            }
        }
        self.agents
            .iter()
            .filter(|((_, a), _)| a == agent)
            .map(|(_, &i)| i)
            .max()
            .unwrap_or(0)
    }

    /// The latest agent span open for `conv` (the workflow span if none is).
    fn holder_span(&self, conv: u64) -> usize {
        self.agents
            .iter()
            .filter(|((c, _), _)| *c == conv)
            .map(|(_, &i)| i)
            .max()
            .unwrap_or(0)
    }

    fn open_agent(&mut self, conv: u64, agent: &str, parent: Option<usize>, t_us: u64) -> usize {
        let name = agent.strip_prefix("agent:").unwrap_or(agent);
        let mut span = self.span(parent, format!("invoke_agent {name}"), 1, t_us);
        span.attr("gen_ai.operation.name", json!("invoke_agent"));
        span.attr("gen_ai.agent.name", json!(name));
        span.attr("gen_ai.conversation.id", json!(conv.to_string()));
        // What an import cannot see in the calls: the agent's bounds and its retry policy.
        if let Some(spec) = self.scenario.agents.iter().find(|a| a.name == name) {
            span.attr("agentsim.agent.max_turns", json!(spec.max_turns));
            if let Some(retry) = spec.retry {
                span.attr("agentsim.agent.retry.attempts", json!(retry.attempts));
                span.attr("agentsim.agent.retry.base_us", json!(retry.base_us));
                span.attr("agentsim.agent.retry", json!(retry.to_toml()));
            }
            if let Some(fallback) = spec.fallback {
                span.attr(
                    "agentsim.agent.fallback.model",
                    json!(self.scenario.llms[fallback].model),
                );
            }
            if let Some(breaker) = spec.circuit_breaker {
                span.attr(
                    "agentsim.agent.circuit_breaker",
                    json!(format!(
                        "{{ failures = {}, cool_down = \"{}us\" }}",
                        breaker.failures, breaker.cool_down_us
                    )),
                );
            }
        }
        span.agent = Some(agent.to_owned());
        let index = self.open(span);
        self.agents.insert((conv, agent.to_owned()), index);
        index
    }

    fn close_agent(&mut self, conv: u64, agent: &str, t_us: u64) -> Option<usize> {
        let index = self.agents.remove(&(conv, agent.to_owned()))?;
        self.spans[index].end_us = Some(t_us);
        Some(index)
    }

    fn record(&mut self, record: &Record, t_us: u64) {
        match record {
            Record::Deliver { seq, from, to, msg, .. } => self.deliver(*seq, from, to, msg, t_us),
            Record::Fault {
                seq,
                fault,
                name,
                actor,
                params,
                ..
            } => {
                let attributes = vec![
                    ("agentsim.fault.kind".into(), json!(fault)),
                    ("agentsim.fault.name".into(), json!(name)),
                    ("agentsim.fault.target".into(), json!(actor)),
                    ("agentsim.fault.params".into(), json!(params)),
                ];
                self.faults.entry(*seq).or_default().push((t_us, attributes));
            }
            Record::World {
                actor,
                conv,
                op,
                table,
                key,
                row,
                lost,
                ..
            } => {
                // World changes: an event on the run's span, with the record afterwards.
                let mut attributes = vec![
                    ("agentsim.world.actor".to_owned(), json!(actor)),
                    ("agentsim.world.conversation".to_owned(), json!(conv.to_string())),
                    ("agentsim.world.key".to_owned(), json!(key)),
                    ("agentsim.world.op".to_owned(), json!(op)),
                    ("agentsim.world.table".to_owned(), json!(table)),
                ];
                if let Some(row) = row {
                    attributes.push(("agentsim.world.row".to_owned(), json!(row)));
                }
                if *lost {
                    attributes.push(("agentsim.world.lost".to_owned(), json!("true")));
                }
                self.spans[0]
                    .events
                    .push((t_us, "agentsim.world.change".to_owned(), attributes));
            }
            Record::Guard {
                guardrail,
                stage,
                actor,
                conv,
                verdict,
                ..
            } => {
                // Guardrail verdicts: an event on the checked agent's span.
                let target = self.agent_span(Some(*conv), actor);
                let attributes = [
                    ("guardrail", guardrail),
                    ("stage", stage),
                    ("actor", actor),
                    ("verdict", verdict),
                ]
                .iter()
                .map(|(k, v)| (format!("agentsim.guardrail.{k}"), json!(v)))
                .collect();
                self.spans[target]
                    .events
                    .push((t_us, "agentsim.guardrail".into(), attributes));
            }
            Record::Fail {
                seq,
                actor,
                incarnation,
                error,
                ..
            } => {
                // Attributes in key order, numbers as text, as every supervision event has them.
                let mut attributes = supervision_attributes(&[
                    ("actor", actor.clone()),
                    ("error", error.clone()),
                    ("incarnation", incarnation.to_string()),
                    ("seq", seq.to_string()),
                ]);
                attributes.push(("exception.message".into(), json!(error)));
                self.spans[0].events.push((t_us, "exception".to_owned(), attributes));
            }
            Record::Restart {
                actor,
                incarnation,
                supervisor,
                ..
            } => {
                let attributes = supervision_attributes(&[
                    ("actor", actor.clone()),
                    ("incarnation", incarnation.to_string()),
                    ("supervisor", supervisor.clone()),
                ]);
                self.spans[0]
                    .events
                    .push((t_us, "agentsim.restart".to_owned(), attributes));
            }
            Record::Escalate { actor, reason, .. } => {
                let attributes = supervision_attributes(&[("actor", actor.clone()), ("reason", reason.clone())]);
                self.spans[0]
                    .events
                    .push((t_us, "agentsim.escalate".to_owned(), attributes));
            }
            Record::Header { .. } | Record::End { .. } => {}
        }
    }

    fn deliver(&mut self, seq: u64, from: &str, to: &str, msg: &str, t_us: u64) {
        let verb = msg.split(' ').next().unwrap_or("");
        let conv = number(msg, "conv");
        match (verb, conv) {
            ("start", Some(conv)) if to.starts_with("agent:") => {
                let span = self.open_agent(conv, to, None, t_us);
                if let Some(user) = quoted(msg, "user") {
                    let messages = json!([{"role": "user", "parts": [{"type": "text", "content": user}]}]);
                    self.spans[span].attr("gen_ai.input.messages", json!(messages.to_string()));
                }
            }
            ("handoff", Some(conv)) => {
                let previous = field(msg, "from").map(|a| format!("agent:{a}"));
                let parent = previous.as_ref().and_then(|p| self.close_agent(conv, p, t_us));
                self.open_agent(conv, to, parent, t_us);
            }
            ("delegate", Some(conv)) => {
                let parent = field(msg, "from").map(|a| self.agent_span(None, &format!("agent:{a}")));
                let span = self.open_agent(conv, to, parent, t_us);
                // The task is the delegate's user message, as an agent-as-tool run gets it.
                if let Some(task) = quoted(msg, "task") {
                    let messages = json!([{"role": "user", "parts": [{"type": "text", "content": task}]}]);
                    self.spans[span].attr("gen_ai.input.messages", json!(messages.to_string()));
                }
            }
            ("delegate_result", Some(conv)) => {
                self.close_agent(conv, from, t_us);
            }
            ("answer", Some(conv)) if to == "user" => {
                if let Some(index) = self.close_agent(conv, from, t_us) {
                    let status = field(msg, "status").unwrap_or("");
                    if let Some(text) = quoted(msg, "text") {
                        let messages = json!([{"role": "assistant", "parts": [{"type": "text", "content": text}],
                            "finish_reason": "stop"}]);
                        self.spans[index].attr("gen_ai.output.messages", json!(messages.to_string()));
                    }
                    if status != "answered" {
                        self.spans[index].status = Some((2, status.to_owned()));
                    }
                }
            }
            // A user simulator's calls are the test's, not the design's: its messages appear as
            // the user input of the agent spans.
            ("llm_reply", Some(_)) if to == "user" => {}
            ("llm_reply_via", Some(conv)) => {
                self.relayed_from.insert((conv, to.to_owned()), from.to_owned());
            }
            ("llm_reply", Some(conv)) => {
                // An answer a guardrail checked comes from the guardrail: the call was the model's.
                let model = match from.starts_with("guardrail:") {
                    true => self.relayed_from.remove(&(conv, from.to_owned())),
                    false => None,
                };
                self.chat(conv, model.as_deref().unwrap_or(from), to, msg, t_us)
            }
            ("invoke", Some(conv)) => {
                let call = number(msg, "call").unwrap_or(0);
                // A call a tool-call guardrail let through arrives from the guardrail: it is
                // the work of the agent holding the conversation.
                let parent = match from.starts_with("guardrail:") {
                    true => self.holder_span(conv),
                    false => self.agent_span(Some(conv), from),
                };
                let tool = to.strip_prefix("tool:").unwrap_or(to);
                let mut span = self.span(Some(parent), format!("execute_tool {tool}"), 1, t_us);
                span.attr("gen_ai.operation.name", json!("execute_tool"));
                span.attr("gen_ai.tool.name", json!(tool));
                span.attr("gen_ai.tool.type", json!("function"));
                span.attr("gen_ai.tool.call.id", json!(format!("call_{call}")));
                if let Some(at) = msg.find(" args=") {
                    span.attr("gen_ai.tool.call.arguments", json!(&msg[at + 6..]));
                }
                let agent = self.spans[parent].agent.clone().unwrap_or_else(|| from.to_owned());
                let index = self.open(span);
                self.tools.insert((conv, agent, call), index);
            }
            ("tool_result", Some(conv)) => {
                let call = number(msg, "call").unwrap_or(0);
                if let Some(index) = self.tools.remove(&(conv, to.to_owned(), call)) {
                    let span = &mut self.spans[index];
                    span.end_us = Some(t_us);
                    let output = quoted(msg, "output").unwrap_or_default();
                    if let Some(error) = output.strip_prefix("error: ") {
                        span.status = Some((2, error.to_owned()));
                        span.attr("error.type", json!("tool_error"));
                    }
                    span.attr("gen_ai.tool.call.result", json!(output));
                }
            }
            ("tool_timeout", Some(conv)) => {
                let call = number(msg, "call").unwrap_or(0);
                if let Some(&index) = self.tools.get(&(conv, to.to_owned(), call)) {
                    let span = &mut self.spans[index];
                    span.status = Some((2, "timeout".into()));
                    span.attr("error.type", json!("timeout"));
                    span.events.push((t_us, "agentsim.tool_timeout".into(), Vec::new()));
                }
            }
            _ => {}
        }
        if let Some(fired) = self.faults.remove(&seq) {
            let agent = [to, from].into_iter().find(|a| a.starts_with("agent:"));
            let target = agent.map_or(0, |a| self.agent_span(conv, a));
            for (at_us, attributes) in fired {
                self.spans[target]
                    .events
                    .push((at_us, "agentsim.fault".into(), attributes));
            }
        }
    }

    fn chat(&mut self, conv: u64, from: &str, to: &str, msg: &str, t_us: u64) {
        let llm_name = from.strip_prefix("llm:").unwrap_or(from);
        let llm = self.scenario.llms.iter().find(|l| l.name == llm_name);
        let model = llm.map_or(llm_name, |l| l.model.as_str());
        let provider = match llm.map(|l| l.mode) {
            Some(LlmMode::Live | LlmMode::Replay) => "openai",
            _ => "agentsim.mock",
        };
        let latency_us = number(msg, "latency_us").unwrap_or(0);
        let parent = self.agent_span(Some(conv), to);
        let mut span = self.span(
            Some(parent),
            format!("chat {model}"),
            3,
            t_us.saturating_sub(latency_us),
        );
        span.end_us = Some(t_us);
        span.attr("gen_ai.operation.name", json!("chat"));
        span.attr("gen_ai.provider.name", json!(provider));
        span.attr("gen_ai.request.model", json!(model));
        span.attr("gen_ai.agent.name", json!(to.strip_prefix("agent:").unwrap_or(to)));
        span.attr("gen_ai.conversation.id", json!(conv.to_string()));
        if let Some(error) = field(msg, "error") {
            let mut words = msg[msg.find("error=").unwrap_or(0) + 6..].split(' ');
            let status = words.next().unwrap_or(error);
            let _error_type = words.next().unwrap_or("");
            let code = words.next().unwrap_or("");
            span.attr("error.type", json!(code));
            if let Ok(status) = status.parse::<u64>() {
                span.attr("http.response.status_code", json!(status));
            }
            if let Some(us) = number(msg, "retry_after_us") {
                span.attr("agentsim.retry_after_us", json!(us));
            }
            span.status = Some((2, format!("{status} {code}")));
        } else {
            span.attr("gen_ai.response.model", json!(model));
            span.attr(
                "gen_ai.usage.input_tokens",
                json!(number(msg, "tokens_in").unwrap_or(0)),
            );
            span.attr(
                "gen_ai.usage.output_tokens",
                json!(number(msg, "tokens_out").unwrap_or(0)),
            );
            let finish = field(msg, "finish").unwrap_or("stop");
            // The conventions' output-message vocabulary says `tool_call`.
            let finish = if finish == "tool_calls" { "tool_call" } else { finish };
            span.attr("gen_ai.response.finish_reasons", json!([finish]));
            let mut parts = Vec::new();
            if let Some(list) = field(msg, "tool_calls") {
                let inner = list.trim_start_matches('[').trim_end_matches(']');
                let mut ids = Vec::new();
                for call in inner.split(',').filter(|c| !c.is_empty()) {
                    let (name, rest) = call.split_once('#').unwrap_or((call, "0"));
                    let name = name.trim_start_matches('?');
                    let id: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
                    let id = format!("call_{id}");
                    parts.push(json!({"type": "tool_call", "id": id, "name": name}));
                    ids.push(id);
                }
                span.attr("agentsim.tool_call_ids", json!(ids));
            }
            if let Some(target) = field(msg, "handoff") {
                parts.push(json!({"type": "tool_call", "id": format!("handoff_{conv}"),
                    "name": format!("{}{target}", crate::llm::live::HANDOFF_TOOL_PREFIX)}));
            }
            // Delegation as agents-as-tools: one `ask_<agent>` call per delegate.
            if let Some(list) = field(msg, "delegate") {
                let call = number(msg, "call").unwrap_or(0);
                let inner = list.trim_start_matches('[').trim_end_matches(']');
                for (k, target) in inner.split(',').filter(|t| !t.is_empty()).enumerate() {
                    parts.push(json!({"type": "tool_call", "id": format!("delegate_{conv}_{call}_{k}"),
                        "name": format!("{}{target}", crate::llm::live::DELEGATE_TOOL_PREFIX)}));
                }
            }
            if !parts.is_empty() {
                let messages = json!([{"role": "assistant", "parts": parts, "finish_reason": finish}]);
                span.attr("gen_ai.output.messages", json!(messages.to_string()));
            }
        }
        if let Some(cost) = number(msg, "cost_pusd") {
            span.attr("agentsim.cost_pusd", json!(cost));
        }
        self.open(span);
    }

    fn finish(&mut self, end_us: u64) {
        let pending: Vec<_> = std::mem::take(&mut self.faults).into_values().flatten().collect();
        for (at_us, attributes) in pending {
            self.spans[0].events.push((at_us, "agentsim.fault".into(), attributes));
        }
        for span in &mut self.spans {
            if span.end_us.is_none() {
                span.end_us = Some(end_us);
                if span.parent.is_some() {
                    span.attr("agentsim.unfinished", json!(true));
                }
            }
        }
    }

    fn encode(&self, scenario_hash: &str, seed: u64) -> String {
        let trace_hash = blake3::hash(format!("agentsim-otlp/{scenario_hash}/{seed}").as_bytes());
        let trace_id = hex(&trace_hash.as_bytes()[..16]);
        let span_id = |index: usize| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(trace_hash.as_bytes());
            hasher.update(&(index as u64).to_le_bytes());
            hex(&hasher.finalize().as_bytes()[..8])
        };
        let nanos = |us: u64| (EPOCH_UNIX_NANOS + us.saturating_mul(1_000)).to_string();
        let spans: Vec<Value> = self
            .spans
            .iter()
            .enumerate()
            .map(|(index, span)| {
                let mut object = json!({
                    "traceId": trace_id,
                    "spanId": span_id(index),
                    "name": span.name,
                    "kind": span.kind,
                    "startTimeUnixNano": nanos(span.start_us),
                    "endTimeUnixNano": nanos(span.end_us.unwrap_or(span.start_us)),
                    "attributes": attributes(&span.attributes),
                    "events": span.events.iter().map(|(t, name, attrs)| json!({
                        "timeUnixNano": nanos(*t),
                        "name": name,
                        "attributes": attributes(attrs),
                    })).collect::<Vec<_>>(),
                    "status": match &span.status {
                        Some((code, message)) => json!({"code": code, "message": message}),
                        None => json!({}),
                    },
                });
                if let Some(parent) = span.parent {
                    object["parentSpanId"] = json!(span_id(parent));
                }
                object
            })
            .collect();
        let document = json!({"resourceSpans": [{
            "resource": {"attributes": attributes(&[
                ("service.name".into(), json!("agentsim")),
                ("agentsim.scenario".into(), json!(self.scenario.name)),
                ("agentsim.scenario_hash".into(), json!(scenario_hash)),
            ])},
            "scopeSpans": [{
                "scope": {"name": "agentsim", "version": env!("CARGO_PKG_VERSION")},
                "spans": spans,
            }],
            "schemaUrl": format!("https://opentelemetry.io/schemas/{SEMCONV_VERSION}"),
        }]});
        let mut out = document.to_string();
        out.push('\n');
        out
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Attributes as OTLP `KeyValue`s: 64-bit integers as decimal strings, arrays as `arrayValue`.
fn attributes(pairs: &[(String, Value)]) -> Vec<Value> {
    pairs
        .iter()
        .map(|(key, value)| json!({"key": key, "value": any_value(value)}))
        .collect()
}

fn any_value(value: &Value) -> Value {
    match value {
        Value::Bool(b) => json!({"boolValue": b}),
        Value::Number(n) if n.is_u64() || n.is_i64() => json!({"intValue": n.to_string()}),
        Value::Number(n) => json!({"doubleValue": n}),
        Value::String(s) => json!({"stringValue": s}),
        Value::Array(items) => json!({"arrayValue": {"values": items.iter().map(any_value).collect::<Vec<_>>()}}),
        Value::Object(map) => json!({"kvlistValue": {"values": map.iter()
            .map(|(k, v)| json!({"key": k, "value": any_value(v)})).collect::<Vec<_>>()}}),
        Value::Null => json!({"stringValue": ""}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_fields_are_read_by_key_not_by_substring() {
        let msg = "llm_reply conv=3 tool_calls=[refund#1] call=2 finish=tool_calls tokens_in=20";
        assert_eq!(field(msg, "conv"), Some("3"));
        assert_eq!(field(msg, "call"), Some("2"));
        assert_eq!(field(msg, "tool_calls"), Some("[refund#1]"));
        assert_eq!(number(msg, "tokens_in"), Some(20));
        assert_eq!(field(msg, "missing"), None);
        let start = r#"start conv=0 user="say \"hi\" \\ bye""#;
        assert_eq!(quoted(start, "user").as_deref(), Some(r#"say "hi" \ bye"#));
    }
}
