//! Model backends: the mock model that follows a scenario's behaviour rules, the live
//! OpenAI-compatible client, cassettes that record and replay live calls, and token estimates.
//! (Prices are a catalogue: `catalogue::prices`.)

pub mod backend;
pub mod cassette;
pub mod live;
pub mod mock;
pub mod tokens;
