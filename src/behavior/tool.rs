//! The tool actor: runs a call after a latency drawn from its distribution, performs its side
//! effect (reported to the scheduler as an effect), and returns its output. Tool faults fail,
//! slow, empty, poison or double the call here, where they happen in reality.

use std::sync::Arc;

use super::route::GuardRoute;
use crate::catalogue::faults::FaultKind;
use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::protocol::{AgentMsg, ConvId, Directory, Effect, Injection, Payload, ToolArgs, ToolMsg, TurnContext};
use crate::scenario::expr::{Context, Value, Var};
use crate::scenario::guardrail::Stage;
use crate::scenario::{Scenario, ToolIdx};

/// Extra latency of `tool.slow` when the fault gives none.
const SLOW_LATENCY_US: u64 = 10_000_000;

/// The tool's state: a random stream per conversation, so that what happens in one conversation
/// shifts no draw of another.
pub struct ToolBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    tool: ToolIdx,
    family: StreamFamily,
    streams: std::collections::BTreeMap<ConvId, RngStream>,
    /// Calls already executed (conversation, arguments), for idempotent tools.
    executed: std::collections::BTreeSet<(ConvId, String)>,
}

impl ToolBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        tool: ToolIdx,
        seed: u64,
        incarnation: u32,
    ) -> ToolBehavior {
        let family = StreamFamily::new(seed, &format!("tool:{}#{incarnation}", scenario.tools[tool].name));
        ToolBehavior {
            scenario,
            directory,
            tool,
            family,
            streams: Default::default(),
            executed: Default::default(),
        }
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
            Var::Turn | Var::ToolCalls | Var::Delegations | Var::UserTurn => Value::Int(0),
            _ => Value::Str(""),
        }
    }
}

impl Behavior for ToolBehavior {
    type Msg = ToolMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: ToolMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let ToolMsg::Invoke { conv, agent, call } = msg;
        let spec = &self.scenario.tools[self.tool];
        let ToolArgs::Json(args) = &call.args else {
            return Err(HandlerError(format!("tool {} got unparsed arguments", spec.name)));
        };
        let arg = |name: &str| {
            args.get(name).map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
        };
        let mut output = spec.output.render(&ToolContext { conv }, &arg);
        let family = &self.family;
        let stream = self
            .streams
            .entry(conv)
            .or_insert_with(|| family.member(self.scenario.conversation_key(conv)));
        let mut latency_us = Some(spec.latency.sample_us(stream));
        let mut effect_times = 1;
        if let Some(injection) = context.injection {
            let params = &self.scenario.faults[injection.fault].params;
            match injection.kind {
                FaultKind::ToolError => {
                    output = format!("error: {}", injection.kind.text(params.text.as_deref()));
                    effect_times = 0;
                }
                FaultKind::ToolTimeout => latency_us = params.latency_us,
                FaultKind::ToolSlow => {
                    latency_us = latency_us.map(|l| l + params.latency_us.unwrap_or(SLOW_LATENCY_US))
                }
                FaultKind::ToolEmpty => output.clear(),
                FaultKind::ToolInjection => {
                    output = format!("{output} {}", injection.kind.text(params.text.as_deref()));
                }
                FaultKind::ToolPartial => {
                    let half = output.chars().count() / 2;
                    output = format!("{}…", output.chars().take(half).collect::<String>());
                }
                FaultKind::ToolStale => {
                    output = format!("{} {output}", injection.kind.text(params.text.as_deref()));
                }
                FaultKind::ToolSchemaDrift => {
                    output = format!("{{\"data\":{{\"result_v2\":{}}}}}", serde_json::Value::String(output));
                }
                FaultKind::ToolDuplicateEffect => effect_times = 2,
                _ => {}
            }
        }
        if spec.idempotent && effect_times > 0 && !self.executed.insert((conv, call.args_text())) {
            // The same call again: an idempotent operation (or idempotency key) does nothing new.
            effect_times = 0;
        }
        if let (Some(effect), true) = (&spec.effect, effect_times > 0) {
            effects.push(Effect::SideEffect {
                conv,
                name: Arc::from(effect.as_str()),
                times: effect_times,
            });
        }
        // A timed-out tool ran (its effect happened) but never answers, or answers late.
        if let Some(delay_us) = latency_us {
            let result = Payload::Agent(AgentMsg::ToolResult {
                conv,
                call_id: call.id,
                tool: self.tool,
                output: Arc::from(output),
            });
            GuardRoute {
                stage: Stage::ToolOutput,
                conv,
                agent,
                tool: Some(self.tool),
                dest: self.directory.agent(agent),
            }
            .send(&self.scenario, &self.directory, result, None, delay_us, effects);
        }
        Ok(())
    }
}
