//! Renderings of a run or a sweep for people: self-contained HTML reports (`html`) and Mermaid
//! sequence diagrams (`mermaid`). Each is a pure function of its inputs (a run directory, a
//! sweep's results): the same inputs always give the same bytes.

pub mod html;
pub mod mermaid;

/// Where an actor's lane or participant goes, by the kind in its logical id: the user first,
/// then agents, guardrails, tools, models and supervisors.
pub fn actor_kind_rank(logical_id: &str) -> u8 {
    match logical_id.split(':').next().unwrap_or("") {
        "user" => 0,
        "agent" => 1,
        "guardrail" => 2,
        "tool" => 3,
        "human" => 4,
        "llm" => 5,
        "supervisor" => 6,
        _ => 7,
    }
}

/// The logical id of the guardrail a `guard` record names: the record carries the bare name
/// (`pii-filter`) while deliveries to and from it use `guardrail:pii-filter`, so both map to
/// one lane or participant.
pub fn guardrail_actor(name: &str) -> String {
    if name.starts_with("guardrail:") {
        name.to_owned()
    } else {
        format!("guardrail:{name}")
    }
}
