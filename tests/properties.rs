//! Property tests over everything agentsim reads: the scenario parser (arbitrary text, arbitrary
//! bytes, and structure-aware mutations of the real scenarios) and the trace reader (arbitrary
//! bytes and mutations of a real trace). Nothing may panic, and every rejection names the file,
//! the place and what was expected.
//!
//! cargo-fuzz needs a nightly toolchain; these run on stable, with thousands of cases in all.

mod common;

use std::sync::OnceLock;

use agentsim::run::Flavor;
use agentsim::trace::reader;
use common::*;
use proptest::prelude::*;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// The text of every scenario in `scenarios/`.
fn real_scenarios() -> &'static [String] {
    static TEXTS: OnceLock<Vec<String>> = OnceLock::new();
    TEXTS.get_or_init(|| {
        scenario_files()
            .iter()
            .map(|p| std::fs::read_to_string(p).expect("a scenario file"))
            .collect()
    })
}

/// A real trace (support-desk, seed 0), with its header and end records.
fn real_trace() -> &'static [u8] {
    static TRACE: OnceLock<Vec<u8>> = OnceLock::new();
    TRACE.get_or_init(|| {
        let scenario = load(&repo_root().join("scenarios/support-desk.toml"));
        run_in_memory(&scenario, 0, Flavor::CurrentThread).trace
    })
}

/// Parses `text` as `mutant.toml`; a rejection must name the file and, per problem, a place.
fn parses_or_names_the_place(text: &str) -> Result<(), TestCaseError> {
    if let Err(error) = agentsim::scenario::parse("mutant.toml", text) {
        prop_assert!(!error.diagnostics.is_empty(), "a rejection with no diagnostic");
        let message = error.to_string();
        prop_assert!(
            message.starts_with("mutant.toml:"),
            "the error does not name the file:\n{message}"
        );
        for diagnostic in &error.diagnostics {
            prop_assert!(!diagnostic.message.trim().is_empty(), "an empty message");
            if let Some(span) = &diagnostic.span {
                prop_assert!(span.start <= text.len(), "a span past the end of the file: {span:?}");
            }
        }
    }
    Ok(())
}

/// Values that stress types and ranges where a TOML value goes.
const VALUES: &[&str] = &[
    "0",
    "-1",
    "-5s",
    "\"-5s\"",
    "\"0s\"",
    "1e309",
    "18446744073709551616",
    "9223372036854775807",
    "nan",
    "inf",
    "\"\"",
    "\"{{\"",
    "\"{{nope}}\"",
    "\"{{args.}}\"",
    "[]",
    "{}",
    "[1, \"a\"]",
    "{ a = 1 }",
    "true",
    "\"agent:*\"",
    "\"turn == \"",
    "\"2/0s\"",
    "1979-05-27",
];

/// One structure-aware edit of a scenario, by line.
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, usize),
    TruncateAt(usize),
    InsertKey(usize, String, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, v)| Edit::ReplaceValue(a, v)),
        any::<usize>().prop_map(Edit::TruncateAt),
        (any::<usize>(), "[a-z_]{1,12}", any::<usize>()).prop_map(|(a, k, v)| Edit::InsertKey(a, k, v)),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for edit in edits {
        if lines.is_empty() {
            break;
        }
        let n = lines.len();
        match edit {
            Edit::DeleteLine(i) => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) => {
                let line = lines[i % n].clone();
                lines.insert(i % n, line);
            }
            Edit::SwapLines(a, b) => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, v) => {
                let line = &mut lines[i % n];
                if let Some(eq) = line.find('=') {
                    line.truncate(eq + 1);
                    line.push(' ');
                    line.push_str(VALUES[v % VALUES.len()]);
                }
            }
            Edit::TruncateAt(i) => {
                let line = &mut lines[i % n];
                let mut cut = i % (line.len() + 1);
                while !line.is_char_boundary(cut) {
                    cut -= 1;
                }
                line.truncate(cut);
            }
            Edit::InsertKey(i, key, v) => lines.insert(i % n, format!("{key} = {}", VALUES[v % VALUES.len()])),
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_text_parses_or_is_rejected_with_its_place(text in "(?s).{0,300}") {
        parses_or_names_the_place(&text)?;
    }

    #[test]
    fn arbitrary_toml_like_text_parses_or_is_rejected_with_its_place(
        text in "(\\[\\[?(scenario|agent|llm|tool|fault|traffic|supervisor|invariant)\\]\\]?\n|[a-z_]{1,10} = (\"[a-z0-9 {}.:*/-]{0,10}\"|-?[0-9]{1,20}|\\[\\]|true)\n){0,12}"
    ) {
        parses_or_names_the_place(&text)?;
    }

    #[test]
    fn mutated_real_scenarios_parse_or_are_rejected_with_their_place(
        index in any::<usize>(),
        edits in proptest::collection::vec(edit(), 1..5),
    ) {
        let texts = real_scenarios();
        let text = apply(&texts[index % texts.len()], &edits);
        parses_or_names_the_place(&text)?;
    }
}

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn arbitrary_bytes_in_a_scenario_file_are_rejected_with_their_place(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path = dir.path().join("bytes.toml");
        std::fs::write(&path, &bytes).expect("write");
        if let Err(error) = agentsim::scenario::load(&path) {
            let message = error.to_string();
            prop_assert!(message.starts_with(&path.display().to_string()), "{message}");
        }
    }
}

/// A trace rejection names the file and a `LINE:COL` inside the input.
fn trace_reads_or_names_the_place(bytes: &[u8]) -> Result<(), TestCaseError> {
    let _ = reader::header(bytes);
    if let Err(error) = reader::read("trace.jsonl", bytes) {
        let message = error.to_string();
        prop_assert!(message.starts_with("trace.jsonl:"), "{message}");
        prop_assert!(error.line >= 1 && error.column >= 1, "{message}");
        prop_assert!(
            error.line <= bytes.iter().filter(|b| **b == b'\n').count() + 1,
            "a line past the end: {message}"
        );
        prop_assert!(message.contains("expected"), "{message}");
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn arbitrary_bytes_are_read_as_a_trace_or_rejected_with_their_place(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        trace_reads_or_names_the_place(&bytes)?;
        let _ = reader::first_divergence(real_trace(), &bytes);
    }

    #[test]
    fn a_damaged_real_trace_is_rejected_with_its_place_or_diverges(
        cut in any::<usize>(),
        flip in any::<usize>(),
        byte in any::<u8>(),
        mode in 0u8..3,
    ) {
        let original = real_trace();
        prop_assert!(reader::read("trace.jsonl", original).is_ok());
        let mut damaged = original.to_vec();
        match mode {
            0 => damaged.truncate(cut % damaged.len()),
            1 => {
                let at = flip % damaged.len();
                damaged[at] = byte;
            }
            _ => {
                let at = flip % damaged.len();
                damaged.insert(at, byte);
            }
        }
        trace_reads_or_names_the_place(&damaged)?;
        if damaged != original {
            prop_assert!(reader::first_divergence(original, &damaged).is_some());
        }
    }
}

#[test]
fn the_real_trace_reads_whole() {
    let recorded = reader::read("trace.jsonl", real_trace()).expect("a trace agentsim wrote reads back");
    assert_eq!(recorded.end.kind(), "end");
    assert_eq!(recorded.header.kind(), "header");
    assert_eq!(recorded.records, real_trace().iter().filter(|b| **b == b'\n').count());
}
