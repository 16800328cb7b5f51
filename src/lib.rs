//! agentsim: a deterministic, actor-based simulator for LLM agent systems.
//!
//! The modules are layered (ARCHITECTURE.md has the table, `tests/layers.rs` enforces it):
//! [`kernel`] at the bottom, then the [`catalogue`]s, the [`scenario`] model, the [`protocol`]
//! (every message), the models and checks ([`llm`], [`guard`]), the actors' [`behavior`]s, the
//! [`trace`] and the [`engine`] (the event loop), and on top accounting ([`observe`]), reports
//! ([`report`], [`run`], [`render`], [`otlp`]), [`sweep`]s, [`bench`], the [`proxy`] and the [`cli`].

pub mod kernel;

pub mod catalogue;

pub mod scenario;

pub mod protocol;

pub mod guard;
pub mod llm;

pub mod behavior;

pub mod engine;
pub mod trace;

pub mod observe;

pub mod otlp;
pub mod render;
pub mod report;
pub mod run;

pub mod sweep;

pub mod bench;
pub mod cli;
pub mod proxy;
