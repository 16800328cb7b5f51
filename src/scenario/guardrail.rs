//! Guardrails in the scenario: the typed model of `[[guardrail]]` (validated in
//! `validate::guardrail`).
//!
//! A guardrail watches one stage of the agents it names, checks what passes with one kind of
//! check, and acts on what it finds. Which kinds fit which stage is stated here, so validation
//! can make sure a run never meets a guardrail that cannot work.

use std::collections::BTreeMap;

use super::expr::Expr;
use super::model::{AgentIdx, Latency, Probability, ToolIdx};

/// Where in the flow a guardrail sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    /// The user's message, before the agent sees it.
    Input,
    /// A model call, before it is made (budgets: a call that would overspend is not made).
    ModelCall,
    /// A tool call's arguments, before the tool runs.
    ToolCall,
    /// A tool's result, before the model sees it.
    ToolOutput,
    /// The final answer, before the user sees it.
    Output,
    /// A handoff or delegation, before the next agent takes it.
    Handoff,
}

impl Stage {
    pub const ALL: [Stage; 6] = [
        Stage::Input,
        Stage::ModelCall,
        Stage::ToolCall,
        Stage::ToolOutput,
        Stage::Output,
        Stage::Handoff,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::ModelCall => "model_call",
            Stage::ToolCall => "tool_call",
            Stage::ToolOutput => "tool_output",
            Stage::Output => "output",
            Stage::Handoff => "handoff",
        }
    }
}

/// What a guardrail does when its check trips.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardAction {
    /// Let it through and record the verdict (a monitor, or shadow mode).
    Allow,
    /// Stop it; the model (tool stages) or the user (input, output) sees `message` instead.
    Block,
    /// Let it through with what was found masked (`[REDACTED:credit_card]`).
    Redact,
    /// Ask the model again with `message` as feedback, at most `max_retries` times, then block.
    Retry,
    /// Pass the conversation to `escalate_to`, or to a human queue (the user is told).
    Escalate,
    /// Trip-wire: stop the whole conversation.
    Halt,
}

impl GuardAction {
    pub const ALL: [GuardAction; 6] = [
        GuardAction::Allow,
        GuardAction::Block,
        GuardAction::Redact,
        GuardAction::Retry,
        GuardAction::Escalate,
        GuardAction::Halt,
    ];

    pub fn name(self) -> &'static str {
        match self {
            GuardAction::Allow => "allow",
            GuardAction::Block => "block",
            GuardAction::Redact => "redact",
            GuardAction::Retry => "retry",
            GuardAction::Escalate => "escalate",
            GuardAction::Halt => "halt",
        }
    }
}

/// A kind of personal data the `pii` check finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PiiEntity {
    Email,
    Phone,
    /// 13–19 digits that pass the Luhn check.
    CreditCard,
    /// A country code, two check digits and up to 30 letters or digits that pass mod-97.
    Iban,
    /// Secret-looking tokens: `sk-…`, `AKIA…`, `ghp_…`, `xox[bp]-…`.
    ApiKey,
}

impl PiiEntity {
    pub const ALL: [PiiEntity; 5] = [
        PiiEntity::Email,
        PiiEntity::Phone,
        PiiEntity::CreditCard,
        PiiEntity::Iban,
        PiiEntity::ApiKey,
    ];

    pub fn name(self) -> &'static str {
        match self {
            PiiEntity::Email => "email",
            PiiEntity::Phone => "phone",
            PiiEntity::CreditCard => "credit_card",
            PiiEntity::Iban => "iban",
            PiiEntity::ApiKey => "api_key",
        }
    }

    pub fn parse(name: &str) -> Option<PiiEntity> {
        PiiEntity::ALL.into_iter().find(|e| e.name() == name)
    }
}

/// The scope of a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    Conversation,
    Agent,
    Run,
}

impl BudgetScope {
    pub fn name(self) -> &'static str {
        match self {
            BudgetScope::Conversation => "conversation",
            BudgetScope::Agent => "agent",
            BudgetScope::Run => "run",
        }
    }
}

/// A rule on one tool-call argument of the `allow_list` check.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgRule {
    pub min: Option<f64>,
    pub max: Option<f64>,
    /// The values allowed, as JSON.
    pub one_of: Option<Vec<serde_json::Value>>,
    pub required: bool,
}

/// What a guardrail checks.
#[derive(Debug, Clone)]
pub enum GuardCheck {
    /// Any of these regular expressions matches the text.
    Regex(Vec<regex::Regex>),
    /// Any of these words or phrases appears in the text (case-insensitive).
    DenyList(Vec<String>),
    /// Personal data of these kinds appears in the text.
    Pii(Vec<PiiEntity>),
    /// The tool call's arguments do not validate against this JSON Schema (a subset: `type`,
    /// `properties`, `required`, `additionalProperties`, `enum`, `minimum`, `maximum`,
    /// `minLength`, `maxLength`, `items`); `None`: the called tool's own `parameters`.
    JsonSchema(Option<serde_json::Value>),
    /// The tool is not one of `tools` (when given), or an argument breaks its rule.
    AllowList {
        tools: Option<Vec<ToolIdx>>,
        args: BTreeMap<String, ArgRule>,
    },
    /// More than `max` tool calls in one conversation.
    MaxToolCalls(u32),
    /// The model call would take the spend past the budget (cost, tokens, or both).
    Budget {
        max_cost_pusd: Option<u64>,
        max_tokens: Option<u64>,
        per: BudgetScope,
        /// Output tokens reserved for the call's answer when estimating it.
        reserve_output_tokens: u32,
    },
    /// The same tool with the same arguments more than `max_repeats` times in a conversation.
    Loop { max_repeats: u32 },
    /// Text that reads like an instruction to the model (score ≥ `threshold`).
    Injection { threshold: u32 },
    /// The text mentions a denied topic, or (with `allow`) none of the allowed ones.
    Topic { allow: Vec<String>, deny: Vec<String> },
    /// A rule over the text and the conversation (`text contains 'refund' && turn > 2`).
    Script(Expr),
}

impl GuardCheck {
    /// Every kind, with a one-line description (for `agentsim list guardrails`).
    pub const KINDS: [(&'static str, &'static str, &'static str); 11] = [
        ("regex", "patterns", "a regular expression matches the text"),
        (
            "deny_list",
            "words",
            "a word or phrase appears in the text (case-insensitive)",
        ),
        (
            "pii",
            "entities",
            "personal data: email, phone, credit_card (Luhn), iban (mod-97), api_key",
        ),
        (
            "json_schema",
            "schema",
            "tool-call arguments do not validate against a JSON Schema",
        ),
        (
            "allow_list",
            "tools, args",
            "a tool outside the list, or an argument out of its range or set",
        ),
        ("max_tool_calls", "max", "more than `max` tool calls in a conversation"),
        (
            "budget",
            "max_cost_usd, max_tokens, per, reserve_output_tokens",
            "a model call that would take the spend past the budget is not made",
        ),
        (
            "loop",
            "max_repeats",
            "the same tool with the same arguments more than `max_repeats` times",
        ),
        (
            "injection",
            "threshold",
            "text that reads like instructions to the model (prompt injection)",
        ),
        ("topic", "allow, deny", "a denied topic, or none of the allowed ones"),
        ("script", "when", "a rule over `text` and the conversation"),
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            GuardCheck::Regex(_) => "regex",
            GuardCheck::DenyList(_) => "deny_list",
            GuardCheck::Pii(_) => "pii",
            GuardCheck::JsonSchema(_) => "json_schema",
            GuardCheck::AllowList { .. } => "allow_list",
            GuardCheck::MaxToolCalls(_) => "max_tool_calls",
            GuardCheck::Budget { .. } => "budget",
            GuardCheck::Loop { .. } => "loop",
            GuardCheck::Injection { .. } => "injection",
            GuardCheck::Topic { .. } => "topic",
            GuardCheck::Script(_) => "script",
        }
    }

    /// Stages the kind can watch.
    pub fn stages(kind: &str) -> &'static [Stage] {
        match kind {
            "json_schema" | "allow_list" | "max_tool_calls" | "loop" => &[Stage::ToolCall],
            "budget" => &[Stage::ModelCall],
            "script" => &Stage::ALL,
            _ => &[
                Stage::Input,
                Stage::ModelCall,
                Stage::ToolCall,
                Stage::ToolOutput,
                Stage::Output,
                Stage::Handoff,
            ],
        }
    }

    /// Whether `redact` can mask what this kind finds.
    pub fn can_redact(kind: &str) -> bool {
        matches!(kind, "regex" | "deny_list" | "pii")
    }
}

/// A validated `[[guardrail]]`.
#[derive(Debug, Clone)]
pub struct Guardrail {
    pub name: String,
    pub stage: Stage,
    pub check: GuardCheck,
    pub action: GuardAction,
    pub message: String,
    /// The agents it watches.
    pub agents: Vec<AgentIdx>,
    /// At the tool stages: the tools it watches (`None`: all).
    pub tools: Option<Vec<ToolIdx>>,
    /// Runs beside the model call instead of before it (input stage only).
    pub parallel: bool,
    /// Lets the message through when the guardrail itself fails or times out.
    pub fail_open: bool,
    pub latency: Latency,
    pub timeout_us: Option<u64>,
    pub error_rate: Probability,
    pub false_positive: Probability,
    pub false_negative: Probability,
    pub max_retries: u32,
    pub escalate_to: Option<AgentIdx>,
    /// What a text check reads.
    pub scope: GuardScope,
}

/// What a guardrail's text check reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuardScope {
    /// The message: the user's message, the newest message sent to the model, the answer.
    Message,
    /// The whole transcript so far, the message included.
    Transcript,
}

impl Guardrail {
    /// Whether the guardrail watches `agent` at `stage` (and `tool`, at the tool stages).
    pub fn watches(&self, stage: Stage, agent: AgentIdx, tool: Option<ToolIdx>) -> bool {
        self.stage == stage
            && self.agents.contains(&agent)
            && match (&self.tools, tool) {
                (Some(tools), Some(tool)) => tools.contains(&tool),
                _ => true,
            }
    }
}
