//! Property tests for the readers of outside files: the cassette reader and the OTLP importer.
//! Arbitrary or mutated input gives an error that names the file and the place (line, field),
//! never a panic.

mod common;

use std::sync::Arc;

use agentsim::llm::cassette::Cassette;
use agentsim::otlp::{export, import};
use agentsim::run::{self, RunOptions};
use agentsim::trace::TraceMode;
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

const CASSETTE: &str = concat!(
    r#"{"cassette_format":1,"agentsim":"0.1.0","scenario":"s"}"#,
    "\n",
    r#"{"llm":"gpt","actor":"agent:support","incarnation":0,"call_index":0,"request":{"model":"m","messages":[{"role":"user","content":"hi"}]},"status":429,"headers":{"retry-after":"2"},"response":{"error":{"type":"requests","code":"rate_limit_exceeded"}},"latency_us":1200}"#,
    "\n",
    r#"{"llm":"gpt","actor":"agent:support","incarnation":0,"call_index":1,"request":{"model":"m"},"status":200,"headers":{},"response":{"choices":[{"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]},"latency_us":900}"#,
    "\n",
);

/// An OTLP export of a real run, made by the library at test time.
fn otlp_export() -> Vec<u8> {
    let path = common::repo_root().join("scenarios/double-refund.toml");
    let scenario = Arc::new(agentsim::scenario::load(&path).unwrap());
    let options = RunOptions {
        trace: TraceMode::Memory,
        ..RunOptions::new(5)
    };
    let output = run::run(scenario.clone(), &options).unwrap();
    export::export(&output.trace, &scenario).unwrap().into_bytes()
}

/// Every JSON pointer in `value`.
fn pointers(value: &Value, at: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let next = format!("{at}/{k}");
                out.push(next.clone());
                pointers(v, next, out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                let next = format!("{at}/{i}");
                out.push(next.clone());
                pointers(v, next, out);
            }
        }
        _ => {}
    }
}

fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z0-9 ]{0,20}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(json!([{"stringValue": 3}])),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_give_the_cassette_reader_an_error_naming_file_and_line(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024)
    ) {
        if let Err(e) = Cassette::parse("fuzz.jsonl", &bytes) {
            prop_assert!(e.to_string().starts_with("fuzz.jsonl:"), "{}", e);
            prop_assert!(e.line >= 1, "{}", e);
        }
    }

    #[test]
    fn a_mutated_cassette_line_is_the_line_the_error_names(
        line in 0usize..3,
        edits in proptest::collection::vec((any::<Index>(), any::<u8>().prop_filter("no newline", |b| *b != b'\n')), 1..6),
    ) {
        let mut lines: Vec<Vec<u8>> = CASSETTE.lines().map(|l| l.as_bytes().to_vec()).collect();
        for (at, byte) in &edits {
            let target = &mut lines[line];
            let i = at.index(target.len());
            target[i] = *byte;
        }
        let bytes = lines.join(&b'\n');
        match Cassette::parse("fuzz.jsonl", &bytes) {
            Ok(cassette) => prop_assert!(cassette.entries.len() <= 2),
            Err(e) => {
                prop_assert_eq!(e.line, line + 1, "{}", e);
                prop_assert!(e.to_string().starts_with(&format!("fuzz.jsonl:{}: ", line + 1)), "{}", e);
            }
        }
    }

    #[test]
    fn arbitrary_bytes_give_the_importer_an_error_naming_the_file(
        bytes in proptest::collection::vec(any::<u8>(), 0..1024)
    ) {
        if let Err(e) = import::import_bytes("fuzz.json", &bytes) {
            prop_assert!(e.to_string().starts_with("fuzz.json:"), "{}", e);
            prop_assert!(!e.place.is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_mutated_otlp_field_is_named_in_the_error_or_imported(
        choice in any::<Index>(),
        value in replacement(),
    ) {
        let original: Value = serde_json::from_slice(&otlp_export_cached()).unwrap();
        let mut all = Vec::new();
        pointers(&original, String::new(), &mut all);
        let pointer = &all[choice.index(all.len())];
        let mut mutated = original.clone();
        *mutated.pointer_mut(pointer).unwrap() = value.clone();
        let bytes = serde_json::to_vec(&mutated).unwrap();
        match import::import_bytes("fuzz.json", &bytes) {
            Ok(imported) => prop_assert!(imported.scenario.contains("[scenario]")),
            Err(e) => {
                prop_assert!(e.to_string().starts_with("fuzz.json:"), "{}", e);
                let last = pointer.rsplit('/').next().unwrap();
                let well_formed_id = value.as_str().is_some_and(|s| s.chars().all(|c| c.is_ascii_hexdigit()));
                if matches!(last, "spanId" | "traceId" | "startTimeUnixNano" | "endTimeUnixNano") && !well_formed_id {
                    prop_assert!(e.place.contains(last), "{} (mutated {})", e, pointer);
                }
            }
        }
    }

    #[test]
    fn truncated_or_spliced_otlp_never_panics(cut in any::<Index>(), splice in proptest::collection::vec(any::<u8>(), 0..32)) {
        let mut bytes = otlp_export_cached();
        let at = cut.index(bytes.len());
        bytes.truncate(at);
        bytes.extend_from_slice(&splice);
        if let Err(e) = import::import_bytes("fuzz.json", &bytes) {
            prop_assert!(e.to_string().starts_with("fuzz.json:"), "{}", e);
        }
    }
}

fn otlp_export_cached() -> Vec<u8> {
    static EXPORT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    EXPORT.get_or_init(otlp_export).clone()
}
