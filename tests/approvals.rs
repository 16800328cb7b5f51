//! People in the loop, through the real binary at exact virtual times: a tool whose calls need
//! a reviewer's approval (`approval`, `[[human]]`), the reviewer's queue, rejections and timeouts.

mod common;

use common::*;
use serde_json::Value;

/// A desk that pays `amount` (model 1 s, payment 500 ms) and answers with the payment's result;
/// payments over 20 need the approval of a reviewer whose settings are `reviewer`. One
/// conversation opens at each of `at`.
fn approval_scenario(amount: u32, reviewer: &str, at: &[&str]) -> String {
    let script: Vec<String> = at
        .iter()
        .map(|t| format!("{{ at = \"{t}\", message = \"pay please\" }}"))
        .collect();
    format!(
        r#"
[scenario]
name = "approvals"

[[llm]]
name = "gpt"
latency = "1s"

[[agent]]
name = "desk"
llm = "gpt"
tools = ["pay"]
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "pay", args = {{ account = "acct-1", amount_usd = {amount} }} }} }},
  {{ otherwise = {{ answer = "{{{{last_tool_output}}}}" }} }},
]

[[table]]
name = "accounts"
key = "id"
fields = {{ id = "string", balance_usd = "number" }}
rows = [{{ id = "acct-1", balance_usd = 1000 }}]

[[tool]]
name = "pay"
latency = "500ms"
parameters = {{ type = "object", properties = {{ account = {{ type = "string" }}, amount_usd = {{ type = "number" }} }}, required = ["account", "amount_usd"] }}
read = {{ account = {{ table = "accounts", key = "{{{{args.account}}}}" }} }}
effect = "charged"
amount = "args.amount_usd"
output = "paid"
approval = {{ by = "reviewer", when = "args.amount_usd > 20" }}

[[tool.rules]]
update = {{ account = {{ balance_usd = "account.balance_usd - args.amount_usd" }} }}

[[human]]
name = "reviewer"
{reviewer}

[[traffic]]
kind = "script"
to = "desk"
script = [{}]
"#,
        script.join(", ")
    )
}

fn answers(records: &[Value]) -> Vec<(u64, String)> {
    records
        .iter()
        .filter(|r| r["kind"] == "deliver" && r["to"] == "user")
        .filter_map(|r| {
            let msg = r["msg"].as_str()?;
            msg.starts_with("answer")
                .then(|| (r["t_us"].as_u64().unwrap(), msg.to_owned()))
        })
        .collect()
}

#[test]
fn an_approval_that_times_out_fails_the_call_at_exactly_the_timeout_and_moves_no_money() {
    // The review takes 2 min; the request times out after 1 min.
    let (report, records) = run_binary(&approval_scenario(40, "latency = \"2m\"\ntimeout = \"1m\"", &["0s"]));
    assert_eq!(
        deliveries(&records, "human:reviewer", "review conv=0 call=0 agent=desk tool=pay"),
        [1_000_000]
    );
    assert_eq!(
        deliveries(&records, "tool:pay", "approval_timeout conv=0 call=0 agent=desk"),
        [61_000_000]
    );
    assert_eq!(
        deliveries(&records, "human:reviewer", "withdraw conv=0 call=0 agent=desk"),
        [61_000_000]
    );
    let timed_out = "tool_result conv=0 call=0 tool=pay output=\"error: 408 approval timed out: reviewer did not decide within 1m00s\"";
    assert_eq!(deliveries(&records, "agent:desk", timed_out), [61_000_000]);
    // The decision still comes, when the review is done, and changes nothing.
    assert_eq!(
        deliveries(
            &records,
            "tool:pay",
            "reviewed conv=0 call=0 agent=desk decision=approved"
        ),
        [121_000_000]
    );
    assert!(report["effects"].get("charged").is_none());
    assert_eq!(final_balance(&report), 1000.0);
    let reviewer = &report["approvals"][0];
    assert_eq!(reviewer["human"], "reviewer");
    assert_eq!(
        (reviewer["requests"].as_u64(), reviewer["timed_out"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(reviewer["late_decisions"], 1);
    assert_eq!(reviewer["approved"], 0);
    assert_eq!(reviewer["wait_us"]["max"], 60_000_000);

    // on_timeout = "approve": the call goes ahead at the timeout, and pays.
    let (report, records) = run_binary(&approval_scenario(
        40,
        "latency = \"2m\"\ntimeout = \"1m\"\non_timeout = \"approve\"",
        &["0s"],
    ));
    let paid = "tool_result conv=0 call=0 tool=pay output=\"paid\"";
    assert_eq!(deliveries(&records, "agent:desk", paid), [61_500_000]);
    assert_eq!(final_balance(&report), 960.0);
}

#[test]
fn a_reviewer_takes_requests_in_turn_and_the_second_waits_in_the_queue() {
    let (report, records) = run_binary(&approval_scenario(
        40,
        "latency = \"2m\"\ntimeout = \"10m\"\ncapacity = 1",
        &["0s", "10s", "20s"],
    ));
    // Reviews end at 2 min, 4 min and 6 min after the first request (at 1 s); the later
    // requests wait for the reviewer to be free.
    let taken: Vec<u64> = ["take conv=0", "take conv=1", "take conv=2"]
        .iter()
        .map(|p| deliveries(&records, "human:reviewer", p)[0])
        .collect();
    assert_eq!(taken, [1_000_000, 121_000_000, 241_000_000]);
    assert_eq!(
        deliveries(
            &records,
            "human:reviewer",
            "take conv=1 call=0 agent=desk waited_us=110000000"
        ),
        [121_000_000]
    );
    // An approved call runs then: the payment answers 500 ms after the approval.
    let paid = deliveries(
        &records,
        "agent:desk",
        "tool_result conv=2 call=0 tool=pay output=\"paid\"",
    );
    assert_eq!(paid, [361_500_000]);
    let reviewer = &report["approvals"][0];
    assert_eq!(reviewer["approved"], 3);
    assert_eq!(reviewer["queue_max"], 2);
    assert_eq!(reviewer["queue_wait_us"]["max"], 220_000_000);
    assert_eq!(final_balance(&report), 880.0);
    assert_eq!(answers(&records).len(), 3);

    // Two reviewers at once: the third request waits for the first to finish.
    let (report, _) = run_binary(&approval_scenario(
        40,
        "latency = \"2m\"\ntimeout = \"10m\"\ncapacity = 2",
        &["0s", "10s", "20s"],
    ));
    assert_eq!(report["approvals"][0]["queue_max"], 1);
    assert_eq!(report["approvals"][0]["queue_wait_us"]["max"], 100_000_000);
}

#[test]
fn a_rejected_call_fails_with_a_403_and_small_calls_need_no_approval() {
    let (report, records) = run_binary(&approval_scenario(40, "latency = \"30s\"\napprove = 0.0", &["0s"]));
    let rejected =
        "tool_result conv=0 call=0 tool=pay output=\"error: 403 rejected: reviewer did not approve this call\"";
    assert_eq!(deliveries(&records, "agent:desk", rejected), [31_000_000]);
    assert_eq!(report["approvals"][0]["rejected"], 1);
    assert_eq!(final_balance(&report), 1000.0);

    // 10 is under the threshold: no review, the payment goes through at once.
    let (report, records) = run_binary(&approval_scenario(10, "latency = \"30s\"\napprove = 0.0", &["0s"]));
    assert!(deliveries(&records, "human:reviewer", "review").is_empty());
    assert_eq!(final_balance(&report), 990.0);
    assert_eq!(report["approvals"][0]["requests"], 0);
}

#[test]
fn a_missed_request_sits_in_the_queue_until_it_times_out() {
    let (report, records) = run_binary(&approval_scenario(
        40,
        "latency = \"10s\"\nmiss = 1.0\ntimeout = \"5m\"",
        &["0s"],
    ));
    assert!(deliveries(&records, "human:reviewer", "take").is_empty());
    assert_eq!(
        deliveries(&records, "tool:pay", "approval_timeout conv=0"),
        [301_000_000]
    );
    let reviewer = &report["approvals"][0];
    assert_eq!(reviewer["timed_out"], 1);
    assert_eq!(reviewer["queue_max"], 1);
    assert_eq!(reviewer["late_decisions"], 0);
}

#[test]
fn two_delegates_calls_of_the_same_number_get_their_own_approvals() {
    // A planner fans out to two workers; each pays its own amount as its call 0 (a delegate
    // numbers its calls from 0), and both payments need approval.
    let text = r#"
[scenario]
name = "two-delegates"

[[llm]]
name = "gpt"
latency = "1s"

[[agent]]
name = "planner"
llm = "gpt"
delegates = ["small", "large"]
behavior = [
  { when = "delegations == 0", then = { delegate = ["small", "large"], task = "pay" } },
  { otherwise = { answer = "{{results}}" } },
]

[[agent]]
name = "small"
llm = "gpt"
tools = ["pay"]
behavior = [
  { when = "turn == 1", then = { tool_call = "pay", args = { account = "acct-1", amount_usd = 30 } } },
  { otherwise = { answer = "small: {{last_tool_output}}" } },
]

[[agent]]
name = "large"
llm = "gpt"
tools = ["pay"]
behavior = [
  { when = "turn == 1", then = { tool_call = "pay", args = { account = "acct-1", amount_usd = 500 } } },
  { otherwise = { answer = "large: {{last_tool_output}}" } },
]

[[table]]
name = "accounts"
key = "id"
fields = { id = "string", balance_usd = "number" }
rows = [{ id = "acct-1", balance_usd = 1000 }]

[[tool]]
name = "pay"
parameters = { type = "object", properties = { account = { type = "string" }, amount_usd = { type = "number" } }, required = ["account", "amount_usd"] }
read = { account = { table = "accounts", key = "{{args.account}}" } }
effect = "charged"
amount = "args.amount_usd"
output = "paid {{args.amount_usd}}"
approval = { by = "reviewer" }

[[tool.rules]]
update = { account = { balance_usd = "account.balance_usd - args.amount_usd" } }

[[human]]
name = "reviewer"
latency = "1m"
capacity = 2

[[traffic]]
kind = "script"
to = "planner"
script = [{ at = "0s", message = "pay both" }]
"#;
    let (report, records) = run_binary(text);
    assert_eq!(
        deliveries(&records, "human:reviewer", "review conv=0 call=0 agent=small"),
        [2_000_000]
    );
    assert_eq!(
        deliveries(&records, "human:reviewer", "review conv=0 call=0 agent=large"),
        [2_000_000]
    );
    assert_eq!(report["approvals"][0]["requests"], 2);
    assert_eq!(report["approvals"][0]["approved"], 2);
    // Each worker's own payment ran after its own approval: 30 + 500.
    assert_eq!(final_balance(&report), 470.0);
    let answer = records
        .iter()
        .find(|r| r["to"] == "user" && field(r, "msg").starts_with("answer conv=0"))
        .expect("the planner answers");
    assert!(
        field(answer, "msg").contains("small: paid 30"),
        "{}",
        field(answer, "msg")
    );
    assert!(
        field(answer, "msg").contains("large: paid 500"),
        "{}",
        field(answer, "msg")
    );
}
