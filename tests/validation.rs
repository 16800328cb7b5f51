//! Scenario validation: every kind of mistake in a scenario file is rejected by `agentsim validate`
//! with exit status 2 and a message that starts `FILE:LINE:COL:` at the offending text and says
//! what was expected.
//!
//! Each file in `tests/bad-scenarios/` holds exactly one mistake. The tests below pin the line and
//! column it is reported at and the key words of the message; the full message (with its source
//! excerpt) is kept as an insta snapshot in `snapshots/validation__NAME.snap`.

mod common;

use common::*;

/// Runs `agentsim validate tests/bad-scenarios/FILE` and checks status, location, wording and
/// the snapshot of stderr.
fn check(file: &str, line_col: &str, phrases: &[&str]) {
    let path = format!("tests/bad-scenarios/{file}");
    let output = agentsim_output(&["validate", &path]);
    let err = String::from_utf8_lossy(&output.stderr).into_owned();

    assert_eq!(
        status(&output),
        2,
        "{path} should be rejected; stdout:\n{}\nstderr:\n{err}",
        stdout(&output)
    );
    assert_eq!(stdout(&output), "", "nothing is OK in {path}");
    let location = format!("{path}:{line_col}: ");
    assert!(
        err.starts_with(&location),
        "expected the message to start with {location:?}, found:\n{err}"
    );
    for phrase in phrases {
        assert!(err.contains(phrase), "expected {phrase:?} in:\n{err}");
    }

    let name = format!("validation__{}", file.trim_end_matches(".toml"));
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        description => format!("agentsim validate {path}"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, err);
    });
}

/// One test per bad scenario file: `test_name: "file.toml" at "LINE:COL" says [phrases];`.
macro_rules! bad_scenarios {
    ($($test:ident: $file:literal at $at:literal says [$($phrase:literal),* $(,)?];)*) => {
        /// Every file the tests below cover.
        const TESTED_FILES: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                check($file, $at, &[$($phrase),*]);
            }
        )*
    };
}

bad_scenarios! {
    a_fault_window_that_ends_before_it_starts_is_the_only_error:
        "fault-between-reversed.toml" at "20:11" says ["expected `between = [FROM, TO]` with FROM before TO"];
    a_fault_that_may_fire_zero_times_is_rejected:
        "fault-count-zero.toml" at "21:9" says ["expected count of at least 1", "never fires"];
    a_mistyped_field_is_one_error_not_one_per_record:
        "world-field-type-unknown-rows.toml" at "11:35" says ["expected a field type", "did you mean \"number\"?"];
    a_tool_timeout_of_zero_is_rejected:
        "tool-timeout-zero.toml" at "17:16" says ["expected a tool_timeout above 0", "every call would time out"];
    a_detector_threshold_below_two_is_rejected:
        "detector-threshold-zero.toml" at "20:13" says ["expected a threshold of at least 2"];
    a_template_hole_left_open_before_the_next_is_rejected:
        "tool-output-hole-left-open.toml" at "20:20" says ["expected `}}` to close this `{{` before the next `{{`"];
    a_misspelt_key_is_rejected_with_a_did_you_mean:
        "unknown-key-typo.toml" at "10:1" says ["unknown key `latncy`", "did you mean `latency`?"];
    a_table_without_a_required_key_names_the_missing_key:
        "missing-required-key.toml" at "5:1" says ["missing key `name`"];
    a_value_of_the_wrong_type_says_what_was_expected_and_found:
        "wrong-type.toml" at "7:13" says ["expected", "found string \"twelve\""];
    two_agents_with_one_name_are_rejected_at_the_second:
        "duplicate-agent-name.toml" at "9:8" says ["a second agent named \"helper\""];
    two_faults_with_one_name_are_rejected_at_the_second:
        "duplicate-fault-name.toml" at "24:8" says ["expected unique fault names", "a second fault named \"flaky\""];
    an_agent_naming_an_undeclared_llm_is_rejected_with_a_did_you_mean:
        "dangling-llm.toml" at "10:7" says ["llm \"gtp\", which does not exist", "did you mean \"gpt\"?"];
    a_model_missing_from_the_price_table_without_a_price_is_rejected_with_a_did_you_mean:
        "unknown-model.toml" at "7:9" says ["expected a model in the price table", "did you mean \"gpt-4o-mini\"?", "price = {"];
    an_agent_listing_an_undeclared_tool_is_rejected:
        "dangling-tool.toml" at "10:23" says ["tool \"refund\", which does not exist", "\"search_kb\""];
    approval_names_an_unknown_reviewer:
        "approval-unknown-human.toml" at "10:19" says ["approval names human \"reviwer\", which does not exist", "did you mean \"reviewer\""];
    compensate_names_an_unknown_tool:
        "compensate-unknown-tool.toml" at "8:14" says ["compensate names tool \"refnd\", which does not exist", "did you mean \"refund\""];
    an_agent_handing_off_to_an_undeclared_agent_is_rejected_with_a_did_you_mean:
        "dangling-handoff.toml" at "7:13" says ["agent \"biling\", which does not exist", "did you mean \"billing\"?"];
    a_rule_calling_a_tool_its_agent_does_not_list_is_rejected:
        "rule-calls-unlisted-tool.toml" at "19:46" says ["calls tool \"refund\" but does not list it in `tools`"];
    a_condition_reading_an_unknown_variable_points_into_the_condition_with_a_did_you_mean:
        "when-unknown-variable.toml" at "12:13" says ["unknown variable `trun`", "did you mean `turn`?"];
    a_condition_comparing_a_number_with_a_string_points_at_the_string:
        "when-type-mismatch.toml" at "12:21" says ["expected a number", "found a string"];
    a_duration_with_an_unknown_unit_is_rejected_with_the_accepted_units:
        "bad-duration.toml" at "7:11" says ["expected a duration", "found \"2 parsecs\"", "units us, ms, s, m, h"];
    a_rate_not_written_as_count_per_unit_is_rejected:
        "bad-rate.toml" at "11:8" says ["expected a rate such as \"2/s\"", "found \"2 per second\""];
    a_probability_above_1_is_rejected:
        "probability-out-of-range.toml" at "12:58" says ["expected a probability between 0 and 1, found 1.5"];
    an_unknown_fault_kind_is_rejected_with_a_did_you_mean:
        "unknown-fault-kind.toml" at "9:8" says ["unknown fault kind \"actor.crsh\"", "did you mean \"actor.crash\"?"];
    a_fault_target_that_matches_no_actor_is_rejected:
        "fault-target-matches-nothing.toml" at "10:10" says ["fault target \"agent:billing\" matches no actor"];
    a_supervisor_naming_an_undeclared_child_is_rejected:
        "unknown-supervisor-child.toml" at "10:23" says ["supervisor child \"billing\" does not exist"];
    supervisors_that_supervise_each_other_are_rejected_as_a_cycle:
        "supervision-cycle.toml" at "9:8" says ["supervision cycle", "expected a tree"];
    an_actor_under_two_supervisors_is_rejected_at_the_second:
        "actor-supervised-twice.toml" at "14:13" says ["\"helper\" is already supervised by \"front\""];
    an_invariant_with_two_kinds_is_rejected:
        "invariant-with-two-kinds.toml" at "8:1" says ["expected exactly one of `never`, `always`, `eventually`, `budget`, `goal` or `detect`, found 2"];
    a_tool_rule_reading_a_field_the_table_lacks_is_rejected_with_a_did_you_mean:
        "world-rule-unknown-field.toml" at "18:20" says ["table rooms has no field `fre`", "did you mean `free`?"];
    a_tool_rule_writing_a_string_into_a_number_field_is_rejected:
        "world-update-type-mismatch.toml" at "18:39" says ["expected a number, found a string"];
    an_initial_record_of_the_wrong_type_is_rejected_naming_the_field:
        "world-row-wrong-type.toml" at "13:3" says ["field `free`: expected a number, found the string \"one\""];
    a_tool_rule_reading_an_undeclared_argument_is_rejected_with_a_did_you_mean:
        "world-rule-unknown-argument.toml" at "18:42" says ["unknown argument `amout_usd`", "did you mean `args.amount_usd`?"];
    a_table_whose_field_types_are_unknown_is_rejected_without_a_crash:
        "world-field-type-unknown.toml" at "11:17" says ["expected a field type", "did you mean \"int\"?"];
    a_tool_rule_reading_the_models_variables_is_rejected:
        "world-tool-reads-the-models-variable.toml" at "10:20" says ["`user` is the model's view of the conversation"];
    a_tool_rate_limit_that_is_not_whole_calls_a_minute_is_rejected:
        "world-tool-rate-not-per-minute.toml" at "10:14" says ["expected a whole number of calls a minute", "found \"90/h\""];
    a_goal_naming_a_task_no_traffic_performs_is_rejected_with_a_did_you_mean:
        "world-goal-unknown-task.toml" at "26:17" says ["names task \"change-r1\", which no traffic performs", "did you mean \"change-R1\"?"];
    a_file_that_is_not_utf8_is_rejected_at_the_first_bad_byte:
        "invalid-utf8.toml" at "3:12" says ["expected UTF-8 text, found an invalid byte"];
    an_empty_file_is_rejected_for_lacking_the_scenario_table:
        "empty.toml" at "1:1" says ["scenario"];
    a_negative_duration_is_rejected_as_negative:
        "negative-duration.toml" at "11:11" says ["expected a duration", "found \"-5s\"", "cannot be negative"];
    a_duration_too_large_to_count_is_rejected_as_too_large:
        "absurd-duration.toml" at "4:20" says ["expected a duration", "too large"];
    a_negative_count_is_rejected_with_the_accepted_range:
        "negative-number.toml" at "11:13" says ["expected a whole number from 0 to 4294967295, found -3"];
    a_number_past_2_to_the_64_is_rejected_with_the_accepted_range:
        "absurd-number.toml" at "4:14" says ["expected a whole number from 0 to 18446744073709551615", "found 18446744073709551616"];
    a_run_limit_of_zero_is_rejected:
        "zero-limit.toml" at "4:21" says ["expected a limit of at least 1, found 0"];
    tool_parameters_that_are_not_an_object_schema_are_rejected:
        "tool-parameters-not-object.toml" at "10:14" says ["expected `parameters` to be a schema with type = \"object\""];
    a_rule_argument_the_tool_schema_lacks_is_rejected_naming_it:
        "rule-arg-not-in-parameters.toml" at "17:31" says ["argument `oder` is not in the `parameters` of tool \"lookup_order\"", "it takes: order_id"];
    a_rule_leaving_out_a_required_argument_is_rejected_naming_it:
        "rule-misses-required-arg.toml" at "17:31" says ["requires the argument `amount_usd`"];
    a_user_step_with_two_actions_is_rejected_naming_the_choices:
        "user-step-two-actions.toml" at "11:3" says ["expected exactly one of `say`, `insist`, `contradict`, `give_up` or `done`", "found 2"];
    traffic_naming_an_undeclared_user_is_rejected_with_a_did_you_mean:
        "traffic-unknown-user.toml" at "15:8" says ["user \"costumer\", which does not exist", "did you mean \"customer\"?"];
    a_tool_choice_naming_a_tool_the_agent_lacks_is_rejected:
        "unknown-tool-choice.toml" at "15:15" says ["expected tool_choice \"auto\", \"none\", \"required\" or one of the agent's tools (search)", "found \"serch\""];
}

#[test]
fn a_file_over_16_mib_is_rejected_before_it_is_read() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let path = dir.path().join("huge.toml");
    let line = "# padding padding padding padding padding padding padding padding padding padding\n";
    let copies = (agentsim::scenario::FILE_BYTES_MAX as usize / line.len()) + 2;
    std::fs::write(&path, format!("[scenario]\nname = \"huge\"\n{}", line.repeat(copies))).expect("write");
    let output = agentsim_output(&["validate", path.to_str().expect("UTF-8")]);
    assert_eq!(status(&output), 2);
    let err = stderr(&output).replace(&path.display().to_string(), "HUGE.toml");
    assert!(
        err.starts_with("HUGE.toml: expected a scenario file of at most 16777216 bytes"),
        "{err}"
    );
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        description => "agentsim validate HUGE.toml (a file over 16 MiB)",
        omit_expression => true,
    }, {
        insta::assert_snapshot!("validation__huge-file", err);
    });
}

#[test]
fn every_file_in_bad_scenarios_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("tests/bad-scenarios"))
        .expect("tests/bad-scenarios exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = TESTED_FILES.iter().map(|s| s.to_string()).collect();
    tested.sort();
    assert_eq!(
        on_disk, tested,
        "each file in tests/bad-scenarios needs a test above, and each test its file"
    );
}

// ---------------------------------------------------------------------------------------------
// Through the library
// ---------------------------------------------------------------------------------------------

const VALID_PREFIX: &str = r#"
[scenario]
name = "inline"

[[llm]]
name = "gpt"
"#;

#[test]
fn validation_reports_every_problem_in_a_file_in_file_order() {
    let text = format!(
        r#"{VALID_PREFIX}
[[agent]]
name = "helper"
llm = "gtp"

[[traffic]]
kind = "poisson"
to = "helper"
rate = "fast"
conversations = 1
messages = ["hi"]
"#
    );
    let error = agentsim::scenario::parse("inline.toml", &text).expect_err("two mistakes");
    let lines: Vec<usize> = error
        .diagnostics
        .iter()
        .map(|d| agentsim::scenario::error::line_column(&text, d.span.clone().expect("located").start).0)
        .collect();
    assert_eq!(
        lines,
        [10, 15],
        "one diagnostic for the llm reference and one for the rate:\n{error}"
    );
}

#[test]
fn a_malformed_condition_is_reported_once_and_does_not_make_the_next_rule_unreachable() {
    // A rule whose `when` does not parse is still a `when` rule: the `otherwise` after it is
    // the last rule and can fire, so the only problem in this file is the condition.
    let text = format!(
        r#"{VALID_PREFIX}
[[agent]]
name = "helper"
llm = "gpt"
behavior = [
  {{ when = "turn == 'one'", then = {{ answer = "first" }} }},
  {{ otherwise = {{ answer = "later" }} }},
]
"#
    );
    let error = agentsim::scenario::parse("inline.toml", &text).expect_err("a malformed condition");
    assert_eq!(error.diagnostics.len(), 1, "expected one diagnostic, found:\n{error}");
}

// ---------------------------------------------------------------------------------------------
// Warnings: settings that validate and then do nothing
// ---------------------------------------------------------------------------------------------

/// Runs `agentsim validate tests/warn-scenarios/FILE`: the file is OK (status 0), and stderr
/// holds one warning at `line_col` with `phrases`, kept as the snapshot `validation__warn-NAME`.
fn check_warning(file: &str, line_col: &str, phrases: &[&str]) {
    let path = format!("tests/warn-scenarios/{file}");
    let output = agentsim_output(&["validate", &path]);
    let err = stderr(&output);
    assert_eq!(
        status(&output),
        0,
        "a warning alone does not reject {path}; stderr:\n{err}"
    );
    assert_eq!(stdout(&output), format!("{path}: OK\n"));
    let location = format!("{path}:{line_col}: warning: ");
    assert!(
        err.starts_with(&location),
        "expected the warning to start with {location:?}, found:\n{err}"
    );
    assert_eq!(err.matches(": warning: ").count(), 1, "expected one warning in:\n{err}");
    for phrase in phrases {
        assert!(err.contains(phrase), "expected {phrase:?} in:\n{err}");
    }
    let name = format!("validation__warn-{}", file.trim_end_matches(".toml"));
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        description => format!("agentsim validate {path}"),
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, err);
    });
}

/// One test per file of `tests/warn-scenarios/`: `test_name: "file.toml" at "LINE:COL" says [phrases];`.
macro_rules! warn_scenarios {
    ($($test:ident: $file:literal at $at:literal says [$($phrase:literal),* $(,)?];)*) => {
        /// Every file the tests below cover.
        const WARNED_FILES: &[&str] = &[$($file),*];
        $(
            #[test]
            fn $test() {
                check_warning($file, $at, &[$($phrase),*]);
            }
        )*
    };
}

warn_scenarios! {
    an_argument_rule_on_an_argument_no_watched_tool_takes_warns_with_the_arguments_they_take:
        "arg-rule-on-untaken-argument.toml" at "25:41" says ["found `amont`", "\"refund\" takes `amount`, `currency`", "did you mean `amount`?", "does nothing"];
    a_never_invariant_on_an_effect_no_tool_has_warns_with_a_did_you_mean:
        "invariant-on-missing-effect.toml" at "20:20" says ["found \"hotel_bookd\"", "did you mean \"hotel_booked\"?", "can never break"];
    a_resolution_invariant_without_a_user_who_talks_back_warns_that_every_conversation_breaks_it:
        "resolved-without-users.toml" at "19:27" says ["expected a [[traffic]] with `user = \"NAME\"`", "every conversation breaks this check"];
    traffic_of_zero_conversations_warns_that_it_starts_none:
        "traffic-without-conversations.toml" at "16:17" says ["found 0", "starts no conversation"];
    a_handoff_cycle_warns_naming_the_cycle:
        "handoff-cycle.toml" at "11:13" says ["handoff cycle triage → billing → triage"];
    a_delegation_cycle_warns_naming_the_cycle:
        "delegation-cycle.toml" at "12:14" says ["delegation cycle planner → researcher → planner", "refused with an error"];
    a_timeout_on_a_model_that_answers_at_once_warns_that_it_cannot_fire:
        "timeout-on-instant-model.toml" at "12:11" says ["`timeout`", "llm \"gpt\" answers in 0s", "can never fire"];
    a_fault_timed_after_the_run_ends_warns_that_it_cannot_fire:
        "fault-after-the-run-ends.toml" at "21:6" says ["max_virtual_time (30m00s)", "found 2h00m00s", "can never fire"];
    a_fault_latency_past_the_run_end_warns_that_it_cuts_the_run:
        "fault-latency-past-the-run-end.toml" at "32:11" says ["max_virtual_time (1h00m00s)", "found 2h00m00s", "ends limit_exceeded"];
    a_fault_on_a_tool_no_agent_uses_warns_that_it_cannot_fire:
        "fault-on-an-unused-tool.toml" at "28:10" says ["tool:refund that no agent uses", "can never fire"];
    a_tool_fault_on_a_tool_no_mock_rule_calls_warns_that_it_cannot_fire:
        "fault-on-a-tool-no-rule-calls.toml" at "33:10" says ["found tool:refund", "no `tool_call` of their mock models' rules calls", "can never fire"];
    a_fault_pinned_to_a_message_an_earlier_fault_always_takes_warns_naming_it:
        "fault-on-a-message-an-earlier-fault-takes.toml" at "30:14" says ["on_message = 1 on llm:gpt", "\"first-call-fails\" above", "can never fire"];
    a_fault_pinned_past_max_events_warns_that_the_run_ends_first:
        "fault-on-a-message-past-max-events.toml" at "23:14" says ["max_events (500)", "found 2000", "can never fire"];
    a_world_fault_on_a_tool_that_changes_no_record_warns_that_it_does_nothing:
        "world-fault-on-a-tool-that-writes-nothing.toml" at "34:8" says ["fault world.lost_write@tool:availability does nothing", "changes no record"];
    an_amount_bound_on_an_effect_without_amounts_warns_that_it_cannot_break:
        "amount-bound-on-an-effect-without-amounts.toml" at "28:20" says ["no tool with that effect has an `amount`", "can never break"];
    a_reviewer_no_tool_asks_warns_that_it_is_never_asked:
        "reviewer-no-tool-asks.toml" at "18:8" says ["human \"reviewer\"", "approval = { by = \"reviewer\" }", "never asked"];
    a_handoff_timeout_on_an_agent_without_handoffs_warns_that_it_never_fires:
        "handoff-timeout-without-handoffs.toml" at "11:19" says ["expected `handoffs` with `handoff_timeout`", "never fires"];
    a_tool_output_reading_an_argument_no_call_passes_warns_with_the_arguments_they_pass:
        "tool-output-reads-an-argument-no-call-passes.toml" at "21:10" says ["tool \"refund\"", "(`amount_usd`, `customer`)", "found `args.amount`", "renders empty"];
    cancellation_on_an_agent_nothing_cancels_warns:
        "cancellation-nothing-cancels.toml" at "11:16" says ["`deadline` or a `user.abandon` fault", "nothing cancels"];
    a_conversation_scripted_after_the_run_ends_warns_that_it_never_starts:
        "script-after-the-run-ends.toml" at "16:45" says ["max_virtual_time (1h00m00s)", "found 1 of 2 after it", "never start"];
}

#[test]
fn every_file_in_warn_scenarios_has_a_test() {
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("tests/warn-scenarios"))
        .expect("tests/warn-scenarios exists")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = WARNED_FILES.iter().map(|s| s.to_string()).collect();
    tested.sort();
    assert_eq!(
        on_disk, tested,
        "each file in tests/warn-scenarios needs a test above, and each test its file"
    );
}

#[test]
fn every_shipped_scenario_validates_without_warnings() {
    for path in scenario_files() {
        let (_, warnings) = agentsim::scenario::load_with_warnings(&path)
            .unwrap_or_else(|e| panic!("{} does not validate:\n{e}", relative(&path)));
        assert!(warnings.is_empty(), "{} has warnings:\n{warnings}", relative(&path));
    }
}

#[test]
fn a_handoff_to_itself_is_a_cycle_of_one_agent() {
    let text = format!("{VALID_PREFIX}\n[[agent]]\nname = \"loop\"\nllm = \"gpt\"\nhandoffs = [\"loop\"]\n");
    let (_, warnings) = agentsim::scenario::parse_with_warnings("inline.toml", &text).expect("valid");
    assert_eq!(warnings.diagnostics.len(), 1, "{warnings}");
    assert!(warnings.to_string().contains("handoff cycle loop → loop"), "{warnings}");
}

#[test]
fn an_argument_rule_is_not_warned_about_when_a_watched_tool_declares_no_arguments() {
    // "lookup" is never called with `args`, so what it takes is unknown: no warning.
    let text = format!(
        r#"{VALID_PREFIX}
[[tool]]
name = "refund"

[[tool]]
name = "lookup"

[[agent]]
name = "billing"
llm = "gpt"
tools = ["refund", "lookup"]
behavior = [
  {{ when = "turn == 1", then = {{ tool_call = "refund", args = {{ amount = 5 }} }} }},
  {{ otherwise = {{ tool_call = "lookup" }} }},
]

[[guardrail]]
name = "cap"
stage = "tool_call"
check = {{ kind = "allow_list", args = {{ account = {{ one_of = ["a"] }} }} }}
"#
    );
    let (_, warnings) = agentsim::scenario::parse_with_warnings("inline.toml", &text).expect("valid");
    assert!(warnings.is_empty(), "{warnings}");
}

#[test]
fn a_timeout_is_not_warned_about_when_a_fault_can_delay_the_model() {
    let text = format!(
        r#"{VALID_PREFIX}
[[agent]]
name = "helper"
llm = "gpt"
timeout = "5s"

[[fault]]
kind = "llm.overloaded"
target = "llm:gpt"
probability = 0.1
"#
    );
    let (_, warnings) = agentsim::scenario::parse_with_warnings("inline.toml", &text).expect("valid");
    assert!(warnings.is_empty(), "{warnings}");
}

#[test]
fn a_file_with_errors_reports_no_warnings() {
    let text = format!("{VALID_PREFIX}\n[[agent]]\nname = \"loop\"\nllm = \"gtp\"\nhandoffs = [\"loop\"]\n");
    let error = agentsim::scenario::parse_with_warnings("inline.toml", &text).expect_err("a dangling llm");
    assert!(!error.to_string().contains("warning"), "{error}");
}
