//! `docs/report.schema.json` documents report.json: the real report of every scenario, and a
//! hand-written report with the version 2 keys, validate against it; its outline is a snapshot,
//! so a change to the schema is a reviewed change.

mod common;

use common::*;
use serde_json::Value;

fn schema() -> Value {
    let path = repo_root().join("docs/report.schema.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A checker for the subset of JSON Schema the file uses: type (one or several), enum,
/// minimum, properties, required, additionalProperties (false or a schema) and items.
fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if let Some(types) = schema.get("type") {
        let allowed: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("unsupported type spec {other} at {path}"),
        };
        let fits = |t: &str| match t {
            "object" => value.is_object(),
            "array" => value.is_array(),
            "string" => value.is_string(),
            "boolean" => value.is_boolean(),
            "null" => value.is_null(),
            "integer" => value.is_u64() || value.is_i64(),
            "number" => value.is_number(),
            other => panic!("unsupported type {other} at {path}"),
        };
        if !allowed.iter().any(|t| fits(t)) {
            errors.push(format!("{path}: expected {allowed:?}, found {value}"));
            return;
        }
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array) {
        if !options.contains(value) {
            errors.push(format!("{path}: {value} is not one of {options:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if n < min {
            errors.push(format!("{path}: {n} is below the minimum {min}"));
        }
    }
    if let Some(object) = value.as_object() {
        let properties = schema.get("properties").and_then(Value::as_object);
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = key.as_str().expect("required names are strings");
            if !object.contains_key(key) {
                errors.push(format!("{path}: missing required key `{key}`"));
            }
        }
        for (key, item) in object {
            let item_path = format!("{path}.{key}");
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => check(sub, item, &item_path, errors),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => errors.push(format!("{item_path}: key not in the schema")),
                    Some(sub @ Value::Object(_)) => check(sub, item, &item_path, errors),
                    _ => {}
                },
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check(items, item, &format!("{path}[{i}]"), errors);
        }
    }
}

fn violations(value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(&schema(), value, "report", &mut errors);
    errors
}

#[test]
fn the_report_of_every_scenario_follows_the_schema() {
    for file in scenario_files() {
        let path = relative(&file);
        let output = agentsim_output(&["run", &path, "--json"]);
        let report: Value = serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{path}: --json printed no JSON ({e}): {}", stderr(&output)));
        let errors = violations(&report);
        assert!(
            errors.is_empty(),
            "{path}: report.json breaks docs/report.schema.json:\n{}",
            errors.join("\n")
        );
    }
}

#[test]
fn a_version_2_report_with_guardrails_and_blast_radius_follows_the_schema() {
    let path = repo_root().join("tests/fixtures/cascade-v2/report.json");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("the fixture exists")).unwrap();
    assert_eq!(report["schema_version"], 2);
    let errors = violations(&report);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
}

#[test]
fn the_checker_rejects_wrong_types_unknown_keys_and_missing_keys() {
    let path = repo_root().join("tests/fixtures/cascade-v2/report.json");
    let mut report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    report["seed"] = Value::from("seven");
    report["surprise"] = Value::from(1);
    report.as_object_mut().unwrap().remove("digest");
    report["blast_radius"][0]["kind"] = Value::from("gossip");
    let errors = violations(&report);
    for expected in [
        "report.seed: expected",
        "report.surprise: key not in",
        "missing required key `digest`",
        "report.blast_radius[0].kind",
    ] {
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "expected an error containing {expected:?}, found {errors:?}"
        );
    }
}

#[test]
fn the_schema_version_matches_the_one_agentsim_writes() {
    let versions = schema()["properties"]["schema_version"]["enum"].clone();
    let current = Value::from(agentsim::report::REPORT_SCHEMA_VERSION);
    assert!(
        versions.as_array().is_some_and(|v| v.contains(&current)),
        "docs/report.schema.json lists schema versions {versions}, agentsim writes {current}"
    );
}

/// The schema as `path: type (required)` lines, one per key.
fn outline(schema: &Value, path: &str, out: &mut String) {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (key, sub) in properties {
            let sub_path = format!("{path}.{key}");
            let kind = sub.get("type").map(|t| t.to_string()).unwrap_or_default();
            let enumerated = sub.get("enum").map(|e| format!(" one of {e}")).unwrap_or_default();
            let optional = if required.contains(&key.as_str()) {
                ""
            } else {
                " (optional)"
            };
            out.push_str(&format!("{sub_path}: {kind}{enumerated}{optional}\n"));
            outline(sub, &sub_path, out);
        }
    }
    if let Some(items) = schema.get("items") {
        outline(items, &format!("{path}[]"), out);
    }
}

#[test]
fn schema_outline() {
    let mut text = String::new();
    outline(&schema(), "report", &mut text);
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
    }, {
        insta::assert_snapshot!("report_schema__outline", text);
    });
}

#[test]
fn an_impact_report_follows_the_schema_and_names_what_the_fault_changed() {
    let output = agentsim_output(&["run", "scenarios/double-refund.toml", "--impact", "--json"]);
    let report: Value = serde_json::from_slice(&output.stdout).expect("--json prints the report");
    let errors = violations(&report);
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    // The refund's timeout is what made the model refund twice: without it, one refund.
    let firing = &report["impact"]["firings"][0];
    assert_eq!(firing["fault"], "tool.timeout@tool:refund");
    assert_eq!(firing["changed_total"], 1);
    let change = &firing["changed"][0];
    assert_eq!(change["conversation"], 0);
    assert_eq!(change["with"]["effects"]["money_moved"], 2);
    assert_eq!(change["without"]["effects"]["money_moved"], 1);
    assert_eq!(change["with"]["fate"], change["without"]["fate"]);
}
