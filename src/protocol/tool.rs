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
}
