//! The world tools act on, through the real binary: records that decide a call's outcome (the
//! last room), amounts that break a quote, goals over the end state, the world in report.json,
//! the HTML and the trace, data files, and the limits of the API behind a tool.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Runs `agentsim run SCENARIO --out DIR` (plus `extra`), and reads the run directory back.
struct Run {
    _dir: tempfile::TempDir,
    out: std::path::PathBuf,
    report: Value,
    trace: Vec<Value>,
    stdout: String,
}

fn run(scenario: &Path, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let out = dir.path().join("run");
    let mut args = vec![
        "run",
        scenario.to_str().expect("UTF-8"),
        "--out",
        out.to_str().expect("UTF-8"),
    ];
    args.extend_from_slice(extra);
    let output = agentsim_output(&args);
    assert!(
        matches!(status(&output), 0 | 1),
        "agentsim {args:?} failed:\n{}",
        stderr(&output)
    );
    let report = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json"))
        .expect("report.json is JSON");
    let trace = records(&std::fs::read(out.join("trace.jsonl")).expect("trace.jsonl"));
    Run {
        _dir: dir,
        out,
        report,
        trace,
        stdout: stdout(&output),
    }
}

fn scenario(name: &str) -> std::path::PathBuf {
    repo_root().join("scenarios").join(name)
}

/// The report's table `name`.
fn table<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["world"]["tables"]
        .as_array()
        .expect("world.tables")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {}", report["world"]))
}

/// The record with `key` in a list of records.
fn record<'a>(records: &'a Value, key_field: &str, key: &str) -> &'a Value {
    records
        .as_array()
        .expect("records")
        .iter()
        .find(|r| r[key_field] == key)
        .unwrap_or_else(|| panic!("no record {key} in {records}"))
}

fn invariant<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["invariants"]
        .as_array()
        .expect("invariants")
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name}"))
}

fn tool_results(trace: &[Value], conv: u64) -> Vec<String> {
    trace
        .iter()
        .filter(|r| r["kind"] == "deliver")
        .map(|r| field(r, "msg").to_owned())
        .filter(|m| m.starts_with(&format!("tool_result conv={conv} ")))
        .collect()
}

#[test]
fn two_conversations_race_for_the_last_room_and_exactly_one_books_it() {
    let run = run(&scenario("hotel-last-room.toml"), &[]);
    let rooms = table(&run.report, "rooms");
    assert_eq!(record(&rooms["final"], "id", "deluxe")["free"], 0);
    let bookings = table(&run.report, "bookings");
    let deluxe = having(&bookings["final"], "room", "deluxe");
    assert_eq!(
        deluxe.len(),
        1,
        "exactly one guest books the last deluxe room: {bookings}"
    );
    let winner = if deluxe[0]["guest"] == "guest-0" { 0 } else { 1 };
    let loser = 1 - winner;
    let lost = tool_results(&run.trace, loser);
    assert!(
        lost[0].contains("error: sold_out: Grand Hotel has no deluxe room left"),
        "{lost:?}"
    );
    assert!(
        lost[1].contains("standard at Grand Hotel"),
        "the agent's rules book a standard room: {lost:?}"
    );
    assert_eq!(record(&rooms["final"], "id", "standard")["free"], 4);
    // The trace holds exactly the changes the report shows: one per room type, one per booking.
    let world: Vec<&Value> = run.trace.iter().filter(|r| r["kind"] == "world").collect();
    assert_eq!(world.len(), 4, "{world:?}");
    assert_eq!(
        world
            .iter()
            .filter(|r| r["table"] == "rooms" && r["key"] == "deluxe")
            .count(),
        1
    );
    for invariant in run.report["invariants"].as_array().unwrap() {
        assert_eq!(invariant["passed"], true, "{invariant}");
    }
    assert_eq!(run.report["amounts"]["charged"]["total"], 379.5);
    assert!(
        run.stdout
            .contains("4 record(s) changed in 2 of 2 table(s): rooms deluxe free 1 → 0"),
        "{}",
        run.stdout
    );
    // A third table no tool writes: the summary counts the two that changed.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("hotel-last-room.toml")).unwrap()
        + "\n[[table]]\nname = \"guests\"\nkey = \"id\"\nfields = { id = \"string\" }\nrows = [{ id = \"guest-0\" }]\n";
    let file = dir.path().join("hotel.toml");
    std::fs::write(&file, text).unwrap();
    let three = self::run(&file, &[]);
    assert!(
        three.stdout.contains("4 record(s) changed in 2 of 3 table(s)"),
        "{}",
        three.stdout
    );
}

#[test]
fn an_overcharge_breaks_the_quote_invariant_and_the_hardened_desk_holds_it() {
    let broken = run(&scenario("travel-desk-double-charge.toml"), &[]);
    let quote = invariant(&broken.report, "never charge more than the quote");
    assert_eq!(quote["passed"], false);
    let message = field(&quote["first_violation"], "message");
    assert!(
        message.contains("bookings B-0 breaks `paid_usd <= quote_usd` (paid_usd = 5200, quote_usd = 2600)"),
        "{message}"
    );
    let negative = invariant(&broken.report, "no account goes negative");
    assert!(field(&negative["first_violation"], "message").contains("accounts acct-ana breaks `balance_usd >= 0`"));
    // The amounts in the report are the ones the trace's world records add up to.
    let paid: f64 = broken
        .trace
        .iter()
        .rfind(|r| r["kind"] == "world" && r["table"] == "bookings" && r["key"] == "B-0")
        .map(|r| r["row"]["paid_usd"].as_f64().unwrap())
        .unwrap();
    let ana = &broken.report["amounts"]["charged"]["by_subject"]["acct-ana"];
    assert_eq!(ana["total"].as_f64(), Some(paid));
    assert!(paid > 2600.0, "{paid}");
    assert!(broken.stdout.contains("amounts        charged"), "{}", broken.stdout);
    assert!(
        broken.stdout.contains("(paid_usd = 5200, quote_usd = 2600)"),
        "{}",
        broken.stdout
    );

    // --impact says how much money the hanging payment API moved, in the report and the HTML.
    let impact = run(&scenario("travel-desk-double-charge.toml"), &["--impact"]);
    let fault = &impact.report["impact"]["faults"][0];
    assert_eq!(fault["fault"], "tool.timeout@tool:pay_booking");
    let extra = fault["deltas"]["amounts"]["charged"].as_f64().unwrap();
    let charged = impact.report["amounts"]["charged"]["total"].as_f64().unwrap();
    assert_eq!(
        charged - extra,
        4870.5,
        "without the fault, each customer pays the quote once"
    );
    let html = std::fs::read_to_string(impact.out.join("report.html")).unwrap();
    assert!(
        html.contains(&format!("(+{extra})")),
        "the impact table shows the money"
    );
    assert!(
        impact.stdout.contains(&format!("(amount +{extra})")),
        "{}",
        impact.stdout
    );

    let fixed = run(&scenario("travel-desk.toml"), &[]);
    for invariant in fixed.report["invariants"].as_array().unwrap() {
        assert_eq!(invariant["passed"], true, "{invariant}");
    }
    // Each customer paid exactly the quote.
    assert_eq!(fixed.report["amounts"]["charged"]["total"], 4870.5);
    // The payment retried after its timeout gets the answer the first one got, as an API that
    // honours idempotency keys answers a repeat, not the funds check's refusal of a second
    // charge that never happens.
    let results = tool_results(&fixed.trace, 0);
    let payments: Vec<&String> = results.iter().filter(|r| r.contains("tool=pay_booking")).collect();
    assert!(payments.len() >= 2, "{results:?}");
    for payment in &payments {
        assert!(
            payment.contains(r#"output="charged 2600 USD for Lisbon, 7 nights""#),
            "{payment}"
        );
    }
    assert_eq!(
        fixed.report["amounts"]["charged"]["by_subject"]["acct-ana"]["total"],
        2600
    );
}

/// The τ-bench-like task, with the agent booking `flight`.
fn change_reservation(flight: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/world/change-reservation.toml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("change-reservation.toml");
    std::fs::write(
        &path,
        text.replace("flight = \"FLIGHT\"", &format!("flight = \"{flight}\"")),
    )
    .unwrap();
    (dir, path)
}

#[test]
fn a_goal_passes_when_the_end_state_matches_and_names_the_field_when_the_wrong_flight_is_booked() {
    let (_dir, right) = change_reservation("UA200");
    let run_right = run(&right, &[]);
    let goal = invariant(&run_right.report, "R1 moved to UA200, nothing else touched");
    assert_eq!(goal["passed"], true, "{goal}");
    assert_eq!(goal["checked"], 1);

    let (_dir, wrong) = change_reservation("UA210");
    let run_wrong = run(&wrong, &[]);
    let goal = invariant(&run_wrong.report, "R1 moved to UA200, nothing else touched");
    assert_eq!(goal["passed"], false);
    assert_eq!(goal["checked"], 1);
    let message = field(&goal["first_violation"], "message");
    assert_eq!(
        message,
        "conversation 0 (task change-R1): reservations R1 flight is \"UA210\", expected \"UA200\""
    );
    // Checked when the conversation ended: at the answer.
    let answer = run_wrong
        .trace
        .iter()
        .find(|r| field(r, "msg").starts_with("answer conv=0"))
        .unwrap();
    assert_eq!(goal["first_violation"]["seq"], answer["seq"]);
    assert!(
        run_wrong.stdout.contains("FAIL  R1 moved to UA200"),
        "{}",
        run_wrong.stdout
    );
}

#[test]
fn the_world_diff_is_in_report_json_the_html_and_the_trace_and_replays_byte_for_byte() {
    let run = run(&scenario("travel-desk-double-charge.toml"), &[]);
    let bookings = table(&run.report, "bookings");
    let b0 = bookings["changed"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "B-0")
        .unwrap();
    assert_eq!(b0["change"], "updated");
    assert_eq!(b0["conversations"], serde_json::json!([0]));
    assert_eq!(b0["faults"], serde_json::json!(["tool.timeout@tool:pay_booking"]));
    let paid = b0["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "paid_usd")
        .unwrap();
    assert_eq!(paid["before"], 0);
    assert_eq!(record(&bookings["initial"], "id", "B-0")["paid_usd"], 0);
    assert_eq!(record(&bookings["final"], "id", "B-0")["paid_usd"], paid["after"]);
    // The trace's last write of B-0 is the report's end state.
    let last = run
        .trace
        .iter()
        .rfind(|r| r["kind"] == "world" && r["key"] == "B-0")
        .unwrap();
    assert_eq!(last["row"]["paid_usd"], paid["after"]);
    assert_eq!(last["actor"], "tool:pay_booking");
    // The HTML shows the changed records.
    let html = std::fs::read_to_string(run.out.join("report.html")).unwrap();
    assert!(html.contains("<section id=\"world\">"), "no world section");
    assert!(
        html.contains("<td>B-0</td><td class=\"change-updated\">updated</td>"),
        "no row for B-0"
    );
    assert!(html.contains("<b>paid_usd</b> 0 →"), "no field change");
    // The run replays exactly, from its own copy of the scenario.
    let output = agentsim_output(&["replay", run.out.to_str().unwrap()]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("matches"), "{}", stdout(&output));
}

#[test]
fn an_update_past_a_numbers_range_is_refused_as_a_store_refuses_it_not_saturated() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(scenario("hotel-last-room.toml"))
        .unwrap()
        .replace("price_usd = 240 }", "price_usd = 9223372036854.775807 }")
        .replace(
            "free = \"room.free - 1\"",
            "free = \"room.free - 1\", price_usd = \"room.price_usd + 1\"",
        );
    let file = dir.path().join("hotel.toml");
    std::fs::write(&file, text).unwrap();
    let run = run(&file, &[]);
    let rooms = table(&run.report, "rooms");
    assert_eq!(
        record(&rooms["final"], "id", "deluxe")["free"],
        1,
        "the booking did not happen"
    );
    let results: Vec<String> = (0..2).flat_map(|conv| tool_results(&run.trace, conv)).collect();
    assert!(
        results
            .iter()
            .any(|r| r.contains("error: 422 numeric value out of range: rooms deluxe price_usd")),
        "{results:?}"
    );
}

#[test]
fn a_table_loads_its_records_from_a_csv_or_a_json_file_beside_the_scenario() {
    let inline = std::fs::read_to_string(scenario("hotel-last-room.toml")).unwrap();
    let rows = "rows = [\n  { id = \"deluxe\", hotel = \"Grand Hotel\", free = 1, price_usd = 240 },\n  { id = \"standard\", hotel = \"Grand Hotel\", free = 5, price_usd = 139.5 },\n]";
    assert!(inline.contains(rows));
    let inline_run = run(&scenario("hotel-last-room.toml"), &[]);
    for (file, data) in [
        (
            "rooms.csv",
            "id,hotel,free,price_usd\ndeluxe,Grand Hotel,1,240\nstandard,\"Grand Hotel\",5,139.5\n",
        ),
        (
            "rooms.json",
            r#"[{"id":"standard","hotel":"Grand Hotel","free":5,"price_usd":139.5},{"id":"deluxe","hotel":"Grand Hotel","free":1,"price_usd":240}]"#,
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        std::fs::write(dir.path().join("data").join(file), data).unwrap();
        let path = dir.path().join("hotel.toml");
        std::fs::write(&path, inline.replace(rows, &format!("data = \"data/{file}\""))).unwrap();
        let from_file = run(&path, &[]);
        assert_eq!(from_file.report["world"], inline_run.report["world"], "{file}");
        assert_eq!(
            from_file.report["invariants"], inline_run.report["invariants"],
            "{file}"
        );
        // The run directory carries the data file, so it replays on its own.
        assert_eq!(
            std::fs::read_to_string(from_file.out.join("data").join(file)).unwrap(),
            data
        );
        let output = agentsim_output(&["replay", from_file.out.to_str().unwrap()]);
        assert_eq!(status(&output), 0, "{}", stderr(&output));
        // A changed data file is a changed scenario.
        assert_ne!(from_file.report["scenario_hash"], inline_run.report["scenario_hash"]);
    }
}

#[test]
fn a_malformed_or_oversized_data_file_is_rejected_naming_the_place_in_it() {
    let output = agentsim_output(&["validate", "tests/fixtures/world/bad-data/scenario.toml"]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(
        err.starts_with(
            "tests/fixtures/world/bad-data/rooms.csv:3:16: field `free`: expected a whole number, found \"many\""
        ),
        "{err}"
    );

    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("tests/fixtures/world/bad-data/scenario.toml").unwrap();
    std::fs::write(dir.path().join("scenario.toml"), &text).unwrap();
    let row = "standard,Grand,5\n";
    let big = format!(
        "id,hotel,free\n{}",
        row.repeat((agentsim::scenario::world::DATA_FILE_BYTES_MAX as usize / row.len()) + 2)
    );
    std::fs::write(dir.path().join("rooms.csv"), big).unwrap();
    let path = dir.path().join("scenario.toml");
    let output = agentsim_output(&["validate", path.to_str().unwrap()]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output).replace(&dir.path().display().to_string(), "DIR");
    assert!(
        err.starts_with("DIR/scenario.toml:12:8: expected a data file of at most 4194304 bytes"),
        "{err}"
    );

    std::fs::remove_file(dir.path().join("rooms.csv")).unwrap();
    let output = agentsim_output(&["validate", path.to_str().unwrap()]);
    let err = stderr(&output).replace(&dir.path().display().to_string(), "DIR");
    assert!(
        err.starts_with("DIR/scenario.toml:12:8: cannot read data file DIR/rooms.csv"),
        "{err}"
    );
}

/// One agent calling `api` once per conversation, two conversations at t = 0, a model that
/// takes exactly 100 ms and an API that takes exactly 1 s and handles one call at a time.
fn busy_api(when_busy: &str) -> String {
    format!(
        r#"
[scenario]
name = "busy-api"
seed = 1

[[llm]]
name = "gpt"
latency = "100ms"

[[agent]]
name = "a"
llm = "gpt"
tools = ["api"]
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "api", args = {{ q = "x" }} }} }},
  {{ otherwise = {{ answer = "{{{{last_tool_output}}}}" }} }},
]

[[tool]]
name = "api"
latency = "1s"
output = "ok"
max_concurrent = 1
when_busy = "{when_busy}"

[[traffic]]
kind = "script"
to = "a"
script = [{{ at = "0s", message = "one" }}, {{ at = "0s", message = "two" }}]
"#
    )
}

/// (virtual time, message) of every tool result.
fn results_at(trace: &[Value]) -> Vec<(u64, String)> {
    trace
        .iter()
        .filter(|r| field(r, "msg").starts_with("tool_result"))
        .map(|r| (r["t_us"].as_u64().unwrap(), field(r, "msg").to_owned()))
        .collect()
}

#[test]
fn a_busy_api_answers_429_or_queues_the_call_with_exact_virtual_times() {
    let dir = tempfile::tempdir().unwrap();
    let reject = dir.path().join("reject.toml");
    std::fs::write(&reject, busy_api("reject")).unwrap();
    let results = results_at(&run(&reject, &[]).trace);
    // The second call arrives while the first holds the only slot: refused 5 ms later.
    assert_eq!(results[0].0, 105_000, "{results:?}");
    assert!(
        results[0]
            .1
            .contains("error: 429 Too Many Requests: api is handling 1 calls at once"),
        "{results:?}"
    );
    assert_eq!(results[1].0, 1_100_000, "{results:?}");
    assert!(results[1].1.ends_with("output=\"ok\""), "{results:?}");

    let queue = dir.path().join("queue.toml");
    std::fs::write(&queue, busy_api("queue")).unwrap();
    let run_queue = run(&queue, &[]);
    let results = results_at(&run_queue.trace);
    // Queued: it starts when the slot frees (1.1 s) and answers 1 s later.
    assert_eq!(
        results.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1_100_000, 2_100_000],
        "{results:?}"
    );
    assert!(results.iter().all(|r| r.1.ends_with("output=\"ok\"")), "{results:?}");
    let waited = run_queue
        .trace
        .iter()
        .find(|r| field(r, "msg").starts_with("run conv="))
        .expect("the queued call's turn");
    assert_eq!(waited["t_us"], 1_100_000);
}

#[test]
fn a_tool_error_on_a_call_the_busy_api_would_refuse_is_the_faults_error_not_a_429() {
    // The second call would be refused (the only slot is taken); the fault on it fails it on
    // its way instead, so the fault that fired is the one the answer shows.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faulted.toml");
    let faulted = format!(
        "{}\n[[fault]]\nkind = \"tool.error\"\ntarget = \"tool:api\"\non_message = 2\ntext = \"503 upstream down\"\n",
        busy_api("reject")
    );
    std::fs::write(&path, faulted).unwrap();
    let run = run(&path, &[]);
    let results = results_at(&run.trace);
    assert!(
        results.iter().any(|r| r.1.contains("error: 503 upstream down")),
        "{results:?}"
    );
    assert!(!results.iter().any(|r| r.1.contains("429")), "{results:?}");
}

#[test]
fn a_retry_storm_exhausts_the_downstream_api() {
    let run = run(&scenario("downstream-retry-storm.toml"), &[]);
    let refused = run
        .trace
        .iter()
        .filter(|r| field(r, "msg").starts_with("tool_result") && field(r, "msg").contains("429 Too Many Requests"))
        .count() as u64;
    let calls = run.report["tool_calls"].as_u64().unwrap();
    assert!(refused * 2 > calls, "most calls are refused: {refused} of {calls}");
    assert!(calls > 3 * 30, "the retries multiply the calls: {calls}");
    assert_eq!(
        invariant(&run.report, "every customer answered within a minute")["passed"],
        false
    );
    assert!(run.report["conversations"]["max_turns"].as_u64().unwrap() > 0);
}

#[test]
fn a_call_whose_arguments_break_the_tools_schema_gets_the_error_a_real_api_returns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schema.toml");
    let text = busy_api("reject")
        .replace("max_concurrent = 1\nwhen_busy = \"reject\"\n", "")
        .replace(
            "output = \"ok\"",
            "output = \"ok\"\nparameters = { type = \"object\", properties = { q = { type = \"integer\" } }, required = [\"q\"] }",
        );
    std::fs::write(&path, text).unwrap();
    let results = results_at(&run(&path, &[]).trace);
    assert!(
        results[0].1.contains("error: 400 invalid arguments"),
        "a string where the schema wants an integer: {results:?}"
    );
}

#[test]
fn a_sweep_reports_pass_hat_k_per_goal_over_its_tasks_trials() {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/world/change-reservation.toml")).unwrap();
    // One time in four the model books the later flight.
    let flaky = text.replace(
        "  { when = \"last_tool == 'get_reservation'\", then = { tool_call = \"update_reservation_flights\", args = { reservation_id = \"R1\", flight = \"FLIGHT\" } } },",
        "  { when = \"last_tool == 'get_reservation'\", p = 0.25, then = { tool_call = \"update_reservation_flights\", args = { reservation_id = \"R1\", flight = \"UA210\" } } },\n  { when = \"last_tool == 'get_reservation'\", then = { tool_call = \"update_reservation_flights\", args = { reservation_id = \"R1\", flight = \"UA200\" } } },",
    );
    assert_ne!(flaky, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flaky.toml");
    std::fs::write(&path, flaky).unwrap();
    let output = agentsim_output(&["sweep", path.to_str().unwrap(), "--seeds", "0..40", "--json"]);
    assert!(matches!(status(&output), 0 | 1), "{}", stderr(&output));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    let goal = &summary["goals"][0];
    assert_eq!(goal["task"], "change-R1");
    assert_eq!(goal["trials"], 40);
    let successes = goal["successes"].as_u64().unwrap();
    assert!((20..40).contains(&successes), "about three in four: {successes}");
    // pass^k = C(s, k) / C(n, k), from the seeds that ran.
    let expected = |k: u64| {
        (0..k)
            .map(|i| (successes - i) as f64 / (40 - i) as f64)
            .product::<f64>()
    };
    for point in goal["pass_hat_k"].as_array().unwrap() {
        let k = point["k"].as_u64().unwrap();
        assert!((point["value"].as_f64().unwrap() - expected(k)).abs() < 1e-9, "{point}");
    }
    let failed_seeds: u64 =
        summary["invariants"][0]["runs"].as_u64().unwrap() - summary["invariants"][0]["passed"].as_u64().unwrap();
    assert_eq!(
        failed_seeds,
        40 - successes,
        "one conversation per seed: a failed trial is a failed seed"
    );
    let html = dir.path().join("sweep.html");
    let text = agentsim_output(&[
        "sweep",
        path.to_str().unwrap(),
        "--seeds",
        "0..40",
        "--html",
        html.to_str().unwrap(),
    ]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<section id=\"goals\">"), "the sweep page has the goals");
    assert!(
        page.contains(&format!("<td class=\"n\">40</td><td class=\"n\">{successes}</td>")),
        "trials and successes"
    );
    assert!(
        stdout(&text).contains(&format!(
            "goal           R1 moved to UA200, nothing else touched (task change-R1): {successes} of 40 trials ended in the expected state; pass^k k=1"
        )),
        "{}",
        stdout(&text)
    );
}

#[test]
fn a_queue_at_a_rate_limited_api_spaces_every_call_however_many_wait() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queue.toml");
    let text = busy_api("queue")
        .replace("max_concurrent = 1\n", "rate_limit = \"5/s\"\n")
        .replace(
            "kind = \"script\"\nto = \"a\"\nscript = [{ at = \"0s\", message = \"one\" }, { at = \"0s\", message = \"two\" }]",
            "kind = \"poisson\"\nto = \"a\"\nrate = \"1000/s\"\nconversations = 100\nmessages = [\"one\"]",
        )
        .replace("latency = \"1s\"", "latency = \"10ms\"");
    std::fs::write(&path, text).unwrap();
    let run = run(&path, &[]);
    let mut starts: Vec<u64> = run
        .trace
        .iter()
        .filter(|r| field(r, "msg").starts_with("run conv="))
        .map(|r| r["t_us"].as_u64().unwrap())
        .collect();
    starts.sort_unstable();
    let queued = starts.len();
    assert!(queued >= 90, "nearly every call waits: {queued}");
    // 5 a second, 5 at once: the calls that waited start 200 ms apart, the last after ~19 s.
    for pair in starts.windows(2) {
        assert!(pair[1] - pair[0] >= 199_999, "{pair:?}");
    }
    assert!(*starts.last().unwrap() >= 18_000_000, "{starts:?}");
    assert_eq!(run.report["tools"][0]["errors"], 0);
}
