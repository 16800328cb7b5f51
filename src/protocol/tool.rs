//! Messages a tool handles.

use super::llm::ToolCall;
use super::ConvId;
use crate::scenario::{AgentIdx, ToolIdx};

/// Messages a tool handles.
#[derive(Debug, Clone)]
pub enum ToolMsg {
    /// Run a call for `agent`. Only well-formed calls to known tools reach a tool.
    Invoke {
        conv: ConvId,
        agent: AgentIdx,
        call: ToolCall,
    },
    /// Undo what a call to tool `of` did, with that call's arguments: the saga's compensating
    /// step, asked for by the conversation's front door when the conversation ended badly.
    /// `step` numbers the steps of the conversation's saga.
    /// The call is boxed: compensations are rare, and every message is as large as the largest.
    Compensate {
        conv: ConvId,
        of: ToolIdx,
        call: Box<ToolCall>,
        step: u32,
    },
    /// A call that waited for the API behind the tool (`when_busy = "queue"`): it runs now.
    Run(Box<Queued>),
    /// The latency of a call from an agent with `cancellation = "cancel"` is over: the call takes
    /// effect now, unless it was cancelled meanwhile, and answers at once.
    Commit(Box<Queued>),
    /// The agent gave up on the call: it must not take effect.
    Cancel(CallKey),
    /// The reviewer decided on the call (tools with `approval`).
    Reviewed { key: CallKey, approved: bool },
    /// Timer: the reviewer's `timeout` for the call is over.
    ApprovalTimeout(CallKey),
}

/// Which call: its conversation, the agent that made it, and its number there. Agents number
/// their calls per conversation, and a delegate numbers its own from 0, so all three are needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct CallKey {
    pub conv: ConvId,
    pub agent: AgentIdx,
    pub call_id: u32,
}

/// Who a tool call answers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolCaller {
    /// The agent that made the call: the result joins its transcript.
    Agent(AgentIdx),
    /// The front door, undoing step `step` of the saga, a call to tool `of` (a compensation).
    Compensation { of: ToolIdx, step: u32 },
}

/// A queued call, with the fault its original delivery carried and the latency drawn then.
#[derive(Debug, Clone)]
pub struct Queued {
    pub conv: ConvId,
    pub caller: ToolCaller,
    pub call: ToolCall,
    pub injection: Option<super::Injection>,
    pub latency_us: Option<u64>,
    /// When the call reached the tool (it has waited since).
    pub queued_at_us: u64,
    /// The result a trace recorded for this call (an imported tool's), in place of the tool's
    /// own output.
    pub recorded_output: Option<std::sync::Arc<str>>,
}
