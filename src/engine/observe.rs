//! The engine's window for accounting: what the scheduler tells an observer while a run goes
//! on. The engine calls these hooks in event order and never reads what the observer concludes,
//! except whether a conversation is still waiting for an answer (`stalled` vs `completed`).
//! Accounting, invariants and the blast radius live above the engine (`observe`).

use crate::kernel::{ActorIdx, Labels};
use crate::protocol::{ConvId, Envelope, ModelReply, Payload, VerdictRecord, WorldChange};
use crate::scenario::Scenario;

/// A side effect as a tool reported it.
#[derive(Debug, Clone, Copy)]
pub struct SideEffect<'a> {
    pub conv: ConvId,
    pub effect: &'a str,
    pub times: u32,
    /// Each time's amount, a decimal in millionths.
    pub amount: Option<i64>,
    /// Whose money, which booking.
    pub subject: Option<&'a str>,
    /// It would have happened, had its call not been cancelled first.
    pub cancelled: bool,
}

/// Whom a model's reply is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFor {
    /// The agent with this index in the scenario.
    Agent(usize),
    /// The user simulator.
    User,
}

/// Hooks the scheduler calls, in event order.
pub trait Observe {
    /// A delivery is about to run; `labels` is its turn's taint; `logical_id` names actors.
    fn on_deliver(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        envelope: &Envelope,
        labels: &Labels,
        logical_id: &dyn Fn(ActorIdx) -> String,
    );

    /// A model answered a call of `conv`: the reply leaves the model now. The call is made and
    /// billed here once, whether the reply then arrives, arrives twice (a duplicate, a redelivery
    /// after a crash) or is lost on the way.
    #[allow(clippy::too_many_arguments)]
    fn on_model_reply(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        conv: ConvId,
        caller: ReplyFor,
        reply: &ModelReply,
        actor_id: &dyn Fn(ActorIdx) -> String,
    );

    /// The network lost this message (a drop or a partition).
    fn on_lost(&mut self, seq: u64, now_us: u64, envelope: &Envelope);

    /// A tool stopped a cancelled call of `conv` before it took effect.
    fn on_call_cancelled(&mut self, conv: ConvId);
    /// An agent dropped an answer nobody waits for any more (a `kind` of answer).
    fn on_stale(&mut self, conv: ConvId, kind: &'static str);
    /// The user of `conv` left (`user.abandon`).
    fn on_abandon(&mut self, conv: ConvId);

    /// A guardrail's verdict.
    fn on_verdict(&mut self, record: &VerdictRecord);

    /// A tool executed a counted side effect; `labels` is the turn's taint.
    fn on_side_effect(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        actor: &str,
        effect: SideEffect,
        labels: &Labels,
    );

    /// A tool changed a record of the world (`lost`: the write was acknowledged, not kept).
    #[allow(clippy::too_many_arguments)]
    fn on_world(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        actor: &str,
        conv: ConvId,
        change: &WorldChange,
        lost: bool,
        labels: &Labels,
    );

    /// A taint label arose here: a fault fired on `actor`, or the user or a tool emitted data.
    fn on_taint_source(&mut self, label: u32, seq: u64, now_us: u64, actor: ActorIdx);

    /// A delivery to `to` carries `labels`.
    fn on_taint_reach(&mut self, labels: &Labels, seq: u64, now_us: u64, to: ActorIdx, payload: &Payload);

    /// `guardrail` contained a message carrying `labels`.
    fn on_taint_stopped(&mut self, labels: &Labels, guardrail: &str, seq: u64, now_us: u64);

    /// Some started conversation waits for an answer: none yet, or none to its user's latest
    /// message (the run would end `stalled`).
    fn has_unanswered(&self) -> bool;
}
