//! Messages on their way through guardrails, and the verdict records checks produce.

use super::agent::{Origin, ReplyTo};
use super::llm::ModelReply;
use super::transcript::Transcript;
use super::{ConvId, Payload};
use crate::kernel::ActorIdx;
use crate::scenario::guardrail::Stage;
use crate::scenario::{AgentIdx, ToolIdx};

/// Index of a guardrail in the scenario.
pub type GuardrailIdx = usize;

/// What the agent knows about a conversation that the output stage needs to act (re-ask the
/// model, hand the conversation on).
#[derive(Debug, Clone)]
pub struct GuardContext {
    /// The conversation's transcript before the answer being checked.
    pub transcript: Transcript,
    pub origin: Origin,
    pub reply_to: ReplyTo,
    pub turn: u32,
    pub tool_calls: u32,
}

/// A message on its way through the guardrails of a stage.
#[derive(Debug, Clone)]
pub struct Checked {
    pub stage: Stage,
    pub conv: ConvId,
    /// The agent whose traffic this is.
    pub agent: AgentIdx,
    /// The tool, at the tool stages.
    pub tool: Option<ToolIdx>,
    /// This guardrail's place in the stage's chain.
    pub position: u32,
    /// Where the message goes once every guardrail has let it through.
    pub dest: ActorIdx,
    pub subject: Payload,
    pub context: Option<Box<GuardContext>>,
    /// A copy checked beside the real message (`mode = "parallel"`): only a trip matters.
    pub parallel: bool,
}

/// Messages a guardrail handles.
#[derive(Debug, Clone)]
pub enum GuardrailMsg {
    Check(Box<Checked>),
    /// A model's reply on its way back through the budget guardrails it passed.
    Reply(Box<RoutedReply>),
}

/// A model's reply routed back through the budget guardrails its request passed (`via`), so
/// they count the real spend.
#[derive(Debug, Clone)]
pub struct RoutedReply {
    pub conv: ConvId,
    pub agent: AgentIdx,
    pub reply: ModelReply,
    pub via: Vec<ActorIdx>,
}

/// The verdict of one check, as the trace and the report see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Block,
    Redact,
    Retry,
    Escalate,
    Halt,
    /// The guardrail failed or timed out (then it let the message through or blocked it, as
    /// `on_error` says).
    Error,
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Block => "block",
            Verdict::Redact => "redact",
            Verdict::Retry => "retry",
            Verdict::Escalate => "escalate",
            Verdict::Halt => "halt",
            Verdict::Error => "error",
        }
    }
}

/// A verdict that went the wrong way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mistake {
    FalsePositive,
    FalseNegative,
}

impl Mistake {
    pub fn name(self) -> &'static str {
        match self {
            Mistake::FalsePositive => "false_positive",
            Mistake::FalseNegative => "false_negative",
        }
    }
}

/// One check's outcome, for the trace, the report and the blast radius.
#[derive(Debug, Clone)]
pub struct VerdictRecord {
    pub guardrail: GuardrailIdx,
    pub stage: Stage,
    pub agent: AgentIdx,
    pub conv: ConvId,
    pub verdict: Verdict,
    /// The check found something (whatever the action and mistakes made of it).
    pub tripped: bool,
    pub mistake: Option<Mistake>,
    /// The checked message did not go on: what it descends from stops here.
    pub contained: bool,
    pub latency_us: u64,
    /// What the check found, in a few words.
    pub detail: String,
}
