//! The LLM actor: answers completion requests after a latency drawn from its distribution.
//! In `mock` mode the answer comes from the agent's behaviour rules. Provider faults answer with
//! the error a real provider sends (status, type, code, retry-after); content faults break the
//! answer the way real models do.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::bucket::TokenBucket;
use super::llm_faults::{break_answer, finish_reason, provider_error};
use crate::catalogue::faults::{FaultKind, Layer};
use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::llm::backend::Backends;
use crate::llm::cassette::Position;
use crate::llm::{live, mock};
use crate::protocol::transcript::PrefixMarks;
use crate::protocol::{
    AgentMsg, Caller, ConvId, Directory, Effect, FinishReason, Injection, LlmMsg, LlmRequest, ModelAnswer, ModelReply,
    Payload, ProviderError, TurnContext, Usage, UserMsg,
};
use crate::scenario::{FaultParams, Llm, LlmIdx, LlmMode, Scenario};

/// The LLM's state: per calling agent and conversation, a random stream, so neither agents nor
/// conversations shift each other's draws; and the provider's prompt cache.
pub struct LlmBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    llm: LlmIdx,
    seed: u64,
    incarnation: u32,
    callers: BTreeMap<Caller, CallerState>,
    /// The prompt cache: per (caller, conversation), the transcript of the caller's last answered
    /// call in that conversation. Lost when the LLM actor restarts.
    prompt_cache: BTreeMap<(Caller, ConvId), PrefixMarks>,
    /// The provider's rate limit, when the model has one.
    bucket: Option<TokenBucket>,
    backends: Arc<Backends>,
}

/// What the model keeps per caller (an agent, or a user simulator).
struct CallerState {
    /// One stream per conversation, from this family.
    family: StreamFamily,
    streams: BTreeMap<ConvId, RngStream>,
    /// Calls made so far, in all and per conversation: the call's index in its cassette position.
    calls: u32,
    conv_calls: BTreeMap<ConvId, u32>,
}

impl LlmBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        llm: LlmIdx,
        seed: u64,
        incarnation: u32,
        backends: Arc<Backends>,
    ) -> LlmBehavior {
        let spec = &scenario.llms[llm];
        let bucket = spec.rpm.map(|rpm| TokenBucket::new(rpm, spec.burst));
        LlmBehavior {
            scenario,
            directory,
            llm,
            seed,
            incarnation,
            callers: BTreeMap::new(),
            prompt_cache: BTreeMap::new(),
            bucket,
            backends,
        }
    }
}

impl Behavior for LlmBehavior {
    type Msg = LlmMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(&mut self, context: &TurnContext, msg: LlmMsg, effects: &mut Vec<Effect>) -> Result<(), HandlerError> {
        let LlmMsg::Complete(request) = msg;
        let scenario = &*self.scenario;
        let spec = &scenario.llms[self.llm];
        let caller = self.callers.entry(request.caller).or_insert_with(|| {
            let name = format!(
                "llm:{}#{}/{}",
                spec.name,
                self.incarnation,
                request.caller.logical_id(scenario)
            );
            CallerState {
                family: StreamFamily::new(self.seed, &name),
                streams: BTreeMap::new(),
                calls: 0,
                conv_calls: BTreeMap::new(),
            }
        });
        let mut next_call_id = request.next_call_id;
        let next_call_id = &mut next_call_id;
        let external = spec.mode != LlmMode::Mock;
        let injection = context.injection.map(|i| (i.kind, &scenario.faults[i.fault].params));
        let overflow = request.input_tokens as u64 > spec.context_window_tokens;
        // A refused request carries retry-after (if the provider sends it): until a token is back.
        let throttled = match &mut self.bucket {
            Some(bucket) => bucket
                .take(context.now_us)
                .err()
                .map(|wait_us| spec.retry_after_header.then_some(wait_us)),
            None => None,
        };
        let reply = match injection {
            Some((kind, params)) if kind.layer() == Layer::Provider => {
                let (error, default_latency_us) = provider_error(kind, params.retry_after_us);
                let latency_us = params.latency_us.unwrap_or(default_latency_us);
                error_reply(request.call_seq, error, latency_us)
            }
            _ if throttled.is_some() => {
                let retry_after_us = throttled.flatten();
                let error = ProviderError {
                    status: 429,
                    error_type: "requests",
                    code: "rate_limit_exceeded",
                    retry_after_us,
                    message: None,
                };
                error_reply(request.call_seq, error, 30_000)
            }
            _ if overflow && !external => {
                let (error, latency_us) = provider_error(FaultKind::LlmContextLength, None);
                error_reply(request.call_seq, error, latency_us)
            }
            _ if external => live_reply(
                scenario,
                self.llm,
                self.incarnation,
                &self.backends,
                caller,
                &request,
                injection,
            ),
            _ => {
                let family = &caller.family;
                let stream = caller
                    .streams
                    .entry(request.conv)
                    .or_insert_with(|| family.member(scenario.conversation_key(request.conv)));
                let (answer, mut output_tokens) = mock::decide(scenario, &request, stream, next_call_id);
                let (answer, finish_reason) = match injection {
                    Some((kind, params)) if kind.layer() == Layer::Content => {
                        let (answer, finish, tokens) = break_answer(scenario, kind, answer, params, next_call_id);
                        output_tokens = tokens.unwrap_or(output_tokens);
                        (answer, finish)
                    }
                    _ => {
                        let finish = finish_reason(&answer);
                        (answer, finish)
                    }
                };
                let latency_us = spec.latency.sample_us(stream);
                // A model without a cached price caches nothing: no bookkeeping for it.
                let prefix_tokens = match spec.price.cached_input_pusd_per_token {
                    Some(_) => self
                        .prompt_cache
                        .insert((request.caller, request.conv), request.transcript.marks())
                        .map(|p| request.instruction_tokens + request.transcript.common_prefix_tokens(&p)),
                    None => None,
                };
                let cached_input_tokens = cached_prefix_tokens(spec, prefix_tokens);
                let usage = Usage {
                    input_tokens: request.input_tokens,
                    cached_input_tokens,
                    output_tokens,
                    cost_pusd: spec
                        .price
                        .cost_pusd(request.input_tokens, cached_input_tokens, output_tokens),
                    counted_by_server: false,
                };
                ModelReply {
                    call_seq: request.call_seq,
                    answer,
                    finish_reason,
                    usage,
                    latency_us,
                }
            }
        };
        self.send_reply(&request, reply, effects);
        Ok(())
    }
}

/// A call to a live model or a recorded cassette, with a content fault acted on its answer.
fn live_reply(
    scenario: &Scenario,
    llm: LlmIdx,
    incarnation: u32,
    backends: &Backends,
    caller: &mut CallerState,
    request: &LlmRequest,
    injection: Option<(FaultKind, &FaultParams)>,
) -> ModelReply {
    let spec = &scenario.llms[llm];
    let in_conv = caller.conv_calls.entry(request.conv).or_default();
    let position = Position {
        llm: spec.name.clone(),
        actor: request.caller.logical_id(scenario),
        conv: Some(request.conv),
        incarnation,
        call_index: *in_conv,
    };
    *in_conv += 1;
    let agent_call_index = caller.calls;
    caller.calls += 1;
    let body = live::build_request(scenario, llm, request);
    let mut next_call_id = request.next_call_id;
    match backends.exchange(llm, position, agent_call_index, body) {
        Ok(exchange) => {
            let done = live::interpret(scenario, request, &exchange, &mut next_call_id);
            let (answer, finish_reason, output_tokens) = match (&done.answer, injection) {
                (ModelAnswer::Error(_), _) => (done.answer, done.finish_reason, 0),
                (_, Some((kind, params))) if kind.layer() == Layer::Content => {
                    let (answer, finish, tokens) = break_answer(scenario, kind, done.answer, params, &mut next_call_id);
                    (answer, finish, tokens.unwrap_or(done.output_tokens))
                }
                _ => (done.answer, done.finish_reason, done.output_tokens),
            };
            let usage = if matches!(answer, ModelAnswer::Error(_)) {
                Usage::default()
            } else {
                let cached = done.cached_input_tokens.min(done.input_tokens);
                Usage {
                    input_tokens: done.input_tokens,
                    cached_input_tokens: cached,
                    output_tokens,
                    cost_pusd: spec.price.cost_pusd(done.input_tokens, cached, output_tokens),
                    counted_by_server: done.usage_reported,
                }
            };
            ModelReply {
                call_seq: request.call_seq,
                answer,
                finish_reason,
                usage,
                latency_us: exchange.latency_us,
            }
        }
        // A request the cassette cannot answer: not retryable, and reported by the run.
        Err(_) => error_reply(
            request.call_seq,
            ProviderError {
                status: 400,
                error_type: "invalid_request_error",
                code: "cassette_mismatch",
                retry_after_us: None,
                message: None,
            },
            0,
        ),
    }
}

impl LlmBehavior {
    /// The reply goes back the way the request came: past the budget guardrails it went
    /// through, or straight to the agent or the user simulator.
    fn send_reply(&self, request: &LlmRequest, reply: ModelReply, effects: &mut Vec<Effect>) {
        let delay_us = reply.latency_us;
        let agent = match request.caller {
            Caller::Agent(agent) => agent,
            Caller::User(_) => {
                let payload = Payload::User(UserMsg::LlmReply {
                    conv: request.conv,
                    reply,
                });
                effects.push(Effect::Send {
                    to: Directory::USER,
                    delay_us,
                    payload,
                });
                return;
            }
        };
        let (to, payload) = match request.via.last() {
            Some(guardrail) => (
                *guardrail,
                Payload::Guardrail(crate::protocol::GuardrailMsg::Reply(Box::new(
                    crate::protocol::RoutedReply {
                        conv: request.conv,
                        agent,
                        reply,
                        via: request.via.clone(),
                    },
                ))),
            ),
            None => (
                self.directory.agent(agent),
                Payload::Agent(AgentMsg::LlmReply {
                    conv: request.conv,
                    reply,
                }),
            ),
        };
        effects.push(Effect::Send { to, delay_us, payload });
    }
}

/// The input tokens of a call read from the prompt cache: `prefix_tokens` is what this call has in
/// common with the previous answered call of the same agent in the same conversation on this model
/// (the instructions, the tool definitions and every message up to the first that differs). It is
/// billed as cached if the model has a cached price and the prefix holds at least
/// `cache_min_tokens`. A history rewritten at its start (truncated, reset) shares little or nothing.
pub fn cached_prefix_tokens(spec: &Llm, prefix_tokens: Option<u32>) -> u32 {
    match prefix_tokens {
        Some(prefix) if spec.price.cached_input_pusd_per_token.is_some() && prefix >= spec.cache_min_tokens.max(1) => {
            prefix
        }
        _ => 0,
    }
}

/// A failed call: no tokens billed.
fn error_reply(call_seq: u32, error: ProviderError, latency_us: u64) -> ModelReply {
    ModelReply {
        call_seq,
        answer: ModelAnswer::Error(Box::new(error)),
        finish_reason: FinishReason::Stop,
        usage: Usage::default(),
        latency_us,
    }
}
