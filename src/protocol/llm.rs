//! The model call's vocabulary: the request an agent sends, the answer (text, tool calls, a
//! handoff or delegation, a provider error), its usage, and the reply the agent receives.

use std::sync::Arc;

use super::agent::Origin;
use super::transcript::Transcript;
use super::ConvId;
use crate::scenario::{AgentIdx, Scenario, ToolIdx, UserIdx};

/// Who makes a model call: an agent, or a model-driven user (a user simulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Caller {
    Agent(AgentIdx),
    User(UserIdx),
}

impl Caller {
    /// The agent, when an agent calls.
    pub fn agent(self) -> Option<AgentIdx> {
        match self {
            Caller::Agent(agent) => Some(agent),
            Caller::User(_) => None,
        }
    }

    /// The caller's logical id: `agent:NAME` or `user:NAME`.
    pub fn logical_id(self, scenario: &Scenario) -> String {
        format!("{}:{}", self.kind(), self.name(scenario))
    }

    pub fn kind(self) -> &'static str {
        match self {
            Caller::Agent(_) => "agent",
            Caller::User(_) => "user",
        }
    }

    pub fn name(self, scenario: &Scenario) -> &str {
        match self {
            Caller::Agent(agent) => scenario.agents.get(agent).map_or("?", |a| a.name.as_str()),
            Caller::User(user) => scenario.users.get(user).map_or("?", |u| u.name.as_str()),
        }
    }

    /// The system message the caller sends: the agent's instructions, or the user's persona.
    pub fn instructions(self, scenario: &Scenario) -> &str {
        match self {
            Caller::Agent(agent) => &scenario.agents[agent].instructions,
            Caller::User(user) => match &scenario.users[user].kind {
                crate::scenario::UserKind::Model { instructions, .. } => instructions,
                _ => "",
            },
        }
    }

    /// The mock model's rules for this caller.
    pub fn rules(self, scenario: &Scenario) -> &[crate::scenario::Rule] {
        match self {
            Caller::Agent(agent) => &scenario.agents[agent].behavior,
            Caller::User(user) => match &scenario.users[user].kind {
                crate::scenario::UserKind::Model { behavior, .. } => behavior,
                _ => &[],
            },
        }
    }
}

/// A chat-completion request: the conversation's transcript as the agent sends it, and what the
/// mock's rules read about it.
#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub conv: ConvId,
    pub caller: Caller,
    /// Numbers the agent's calls in this conversation; echoed in the reply to spot stale ones.
    pub call_seq: u32,
    /// The attempt of this step's call, from 1 (retries and calls made again after a restart).
    pub attempt: u32,
    pub turn: u32,
    pub tool_calls: u32,
    /// Tokens of what is sent: the instructions, the tool definitions and every message.
    pub input_tokens: u32,
    /// The part of `input_tokens` that is the instructions and the tool definitions.
    pub instruction_tokens: u32,
    /// The messages sent after the system message.
    pub transcript: Transcript,
    /// The number the first tool call of the answer gets (calls are numbered per conversation).
    pub next_call_id: u32,
    pub origin: Origin,
    /// Name of the tool whose result came back last (`""` if none).
    pub last_tool: Arc<str>,
    pub last_tool_output: Arc<str>,
    pub delegations: u32,
    pub results: Arc<str>,
    /// A guardrail's feedback when it asked for another answer (`''` if none).
    pub feedback: Arc<str>,
    /// Budget guardrails the request passed, in order: the reply goes back through them.
    pub via: Vec<crate::kernel::ActorIdx>,
}

/// Messages an LLM handles.
#[derive(Debug, Clone)]
pub enum LlmMsg {
    Complete(Box<LlmRequest>),
}

/// The tool a call names: one the scenario has, or one the model made up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolRef {
    Known(ToolIdx),
    Unknown(Arc<str>),
}

/// A call's arguments: a JSON object with sorted keys, or text that does not parse.
#[derive(Debug, Clone)]
pub enum ToolArgs {
    Json(Arc<JsonArgs>),
    Malformed(Arc<str>),
}

impl ToolArgs {
    /// Arguments that are this JSON object.
    pub fn json(map: serde_json::Map<String, serde_json::Value>) -> ToolArgs {
        ToolArgs::Json(Arc::new(JsonArgs::new(map)))
    }
}

/// A JSON object of arguments, with its text written once: the tool, the trace and the
/// guardrails all read the text, several times per call.
#[derive(Debug, Clone)]
pub struct JsonArgs {
    map: serde_json::Map<String, serde_json::Value>,
    /// `map` as serde_json writes it.
    text: Arc<str>,
}

impl JsonArgs {
    pub fn new(map: serde_json::Map<String, serde_json::Value>) -> JsonArgs {
        let text = Arc::from(serde_json::to_string(&map).unwrap_or_default());
        JsonArgs { map, text }
    }

    pub fn map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.map
    }
}

impl std::ops::Deref for JsonArgs {
    type Target = serde_json::Map<String, serde_json::Value>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// One tool call in a model answer.
#[derive(Debug, Clone)]
pub struct ToolCall {
    /// The call's number in its conversation, for matching its result.
    pub id: u32,
    /// The id on the wire (`call_…`), the model's own for a live model.
    pub wire_id: Arc<str>,
    pub tool: ToolRef,
    pub args: ToolArgs,
    /// The arguments exactly as the model wrote them.
    pub arguments: Arc<str>,
}

impl ToolCall {
    /// A call whose arguments are this JSON object, written the way the mock writes them.
    pub fn with_json(id: u32, tool: ToolRef, args: serde_json::Map<String, serde_json::Value>) -> ToolCall {
        let args = JsonArgs::new(args);
        ToolCall {
            id,
            wire_id: wire_id(id),
            tool,
            arguments: args.text.clone(),
            args: ToolArgs::Json(Arc::new(args)),
        }
    }

    /// Replaces the arguments, as the model now wrote them.
    pub fn set_args(&mut self, args: ToolArgs) {
        self.args = args;
        self.arguments = self.args_text();
    }

    /// The arguments as the tool gets them (a guardrail may have redacted them since).
    pub fn args_text(&self) -> Arc<str> {
        match &self.args {
            ToolArgs::Json(args) => args.text.clone(),
            ToolArgs::Malformed(text) => text.clone(),
        }
    }

    /// The tool's name as the model called it.
    pub fn name<'a>(&'a self, scenario: &'a Scenario) -> &'a str {
        match &self.tool {
            ToolRef::Known(t) => &scenario.tools[*t].name,
            ToolRef::Unknown(name) => name,
        }
    }
}

/// The wire id agentsim gives call number `id` of a conversation when the model gives none. The
/// first few hundred are made once and shared: every mock tool call and delegation takes one.
pub fn wire_id(id: u32) -> Arc<str> {
    const SHARED: u32 = 256;
    static IDS: std::sync::OnceLock<Vec<Arc<str>>> = std::sync::OnceLock::new();
    let make = |id: u32| Arc::from(format!("call_{id}"));
    match IDS.get_or_init(|| (0..SHARED).map(make).collect()).get(id as usize) {
        Some(shared) => shared.clone(),
        None => make(id),
    }
}

/// One sub-task of a delegation: who gets it, the task, and the call that asked for it.
#[derive(Debug, Clone)]
pub struct Delegation {
    pub to: AgentIdx,
    pub task: Arc<str>,
    /// The wire id of the `ask_<agent>` call.
    pub call_id: Arc<str>,
}

/// An error answer from the provider, shaped like the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderError {
    pub status: u16,
    /// `error.type` in the body.
    pub error_type: &'static str,
    /// `error.code` in the body.
    pub code: &'static str,
    /// The `retry-after` header, if the provider sent one.
    pub retry_after_us: Option<u64>,
    /// What a live server said about the error (its `error.message`, or the start of its body).
    pub message: Option<Arc<String>>,
}

impl ProviderError {
    /// The rate-limit header a real provider sends with this error, already at zero.
    pub fn exhausted_header(&self) -> Option<&'static str> {
        match (self.status, self.error_type) {
            (429, "requests") => Some("x-ratelimit-remaining-requests"),
            (429, "tokens") => Some("x-ratelimit-remaining-tokens"),
            _ => None,
        }
    }
}

impl ProviderError {
    /// Whether clients retry it: 408, 409, 429 (not quota) and 5xx, as the OpenAI SDK does.
    pub fn retryable(&self) -> bool {
        match self.status {
            429 => self.code != "insufficient_quota",
            408 | 409 => true,
            s => s >= 500,
        }
    }

    /// The client-side timeout, as the agent sees it when it stops waiting.
    pub fn client_timeout() -> ProviderError {
        ProviderError {
            status: 408,
            error_type: "timeout",
            code: "timeout",
            retry_after_us: None,
            message: None,
        }
    }
}

/// What the model said.
#[derive(Debug, Clone)]
pub enum ModelAnswer {
    ToolCalls(Vec<ToolCall>),
    Text(Arc<str>),
    /// Hand the conversation to `to`; `call_id` is the wire id of the `transfer_to_<agent>` call.
    Handoff {
        to: AgentIdx,
        call_id: Arc<str>,
    },
    /// Fan tasks out to agents and wait for all their answers.
    Delegate(Vec<Delegation>),
    /// The provider failed the call (boxed: errors are rare, and every answer moves through the
    /// queue at the size of its largest kind).
    Error(Box<ProviderError>),
}

/// Why the model stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    ToolCalls,
    /// Cut at max tokens.
    Length,
    /// Filtered or refused.
    ContentFilter,
}

impl FinishReason {
    pub fn name(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::ToolCalls => "tool_calls",
            FinishReason::Length => "length",
            FinishReason::ContentFilter => "content_filter",
        }
    }
}

/// Tokens and cost of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// All input tokens, cached ones included.
    pub input_tokens: u32,
    /// The part of `input_tokens` read from the provider's prompt cache (billed at the cached price).
    pub cached_input_tokens: u32,
    pub output_tokens: u32,
    pub cost_pusd: u64,
    /// A live server counted the tokens (its `usage`); otherwise they are agentsim's estimate.
    pub counted_by_server: bool,
}

/// A model answer with its usage.
#[derive(Debug, Clone)]
pub struct ModelReply {
    pub call_seq: u32,
    pub answer: ModelAnswer,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub latency_us: u64,
}

impl ModelReply {
    /// Canonical summary for the trace.
    pub(crate) fn summarize<W: super::Summary + std::fmt::Write>(&self, scenario: &Scenario, out: &mut W) {
        let _ = match &self.answer {
            ModelAnswer::ToolCalls(calls) => {
                out.lit("tool_calls=[");
                for (i, call) in calls.iter().enumerate() {
                    let name = match &call.tool {
                        ToolRef::Known(t) => scenario.tools[*t].name.as_str(),
                        ToolRef::Unknown(name) => name,
                    };
                    let unknown = if matches!(call.tool, ToolRef::Unknown(_)) {
                        "?"
                    } else {
                        ""
                    };
                    let malformed = if matches!(call.args, ToolArgs::Malformed(_)) {
                        "(malformed)"
                    } else {
                        ""
                    };
                    out.lit(if i > 0 { "," } else { "" }).lit(unknown).put(name);
                    out.lit("#").num(call.id).lit(malformed);
                }
                out.lit("]");
                Ok(())
            }
            ModelAnswer::Text(text) => {
                out.lit("text_chars=").num(text.chars().count());
                Ok(())
            }
            ModelAnswer::Handoff { to, .. } => {
                out.lit("handoff=").put(&scenario.agents[*to].name);
                Ok(())
            }
            ModelAnswer::Delegate(tasks) => {
                out.lit("delegate=[");
                for (i, task) in tasks.iter().enumerate() {
                    out.lit(if i > 0 { "," } else { "" })
                        .put(&scenario.agents[task.to].name);
                }
                out.lit("]");
                Ok(())
            }
            ModelAnswer::Error(e) => {
                let _ = write!(out, "error={} {} {}", e.status, e.error_type, e.code);
                if let Some(us) = e.retry_after_us {
                    let _ = write!(out, " retry_after_us={us}");
                }
                if let Some(header) = e.exhausted_header() {
                    let _ = write!(out, " {header}=0");
                }
                match &e.message {
                    Some(message) => write!(out, " server={}", super::quoted_clip(message)),
                    None => Ok(()),
                }
            }
        };
        out.lit(" call=")
            .num(self.call_seq)
            .lit(" finish=")
            .lit(self.finish_reason.name());
        out.lit(" tokens_in=").num(self.usage.input_tokens);
        out.lit(" tokens_out=").num(self.usage.output_tokens);
        out.lit(" tokens_cached=").num(self.usage.cached_input_tokens);
        out.lit(" cost_pusd=")
            .num(self.usage.cost_pusd)
            .lit(" latency_us=")
            .num(self.latency_us);
        if self.usage.counted_by_server {
            out.lit(" usage=server");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::wire_id;

    #[test]
    fn a_wire_id_is_the_same_text_shared_or_made() {
        assert_eq!(&*wire_id(0), "call_0");
        assert_eq!(&*wire_id(255), "call_255");
        assert_eq!(&*wire_id(256), "call_256");
        assert_eq!(&*wire_id(u32::MAX), format!("call_{}", u32::MAX));
    }
}
