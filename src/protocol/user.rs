//! Messages the user (the traffic source) handles, and how a conversation ended.

use std::sync::Arc;

use super::llm::{ModelReply, ToolCall};
use super::transcript::Transcript;
use super::ConvId;
use crate::scenario::{AgentIdx, ToolIdx};

/// How a conversation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerStatus {
    /// The agent answered.
    Answered,
    /// The agent ran out of turns.
    MaxTurns,
    /// The conversation was handed off `max_handoffs` times without an answer.
    MaxHandoffs,
    /// A model call failed for good (not retryable, or out of attempts).
    Failed,
    /// The model's answer was cut off at its token limit (`finish_reason = length`).
    Truncated,
    /// A guardrail blocked the conversation's input or answer.
    Blocked,
    /// A guardrail's trip-wire stopped the conversation.
    Halted,
    /// A guardrail passed the conversation to a human.
    Escalated,
}

impl AnswerStatus {
    pub fn name(self) -> &'static str {
        match self {
            AnswerStatus::Answered => "answered",
            AnswerStatus::MaxTurns => "max_turns",
            AnswerStatus::MaxHandoffs => "max_handoffs",
            AnswerStatus::Failed => "failed",
            AnswerStatus::Truncated => "truncated",
            AnswerStatus::Blocked => "blocked",
            AnswerStatus::Halted => "halted",
            AnswerStatus::Escalated => "escalated",
        }
    }
}

/// How a user ended a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserEnding {
    /// The user said the matter is settled.
    Resolved,
    /// The user gave up and left (a rule, the simulator's marker, or `user.abandon`).
    Abandoned,
    /// The user wanted to say more than `max_user_turns` allows.
    MaxUserTurns,
}

impl UserEnding {
    pub fn name(self) -> &'static str {
        match self {
            UserEnding::Resolved => "resolved",
            UserEnding::Abandoned => "abandoned",
            UserEnding::MaxUserTurns => "max_user_turns",
        }
    }
}

/// Messages the user handles.
#[derive(Debug, Clone)]
pub enum UserMsg {
    /// The run starts.
    Begin,
    /// The next Poisson arrival of traffic source `traffic`.
    Arrive { traffic: u32, index: u32 },
    /// An agent answered a conversation: the text, how the turn ended, and (for the user's next
    /// turn) who answered and the conversation so far.
    Answer {
        conv: ConvId,
        text: Arc<str>,
        status: AnswerStatus,
        from: AgentIdx,
        history: Transcript,
    },
    /// The user simulator's model answered.
    LlmReply { conv: ConvId, reply: ModelReply },
    /// The user ended the conversation; `turns` user messages were said.
    End {
        conv: ConvId,
        ending: UserEnding,
        turns: u32,
    },
    /// A call to a tool that names a compensation succeeded: the saga's log gets the step, to be
    /// undone if the conversation ends badly.
    /// (The call is boxed: every message is as large as the largest.)
    Compensable {
        conv: ConvId,
        tool: ToolIdx,
        call: Box<ToolCall>,
    },
    /// Timer: the `compensate_after` of a step logged for `conv` is over; a conversation that
    /// has not ended well by now is taken as lost, and its steps are undone.
    CompensationDue { conv: ConvId },
    /// A compensating call (to `tool`, undoing a call to `of`) answered.
    Compensated {
        conv: ConvId,
        tool: ToolIdx,
        of: ToolIdx,
        call_id: u32,
        output: Arc<str>,
    },
}
