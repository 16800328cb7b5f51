//! The observer: watches every delivered event and keeps the run's accounts (LLM calls, tokens,
//! cost, side effects, conversations, guardrail verdicts, the spread of taint) and checks the
//! scenario's invariants and failure-mode detectors as the run goes.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub mod approval;
pub mod blast;
pub mod recovery;
pub mod world;

use crate::catalogue::faults::FaultKind;
use crate::engine::{Observe, ReplyFor};
use crate::kernel::{ActorIdx, Labels};
use crate::protocol::{
    AgentMsg, AnswerStatus, Caller, ConvId, Directory, Envelope, LabelSpace, LlmMsg, Mistake, Origin, Payload, ToolMsg,
    UserEnding, UserMsg, Verdict, VerdictRecord,
};
use crate::scenario::glob::glob_match;
use crate::scenario::units::{format_duration_us, format_usd};
use crate::scenario::{ActorKind, Check, Detector, OutputTest, Per, Scenario};
use blast::BlastTracker;

/// How one guardrail did over the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuardrailStats {
    pub name: String,
    pub kind: &'static str,
    pub stage: &'static str,
    pub action: &'static str,
    pub checks: u64,
    /// Checks that found something (including false positives, excluding false negatives).
    pub trips: u64,
    pub false_positives: u64,
    pub false_negatives: u64,
    /// The guardrail failed or timed out (and failed open or closed).
    pub failures: u64,
    pub latency_us_total: u64,
    /// Checks by verdict: allow, block, redact, retry, escalate, halt, error.
    pub verdicts: BTreeMap<&'static str, u64>,
}

/// What the failure-mode detectors remember.
#[derive(Debug, Default)]
struct DetectorState {
    repeats: BTreeMap<(u32, usize, String), u32>,
    tool_error_pending: BTreeSet<u32>,
    max_turn: BTreeMap<(usize, u32), u32>,
    tool_results: BTreeSet<u32>,
    conv_agent: BTreeMap<u32, usize>,
}

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
    /// How many times it was broken (each offending event once).
    pub violations: u64,
    /// How many distinct conversations broke it.
    pub conversations_broken: u64,
    /// Goals: how many conversations were checked (the trials of the task).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checked: Option<u64>,
    pub first_violation: Option<Violation>,
}

/// What is known about one conversation.
#[derive(Debug, Clone, Default)]
pub struct ConversationAccount {
    pub started_at_us: Option<u64>,
    pub start_seq: u64,
    pub answered_at_us: Option<u64>,
    /// The latest answer (of the last turn, when a user talks back), and its seq.
    pub last_answered_at_us: Option<u64>,
    pub last_answer_seq: u64,
    /// What the answer that ended it said, when it ended otherwise than answered (the error
    /// of a failed one, the text of a blocked one): the cause of its fate.
    pub ended_text: Option<std::sync::Arc<str>>,
    pub status: Option<AnswerStatus>,
    pub cost_pusd: u64,
    pub tokens: u64,
    pub effects: BTreeMap<String, u32>,
    /// The amounts each effect carried in the conversation (decimal, millionths).
    pub amounts: BTreeMap<String, i64>,
    /// When each side effect first happened in the conversation.
    pub effects_first_us: BTreeMap<String, u64>,
    /// The user left before the answer (`user.abandon`).
    pub abandoned: bool,
    /// The agents holding the conversation (it was given to them and they have not handed it on
    /// or answered their delegator), with the time each was given it.
    pub holders: BTreeMap<ActorIdx, u64>,
    /// User messages so far, the opening one included.
    pub user_turns: u32,
    /// The length of the history the latest counted user message came with: a copy of the same
    /// message (a duplicate, the agent's delivery after an input check) is not a new turn.
    turn_history_len: Option<usize>,
    /// How the user ended it, when a user who talks back did, and where: (seq, virtual time).
    pub ending: Option<UserEnding>,
    pub ended_at: Option<(u64, u64)>,
    /// Compensating calls run for it, and those that failed.
    pub compensations: u32,
    pub compensations_failed: u32,
    /// Succeeded compensations, by what they undid (an effect, or a tool's name).
    pub compensated: BTreeMap<String, u32>,
    /// Effects its cancelled calls would have had, by effect.
    pub cancelled_effects: BTreeMap<String, u32>,
}

/// How one tool's calls went: the API behind it, as its dashboard would show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ToolStats {
    pub name: String,
    pub calls: u64,
    /// Results that were errors (`error: …`), and those by the HTTP status they name (`429`,
    /// `400`, …; `other` when none).
    pub errors: u64,
    pub errors_by_status: BTreeMap<String, u64>,
    /// Calls that waited for the API's limits (`when_busy = "queue"`), and their waits in all.
    pub queued: u64,
    pub queue_wait_us_total: u64,
}

/// What one agent's model calls used and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AgentAccount {
    /// Calls the model answered, provider errors included, counted once each as the reply left
    /// the model (received, lost on the way or delivered twice).
    pub llm_calls: u64,
    pub input_tokens: u64,
    /// The part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_pusd: u64,
}

impl AgentAccount {
    fn bill(&mut self, usage: crate::protocol::Usage) {
        self.llm_calls += 1;
        self.input_tokens += usage.input_tokens as u64;
        self.cached_input_tokens += usage.cached_input_tokens as u64;
        self.output_tokens += usage.output_tokens as u64;
        self.cost_pusd = self.cost_pusd.saturating_add(usage.cost_pusd);
    }
}

/// A live server's error, as it answered one call.
#[derive(Debug, Clone)]
pub struct ServerError {
    /// The agent that made the call.
    pub agent: Option<usize>,
    pub conv: u32,
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

/// Running totals of one run.
#[derive(Debug, Default)]
pub struct Observer {
    pub llm_calls: u64,
    /// Model calls that came back as provider errors (429, 5xx, timeouts, …).
    pub llm_errors: u64,
    /// Model calls whose tokens a live server counted.
    pub server_counted_calls: u64,
    /// What a live server said about the first error it answered.
    pub first_server_error: Option<ServerError>,
    pub input_tokens: u64,
    /// The part of `input_tokens` billed at the cached price.
    pub cached_input_tokens: u64,
    pub output_tokens: u64,
    pub cost_pusd: u64,
    /// Per agent, in scenario order.
    pub agents: Vec<AgentAccount>,
    /// The user simulators' model calls, counted apart from the agents' (and not in the totals
    /// above): they are the test harness, not the design under test.
    pub user_simulator: AgentAccount,
    pub tool_calls: u64,
    /// Per tool, in scenario order.
    pub tools: Vec<ToolStats>,
    pub effects: BTreeMap<String, u64>,
    pub conversations: Vec<ConversationAccount>,
    violations: Vec<Option<Violation>>,
    violation_counts: Vec<u64>,
    /// Per invariant, the conversations that broke it.
    broken_conversations: Vec<BTreeSet<ConvId>>,
    /// Per invariant with `tainted_by`: the labels that count.
    taint_masks: Vec<Option<Labels>>,
    /// Counts of `never` effects per (invariant, conversation or `u32::MAX` for the run).
    effect_counts: BTreeMap<(usize, u32), u64>,
    /// Labels of faults that corrupt what an answer is built on.
    corrupting: Labels,
    detectors: DetectorState,
    has_detectors: bool,
    directory: Option<Directory>,
    pub guardrails: Vec<GuardrailStats>,
    pub taint: BlastTracker,
    /// `eventually = { answered | resolved = true, within = … }` invariants: (index, within_us).
    answer_deadlines: Vec<(usize, u64)>,
    /// Deadlines still ahead: (deadline_us, invariant, conversation), earliest first, and each
    /// one's deadline by (invariant, conversation).
    deadlines_ahead: BTreeSet<(u64, usize, u32)>,
    deadline_of: BTreeMap<(usize, u32), u64>,
    /// Where a deadline passed with the conversation still unanswered: the first event after it.
    deadline_passed: BTreeMap<(usize, u32), u64>,
    /// The last delivery seen: (seq, virtual time).
    last_event: (u64, u64),
    /// The `eventually = { resolved = true }` invariants, by index.
    resolved_invariants: BTreeSet<usize>,
    /// The world's state and history, the effects' amounts, and the goals checked.
    pub world: world::WorldWatch,
    has_goals: bool,
    /// The sagas' compensating calls.
    pub compensations: recovery::Compensations,
    /// Conversations and calls cancelled, and the effects cancelled calls would have had.
    pub cancellations: recovery::Cancellations,
    /// Conversations an agent that cancels was told to cancel, or had a call stopped.
    pub cancelled_conversations: BTreeSet<ConvId>,
    /// Answers agents dropped because nobody waited for them any more, by kind.
    pub stale_answers: BTreeMap<&'static str, u64>,
    /// Per `[[human]]`: approval requests, decisions, timeouts and the queue.
    pub approvals: Vec<approval::ApprovalAccount>,
    approval_open: approval::OpenRequests,
    /// Per tool: the reviewer its approvals go to.
    tool_reviewers: Vec<Option<crate::scenario::HumanIdx>>,
}

/// Conversation accounts to make room for at the start: one per conversation the traffic opens,
/// so the accounts are not moved again and again as conversations start, but no more than
/// [`CONVERSATIONS_RESERVED_MAX`] (a run may end long before a large source is done).
fn conversations_expected(scenario: &Scenario) -> usize {
    let opened: usize = scenario.traffic.iter().map(|t| t.conversations() as usize).sum();
    opened.min(CONVERSATIONS_RESERVED_MAX)
}

const CONVERSATIONS_RESERVED_MAX: usize = 16_384;

impl Observer {
    pub fn new(scenario: &Scenario) -> Observer {
        let space = LabelSpace::new(scenario);
        let names: Vec<String> = (0..space.len()).map(|id| space.name(scenario, id)).collect();
        let mask = |glob: &str| {
            let mut labels = Labels::default();
            for (id, name) in names.iter().enumerate() {
                if glob_match(glob, name) {
                    labels.insert(id as u32);
                }
            }
            labels
        };
        let taint_masks = scenario
            .invariants
            .iter()
            .map(|i| match &i.check {
                Check::NeverEffect { tainted_by, .. } | Check::NeverOutput { tainted_by, .. } => {
                    tainted_by.as_deref().map(mask)
                }
                _ => None,
            })
            .collect();
        let mut corrupting = Labels::default();
        for (f, fault) in scenario.faults.iter().enumerate() {
            if matches!(
                fault.kind,
                FaultKind::ToolPartial
                    | FaultKind::ToolStale
                    | FaultKind::ToolEmpty
                    | FaultKind::ToolSchemaDrift
                    | FaultKind::ToolInjection
                    | FaultKind::MemoryMutate
                    | FaultKind::MemoryTruncate
                    | FaultKind::LlmTruncated
            ) {
                corrupting.insert(space.fault(f));
            }
        }
        let guardrails = scenario
            .guardrails
            .iter()
            .map(|g| GuardrailStats {
                name: g.name.clone(),
                kind: g.check.kind(),
                stage: g.stage.name(),
                action: g.action.name(),
                checks: 0,
                trips: 0,
                false_positives: 0,
                false_negatives: 0,
                failures: 0,
                latency_us_total: 0,
                verdicts: BTreeMap::new(),
            })
            .collect();
        Observer {
            violations: vec![None; scenario.invariants.len()],
            agents: vec![AgentAccount::default(); scenario.agents.len()],
            tools: scenario
                .tools
                .iter()
                .map(|t| ToolStats {
                    name: t.name.clone(),
                    ..ToolStats::default()
                })
                .collect(),
            violation_counts: vec![0; scenario.invariants.len()],
            broken_conversations: vec![BTreeSet::new(); scenario.invariants.len()],
            taint_masks,
            corrupting,
            has_detectors: scenario
                .invariants
                .iter()
                .any(|i| matches!(i.check, Check::Detect { .. })),
            directory: Some(Directory::new(scenario)),
            guardrails,
            taint: BlastTracker::new(&space),
            answer_deadlines: scenario
                .invariants
                .iter()
                .enumerate()
                .filter_map(|(i, inv)| match inv.check {
                    Check::EventuallyAnswered { within_us: Some(w) } => Some((i, w)),
                    Check::EventuallyResolved { within_us: Some(w) } => Some((i, w)),
                    _ => None,
                })
                .collect(),
            resolved_invariants: scenario
                .invariants
                .iter()
                .enumerate()
                .filter(|(_, inv)| matches!(inv.check, Check::EventuallyResolved { .. }))
                .map(|(i, _)| i)
                .collect(),
            world: world::WorldWatch::new(scenario),
            approvals: scenario
                .humans
                .iter()
                .map(|h| approval::ApprovalAccount::named(&h.name))
                .collect(),
            tool_reviewers: scenario
                .tools
                .iter()
                .map(|t| t.approval.as_ref().map(|a| a.human))
                .collect(),
            has_goals: scenario
                .invariants
                .iter()
                .any(|i| matches!(i.check, Check::Goal { .. })),
            conversations: Vec::with_capacity(conversations_expected(scenario)),
            ..Observer::default()
        }
        .with_initial_world_checked(scenario)
    }

    /// The world invariants over the records the run starts with.
    fn with_initial_world_checked(mut self, scenario: &Scenario) -> Observer {
        let mut broken = Vec::new();
        for (table, rows) in self.world.initial.tables.iter().enumerate() {
            for row in rows.values() {
                broken.extend(world::WorldWatch::check_record(scenario, table, &row.values));
            }
        }
        for (index, message) in broken {
            self.violate(
                index,
                None,
                0,
                0,
                "world".to_owned(),
                format!("at the start: {message}"),
            );
        }
        self
    }

    /// The goals of `conv`, when it ends.
    fn check_goals(&mut self, scenario: &Scenario, conv: ConvId, seq: u64, now_us: u64) {
        if !self.has_goals {
            return;
        }
        for (index, message) in self.world.check_goals(scenario, conv) {
            self.violate(index, Some(conv), seq, now_us, "world".to_owned(), message);
        }
    }

    /// A user message reached the design: the opening one starts the conversation; a follow-up
    /// opens a new turn, whose ending is not known yet.
    fn on_user_turn(&mut self, conv: ConvId, history_len: usize, seq: u64, now_us: u64) {
        let account = self.conversation(conv);
        if account.turn_history_len == Some(history_len) {
            return;
        }
        account.turn_history_len = Some(history_len);
        account.user_turns += 1;
        if account.started_at_us.is_none() {
            account.started_at_us = Some(now_us);
            account.start_seq = seq;
            self.watch_deadlines(conv, now_us);
        } else {
            account.status = None;
        }
    }

    fn conversation(&mut self, conv: u32) -> &mut ConversationAccount {
        let index = conv as usize;
        if self.conversations.len() <= index {
            self.conversations.resize_with(index + 1, ConversationAccount::default);
        }
        &mut self.conversations[index]
    }

    /// `conv` started at `now_us`: its answer deadlines count from now.
    fn watch_deadlines(&mut self, conv: ConvId, now_us: u64) {
        for &(invariant, within_us) in &self.answer_deadlines {
            let deadline_us = now_us.saturating_add(within_us);
            if let Some(old) = self.deadline_of.insert((invariant, conv), deadline_us) {
                self.deadlines_ahead.remove(&(old, invariant, conv));
            }
            self.deadlines_ahead.insert((deadline_us, invariant, conv));
        }
    }

    /// Deadlines before `now_us` have passed: note where (for a resolution deadline, only while
    /// the conversation is still open), so a violation is marked when the deadline passed, not
    /// when the conversation started.
    fn pass_deadlines(&mut self, seq: u64, now_us: u64) {
        while let Some(&(deadline_us, invariant, conv)) = self.deadlines_ahead.first() {
            if deadline_us >= now_us {
                break;
            }
            self.deadlines_ahead.pop_first();
            self.deadline_of.remove(&(invariant, conv));
            let waiting_for_resolution = self.resolution_deadline(invariant);
            let still_waiting = self
                .conversations
                .get(conv as usize)
                .is_some_and(|c| match waiting_for_resolution {
                    true => c.ended_at.is_none(),
                    // Whether the conversation's last answer is yet to come is known only at
                    // the end (a user may talk on): the answer check reads this place only for
                    // a conversation that was answered late or never.
                    false => true,
                });
            if still_waiting {
                self.deadline_passed.insert((invariant, conv), seq);
            }
        }
    }

    /// Whether invariant `index`'s deadline waits for the user to end the conversation (rather
    /// than for an answer).
    fn resolution_deadline(&self, index: usize) -> bool {
        self.resolved_invariants.contains(&index)
    }

    /// Who holds `conv` after this delivery: an agent that receives it holds it; one that handed
    /// it off, or answered the agent that delegated to it, no longer does.
    fn track_holders(&mut self, conv: ConvId, envelope: &Envelope, now_us: u64) {
        let Some(directory) = self.directory else {
            return;
        };
        let released = match &envelope.payload {
            Payload::Agent(AgentMsg::Start {
                origin: Origin::Handoff(from),
                ..
            }) => Some(directory.agent(*from)),
            Payload::Agent(AgentMsg::DelegateResult { from_agent, .. }) => Some(directory.agent(*from_agent)),
            _ => None,
        };
        let to_agent = directory.locate(envelope.to).0 == ActorKind::Agent;
        let taken = matches!(envelope.payload, Payload::Agent(AgentMsg::Start { .. }));
        let account = self.conversation(conv);
        if let Some(released) = released {
            account.holders.remove(&released);
        }
        // An agent holds a conversation from when it was given it; later deliveries (a reply
        // that a restarted incarnation ignores) do not renew the hold.
        if to_agent && taken {
            account.holders.insert(envelope.to, now_us);
        } else if to_agent {
            account.holders.entry(envelope.to).or_insert(now_us);
        }
    }

    /// The cost and token invariants, after a model call's spend is counted.
    fn check_spend(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        conv: ConvId,
        usage: crate::protocol::Usage,
        actor: &dyn Fn() -> String,
    ) {
        let tokens = (usage.input_tokens + usage.output_tokens) as u64;
        let account = self.conversation(conv);
        account.cost_pusd = account.cost_pusd.saturating_add(usage.cost_pusd);
        account.tokens += tokens;
        let (conv_cost, conv_tokens) = (account.cost_pusd, account.tokens);
        let (run_cost, run_tokens) = (self.cost_pusd, self.input_tokens + self.output_tokens);
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let broken = match invariant.check {
                Check::CostMax { cost_pusd_max, per } => {
                    let spent = if per == Per::Conversation { conv_cost } else { run_cost };
                    (spent > cost_pusd_max).then(|| {
                        format!(
                            "cost {} exceeds {} per {}",
                            format_usd(spent),
                            format_usd(cost_pusd_max),
                            per.name()
                        )
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
                    Some(conv),
                    seq,
                    now_us,
                    actor(),
                    format!("conversation {conv}: {message}"),
                );
            }
        }
    }

    /// The `never_output` invariants, on an answer to the user.
    fn check_output(&mut self, scenario: &Scenario, seq: u64, now_us: u64, conv: ConvId, text: &str, labels: &Labels) {
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let Check::NeverOutput { test, .. } = &invariant.check else {
                continue;
            };
            if self.taint_masks[index]
                .as_ref()
                .is_some_and(|mask| !mask.intersects(labels))
            {
                continue;
            }
            let found = match test {
                OutputTest::Pii(entities) => crate::guard::pii::find(text, entities)
                    .first()
                    .map(|(_, entity)| format!("contains personal data ({})", entity.name())),
                OutputTest::Matches(re) => re.find(text).map(|m| format!("matches \"{}\"", m.as_str())),
                OutputTest::Any => Some("descends from the source".to_owned()),
            };
            if let Some(found) = found {
                let message = format!("conversation {conv}: the answer {found}");
                self.violate(index, Some(conv), seq, now_us, "user".to_owned(), message);
            }
        }
    }

    /// The failure-mode detectors, on one delivery.
    fn detect(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        envelope: &Envelope,
        labels: &Labels,
        actor_id: &dyn Fn(ActorIdx) -> String,
    ) {
        let directory = self.directory.expect("set by new");
        let mut fired: Vec<(Detector, String)> = Vec::new();
        let receiver = directory.locate(envelope.to).1;
        let state = &mut self.detectors;
        match &envelope.payload {
            Payload::Agent(AgentMsg::Start {
                conv, origin, history, ..
            }) => {
                state.conv_agent.insert(*conv, receiver);
                state.max_turn.remove(&(receiver, *conv));
                if matches!(origin, Origin::Handoff(_)) && history.is_empty() {
                    fired.push((
                        Detector::LostHandoffContext,
                        format!("conversation {conv}: the handoff arrived without the conversation"),
                    ));
                }
            }
            Payload::Agent(AgentMsg::Revise { conv, .. }) => {
                state.max_turn.remove(&(receiver, *conv));
            }
            Payload::Llm(LlmMsg::Complete(request)) => model_call_findings(state, scenario, request, &mut fired),
            Payload::Tool(ToolMsg::Invoke { conv, agent, call }) => {
                state.tool_error_pending.remove(conv);
                let tool = &scenario.tools[receiver].name;
                if !scenario.agents[*agent].tools.contains(&receiver) {
                    fired.push((
                        Detector::DisobeyedRole,
                        format!(
                            "conversation {conv}: agent {} called tool {tool}, which it was not given",
                            scenario.agents[*agent].name
                        ),
                    ));
                }
                let key = format!("{tool}({})", call.args_text());
                let count = state.repeats.entry((*conv, *agent, key.clone())).or_default();
                *count += 1;
                let count = *count;
                for (index, invariant) in scenario.invariants.iter().enumerate() {
                    if let Check::Detect {
                        detector: Detector::StepRepetition,
                        threshold,
                    } = invariant.check
                    {
                        if count == threshold {
                            let message = format!("conversation {conv}: {key} called {count} times");
                            self.violate(index, Some(*conv), seq, now_us, actor_id(envelope.to), message);
                        }
                    }
                }
            }
            Payload::Agent(AgentMsg::ToolResult { conv, output, .. }) => {
                state.tool_results.insert(*conv);
                if output.starts_with("error") {
                    state.tool_error_pending.insert(*conv);
                } else {
                    state.tool_error_pending.remove(conv);
                }
            }
            Payload::User(UserMsg::Answer {
                conv,
                status: AnswerStatus::Answered,
                ..
            }) => answer_findings(state, &self.corrupting, scenario, *conv, labels, &mut fired),
            _ => {}
        }
        for (detector, message) in fired {
            for (index, invariant) in scenario.invariants.iter().enumerate() {
                if matches!(invariant.check, Check::Detect { detector: d, .. } if d == detector) {
                    let conv = envelope.payload.conv();
                    self.violate(index, conv, seq, now_us, actor_id(envelope.to), message.clone());
                }
            }
        }
    }

    /// Whether a delivery was sent by a tool.
    fn sent_by_tool(&self, envelope: &Envelope) -> bool {
        self.directory
            .is_some_and(|d| d.locate(envelope.from).0 == ActorKind::Tool)
    }

    /// A tool's result that is an error counts against the tool, by the status it names.
    fn count_tool_error(&mut self, tool: usize, output: &str) {
        if !output.starts_with("error") {
            return;
        }
        if let Some(stats) = self.tools.get_mut(tool) {
            stats.errors += 1;
            *stats.errors_by_status.entry(error_status(output)).or_default() += 1;
        }
    }

    fn violate(&mut self, index: usize, conv: Option<ConvId>, seq: u64, t_us: u64, actor: String, message: String) {
        self.violation_counts[index] += 1;
        if let Some(conv) = conv {
            self.broken_conversations[index].insert(conv);
        }
        // The first is the earliest, whatever order the checks ran in (a model call is billed
        // at the time its answer leaves the model; end-of-run checks go conversation by
        // conversation).
        let earlier = self.violations[index]
            .as_ref()
            .is_none_or(|first| (t_us, seq) < (first.t_us, first.seq));
        if earlier {
            self.violations[index] = Some(Violation {
                seq,
                t_us,
                actor,
                message,
            });
        }
    }

    /// `eventually = { resolved = true }`: every conversation ends with its user saying the
    /// matter is settled, by the deadline if there is one. A violation is marked where it became
    /// certain: when the deadline passed, or when the conversation ended otherwise.
    fn check_resolved(&mut self, index: usize, within_us: Option<u64>) {
        let broken: Vec<(usize, u64, u64, String)> = self
            .conversations
            .iter()
            .enumerate()
            .filter_map(|(conv, account)| {
                let started = account.started_at_us?;
                let deadline = within_us.map(|w| started.saturating_add(w));
                let passed =
                    deadline.and_then(|d| self.deadline_passed.get(&(index, conv as u32)).map(|&seq| (seq, d)));
                let (seq, at_us) = match (passed, account.ended_at) {
                    (Some(at), _) => at,
                    (None, Some(at)) => at,
                    // The user had nothing more to say to the last answer: it ended there.
                    (None, None) if account.status.is_some() => {
                        (account.last_answer_seq, account.last_answered_at_us.unwrap_or(started))
                    }
                    (None, None) => self.last_event,
                };
                let what = match (account.ending, account.ended_at, deadline) {
                    (Some(UserEnding::Resolved), Some((_, ended)), Some(d)) if ended > d => format!(
                        "was resolved {} after it started, later than {}",
                        format_duration_us(ended - started),
                        format_duration_us(within_us.unwrap_or(0))
                    ),
                    (Some(UserEnding::Resolved), _, _) => return None,
                    (Some(other), _, _) => format!("ended {} instead of resolved", other.name()),
                    (None, _, _) => format!(
                        "ended {} instead of resolved by its user",
                        account.status.map_or("unanswered", |s| s.name())
                    ),
                };
                Some((conv, seq, at_us, what))
            })
            .collect();
        for (conv, seq, at_us, what) in broken {
            self.violate(
                index,
                Some(conv as ConvId),
                seq,
                at_us,
                "user".to_owned(),
                format!("conversation {conv} {what}"),
            );
        }
    }

    /// Final verdicts, after the last event.
    pub fn finish(&mut self, scenario: &Scenario) -> Vec<InvariantResult> {
        // A conversation that never ended is judged by the world the run left.
        let (seq, at_us) = self.last_event;
        let started: Vec<ConvId> = (0..self.conversations.len() as u32)
            .filter(|&c| self.conversations[c as usize].started_at_us.is_some())
            .collect();
        for conv in started {
            self.check_goals(scenario, conv, seq, at_us);
        }
        self.check_stranded(scenario);
        self.close_queues(at_us);
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            if let Check::EventuallyEffect { effect, within_us } = &invariant.check {
                let missing: Vec<(usize, u64, u64, String)> = self
                    .conversations
                    .iter()
                    .enumerate()
                    .filter_map(|(conv, account)| {
                        let started = account.started_at_us?;
                        let what = match (account.effects_first_us.get(effect), within_us) {
                            (None, _) => format!("never had effect {effect}"),
                            (Some(at), Some(within)) if at.saturating_sub(started) > *within => {
                                format!(
                                    "had effect {effect} {} after it started, later than {}",
                                    format_duration_us(at - started),
                                    format_duration_us(*within)
                                )
                            }
                            _ => return None,
                        };
                        Some((conv, account.start_seq, started, what))
                    })
                    .collect();
                for (conv, seq, started, what) in missing {
                    self.violate(
                        index,
                        Some(conv as ConvId),
                        seq,
                        started,
                        "user".to_owned(),
                        format!("conversation {conv} {what}"),
                    );
                }
                continue;
            }
            if let Check::EventuallyResolved { within_us } = invariant.check {
                self.check_resolved(index, within_us);
                continue;
            }
            let Check::EventuallyAnswered { within_us } = invariant.check else {
                continue;
            };
            let late: Vec<_> = self
                .conversations
                .iter()
                .enumerate()
                .filter_map(|(conv, account)| {
                    let started = account.started_at_us?;
                    if account.abandoned {
                        return None; // nobody is waiting for this answer
                    }
                    let deadline = within_us.map(|w| started.saturating_add(w));
                    // A late or missing answer broke the invariant when the deadline passed.
                    // A run that ends first ends the wait: then it broke at the last event.
                    // The answer that ended the conversation: its last turn's (a dialogue's
                    // first answer may be a question back), none while a user's message waits.
                    let ending = account.status.map(|status| {
                        let at_us = account.last_answered_at_us.unwrap_or(started);
                        (status, account.last_answer_seq, at_us)
                    });
                    let (late_seq, late_us) = match deadline {
                        Some(deadline) => match self.deadline_passed.get(&(index, conv as u32)) {
                            Some(&seq) => (seq, deadline),
                            None if ending.is_none() && self.last_event.1 < deadline => self.last_event,
                            None => (account.start_seq, deadline),
                        },
                        // No deadline: an answer that never came broke it when the run ended.
                        None => self.last_event,
                    };
                    match (ending, deadline) {
                        (None, _) if account.answered_at_us.is_none() => {
                            Some((conv, late_seq, late_us, "was never answered".to_owned()))
                        }
                        (None, _) => Some((
                            conv,
                            late_seq,
                            late_us,
                            format!("was never answered after its user's message {}", account.user_turns),
                        )),
                        // It broke where the conversation ended otherwise.
                        (Some((status, seq, at_us)), _) if status != AnswerStatus::Answered => {
                            Some((conv, seq, at_us, format!("ended {} instead of answered", status.name())))
                        }
                        (Some((_, _, answered)), Some(deadline)) if answered > deadline => Some((
                            conv,
                            late_seq,
                            late_us,
                            format!(
                                "was answered {} after it started, later than {}",
                                format_duration_us(answered - started),
                                format_duration_us(within_us.unwrap_or(0))
                            ),
                        )),
                        _ => None,
                    }
                })
                .collect();
            for (conv, seq, started, what) in late {
                self.violate(
                    index,
                    Some(conv as ConvId),
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
            .zip(self.violations.iter().zip(&self.violation_counts))
            .zip(&self.broken_conversations)
            .enumerate()
            .map(|(index, ((invariant, (violation, count)), broken))| InvariantResult {
                name: invariant.name.clone(),
                passed: violation.is_none(),
                violations: *count,
                conversations_broken: broken.len() as u64,
                checked: matches!(invariant.check, Check::Goal { .. })
                    .then(|| self.world.goal_checked.get(&index).copied().unwrap_or(0)),
                first_violation: violation.clone(),
            })
            .collect()
    }
}

/// The HTTP status an error result names (`error: 429 Too Many Requests` → `429`), or `other`.
fn error_status(output: &str) -> String {
    let code = output.trim_start_matches("error:").trim_start();
    let digits: String = code.chars().take_while(char::is_ascii_digit).collect();
    match digits.len() == 3 && code[3..].starts_with([' ', ':']) {
        true => digits,
        false => "other".to_owned(),
    }
}

/// What the detectors find in a model call: a handoff without the conversation, a conversation
/// set back to an earlier turn.
fn model_call_findings(
    state: &mut DetectorState,
    scenario: &Scenario,
    request: &crate::protocol::LlmRequest,
    fired: &mut Vec<(Detector, String)>,
) {
    // The detectors watch agents; a user simulator's calls are the user's business.
    let Caller::Agent(agent) = request.caller else {
        return;
    };
    // What the model sees after a handoff: nothing of the conversation.
    if matches!(request.origin, Origin::Handoff(_)) && request.turn == 1 && request.transcript.is_empty() {
        fired.push((
            Detector::LostHandoffContext,
            format!(
                "conversation {}: agent {} took the handoff without the conversation",
                request.conv, scenario.agents[agent].name
            ),
        ));
    }
    let key = (agent, request.conv);
    let max = state.max_turn.entry(key).or_insert(0);
    if request.turn < *max && request.feedback.is_empty() {
        fired.push((
            Detector::ConversationReset,
            format!(
                "conversation {}: agent {} is at turn {} after turn {}",
                request.conv, scenario.agents[agent].name, request.turn, max
            ),
        ));
    }
    *max = (*max).max(request.turn);
}

/// What the detectors find in an answer: it ignored a tool error, used none of the agent's
/// tools, or is built on data a fault corrupted.
fn answer_findings(
    state: &DetectorState,
    corrupting: &Labels,
    scenario: &Scenario,
    conv: ConvId,
    labels: &Labels,
    fired: &mut Vec<(Detector, String)>,
) {
    if state.tool_error_pending.contains(&conv) {
        fired.push((
            Detector::IgnoredToolError,
            format!("conversation {conv}: answered right after a tool error, without trying again"),
        ));
    }
    if let Some(agent) = state.conv_agent.get(&conv) {
        if !scenario.agents[*agent].tools.is_empty() && !state.tool_results.contains(&conv) {
            fired.push((
                Detector::PrematureTermination,
                format!(
                    "conversation {conv}: agent {} answered without using any of its tools",
                    scenario.agents[*agent].name
                ),
            ));
        }
    }
    if labels.intersects(corrupting) {
        fired.push((
            Detector::UnverifiedAnswer,
            format!("conversation {conv}: the answer is built on data a fault corrupted"),
        ));
    }
}

impl Observe for Observer {
    /// Accounts for one delivery; `actor_id` names the receiver for violations.
    fn on_deliver(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        envelope: &Envelope,
        labels: &Labels,
        actor_id: &dyn Fn(ActorIdx) -> String,
    ) {
        if self.has_detectors {
            self.detect(scenario, seq, now_us, envelope, labels, actor_id);
        }
        self.pass_deadlines(seq, now_us);
        self.last_event = (seq, now_us);
        if let Some(conv) = envelope.payload.conv() {
            self.track_holders(conv, envelope, now_us);
        }
        match &envelope.payload {
            Payload::Agent(AgentMsg::Start {
                conv,
                origin: Origin::User,
                history,
                ..
            }) => self.on_user_turn(*conv, history.len(), seq, now_us),
            Payload::Human(_)
            | Payload::Tool(ToolMsg::Reviewed { .. })
            | Payload::Tool(ToolMsg::ApprovalTimeout { .. }) => {
                self.on_approval(envelope.to, &envelope.payload, now_us)
            }
            // Behind input guardrails, a user turn starts when the first of them gets it.
            Payload::Guardrail(crate::protocol::GuardrailMsg::Check(checked))
                if checked.stage == crate::scenario::guardrail::Stage::Input
                    && checked.position == 0
                    && !checked.parallel =>
            {
                if let Payload::Agent(AgentMsg::Start {
                    origin: Origin::User,
                    history,
                    ..
                }) = &checked.subject
                {
                    self.on_user_turn(checked.conv, history.len(), seq, now_us);
                }
            }
            Payload::User(UserMsg::End { conv, ending, .. }) => {
                let account = self.conversation(*conv);
                if account.ending.is_none() {
                    account.ending = Some(*ending);
                    account.ended_at = Some((seq, now_us));
                }
                if *ending == UserEnding::Abandoned {
                    account.abandoned = true;
                }
                // Without a user who talks back, the answer ends the conversation, not this.
                if scenario.user_of(*conv).is_some() {
                    self.check_goals(scenario, *conv, seq, now_us);
                }
            }
            Payload::Agent(AgentMsg::Cancel { conv }) => {
                if let Some((ActorKind::Agent, agent)) = self.directory.map(|d| d.locate(envelope.to)) {
                    if scenario.agents[agent].cancellation == crate::scenario::Cancellation::Cancel {
                        self.cancelled_conversations.insert(*conv);
                    }
                }
            }
            Payload::Tool(ToolMsg::Invoke { .. }) | Payload::Tool(ToolMsg::Compensate { .. }) => {
                if let Payload::Tool(ToolMsg::Compensate { conv, .. }) = &envelope.payload {
                    self.on_compensate(*conv);
                }
                self.tool_calls += 1;
                if let Some((ActorKind::Tool, tool)) = self.directory.map(|d| d.locate(envelope.to)) {
                    if let Some(stats) = self.tools.get_mut(tool) {
                        stats.calls += 1;
                    }
                }
            }
            Payload::Tool(ToolMsg::Run(queued)) => {
                if let Some((ActorKind::Tool, tool)) = self.directory.map(|d| d.locate(envelope.to)) {
                    if let Some(stats) = self.tools.get_mut(tool) {
                        stats.queued += 1;
                        stats.queue_wait_us_total += now_us.saturating_sub(queued.queued_at_us);
                    }
                }
            }
            Payload::User(UserMsg::Compensated {
                conv, tool, of, output, ..
            }) => {
                self.on_compensated(scenario, *conv, *of, output);
                self.count_tool_error(*tool, output);
            }
            // A tool's own result, on its way to the agent or to the first `tool_output` check:
            // a `tool_call` guardrail's block also reaches the agent as a tool result, but the
            // tool never saw that call.
            Payload::Agent(AgentMsg::ToolResult { tool, output, .. }) if self.sent_by_tool(envelope) => {
                self.count_tool_error(*tool, output)
            }
            Payload::Guardrail(crate::protocol::GuardrailMsg::Check(checked)) if self.sent_by_tool(envelope) => {
                if let Payload::Agent(AgentMsg::ToolResult { tool, output, .. }) = &checked.subject {
                    self.count_tool_error(*tool, output);
                }
            }
            Payload::User(UserMsg::Answer { conv, status, text, .. }) => {
                let account = self.conversation(*conv);
                // The first answer of a turn is how the turn ended; `answered_at_us` is the
                // conversation's first answer.
                account.answered_at_us.get_or_insert(now_us);
                if account.status.is_none() {
                    account.status = Some(*status);
                    account.last_answered_at_us = Some(now_us);
                    account.last_answer_seq = seq;
                    if *status != AnswerStatus::Answered {
                        account.ended_text = Some(text.clone());
                    }
                }
                self.check_output(scenario, seq, now_us, *conv, text, labels);
                // Without a user who talks back, the answer ends the conversation.
                if scenario.user_of(*conv).is_none() {
                    self.check_goals(scenario, *conv, seq, now_us);
                }
            }
            _ => {}
        }
    }

    /// Bills a model call as its answer leaves the model: the run's, the agent's and the
    /// conversation's accounts, and the budget invariants.
    fn on_model_reply(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        conv: ConvId,
        caller: ReplyFor,
        reply: &crate::protocol::ModelReply,
        actor_id: &dyn Fn(ActorIdx) -> String,
    ) {
        let usage = reply.usage;
        let agent = match caller {
            ReplyFor::User => {
                self.user_simulator.bill(usage);
                return;
            }
            ReplyFor::Agent(agent) => agent,
        };
        self.llm_calls += 1;
        if let crate::protocol::ModelAnswer::Error(error) = &reply.answer {
            self.llm_errors += 1;
            if let (None, Some(message)) = (&self.first_server_error, &error.message) {
                self.first_server_error = Some(ServerError {
                    agent: Some(agent),
                    conv,
                    status: error.status,
                    code: error.code,
                    message: message.to_string(),
                });
            }
        }
        self.input_tokens += usage.input_tokens as u64;
        self.cached_input_tokens += usage.cached_input_tokens as u64;
        self.server_counted_calls += u64::from(usage.counted_by_server);
        self.output_tokens += usage.output_tokens as u64;
        self.cost_pusd = self.cost_pusd.saturating_add(usage.cost_pusd);
        if let Some(account) = self.agents.get_mut(agent) {
            account.bill(usage);
        }
        let directory = self.directory;
        let agent_id = || directory.map_or_else(|| format!("agent #{agent}"), |d| actor_id(d.agent(agent)));
        self.check_spend(scenario, seq, now_us, conv, usage, &agent_id);
    }

    /// A message the network lost: a lost opening message still opened a conversation (the
    /// user is waiting for an answer that will not come).
    fn on_lost(&mut self, seq: u64, now_us: u64, envelope: &Envelope) {
        if let Payload::Agent(AgentMsg::Start {
            conv,
            origin: Origin::User,
            history,
            ..
        }) = &envelope.payload
        {
            self.on_user_turn(*conv, history.len(), seq, now_us);
        }
    }

    fn on_call_cancelled(&mut self, conv: ConvId) {
        self.cancellations.calls += 1;
        self.cancelled_conversations.insert(conv);
    }

    fn on_stale(&mut self, _conv: ConvId, kind: &'static str) {
        *self.stale_answers.entry(kind).or_default() += 1;
    }

    /// The user of `conv` left; whatever answer comes reaches nobody.
    fn on_abandon(&mut self, conv: ConvId) {
        self.conversation(conv).abandoned = true;
    }

    /// Tallies a guardrail's verdict.
    fn on_verdict(&mut self, record: &VerdictRecord) {
        let Some(stats) = self.guardrails.get_mut(record.guardrail) else {
            return;
        };
        stats.checks += 1;
        stats.trips += u64::from(record.tripped);
        stats.false_positives += u64::from(record.mistake == Some(Mistake::FalsePositive));
        stats.false_negatives += u64::from(record.mistake == Some(Mistake::FalseNegative));
        stats.failures += u64::from(record.verdict == Verdict::Error);
        stats.latency_us_total += record.latency_us;
        *stats.verdicts.entry(record.verdict.name()).or_default() += 1;
    }

    /// Counts a side effect that a tool reports having executed, and its amount.
    fn on_side_effect(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        actor: &str,
        side_effect: crate::engine::SideEffect,
        labels: &Labels,
    ) {
        let crate::engine::SideEffect {
            conv,
            effect,
            times,
            amount,
            subject,
            cancelled,
        } = side_effect;
        if cancelled {
            return self.on_cancelled_effect(conv, effect, times);
        }
        let total = amount.map(|a| a.saturating_mul(times as i64));
        self.taint.on_side_effect(labels, seq, now_us, actor, effect, total);
        if let Some(amount) = amount {
            let account = self.conversation(conv);
            let total = account.amounts.entry(effect.to_owned()).or_default();
            *total = total.saturating_add(amount.saturating_mul(times as i64));
            for (index, message) in self.world.on_amount(scenario, conv, effect, times, amount, subject) {
                self.violate(index, Some(conv), seq, now_us, actor.to_owned(), message);
            }
        }
        *self.effects.entry(effect.to_owned()).or_default() += times as u64;
        let account = self.conversation(conv);
        *account.effects.entry(effect.to_owned()).or_default() += times;
        account.effects_first_us.entry(effect.to_owned()).or_insert(now_us);
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let Check::NeverEffect {
                effect: watched,
                more_than,
                per,
                tainted_by,
            } = &invariant.check
            else {
                continue;
            };
            if watched != effect
                || self.taint_masks[index]
                    .as_ref()
                    .is_some_and(|mask| !mask.intersects(labels))
            {
                continue;
            }
            let scope = if *per == Per::Conversation { conv } else { u32::MAX };
            let seen = self.effect_counts.entry((index, scope)).or_default();
            *seen += times as u64;
            let seen = *seen;
            if seen > *more_than as u64 {
                let from = tainted_by
                    .as_deref()
                    .map(|t| format!(" descending from {t}"))
                    .unwrap_or_default();
                let message = format!(
                    "conversation {conv}: effect {effect}{from} happened {seen} times, more than {more_than} per {}",
                    per.name()
                );
                self.violate(index, Some(conv), seq, now_us, actor.to_owned(), message);
            }
        }
    }

    /// Mirrors a change of the world and checks the world invariants on the changed record.
    fn on_world(
        &mut self,
        scenario: &Scenario,
        seq: u64,
        now_us: u64,
        actor: &str,
        conv: ConvId,
        change: &crate::protocol::WorldChange,
        lost: bool,
        labels: &Labels,
    ) {
        for (index, message) in self.world.on_change(scenario, conv, change, lost, labels) {
            let message = format!("conversation {conv}: {message}");
            self.violate(index, Some(conv), seq, now_us, actor.to_owned(), message);
        }
    }

    fn on_taint_source(&mut self, label: u32, seq: u64, now_us: u64, actor: ActorIdx) {
        self.taint.on_source(label, seq, now_us, actor);
    }

    fn on_taint_reach(&mut self, labels: &Labels, seq: u64, now_us: u64, to: ActorIdx, payload: &Payload) {
        self.taint.on_reach(labels, seq, now_us, to, payload);
    }

    fn on_taint_stopped(&mut self, labels: &Labels, guardrail: &str, seq: u64, now_us: u64) {
        self.taint.on_stopped(labels, guardrail, seq, now_us);
    }

    fn has_unanswered(&self) -> bool {
        self.conversations
            .iter()
            .any(|c| c.started_at_us.is_some() && c.status.is_none() && !c.abandoned)
    }
}
