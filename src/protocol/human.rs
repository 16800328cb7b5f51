//! Messages a human (a `[[human]]` reviewer) handles, and the decisions it sends back.

use super::ConvId;
use crate::scenario::ToolIdx;

/// Messages a human handles.
#[derive(Debug, Clone)]
pub enum HumanMsg {
    /// A tool call that needs approval: call `call_id` of `conv` to `tool`, arguments as text.
    Review {
        conv: ConvId,
        tool: ToolIdx,
        call_id: u32,
        args: std::sync::Arc<str>,
    },
    /// The reviewer takes the request up, after `waited_us` in the queue.
    Take {
        conv: ConvId,
        tool: ToolIdx,
        call_id: u32,
        waited_us: u64,
    },
    /// Timer: the review is done.
    Decided {
        conv: ConvId,
        tool: ToolIdx,
        call_id: u32,
        approved: bool,
    },
    /// The request timed out at the tool: if still queued, it leaves the queue.
    Withdraw { conv: ConvId, tool: ToolIdx, call_id: u32 },
}
