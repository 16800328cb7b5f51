//! Assembles `report.json` from what the engine knows at the end of a run and what the observer
//! accounted along the way.

use super::{AgentCost, ConversationCost, Conversations, RunReport, Tokens, UserTurns, REPORT_SCHEMA_VERSION};
use crate::engine::EngineRun;
use crate::kernel::ActorIdx;
use crate::observe::Observer;
use crate::protocol::AnswerStatus;
use crate::scenario::Scenario;

/// The run's report: what the engine knows, the observer's accounts and its invariant verdicts.
pub fn assemble(scenario: &Scenario, run: EngineRun, observer: &mut Observer, replay_command: String) -> RunReport {
    let invariants = observer.finish(scenario);
    let fates = super::fate::fates(&run, observer);
    let o = &*observer;
    let fate_by_conversation = (0..o.conversations.len() as u32)
        .map(|conv| fates.outcomes.get(&conv).map(|o| o.fate))
        .collect();
    let started: Vec<_> = o.conversations.iter().filter(|c| c.started_at_us.is_some()).collect();
    // Each conversation counted once: one whose user left counts as abandoned, not also under
    // the ending it reached (an answer nobody read is not "answered").
    let stayed: Vec<_> = started.iter().filter(|c| !c.abandoned).collect();
    // A user who wanted to say more than `max_user_turns` allows ended it out of turns, whatever
    // the last answer was.
    let out_of_user_turns =
        |c: &&&crate::observe::ConversationAccount| c.ending == Some(crate::protocol::UserEnding::MaxUserTurns);
    let answered = stayed
        .iter()
        .filter(|c| c.status == Some(AnswerStatus::Answered) && !out_of_user_turns(c))
        .count() as u64;
    let max_turns = stayed
        .iter()
        .filter(|c| {
            matches!(c.status, Some(AnswerStatus::MaxTurns | AnswerStatus::MaxHandoffs)) || out_of_user_turns(c)
        })
        .count() as u64;
    let ended = |status: AnswerStatus| {
        stayed
            .iter()
            .filter(|c| c.status == Some(status) && !out_of_user_turns(c))
            .count() as u64
    };
    let failed = ended(AnswerStatus::Failed);
    let (blocked, halted, escalated) = (
        ended(AnswerStatus::Blocked),
        ended(AnswerStatus::Halted),
        ended(AnswerStatus::Escalated),
    );
    RunReport {
        schema_version: REPORT_SCHEMA_VERSION,
        agentsim_version: env!("CARGO_PKG_VERSION").to_owned(),
        scenario: scenario.name.clone(),
        scenario_hash: scenario.source_hash.clone(),
        seed: run.seed,
        profile: run.profile,
        outcome: run.outcome,
        outcome_detail: run.outcome_detail,
        digest: run.digest,
        virtual_time_us: run.virtual_time_us,
        events: run.events,
        messages: run.messages,
        llm_calls: o.llm_calls,
        llm_errors: o.llm_errors,
        first_server_error: o.first_server_error.as_ref().map(|e| {
            let agent = e.agent.map_or("?", |a| scenario.agents[a].name.as_str());
            format!(
                "{} {} to agent:{agent} in conversation {}: {}",
                e.status, e.code, e.conv, e.message
            )
        }),
        tool_calls: o.tool_calls,
        tools: o.tools.clone(),
        tokens: Tokens {
            input: o.input_tokens,
            cached_input: o.cached_input_tokens,
            output: o.output_tokens,
            total: o.input_tokens + o.output_tokens,
            counted_by_server_calls: o.server_counted_calls,
        },
        cost_usd: crate::scenario::units::usd_from_pusd(o.cost_pusd),
        cost_pusd: o.cost_pusd,
        cost_by_agent: scenario
            .agents
            .iter()
            .zip(&o.agents)
            .filter(|(_, account)| account.llm_calls > 0)
            .map(|(agent, account)| (agent.name.clone(), AgentCost::from_account(account)))
            .collect(),
        cost_per_conversation: ConversationCost::from_costs(
            &o.conversations
                .iter()
                .enumerate()
                .filter(|(_, c)| c.started_at_us.is_some())
                .map(|(conv, c)| (conv as u32, c.cost_pusd))
                .collect::<Vec<_>>(),
        ),
        conversations: Conversations {
            started: started.len() as u64,
            answered,
            max_turns,
            failed,
            unanswered: stayed.len() as u64 - answered - max_turns - failed - blocked - halted - escalated,
            abandoned: (started.len() - stayed.len()) as u64,
            blocked,
            halted,
            escalated,
        },
        user_turns: {
            let total: u64 = started.iter().map(|c| c.user_turns as u64).sum();
            UserTurns {
                total,
                mean: if started.is_empty() {
                    0.0
                } else {
                    total as f64 / started.len() as f64
                },
                max: started.iter().map(|c| c.user_turns).max().unwrap_or(0),
                dialogues: o
                    .conversations
                    .iter()
                    .enumerate()
                    .filter(|(conv, c)| c.started_at_us.is_some() && scenario.user_of(*conv as u32).is_some())
                    .count() as u64,
            }
        },
        user_simulator: (o.user_simulator.llm_calls > 0).then(|| AgentCost::from_account(&o.user_simulator)),
        fates: fates.counts,
        outcomes: fates.outcomes,
        impact: None,
        impact_possible: scenario.llms.iter().all(|l| l.mode == crate::scenario::LlmMode::Mock),
        harmed: fates.harmed,
        harmed_total: fates.harmed_total,
        effects: o.effects.clone(),
        compensations: scenario.has_compensations().then(|| o.compensations.clone()),
        cancellations: scenario
            .has_cancellation()
            .then(|| crate::observe::recovery::Cancellations {
                conversations: o.cancelled_conversations.len() as u64,
                ..o.cancellations.clone()
            }),
        stale_answers: o.stale_answers.clone(),
        approvals: o.approvals.iter().map(super::ApprovalReport::from_account).collect(),
        amounts: super::world::amounts(&o.world),
        world: super::world::world_report(scenario, &o.world, &run.labels),
        faults: run.faults,
        faults_never_fired: run.never_fired,
        failures: run.failures,
        restarts: run.restarts,
        invariants,
        guardrails: o.guardrails.clone(),
        blast_radius: o.taint.report(scenario, &run.labels, &|a: ActorIdx| {
            run.logical_ids[a.index()].to_string()
        }),
        // As `conversations` counts them: an answer its user did not wait for, or a dialogue
        // ended by `max_user_turns`, is not a conversation answered.
        answered: o
            .conversations
            .iter()
            .map(|c| {
                c.status == Some(AnswerStatus::Answered)
                    && !c.abandoned
                    && c.ending != Some(crate::protocol::UserEnding::MaxUserTurns)
            })
            .collect(),
        fate_by_conversation,
        replay: replay_command,
    }
}
