//! How senders route a message through the guardrails of its stage: [`GuardRoute`] names the
//! stage, the conversation, the agent (and tool) it concerns and where the message is going;
//! [`chain`] lists the guardrails that watch it.

use crate::kernel::ActorIdx;
use crate::protocol::{Checked, ConvId, Directory, Effect, GuardContext, GuardrailMsg, Payload};
use crate::scenario::guardrail::Stage;
use crate::scenario::{AgentIdx, Scenario, ToolIdx};

/// The guardrails that watch `agent` at `stage` (and `tool`), in scenario order, split into the
/// blocking chain and the parallel ones.
pub fn chain(scenario: &Scenario, stage: Stage, agent: AgentIdx, tool: Option<ToolIdx>) -> (Vec<usize>, Vec<usize>) {
    let mut blocking = Vec::new();
    let mut parallel = Vec::new();
    for (i, g) in scenario.guardrails.iter().enumerate() {
        if g.watches(stage, agent, tool) {
            if g.parallel {
                parallel.push(i);
            } else {
                blocking.push(i);
            }
        }
    }
    (blocking, parallel)
}

/// Where a message goes, and the stage of the flow it passes on its way.
#[derive(Debug, Clone, Copy)]
pub struct GuardRoute {
    pub stage: Stage,
    pub conv: ConvId,
    pub agent: AgentIdx,
    pub tool: Option<ToolIdx>,
    pub dest: ActorIdx,
}

impl GuardRoute {
    /// Sends `subject` to `dest` through the guardrails that watch `agent` at `stage`: straight
    /// to `dest` when none does, otherwise to the first of the chain (and a copy to each parallel
    /// one).
    pub fn send(
        &self,
        scenario: &Scenario,
        directory: &Directory,
        subject: Payload,
        context: Option<GuardContext>,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) {
        let GuardRoute {
            stage,
            conv,
            agent,
            tool,
            dest,
        } = *self;
        if scenario.guardrails.is_empty() {
            effects.push(Effect::Send {
                to: dest,
                delay_us,
                payload: subject,
            });
            return;
        }
        let (blocking, parallel) = chain(scenario, stage, agent, tool);
        let context = context.map(Box::new);
        let check = |subject: Payload, context: Option<Box<GuardContext>>, parallel: bool| {
            Payload::Guardrail(GuardrailMsg::Check(Box::new(Checked {
                stage,
                conv,
                agent,
                tool,
                position: 0,
                dest,
                subject,
                context,
                parallel,
            })))
        };
        for g in parallel {
            effects.push(Effect::Send {
                to: directory.guardrail(g),
                delay_us,
                payload: check(subject.clone(), context.clone(), true),
            });
        }
        let (to, payload) = match blocking.first() {
            None => (dest, subject),
            Some(first) => (directory.guardrail(*first), check(subject, context, false)),
        };
        effects.push(Effect::Send { to, delay_us, payload });
    }
}
