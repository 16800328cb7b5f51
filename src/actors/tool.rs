//! The tool actor: runs a call after a latency drawn from its distribution and returns its output.

use std::sync::Arc;

use super::agent::AgentMsg;
use super::llm::ToolCall;
use super::{ConvId, Payload};
use crate::kernel::{Behavior, Effect, HandlerError, RngStream, TurnContext};
use crate::scenario::expr::{Context, Value, Var};
use crate::scenario::{Scenario, ToolIdx};

/// Messages a tool handles.
#[derive(Debug)]
pub enum ToolMsg {
    Invoke { conv: ConvId, call: ToolCall },
}

/// The tool's state: its random stream.
pub struct ToolBehavior {
    scenario: Arc<Scenario>,
    tool: ToolIdx,
    stream: RngStream,
}

impl ToolBehavior {
    pub fn new(scenario: Arc<Scenario>, tool: ToolIdx, seed: u64, incarnation: u32) -> ToolBehavior {
        let stream = RngStream::new(seed, &format!("tool:{}#{incarnation}", scenario.tools[tool].name));
        ToolBehavior { scenario, tool, stream }
    }
}

/// Tool outputs see the conversation number; everything else about the conversation is the model's.
struct ToolContext {
    conv: ConvId,
}

impl Context for ToolContext {
    fn var(&self, var: Var) -> Value<'_> {
        match var {
            Var::Conversation => Value::Int(self.conv as i64),
            Var::Turn | Var::ToolCalls => Value::Int(0),
            _ => Value::Str(""),
        }
    }
}

impl Behavior for ToolBehavior {
    type Msg = ToolMsg;

    fn handle(&mut self, context: &TurnContext, msg: ToolMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let ToolMsg::Invoke { conv, call } = msg;
        let spec = &self.scenario.tools[self.tool];
        let args = |name: &str| {
            call.args.get(name).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let output = spec.output.render(&ToolContext { conv }, &args);
        let latency_us = self.stream.latency_us(&spec.latency);
        effects.push(Effect::Send {
            to: context.from,
            delay_us: latency_us,
            payload: Payload::Agent(AgentMsg::ToolResult { conv, call_id: call.id, tool: self.tool, output: Arc::from(output) }),
        });
        Ok(())
    }
}
