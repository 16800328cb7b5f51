//! agentsim: a deterministic, actor-based simulator for LLM agent systems.

pub mod actors;
pub mod bench;
pub mod blast;
pub mod cli;
pub mod faults;
pub mod guard;
pub mod kernel;
pub mod llm;
pub mod observer;
pub mod otlp;
pub mod report;
pub mod report_html;
pub mod scenario;
pub mod sweep;
pub mod trace;
