//! The behaviours of the simulated actors: agents, models, tools, the user (traffic),
//! supervisors, guardrails and humans in the loop. Each is a state machine over its messages (`protocol`) that
//! returns effects; none knows the scheduler's loop, reports or the CLI.

pub mod agent;
pub mod bucket;
pub mod guardrail;
pub mod human;
pub mod llm;
pub mod llm_faults;
pub mod policy;
pub mod route;
pub mod supervisor;
pub mod tool;
pub mod tool_world;
pub mod user;

pub use agent::AgentBehavior;
pub use guardrail::GuardrailBehavior;
pub use human::HumanBehavior;
pub use llm::LlmBehavior;
pub use supervisor::{SupervisorActor, SupervisorState};
pub use tool::ToolBehavior;
pub use user::UserBehavior;
