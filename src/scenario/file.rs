//! The scenario file as written: serde structs that mirror the TOML, with spans for errors.
//!
//! Nothing here is checked beyond its TOML type; `validate` turns it into a [`super::Scenario`].

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// A whole scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub scenario: Spanned<RawMeta>,
    #[serde(default)]
    pub llm: Vec<Spanned<RawLlm>>,
    #[serde(default)]
    pub agent: Vec<Spanned<RawAgent>>,
    #[serde(default)]
    pub tool: Vec<Spanned<RawTool>>,
    #[serde(default)]
    pub supervisor: Vec<Spanned<RawSupervisor>>,
    #[serde(default)]
    pub traffic: Vec<Spanned<RawTraffic>>,
    #[serde(default)]
    pub user: Vec<Spanned<RawUser>>,
    #[serde(default)]
    pub fault: Vec<Spanned<RawFault>>,
    #[serde(default)]
    pub profile: Vec<Spanned<RawProfile>>,
    #[serde(default)]
    pub invariant: Vec<Spanned<RawInvariant>>,
    #[serde(default)]
    pub guardrail: Vec<Spanned<RawGuardrail>>,
    /// The world's tables, which tools read and write.
    #[serde(default)]
    pub table: Vec<Spanned<RawTable>>,
    /// People in the loop: reviewers who approve tool calls.
    #[serde(default)]
    pub human: Vec<Spanned<RawHuman>>,
}

/// `[[human]]`: a reviewer who approves or rejects the tool calls that need approval.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHuman {
    pub name: Spanned<String>,
    /// How long one review takes, once the reviewer takes it up.
    pub latency: Option<Spanned<RawLatency>>,
    /// The chance a review approves the call (default 1).
    pub approve: Option<Spanned<f64>>,
    /// The chance a request is never taken up: it sits in the inbox until it times out.
    pub miss: Option<Spanned<f64>>,
    /// A request not decided this long after it was made times out.
    pub timeout: Option<Spanned<String>>,
    /// What a timed-out request does: `"reject"` (default) or `"approve"`.
    pub on_timeout: Option<Spanned<String>>,
    /// Reviews at once; more wait in the queue, first come first served (default 1).
    pub capacity: Option<Spanned<u32>>,
}

/// `approval = { by = "reviewer", when = "args.amount_usd > 2000" }` on a tool.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApproval {
    pub by: Spanned<String>,
    /// Which calls need approval (over the call's arguments and the records it reads); all,
    /// without it.
    pub when: Option<Spanned<String>>,
}

/// `[[table]]`: a table of the world, with typed fields and its initial records.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTable {
    pub name: Spanned<String>,
    /// The field that identifies a record.
    pub key: Spanned<String>,
    /// Field name → type: `string`, `int`, `number` or `bool`.
    pub fields: Spanned<std::collections::BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Initial records, inline.
    pub rows: Option<Spanned<Vec<Spanned<toml::Table>>>>,
    /// Initial records from a file beside the scenario: `.json` (an array of objects) or `.csv`.
    pub data: Option<Spanned<String>>,
}

/// A tool's lookup: `read = { room = { table = "rooms", key = "{{args.room}}" } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLookup {
    pub table: Spanned<String>,
    pub key: Spanned<String>,
}

/// One of a tool's `rules`: the first whose `when` holds (and whose `p` is drawn) decides what
/// the call does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolRule {
    pub when: Option<Spanned<String>>,
    pub p: Option<Spanned<f64>>,
    /// The call fails with this error; nothing changes.
    pub fail: Option<Spanned<String>>,
    /// Looked-up record → field → new value.
    pub update: Option<std::collections::BTreeMap<Spanned<String>, RawValues>>,
    /// Table → the new record's fields.
    pub insert: Option<std::collections::BTreeMap<Spanned<String>, RawValues>>,
    /// Looked-up records to delete.
    #[serde(default)]
    pub delete: Vec<Spanned<String>>,
    pub output: Option<Spanned<String>>,
}

/// Field → value (a template for a string field, an expression or a constant otherwise).
pub type RawValues = std::collections::BTreeMap<Spanned<String>, Spanned<toml::Value>>;

/// `[[guardrail]]`: a check at a stage, with an action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    pub name: Spanned<String>,
    pub stage: Spanned<String>,
    pub check: Spanned<RawGuardCheck>,
    pub action: Option<Spanned<String>>,
    /// What the model or the user sees when the guardrail blocks, halts or escalates.
    pub message: Option<Spanned<String>>,
    /// Agents (globs) whose traffic the guardrail watches; all when absent.
    #[serde(default)]
    pub agents: Vec<Spanned<String>>,
    /// Tools (globs) whose calls or outputs it watches, at the tool stages; all when absent.
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    /// `blocking` (default) or `parallel` (input stage: runs beside the model call).
    pub mode: Option<Spanned<String>>,
    pub latency: Option<Spanned<RawLatency>>,
    pub timeout: Option<Spanned<String>>,
    /// `open` (let the message through) or `closed` (block it) when the guardrail fails.
    pub on_error: Option<Spanned<String>>,
    pub error_rate: Option<Spanned<f64>>,
    pub false_positive: Option<Spanned<f64>>,
    pub false_negative: Option<Spanned<f64>>,
    pub max_retries: Option<Spanned<u32>>,
    pub escalate_to: Option<Spanned<String>>,
    /// What a text check reads: `message` (default: the message itself) or `transcript` (the
    /// whole conversation so far; input, model_call and output stages).
    pub scope: Option<Spanned<String>>,
}

/// `check = { kind = "pii", entities = ["email"] }`: what the guardrail looks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardCheck {
    pub kind: Spanned<String>,
    pub patterns: Option<Spanned<Vec<String>>>,
    pub words: Option<Spanned<Vec<String>>>,
    pub entities: Option<Spanned<Vec<String>>>,
    pub schema: Option<Spanned<toml::Value>>,
    pub tools: Option<Spanned<Vec<String>>>,
    pub args: Option<Spanned<std::collections::BTreeMap<String, RawArgRule>>>,
    pub max: Option<Spanned<u32>>,
    pub max_cost_usd: Option<Spanned<f64>>,
    pub max_tokens: Option<Spanned<u64>>,
    pub per: Option<Spanned<String>>,
    pub reserve_output_tokens: Option<Spanned<u32>>,
    pub max_repeats: Option<Spanned<u32>>,
    pub threshold: Option<Spanned<u32>>,
    pub allow: Option<Spanned<Vec<String>>>,
    pub deny: Option<Spanned<Vec<String>>>,
    pub when: Option<Spanned<String>>,
}

/// `args = { amount = { max = 100 }, currency = { one_of = ["EUR", "USD"] } }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArgRule {
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub one_of: Option<Vec<toml::Value>>,
    pub required: Option<bool>,
}

/// `[[profile]]`: a fault profile for swarm testing; each seed picks one.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    pub name: Spanned<String>,
    /// Relative chance of being picked (default 1).
    pub weight: Option<Spanned<u32>>,
    /// Fault names (globs) that are on under this profile.
    #[serde(default)]
    pub faults: Vec<Spanned<String>>,
    /// Multiplier on the probabilities of the faults that are on (default 1).
    pub scale: Option<Spanned<f64>>,
}

/// `[scenario]`: name, default seed and run limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMeta {
    pub name: Spanned<String>,
    pub description: Option<String>,
    pub seed: Option<Spanned<u64>>,
    pub max_virtual_time: Option<Spanned<String>>,
    pub max_events: Option<Spanned<u64>>,
    pub max_queue_len: Option<Spanned<u64>>,
    pub max_message_bytes: Option<Spanned<u64>>,
    /// Bytes of text in one conversation's transcript (`max_transcript_bytes`).
    pub max_transcript_bytes: Option<Spanned<u64>>,
    pub max_restarts_total: Option<Spanned<u64>>,
    pub max_tool_wait: Option<Spanned<String>>,
    /// Handoffs one conversation may have before it ends unanswered (`max_handoffs`).
    pub max_handoffs: Option<Spanned<u32>>,
    /// User messages one conversation may have, the opening one included (`max_user_turns`).
    pub max_user_turns: Option<Spanned<u32>>,
}

/// `[[llm]]`: a model endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLlm {
    pub name: Spanned<String>,
    pub model: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    pub latency: Option<Spanned<RawLatency>>,
    /// Overrides the price table's price for `model`.
    pub price: Option<Spanned<RawPrice>>,
    /// Smallest cached prefix, in input tokens, that the provider bills as cached (default 1024).
    pub cache_min_tokens: Option<Spanned<u32>>,
    pub context_window: Option<Spanned<u64>>,
    /// Provider-side limit: requests per minute (a token bucket refilled continuously).
    pub rpm: Option<Spanned<u32>>,
    /// Requests the bucket holds when full (default: rpm / 6, at least 1).
    pub burst: Option<Spanned<u32>>,
    /// Whether the provider's 429 carries a retry-after header.
    pub retry_after_header: Option<bool>,
    /// Live mode: the OpenAI-compatible base URL, up to and including `/v1`.
    pub base_url: Option<Spanned<String>>,
    /// Live mode: the environment variable holding the API key.
    pub api_key_env: Option<Spanned<String>>,
    pub temperature: Option<Spanned<f64>>,
    pub max_tokens: Option<Spanned<u32>>,
    /// Sent as `max_completion_tokens`, which newer reasoning models take instead of `max_tokens`.
    pub max_completion_tokens: Option<Spanned<u32>>,
    /// Live mode: the `content` of an assistant message that has only tool calls: `"null"` (as
    /// the API documents; default) or `"empty"` (`""`, for servers that reject null).
    pub assistant_content: Option<Spanned<String>>,
    /// Live mode: client timeout of one call (default 60s).
    pub timeout: Option<Spanned<String>>,
    /// Live mode: allow plain http to a host that is not loopback.
    pub allow_insecure_http: Option<bool>,
    /// Live mode: largest response body accepted, in bytes (default 8 MiB).
    pub max_response_bytes: Option<Spanned<u64>>,
    /// Replay mode: the cassette file, relative to the scenario file.
    pub cassette: Option<Spanned<String>>,
    /// Replay mode: `strict` (default) or `fifo`.
    pub cassette_match: Option<Spanned<String>>,
}

/// `price = { input_per_mtok = 0.15, cached_input_per_mtok = 0.075, output_per_mtok = 0.60 }`,
/// in USD per million tokens; without `cached_input_per_mtok` nothing is billed as cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrice {
    pub input_per_mtok: Spanned<f64>,
    pub cached_input_per_mtok: Option<Spanned<f64>>,
    pub output_per_mtok: Spanned<f64>,
}

/// A latency: `"120ms"`, `{ median = "900ms", p99 = "6s" }` or `{ min = "50ms", max = "300ms" }`.
#[derive(Debug, Clone)]
pub enum RawLatency {
    Fixed(String),
    Table(RawLatencyTable),
}

/// The table form of [`RawLatency`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLatencyTable {
    pub median: Option<String>,
    pub p99: Option<String>,
    pub min: Option<String>,
    pub max: Option<String>,
}

impl<'de> Deserialize<'de> for RawLatency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LatencyVisitor;
        impl<'de> Visitor<'de> for LatencyVisitor {
            type Value = RawLatency;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a latency: a duration such as \"120ms\", or a table { median, p99 } or { min, max }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawLatency, E> {
                Ok(RawLatency::Fixed(v.to_owned()))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawLatency, M::Error> {
                RawLatencyTable::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawLatency::Table)
            }
        }
        deserializer.deserialize_any(LatencyVisitor)
    }
}

/// `[[agent]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub name: Spanned<String>,
    pub llm: Option<Spanned<String>>,
    pub instructions: Option<String>,
    #[serde(default)]
    pub tools: Vec<Spanned<String>>,
    #[serde(default)]
    pub handoffs: Vec<Spanned<String>>,
    #[serde(default)]
    pub delegates: Vec<Spanned<String>>,
    pub max_turns: Option<Spanned<u32>>,
    /// Run this many identical copies, named `NAME-0`, `NAME-1`, …; traffic sent to `NAME`
    /// is spread over them, one conversation each in turn.
    pub replicas: Option<Spanned<u32>>,
    /// Retry policy for model calls.
    pub retry: Option<Spanned<RawRetry>>,
    /// Per model call: give up waiting after this long.
    pub timeout: Option<Spanned<String>>,
    /// Per tool call: give up waiting after this long.
    pub tool_timeout: Option<Spanned<String>>,
    /// Per delegation: give up waiting for the delegate's answer after this long.
    pub delegation_timeout: Option<Spanned<String>>,
    /// Per delegation: after a timeout, send the task again this many times before giving up.
    pub delegation_retries: Option<Spanned<u32>>,
    /// How long a conversation this agent hands off may go unfinished at the receiver before it
    /// is handed off again (`handoff_retries` times) or fails.
    pub handoff_timeout: Option<Spanned<String>>,
    pub handoff_retries: Option<Spanned<u32>>,
    /// Circuit breaker on the agent's model calls.
    pub circuit_breaker: Option<Spanned<RawBreaker>>,
    /// Model to use when the primary fails for good or its breaker is open.
    pub fallback: Option<Spanned<String>>,
    /// Overall time a conversation may spend with this agent.
    pub deadline: Option<Spanned<String>>,
    /// Bulkhead: model calls in flight at once; more wait their turn.
    pub max_concurrent_calls: Option<Spanned<u32>>,
    /// Client-side rate limiter on model calls: `{ rpm = 60, burst = 10 }`.
    pub rate_limit: Option<Spanned<RawRateLimit>>,
    /// Conversations survive a restart (the agent checkpoints them every turn); the same as
    /// `durability = "checkpoint"`.
    pub persist: Option<Spanned<bool>>,
    /// What survives a restart: `"none"` (default), `"checkpoint"` or `"at-least-once"`.
    pub durability: Option<Spanned<String>>,
    /// What happens to a conversation's calls in flight when its user leaves or its deadline
    /// passes: `"let-finish"` (default) or `"cancel"`.
    pub cancellation: Option<Spanned<String>>,
    /// `tool_choice` sent to a live model: `auto` (default), `none`, `required` or a tool's name.
    pub tool_choice: Option<Spanned<String>>,
    /// What this agent sees of a conversation handed to it: `"all"` (default), `"none"` (only
    /// the latest user message) or a number N (the last N messages).
    pub handoff_history: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub behavior: Vec<Spanned<RawRule>>,
}

/// `rate_limit = { rpm = 60, burst = 10 }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    pub rpm: Option<Spanned<u32>>,
    pub burst: Option<Spanned<u32>>,
    /// Model tokens per minute (input tokens of the requests).
    pub tpm: Option<Spanned<u32>>,
}

/// `retry = { attempts = 3, backoff = "exponential", base = "500ms", max = "8s", jitter = "full",
/// honor_retry_after = true, max_retry_after = "120s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub attempts: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<String>>,
    pub base: Option<Spanned<String>>,
    pub max: Option<Spanned<String>>,
    pub jitter: Option<Spanned<String>>,
    pub honor_retry_after: Option<bool>,
    pub max_retry_after: Option<Spanned<String>>,
    /// Retry budget: retries may add at most this fraction of extra calls (plus 3).
    pub budget: Option<Spanned<f64>>,
}

/// `circuit_breaker = { failures = 5, cool_down = "30s" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    pub failures: Spanned<u32>,
    pub cool_down: Spanned<String>,
}

/// One behaviour rule of the mock model: `{ when = "...", then = {...}, p = 0.7 }` or `{ otherwise = {...} }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub when: Option<Spanned<String>>,
    pub then: Option<Spanned<RawAction>>,
    pub otherwise: Option<Spanned<RawAction>>,
    pub p: Option<Spanned<f64>>,
}

/// What the mock model answers: exactly one of `tool_call`, `tool_calls`, `answer`, `handoff`,
/// `delegate` (with `task`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub tool_call: Option<Spanned<String>>,
    pub args: Option<toml::Table>,
    pub tool_calls: Option<Vec<Spanned<RawToolCall>>>,
    pub answer: Option<Spanned<String>>,
    pub handoff: Option<Spanned<String>>,
    pub delegate: Option<Vec<Spanned<String>>>,
    pub task: Option<Spanned<String>>,
    pub tokens: Option<Spanned<u32>>,
}

/// One entry of `tool_calls = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToolCall {
    pub tool: Spanned<String>,
    pub args: Option<toml::Table>,
}

/// `[[tool]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTool {
    pub name: Spanned<String>,
    pub description: Option<String>,
    /// The arguments the tool takes, as a JSON Schema object (offered to live models).
    pub parameters: Option<Spanned<toml::Value>>,
    pub latency: Option<Spanned<RawLatency>>,
    pub output: Option<Spanned<String>>,
    pub effect: Option<Spanned<String>>,
    pub idempotent: Option<bool>,
    /// The effect's amount, an expression (`args.amount_usd`, `room.price_usd * args.nights`).
    pub amount: Option<Spanned<String>>,
    /// Whose money, which booking: a template (`{{args.account}}`).
    pub subject: Option<Spanned<String>>,
    /// Records the rules read, by name.
    pub read: Option<std::collections::BTreeMap<Spanned<String>, Spanned<RawLookup>>>,
    #[serde(default)]
    pub rules: Vec<Spanned<RawToolRule>>,
    /// Calls in progress at once; more are refused or queued (`when_busy`).
    pub max_concurrent: Option<Spanned<u32>>,
    /// Calls per unit of time (`"10/s"`), as a token bucket holding one second of calls.
    pub rate_limit: Option<Spanned<String>>,
    /// `reject` (default: the call fails with a 429) or `queue` (it waits its turn).
    pub when_busy: Option<Spanned<String>>,
    /// The tool that undoes a successful call (`refund` for `pay`), run with the same arguments
    /// when the conversation ends badly.
    pub compensate: Option<Spanned<String>>,
    /// A conversation not ended well this long after the call is taken as lost and compensated.
    pub compensate_after: Option<Spanned<String>>,
    /// A person must approve the call first (all calls, or those matching `when`).
    pub approval: Option<Spanned<RawApproval>>,
    /// The tool is an MCP server's tool, as recorded by `agentsim proxy --mcp --record`.
    pub mcp: Option<Spanned<RawMcpTool>>,
    /// Calls as a trace recorded them (`agentsim import` writes them): the nth call in a
    /// conversation answers after the nth recording of that conversation.
    #[serde(default)]
    pub recorded: Vec<Spanned<RawRecordedCall>>,
}

/// One entry of `recorded = [{ conv = 0, latency = "120ms", output = "…" }, …]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecordedCall {
    pub conv: Spanned<u32>,
    pub latency: Spanned<String>,
    /// What the call returned; absent: the tool's `output` (a failed call's error is a fault).
    pub output: Option<String>,
}

/// `mcp = { cassette = "DIR", tool = "lookup_order" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMcpTool {
    /// A recording directory (or its `cassette.jsonl`), relative to the scenario file.
    pub cassette: Spanned<String>,
    /// The server's name for the tool; the `[[tool]]`'s name when absent.
    pub tool: Option<Spanned<String>>,
}

/// `[[supervisor]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSupervisor {
    pub name: Spanned<String>,
    pub strategy: Option<Spanned<String>>,
    pub max_restarts: Option<Spanned<u32>>,
    pub within: Option<Spanned<String>>,
    /// How long a restarted child stays down; messages for it wait.
    pub restart_backoff: Option<Spanned<String>>,
    #[serde(default)]
    pub children: Vec<Spanned<String>>,
}

/// `[[traffic]]`: Poisson arrivals or a script of user messages.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTraffic {
    pub kind: Spanned<String>,
    pub to: Option<Spanned<String>>,
    pub rate: Option<Spanned<String>>,
    pub conversations: Option<Spanned<u32>>,
    #[serde(default)]
    pub messages: Vec<Spanned<String>>,
    pub start: Option<Spanned<String>>,
    #[serde(default)]
    pub script: Vec<Spanned<RawScripted>>,
    /// The `[[user]]` who goes on talking after each answer; without one, a conversation is its
    /// opening message and the answer.
    pub user: Option<Spanned<String>>,
    /// The task its conversations perform, which goal invariants name.
    pub task: Option<Spanned<String>>,
}

/// `[[user]]`: a simulated customer who talks back.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: Spanned<String>,
    /// `scripted`, `rules` or `model`.
    pub kind: Spanned<String>,
    /// Scripted: the follow-ups in order.
    #[serde(default)]
    pub script: Vec<Spanned<RawUserStep>>,
    /// Rules: first match wins, every turn.
    #[serde(default)]
    pub rules: Vec<Spanned<RawUserStep>>,
    /// Model: the `[[llm]]` the user simulator runs on.
    pub llm: Option<Spanned<String>>,
    /// Model: the persona and the goal.
    pub instructions: Option<String>,
    /// Model: the mock model's rules, answers only.
    #[serde(default)]
    pub behavior: Vec<Spanned<RawRule>>,
    /// Model: the marker that ends the dialogue resolved (default `###STOP###`).
    pub stop: Option<Spanned<String>>,
    /// Model: the marker that ends the dialogue abandoned.
    pub give_up: Option<Spanned<String>>,
    pub max_turns: Option<Spanned<u32>>,
    pub think: Option<Spanned<RawLatency>>,
}

/// A user's step: a plain string says it; a table has an optional `when` and `p`, and exactly one
/// of `say`, `insist`, `contradict`, `give_up`, `done`.
#[derive(Debug, Clone)]
pub enum RawUserStep {
    Say(String),
    Table(Box<RawUserStepTable>),
}

/// The table form of [`RawUserStep`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUserStepTable {
    pub when: Option<Spanned<String>>,
    pub p: Option<Spanned<f64>>,
    pub say: Option<Spanned<String>>,
    pub insist: Option<Spanned<bool>>,
    /// `true` for the default contradiction, or the text.
    pub contradict: Option<Spanned<toml::Value>>,
    pub give_up: Option<Spanned<bool>>,
    pub done: Option<Spanned<bool>>,
}

impl<'de> Deserialize<'de> for RawUserStep {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct StepVisitor;
        impl<'de> Visitor<'de> for StepVisitor {
            type Value = RawUserStep;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a user step: a message, or a table such as { when = \"...\", say = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawUserStep, E> {
                Ok(RawUserStep::Say(v.to_owned()))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<RawUserStep, M::Error> {
                RawUserStepTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|table| RawUserStep::Table(Box::new(table)))
            }
        }
        deserializer.deserialize_any(StepVisitor)
    }
}

/// One scripted conversation: `{ at = "2s", message = "cancel my plan" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScripted {
    pub at: Option<Spanned<String>>,
    pub message: Spanned<String>,
    /// The task this conversation performs, which goal invariants name.
    pub task: Option<Spanned<String>>,
}

/// `[[fault]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFault {
    pub name: Option<Spanned<String>>,
    pub kind: Spanned<String>,
    pub target: Option<Spanned<String>>,
    pub probability: Option<Spanned<f64>>,
    pub at: Option<Spanned<String>>,
    pub between: Option<Spanned<Vec<String>>>,
    pub on_message: Option<Spanned<u64>>,
    pub count: Option<Spanned<u32>>,
    pub after: Option<Spanned<String>>,
    pub retry_after: Option<Spanned<String>>,
    pub latency: Option<Spanned<String>>,
    pub text: Option<Spanned<String>>,
    pub tool: Option<Spanned<String>>,
    pub peer: Option<Spanned<String>>,
    pub mode: Option<Spanned<String>>,
    /// Only on messages whose text contains this (a poisoned message).
    pub message_contains: Option<Spanned<String>>,
}

/// `[[invariant]]`: exactly one of `never`, `always`, `eventually`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInvariant {
    pub name: Spanned<String>,
    pub never: Option<Spanned<RawNever>>,
    pub always: Option<Spanned<RawAlways>>,
    pub eventually: Option<Spanned<RawEventually>>,
    pub budget: Option<Spanned<RawBudget>>,
    /// The end state a task must leave the world in, checked when each of its conversations ends.
    pub goal: Option<Spanned<RawGoal>>,
    /// A failure-mode detector: `detect = "step_repetition"`.
    pub detect: Option<Spanned<String>>,
    /// The detector's threshold, where it has one.
    pub threshold: Option<Spanned<u32>>,
}

/// `never = { effect = "money_moved", more_than = 1, per = "conversation" }`, or over answers:
/// `never = { output_pii = ["credit_card"] }`, `never = { output_matches = "(?i)password" }`,
/// `never = { output_tainted_by = "tool:web_search" }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNever {
    pub effect: Option<Spanned<String>>,
    pub more_than: Option<u32>,
    pub per: Option<Spanned<String>>,
    /// Only effects or answers that descend from a source matching this glob count.
    pub tainted_by: Option<Spanned<String>>,
    pub output_pii: Option<Spanned<Vec<String>>>,
    pub output_matches: Option<Spanned<String>>,
    pub output_tainted_by: Option<Spanned<String>>,
    /// With `effect`: no single effect's amount above this.
    pub amount_more_than: Option<Spanned<toml::Value>>,
    /// With `effect`: the amounts per scope (`per`, which may be `subject`) never sum above this.
    pub total_more_than: Option<Spanned<toml::Value>>,
    /// With `effect`: no conversation ends unanswered with the effect standing (not undone by
    /// a compensation).
    pub unanswered: Option<Spanned<bool>>,
    /// No record of this table ever satisfies `when`.
    pub table: Option<Spanned<String>>,
    pub when: Option<Spanned<String>>,
}

/// `goal = { task = "change-R1", expect = [{ table = "reservations", key = "R1", fields = { flight = "UA200" } }] }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGoal {
    /// The task whose conversations it checks; every conversation when absent.
    pub task: Option<Spanned<String>>,
    pub expect: Vec<Spanned<RawExpect>>,
}

/// One expectation of a goal: the record `key` of `table` (or some record matching `where`)
/// exists with these `fields`, is `unchanged` since the run began, or is `absent`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub table: Spanned<String>,
    pub key: Option<Spanned<toml::Value>>,
    #[serde(rename = "where")]
    pub matching: Option<Spanned<String>>,
    pub fields: Option<RawValues>,
    pub unchanged: Option<Spanned<bool>>,
    pub absent: Option<Spanned<bool>>,
}

/// `budget = { cost_usd = 0.50, per = "conversation" }` (or `tokens`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub cost_usd: Option<Spanned<f64>>,
    pub tokens: Option<Spanned<u64>>,
    pub per: Option<Spanned<String>>,
}

/// `always = { cost_usd_max = 0.50, per = "conversation" }` (or `tokens_max`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlways {
    pub cost_usd_max: Option<Spanned<f64>>,
    pub tokens_max: Option<Spanned<u64>>,
    pub per: Option<Spanned<String>>,
    /// Every record of this table satisfies `check`, after every change.
    pub table: Option<Spanned<String>>,
    pub check: Option<Spanned<String>>,
}

/// `eventually = { answered = true, within = "5m" }`: every conversation gets an answer in time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventually {
    pub answered: Option<Spanned<bool>>,
    /// Every conversation ends resolved by its user.
    pub resolved: Option<Spanned<bool>>,
    /// Every conversation has this side effect.
    pub effect: Option<Spanned<String>>,
    pub within: Option<Spanned<String>>,
}
