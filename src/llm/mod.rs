//! Model backends: the mock model that follows a scenario's behaviour rules, token estimates,
//! and the price table.

pub mod mock;
pub mod prices;
pub mod tokens;
