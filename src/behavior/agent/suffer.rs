//! How an agent suffers a memory or user fault that fires on a message it gets. Memory faults act
//! on the transcript itself: what the model is sent next is what the agent now remembers.

use std::sync::Arc;

use super::AgentBehavior;
use crate::catalogue::faults::FaultKind;
use crate::protocol::{AgentMsg, Injection, Role, Transcript};

impl AgentBehavior {
    /// Acts out a memory or user fault that fired on this message: the message or the agent's
    /// memory of the conversation changes before the agent handles it.
    pub(super) fn suffer(&mut self, injection: Injection, msg: AgentMsg) -> AgentMsg {
        let text = injection
            .kind
            .text(self.scenario.faults[injection.fault].params.text.as_deref())
            .to_owned();
        match (injection.kind, msg) {
            (
                FaultKind::UserInjection | FaultKind::UserContradiction,
                AgentMsg::Start {
                    conv,
                    text: said,
                    origin,
                    reply_to,
                    mut history,
                    handoffs,
                },
            ) => {
                // What the user says carries the extra text: the opening message, or the latest
                // user message of a handed-over transcript.
                let said = match history.last_index_of(Role::User) {
                    Some(index) if said.is_empty() => {
                        let content = history.get(index).map_or("", |m| &*m.content);
                        let content = Arc::from(format!("{content} {text}"));
                        history.set_content(index, content);
                        said
                    }
                    _ => Arc::from(format!("{said} {text}")),
                };
                AgentMsg::Start {
                    conv,
                    text: said,
                    origin,
                    reply_to,
                    history,
                    handoffs,
                }
            }
            (
                FaultKind::MemoryMutate,
                AgentMsg::ToolResult {
                    conv, call_id, tool, ..
                },
            ) => {
                // The result is stored wrongly: what the agent remembers is not what came back.
                AgentMsg::ToolResult {
                    conv,
                    call_id,
                    tool,
                    output: Arc::from(text),
                }
            }
            (
                FaultKind::HandoffDropContext,
                AgentMsg::Start {
                    conv,
                    origin,
                    reply_to,
                    handoffs,
                    ..
                },
            ) => AgentMsg::Start {
                conv,
                text: Arc::from(""),
                origin,
                reply_to,
                history: Transcript::new(),
                handoffs,
            },
            (kind, msg) => {
                if let Some(state) = self.conversations.get_mut(&msg.conv()) {
                    match kind {
                        FaultKind::MemoryTruncate => {
                            // The older half of the history is gone.
                            let keep = state.transcript.len() / 2;
                            state.transcript.keep_last(keep);
                            state.last_tool_output = Arc::from("");
                        }
                        FaultKind::MemoryMutate => {
                            // The latest tool result in memory is not what came back.
                            if let Some(index) = state.transcript.last_index_of(Role::Tool) {
                                state.transcript.set_content(index, Arc::from(text.as_str()));
                            }
                            state.last_tool_output = Arc::from(text);
                        }
                        FaultKind::MemoryReset => {
                            // Back to how the conversation opened: its first message only, and
                            // the call still out, if one is, so that its result has its call.
                            let out = state
                                .transcript
                                .last_index_of(Role::Assistant)
                                .filter(|_| state.pending.iter().any(|p| p.output.is_none()))
                                .and_then(|i| state.transcript.get(i).cloned());
                            state.transcript.keep_first(1);
                            if let Some(call) = out.filter(|m| !m.tool_calls.is_empty()) {
                                state.transcript.push(call);
                            }
                            state.turn = 1;
                            state.tool_calls = 0;
                            state.delegations = 0;
                            state.results.clear();
                            state.last_tool = Arc::from("");
                            state.last_tool_output = Arc::from("");
                        }
                        _ => {}
                    }
                }
                msg
            }
        }
    }
}
