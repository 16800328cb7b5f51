//! Messages an agent handles, and who handed it a conversation.

use std::sync::Arc;

use super::llm::ModelReply;
use super::transcript::Transcript;
use super::user::AnswerStatus;
use super::ConvId;
use crate::scenario::{AgentIdx, ToolIdx};

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
#[derive(Debug, Clone)]
pub enum AgentMsg {
    /// A conversation (or a delegated sub-task of one) starts here.
    Start {
        conv: ConvId,
        /// The user's message, or the delegated task (`""` for a handoff: it is in `history`).
        text: Arc<str>,
        origin: Origin,
        reply_to: ReplyTo,
        /// What came before: the handed-over transcript (empty for a new conversation or task).
        history: Transcript,
        /// Handoffs the conversation has had so far (0 for the user's opening message and for a
        /// delegated task): `max_handoffs` bounds it.
        handoffs: u32,
    },
    /// The model answered (or the provider failed the call).
    LlmReply { conv: ConvId, reply: ModelReply },
    /// A tool returned.
    ToolResult {
        conv: ConvId,
        call_id: u32,
        tool: ToolIdx,
        output: Arc<str>,
    },
    /// A delegated agent answered.
    DelegateResult {
        conv: ConvId,
        from_agent: AgentIdx,
        text: Arc<str>,
    },
    /// Timer: the model call `call_seq` has not answered within the agent's `timeout`.
    CallTimeout { conv: ConvId, call_seq: u32 },
    /// Timer: the backoff before the next attempt is over.
    RetryDue { conv: ConvId },
    /// Timer: tool call `call_id` has not answered within the agent's `tool_timeout`.
    ToolTimeout { conv: ConvId, call_id: u32 },
    /// Timer: the delegate has not answered attempt `attempt` (from 1) within the agent's
    /// `delegation_timeout`.
    DelegationTimeout {
        conv: ConvId,
        delegate: crate::scenario::AgentIdx,
        attempt: u32,
    },
    /// Timer: the agent this one handed the conversation to has not finished it (attempt
    /// `attempt`, from 1) within `handoff_timeout`.
    HandoffTimeout {
        conv: ConvId,
        to: crate::scenario::AgentIdx,
        attempt: u32,
    },
    /// The agent a conversation was handed to finished it (answered it, or handed it on).
    HandoffDone { conv: ConvId, from_agent: AgentIdx },
    /// Timer: the agent's `deadline` for a conversation it took at `started_us` is over.
    DeadlineDue { conv: ConvId, started_us: u64 },
    /// The agent's circuit breaker refused a model call (open, no fallback).
    CallRejected {
        conv: ConvId,
        call_seq: u32,
        retry_after_us: u64,
    },
    /// A guardrail tripped while the agent held the conversation: the agent drops it and answers
    /// with `text` (or hands it to `escalate_to`).
    GuardStop {
        conv: ConvId,
        text: Arc<str>,
        status: AnswerStatus,
        escalate_to: Option<AgentIdx>,
    },
    /// A parallel guardrail tripped: the agent drops the conversation (the guardrail answered).
    Halt { conv: ConvId },
    /// The conversation is cancelled (its user left, or the delegator gave up on it): with
    /// `cancellation = "cancel"`, the agent drops it and cancels its calls in flight.
    Cancel { conv: ConvId },
    /// The agent is back from a restart (`durability = "at-least-once"`): the model and tool
    /// calls of this conversation outstanding in its checkpoint are issued again.
    Resume { conv: ConvId },
    /// An output guardrail asks for another answer, with `feedback` for the model. `history` is
    /// the transcript with the refused answer last.
    Revise {
        conv: ConvId,
        origin: Origin,
        reply_to: ReplyTo,
        history: Transcript,
        feedback: Arc<str>,
    },
}

/// A checkpoint of an agent's conversations (`durability` other than `"none"`), handed to its
/// next incarnation.
#[derive(Clone)]
pub struct Checkpoint {
    /// The agent's own state; only the agent reads it.
    pub state: Arc<dyn std::any::Any + Send + Sync>,
    /// Conversations with a model or tool call outstanding, to resume after a restart
    /// (`durability = "at-least-once"`; empty otherwise).
    pub resume: Arc<[ConvId]>,
}

impl std::fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl AgentMsg {
    /// The conversation the message belongs to.
    pub fn conv(&self) -> ConvId {
        match self {
            AgentMsg::Start { conv, .. }
            | AgentMsg::LlmReply { conv, .. }
            | AgentMsg::ToolResult { conv, .. }
            | AgentMsg::DelegateResult { conv, .. }
            | AgentMsg::CallTimeout { conv, .. }
            | AgentMsg::RetryDue { conv }
            | AgentMsg::ToolTimeout { conv, .. }
            | AgentMsg::DelegationTimeout { conv, .. }
            | AgentMsg::CallRejected { conv, .. }
            | AgentMsg::GuardStop { conv, .. }
            | AgentMsg::Halt { conv }
            | AgentMsg::Resume { conv }
            | AgentMsg::Cancel { conv }
            | AgentMsg::HandoffTimeout { conv, .. }
            | AgentMsg::HandoffDone { conv, .. }
            | AgentMsg::Revise { conv, .. }
            | AgentMsg::DeadlineDue { conv, .. } => *conv,
        }
    }
}
