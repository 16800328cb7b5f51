//! The agent: a tool loop over its model. It sends the conversation to its LLM, runs the tool
//! calls the model returns through tool actors (or fans a task out to other agents and gathers
//! their answers), feeds the results back, and then hands off, answers, or stops at `max_turns`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::directory::Directory;
use super::llm::{LlmMsg, LlmRequest, ModelAnswer, ModelReply, Usage};
use super::tool::ToolMsg;
use super::user::{AnswerStatus, UserMsg};
use super::{ConvId, Payload};
use crate::kernel::{Behavior, Effect, HandlerError, RngStream, TurnContext};
use crate::llm::mock;
use crate::llm::tokens::estimate_tokens;
use crate::scenario::{AgentIdx, Scenario, ToolIdx};

/// Who handed a conversation to this agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The user opened it.
    User,
    /// Another agent handed it off.
    Handoff(AgentIdx),
    /// Another agent delegated a sub-task of it.
    Delegation(AgentIdx),
}

/// Where the final answer of a conversation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyTo {
    User,
    /// The agent that delegated the task.
    Agent(AgentIdx),
}

/// Messages an agent handles.
#[derive(Debug)]
pub enum AgentMsg {
    /// A conversation (or a delegated sub-task of one) starts here.
    Start { conv: ConvId, text: Arc<str>, origin: Origin, reply_to: ReplyTo, context_tokens: u32 },
    /// The model answered.
    LlmReply { conv: ConvId, reply: ModelReply },
    /// A tool returned.
    ToolResult { conv: ConvId, call_id: u32, tool: ToolIdx, output: Arc<str> },
    /// A delegated agent answered.
    DelegateResult { conv: ConvId, from_agent: AgentIdx, text: Arc<str> },
}

/// One conversation as this agent sees it.
#[derive(Debug)]
struct Conversation {
    user_text: Arc<str>,
    origin: Origin,
    reply_to: ReplyTo,
    turn: u32,
    tool_calls: u32,
    /// Tool calls and delegations still out; the next turn starts when this reaches 0.
    pending: u32,
    last_tool: Option<ToolIdx>,
    last_tool_output: Arc<str>,
    delegations: u32,
    results: String,
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
    /// For scripted agents (rules, no model): the stream their rules draw from.
    stream: RngStream,
    next_call_id: u32,
}

impl AgentBehavior {
    pub fn new(scenario: Arc<Scenario>, directory: Directory, agent: AgentIdx, seed: u64, incarnation: u32) -> AgentBehavior {
        let instruction_tokens = estimate_tokens(&scenario.agents[agent].instructions);
        let stream = RngStream::new(seed, &format!("agent:{}#{incarnation}", scenario.agents[agent].name));
        AgentBehavior { scenario, directory, agent, instruction_tokens, conversations: BTreeMap::new(), stream, next_call_id: 0 }
    }

    /// Takes the next step of a conversation: asks the model; or, for an agent without a model,
    /// follows its rules in place (a scripted agent) or answers with what came in (a relay).
    fn step(&mut self, conv: ConvId, state: Conversation, effects: &mut Vec<Effect>) {
        let spec = &self.scenario.agents[self.agent];
        let Some(llm) = spec.llm else {
            if spec.behavior.is_empty() {
                effects.push(self.answer(conv, state.reply_to, state.user_text.clone(), AnswerStatus::Answered));
                return;
            }
            let request = self.request(conv, &state);
            let (answer, _) = mock::decide(&self.scenario, &request, &mut self.stream, &mut self.next_call_id);
            self.conversations.insert(conv, state);
            self.on_reply(conv, ModelReply { answer, usage: Usage::default(), latency_us: 0 }, effects);
            return;
        };
        let request = self.request(conv, &state);
        effects.push(Effect::Send {
            to: self.directory.llm(llm),
            delay_us: 0,
            payload: Payload::Llm(LlmMsg::Complete(Box::new(request))),
        });
        self.conversations.insert(conv, state);
    }

    fn request(&self, conv: ConvId, state: &Conversation) -> LlmRequest {
        LlmRequest {
            conv,
            agent: self.agent,
            turn: state.turn,
            tool_calls: state.tool_calls,
            input_tokens: self.instruction_tokens.saturating_add(state.context_tokens),
            user: state.user_text.clone(),
            origin: state.origin,
            last_tool: state.last_tool,
            last_tool_output: state.last_tool_output.clone(),
            delegations: state.delegations,
            results: Arc::from(state.results.as_str()),
        }
    }

    /// The final answer, to the user or to the delegating agent.
    fn answer(&self, conv: ConvId, reply_to: ReplyTo, text: Arc<str>, status: AnswerStatus) -> Effect {
        match reply_to {
            ReplyTo::User => {
                Effect::Send { to: Directory::USER, delay_us: 0, payload: Payload::User(UserMsg::Answer { conv, text, status }) }
            }
            ReplyTo::Agent(agent) => Effect::Send {
                to: self.directory.agent(agent),
                delay_us: 0,
                payload: Payload::Agent(AgentMsg::DelegateResult { conv, from_agent: self.agent, text }),
            },
        }
    }

    fn on_reply(&mut self, conv: ConvId, reply: ModelReply, effects: &mut Vec<Effect>) {
        let Some(mut state) = self.conversations.remove(&conv) else { return };
        state.context_tokens = state.context_tokens.saturating_add(reply.usage.output_tokens);
        match reply.answer {
            ModelAnswer::ToolCalls(calls) => {
                state.pending = calls.len() as u32;
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
            ModelAnswer::Delegate { to, task } => {
                state.pending = to.len() as u32;
                state.results.clear();
                for agent in to {
                    effects.push(Effect::Send {
                        to: self.directory.agent(agent),
                        delay_us: 0,
                        payload: Payload::Agent(AgentMsg::Start {
                            conv,
                            text: task.clone(),
                            origin: Origin::Delegation(self.agent),
                            reply_to: ReplyTo::Agent(self.agent),
                            context_tokens: estimate_tokens(&task),
                        }),
                    });
                }
                self.conversations.insert(conv, state);
            }
            ModelAnswer::Text(text) => effects.push(self.answer(conv, state.reply_to, text, AnswerStatus::Answered)),
            ModelAnswer::Handoff(to) => effects.push(Effect::Send {
                to: self.directory.agent(to),
                delay_us: 0,
                payload: Payload::Agent(AgentMsg::Start {
                    conv,
                    text: state.user_text,
                    origin: Origin::Handoff(self.agent),
                    reply_to: state.reply_to,
                    context_tokens: state.context_tokens,
                }),
            }),
        }
    }

    /// A tool result or a delegate's answer came back; start the next turn once all are in.
    fn on_result(&mut self, conv: ConvId, result: StepResult, effects: &mut Vec<Effect>) {
        let Some(state) = self.conversations.get_mut(&conv) else { return };
        if state.pending == 0 {
            return;
        }
        state.pending -= 1;
        match result {
            StepResult::Tool { tool, output } => {
                state.context_tokens = state.context_tokens.saturating_add(estimate_tokens(&output));
                state.last_tool = Some(tool);
                state.last_tool_output = output;
            }
            StepResult::Delegate { text } => {
                state.context_tokens = state.context_tokens.saturating_add(estimate_tokens(&text));
                state.delegations += 1;
                if !state.results.is_empty() {
                    state.results.push('\n');
                }
                state.results.push_str(&text);
            }
        }
        if state.pending > 0 {
            return;
        }
        let mut state = self.conversations.remove(&conv).expect("present above");
        let max_turns = self.scenario.agents[self.agent].max_turns;
        if state.turn >= max_turns {
            let text: Arc<str> = Arc::from(format!("stopped after {max_turns} turns without an answer"));
            effects.push(self.answer(conv, state.reply_to, text, AnswerStatus::MaxTurns));
            return;
        }
        state.turn += 1;
        self.step(conv, state, effects);
    }
}

/// What came back from one outstanding step.
enum StepResult {
    Tool { tool: ToolIdx, output: Arc<str> },
    Delegate { text: Arc<str> },
}

impl Behavior for AgentBehavior {
    type Msg = AgentMsg;

    fn handle(&mut self, _context: &TurnContext, msg: AgentMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        match msg {
            AgentMsg::Start { conv, text, origin, reply_to, context_tokens } => {
                let opening_tokens = if origin == Origin::User { estimate_tokens(&text) } else { 0 };
                let state = Conversation {
                    user_text: text,
                    origin,
                    reply_to,
                    turn: 1,
                    tool_calls: 0,
                    pending: 0,
                    last_tool: None,
                    last_tool_output: Arc::from(""),
                    delegations: 0,
                    results: String::new(),
                    context_tokens: context_tokens.saturating_add(opening_tokens),
                };
                self.step(conv, state, effects);
            }
            AgentMsg::LlmReply { conv, reply } => self.on_reply(conv, reply, effects),
            AgentMsg::ToolResult { conv, tool, output, .. } => self.on_result(conv, StepResult::Tool { tool, output }, effects),
            AgentMsg::DelegateResult { conv, text, .. } => self.on_result(conv, StepResult::Delegate { text }, effects),
        }
        Ok(())
    }
}
