//! Messages a human (a `[[human]]` reviewer) handles, and the decisions it sends back.

use super::tool::CallKey;
use crate::scenario::ToolIdx;

/// Messages a human handles.
#[derive(Debug, Clone)]
pub enum HumanMsg {
    /// A tool call that needs approval: the call to `tool`, its arguments as text.
    Review {
        key: CallKey,
        tool: ToolIdx,
        args: std::sync::Arc<str>,
    },
    /// The reviewer takes the request up, after `waited_us` in the queue.
    Take {
        key: CallKey,
        tool: ToolIdx,
        waited_us: u64,
    },
    /// Timer: the review is done.
    Decided {
        key: CallKey,
        tool: ToolIdx,
        approved: bool,
    },
    /// The request timed out or its call was cancelled: if still queued, it leaves the queue.
    Withdraw { key: CallKey, tool: ToolIdx },
}
