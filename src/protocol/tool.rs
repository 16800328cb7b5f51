//! Messages a tool handles.

use super::llm::ToolCall;
use super::ConvId;

/// Messages a tool handles.
#[derive(Debug, Clone)]
pub enum ToolMsg {
    /// Run a call for `agent`. Only well-formed calls to known tools reach a tool.
    Invoke {
        conv: ConvId,
        agent: crate::scenario::AgentIdx,
        call: ToolCall,
    },
    /// A call that waited for the API behind the tool (`when_busy = "queue"`): it runs now.
    Run(Box<Queued>),
}

/// A queued call, with the fault its original delivery carried and the latency drawn then.
#[derive(Debug, Clone)]
pub struct Queued {
    pub conv: ConvId,
    pub agent: crate::scenario::AgentIdx,
    pub call: ToolCall,
    pub injection: Option<super::Injection>,
    pub latency_us: Option<u64>,
    /// When the call reached the tool (it has waited since).
    pub queued_at_us: u64,
}
