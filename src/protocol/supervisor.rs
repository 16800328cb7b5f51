//! Messages a supervisor handles.

use std::sync::Arc;

use crate::kernel::ActorIdx;

/// Messages a supervisor handles.
#[derive(Debug, Clone)]
pub enum SupervisorMsg {
    /// A child failed; `child_id` is its logical id, for the trace.
    ChildFailed {
        child: ActorIdx,
        child_id: Arc<str>,
        error: Arc<str>,
    },
}
