//! Approvals: a tool with `approval = { by = "reviewer", when = … }` sends the calls that match
//! to its reviewer (a `[[human]]`) before running them, and the conversation waits. An approved
//! call then runs as any other (latency, limits, faults); a rejected one fails with a 403; one
//! with no decision within the reviewer's `timeout` fails with a 408, or goes ahead with
//! `on_timeout = "approve"`. A decision that comes after the timeout is dropped.

use super::{Arrival, ToolBehavior};
use crate::kernel::HandlerError;
use crate::protocol::{
    CallKey, ConvId, Effect, HumanMsg, Payload, ToolArgs, ToolCall, ToolCaller, ToolMsg, TurnContext,
};
use crate::scenario::units::format_duration_us;
use crate::scenario::OnTimeout;

impl ToolBehavior {
    /// Whether this call must wait for a reviewer: the tool asks for approval, and the call
    /// matches its `when` (over the arguments and the records read).
    pub(super) fn needs_approval(&self, conv: ConvId, call: &ToolCall) -> Result<bool, HandlerError> {
        let spec = &self.scenario.tools[self.tool];
        let Some(approval) = &spec.approval else {
            return Ok(false);
        };
        let Some(when) = &approval.when else {
            return Ok(true);
        };
        let ToolArgs::Json(args) = &call.args else {
            return Ok(true);
        };
        let mut view = super::tool_world::CallView {
            conv,
            args: super::tool_world::call_args(spec, args),
            records: Vec::new(),
            tool: spec,
            scenario: &self.scenario,
        };
        if !spec.lookups.is_empty() {
            let world = self
                .world
                .read()
                .map_err(|_| HandlerError("the world's lock is poisoned".to_owned()))?;
            super::tool_world::look_up(&mut view, &world, false);
        }
        Ok(when.eval(&view))
    }

    /// Sends the call to the reviewer, and starts its timeout. The same call again while its
    /// request is open (made again after a restart) waits on that request.
    pub(super) fn ask_approval(
        &mut self,
        context: &TurnContext,
        key: CallKey,
        call: ToolCall,
        effects: &mut Vec<Effect>,
    ) {
        let Some(approval) = &self.scenario.tools[self.tool].approval else {
            return;
        };
        let human = approval.human;
        let caller = ToolCaller::Agent(key.agent);
        if let Some(open) = self.awaiting_approval.get_mut(&key) {
            *open = (caller, call, context.injection);
            return;
        }
        effects.push(Effect::Send {
            to: self.directory.human(human),
            delay_us: 0,
            payload: Payload::Human(HumanMsg::Review {
                key,
                tool: self.tool,
                args: call.args_text(),
            }),
        });
        effects.push(Effect::Send {
            to: context.me,
            delay_us: self.scenario.humans[human].timeout_us,
            payload: Payload::Tool(ToolMsg::ApprovalTimeout(key)),
        });
        self.awaiting_approval.insert(key, (caller, call, context.injection));
    }

    /// The reviewer decided: an approved call runs now, a rejected one fails; a decision after
    /// the timeout changes nothing.
    pub(super) fn on_reviewed(
        &mut self,
        context: &TurnContext,
        key: CallKey,
        approved: bool,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let Some((caller, call, injection)) = self.awaiting_approval.remove(&key) else {
            return Ok(());
        };
        if approved {
            let at = Arrival {
                injection,
                ..Arrival::of(context)
            };
            return self.start(at, key.conv, caller, call, effects);
        }
        let human = self.reviewer_name();
        let output = format!("error: 403 rejected: {human} did not approve this call");
        self.answer(key.conv, caller, key.call_id, output, Some(0), effects);
        Ok(())
    }

    /// No decision in time: the call fails, or goes ahead (`on_timeout = "approve"`).
    pub(super) fn on_approval_timeout(
        &mut self,
        context: &TurnContext,
        key: CallKey,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let Some((caller, call, injection)) = self.awaiting_approval.remove(&key) else {
            return Ok(());
        };
        let Some(approval) = &self.scenario.tools[self.tool].approval else {
            return Ok(());
        };
        let reviewer = &self.scenario.humans[approval.human];
        effects.push(Effect::Send {
            to: self.directory.human(approval.human),
            delay_us: 0,
            payload: Payload::Human(HumanMsg::Withdraw { key, tool: self.tool }),
        });
        match reviewer.on_timeout {
            OnTimeout::Approve => {
                let at = Arrival {
                    injection,
                    ..Arrival::of(context)
                };
                self.start(at, key.conv, caller, call, effects)
            }
            OnTimeout::Reject => {
                let output = format!(
                    "error: 408 approval timed out: {} did not decide within {}",
                    reviewer.name,
                    format_duration_us(reviewer.timeout_us)
                );
                self.answer(key.conv, caller, key.call_id, output, Some(0), effects);
                Ok(())
            }
        }
    }

    /// A cancelled call that was still waiting for approval: withdrawn from the reviewer.
    /// False when the call was not waiting.
    pub(super) fn withdraw(&mut self, key: CallKey, effects: &mut Vec<Effect>) -> bool {
        if self.awaiting_approval.remove(&key).is_none() {
            return false;
        }
        if let Some(approval) = &self.scenario.tools[self.tool].approval {
            effects.push(Effect::Send {
                to: self.directory.human(approval.human),
                delay_us: 0,
                payload: Payload::Human(HumanMsg::Withdraw { key, tool: self.tool }),
            });
        }
        true
    }

    fn reviewer_name(&self) -> &str {
        self.scenario.tools[self.tool]
            .approval
            .as_ref()
            .map_or("the reviewer", |a| self.scenario.humans[a.human].name.as_str())
    }
}
