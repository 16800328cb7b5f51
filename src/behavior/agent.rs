//! The agent: a tool loop over its model. It holds each conversation's transcript, sends it to its
//! LLM, runs the tool calls the model returns through tool actors (or fans tasks out to other
//! agents and gathers their answers), appends the results, and then hands the transcript off,
//! answers, or stops at `max_turns`.
//!
//! Processing controls live here too: retries of failed model calls (backoff, jitter,
//! `retry-after`), per-call timeouts for the model and for tools, and the framework's answer to a
//! tool call it cannot run (unknown tool, arguments that do not parse).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bucket::TokenBucket;
use super::policy::{retry_delay_us, within_retry_budget, Breaker};
use super::route::GuardRoute;
use crate::kernel::{ActorIdx, Behavior, HandlerError, RngStream, StreamFamily};
use crate::llm::live::HANDOFF_TOOL_PREFIX;
use crate::llm::{mock, tokens};
use crate::protocol::transcript::{Role, REPLY_PRIMING_TOKENS};
use crate::protocol::{
    AgentMsg, AnswerStatus, Caller, ChatCall, ChatMessage, Checkpoint, ConvId, Directory, Effect, FinishReason,
    GuardContext, Injection, LlmMsg, LlmRequest, ModelAnswer, ModelReply, Origin, Payload, ProviderError, ReplyTo,
    ToolCall, ToolRef, Transcript, TurnContext, Usage, UserMsg,
};
use crate::scenario::guardrail::Stage;
use crate::scenario::{AgentIdx, Durability, HandoffHistory, LlmIdx, Scenario, ToolIdx};

mod cancel;
mod handoff;
mod recovery;
mod steps;
mod suffer;

/// One conversation as this agent sees it, boxed: it is taken out of the agent's map and put
/// back on every step, and a map of a few hundred bytes per entry would make even a one-entry
/// map (each of a 10,000-agent swarm's agents) allocate a node of eleven.
type Conversation = Box<ConversationState>;

#[derive(Debug, Clone)]
struct ConversationState {
    /// Every message so far, the model's input next turn.
    transcript: Transcript,
    origin: Origin,
    reply_to: ReplyTo,
    turn: u32,
    tool_calls: u32,
    /// The number the next tool call gets (calls are numbered per conversation).
    next_call_id: u32,
    /// The calls of the last step (tool calls, or delegations) with their results as they come
    /// in; the results join the transcript in call order once all are in.
    pending: Vec<Pending>,
    last_tool: Arc<str>,
    last_tool_output: Arc<str>,
    delegations: u32,
    results: String,
    /// Numbers this conversation's model calls; a reply with another number is stale.
    call_seq: u32,
    /// The model call being waited for.
    awaiting: Option<u32>,
    /// A model call made again after a restart: the earlier call's answer is still welcome.
    superseded: Option<u32>,
    /// Attempt number of the current model call, from 1.
    attempt: u32,
    /// The last backoff delay (for decorrelated jitter).
    previous_delay_us: u64,
    /// The model the current call went to.
    current_llm: Option<LlmIdx>,
    /// The primary model failed for good; this step uses the fallback.
    on_fallback: bool,
    /// When this agent took the conversation (for its `deadline`).
    started_us: u64,
    /// Handoffs the conversation had before it reached this agent.
    handoffs: u32,
    /// A guardrail's feedback when it asked for another answer.
    feedback: Arc<str>,
}

/// Texts shared by every conversation of an agent.
struct SharedTexts {
    empty: Arc<str>,
    no_arguments: Arc<str>,
    /// Per handoff target: the transfer call's name and its result.
    handoffs: BTreeMap<AgentIdx, (Arc<str>, Arc<str>)>,
    /// Per delegate: the delegation call's name.
    delegates: BTreeMap<AgentIdx, Arc<str>>,
    /// Per tool of the scenario: its name, for the calls in the transcript.
    tools: BTreeMap<ToolIdx, Arc<str>>,
}

impl Default for SharedTexts {
    fn default() -> SharedTexts {
        SharedTexts {
            empty: Arc::from(""),
            no_arguments: Arc::from("{}"),
            handoffs: BTreeMap::new(),
            delegates: BTreeMap::new(),
            tools: BTreeMap::new(),
        }
    }
}

/// One call of a step still out, or back.
#[derive(Debug, Clone)]
struct Pending {
    /// The tool call's number, or `None` for a delegation.
    call_id: Option<u32>,
    /// The delegate, for a delegation.
    delegate: Option<AgentIdx>,
    /// The tool's name (or the delegate's), for messages.
    name: Arc<str>,
    wire_id: Arc<str>,
    output: Option<Arc<str>>,
    /// A delegation's task (sent again after a timeout) and its attempt, from 1.
    task: Option<Arc<str>>,
    attempt: u32,
    /// The tool call, kept to issue it again after a restart (`durability = "at-least-once"`).
    call: Option<ToolCall>,
}

/// What a conversation restored from a checkpoint still had outstanding when the agent failed
/// (`durability = "at-least-once"`): issued again on `Resume`, unless its answer came first.
#[derive(Debug, Default)]
struct Outstanding {
    /// The model call being waited for.
    model_call: Option<u32>,
    /// The tool calls with no result yet.
    tool_calls: Vec<u32>,
}

/// The agent's state: its conversations in progress. Lost on restart.
pub struct AgentBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    agent: AgentIdx,
    /// Tokens of the system message and the tool definitions, sent with every call.
    instruction_tokens: u32,
    conversations: BTreeMap<ConvId, Conversation>,
    /// Conversations handed to this agent by one that watches its handoffs, which it finished:
    /// the handoff count they came with, so a handoff made again is recognised.
    finished_handoffs: BTreeMap<ConvId, u32>,
    /// Conversations this agent handed off and watches until the receiver finishes them
    /// (`handoff_timeout`).
    handed: BTreeMap<ConvId, handoff::Handed>,
    /// The agent's own streams, one per conversation: scripted rules and retry jitter draw from
    /// them.
    family: StreamFamily,
    streams: BTreeMap<ConvId, RngStream>,
    /// Virtual time of the turn being handled.
    now_us: u64,
    breaker: Breaker,
    /// Conversations waiting for a free slot of the bulkhead, in arrival order.
    waiting: std::collections::VecDeque<ConvId>,
    /// The client-side rate limiters on model calls: requests, and tokens.
    limiter: Option<TokenBucket>,
    token_limiter: Option<TokenBucket>,
    /// Texts every conversation uses, allocated once.
    texts: SharedTexts,
    /// First attempts and retries of model calls, for the retry budget.
    first_attempts: u64,
    retries: u64,
    /// Restored conversations' calls to issue again (`durability = "at-least-once"`).
    outstanding: BTreeMap<ConvId, Outstanding>,
}

/// What came back from one outstanding step.
enum StepResult {
    Tool { call_id: u32, output: Arc<str> },
    Delegate { from: AgentIdx, text: Arc<str> },
}

impl AgentBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        agent: AgentIdx,
        seed: u64,
        incarnation: u32,
        restored: Option<Checkpoint>,
    ) -> AgentBehavior {
        let instruction_tokens = tokens::instruction_tokens(&scenario, Caller::Agent(agent));
        let limits = scenario.agents[agent].rate_limit;
        let limiter = limits
            .and_then(|l| l.rpm)
            .map(|(rpm, burst)| TokenBucket::new(rpm, burst));
        let token_limiter = limits
            .and_then(|l| l.tpm)
            .map(|tpm| TokenBucket::new(tpm, (tpm / 6).max(1)));
        let conversations = restored
            .and_then(|c| c.state.downcast_ref::<BTreeMap<ConvId, Conversation>>().cloned())
            .unwrap_or_default();
        let outstanding = match scenario.agents[agent].durability {
            Durability::AtLeastOnce => conversations
                .iter()
                .filter(|(_, state)| Outstanding::any(state))
                .map(|(conv, state)| (*conv, Outstanding::of(state)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let family = StreamFamily::new(seed, &format!("agent:{}#{incarnation}", scenario.agents[agent].name));
        AgentBehavior {
            scenario,
            directory,
            agent,
            instruction_tokens,
            conversations,
            family,
            streams: BTreeMap::new(),
            now_us: 0,
            breaker: Breaker::Closed { failures: 0 },
            waiting: Default::default(),
            limiter,
            token_limiter,
            first_attempts: 0,
            retries: 0,
            texts: SharedTexts::default(),
            outstanding,
            handed: BTreeMap::new(),
            finished_handoffs: BTreeMap::new(),
        }
    }

    /// Takes the next step of a conversation: asks the model; or, for an agent without a model,
    /// follows its rules in place (a scripted agent) or answers with what came in (a relay).
    fn step(&mut self, conv: ConvId, mut state: Conversation, effects: &mut Vec<Effect>) {
        let scenario = self.scenario.clone();
        let spec = &scenario.agents[self.agent];
        let limit = scenario.limits.max_transcript_bytes;
        let bytes = state.transcript.bytes();
        if bytes > limit {
            let text = Arc::from(format!(
                "error: the transcript holds {bytes} bytes, over max_transcript_bytes ({limit})"
            ));
            self.answer(conv, &mut state, text, AnswerStatus::Failed, effects);
            return;
        }
        let Some(llm) = spec.llm else {
            if spec.behavior.is_empty() {
                let text = Arc::from(state.transcript.last_user());
                self.answer(conv, &mut state, text, AnswerStatus::Answered, effects);
                return;
            }
            let request = self.request(conv, &state);
            let mut next_call_id = state.next_call_id;
            let scenario = self.scenario.clone();
            let (answer, _) = mock::decide(&scenario, &request, self.stream(conv), &mut next_call_id);
            // The request shares the transcript: dropped before the reply joins it, so that the
            // push appends in place instead of copying the whole conversation.
            drop(request);
            state.call_seq += 1;
            state.awaiting = Some(state.call_seq);
            let reply = ModelReply {
                call_seq: state.call_seq,
                answer,
                finish_reason: crate::protocol::FinishReason::Stop,
                usage: Usage::default(),
                latency_us: 0,
            };
            self.conversations.insert(conv, state);
            self.on_reply(conv, reply, effects);
            return;
        };
        if let Some(max) = spec.max_concurrent_calls {
            // Bulkhead: wait for a free slot.
            let in_flight = self.conversations.values().filter(|c| c.awaiting.is_some()).count();
            if in_flight >= max as usize {
                self.waiting.push_back(conv);
                self.conversations.insert(conv, state);
                return;
            }
        }
        // Client-side rate limiters: wait for a token, without spending an attempt.
        if let Some(wait_us) = self.limiter_wait(&state) {
            effects.push(self.timer(wait_us, AgentMsg::RetryDue { conv }));
            self.conversations.insert(conv, state);
            return;
        }
        if state.attempt == 1 {
            self.first_attempts += 1;
        }
        state.call_seq += 1;
        state.awaiting = Some(state.call_seq);
        let target = match (self.breaker_allows(), spec.fallback) {
            _ if state.on_fallback => spec.fallback.unwrap_or(llm),
            (true, _) => llm,
            (false, Some(fallback)) => fallback,
            (false, None) => {
                let Breaker::Open { until_us } = self.breaker else {
                    unreachable!("refused only when open")
                };
                let retry_after_us = until_us - self.now_us;
                effects.push(self.timer(
                    0,
                    AgentMsg::CallRejected {
                        conv,
                        call_seq: state.call_seq,
                        retry_after_us,
                    },
                ));
                state.current_llm = Some(llm);
                self.conversations.insert(conv, state);
                return;
            }
        };
        state.current_llm = Some(target);
        let request = self.request(conv, &state);
        GuardRoute {
            stage: Stage::ModelCall,
            conv,
            agent: self.agent,
            tool: None,
            dest: self.directory.llm(target),
        }
        .send(
            &self.scenario,
            &self.directory,
            Payload::Llm(LlmMsg::Complete(Box::new(request))),
            None,
            0,
            effects,
        );
        if let Some(timeout_us) = spec.timeout_us {
            effects.push(self.timer(
                timeout_us,
                AgentMsg::CallTimeout {
                    conv,
                    call_seq: state.call_seq,
                },
            ));
        }
        self.conversations.insert(conv, state);
    }

    /// This conversation's random stream.
    fn stream(&mut self, conv: ConvId) -> &mut RngStream {
        let family = &self.family;
        self.streams
            .entry(conv)
            .or_insert_with(|| family.member(self.scenario.conversation_key(conv)))
    }

    /// What this agent sees of a transcript handed to it (`handoff_history`).
    fn received(&self, mut history: Transcript) -> Transcript {
        match self.scenario.agents[self.agent].handoff_history {
            HandoffHistory::All => {}
            // N messages of the conversation, then the transfer that brought it here: counted
            // in N, the transfer's own call and result would leave no room for the customer.
            HandoffHistory::Last(n) => history.keep_last_before(n as usize, transfer_messages(&history)),
            HandoffHistory::None => {
                let last_user = Arc::from(history.last_user());
                history = Transcript::new();
                history.push(ChatMessage::user(last_user));
            }
        }
        history
    }

    /// A conversation (or a sub-task, or a revision a guardrail asked for) starts here: the user's
    /// message or the task joins the transcript; a handoff brings the transcript with it.
    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        conv: ConvId,
        text: Arc<str>,
        origin: Origin,
        reply_to: ReplyTo,
        (history, handoffs): (Transcript, u32),
        feedback: Arc<str>,
        effects: &mut Vec<Effect>,
    ) {
        let mut transcript = match origin {
            Origin::Handoff(_) => self.received(history),
            Origin::User | Origin::Delegation(_) => history,
        };
        match (origin, feedback.is_empty()) {
            (_, false) => transcript.push(ChatMessage::user(feedback.clone())),
            (Origin::User | Origin::Delegation(_), true) => transcript.push(ChatMessage::user(text)),
            (Origin::Handoff(_), true) => {}
        }
        let next_call_id = transcript.calls_made();
        let state = Box::new(ConversationState {
            transcript,
            origin,
            reply_to,
            turn: 1,
            tool_calls: 0,
            next_call_id,
            pending: Vec::new(),
            last_tool: Arc::from(""),
            last_tool_output: Arc::from(""),
            delegations: 0,
            results: String::new(),
            call_seq: 0,
            awaiting: None,
            superseded: None,
            attempt: 1,
            previous_delay_us: 0,
            current_llm: None,
            on_fallback: false,
            started_us: self.now_us,
            feedback,
            handoffs,
        });
        if let Some(deadline_us) = self.scenario.agents[self.agent].deadline_us {
            let started_us = self.now_us;
            effects.push(self.timer(deadline_us, AgentMsg::DeadlineDue { conv, started_us }));
        }
        self.step(conv, state, effects);
    }

    /// An answer a guardrail decided on: it goes straight to whoever waits for it.
    fn answer_past_guardrails(
        &mut self,
        conv: ConvId,
        state: &Conversation,
        text: Arc<str>,
        status: AnswerStatus,
        effects: &mut Vec<Effect>,
    ) {
        self.finished(conv, (state.origin, state.handoffs), effects);
        let (to, payload) = self.answer_for(conv, state, text, status);
        effects.push(Effect::Send {
            to,
            delay_us: 0,
            payload,
        });
    }

    /// Where a final answer goes, and as what: to the user (with the conversation so far, for
    /// the user's next turn), or to the delegating agent.
    fn answer_for(
        &self,
        conv: ConvId,
        state: &Conversation,
        text: Arc<str>,
        status: AnswerStatus,
    ) -> (ActorIdx, Payload) {
        match state.reply_to {
            ReplyTo::User => (
                Directory::USER,
                Payload::User(UserMsg::Answer {
                    conv,
                    text,
                    status,
                    from: self.agent,
                    history: state.transcript.clone(),
                }),
            ),
            ReplyTo::Agent(agent) => (
                self.directory.agent(agent),
                Payload::Agent(AgentMsg::DelegateResult {
                    conv,
                    from_agent: self.agent,
                    text,
                }),
            ),
        }
    }

    /// Whether the breaker lets a call through to the primary model now (an expired open breaker
    /// half-opens and lets a probe through).
    fn breaker_allows(&mut self) -> bool {
        self.scenario.agents[self.agent].circuit_breaker.is_none() || self.breaker.allows(self.now_us)
    }

    /// Records the outcome of a call to the primary model.
    fn breaker_record(&mut self, success: bool) {
        if let Some(policy) = self.scenario.agents[self.agent].circuit_breaker {
            self.breaker = self.breaker.record(&policy, success, self.now_us);
        }
    }

    fn timer(&self, delay_us: u64, msg: AgentMsg) -> Effect {
        Effect::Send {
            to: self.directory.agent(self.agent),
            delay_us,
            payload: Payload::Agent(msg),
        }
    }

    /// Tokens of a call with this transcript: instructions, tool definitions, messages.
    fn input_tokens(&self, transcript: &Transcript) -> u32 {
        self.instruction_tokens
            .saturating_add(transcript.tokens())
            .saturating_add(REPLY_PRIMING_TOKENS)
    }

    fn request(&self, conv: ConvId, state: &Conversation) -> LlmRequest {
        LlmRequest {
            conv,
            caller: Caller::Agent(self.agent),
            call_seq: state.call_seq,
            attempt: state.attempt,
            turn: state.turn,
            tool_calls: state.tool_calls,
            input_tokens: self.input_tokens(&state.transcript),
            instruction_tokens: self.instruction_tokens,
            transcript: state.transcript.clone(),
            next_call_id: state.next_call_id,
            origin: state.origin,
            last_tool: state.last_tool.clone(),
            last_tool_output: state.last_tool_output.clone(),
            delegations: state.delegations,
            results: Arc::from(state.results.as_str()),
            feedback: state.feedback.clone(),
            via: Vec::new(),
        }
    }

    /// The final answer, to the user (through the output guardrails) or to the delegating agent.
    /// An answer the model did not write (an error, a limit) joins the transcript too, so that the
    /// output guardrails see what the user will.
    fn answer(
        &mut self,
        conv: ConvId,
        state: &mut Conversation,
        text: Arc<str>,
        status: AnswerStatus,
        effects: &mut Vec<Effect>,
    ) {
        self.finished(conv, (state.origin, state.handoffs), effects);
        if state.reply_to != ReplyTo::User {
            let (to, payload) = self.answer_for(conv, state, text, status);
            effects.push(Effect::Send {
                to,
                delay_us: 0,
                payload,
            });
            return;
        }
        if status != AnswerStatus::Answered && status != AnswerStatus::Truncated {
            state.transcript.push(ChatMessage::assistant(text.clone()));
        }
        let (to, payload) = self.answer_for(conv, state, text, status);
        let context = GuardContext {
            transcript: state.transcript.clone(),
            origin: state.origin,
            reply_to: state.reply_to,
            turn: state.turn,
            tool_calls: state.tool_calls,
        };
        GuardRoute {
            stage: Stage::Output,
            conv,
            agent: self.agent,
            tool: None,
            dest: to,
        }
        .send(&self.scenario, &self.directory, payload, Some(context), 0, effects);
    }

    /// Hands the conversation (or a sub-task of it) to `to`, through the handoff guardrails.
    fn hand_over(&self, conv: ConvId, to: AgentIdx, start: AgentMsg, effects: &mut Vec<Effect>) {
        GuardRoute {
            stage: Stage::Handoff,
            conv,
            agent: self.agent,
            tool: None,
            dest: self.directory.agent(to),
        }
        .send(&self.scenario, &self.directory, Payload::Agent(start), None, 0, effects);
    }

    /// A called tool's name as the transcript keeps it: made once per tool of the scenario.
    fn tool_name(&mut self, tool: &ToolRef) -> Arc<str> {
        match tool {
            ToolRef::Known(t) => {
                let scenario = &self.scenario;
                let name = self.texts.tools.entry(*t);
                name.or_insert_with(|| Arc::from(scenario.tools[*t].name.as_str()))
                    .clone()
            }
            ToolRef::Unknown(name) => name.clone(),
        }
    }

    fn on_reply(&mut self, conv: ConvId, reply: ModelReply, effects: &mut Vec<Effect>) {
        // An answer to a call the agent already gave up on (timed out) is dropped, though billed;
        // after a restart, the answer to the call made before it is as good as the new call's.
        let call_seq = match self.conversations.get(&conv) {
            Some(s) if s.superseded == Some(reply.call_seq) => s.awaiting.unwrap_or(reply.call_seq),
            _ => reply.call_seq,
        };
        let Some(mut state) = self.take_awaiting(conv, call_seq) else {
            return effects.push(Effect::Stale {
                conv,
                kind: "model_reply",
            });
        };
        state.superseded = None;
        let primary = state.current_llm == self.scenario.agents[self.agent].llm && !state.on_fallback;
        if let ModelAnswer::Error(error) = reply.answer {
            if primary {
                self.breaker_record(false);
            }
            self.on_error(conv, state, *error, effects);
            return;
        }
        if primary {
            self.breaker_record(true);
        }
        state.on_fallback = false;
        state.attempt = 1;
        state.previous_delay_us = 0;
        match reply.answer {
            ModelAnswer::ToolCalls(calls) => {
                let next = calls.iter().map(|c| c.id + 1).max().unwrap_or(0);
                state.next_call_id = state.next_call_id.max(next);
                let wire: Vec<ChatCall> = calls
                    .iter()
                    .map(|c| ChatCall {
                        id: c.wire_id.clone(),
                        name: self.tool_name(&c.tool),
                        arguments: c.arguments.clone(),
                    })
                    .collect();
                state.transcript.push(ChatMessage::calls(wire));
                self.call_tools(conv, state, calls, effects)
            }
            ModelAnswer::Delegate(tasks) => self.delegate(conv, state, tasks, effects),
            ModelAnswer::Text(text) => {
                state.transcript.push(ChatMessage::assistant(text.clone()));
                let status = match reply.finish_reason {
                    // Cut off at the token limit: not an answer the user can rely on.
                    FinishReason::Length => AnswerStatus::Truncated,
                    _ => AnswerStatus::Answered,
                };
                self.answer(conv, &mut state, text, status, effects)
            }
            ModelAnswer::Handoff { to, call_id } => self.hand_off(conv, state, to, call_id, effects),
            ModelAnswer::Error(_) => unreachable!("handled above"),
        }
    }

    /// A model call failed: retry after a backoff if the policy allows, else fail the conversation.
    fn on_error(&mut self, conv: ConvId, mut state: Conversation, error: ProviderError, effects: &mut Vec<Effect>) {
        let scenario = self.scenario.clone();
        let spec = &scenario.agents[self.agent];
        let policy = spec.retry;
        // Retry budget: retries may add at most `budget` × first attempts, plus 3.
        let within_budget = policy
            .and_then(|p| p.budget)
            .is_none_or(|budget| within_retry_budget(budget, self.retries, self.first_attempts));
        let delay_us = match policy {
            Some(policy) if error.retryable() && state.attempt < policy.attempts && within_budget => retry_delay_us(
                &policy,
                &error,
                state.attempt,
                state.previous_delay_us,
                self.stream(conv),
            ),
            _ => None,
        };
        match delay_us {
            Some(delay_us) => {
                self.retries += 1;
                state.attempt += 1;
                state.previous_delay_us = delay_us;
                effects.push(self.timer(delay_us, AgentMsg::RetryDue { conv }));
                self.conversations.insert(conv, state);
            }
            None if spec.fallback.is_some() && !state.on_fallback => {
                // The primary failed for good: the same step on the fallback model.
                state.on_fallback = true;
                state.attempt = 1;
                state.previous_delay_us = 0;
                self.step(conv, state, effects);
            }
            None => {
                let text = Arc::from(format!(
                    "error: the model call failed ({} {}) after {} attempt(s)",
                    error.status, error.code, state.attempt
                ));
                self.answer(conv, &mut state, text, AnswerStatus::Failed, effects);
            }
        }
    }

    /// How long a model call must wait for the client-side limiters, if at all. The token
    /// bucket is asked first, so a call waiting for tokens does not use up a request slot.
    fn limiter_wait(&mut self, state: &Conversation) -> Option<u64> {
        let input_tokens = self.input_tokens(&state.transcript) as u64;
        if let Some(tokens) = &mut self.token_limiter {
            if let Err(wait_us) = tokens.take_n(self.now_us, input_tokens) {
                return Some(wait_us);
            }
        }
        self.limiter
            .as_mut()
            .and_then(|requests| requests.take(self.now_us).err())
    }

    /// Sends the calls that waited for the bulkhead, as slots free up.
    fn release_waiting(&mut self, effects: &mut Vec<Effect>) {
        let Some(max) = self.scenario.agents[self.agent].max_concurrent_calls else {
            return;
        };
        while !self.waiting.is_empty() {
            let in_flight = self.conversations.values().filter(|c| c.awaiting.is_some()).count();
            if in_flight >= max as usize {
                return;
            }
            let conv = self.waiting.pop_front().expect("not empty");
            if let Some(state) = self.conversations.remove(&conv) {
                self.step(conv, state, effects);
            }
        }
    }

    /// Takes a conversation out if it is still waiting for model call `call_seq` (a timer for an
    /// earlier call is stale), and marks the call as no longer awaited.
    fn take_awaiting(&mut self, conv: ConvId, call_seq: u32) -> Option<Conversation> {
        let state = self.conversations.get_mut(&conv)?;
        if state.awaiting != Some(call_seq) {
            return None;
        }
        state.awaiting = None;
        self.conversations.remove(&conv)
    }

    /// Handles one message; false when it ends the turn early (no bulkhead release, no
    /// checkpoint).
    fn dispatch(&mut self, msg: AgentMsg, effects: &mut Vec<Effect>) -> bool {
        match msg {
            AgentMsg::Start {
                conv,
                text,
                origin,
                reply_to,
                history,
                handoffs,
            } => {
                if let Origin::Handoff(from) = origin {
                    if self.handoff_again(conv, from, handoffs, effects) {
                        return false;
                    }
                }
                if let (Origin::Delegation(from), true) = (origin, self.conversations.contains_key(&conv)) {
                    // Delegated back to while it waits on this conversation (a cycle of
                    // delegates): it cannot work on the conversation twice, so the task is
                    // refused at once and the delegator hears why.
                    let text = format!(
                        "error: delegation cycle: {} is already working on conversation {conv}",
                        self.scenario.agents[self.agent].name
                    );
                    effects.push(Effect::Send {
                        to: self.directory.agent(from),
                        delay_us: 0,
                        payload: Payload::Agent(AgentMsg::DelegateResult {
                            conv,
                            from_agent: self.agent,
                            text: Arc::from(text),
                        }),
                    });
                    return true;
                }
                self.open(
                    conv,
                    text,
                    origin,
                    reply_to,
                    (history, handoffs),
                    Arc::from(""),
                    effects,
                )
            }
            AgentMsg::Revise {
                conv,
                origin,
                reply_to,
                history,
                feedback,
            } => {
                // A re-asked answer stays with this agent: no handoff is counted. The feedback
                // joins the transcript as a user message after the refused answer.
                self.open(conv, Arc::from(""), origin, reply_to, (history, 0), feedback, effects)
            }
            AgentMsg::Halt { conv } => {
                if let Some(state) = self.conversations.remove(&conv) {
                    self.finished(conv, (state.origin, state.handoffs), effects);
                }
                self.waiting.retain(|c| *c != conv);
            }
            AgentMsg::Resume { conv } => return self.resume(conv, effects),
            AgentMsg::Cancel { conv } => return self.on_cancel(conv, effects),
            AgentMsg::HandoffTimeout { conv, to, attempt } => {
                return self.on_handoff_timeout(conv, to, attempt, effects)
            }
            AgentMsg::HandoffDone { conv, from_agent } => {
                if self.handed.get(&conv).is_none_or(|h| h.to != from_agent) {
                    return false;
                }
                self.handed.remove(&conv);
            }
            AgentMsg::GuardStop {
                conv,
                text,
                status,
                escalate_to,
            } => return self.on_guard_stop(conv, text, status, escalate_to, effects),
            AgentMsg::LlmReply { conv, reply } => self.on_reply(conv, reply, effects),
            AgentMsg::ToolResult {
                conv, call_id, output, ..
            } => self.on_result(conv, StepResult::Tool { call_id, output }, effects),
            AgentMsg::DelegateResult { conv, from_agent, text } => {
                self.on_result(conv, StepResult::Delegate { from: from_agent, text }, effects)
            }
            AgentMsg::CallTimeout { conv, call_seq } => {
                if let Some(state) = self.take_awaiting(conv, call_seq) {
                    self.on_error(conv, state, ProviderError::client_timeout(), effects);
                }
            }
            AgentMsg::CallRejected {
                conv,
                call_seq,
                retry_after_us,
            } => {
                let Some(state) = self.take_awaiting(conv, call_seq) else {
                    return false;
                };
                let error = ProviderError {
                    status: 503,
                    error_type: "circuit_open",
                    code: "circuit_open",
                    retry_after_us: Some(retry_after_us),
                    message: None,
                };
                self.on_error(conv, state, error, effects);
            }
            AgentMsg::DeadlineDue { conv, started_us } => {
                if self
                    .conversations
                    .get(&conv)
                    .is_some_and(|s| s.started_us == started_us)
                {
                    let mut state = self.conversations.remove(&conv).expect("present above");
                    self.waiting.retain(|c| *c != conv);
                    if self.cancels() {
                        self.cancel_in_flight(conv, &state, effects);
                    }
                    let text = Arc::from("error: the conversation ran past the agent's deadline");
                    self.answer(conv, &mut state, text, AnswerStatus::Failed, effects);
                }
            }
            AgentMsg::RetryDue { conv } => {
                let Some(state) = self.conversations.remove(&conv) else {
                    return false;
                };
                self.step(conv, state, effects);
            }
            AgentMsg::DelegationTimeout {
                conv,
                delegate,
                attempt,
            } => return self.on_delegation_timeout(conv, delegate, attempt, effects),
            AgentMsg::ToolTimeout { conv, call_id } => {
                let Some(state) = self.conversations.get(&conv) else {
                    return false;
                };
                let waiting = state
                    .pending
                    .iter()
                    .find(|p| p.call_id == Some(call_id) && p.output.is_none());
                let Some(pending) = waiting else {
                    return false;
                };
                let output = Arc::from(format!("error: tool {} timed out", pending.name));
                if self.cancels() {
                    // Given up on: it must not take effect later either.
                    self.cancel_call(conv, &pending.name, call_id, effects);
                }
                self.on_result(conv, StepResult::Tool { call_id, output }, effects);
            }
        }
        true
    }

    /// A guardrail stopped the conversation: it goes to the agent it escalates to, or its answer
    /// goes straight to whoever waits for it. False when the conversation is not here.
    fn on_guard_stop(
        &mut self,
        conv: ConvId,
        text: Arc<str>,
        status: AnswerStatus,
        escalate_to: Option<AgentIdx>,
        effects: &mut Vec<Effect>,
    ) -> bool {
        let Some(state) = self.conversations.remove(&conv) else {
            return false;
        };
        self.finished(conv, (state.origin, state.handoffs), effects);
        self.waiting.retain(|c| *c != conv);
        match escalate_to {
            Some(to) => {
                let start = AgentMsg::Start {
                    conv,
                    text: Arc::from(""),
                    origin: Origin::Handoff(self.agent),
                    reply_to: state.reply_to,
                    history: state.transcript,
                    handoffs: state.handoffs + 1,
                };
                // The escalation is the guardrail's decision: it goes straight there.
                effects.push(Effect::Send {
                    to: self.directory.agent(to),
                    delay_us: 0,
                    payload: Payload::Agent(start),
                });
            }
            None => self.answer_past_guardrails(conv, &state, text, status, effects),
        }
        true
    }
}

impl Behavior for AgentBehavior {
    type Msg = AgentMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: AgentMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        self.now_us = context.now_us;
        let msg = match context.injection {
            Some(injection) => self.suffer(injection, msg),
            None => msg,
        };
        if !self.dispatch(msg, effects) {
            return Ok(());
        }
        self.release_waiting(effects);
        let durability = self.scenario.agents[self.agent].durability;
        if durability.checkpoints() {
            let resume = match durability {
                Durability::AtLeastOnce => self
                    .conversations
                    .iter()
                    .filter(|(_, state)| Outstanding::any(state))
                    .map(|(conv, _)| *conv)
                    .collect(),
                _ => Arc::from([]),
            };
            let checkpoint = Checkpoint {
                state: Arc::new(self.conversations.clone()),
                resume,
            };
            effects.push(Effect::Persist(checkpoint));
        }
        Ok(())
    }
}

/// How many of a handed-over transcript's last messages are the handoff's own: the
/// `transfer_to_<agent>` call and its result (2), or none when it ends otherwise.
fn transfer_messages(history: &Transcript) -> usize {
    let len = history.len();
    let transfer = len
        .checked_sub(2)
        .and_then(|at| history.get(at))
        .is_some_and(|m| m.tool_calls.iter().any(|c| c.name.starts_with(HANDOFF_TOOL_PREFIX)));
    let answered = history.last().is_some_and(|m| m.role == Role::Tool);
    if transfer && answered {
        2
    } else {
        0
    }
}
