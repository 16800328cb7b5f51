//! Recovery and people in the loop, through the real binary at exact virtual times: redelivery
//! after a restart (`durability`), and what it does to tools without idempotency keys.

mod common;

use common::*;
use serde_json::Value;

/// Agent `a` under a supervisor with a 2 s restart backoff, a model answering in 1 s;
/// conversation 0 opens at 0 s, conversation 1 at 500 ms, and its opening crashes the agent.
fn crash_while_a_model_call_is_out(durability: &str) -> String {
    format!(
        r#"
[scenario]
name = "redelivery"

[[llm]]
name = "gpt"
latency = "1s"

[[agent]]
name = "a"
llm = "gpt"
durability = "{durability}"
behavior = [{{ otherwise = {{ answer = "done" }} }}]

[[supervisor]]
name = "sup"
restart_backoff = "2s"
children = ["a"]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "x" }}, {{ at = "500ms", message = "y" }}]

[[fault]]
kind = "actor.crash"
target = "agent:a"
on_message = 2
"#
    )
}

#[test]
fn at_least_once_delivers_the_crashing_message_again_and_reissues_the_model_call_at_the_restart_time_plus_backoff() {
    // none: both conversations are lost with the agent's state.
    let (report, _) = run_binary(&crash_while_a_model_call_is_out("none"));
    assert_eq!(report["conversations"]["answered"], 0);

    // checkpoint: conversation 0 survives (its answer waited in the mailbox); conversation 1's
    // opening was the message in hand, and it is gone.
    let (report, records) = run_binary(&crash_while_a_model_call_is_out("checkpoint"));
    assert_eq!(report["conversations"]["answered"], 1);
    assert_eq!(deliveries(&records, "llm:gpt", "complete"), [0]);

    // at-least-once: at 2.5 s (the crash at 500 ms plus the 2 s backoff) the opening is
    // delivered again, then conversation 0's model call is made again as attempt 2. The answer
    // to the first call (back at 1 s, waiting in the mailbox) comes first and is used.
    let (report, records) = run_binary(&crash_while_a_model_call_is_out("at-least-once"));
    assert_eq!(report["conversations"]["answered"], 2, "{:#}", report["conversations"]);
    assert_eq!(report["outcome"], "completed");
    assert_eq!(deliveries(&records, "agent:a", "start"), [0, 500_000, 2_500_000]);
    assert_eq!(deliveries(&records, "agent:a", "resume conv=0"), [2_500_000]);
    assert_eq!(deliveries(&records, "llm:gpt", "complete"), [0, 2_500_000, 2_500_000]);
    assert_eq!(deliveries(&records, "llm:gpt", "complete conv=1"), [2_500_000]);
    let again: Vec<&Value> = records
        .iter()
        .filter(|r| r["msg"].as_str().is_some_and(|m| m.starts_with("complete conv=0")))
        .collect();
    assert!(!again[0]["msg"].as_str().unwrap().contains("attempt="));
    assert!(
        again[1]["msg"].as_str().unwrap().ends_with(" attempt=2"),
        "{}",
        again[1]["msg"]
    );
    assert_eq!(deliveries(&records, "user", "answer conv=0"), [2_500_000]);
    assert_eq!(deliveries(&records, "user", "answer conv=1"), [3_500_000]);
}

/// Agent `a` pays (a tool taking 1 s that charges 40) and answers; conversation 1's opening at
/// 500 ms crashes the agent while conversation 0's payment is out.
fn crash_while_a_payment_is_out(durability: &str, idempotent: bool) -> String {
    format!(
        r#"
[scenario]
name = "redelivery-pay"

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
durability = "{durability}"
tools = ["pay"]
behavior = [
  {{ when = "turn == 1 && user contains 'pay'", then = {{ tool_call = "pay", args = {{ booking = "B-{{{{conversation}}}}" }} }} }},
  {{ otherwise = {{ answer = "done" }} }},
]

[[tool]]
name = "pay"
latency = "1s"
effect = "charged"
amount = "40"
idempotent = {idempotent}

[[supervisor]]
name = "sup"
restart_backoff = "1s"
children = ["a"]

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "pay please" }}, {{ at = "500ms", message = "hello" }}]

[[fault]]
kind = "actor.crash"
target = "agent:a"
on_message = 3

[[invariant]]
name = "charged once"
never = {{ effect = "charged", more_than = 1, per = "conversation" }}
"#
    )
}

#[test]
fn a_tool_call_reissued_after_a_restart_charges_twice_unless_the_tool_is_idempotent() {
    // Messages to `a`: conversation 0's opening (1), its model answer at 100 ms (2, the
    // payment goes out), conversation 1's opening at 500 ms (3, the crash).
    let (report, records) = run_binary(&crash_while_a_payment_is_out("checkpoint", false));
    assert_eq!(deliveries(&records, "tool:pay", "invoke"), [100_000]);
    assert_eq!(report["effects"]["charged"], 1);

    let (report, records) = run_binary(&crash_while_a_payment_is_out("at-least-once", false));
    // Back at 1.5 s: the payment is made again (the agent cannot know the first one went
    // through), and the tool, which keeps no idempotency key, charges again.
    assert_eq!(deliveries(&records, "tool:pay", "invoke"), [100_000, 1_500_000]);
    assert_eq!(report["effects"]["charged"], 2, "{:#}", report["effects"]);
    assert_eq!(report["amounts"]["charged"]["total"], 80);
    let broken = having(&report["invariants"], "name", "charged once");
    assert_eq!(broken[0]["passed"], false);
    assert_eq!(report["conversations"]["answered"], 2);

    let (report, records) = run_binary(&crash_while_a_payment_is_out("at-least-once", true));
    assert_eq!(deliveries(&records, "tool:pay", "invoke"), [100_000, 1_500_000]);
    assert_eq!(
        report["effects"]["charged"], 1,
        "an idempotency key makes the second call harmless"
    );
    assert_eq!(report["conversations"]["answered"], 2);
}

#[test]
fn durability_and_persist_together_are_rejected_naming_the_place() {
    let text = crash_while_a_model_call_is_out("checkpoint").replace("durability =", "persist = true\ndurability =");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("both.toml");
    std::fs::write(&file, text).unwrap();
    let output = agentsim_output(&["validate", file.to_str().unwrap()]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(
        err.contains("both.toml:12:11: expected `durability` or `persist`, found both"),
        "{err}"
    );
}

#[test]
fn the_hardened_travel_desk_answers_every_customer_and_pays_every_booking_where_the_crashing_one_does_not() {
    let output = agentsim_output(&[
        "compare",
        "scenarios/travel-desk-crashes.toml",
        "scenarios/travel-desk-crashes-hardened.toml",
        "--seeds",
        "0..20",
        "--json",
    ]);
    let compare: Value = serde_json::from_str(&stdout(&output)).expect("compare --json");
    let rate = |name: &str, side: &str| {
        compare["invariants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .unwrap_or_else(|| panic!("no invariant {name}"))[format!("{side}_pass_rate")]
        .as_f64()
        .unwrap()
    };
    for name in ["every customer is answered", "each booking ends paid"] {
        assert!(rate(name, "a") < 0.5, "{name}: the crashing desk loses customers");
        assert_eq!(rate(name, "b"), 1.0, "{name}: the hardened desk keeps every one");
    }
    let charged = "no charge left unanswered";
    assert!(
        rate(charged, "a") < 1.0,
        "the crashing desk charges customers it then forgets"
    );
    assert_eq!(rate(charged, "b"), 1.0);
    assert_eq!(rate("never charge more than the quote", "b"), 1.0);
}

/// A desk that pays 40 from acct-1 (model 1 s, payment 500 ms) and then runs out of turns, with
/// a refund (300 ms) that undoes the payment; `extra` is appended (settings, faults).
fn pay_then_fail(pay_settings: &str, extra: &str) -> String {
    let params = r#"parameters = { type = "object", properties = { account = { type = "string" }, amount_usd = { type = "number" } }, required = ["account", "amount_usd"] }
read = { account = { table = "accounts", key = "{{args.account}}" } }
amount = "args.amount_usd""#;
    format!(
        r#"
[scenario]
name = "saga"

[[llm]]
name = "gpt"
latency = "1s"

[[agent]]
name = "desk"
llm = "gpt"
tools = ["pay"]
max_turns = 1
behavior = [{{ otherwise = {{ tool_call = "pay", args = {{ account = "acct-1", amount_usd = 40 }} }} }}]

[[table]]
name = "accounts"
key = "id"
fields = {{ id = "string", balance_usd = "number" }}
rows = [{{ id = "acct-1", balance_usd = 100 }}]

[[tool]]
name = "pay"
latency = "500ms"
effect = "charged"
{params}
{pay_settings}

[[tool.rules]]
update = {{ account = {{ balance_usd = "account.balance_usd - args.amount_usd" }} }}

[[tool]]
name = "refund"
latency = "300ms"
effect = "refunded"
{params}

[[tool.rules]]
update = {{ account = {{ balance_usd = "account.balance_usd + args.amount_usd" }} }}

[[traffic]]
kind = "script"
to = "desk"
script = [{{ at = "0s", message = "pay please" }}]

[[invariant]]
name = "no charge left without an answer"
never = {{ effect = "charged", unanswered = true }}
{extra}
"#
    )
}

fn passed(report: &Value, name: &str) -> bool {
    report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name}"))["passed"]
        .as_bool()
        .unwrap()
}

#[test]
fn a_payment_in_a_conversation_that_fails_is_refunded_when_it_ends() {
    // Without a compensation, the money stays taken and the invariant says so.
    let (report, _) = run_binary(&pay_then_fail("", ""));
    assert!(!passed(&report, "no charge left without an answer"));
    assert_eq!(final_balance(&report), 60.0);
    assert!(report.get("compensations").is_none());

    let (report, records) = run_binary(&pay_then_fail(r#"compensate = "refund""#, ""));
    // Paid at 1 s (logged with the front door then), out of turns at 1.5 s; the refund is asked
    // for at once and answers 300 ms later.
    assert_eq!(
        deliveries(&records, "user", "compensable conv=0 call=0 tool=pay"),
        [1_000_000]
    );
    assert_eq!(
        deliveries(&records, "user", "answer conv=0 status=max_turns"),
        [1_500_000]
    );
    assert_eq!(
        deliveries(
            &records,
            "tool:refund",
            "compensate conv=0 call=0 of=pay args={\"account\":\"acct-1\",\"amount_usd\":40}"
        ),
        [1_500_000]
    );
    assert_eq!(
        deliveries(
            &records,
            "user",
            "compensated conv=0 call=0 tool=refund of=pay output=\"ok\""
        ),
        [1_800_000]
    );
    assert!(passed(&report, "no charge left without an answer"));
    assert_eq!(final_balance(&report), 100.0);
    assert_eq!(report["compensations"]["run"], 1);
    assert_eq!(report["compensations"]["succeeded"], 1);
    assert_eq!(report["compensations"]["undone"]["charged"], 1);
    assert_eq!(report["harmed"][0]["fate"], "out_of_turns");
    assert_eq!(report["harmed"][0]["compensated"]["charged"], 1);
}

#[test]
fn a_compensation_can_fail_too_and_the_charge_then_stands() {
    let fault = r#"
[[fault]]
kind = "tool.error"
target = "tool:refund"
probability = 1.0
"#;
    let (report, records) = run_binary(&pay_then_fail(r#"compensate = "refund""#, fault));
    assert_eq!(deliveries(&records, "tool:refund", "compensate conv=0"), [1_500_000]);
    assert_eq!(report["compensations"]["failed"], 1);
    assert_eq!(report["compensations"]["succeeded"], 0);
    assert_eq!(report["harmed"][0]["compensations_failed"], 1);
    assert_eq!(final_balance(&report), 60.0);
    assert!(!passed(&report, "no charge left without an answer"));
    let tools = report["tools"].as_array().unwrap();
    let refund = tools.iter().find(|t| t["name"] == "refund").unwrap();
    assert_eq!(
        (refund["calls"].as_u64(), refund["errors"].as_u64()),
        (Some(1), Some(1))
    );
}

#[test]
fn a_conversation_lost_to_a_crash_is_refunded_when_its_compensate_after_is_over() {
    // The agent crashes on the payment's result (its 3rd message) and nothing resumes it; the
    // front door hears nothing, so the payment is undone 1 min after it was made.
    let crash = r#"
[[supervisor]]
name = "sup"
children = ["desk"]

[[fault]]
kind = "actor.crash"
target = "agent:desk"
on_message = 3
"#;
    let (report, records) = run_binary(&pay_then_fail(
        "compensate = \"refund\"\ncompensate_after = \"1m\"",
        crash,
    ));
    assert_eq!(report["fates"]["lost"], 1);
    assert_eq!(deliveries(&records, "user", "compensation_due conv=0"), [61_000_000]);
    assert_eq!(deliveries(&records, "tool:refund", "compensate conv=0"), [61_000_000]);
    assert_eq!(final_balance(&report), 100.0);
    assert!(passed(&report, "no charge left without an answer"));
}

/// A desk with a 2 s `deadline` whose payment (3 s) is still out when the deadline passes.
fn deadline_during_a_payment(cancellation: &str) -> String {
    pay_then_fail("", "")
        .replace(
            "max_turns = 1\n",
            &format!("deadline = \"2s\"\ncancellation = \"{cancellation}\"\n"),
        )
        .replace("latency = \"500ms\"", "latency = \"3s\"")
}

#[test]
fn a_tool_call_cancelled_at_the_deadline_moves_no_money() {
    // let-finish: the payment takes effect when it is made, at 1 s, and stays.
    let (report, records) = run_binary(&deadline_during_a_payment("let-finish"));
    assert_eq!(deliveries(&records, "user", "answer conv=0 status=failed"), [2_000_000]);
    assert_eq!(report["effects"]["charged"], 1);
    assert_eq!(final_balance(&report), 60.0);
    assert!(report.get("cancellations").is_none());

    // cancel: at the deadline (2 s) the call is cancelled; at the end of its latency (4 s) it
    // would have taken effect, and does not: no money moves, and the effect is counted apart.
    let (report, records) = run_binary(&deadline_during_a_payment("cancel"));
    assert_eq!(deliveries(&records, "tool:pay", "invoke conv=0 call=0"), [1_000_000]);
    assert_eq!(deliveries(&records, "user", "answer conv=0 status=failed"), [2_000_000]);
    assert_eq!(deliveries(&records, "tool:pay", "cancel conv=0 call=0"), [2_000_000]);
    assert_eq!(deliveries(&records, "tool:pay", "commit conv=0 call=0"), [4_000_000]);
    assert!(deliveries(&records, "agent:desk", "tool_result").is_empty());
    assert!(report["effects"].get("charged").is_none(), "{}", report["effects"]);
    assert_eq!(final_balance(&report), 100.0);
    assert_eq!(report["cancellations"]["calls"], 1);
    assert_eq!(report["cancellations"]["effects"]["charged"], 1);
    assert_eq!(report["outcome"], "completed");
    assert!(passed(&report, "no charge left without an answer"));
}

#[test]
fn an_agent_that_cancels_drops_an_abandoned_conversation_before_it_calls_a_tool() {
    let abandon = r#"
[[fault]]
kind = "user.abandon"
target = "agent:desk"
on_message = 1
"#;
    let text = pay_then_fail("", abandon).replace("max_turns = 1\n", "max_turns = 1\ncancellation = \"cancel\"\n");
    let (report, records) = run_binary(&text);
    assert_eq!(deliveries(&records, "agent:desk", "cancel conv=0"), [0]);
    assert!(deliveries(&records, "tool:pay", "invoke").is_empty());
    assert_eq!(report["fates"]["abandoned"], 1);
    assert_eq!(report["cancellations"]["conversations"], 1);
    assert_eq!(final_balance(&report), 100.0);
    // Letting it finish, the abandoned conversation still pays.
    let (report, _) = run_binary(&text.replace("cancellation = \"cancel\"\n", ""));
    assert_eq!(report["effects"]["charged"], 1);
}

#[test]
fn a_payment_made_after_its_user_left_is_refunded_as_soon_as_it_is_made() {
    // The user leaves with the opening message; the agent (letting calls finish) still pays at
    // 1 s and answers. The saga has already ended badly, so the step is undone at once.
    let abandon = r#"
[[fault]]
kind = "user.abandon"
target = "agent:desk"
on_message = 1
"#;
    let text = pay_then_fail(r#"compensate = "refund""#, abandon).replace(
        "max_turns = 1\nbehavior = [{ otherwise = { tool_call = \"pay\", args = { account = \"acct-1\", amount_usd = 40 } } }]",
        "max_turns = 2\nbehavior = [{ when = \"turn == 1\", then = { tool_call = \"pay\", args = { account = \"acct-1\", amount_usd = 40 } } }, { otherwise = { answer = \"paid\" } }]",
    );
    let (report, records) = run_binary(&text);
    assert_eq!(deliveries(&records, "user", "end conv=0 ending=abandoned"), [0]);
    assert_eq!(
        deliveries(&records, "tool:refund", "compensate conv=0 call=0 of=pay"),
        [1_000_000]
    );
    assert_eq!(report["fates"]["abandoned"], 1);
    assert_eq!(final_balance(&report), 100.0);
    assert!(passed(&report, "no charge left without an answer"));
}

#[test]
fn a_call_given_up_at_its_tool_timeout_is_cancelled_then_and_never_takes_effect() {
    // tool_timeout 500 ms: the agent gives up on the 3 s payment at 1.5 s and cancels it; at
    // 4 s, when it would have taken effect, it does not.
    let text = deadline_during_a_payment("cancel")
        .replace("deadline = \"2s\"\n", "deadline = \"2s\"\ntool_timeout = \"500ms\"\n");
    let (report, records) = run_binary(&text);
    assert_eq!(
        deliveries(&records, "tool:pay", "cancel conv=0 call=0 agent=desk"),
        [1_500_000]
    );
    assert_eq!(deliveries(&records, "tool:pay", "commit conv=0 call=0"), [4_000_000]);
    assert_eq!(final_balance(&report), 100.0);
    assert_eq!(report["cancellations"]["calls"], 1);
    assert_eq!(report["cancellations"]["conversations"], 1);
}
