//! How an agent suffers a memory or user fault that fires on a message it gets.

use std::sync::Arc;

use super::AgentBehavior;
use crate::catalogue::faults::FaultKind;
use crate::llm::tokens::estimate_tokens;
use crate::protocol::{AgentMsg, Injection};

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
                    context_tokens,
                    handoffs,
                },
            ) => {
                let said = Arc::from(format!("{said} {text}"));
                AgentMsg::Start {
                    conv,
                    text: said,
                    origin,
                    reply_to,
                    context_tokens,
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
                context_tokens: 0,
                handoffs,
            },
            (kind, msg) => {
                if let Some(state) = self.conversations.get_mut(&msg.conv()) {
                    match kind {
                        FaultKind::MemoryTruncate => {
                            state.context_tokens /= 2;
                            state.last_tool_output = Arc::from("");
                        }
                        FaultKind::MemoryMutate => state.last_tool_output = Arc::from(text),
                        FaultKind::MemoryReset => {
                            state.turn = 1;
                            state.tool_calls = 0;
                            state.delegations = 0;
                            state.results.clear();
                            state.last_tool = Arc::from("");
                            state.last_tool_output = Arc::from("");
                            state.context_tokens = estimate_tokens(&state.user_text);
                        }
                        _ => {}
                    }
                }
                msg
            }
        }
    }
}
