//! The validated scenario: plain data with indices instead of names and integers instead of units.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::expr::{Expr, Operand, Template, Type};
pub use super::world::{Datum, Field, Table, TableIdx};
use crate::kernel::RngStream;

/// Index of an LLM in [`Scenario::llms`].
pub type LlmIdx = usize;
/// Index of an agent in [`Scenario::agents`].
pub type AgentIdx = usize;
/// Index of a tool in [`Scenario::tools`].
pub type ToolIdx = usize;
/// Index of a supervisor in [`Scenario::supervisors`].
pub type SupervisorIdx = usize;

/// Values computed from a scenario by the layers that know how, at most once per scenario. A
/// clone starts empty: whoever edits a copy of a scenario never sees values of the original.
#[derive(Debug, Default)]
pub struct Derived {
    /// Per agent, then per user: the tokens every model call sends besides the transcript (the
    /// system message and the tool definitions), as `llm::tokens` counts them.
    pub instruction_tokens: std::sync::OnceLock<(Vec<u32>, Vec<u32>)>,
}

impl Clone for Derived {
    fn clone(&self) -> Derived {
        Derived::default()
    }
}

/// A parsed, validated scenario. Building one never fails at run time.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Values the layers above compute from the scenario once, for every run of it to share (a
    /// sweep runs one scenario thousands of times).
    pub derived: Derived,
    pub name: String,
    pub description: String,
    /// The seed `run` uses when none is given.
    pub seed: u64,
    pub limits: Limits,
    /// Handoffs one conversation may have; the next one ends it with status `max_handoffs`
    /// (each agent's `max_turns` restarts on a handoff, so it alone cannot bound a loop).
    pub max_handoffs: u32,
    pub llms: Vec<Llm>,
    pub agents: Vec<Agent>,
    pub tools: Vec<Tool>,
    /// Supervisors; index 0 is always the root.
    pub supervisors: Vec<Supervisor>,
    pub traffic: Vec<Traffic>,
    /// Users who talk back, named by traffic.
    pub users: Vec<super::user::User>,
    pub faults: Vec<Fault>,
    /// Fault profiles (swarm testing); empty: every fault is on.
    pub profiles: Vec<Profile>,
    pub invariants: Vec<Invariant>,
    pub guardrails: Vec<super::guardrail::Guardrail>,
    /// The world's tables, which tools read and write.
    pub tables: Vec<Table>,
    /// People in the loop: reviewers who approve tool calls.
    pub humans: Vec<Human>,
    /// BLAKE3 of the file's bytes (and its data files'), hex.
    pub source_hash: String,
    /// The file's text, kept so a run directory can carry its own copy.
    pub source_text: String,
    /// The tables' data files as loaded: (path relative to the scenario, text), for the same.
    pub data_files: Vec<(String, String)>,
    /// Per traffic source: the number of its first conversation, and the key its conversations'
    /// random streams derive from (see [`Scenario::conversation_key`]).
    pub conversation_blocks: Vec<(u32, u64)>,
}

impl Scenario {
    /// A stable name per traffic source: `traffic:KIND@AGENT`, with `#N` for the Nth source of the
    /// same kind and target, so adding a source renames no other.
    pub fn traffic_names(&self) -> Vec<String> {
        crate::kernel::number_duplicates(self.traffic.iter().map(|traffic| {
            let (kind, to) = match traffic {
                Traffic::Poisson { to, .. } => ("poisson", to),
                Traffic::Script { to, .. } => ("script", to),
            };
            let first = to.first().map_or("?", |a| self.agents[*a].name.as_str());
            format!("traffic:{kind}@{first}")
        }))
    }

    /// The number of the first conversation traffic source `traffic` opens: each source has its
    /// own block of numbers, in the order the sources are listed, so that a source added at the
    /// end renumbers no conversation of the others.
    pub fn first_conversation(&self, traffic: usize) -> u32 {
        self.conversation_blocks.get(traffic).map_or(0, |b| b.0)
    }

    /// Each traffic source's block: its first conversation's number and the BLAKE3 key of its
    /// name, which [`Scenario::conversation_key`] mixes with the index.
    pub fn blocks(traffic: &[Traffic], names: &[String]) -> Vec<(u32, u64)> {
        let mut first = 0;
        traffic
            .iter()
            .zip(names)
            .map(|(source, name)| {
                let hash = blake3::Hasher::new_derive_key("agentsim 2026 conversation key v1")
                    .update(name.as_bytes())
                    .finalize();
                let key = u64::from_le_bytes(hash.as_bytes()[..8].try_into().expect("8 bytes"));
                let block = (first, key);
                first += source.conversations();
                block
            })
            .collect()
    }

    /// The traffic source that opened conversation `conv`.
    pub fn traffic_of(&self, conv: u32) -> Option<usize> {
        let at = self.conversation_blocks.partition_point(|b| b.0 <= conv);
        let source = at.checked_sub(1)?;
        let (first, _) = self.conversation_blocks[source];
        (conv - first < self.traffic[source].conversations()).then_some(source)
    }

    /// The task conversation `conv` performs, if its traffic names one.
    pub fn task_of(&self, conv: u32) -> Option<&str> {
        let source = self.traffic_of(conv)?;
        match &self.traffic[source] {
            Traffic::Poisson { task, .. } => task.as_deref(),
            Traffic::Script { tasks, .. } => {
                let index = (conv - self.first_conversation(source)) as usize;
                tasks.get(index).and_then(|t| t.as_deref())
            }
        }
    }

    /// The user who talks in conversation `conv`, if its traffic names one.
    pub fn user_of(&self, conv: u32) -> Option<super::user::UserIdx> {
        self.traffic_of(conv).and_then(|t| self.traffic[t].user())
    }

    /// Whether the front door must hear that the user of a conversation left: it talks back, or
    /// a tool's calls are undone when their conversation is abandoned.
    pub fn hears_abandon(&self, conv: u32) -> bool {
        self.user_of(conv).is_some() || self.has_compensations()
    }

    /// Whether a tool names a compensation (then conversations keep saga logs).
    pub fn has_compensations(&self) -> bool {
        self.tools.iter().any(|t| t.compensation.is_some())
    }

    /// Whether an agent cancels calls in flight (`cancellation = "cancel"`).
    pub fn has_cancellation(&self) -> bool {
        self.agents.iter().any(|a| a.cancellation == Cancellation::Cancel)
    }

    /// What a conversation's random streams are keyed by: its traffic source's name and its
    /// index there, so that neither a new source nor what happens in another conversation shifts
    /// its draws.
    pub fn conversation_key(&self, conv: u32) -> u64 {
        let at = self.conversation_blocks.partition_point(|b| b.0 <= conv);
        match at.checked_sub(1).map(|i| self.conversation_blocks[i]) {
            // splitmix64's finaliser over the source's key and the index.
            Some((first, key)) => {
                let mut z = key ^ ((conv - first) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            }
            None => conv as u64,
        }
    }
}

impl Traffic {
    /// The user who goes on talking after each answer, if any.
    pub fn user(&self) -> Option<super::user::UserIdx> {
        match self {
            Traffic::Poisson { user, .. } | Traffic::Script { user, .. } => *user,
        }
    }

    /// How many conversations the source opens.
    pub fn conversations(&self) -> u32 {
        match self {
            Traffic::Poisson { conversations, .. } => *conversations,
            Traffic::Script { items, .. } => items.len() as u32,
        }
    }
}

/// Handoffs one conversation may have when the scenario does not say (`max_handoffs`).
pub const MAX_HANDOFFS_DEFAULT: u32 = 10;

/// Bounds that end a run with outcome `limit_exceeded` instead of running forever or eating
/// memory. Each one is a `[scenario]` key and a `run` flag; the README lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events delivered (`max_events`).
    pub max_events: u64,
    /// Virtual time of the next event (`max_virtual_time`).
    pub max_virtual_time_us: u64,
    /// Events waiting in the queue (`max_queue_len`).
    pub max_queue_len: u64,
    /// Bytes of free text in one message: a model answer, a tool output, a task (`max_message_bytes`).
    pub max_message_bytes: u64,
    /// Bytes of text in one conversation's transcript; past it the conversation fails
    /// (`max_transcript_bytes`).
    pub max_transcript_bytes: u64,
    /// Restarts in the whole run, over every supervisor (`max_restarts_total`).
    pub max_restarts_total: u64,
    /// Virtual time a tool call may go unanswered when the agent set no `tool_timeout` (`max_tool_wait`).
    pub max_tool_wait_us: u64,
}

impl Limits {
    pub const DEFAULT: Limits = Limits {
        max_events: 1_000_000,
        max_virtual_time_us: 24 * 3_600 * 1_000_000,
        max_queue_len: 1_000_000,
        max_message_bytes: 1 << 20,
        max_transcript_bytes: 8 << 20,
        max_restarts_total: 1_000,
        max_tool_wait_us: 3_600 * 1_000_000,
    };
}

/// How long something takes in virtual time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    Fixed {
        latency_us: u64,
    },
    /// Log-normal with this median and 99th percentile.
    LogNormal {
        median_us: u64,
        p99_us: u64,
    },
    Uniform {
        min_us: u64,
        max_us: u64,
    },
}

impl Latency {
    /// A draw from the distribution, in microseconds.
    pub fn sample_us(&self, rng: &mut RngStream) -> u64 {
        match *self {
            Latency::Fixed { latency_us } => latency_us,
            Latency::Uniform { min_us, max_us } => rng.uniform_us(min_us, max_us),
            Latency::LogNormal { median_us, p99_us } => rng.log_normal_us(median_us, p99_us),
        }
    }
}

/// A probability, as a threshold on 53 random bits (`1 << 53` is certainty).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probability {
    pub threshold_53: u64,
}

impl Probability {
    pub const ALWAYS: Probability = Probability { threshold_53: 1 << 53 };

    /// Converts `p` in `[0, 1]`.
    pub fn from_f64(p: f64) -> Probability {
        Probability {
            threshold_53: (p * (1u64 << 53) as f64) as u64,
        }
    }

    /// True with this probability, drawn from `rng`.
    pub fn draw(self, rng: &mut RngStream) -> bool {
        rng.chance_53(self.threshold_53)
    }

    /// As a fraction, for reports.
    pub fn as_f64(self) -> f64 {
        self.threshold_53 as f64 / (1u64 << 53) as f64
    }
}

pub use crate::catalogue::prices::Price;

/// Where an LLM's price comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriceSource {
    /// `price = { ... }` in the scenario.
    Scenario,
    /// The price table's row for `model`.
    Table,
    /// Neither `price` nor `model`: a stand-in model that costs nothing.
    Unpriced,
}

/// Input tokens a prompt-cache prefix needs before the provider bills it as cached (OpenAI's
/// minimum; Anthropic's and Google's are 1,024 to 4,096 depending on the model).
pub const DEFAULT_CACHE_MIN_TOKENS: u32 = 1024;

/// A model endpoint.
#[derive(Debug, Clone)]
pub struct Llm {
    pub name: String,
    pub model: String,
    pub latency: Latency,
    pub price: Price,
    pub price_source: PriceSource,
    /// A cached prefix shorter than this is billed at the input price.
    pub cache_min_tokens: u32,
    pub context_window_tokens: u64,
    /// Provider-side rate limit: a token bucket refilled at `rpm` per minute, holding `burst`.
    pub rpm: Option<u32>,
    pub burst: u32,
    pub retry_after_header: bool,
    /// Where the answers come from: the mock, a live server, or a cassette.
    pub mode: LlmMode,
    /// The OpenAI-compatible server and request parameters (live mode; replay keys on them too).
    pub endpoint: Endpoint,
    /// The cassette a `replay` model answers from, resolved against the scenario's folder.
    pub cassette: Option<std::path::PathBuf>,
    pub cassette_match: CassetteMatch,
}

/// Where a model's answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmMode {
    /// Behaviour rules, drawn from the model's own random stream.
    Mock,
    /// An OpenAI-compatible `/v1/chat/completions` server; every call is recorded to a cassette.
    Live,
    /// Answers recorded in a cassette.
    Replay,
}

impl LlmMode {
    pub fn name(self) -> &'static str {
        match self {
            LlmMode::Mock => "mock",
            LlmMode::Live => "live",
            LlmMode::Replay => "replay",
        }
    }
}

/// How replayed requests are matched to recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CassetteMatch {
    /// Same request at the same logical position; an unexpected or unused recording is an error.
    Strict,
    /// Recordings served in order per calling agent; differences are reported as drift.
    Fifo,
}

impl CassetteMatch {
    pub fn name(self) -> &'static str {
        match self {
            CassetteMatch::Strict => "strict",
            CassetteMatch::Fifo => "fifo",
        }
    }
}

/// An OpenAI-compatible endpoint and the request parameters sent to it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Endpoint {
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1` or `http://127.0.0.1:8080/v1`.
    pub base_url: String,
    /// The environment variable that holds the API key; the key itself is never stored.
    pub api_key_env: Option<String>,
    pub temperature: Option<f64>,
    pub max_tokens: Option<u32>,
    /// Sent as `max_completion_tokens` instead of `max_tokens`.
    pub max_completion_tokens: Option<u32>,
    /// `content` of an assistant message with only tool calls: null, or `""`.
    pub assistant_content_empty: bool,
    /// Client-side timeout of one HTTP call (wall clock).
    pub timeout_us: u64,
    /// Allow plain `http://` to a host that is not loopback.
    pub allow_insecure_http: bool,
    /// Larger response bodies are cut off and treated as malformed.
    pub response_bytes_max: u64,
}

/// `tool_choice`: whether and which tool a live model must call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolChoice {
    Auto,
    None,
    Required,
    /// This tool, by name.
    Tool(String),
}

/// What an agent sees of a conversation handed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffHistory {
    /// The whole transcript.
    All,
    /// Only the latest user message.
    None,
    /// The last N messages.
    Last(u32),
}

/// What an agent keeps across a restart (`durability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Nothing: the new incarnation starts empty; its conversations are lost.
    None,
    /// Its conversations, as of the last turn it finished (`persist = true`); the message it
    /// was handling when it failed is gone, and so is the step that message carried.
    Checkpoint,
    /// The checkpoint, plus: the message in hand when it failed is delivered again, and every
    /// model and tool call outstanding in the checkpoint is issued again (the next attempt), so
    /// a tool without an idempotency key can act twice.
    AtLeastOnce,
}

impl Durability {
    /// Whether the agent checkpoints its conversations every turn.
    pub fn checkpoints(self) -> bool {
        self != Durability::None
    }
}

/// What happens to a conversation's calls in flight when its user leaves or its agent's
/// `deadline` passes (`cancellation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancellation {
    /// Nothing is told: the calls run to the end and their effects happen.
    LetFinish,
    /// The agent drops the conversation and cancels its tool calls and delegations in flight; a
    /// tool call takes effect at the end of its latency, so a cancelled one moves nothing.
    Cancel,
}

/// An agent: a model, instructions, tools it may call and agents it may hand off to.
#[derive(Debug, Clone)]
pub struct Agent {
    pub name: String,
    pub llm: Option<LlmIdx>,
    pub instructions: String,
    pub tools: Vec<ToolIdx>,
    pub handoffs: Vec<AgentIdx>,
    /// Agents it may delegate sub-tasks to (fan-out), gathering their answers.
    pub delegates: Vec<AgentIdx>,
    pub max_turns: u32,
    /// How model calls are retried; `None`: a failed call fails the conversation.
    pub retry: Option<RetryPolicy>,
    /// Per model call timeout.
    pub timeout_us: Option<u64>,
    /// Per tool call timeout.
    pub tool_timeout_us: Option<u64>,
    /// Per delegation: how long to wait for a delegate's answer.
    pub delegation_timeout_us: Option<u64>,
    /// Per delegation: how many times the task is sent again after a timeout.
    pub delegation_retries: u32,
    /// A conversation handed off must be finished (answered, or handed on) by the receiver
    /// within this; then it is handed off again, `handoff_retries` times, then it fails.
    pub handoff_timeout_us: Option<u64>,
    pub handoff_retries: u32,
    pub circuit_breaker: Option<BreakerPolicy>,
    /// Used when the primary model fails for good or its breaker is open.
    pub fallback: Option<LlmIdx>,
    /// Overall time a conversation may spend with this agent before it fails.
    pub deadline_us: Option<u64>,
    /// Bulkhead: model calls in flight at once.
    pub max_concurrent_calls: Option<u32>,
    /// Client-side limiter on model calls.
    pub rate_limit: Option<RateLimit>,
    /// What survives a restart, and what is done again.
    pub durability: Durability,
    pub cancellation: Cancellation,
    /// Rules the mock model follows for this agent, first match wins.
    /// `tool_choice` for a live model.
    pub tool_choice: ToolChoice,
    /// What the agent sees of a conversation handed to it.
    pub handoff_history: HandoffHistory,
    pub behavior: Vec<Rule>,
}

/// Backoff between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backoff {
    /// `base`, `2·base`, `4·base`, … capped at `max`.
    Exponential,
    /// Always `base`.
    Constant,
}

/// Randomisation of a backoff delay `d` (AWS Architecture Blog, "Exponential Backoff and Jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// `d`.
    None,
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`.
    Equal,
    /// Uniform in `[base, 3 × previous delay]`, capped at `max`.
    Decorrelated,
}

/// Retry policy for an agent's model calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included.
    pub attempts: u32,
    pub backoff: Backoff,
    pub base_us: u64,
    pub max_us: u64,
    pub jitter: Jitter,
    /// Wait exactly `retry-after` when the error carries one.
    pub honor_retry_after: bool,
    /// A longer `retry-after` than this gives up instead (the OpenAI SDK's rule).
    pub max_retry_after_us: u64,
    /// Retries may add at most this fraction of extra calls, plus 3 (`None`: no budget).
    pub budget: Option<f64>,
}

impl RetryPolicy {
    /// The policy as a scenario file writes it (`retry = { … }`), exact to the microsecond.
    pub fn to_toml(&self) -> String {
        let backoff = match self.backoff {
            Backoff::Exponential => "exponential",
            Backoff::Constant => "constant",
        };
        let jitter = match self.jitter {
            Jitter::None => "none",
            Jitter::Full => "full",
            Jitter::Equal => "equal",
            Jitter::Decorrelated => "decorrelated",
        };
        let budget = self.budget.map(|b| format!(", budget = {b:?}")).unwrap_or_default();
        format!(
            "{{ attempts = {}, backoff = \"{backoff}\", base = \"{}us\", max = \"{}us\", jitter = \"{jitter}\", honor_retry_after = {}, max_retry_after = \"{}us\"{budget} }}",
            self.attempts, self.base_us, self.max_us, self.honor_retry_after, self.max_retry_after_us
        )
    }
}

/// Circuit breaker on an agent's model calls: after `failures` failures in a row it opens and
/// calls fail fast (or go to the fallback) for `cool_down_us`; then one probe call decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cool_down_us: u64,
}

/// A client-side rate limiter: requests per minute (with a burst) and/or tokens per minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub rpm: Option<(u32, u32)>,
    /// Tokens per minute; the bucket holds a sixth of a minute's worth.
    pub tpm: Option<u32>,
}

/// One mock-model rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// `None` for `otherwise`.
    pub when: Option<Expr>,
    /// Chance the rule fires when its condition holds; drawn from the model's stream.
    pub probability: Option<Probability>,
    pub action: Action,
    /// Output tokens to charge for this answer, instead of the estimate from its text.
    pub output_tokens: Option<u32>,
}

/// What the mock model answers.
#[derive(Debug, Clone)]
pub enum Action {
    ToolCalls(Vec<ToolCallSpec>),
    Answer {
        text: Template,
    },
    Handoff {
        to: AgentIdx,
    },
    /// Send `task` to each agent at once; their answers come back as `results`.
    Delegate {
        to: Vec<AgentIdx>,
        task: Template,
    },
}

/// A tool call the mock model makes.
#[derive(Debug, Clone)]
pub struct ToolCallSpec {
    pub tool: ToolIdx,
    /// Arguments, sorted by name.
    pub args: Vec<(String, ArgValue)>,
}

/// A tool-call argument: a template for strings, a fixed JSON value otherwise.
#[derive(Debug, Clone)]
pub enum ArgValue {
    Text(Template),
    Json(serde_json::Value),
}

/// A tool.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    /// What the tool does, as a live model is told.
    pub description: String,
    /// The arguments it takes, a JSON Schema object; `None`: any object.
    pub parameters: Option<serde_json::Value>,
    pub latency: Latency,
    pub output: Template,
    /// Name of the side effect one call has (`money_moved`), counted by invariants.
    pub effect: Option<String>,
    /// A repeat of the same call (same conversation, same arguments) has no further effect: the
    /// operation is idempotent, or protected by an idempotency key.
    pub idempotent: bool,
    /// The effect's amount (`args.amount_usd`), read before the call's writes.
    pub amount: Option<Operand>,
    /// Whose money, which booking: the effect's subject.
    pub subject: Option<Template>,
    /// The records the rules read, looked up before they run.
    pub lookups: Vec<Lookup>,
    /// The order to look them up in: a key that reads another record's field comes after it.
    pub lookup_order: Vec<usize>,
    /// First match wins; no match: the tool's plain output and effect.
    pub rules: Vec<ToolRule>,
    /// The arguments the rules and templates read through paths (slot [`ARGS_SLOT`]), by field.
    pub args: Vec<(String, Type)>,
    /// Concurrency and rate limits of the API behind the tool.
    pub load: ToolLoad,
    /// What undoes a successful call when its conversation ends badly (a saga's step).
    pub compensation: Option<Compensation>,
    /// Who must approve a call first, and which calls.
    pub approval: Option<Approval>,
    /// An MCP server's tool, answering as recorded.
    pub mcp: Option<McpTool>,
    /// Calls a trace recorded, by conversation, in order: the nth call in a conversation takes
    /// the nth recording's latency (and output, when it has one) instead of the tool's own.
    pub recorded: BTreeMap<u32, Vec<RecordedCall>>,
}

/// One recorded call of a tool (see [`Tool::recorded`]).
#[derive(Debug, Clone)]
pub struct RecordedCall {
    pub latency_us: u64,
    /// Its result, literal text (not a template).
    pub output: Option<Arc<str>>,
}

/// A tool whose behaviour comes from an MCP cassette: the server's `tools/list` gives its
/// description and schema, its recorded `tools/call` answers its results — the answer recorded
/// with the same arguments, else the recorded answers in turn.
#[derive(Debug, Clone)]
pub struct McpTool {
    /// The cassette as the scenario names it, and where.
    pub cassette: String,
    pub span: std::ops::Range<usize>,
    /// The server's name for the tool.
    pub tool: String,
    /// Filled when the scenario file is loaded (the cassette is read relative to it).
    pub recorded: Vec<crate::scenario::mcp::RecordedCall>,
}

/// A tool's approval: `approval = { by = "reviewer", when = "args.amount_usd > 2000" }`.
#[derive(Debug, Clone)]
pub struct Approval {
    pub human: HumanIdx,
    /// Which calls need it (over the arguments and the records read); `None`: every call.
    pub when: Option<Expr>,
    /// The condition as written, for messages.
    pub when_text: Option<String>,
}

/// Index of a `[[human]]`.
pub type HumanIdx = usize;

/// A reviewer (`[[human]]`): takes up approval requests first come first served, `capacity` at
/// a time; each review takes a latency and approves with a chance; a request may be missed.
#[derive(Debug, Clone)]
pub struct Human {
    pub name: String,
    pub latency: Latency,
    pub approve: Probability,
    /// The chance a request is never taken up (it times out).
    pub miss: Probability,
    pub timeout_us: u64,
    pub on_timeout: OnTimeout,
    pub capacity: u32,
}

/// What an approval request that times out does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnTimeout {
    /// The call fails with `error: 408 approval timed out`.
    Reject,
    /// The call goes ahead as if approved.
    Approve,
}

/// A tool's compensating action: `compensate = "refund"`, `compensate_after = "10m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compensation {
    /// The tool called, with the original call's arguments.
    pub tool: ToolIdx,
    /// A conversation not ended this long after the call is taken as lost and compensated;
    /// `None`: only endings the front door sees (failed, abandoned …) compensate.
    pub after_us: Option<u64>,
}

/// Path slot of a tool call's arguments; lookup `i` is slot `i + 1`.
pub const ARGS_SLOT: u32 = 0;
/// Path field of a lookup's `exists`.
pub const EXISTS_FIELD: u32 = u32::MAX;

/// A record a tool reads: `room = { table = "rooms", key = "{{args.room}}" }`.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub name: String,
    pub table: TableIdx,
    pub key: Template,
}

/// One of a tool's rules over its arguments and the world.
#[derive(Debug, Clone)]
pub struct ToolRule {
    pub when: Option<Expr>,
    pub p: Option<Probability>,
    /// The call fails with this error, changing nothing.
    pub fail: Option<Template>,
    pub updates: Vec<FieldWrite>,
    pub inserts: Vec<Insert>,
    /// Lookups whose records are deleted.
    pub deletes: Vec<usize>,
    pub output: Option<Template>,
}

/// A new value for a field of a looked-up record.
#[derive(Debug, Clone)]
pub struct FieldWrite {
    pub lookup: usize,
    pub field: usize,
    pub value: WorldValue,
}

/// A record a rule inserts: a value per field it names (the others start at zero).
#[derive(Debug, Clone)]
pub struct Insert {
    pub table: TableIdx,
    pub values: Vec<(usize, WorldValue)>,
}

/// How a rule computes a field's new value.
#[derive(Debug, Clone)]
pub enum WorldValue {
    Const(Datum),
    /// A string field's template.
    Text(Template),
    /// A number or true/false field's expression.
    Expr(Operand),
}

/// Limits of the API behind a tool.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ToolLoad {
    pub max_concurrent: Option<u32>,
    /// Calls a minute, from `rate_limit`.
    pub per_minute: Option<u32>,
    /// Busy calls wait their turn instead of failing with a 429.
    pub queue: bool,
}

/// The kind of a simulated actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ActorKind {
    Agent,
    Guardrail,
    Tool,
    Llm,
    User,
    Supervisor,
    Human,
}

impl ActorKind {
    /// The prefix of a logical id (`agent` in `agent:triage`).
    pub fn prefix(self) -> &'static str {
        match self {
            ActorKind::Agent => "agent",
            ActorKind::Guardrail => "guardrail",
            ActorKind::Tool => "tool",
            ActorKind::Llm => "llm",
            ActorKind::User => "user",
            ActorKind::Supervisor => "supervisor",
            ActorKind::Human => "human",
        }
    }
}

/// OTP restart strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    OneForOne,
    OneForAll,
    RestForOne,
}

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

/// A child of a supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Child {
    Actor { kind: ActorKind, index: usize },
    Supervisor(SupervisorIdx),
}

/// A supervisor over a group of actors.
#[derive(Debug, Clone)]
pub struct Supervisor {
    pub name: String,
    pub strategy: Strategy,
    pub max_restarts: u32,
    pub within_us: u64,
    /// How long a restarted child stays down; messages for it wait until it is back.
    pub restart_backoff_us: u64,
    pub children: Vec<Child>,
    pub parent: Option<SupervisorIdx>,
}

/// Where conversations come from.
#[derive(Debug, Clone)]
pub enum Traffic {
    /// Conversations arriving as a Poisson process.
    Poisson {
        /// Agents that receive the conversations, in turn (several for a replicated agent).
        to: Vec<AgentIdx>,
        rate_milli_per_hour: u64,
        conversations: u32,
        /// Opening messages, drawn uniformly.
        messages: Vec<String>,
        start_us: u64,
        /// The user who goes on after each answer.
        user: Option<super::user::UserIdx>,
        /// The task its conversations perform.
        task: Option<String>,
    },
    /// Conversations at fixed times.
    Script {
        to: Vec<AgentIdx>,
        items: Vec<(u64, String)>,
        user: Option<super::user::UserIdx>,
        /// Per item, the task it performs.
        tasks: Vec<Option<String>>,
    },
}

pub use crate::catalogue::faults::FaultKind;

/// When a fault fires.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trigger {
    pub probability: Option<Probability>,
    /// Not before this virtual time.
    pub at_us: Option<u64>,
    /// On the Nth message the target receives (from 1).
    pub on_message: Option<u64>,
    /// At most this many times; unlimited when `None`.
    pub count: Option<u32>,
    /// Only within `[from, to)` of virtual time.
    pub between_us: Option<(u64, u64)>,
    /// Only once this fault (an index into the scenario's faults) has fired.
    pub after: Option<usize>,
    /// Only on messages whose text contains this.
    pub message_contains: Option<String>,
}

/// Parameters of a fault; which ones apply depends on the kind (see the catalogue).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultParams {
    pub retry_after_us: Option<u64>,
    pub latency_us: Option<u64>,
    pub text: Option<String>,
    pub tool: Option<String>,
    /// `network.partition`: the other side.
    pub peer: Option<String>,
    /// `llm.malformed_tool_args`: how the arguments are broken.
    pub mode: Option<MalformedMode>,
}

/// How `llm.malformed_tool_args` breaks a call's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MalformedMode {
    /// Cut in the middle: not JSON.
    Truncated,
    /// Valid JSON followed by junk: not JSON.
    TrailingGarbage,
    /// Valid JSON, but every value has the wrong type.
    WrongType,
    /// Valid JSON without its first field.
    MissingField,
}

/// A planned or probabilistic fault.
#[derive(Debug, Clone)]
pub struct Fault {
    /// The name other faults use in `after`; `KIND@TARGET` when not given.
    pub name: String,
    pub kind: FaultKind,
    /// Glob over logical ids (`agent:*`).
    pub target: String,
    pub trigger: Trigger,
    pub params: FaultParams,
}

/// A fault profile: which faults are on, and how much more (or less) often they fire.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    pub weight: u32,
    /// Globs over fault names.
    pub faults: Vec<String>,
    pub scale: f64,
}

/// The scope an invariant counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    Conversation,
    Run,
    /// Per effect subject (whose money, which booking): amount totals only.
    Subject,
}

impl Per {
    pub fn name(self) -> &'static str {
        match self {
            Per::Conversation => "conversation",
            Per::Run => "run",
            Per::Subject => "subject",
        }
    }
}

/// A failure mode seen in real multi-agent systems (after the MAST taxonomy), detected from
/// the run's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detector {
    /// The same tool with the same arguments `threshold` times in a conversation.
    StepRepetition,
    /// A tool returned an error and the agent answered without another tool call.
    IgnoredToolError,
    /// An agent's turn count went backwards in a conversation it kept: its memory was reset.
    ConversationReset,
    /// An agent with tools answered without a single tool result.
    PrematureTermination,
    /// An answer built on a tool output or memory that a fault corrupted (partial, stale, empty,
    /// schema drift, injected, mutated, truncated).
    UnverifiedAnswer,
    /// A handoff arrived without the conversation (no text, no context).
    LostHandoffContext,
    /// An agent called a tool it was not given.
    DisobeyedRole,
}

impl Detector {
    pub const ALL: [Detector; 7] = [
        Detector::StepRepetition,
        Detector::IgnoredToolError,
        Detector::ConversationReset,
        Detector::PrematureTermination,
        Detector::UnverifiedAnswer,
        Detector::LostHandoffContext,
        Detector::DisobeyedRole,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Detector::StepRepetition => "step_repetition",
            Detector::IgnoredToolError => "ignored_tool_error",
            Detector::ConversationReset => "conversation_reset",
            Detector::PrematureTermination => "premature_termination",
            Detector::UnverifiedAnswer => "unverified_answer",
            Detector::LostHandoffContext => "lost_handoff_context",
            Detector::DisobeyedRole => "disobeyed_role",
        }
    }
}

/// What a `never` invariant looks for in a user-visible answer.
#[derive(Debug, Clone)]
pub enum OutputTest {
    /// Personal data of these kinds.
    Pii(Vec<super::guardrail::PiiEntity>),
    /// Text matching this regular expression.
    Matches(regex::Regex),
    /// Any answer (with `tainted_by`: any answer that descends from the source).
    Any,
}

/// A property checked during the run.
#[derive(Debug, Clone)]
pub enum Check {
    /// The side effect happens at most `more_than` times per scope (with `tainted_by`: counting
    /// only effects that descend from a source matching the glob, e.g. `fault:*`).
    NeverEffect {
        effect: String,
        more_than: u32,
        per: Per,
        tainted_by: Option<String>,
    },
    /// No user-visible answer passes the test (and descends from `tainted_by`, when given).
    NeverOutput {
        test: OutputTest,
        tainted_by: Option<String>,
    },
    /// No conversation ends without an answer (failed, lost, abandoned …) while the side effect
    /// stands in it: it happened more often than compensations undid it.
    NeverStranded { effect: String },
    /// Every conversation has the side effect, within a virtual time if given.
    EventuallyEffect { effect: String, within_us: Option<u64> },
    /// A failure-mode detector must never fire.
    Detect { detector: Detector, threshold: u32 },
    /// Cost stays at or under the budget per scope.
    CostMax { cost_pusd_max: u64, per: Per },
    /// Tokens stay at or under the budget per scope.
    TokensMax { tokens_max: u64, per: Per },
    /// Every conversation is answered, within a virtual time if given.
    EventuallyAnswered { within_us: Option<u64> },
    /// Every conversation ends resolved by its user (who said so), within a virtual time if given.
    EventuallyResolved { within_us: Option<u64> },
    /// No single effect's amount is above the bound (decimal, in millionths).
    NeverAmount { effect: String, more_than: i64 },
    /// The effect's amounts per scope never sum above the bound (decimal, in millionths).
    TotalMax { effect: String, more_than: i64, per: Per },
    /// Every record of the table satisfies the check (`text`), after every change.
    WorldAlways { table: TableIdx, check: Expr, text: String },
    /// No record of the table ever satisfies the condition (`text`).
    WorldNever { table: TableIdx, when: Expr, text: String },
    /// When a conversation of the task (every conversation, without one) ends, the world is in
    /// the expected state.
    Goal { task: Option<String>, expect: Vec<Expect> },
}

/// One expectation of a goal.
#[derive(Debug, Clone)]
pub struct Expect {
    pub table: TableIdx,
    pub target: ExpectTarget,
    pub what: ExpectWhat,
}

/// Which record an expectation is about.
#[derive(Debug, Clone)]
pub enum ExpectTarget {
    Key(Datum),
    /// A key that names the conversation: `"B-{{conversation}}"`.
    KeyTemplate(Template),
    /// Some record satisfying the condition (`text`).
    Matching(Expr, String),
}

/// What an expectation expects of its record.
#[derive(Debug, Clone)]
pub enum ExpectWhat {
    /// It exists, with these values (the fields not named may be anything).
    Fields(Vec<(usize, Datum)>),
    /// It is as it was when the run began (or still does not exist).
    Unchanged,
    /// It does not exist.
    Absent,
}

/// A named property.
#[derive(Debug, Clone)]
pub struct Invariant {
    pub name: String,
    pub check: Check,
}
