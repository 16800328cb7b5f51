//! The observer: watches every delivered event and keeps the run's accounts (LLM calls, tokens,
//! cost, side effects, conversations) and checks the scenario's invariants as the run goes.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::actors::directory::Directory;
use crate::actors::{AgentMsg, AnswerStatus, Origin, Payload, ToolMsg, UserMsg};
use crate::kernel::{ActorIdx, Envelope};
use crate::scenario::{ActorKind, Check, Per, Scenario};

/// The first event that broke an invariant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    pub seq: u64,
    pub t_us: u64,
    pub actor: String,
    pub message: String,
}

/// An invariant's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvariantResult {
    pub name: String,
    pub passed: bool,
    pub first_violation: Option<Violation>,
}

/// What is known about one conversation.
#[derive(Debug, Clone, Default)]
pub struct ConversationAccount {
    pub started_at_us: Option<u64>,
    pub start_seq: u64,
    pub answered_at_us: Option<u64>,
    pub status: Option<AnswerStatus>,
    pub cost_pusd: u64,
    pub tokens: u64,
    pub effects: BTreeMap<String, u32>,
    /// The user left before the answer (`user.abandon`).
    pub abandoned: bool,
}

/// What one agent's model calls used and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentAccount {
    /// Replies received, provider errors included.
    pub llm_calls: u64,
    pub input_tokens: u64,
    /// The part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_pusd: u64,
}

/// Running totals of one run.
#[derive(Debug, Default)]
pub struct Observer {
    pub llm_calls: u64,
    /// Model calls that came back as provider errors (429, 5xx, timeouts, …).
    pub llm_errors: u64,
    pub input_tokens: u64,
    /// The part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_pusd: u64,
    /// Per agent, in scenario order.
    pub agents: Vec<AgentAccount>,
    directory: Directory,
    pub tool_calls: u64,
    pub effects: BTreeMap<String, u64>,
    pub conversations: Vec<ConversationAccount>,
    violations: Vec<Option<Violation>>,
}

impl Observer {
    pub fn new(scenario: &Scenario) -> Observer {
        Observer {
            violations: vec![None; scenario.invariants.len()],
            agents: vec![AgentAccount::default(); scenario.agents.len()],
            directory: Directory::new(scenario),
            ..Observer::default()
        }
    }

    fn conversation(&mut self, conv: u32) -> &mut ConversationAccount {
        let index = conv as usize;
        if self.conversations.len() <= index {
            self.conversations.resize_with(index + 1, ConversationAccount::default);
        }
        &mut self.conversations[index]
    }

    /// Accounts for one delivery; `actor_id` names the receiver for violations.
    pub fn on_deliver(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        envelope: &Envelope,
        actor_id: &dyn Fn(ActorIdx) -> String,
    ) {
        match &envelope.payload {
            Payload::Agent(AgentMsg::Start {
                conv,
                origin: Origin::User,
                ..
            }) => {
                let account = self.conversation(*conv);
                account.started_at_us = Some(now_us);
                account.start_seq = seq;
            }
            Payload::Agent(AgentMsg::LlmReply { conv, reply }) => {
                let usage = reply.usage;
                self.llm_calls += 1;
                self.llm_errors += u64::from(matches!(reply.answer, crate::actors::ModelAnswer::Error(_)));
                self.input_tokens += usage.input_tokens as u64;
                self.cached_input_tokens += usage.cached_input_tokens as u64;
                self.output_tokens += usage.output_tokens as u64;
                self.cost_pusd += usage.cost_pusd;
                if let (ActorKind::Agent, agent) = self.directory.locate(envelope.to) {
                    if let Some(account) = self.agents.get_mut(agent) {
                        account.llm_calls += 1;
                        account.input_tokens += usage.input_tokens as u64;
                        account.cached_input_tokens += usage.cached_input_tokens as u64;
                        account.output_tokens += usage.output_tokens as u64;
                        account.cost_pusd += usage.cost_pusd;
                    }
                }
                let tokens = (usage.input_tokens + usage.output_tokens) as u64;
                let account = self.conversation(*conv);
                account.cost_pusd += usage.cost_pusd;
                account.tokens += tokens;
                let (conv_cost, conv_tokens) = (account.cost_pusd, account.tokens);
                let (run_cost, run_tokens) = (self.cost_pusd, self.input_tokens + self.output_tokens);
                for (index, invariant) in scenario.invariants.iter().enumerate() {
                    let broken = match invariant.check {
                        Check::CostMax { cost_pusd_max, per } => {
                            let spent = if per == Per::Conversation { conv_cost } else { run_cost };
                            (spent > cost_pusd_max).then(|| {
                                format!("cost {} exceeds {} per {}", usd(spent), usd(cost_pusd_max), per.name())
                            })
                        }
                        Check::TokensMax { tokens_max, per } => {
                            let used = if per == Per::Conversation {
                                conv_tokens
                            } else {
                                run_tokens
                            };
                            (used > tokens_max).then(|| format!("{used} tokens exceed {tokens_max} per {}", per.name()))
                        }
                        _ => None,
                    };
                    if let Some(message) = broken {
                        self.violate(
                            index,
                            seq,
                            now_us,
                            actor_id(envelope.to),
                            format!("conversation {conv}: {message}"),
                        );
                    }
                }
            }
            Payload::Tool(ToolMsg::Invoke { .. }) => self.tool_calls += 1,
            Payload::User(UserMsg::Answer { conv, status, .. }) => {
                let account = self.conversation(*conv);
                if account.answered_at_us.is_none() {
                    account.answered_at_us = Some(now_us);
                    account.status = Some(*status);
                }
            }
            _ => {}
        }
    }

    /// Counts a side effect that a tool reports having executed.
    #[allow(clippy::too_many_arguments)]
    pub fn on_side_effect(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        actor: &str,
        conv: u32,
        effect: &str,
        times: u32,
    ) {
        *self.effects.entry(effect.to_owned()).or_default() += times as u64;
        let run_count = self.effects[effect];
        let account = self.conversation(conv);
        let count = account.effects.entry(effect.to_owned()).or_default();
        *count += times;
        let conv_count = *count as u64;
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            if let Check::NeverEffect {
                effect: watched,
                more_than,
                per,
            } = &invariant.check
            {
                let seen = if *per == Per::Conversation {
                    conv_count
                } else {
                    run_count
                };
                if watched == effect && seen > *more_than as u64 {
                    let message = format!(
                        "conversation {conv}: effect {effect} happened {seen} times, more than {more_than} per {}",
                        per.name()
                    );
                    self.violate(index, seq, now_us, actor.to_owned(), message);
                }
            }
        }
    }

    /// A message the network lost: a lost opening message still opened a conversation (the
    /// user is waiting for an answer that will not come).
    pub fn on_lost(&mut self, seq: u64, now_us: u64, envelope: &Envelope) {
        if let Payload::Agent(AgentMsg::Start {
            conv,
            origin: Origin::User,
            ..
        }) = &envelope.payload
        {
            let account = self.conversation(*conv);
            account.started_at_us = Some(now_us);
            account.start_seq = seq;
        }
    }

    /// The user of `conv` left; whatever answer comes reaches nobody.
    pub fn abandon(&mut self, conv: u32) {
        self.conversation(conv).abandoned = true;
    }

    fn violate(&mut self, index: usize, seq: u64, t_us: u64, actor: String, message: String) {
        if self.violations[index].is_none() {
            self.violations[index] = Some(Violation {
                seq,
                t_us,
                actor,
                message,
            });
        }
    }

    /// Final verdicts, after the last event.
    pub fn finish(&mut self, scenario: &Scenario) -> Vec<InvariantResult> {
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let Check::EventuallyAnswered { within_us } = invariant.check else {
                continue;
            };
            let late = self.conversations.iter().enumerate().find_map(|(conv, account)| {
                let started = account.started_at_us?;
                if account.abandoned {
                    return None; // nobody is waiting for this answer
                }
                let deadline = within_us.map(|w| started.saturating_add(w));
                match (account.answered_at_us, deadline) {
                    (None, _) => Some((conv, account.start_seq, started, "was never answered".to_owned())),
                    (Some(_), _) if account.status != Some(AnswerStatus::Answered) => Some((
                        conv,
                        account.start_seq,
                        started,
                        format!("ended {} instead of answered", account.status.map_or("?", |s| s.name())),
                    )),
                    (Some(answered), Some(deadline)) if answered > deadline => Some((
                        conv,
                        account.start_seq,
                        started,
                        format!(
                            "was answered after {}us, later than {}us",
                            answered - started,
                            within_us.unwrap_or(0)
                        ),
                    )),
                    _ => None,
                }
            });
            if let Some((conv, seq, started, what)) = late {
                self.violate(
                    index,
                    seq,
                    started,
                    "user".to_owned(),
                    format!("conversation {conv} {what}"),
                );
            }
        }
        scenario
            .invariants
            .iter()
            .zip(&self.violations)
            .map(|(invariant, violation)| InvariantResult {
                name: invariant.name.clone(),
                passed: violation.is_none(),
                first_violation: violation.clone(),
            })
            .collect()
    }
}

/// Formats pico-USD as dollars with six decimals.
pub fn usd(pusd: u64) -> String {
    format!(
        "${}.{:06}",
        pusd / 1_000_000_000_000,
        (pusd % 1_000_000_000_000) / 1_000_000
    )
}
