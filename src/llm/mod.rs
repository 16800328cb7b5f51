//! Model backends: the mock model that follows a scenario's behaviour rules, and token estimates.

pub mod mock;
pub mod tokens;
