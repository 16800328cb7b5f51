//! Heap use that must not grow with what a run holds: counted by a counting global allocator
//! (this test binary's own), so the bounds are counts and bytes, never times.
//!
//! - A conversation's messages are shared, not copied: the bytes allocated per message of a
//!   2,000-round-trip conversation stay those of a 250-round-trip one (a transcript copied on
//!   every append makes them grow with the conversation: quadratic in its length).
//! - The same for a model-backed agent in a long tool loop, whose transcript goes to its model on
//!   every turn.
//! - An agent of a large swarm holds a few kilobytes, not tens.

#[path = "../benches/counting/mod.rs"]
mod counting;

use std::sync::Arc;

use agentsim::run::{run, RunOptions};
use counting::{counting, Allocated, Counting};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `toml` once (after a warm-up run, so lazily built tables are not counted) and returns its
/// events and what it allocated.
fn allocated(toml: &str) -> (u64, Allocated) {
    let scenario = Arc::new(agentsim::scenario::parse("inline.toml", toml).unwrap_or_else(|e| panic!("{e}")));
    let options = RunOptions::new(scenario.seed);
    let warm = run(scenario.clone(), &options).expect("the scenario runs");
    let (output, allocated) = counting(|| run(scenario.clone(), &options).expect("the scenario runs"));
    assert_eq!(output.report.digest, warm.report.digest);
    (output.report.events, allocated)
}

fn ping_pong(round_trips: u32) -> String {
    format!(
        r#"
[scenario]
name = "ping-pong"

[[agent]]
name = "ping"
delegates = ["pong"]
max_turns = {turns}
behavior = [
  {{ when = "delegations < {round_trips}", then = {{ delegate = ["pong"], task = "ping" }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[agent]]
name = "pong"

[[traffic]]
kind = "script"
to = "ping"
script = [{{ at = "0s", message = "start" }}]
"#,
        turns = round_trips + 1
    )
}

fn tool_loop(calls: u32) -> String {
    format!(
        r#"
[scenario]
name = "tool-loop"
max_events = 1_000_000

[[llm]]
name = "fake"
latency = "0ms"
context_window = 100_000_000

[[agent]]
name = "looper"
llm = "fake"
tools = ["lookup"]
max_turns = {turns}
behavior = [
  {{ when = "tool_calls < {calls}", then = {{ tool_call = "lookup", args = {{ i = "{{{{tool_calls}}}}" }} }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[tool]]
name = "lookup"
latency = "0ms"
output = "value {{{{args.i}}}}"

[[traffic]]
kind = "script"
to = "looper"
script = [{{ at = "0s", message = "look this up" }}]
"#,
        turns = calls + 1
    )
}

/// Asserts that a long version of one conversation (`long` steps of `unit`) allocates no more
/// per event than a short one (`short` steps), in bytes and in number of allocations.
fn assert_flat_per_event(make: fn(u32) -> String, (short, long): (u32, u32), unit: &str) {
    let (short_events, short_run) = allocated(&make(short));
    let (long_events, long_run) = allocated(&make(long));
    assert!(long_events > 4 * short_events, "{long_events} vs {short_events} events");
    let per_event = |count: u64, events: u64| count as f64 / events as f64;
    for (what, short_count, long_count) in [
        ("allocations", short_run.allocations, long_run.allocations),
        ("bytes", short_run.bytes, long_run.bytes),
    ] {
        let (short_per, long_per) = (per_event(short_count, short_events), per_event(long_count, long_events));
        assert!(
            long_per < 1.5 * short_per,
            "{what} per event grow with the conversation: {short_per:.1} at {short} {unit}, {long_per:.1} at {long}"
        );
    }
}

#[test]
fn a_long_rules_conversation_allocates_no_more_per_message_than_a_short_one() {
    assert_flat_per_event(ping_pong, (250, 2_000), "round trips");
}

#[test]
fn a_long_model_tool_loop_allocates_no_more_per_message_than_a_short_one() {
    assert_flat_per_event(tool_loop, (100, 800), "tool calls");
}

#[test]
fn an_agent_of_a_swarm_holds_a_few_kilobytes() {
    let agents = 2_000;
    let toml = format!(
        r#"
[scenario]
name = "swarm"
max_events = 1_000_000

[[llm]]
name = "fake"
latency = {{ median = "500ms", p99 = "3s" }}

[[agent]]
name = "worker"
replicas = {agents}
llm = "fake"
tools = ["fetch"]
max_turns = 2
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "fetch", args = {{ conversation = "{{{{conversation}}}}" }} }} }},
  {{ otherwise = {{ answer = "fetched: {{{{last_tool_output}}}}" }} }},
]

[[tool]]
name = "fetch"
latency = {{ min = "10ms", max = "200ms" }}
output = "record {{{{args.conversation}}}}"

[[traffic]]
kind = "poisson"
to = "worker"
rate = "10000/s"
conversations = {agents}
messages = ["fetch my record"]
"#
    );
    let (_, allocated) = allocated(&toml);
    let per_agent = allocated.peak_live_bytes / agents;
    // About 10 KB today, of which ractor's task, mailboxes and ports take about 6 KB; a BLAKE3
    // hasher or an eleven-slot map node of inline state per agent would add 2–4 KB each.
    assert!(
        per_agent < 13 * 1024,
        "an agent of the swarm holds {per_agent} bytes at the run's peak"
    );
}
