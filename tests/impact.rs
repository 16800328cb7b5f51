//! Causal impact by counterfactual: a run again without one fault firing. Conversations that
//! share nothing with the one the firing hit (no rate limit, bulkhead or breaker between them)
//! must come out byte-identical, because every draw that belongs to a conversation comes from a
//! stream of its own.

mod common;

use agentsim::engine::{execute_without, Interrupt};
use agentsim::observe::Observer;
use agentsim::run::RunOptions;
use agentsim::trace::TraceMode;
use common::{field, parse, records};

/// Six conversations of a tool loop whose tool fails now and then; nothing couples them.
const DESIGN: &str = r#"[scenario]
name = "independent"

[[llm]]
name = "gpt"
latency = { median = "300ms", p99 = "2s" }

[[tool]]
name = "lookup"
latency = { median = "80ms", p99 = "600ms" }
output = "found {{args.q}}"

[[agent]]
name = "a"
llm = "gpt"
tools = ["lookup"]
max_turns = 6
behavior = [
  { when = "last_tool_output contains 'error'", then = { answer = "sorry, the lookup failed" } },
  { when = "tool_calls < 2", then = { tool_call = "lookup", args = { q = "item {{conversation}}" } }, p = 0.8 },
  { otherwise = { answer = "found it" } },
]

[[traffic]]
kind = "script"
to = "a"
script = [
  { at = "0s", message = "one" }, { at = "100ms", message = "two" }, { at = "200ms", message = "three" },
  { at = "300ms", message = "four" }, { at = "400ms", message = "five" }, { at = "500ms", message = "six" },
]

[[fault]]
kind = "tool.error"
target = "tool:lookup"
probability = 0.3
"#;

fn trace(seed: u64, suppressed: Option<(usize, u32)>) -> Vec<u8> {
    let scenario = parse(DESIGN);
    let options = RunOptions {
        trace: TraceMode::Memory,
        ..RunOptions::new(seed)
    };
    let observer = Observer::new(&scenario);
    let (run, _) = execute_without(scenario, &options, observer, Interrupt::default(), suppressed).expect("the run");
    run.trace
}

/// Each conversation's deliveries: time, receiver and message, in order.
fn by_conversation(trace: &[u8]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in records(trace).iter().filter(|r| r["kind"] == "deliver") {
        let msg = field(r, "msg");
        if let Some(conv) = msg.split(' ').find(|kv| kv.starts_with("conv=")) {
            out.entry(conv.to_owned())
                .or_default()
                .push(format!("{} {} {msg}", r["t_us"], field(r, "to")));
        }
    }
    out
}

#[test]
fn leaving_out_one_firing_changes_its_conversation_and_no_other() {
    // A seed where the fault fires at least once.
    let (seed, base) = (0..50)
        .map(|seed| (seed, trace(seed, None)))
        .find(|(_, t)| records(t).iter().any(|r| r["kind"] == "fault"))
        .expect("some seed fires the fault");
    let fault = records(&base)
        .into_iter()
        .find(|r| r["kind"] == "fault")
        .expect("a fault record");
    // The conversation of the delivery the fault fired on.
    let hit = records(&base)
        .into_iter()
        .find(|r| r["kind"] == "deliver" && r["seq"] == fault["seq"])
        .and_then(|r| {
            field(&r, "msg")
                .split(' ')
                .find(|kv| kv.starts_with("conv="))
                .map(str::to_owned)
        })
        .expect("the fault fired on a conversation's message");

    let without = trace(seed, Some((0, 0)));
    let (before, after) = (by_conversation(&base), by_conversation(&without));
    assert_ne!(
        before[&hit], after[&hit],
        "the firing changed its own conversation ({hit})"
    );
    for (conv, deliveries) in &before {
        if *conv != hit {
            assert_eq!(Some(deliveries), after.get(conv), "{conv} must not move");
        }
    }
    assert_eq!(before.len(), after.len());
}
