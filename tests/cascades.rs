//! The cascade scenarios in `scenarios/`: each shows a real failure cascade and its cure, and
//! these tests hold them to it.

mod common;

use agentsim::report::Outcome;
use agentsim::run::{Flavor, RunOutput};
use common::*;

fn run_file(name: &str) -> RunOutput {
    let scenario = load(&repo_root().join("scenarios").join(name));
    run_in_memory(&scenario, scenario.seed, Flavor::CurrentThread)
}

#[test]
fn retry_storm_without_jitter_wastes_calls_and_fails_conversations() {
    let storm = run_file("retry-storm.toml").report;
    let cured = run_file("retry-storm-jitter.toml").report;
    assert!(
        storm.conversations.failed > 0,
        "synchronised retries run out of attempts"
    );
    assert_eq!(
        cured.conversations.answered, 40,
        "with full jitter every conversation gets through"
    );
    assert!(
        storm.llm_errors > cured.llm_errors * 3 / 2,
        "{} vs {} rate-limit errors",
        storm.llm_errors,
        cured.llm_errors
    );
    assert!(storm.llm_calls > cured.llm_calls);
    assert!(
        storm.virtual_time_us > 2 * cured.virtual_time_us,
        "the herd drains slower"
    );
}

#[test]
fn a_blind_retry_of_a_timed_out_refund_moves_the_money_twice() {
    let report = run_file("double-refund.toml").report;
    assert_eq!(report.effects.get("money_moved"), Some(&2));
    let invariant = &report.invariants[0];
    assert_eq!(invariant.name, "no double refund");
    assert!(!invariant.passed);
    assert_eq!(invariant.first_violation.as_ref().unwrap().actor, "tool:refund");
}

#[test]
fn an_idempotency_key_makes_the_blind_retry_harmless() {
    let report = run_file("double-refund-idempotent.toml").report;
    assert_eq!(report.effects.get("money_moved"), Some(&1));
    assert!(report.passed(), "{}", report.summary());
}

#[test]
fn a_poisoned_message_crash_loop_escalates_past_the_supervisor() {
    let report = run_file("crash-loop.toml").report;
    assert_eq!(report.outcome, Outcome::Escalated);
    assert_eq!(
        report.failures.len(),
        4,
        "three restarts are allowed, the fourth crash is one too many"
    );
    assert_eq!(report.restarts.len(), 3);
    let detail = report.outcome_detail.unwrap();
    assert!(detail.contains("supervisor:intake-sup gave up"), "{detail}");
    assert!(detail.contains("supervisor:root gave up"), "{detail}");
}

#[test]
fn a_breaker_and_a_fallback_model_keep_conversations_completing_through_an_outage() {
    let output = run_file("fallback-outage.toml");
    assert!(output.report.passed(), "{}", output.report.summary());
    let to_fallback = records(&output.trace)
        .iter()
        .filter(|r| r["to"] == "llm:fallback")
        .count();
    assert!(
        to_fallback > 20,
        "the fallback model carried the outage ({to_fallback} calls)"
    );
}

#[test]
fn without_the_breaker_and_fallback_the_outage_fails_conversations() {
    let text = std::fs::read_to_string(repo_root().join("scenarios/fallback-outage.toml")).unwrap();
    let unprotected: String = text
        .lines()
        .filter(|l| !l.starts_with("circuit_breaker") && !l.starts_with("fallback ="))
        .collect::<Vec<_>>()
        .join("\n");
    let report = run_in_memory(&parse(&unprotected), 4, Flavor::CurrentThread).report;
    assert!(report.conversations.failed > 20, "{}", report.summary());
    assert!(!report.invariants[0].passed);
}
