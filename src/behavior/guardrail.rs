//! The guardrail actor: a check that sits on a stage of the flow (the user's input, a model call,
//! a tool call, a tool's output, the final answer, a handoff). Messages on their way pass through
//! it; it takes its latency, makes its own mistakes (false positives and negatives drawn from its
//! own stream, failures that it handles open or closed) and lets the message through, changes
//! it, or stops it.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::route::chain;

mod text;
use crate::catalogue::faults::FaultKind;
use crate::guard;
use crate::kernel::{Behavior, HandlerError, RngStream, StreamFamily};
use crate::protocol::{
    AgentMsg, AnswerStatus, Checked, ConvId, Directory, Effect, GuardrailIdx, GuardrailMsg, Injection, LlmMsg, Mistake,
    Origin, Payload, ReplyTo, RoutedReply, ToolArgs, ToolMsg, ToolRef, Transcript, TurnContext, UserMsg, Verdict,
    VerdictRecord,
};
use crate::scenario::guardrail::{ArgRule, BudgetScope, GuardAction, GuardCheck, GuardScope, Guardrail, Stage};
use crate::scenario::units::format_usd;
use crate::scenario::{AgentIdx, Scenario, ToolIdx};
use text::{subject_text, with_text, ScriptContext};

/// Spend seen by a budget guardrail: pico-USD and tokens.
#[derive(Debug, Clone, Copy, Default)]
struct Spend {
    pusd: u64,
    tokens: u64,
}

/// The guardrail's state: its stream and what its stateful checks remember.
pub struct GuardrailBehavior {
    scenario: Arc<Scenario>,
    directory: Directory,
    guardrail: GuardrailIdx,
    /// One random stream per conversation checked.
    family: StreamFamily,
    streams: BTreeMap<ConvId, RngStream>,
    tool_calls: BTreeMap<ConvId, u32>,
    repeats: BTreeMap<(ConvId, String), u32>,
    retries: BTreeMap<ConvId, u32>,
    spent_by_conv: BTreeMap<ConvId, Spend>,
    spent_by_agent: BTreeMap<AgentIdx, Spend>,
    spent: Spend,
}

/// What the check found.
struct Found {
    tripped: bool,
    detail: String,
    findings: Vec<guard::Finding>,
}

impl Found {
    fn clean() -> Found {
        Found {
            tripped: false,
            detail: String::new(),
            findings: Vec::new(),
        }
    }

    fn tripped(detail: String) -> Found {
        Found {
            tripped: true,
            detail,
            findings: Vec::new(),
        }
    }
}

impl GuardrailBehavior {
    pub fn new(
        scenario: Arc<Scenario>,
        directory: Directory,
        guardrail: GuardrailIdx,
        seed: u64,
        incarnation: u32,
    ) -> GuardrailBehavior {
        let family = StreamFamily::new(
            seed,
            &format!("guardrail:{}#{incarnation}", scenario.guardrails[guardrail].name),
        );
        GuardrailBehavior {
            scenario,
            directory,
            guardrail,
            family,
            streams: BTreeMap::new(),
            tool_calls: BTreeMap::new(),
            repeats: BTreeMap::new(),
            retries: BTreeMap::new(),
            spent_by_conv: BTreeMap::new(),
            spent_by_agent: BTreeMap::new(),
            spent: Spend::default(),
        }
    }

    fn spec(&self) -> &Guardrail {
        &self.scenario.guardrails[self.guardrail]
    }

    /// Runs the check on the message.
    fn evaluate(&mut self, checked: &Checked) -> Found {
        let scenario = self.scenario.clone();
        let spec = &scenario.guardrails[self.guardrail];
        let text = subject_text(checked, spec.scope);
        match &spec.check {
            GuardCheck::Regex(_) | GuardCheck::DenyList(_) | GuardCheck::Pii(_) => {
                let findings = guard::find(&spec.check, &text);
                if findings.is_empty() {
                    return Found::clean();
                }
                let labels: std::collections::BTreeSet<&str> = findings.iter().map(|f| f.label.as_str()).collect();
                Found {
                    tripped: true,
                    detail: format!("found {}", labels.into_iter().collect::<Vec<_>>().join(", ")),
                    findings,
                }
            }
            GuardCheck::Injection { threshold } => {
                let score = guard::injection_score(&text);
                if score >= *threshold {
                    Found::tripped(format!("injection score {score} ≥ {threshold}"))
                } else {
                    Found::clean()
                }
            }
            GuardCheck::Topic { allow, deny } => {
                guard::off_topic(&text, allow, deny).map_or_else(Found::clean, Found::tripped)
            }
            GuardCheck::Script(expr) => {
                let context = ScriptContext {
                    scenario: &scenario,
                    checked,
                    text: &text,
                };
                if expr.eval(&context) {
                    Found::tripped("the script rule matched".to_owned())
                } else {
                    Found::clean()
                }
            }
            GuardCheck::JsonSchema(schema) => check_schema(&scenario, schema.as_ref(), &checked.subject),
            GuardCheck::AllowList { tools, args } => {
                check_allow_list(&scenario, tools.as_deref(), args, &checked.subject)
            }
            GuardCheck::MaxToolCalls(max) => {
                let count = self.tool_calls.entry(checked.conv).or_default();
                *count += 1;
                if *count > *max {
                    Found::tripped(format!("tool call {count} of the conversation, more than {max}"))
                } else {
                    Found::clean()
                }
            }
            GuardCheck::Loop { max_repeats } => match &checked.subject {
                Payload::Tool(ToolMsg::Invoke { call, .. }) => {
                    let key = format!("{}({})", tool_name(&scenario, &call.tool), call.args_text());
                    let count = self.repeats.entry((checked.conv, key.clone())).or_default();
                    *count += 1;
                    if *count > *max_repeats {
                        Found::tripped(format!("{key} called {count} times, more than {max_repeats}"))
                    } else {
                        Found::clean()
                    }
                }
                _ => Found::clean(),
            },
            GuardCheck::Budget { .. } => self.check_budget(checked),
        }
    }

    /// A `budget` check: whether the spend so far plus this model call's estimate exceeds a limit.
    fn check_budget(&self, checked: &Checked) -> Found {
        let GuardCheck::Budget {
            max_cost_pusd,
            max_tokens,
            per,
            reserve_output_tokens,
        } = &self.spec().check
        else {
            unreachable!("called for budget checks only")
        };
        let Payload::Llm(LlmMsg::Complete(request)) = &checked.subject else {
            return Found::clean();
        };
        let llm = &self.scenario.llms[self.directory.locate(checked.dest).1];
        let estimate = Spend {
            pusd: llm.price.cost_pusd(request.input_tokens, 0, *reserve_output_tokens),
            tokens: request.input_tokens as u64 + *reserve_output_tokens as u64,
        };
        let spent = match per {
            BudgetScope::Conversation => self.spent_by_conv.get(&checked.conv).copied().unwrap_or_default(),
            BudgetScope::Agent => self.spent_by_agent.get(&checked.agent).copied().unwrap_or_default(),
            BudgetScope::Run => self.spent,
        };
        if let Some(max) = max_cost_pusd {
            if spent.pusd.saturating_add(estimate.pusd) > *max {
                return Found::tripped(format!(
                    "spent {} + this call ~{} would exceed {} per {}",
                    format_usd(spent.pusd),
                    format_usd(estimate.pusd),
                    format_usd(*max),
                    per.name()
                ));
            }
        }
        if let Some(max) = max_tokens {
            if spent.tokens + estimate.tokens > *max {
                return Found::tripped(format!(
                    "{} tokens spent + ~{} for this call would exceed {max} per {}",
                    spent.tokens,
                    estimate.tokens,
                    per.name()
                ));
            }
        }
        Found::clean()
    }

    /// The message goes on: to the next guardrail of the chain, or to its destination.
    fn forward(&self, mut checked: Checked, delay_us: u64, effects: &mut Vec<Effect>) {
        let (chain, _) = chain(&self.scenario, checked.stage, checked.agent, checked.tool);
        let next = chain.get(checked.position as usize + 1).copied();
        // A budget guardrail sees the model's reply on its way back, to count the spend.
        if let (Payload::Llm(LlmMsg::Complete(request)), GuardCheck::Budget { .. }) =
            (&mut checked.subject, &self.spec().check)
        {
            request.via.push(self.directory.guardrail(self.guardrail));
        }
        match next {
            Some(next) => {
                checked.position += 1;
                effects.push(Effect::Send {
                    to: self.directory.guardrail(next),
                    delay_us,
                    payload: Payload::Guardrail(GuardrailMsg::Check(Box::new(checked))),
                });
            }
            None => effects.push(Effect::Send {
                to: checked.dest,
                delay_us,
                payload: checked.subject,
            }),
        }
    }

    /// Ends the conversation at the stage's owner: the agent that holds it (model and tool
    /// stages) answers with `text`, or hands it to `escalate_to`; elsewhere the answer goes
    /// straight to whoever waits for it.
    fn stop(&self, checked: &Checked, text: Arc<str>, status: AnswerStatus, delay_us: u64, effects: &mut Vec<Effect>) {
        let escalate_to = if status == AnswerStatus::Escalated {
            self.spec().escalate_to
        } else {
            None
        };
        let agent = self.directory.agent(checked.agent);
        match (&checked.subject, checked.stage) {
            (_, Stage::ModelCall | Stage::ToolCall | Stage::ToolOutput) => effects.push(Effect::Send {
                to: agent,
                delay_us,
                payload: Payload::Agent(AgentMsg::GuardStop {
                    conv: checked.conv,
                    text,
                    status,
                    escalate_to,
                }),
            }),
            (
                Payload::Agent(AgentMsg::Start {
                    text: user_text,
                    reply_to,
                    history,
                    ..
                }),
                _,
            ) => {
                // Whoever takes an escalated conversation gets what was said, the refused
                // message included.
                let mut transcript = history.clone();
                if !user_text.is_empty() {
                    transcript.push(crate::protocol::ChatMessage::user(user_text.clone()));
                }
                self.end(
                    checked,
                    transcript,
                    *reply_to,
                    text,
                    status,
                    escalate_to,
                    delay_us,
                    effects,
                );
            }
            (_, _) => {
                let Some(context) = checked.context.as_deref() else {
                    // An answer to another agent: it gets the text in place of the answer.
                    effects.push(Effect::Send {
                        to: checked.dest,
                        delay_us,
                        payload: with_text(checked.subject.clone(), text),
                    });
                    return;
                };
                self.end(
                    checked,
                    context.transcript.clone(),
                    context.reply_to,
                    text,
                    status,
                    escalate_to,
                    delay_us,
                    effects,
                );
            }
        }
    }

    /// The conversation ends here: handed to `escalate_to`, or answered with `text`.
    #[allow(clippy::too_many_arguments)]
    fn end(
        &self,
        checked: &Checked,
        transcript: Transcript,
        reply_to: ReplyTo,
        text: Arc<str>,
        status: AnswerStatus,
        escalate_to: Option<AgentIdx>,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) {
        let conv = checked.conv;
        let payload = match (escalate_to, reply_to) {
            (Some(to), _) => {
                effects.push(Effect::Send {
                    to: self.directory.agent(to),
                    delay_us,
                    payload: Payload::Agent(AgentMsg::Start {
                        conv,
                        text: Arc::from(""),
                        history: transcript,
                        origin: Origin::Handoff(checked.agent),
                        reply_to,
                        // A guardrail's escalation to a human agent is not one the agents chose.
                        handoffs: 0,
                    }),
                });
                return;
            }
            (None, ReplyTo::User) => Payload::User(UserMsg::Answer {
                conv,
                text,
                status,
                from: checked.agent,
                history: transcript,
            }),
            (None, ReplyTo::Agent(agent)) => {
                effects.push(Effect::Send {
                    to: self.directory.agent(agent),
                    delay_us,
                    payload: Payload::Agent(AgentMsg::DelegateResult {
                        conv,
                        from_agent: checked.agent,
                        text,
                    }),
                });
                return;
            }
        };
        effects.push(Effect::Send {
            to: Directory::USER,
            delay_us,
            payload,
        });
    }

    /// Masks what the check finds in every message of `transcript`.
    fn redact_transcript(&self, transcript: &mut Transcript) {
        for index in 0..transcript.len() {
            let content = transcript.get(index).map_or("", |m| &*m.content);
            let findings = guard::find(&self.spec().check, content);
            if !findings.is_empty() {
                let redacted = Arc::from(guard::redact(content, &findings));
                transcript.set_content(index, redacted);
            }
        }
    }

    /// Acts on a tripped check.
    fn act(
        &mut self,
        checked: Checked,
        action: GuardAction,
        found: &Found,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) -> Verdict {
        let message: Arc<str> = Arc::from(self.spec().message.as_str());
        if checked.parallel {
            return self.trip_parallel(&checked, action, message, delay_us, effects);
        }
        match action {
            GuardAction::Allow => {
                self.forward(checked, delay_us, effects);
                Verdict::Allow
            }
            GuardAction::Redact => {
                let whole_start = matches!(&checked.subject, Payload::Agent(AgentMsg::Start { text, .. })
                    if text.is_empty() || self.spec().scope == GuardScope::Transcript);
                let subject = match checked.subject {
                    Payload::Tool(ToolMsg::Invoke { conv, agent, mut call }) => {
                        if let ToolArgs::Json(args) = &call.args {
                            let mut args = args.map().clone();
                            for value in args.values_mut() {
                                if let serde_json::Value::String(s) = value {
                                    let findings = guard::find(&self.spec().check, s);
                                    *s = guard::redact(s, &findings);
                                }
                            }
                            call.args = ToolArgs::json(args);
                        }
                        Payload::Tool(ToolMsg::Invoke { conv, agent, call })
                    }
                    Payload::Llm(LlmMsg::Complete(mut request)) if self.spec().scope == GuardScope::Transcript => {
                        // Every message sent to the model is masked where the check finds something.
                        self.redact_transcript(&mut request.transcript);
                        Payload::Llm(LlmMsg::Complete(request))
                    }
                    mut subject @ Payload::Agent(AgentMsg::Start { .. }) if whole_start => {
                        // A handed-over transcript is masked message by message, the text too.
                        if let Payload::Agent(AgentMsg::Start { text, history, .. }) = &mut subject {
                            self.redact_transcript(history);
                            let findings = guard::find(&self.spec().check, text);
                            *text = Arc::from(guard::redact(text, &findings));
                        }
                        subject
                    }
                    subject => {
                        // With `scope = "transcript"` the findings are places in the whole text:
                        // the message is searched again on its own.
                        let text = subject.text().unwrap_or("").to_owned();
                        let findings = match self.spec().scope {
                            GuardScope::Message => found.findings.clone(),
                            GuardScope::Transcript => guard::find(&self.spec().check, &text),
                        };
                        with_text(subject, Arc::from(guard::redact(&text, &findings)))
                    }
                };
                self.forward(Checked { subject, ..checked }, delay_us, effects);
                Verdict::Redact
            }
            GuardAction::Retry => {
                let max_retries = self.spec().max_retries;
                let retries = self.retries.entry(checked.conv).or_default();
                if *retries >= max_retries {
                    self.block(checked, message, delay_us, effects);
                    return Verdict::Block;
                }
                *retries += 1;
                match (checked.stage, checked.context.as_deref()) {
                    (Stage::Output, Some(context)) => effects.push(Effect::Send {
                        to: self.directory.agent(checked.agent),
                        delay_us,
                        payload: Payload::Agent(AgentMsg::Revise {
                            conv: checked.conv,
                            origin: context.origin,
                            reply_to: context.reply_to,
                            history: context.transcript.clone(),
                            feedback: message,
                        }),
                    }),
                    _ => self.block(checked, message, delay_us, effects),
                }
                Verdict::Retry
            }
            GuardAction::Block => {
                self.block(checked, message, delay_us, effects);
                Verdict::Block
            }
            GuardAction::Escalate => {
                self.stop(&checked, message, AnswerStatus::Escalated, delay_us, effects);
                Verdict::Escalate
            }
            GuardAction::Halt => {
                self.stop(&checked, message, AnswerStatus::Halted, delay_us, effects);
                Verdict::Halt
            }
        }
    }

    /// A parallel guardrail tripped: the model call is already under way, so all it can do is
    /// halt the agent's conversation and answer the user in its place.
    fn trip_parallel(
        &self,
        checked: &Checked,
        action: GuardAction,
        message: Arc<str>,
        delay_us: u64,
        effects: &mut Vec<Effect>,
    ) -> Verdict {
        // The model call is already under way: all a parallel guardrail can do is trip.
        if action == GuardAction::Allow {
            return Verdict::Allow;
        }
        effects.push(Effect::Send {
            to: self.directory.agent(checked.agent),
            delay_us,
            payload: Payload::Agent(AgentMsg::Halt { conv: checked.conv }),
        });
        let status = if action == GuardAction::Halt {
            AnswerStatus::Halted
        } else {
            AnswerStatus::Blocked
        };
        effects.push(Effect::Send {
            to: Directory::USER,
            delay_us,
            payload: Payload::User(UserMsg::Answer {
                conv: checked.conv,
                text: message,
                status,
                from: checked.agent,
                history: checked
                    .context
                    .as_ref()
                    .map(|c| c.transcript.clone())
                    .unwrap_or_default(),
            }),
        });
        if action == GuardAction::Halt {
            Verdict::Halt
        } else {
            Verdict::Block
        }
    }

    /// A model's reply on its way back past a budget guardrail: the spend is counted, and the
    /// reply goes on to the previous budget guardrail, or to the agent.
    fn pass_reply(&mut self, routed: RoutedReply, effects: &mut Vec<Effect>) {
        let RoutedReply {
            conv,
            agent,
            reply,
            mut via,
        } = routed;
        let spend = Spend {
            pusd: reply.usage.cost_pusd,
            tokens: (reply.usage.input_tokens + reply.usage.output_tokens) as u64,
        };
        for total in [
            self.spent_by_conv.entry(conv).or_default(),
            self.spent_by_agent.entry(agent).or_default(),
            &mut self.spent,
        ] {
            total.pusd = total.pusd.saturating_add(spend.pusd);
            total.tokens += spend.tokens;
        }
        via.pop();
        let payload = match via.last() {
            Some(previous) => (
                *previous,
                Payload::Guardrail(GuardrailMsg::Reply(Box::new(RoutedReply {
                    conv,
                    agent,
                    reply,
                    via,
                }))),
            ),
            None => (
                self.directory.agent(agent),
                Payload::Agent(AgentMsg::LlmReply { conv, reply }),
            ),
        };
        effects.push(Effect::Send {
            to: payload.0,
            delay_us: 0,
            payload: payload.1,
        });
    }

    /// The message does not go on; what stands in its place depends on the stage.
    fn block(&self, checked: Checked, message: Arc<str>, delay_us: u64, effects: &mut Vec<Effect>) {
        match (checked.stage, &checked.subject) {
            // The model sees the refusal as the tool's result, as agent frameworks do.
            (Stage::ToolCall, Payload::Tool(ToolMsg::Invoke { conv, call, .. })) => {
                let Some(tool) = checked.tool else {
                    return;
                };
                effects.push(Effect::Send {
                    to: self.directory.agent(checked.agent),
                    delay_us,
                    payload: Payload::Agent(AgentMsg::ToolResult {
                        conv: *conv,
                        call_id: call.id,
                        tool,
                        output: message,
                    }),
                });
            }
            (Stage::ToolOutput, _) => effects.push(Effect::Send {
                to: checked.dest,
                delay_us,
                payload: with_text(checked.subject, message),
            }),
            (
                Stage::Output,
                Payload::User(UserMsg::Answer {
                    conv, from, history, ..
                }),
            ) => effects.push(Effect::Send {
                to: checked.dest,
                delay_us,
                payload: Payload::User(UserMsg::Answer {
                    conv: *conv,
                    text: message,
                    status: AnswerStatus::Blocked,
                    from: *from,
                    history: history.clone(),
                }),
            }),
            _ => self.stop(&checked, message, AnswerStatus::Blocked, delay_us, effects),
        }
    }
}

/// A `json_schema` check of a tool call's arguments.
/// A `json_schema` check of a tool call, against the check's schema or the tool's `parameters`.
fn check_schema(scenario: &Scenario, schema: Option<&serde_json::Value>, subject: &Payload) -> Found {
    match subject {
        Payload::Tool(ToolMsg::Invoke { call, .. }) => match &call.args {
            ToolArgs::Json(args) => {
                let own = match &call.tool {
                    ToolRef::Known(t) => scenario.tools[*t].parameters.as_ref(),
                    ToolRef::Unknown(_) => None,
                };
                let Some(schema) = schema.or(own) else {
                    return Found::clean();
                };
                let value = serde_json::Value::Object(args.map().clone());
                match guard::schema::validate(schema, &value) {
                    Ok(()) => Found::clean(),
                    Err(problem) => Found::tripped(problem),
                }
            }
            ToolArgs::Malformed(_) => Found::tripped("the arguments are not JSON".to_owned()),
        },
        _ => Found::clean(),
    }
}

/// An `allow_list` check of a tool call: the tool, then its arguments.
fn check_allow_list(
    scenario: &Scenario,
    tools: Option<&[ToolIdx]>,
    args: &BTreeMap<String, ArgRule>,
    subject: &Payload,
) -> Found {
    match subject {
        Payload::Tool(ToolMsg::Invoke { call, .. }) => {
            let tool = match &call.tool {
                ToolRef::Known(t) => Some(*t),
                ToolRef::Unknown(_) => None,
            };
            if let Some(allowed) = tools {
                if !tool.is_some_and(|t| allowed.contains(&t)) {
                    return Found::tripped(format!("tool {} is not allowed", tool_name(scenario, &call.tool)));
                }
            }
            match &call.args {
                ToolArgs::Json(values) => guard::arg_violation(values, args).map_or_else(Found::clean, Found::tripped),
                ToolArgs::Malformed(_) => Found::tripped("the arguments are not JSON".to_owned()),
            }
        }
        _ => Found::clean(),
    }
}

fn tool_name<'a>(scenario: &'a Scenario, tool: &'a ToolRef) -> &'a str {
    match tool {
        ToolRef::Known(t) => &scenario.tools[*t].name,
        ToolRef::Unknown(name) => name,
    }
}

impl Behavior for GuardrailBehavior {
    type Msg = GuardrailMsg;
    type Effect = Effect;
    type Injection = Injection;

    fn handle(
        &mut self,
        context: &TurnContext,
        msg: GuardrailMsg,
        effects: &mut Vec<Effect>,
    ) -> Result<(), HandlerError> {
        let checked = match msg {
            GuardrailMsg::Reply(routed) => {
                self.pass_reply(*routed, effects);
                return Ok(());
            }
            GuardrailMsg::Check(checked) => *checked,
        };
        // The scenario is shared: holding it costs a count, where the guardrail's spec would be
        // copied and dropped on every check.
        let scenario = self.scenario.clone();
        let spec = &scenario.guardrails[self.guardrail];
        // Every check draws the same numbers in the same order, whatever it finds.
        let family = &self.family;
        let stream = self
            .streams
            .entry(checked.conv)
            .or_insert_with(|| family.member(self.scenario.conversation_key(checked.conv)));
        let mut latency_us = spec.latency.sample_us(stream);
        let failed_draw = spec.error_rate.draw(stream);
        let false_positive_draw = spec.false_positive.draw(stream);
        let false_negative_draw = spec.false_negative.draw(stream);
        let injected = context.injection.map(|i| i.kind);
        let timed_out = injected == Some(FaultKind::GuardrailTimeout)
            || spec.timeout_us.is_some_and(|timeout_us| latency_us > timeout_us);
        if let (true, Some(timeout_us)) = (timed_out, spec.timeout_us) {
            // The caller stops waiting at the timeout.
            latency_us = timeout_us;
        }
        let (stage, agent, conv, parallel) = (checked.stage, checked.agent, checked.conv, checked.parallel);
        let guardrail = self.guardrail;
        let fail_open = spec.fail_open;
        let record = |verdict: Verdict, tripped: bool, mistake: Option<Mistake>, detail: String| {
            Effect::Verdict(Box::new(VerdictRecord {
                guardrail,
                stage,
                agent,
                conv,
                verdict,
                tripped,
                mistake,
                // A failure stops the message only when the guardrail fails closed.
                contained: !parallel
                    && match verdict {
                        Verdict::Allow | Verdict::Redact => false,
                        Verdict::Error => !fail_open,
                        _ => true,
                    },
                latency_us,
                detail,
            }))
        };
        if failed_draw || timed_out {
            let detail = if timed_out {
                "the guardrail timed out"
            } else {
                "the guardrail failed"
            };
            if spec.fail_open || parallel {
                effects.push(record(Verdict::Error, false, None, format!("{detail}; failing open")));
                if !parallel {
                    self.forward(checked, latency_us, effects);
                }
            } else {
                effects.push(record(Verdict::Error, false, None, format!("{detail}; failing closed")));
                let message = Arc::from(format!(
                    "guardrail {} is unavailable; the request was stopped",
                    spec.name
                ));
                self.block(checked, message, latency_us, effects);
            }
            return Ok(());
        }
        let mut found = self.evaluate(&checked);
        let mut mistake = None;
        let force_fp = injected == Some(FaultKind::GuardrailFalsePositive);
        let force_fn = injected == Some(FaultKind::GuardrailFalseNegative);
        if found.tripped && (false_negative_draw || force_fn) {
            found.tripped = false;
            mistake = Some(Mistake::FalseNegative);
        } else if !found.tripped && (false_positive_draw || force_fp) {
            found = Found::tripped("a false positive".to_owned());
            mistake = Some(Mistake::FalsePositive);
        }
        if !found.tripped {
            effects.push(record(Verdict::Allow, false, mistake, found.detail.clone()));
            if !parallel {
                self.forward(checked, latency_us, effects);
            }
            return Ok(());
        }
        // The verdict record goes first, so the scheduler knows the turn's sends are substitutes.
        let at = effects.len();
        let verdict = self.act(checked, spec.action, &found, latency_us, effects);
        effects.insert(at, record(verdict, true, mistake, found.detail));
        Ok(())
    }
}
