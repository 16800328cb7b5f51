//! The agent: a tool loop over its model. It sends the conversation to its LLM, runs the tool
//! calls the model returns through tool actors, feeds results back, and then hands off, answers,
//! or stops at `max_turns`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::directory::Directory;
use super::llm::{LlmMsg, LlmRequest, ModelAnswer, ModelReply};
use super::tool::ToolMsg;
use super::user::{AnswerStatus, UserMsg};
use super::{ConvId, Payload};
use crate::kernel::{Behavior, Effect, HandlerError, TurnContext};
use crate::llm::tokens::estimate_tokens;
use crate::scenario::{AgentIdx, Scenario, ToolIdx};

/// Where a conversation came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    User,
    Agent(AgentIdx),
}

/// Messages an agent handles.
#[derive(Debug)]
pub enum AgentMsg {
    /// A conversation starts here: from the user, or handed off by another agent.
    Start { conv: ConvId, text: Arc<str>, origin: Origin, context_tokens: u32 },
    /// The model answered.
    LlmReply { conv: ConvId, reply: ModelReply },
    /// A tool returned.
    ToolResult { conv: ConvId, call_id: u32, tool: ToolIdx, output: Arc<str> },
}

/// One conversation as this agent sees it.
#[derive(Debug)]
struct Conversation {
    user_text: Arc<str>,
    origin: Origin,
    turn: u32,
    tool_calls: u32,
    pending_tools: u32,
    last_tool: Option<ToolIdx>,
    last_tool_output: Arc<str>,
    /// Tokens of everything said so far (user, model, tools), the model's input next turn.
    context_tokens: u32,
}

/// The agent's state: its conversations in progress. Lost on restart.
pub struct AgentBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    agent: AgentIdx,
    instruction_tokens: u32,
    conversations: BTreeMap<ConvId, Conversation>,
}

impl AgentBehavior {
    pub fn new(scenario: Arc<Scenario>, directory: Directory, agent: AgentIdx) -> AgentBehavior {
        let instruction_tokens = estimate_tokens(&scenario.agents[agent].instructions);
        AgentBehavior { scenario, directory, agent, instruction_tokens, conversations: BTreeMap::new() }
    }

    fn ask_model(&self, conv: ConvId, state: &Conversation, effects: &mut Vec<Effect>) {
        let spec = &self.scenario.agents[self.agent];
        let Some(llm) = spec.llm else {
            // No model: answer with what came in (a router or a test double).
            effects.push(answer(conv, state.user_text.clone(), AnswerStatus::Answered));
            return;
        };
        let request = LlmRequest {
            conv,
            agent: self.agent,
            turn: state.turn,
            tool_calls: state.tool_calls,
            input_tokens: self.instruction_tokens + state.context_tokens,
            user: state.user_text.clone(),
            origin: state.origin,
            last_tool: state.last_tool,
            last_tool_output: state.last_tool_output.clone(),
        };
        effects.push(Effect::Send {
            to: self.directory.llm(llm),
            delay_us: 0,
            payload: Payload::Llm(LlmMsg::Complete(Box::new(request))),
        });
    }

    fn on_reply(&mut self, conv: ConvId, reply: ModelReply, effects: &mut Vec<Effect>) {
        let Some(mut state) = self.conversations.remove(&conv) else { return };
        state.context_tokens = state.context_tokens.saturating_add(reply.usage.output_tokens);
        match reply.answer {
            ModelAnswer::ToolCalls(calls) => {
                state.pending_tools = calls.len() as u32;
                state.tool_calls += calls.len() as u32;
                for call in calls {
                    effects.push(Effect::Send {
                        to: self.directory.tool(call.tool),
                        delay_us: 0,
                        payload: Payload::Tool(ToolMsg::Invoke { conv, call }),
                    });
                }
                self.conversations.insert(conv, state);
            }
            ModelAnswer::Text(text) => effects.push(answer(conv, text, AnswerStatus::Answered)),
            ModelAnswer::Handoff(to) => effects.push(Effect::Send {
                to: self.directory.agent(to),
                delay_us: 0,
                payload: Payload::Agent(AgentMsg::Start {
                    conv,
                    text: state.user_text,
                    origin: Origin::Agent(self.agent),
                    context_tokens: state.context_tokens,
                }),
            }),
        }
    }

    fn on_tool_result(&mut self, conv: ConvId, tool: ToolIdx, output: Arc<str>, effects: &mut Vec<Effect>) {
        let Some(state) = self.conversations.get_mut(&conv) else { return };
        if state.pending_tools == 0 {
            return;
        }
        state.pending_tools -= 1;
        state.context_tokens = state.context_tokens.saturating_add(estimate_tokens(&output));
        state.last_tool = Some(tool);
        state.last_tool_output = output;
        if state.pending_tools > 0 {
            return;
        }
        let max_turns = self.scenario.agents[self.agent].max_turns;
        if state.turn >= max_turns {
            let text: Arc<str> = Arc::from(format!("stopped after {max_turns} turns without an answer"));
            self.conversations.remove(&conv);
            effects.push(answer(conv, text, AnswerStatus::MaxTurns));
            return;
        }
        state.turn += 1;
        let state = self.conversations.remove(&conv).expect("present above");
        self.ask_model(conv, &state, effects);
        self.conversations.insert(conv, state);
    }
}

fn answer(conv: ConvId, text: Arc<str>, status: AnswerStatus) -> Effect {
    Effect::Send { to: Directory::USER, delay_us: 0, payload: Payload::User(UserMsg::Answer { conv, text, status }) }
}

impl Behavior for AgentBehavior {
    type Msg = AgentMsg;

    fn handle(&mut self, _context: &TurnContext, msg: AgentMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        match msg {
            AgentMsg::Start { conv, text, origin, context_tokens } => {
                let opening_tokens = if origin == Origin::User { estimate_tokens(&text) } else { 0 };
                let state = Conversation {
                    user_text: text,
                    origin,
                    turn: 1,
                    tool_calls: 0,
                    pending_tools: 0,
                    last_tool: None,
                    last_tool_output: Arc::from(""),
                    context_tokens: context_tokens.saturating_add(opening_tokens),
                };
                self.ask_model(conv, &state, effects);
                if self.scenario.agents[self.agent].llm.is_some() {
                    self.conversations.insert(conv, state);
                }
            }
            AgentMsg::LlmReply { conv, reply } => self.on_reply(conv, reply, effects),
            AgentMsg::ToolResult { conv, tool, output, .. } => self.on_tool_result(conv, tool, output, effects),
        }
        Ok(())
    }
}
