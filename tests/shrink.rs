//! `--shrink` and `--shrink-for`, driven through the real binary: the shrunk file validates and
//! breaks the same invariant at the same conversation, even when an invariant named a fault the
//! shrink removed.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

const FIXTURE: &str = "tests/fixtures/shrink/review-injection.toml";
const INJECTED: &str = "no payment on an injected review";

fn report(file: &str, seed: &str) -> Value {
    let output = agentsim_output(&["run", file, "--seed", seed, "--json"]);
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)))
}

/// The first violation's conversation of invariant `name` (None when it held).
fn first_broken_at(report: &Value, name: &str) -> Option<String> {
    let invariant = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("no invariant {name} in {report}"));
    let message = invariant["first_violation"]["message"].as_str()?;
    Some(message.split(':').next().unwrap().to_owned())
}

fn shrink(extra: &[&str], out: &Path) -> std::process::Output {
    let mut args = vec!["run", FIXTURE, "--shrink", "--shrink-out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    agentsim_output(&args)
}

#[test]
fn the_fixture_breaks_both_invariants() {
    let original = report(FIXTURE, "4");
    assert!(first_broken_at(&original, "pay at most once").is_some());
    assert!(first_broken_at(&original, INJECTED).is_some());
}

#[test]
fn an_invariant_naming_a_removed_fault_is_dropped_with_a_note_and_the_file_reproduces() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.toml");
    let output = shrink(&[], &out);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let text = std::fs::read_to_string(&out).unwrap();
    let settings: Vec<&str> = text.lines().filter(|l| !l.trim_start().starts_with('#')).collect();
    assert!(!settings.iter().any(|l| l.contains("fault:review-injection")), "{text}");
    assert!(
        text.contains(&format!("# Note: dropped invariant \"{INJECTED}\"")),
        "{text}"
    );
    assert!(text.contains("names only fault(s) the shrink removed"), "{text}");
    let validate = agentsim_output(&["validate", out.to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}", stdout(&validate));

    let shrunk = report(out.to_str().unwrap(), "4");
    let original = report(FIXTURE, "4");
    assert_eq!(shrunk["faults"].as_array().unwrap().len(), 1);
    assert_eq!(shrunk["faults"][0]["kind"], "tool.duplicate_effect");
    let at = first_broken_at(&original, "pay at most once");
    assert!(at.is_some());
    assert_eq!(first_broken_at(&shrunk, "pay at most once"), at);
}

#[test]
fn shrink_for_picks_the_named_invariant_and_rewrites_its_fault_reference() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.toml");
    let output = shrink(&["--shrink-for", INJECTED], &out);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("breaks \"{INJECTED}\"")),
        "{}",
        stderr(&output)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("tainted_by = \"fault:review-injection#*\""), "{text}");
    assert!(text.contains("# Note: invariant"), "{text}");
    let validate = agentsim_output(&["validate", out.to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}", stdout(&validate));

    let shrunk = report(out.to_str().unwrap(), "4");
    let original = report(FIXTURE, "4");
    let kinds: Vec<&str> = shrunk["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["tool.injection"]);
    assert_eq!(first_broken_at(&shrunk, INJECTED), first_broken_at(&original, INJECTED));
    assert_eq!(
        first_broken_at(&shrunk, "pay at most once"),
        None,
        "the duplicate is gone"
    );
}

#[test]
fn shrink_for_an_unknown_invariant_is_an_error_listing_the_broken_ones() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.toml");
    let output = shrink(&["--shrink-for", "no such invariant"], &out);
    assert_eq!(status(&output), 2);
    let err = stderr(&output);
    assert!(err.contains("--shrink-for \"no such invariant\""), "{err}");
    assert!(err.contains("\"pay at most once\""), "{err}");
    assert!(err.contains(INJECTED), "{err}");
    assert!(!out.exists(), "nothing is written");

    let sweep = agentsim_output(&["sweep", FIXTURE, "--seeds", "4..5", "--shrink", "--shrink-for", "nope"]);
    assert_eq!(status(&sweep), 2);
    assert!(stderr(&sweep).contains("\"pay at most once\""), "{}", stderr(&sweep));

    let without_shrink = agentsim_output(&["run", FIXTURE, "--shrink-for", INJECTED]);
    assert_eq!(status(&without_shrink), 2);
}

#[test]
fn sweep_shrink_for_shrinks_the_first_seed_that_broke_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = agentsim()
        .current_dir(dir.path())
        .args([
            "sweep",
            repo_root().join(FIXTURE).to_str().unwrap(),
            "--seeds",
            "4..5",
            "--shrink",
            "--shrink-for",
            INJECTED,
        ])
        .output()
        .unwrap();
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let written = dir.path().join("review-injection.shrunk-seed4.toml");
    let text = std::fs::read_to_string(&written).unwrap_or_else(|e| panic!("{e}: {}", stderr(&output)));
    assert!(text.contains("name = \"review-injection#2\""), "{text}");
    let validate = agentsim_output(&["validate", written.to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}", stdout(&validate));
}

#[test]
fn the_shrunk_file_carries_the_seed_it_was_shrunk_for_and_reproduces_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("min.toml");
    // The fixture says `seed = 4`; shrinking seed 6 must not leave that behind.
    let output = shrink(&["--seed", "6"], &out);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.lines().any(|l| l == "seed = 6"), "{text}");
    assert!(!text.lines().any(|l| l == "seed = 4"), "{text}");
    let plain = agentsim_output(&["run", out.to_str().unwrap(), "--json"]);
    let shrunk: Value = serde_json::from_slice(&plain.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&plain)));
    assert_eq!(shrunk["seed"], 6);
    let original = report(FIXTURE, "6");
    let at = first_broken_at(&original, "pay at most once");
    assert!(at.is_some());
    assert_eq!(first_broken_at(&shrunk, "pay at most once"), at);
}

#[test]
fn sweep_shrink_writes_into_its_out_dir_or_to_shrink_out() {
    let dir = tempfile::tempdir().unwrap();
    let sweep_shrink = |flag: &str, path: &Path| {
        let output = agentsim_output(&[
            "sweep",
            FIXTURE,
            "--seeds",
            "4..5",
            "--shrink",
            flag,
            path.to_str().unwrap(),
        ]);
        assert_eq!(status(&output), 1, "{}", stderr(&output));
    };
    let out = dir.path().join("sweep");
    sweep_shrink("--out", &out);
    assert!(out.join("review-injection.shrunk-seed4.toml").exists());
    let named = dir.path().join("min.toml");
    sweep_shrink("--shrink-out", &named);
    let validate = agentsim_output(&["validate", named.to_str().unwrap()]);
    assert_eq!(status(&validate), 0, "{}", stdout(&validate));
}
