//! The steps a model's answer asks for: tool calls through the tool actors, a handoff with the
//! transcript, a delegation to other agents; and their results joining the transcript.

use std::sync::Arc;

use super::{AgentBehavior, Conversation, Pending, StepResult};
use crate::behavior::route::GuardRoute;
use crate::llm::live::{DELEGATE_TOOL_PREFIX, HANDOFF_TOOL_PREFIX};
use crate::protocol::{
    AgentMsg, AnswerStatus, ChatCall, ChatMessage, ConvId, Delegation, Effect, Origin, Payload, ReplyTo, ToolArgs,
    ToolCall, ToolMsg, ToolRef, Transcript,
};
use crate::scenario::guardrail::Stage;
use crate::scenario::{AgentIdx, Durability, ToolIdx};

impl AgentBehavior {
    /// The `transfer_to_<agent>` call's name and its result (`{"assistant":"<agent>"}`), made once
    /// per target and shared.
    fn handoff_texts(&mut self, to: AgentIdx) -> (Arc<str>, Arc<str>) {
        let scenario = &self.scenario;
        self.texts
            .handoffs
            .entry(to)
            .or_insert_with(|| {
                let name = &scenario.agents[to].name;
                let result = serde_json::json!({ "assistant": name }).to_string();
                (Arc::from(format!("{HANDOFF_TOOL_PREFIX}{name}")), Arc::from(result))
            })
            .clone()
    }

    /// The `<delegate tool prefix><agent>` call's name, made once per delegate and shared.
    fn delegation_name(&mut self, to: AgentIdx) -> Arc<str> {
        let scenario = &self.scenario;
        self.texts
            .delegates
            .entry(to)
            .or_insert_with(|| Arc::from(format!("{DELEGATE_TOOL_PREFIX}{}", scenario.agents[to].name)))
            .clone()
    }

    /// The model handed the conversation on: the `transfer_to_<agent>` call and its result join
    /// the transcript, which goes with the conversation, as the OpenAI Agents SDK does.
    pub(super) fn hand_off(
        &mut self,
        conv: ConvId,
        mut state: Conversation,
        to: AgentIdx,
        call_id: Arc<str>,
        effects: &mut Vec<Effect>,
    ) {
        let max_handoffs = self.scenario.max_handoffs;
        if state.handoffs >= max_handoffs {
            // Agents handing one conversation round without answering: the bound that
            // `max_turns`, counted per agent, cannot give.
            let text: Arc<str> = Arc::from(format!(
                "stopped after {max_handoffs} handoffs without an answer (max_handoffs)"
            ));
            self.answer(conv, &mut state, text, AnswerStatus::MaxHandoffs, effects);
            return;
        }
        let (name, result) = self.handoff_texts(to);
        state.next_call_id += 1;
        state.transcript.push(ChatMessage::calls(vec![ChatCall {
            id: call_id.clone(),
            name,
            arguments: self.texts.no_arguments.clone(),
        }]));
        state.transcript.push(ChatMessage::tool(call_id, result));
        self.finished(conv, (state.origin, state.handoffs), effects);
        if self.scenario.agents[self.agent].handoff_timeout_us.is_some() {
            let start = self.handoff_start(conv, &state, state.transcript.clone());
            self.watch_handoff(conv, to, state, effects);
            self.hand_over(conv, to, start, effects);
            return;
        }
        let history = std::mem::take(&mut state.transcript);
        let start = self.handoff_start(conv, &state, history);
        self.hand_over(conv, to, start, effects);
    }

    /// The model fanned tasks out: one `ask_<agent>` call per task joins the transcript, and each
    /// delegate starts on its task with a transcript of its own.
    pub(super) fn delegate(
        &mut self,
        conv: ConvId,
        mut state: Conversation,
        tasks: Vec<Delegation>,
        effects: &mut Vec<Effect>,
    ) {
        state.next_call_id += tasks.len() as u32;
        state.results.clear();
        let calls = tasks
            .iter()
            .map(|d| ChatCall {
                id: d.call_id.clone(),
                name: self.delegation_name(d.to),
                arguments: Arc::from(delegation_arguments(&d.task)),
            })
            .collect();
        state.transcript.push(ChatMessage::calls(calls));
        state.pending = tasks
            .iter()
            .map(|d| Pending {
                call_id: None,
                delegate: Some(d.to),
                name: Arc::from(self.scenario.agents[d.to].name.as_str()),
                wire_id: d.call_id.clone(),
                output: None,
                task: Some(d.task.clone()),
                attempt: 1,
                call: None,
            })
            .collect();
        self.conversations.insert(conv, state);
        let timeout_us = self.scenario.agents[self.agent].delegation_timeout_us;
        for d in tasks {
            if let Some(timeout_us) = timeout_us {
                let due = AgentMsg::DelegationTimeout {
                    conv,
                    delegate: d.to,
                    attempt: 1,
                };
                effects.push(self.timer(timeout_us, due));
            }
            let start = AgentMsg::Start {
                conv,
                text: d.task,
                origin: Origin::Delegation(self.agent),
                reply_to: ReplyTo::Agent(self.agent),
                history: Transcript::new(),
                handoffs: 0,
            };
            self.hand_over(conv, d.to, start, effects);
        }
    }

    /// A delegate has not answered attempt `attempt` in time: send the task again while
    /// `delegation_retries` allow, else its answer is an error and the step goes on without it.
    /// An answer that comes later is dropped (the trace still shows its delivery).
    pub(super) fn on_delegation_timeout(
        &mut self,
        conv: ConvId,
        delegate: AgentIdx,
        attempt: u32,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let spec = &self.scenario.agents[self.agent];
        let (timeout_us, retries) = (spec.delegation_timeout_us.unwrap_or(0), spec.delegation_retries);
        let Some(state) = self.conversations.get_mut(&conv) else {
            return false;
        };
        let waiting = state
            .pending
            .iter_mut()
            .find(|p| p.delegate == Some(delegate) && p.output.is_none() && p.attempt == attempt);
        let Some(pending) = waiting else {
            return false;
        };
        if attempt <= retries {
            pending.attempt += 1;
            let start = AgentMsg::Start {
                conv,
                text: pending.task.clone().unwrap_or_else(|| self.texts.empty.clone()),
                origin: Origin::Delegation(self.agent),
                reply_to: ReplyTo::Agent(self.agent),
                history: Transcript::new(),
                handoffs: 0,
            };
            let due = AgentMsg::DelegationTimeout {
                conv,
                delegate,
                attempt: attempt + 1,
            };
            effects.push(self.timer(timeout_us, due));
            self.hand_over(conv, delegate, start, effects);
            return true;
        }
        let text = Arc::from(format!(
            "error: agent {} did not answer within {} ({attempt} attempt(s))",
            pending.name,
            crate::scenario::units::format_duration_us(timeout_us)
        ));
        self.on_result(conv, StepResult::Delegate { from: delegate, text }, effects);
        true
    }

    /// Runs the tool calls the model asked for through the tool actors; a call the framework
    /// cannot run (unknown tool, arguments that do not parse) gets its error as the result.
    pub(super) fn call_tools(
        &mut self,
        conv: ConvId,
        mut state: Conversation,
        calls: Vec<ToolCall>,
        effects: &mut Vec<Effect>,
    ) {
        state.tool_calls += calls.len() as u32;
        state.pending.clear();
        let tool_timeout_us = self.scenario.agents[self.agent].tool_timeout_us;
        let keep_calls = self.scenario.agents[self.agent].durability == Durability::AtLeastOnce;
        let mut refused = Vec::new();
        for call in calls {
            // What agent frameworks do with a call they cannot run: tell the model.
            let (tool, name): (_, Arc<str>) = match &call.tool {
                ToolRef::Known(t) => (Some(*t), Arc::from(self.scenario.tools[*t].name.as_str())),
                ToolRef::Unknown(name) => (None, name.clone()),
            };
            let pending = Pending {
                call_id: Some(call.id),
                delegate: None,
                name: name.clone(),
                wire_id: call.wire_id.clone(),
                output: None,
                task: None,
                attempt: 1,
                call: keep_calls.then(|| call.clone()),
            };
            let problem = match (&call.tool, &call.args) {
                (ToolRef::Unknown(name), _) => Some(format!("error: tool {name} does not exist")),
                (_, ToolArgs::Malformed(_)) => Some(format!("error: the arguments for {name} are not valid JSON")),
                _ => None,
            };
            match (problem, tool) {
                // A framework that keys calls by id runs one call per id; the rest vanish.
                (None, Some(_)) if state.pending.iter().any(|p| p.call_id == Some(call.id)) => {}
                (None, Some(tool)) => {
                    state.pending.push(pending);
                    if let Some(timeout_us) = tool_timeout_us {
                        effects.push(self.timer(timeout_us, AgentMsg::ToolTimeout { conv, call_id: call.id }));
                    }
                    self.invoke(conv, tool, call, effects);
                }
                (problem, _) => {
                    state.pending.push(pending);
                    refused.push(StepResult::Tool {
                        call_id: call.id,
                        output: Arc::from(text_or_default(problem)),
                    });
                }
            }
        }
        self.conversations.insert(conv, state);
        for result in refused {
            self.on_result(conv, result, effects);
        }
    }

    /// Sends one tool call to its tool, through the tool-call guardrails.
    pub(super) fn invoke(&self, conv: ConvId, tool: ToolIdx, call: ToolCall, effects: &mut Vec<Effect>) {
        GuardRoute {
            stage: Stage::ToolCall,
            conv,
            agent: self.agent,
            tool: Some(tool),
            dest: self.directory.tool(tool),
        }
        .send(
            &self.scenario,
            &self.directory,
            Payload::Tool(ToolMsg::Invoke {
                conv,
                agent: self.agent,
                call,
            }),
            None,
            0,
            effects,
        );
    }

    /// A tool result or a delegate's answer came back; once all of the step's are in, they join
    /// the transcript in call order and the next turn starts.
    pub(super) fn on_result(&mut self, conv: ConvId, result: StepResult, effects: &mut Vec<Effect>) {
        let kind = match result {
            StepResult::Tool { .. } => "tool_result",
            StepResult::Delegate { .. } => "delegate_result",
        };
        let Some(state) = self.conversations.get_mut(&conv) else {
            return effects.push(Effect::Stale { conv, kind });
        };
        match result {
            StepResult::Tool { call_id, output } => {
                let waiting = state
                    .pending
                    .iter_mut()
                    .find(|p| p.call_id == Some(call_id) && p.output.is_none());
                let Some(pending) = waiting else {
                    // Late, after a timeout (the model has moved on), or a second answer.
                    return effects.push(Effect::Stale { conv, kind });
                };
                pending.output = Some(output.clone());
                state.last_tool = pending.name.clone();
                state.last_tool_output = output;
            }
            StepResult::Delegate { from, text } => {
                let waiting = state
                    .pending
                    .iter_mut()
                    .find(|p| p.delegate == Some(from) && p.output.is_none());
                let Some(pending) = waiting else {
                    return effects.push(Effect::Stale { conv, kind });
                };
                pending.output = Some(text.clone());
                state.delegations += 1;
                if !state.results.is_empty() {
                    state.results.push('\n');
                }
                state.results.push_str(&text);
            }
        }
        if state.pending.iter().any(|p| p.output.is_none()) {
            return;
        }
        let mut state = self.conversations.remove(&conv).expect("present above");
        for pending in std::mem::take(&mut state.pending) {
            let output = pending.output.expect("all in");
            state.transcript.push(ChatMessage::tool(pending.wire_id, output));
        }
        let max_turns = self.scenario.agents[self.agent].max_turns;
        if state.turn >= max_turns {
            let text: Arc<str> = Arc::from(format!("stopped after {max_turns} turns without an answer"));
            self.answer(conv, &mut state, text, AnswerStatus::MaxTurns, effects);
            return;
        }
        state.turn += 1;
        self.step(conv, state, effects);
    }
}

fn text_or_default(text: Option<String>) -> String {
    text.unwrap_or_else(|| "error: the tool call could not be run".to_owned())
}

/// A delegation call's arguments, `{"input":"<task>"}`: the bytes serde_json gives the object,
/// without building it.
fn delegation_arguments(task: &str) -> String {
    let task = serde_json::to_string(task).unwrap_or_default();
    let mut out = String::with_capacity(task.len() + 10);
    out.push_str("{\"input\":");
    out.push_str(&task);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn delegation_arguments_are_the_bytes_serde_json_gives_the_object() {
        for task in ["ping", "say \"hi\" \\ then\nstop\t\u{8}\u{c}\u{1}", "ünïcødé ✓", ""] {
            let expected = serde_json::json!({ "input": task }).to_string();
            assert_eq!(super::delegation_arguments(task), expected, "{task:?}");
        }
    }
}
