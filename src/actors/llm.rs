//! The LLM actor: answers completion requests after a latency drawn from its distribution.
//! In `mock` mode the answer comes from the agent's behaviour rules.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use super::agent::{AgentMsg, Origin};
use super::directory::Directory;
use super::{ConvId, Payload};
use crate::kernel::{Behavior, Effect, HandlerError, RngStream, TurnContext};
use crate::llm::mock;
use crate::scenario::{AgentIdx, LlmIdx, Scenario, ToolIdx};

/// A chat-completion request, as the mock needs it.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub conv: ConvId,
    pub agent: AgentIdx,
    pub turn: u32,
    pub tool_calls: u32,
    pub input_tokens: u32,
    pub user: Arc<str>,
    pub origin: Origin,
    pub last_tool: Option<ToolIdx>,
    pub last_tool_output: Arc<str>,
    pub delegations: u32,
    pub results: Arc<str>,
}

/// Messages an LLM handles.
#[derive(Debug)]
pub enum LlmMsg {
    Complete(Box<LlmRequest>),
}

/// One tool call in a model answer. Arguments are a JSON object with sorted keys.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub id: u32,
    pub tool: ToolIdx,
    pub args: Arc<serde_json::Map<String, serde_json::Value>>,
}

/// What the model said.
#[derive(Debug, Clone)]
pub enum ModelAnswer {
    ToolCalls(Vec<ToolCall>),
    Text(Arc<str>),
    Handoff(AgentIdx),
    /// Fan a task out to these agents and wait for all their answers.
    Delegate { to: Vec<AgentIdx>, task: Arc<str> },
}

/// Tokens and cost of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub input_tokens: u32,
    pub output_tokens: u32,
    pub cost_pusd: u64,
}

/// A model answer with its usage.
#[derive(Debug, Clone)]
pub struct ModelReply {
    pub answer: ModelAnswer,
    pub usage: Usage,
    pub latency_us: u64,
}

impl ModelReply {
    /// Canonical summary for the trace.
    pub fn summarize(&self, scenario: &Scenario, out: &mut String) {
        let _ = match &self.answer {
            ModelAnswer::ToolCalls(calls) => {
                let _ = write!(out, "tool_calls=[");
                for (i, call) in calls.iter().enumerate() {
                    let _ = write!(out, "{}{}#{}", if i > 0 { "," } else { "" }, scenario.tools[call.tool].name, call.id);
                }
                write!(out, "]")
            }
            ModelAnswer::Text(text) => write!(out, "text_chars={}", text.chars().count()),
            ModelAnswer::Handoff(to) => write!(out, "handoff={}", scenario.agents[*to].name),
            ModelAnswer::Delegate { to, .. } => {
                let names: Vec<&str> = to.iter().map(|a| scenario.agents[*a].name.as_str()).collect();
                write!(out, "delegate=[{}]", names.join(","))
            }
        };
        let _ = write!(
            out,
            " tokens_in={} tokens_out={} cost_pusd={} latency_us={}",
            self.usage.input_tokens, self.usage.output_tokens, self.usage.cost_pusd, self.latency_us
        );
    }
}

/// The LLM's state: per calling agent, a random stream and a tool-call counter, so agents never
/// shift each other's draws or ids.
pub struct LlmBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    llm: LlmIdx,
    seed: u64,
    incarnation: u32,
    callers: BTreeMap<AgentIdx, (RngStream, u32)>,
}

impl LlmBehavior {
    pub fn new(scenario: Arc<Scenario>, directory: Directory, llm: LlmIdx, seed: u64, incarnation: u32) -> LlmBehavior {
        LlmBehavior { scenario, directory, llm, seed, incarnation, callers: BTreeMap::new() }
    }
}

impl Behavior for LlmBehavior {
    type Msg = LlmMsg;

    fn handle(&mut self, _context: &TurnContext, msg: LlmMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let LlmMsg::Complete(request) = msg;
        let scenario = &*self.scenario;
        let spec = &scenario.llms[self.llm];
        let (stream, next_call_id) = self.callers.entry(request.agent).or_insert_with(|| {
            let name = format!("llm:{}#{}/agent:{}", spec.name, self.incarnation, scenario.agents[request.agent].name);
            (RngStream::new(self.seed, &name), 0)
        });
        let (answer, output_tokens) = mock::decide(scenario, &request, stream, next_call_id);
        let latency_us = stream.latency_us(&spec.latency);
        let cost_pusd = request.input_tokens as u64 * spec.price.input_pusd_per_token
            + output_tokens as u64 * spec.price.output_pusd_per_token;
        let usage = Usage { input_tokens: request.input_tokens, output_tokens, cost_pusd };
        effects.push(Effect::Send {
            to: self.directory.agent(request.agent),
            delay_us: latency_us,
            payload: Payload::Agent(AgentMsg::LlmReply {
                conv: request.conv,
                reply: ModelReply { answer, usage, latency_us },
            }),
        });
        Ok(())
    }
}
