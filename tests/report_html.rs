//! HTML reports and Mermaid diagrams, through the real binary: `run --out` writes report.html,
//! `agentsim report DIR` rewrites it byte for byte, the file is self-contained and bounded at
//! 90,000 events, its structure is a snapshot, and sweeps and comparisons have reports too.

mod common;

use std::path::Path;

use common::*;

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// `agentsim run FILE --out DIR ARGS`, which must finish (status 0 or 1).
fn run_out(file: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["run", file, "--out", dir.to_str().expect("a UTF-8 path")];
    args.extend_from_slice(extra);
    let output = agentsim_output(&args);
    let code = status(&output);
    assert!(
        code == 0 || code == 1,
        "{file}: exit status {code}: {}",
        stderr(&output)
    );
    output
}

/// Elements with an id or a class, indented by nesting, identical neighbours collapsed:
/// the structure of a page without its coordinates and text.
fn outline(html: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut depth = 0usize;
    let mut rest = html;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        let close = rest.find('>').expect("every tag closes");
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            depth = depth.saturating_sub(1);
            let _ = name;
            continue;
        }
        if tag.starts_with('!') {
            continue;
        }
        let name: String = tag.chars().take_while(|c| c.is_ascii_alphanumeric()).collect();
        let attr = |key: &str| {
            let needle = format!(" {key}=\"");
            tag.find(&needle).map(|at| {
                let value = &tag[at + needle.len()..];
                value[..value.find('"').unwrap_or(value.len())].to_owned()
            })
        };
        let mut line = String::new();
        if let Some(id) = attr("id") {
            // Event ids carry sequence numbers; keep their kind only.
            let id = if id.starts_with("ev-") { "ev-N".to_owned() } else { id };
            line.push_str(&format!("#{id}"));
        }
        if let Some(class) = attr("class") {
            line.push_str(&format!(".{}", class.replace(' ', ".")));
        }
        if !line.is_empty() {
            lines.push(format!("{}{name}{line}", "  ".repeat(depth)));
        }
        let self_closing = tag.ends_with('/') || matches!(name.as_str(), "meta" | "br" | "input" | "img" | "link");
        if matches!(name.as_str(), "script" | "style") {
            let end = format!("</{name}>");
            rest = &rest[rest.find(&end).expect("script and style close")..];
        }
        if !self_closing {
            depth += 1;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        let mut n = 1;
        while i + n < lines.len() && lines[i + n] == lines[i] {
            n += 1;
        }
        if n > 1 {
            out.push_str(&format!("{} ×{n}\n", lines[i]));
        } else {
            out.push_str(&format!("{}\n", lines[i]));
        }
        i += n;
    }
    out
}

fn snapshot(name: &str, text: &str) {
    insta::with_settings!({
        snapshot_path => concat!(env!("CARGO_MANIFEST_DIR"), "/snapshots"),
        prepend_module_to_snapshot => false,
        omit_expression => true,
    }, {
        insta::assert_snapshot!(name, text);
    });
}

/// Values of `src="…"` and `href="…"` attributes.
fn links(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for key in [" src=\"", " href=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(key) {
            rest = &rest[at + key.len()..];
            found.push(rest[..rest.find('"').unwrap_or(0)].to_owned());
        }
    }
    found
}

fn assert_self_contained(html: &str, what: &str) {
    for link in links(html) {
        assert!(
            !link.contains("://") && !link.starts_with("//"),
            "{what}: the report must not load anything from the network, found a link to {link}"
        );
    }
    assert!(!html.contains("<link"), "{what}: no external stylesheets");
    assert!(!html.contains("<script src"), "{what}: no external scripts");
}

#[test]
fn run_out_writes_a_self_contained_report_with_a_lane_per_actor_and_a_marker_per_fault() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/support-desk.toml", dir.path(), &[]);
    let html = read_text(&dir.path().join("report.html"));
    let report: serde_json::Value = serde_json::from_str(&read_text(&dir.path().join("report.json"))).unwrap();
    assert_self_contained(&html, "support-desk");
    for actor in [
        "user",
        "agent:triage",
        "agent:billing",
        "tool:refund",
        "llm:gpt",
        "supervisor:desk",
    ] {
        assert!(
            html.contains(&format!("class=\"lane\" data-actor=\"{actor}\"")),
            "no lane for {actor}"
        );
    }
    let faults = report["faults"].as_array().unwrap().len();
    assert!(faults > 0);
    assert_eq!(
        html.matches("<g class=\"fault-marker\" ").count(),
        faults,
        "one marker per fault"
    );
    assert_eq!(
        html.matches("<g class=\"crash-marker\" ").count(),
        report["failures"].as_array().unwrap().len()
    );
    let sources = report["blast_radius"].as_array().map_or(0, Vec::len);
    assert_eq!(
        html.matches("<div class=\"source").count(),
        faults + sources,
        "one cascade card per taint source and one per fault"
    );
    // The broken invariant links to its marker on the timeline.
    assert!(
        html.contains("href=\"#inv-2\"") && html.contains("id=\"inv-2\""),
        "the violation is linked"
    );
    assert!(
        html.contains(report["replay"].as_str().unwrap()),
        "the replay command is shown"
    );
}

/// The number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let at = text.find(prefix).unwrap_or_else(|| panic!("no {prefix:?} in:\n{text}"));
    text[at + prefix.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?}"))
}

#[test]
fn summary_html_replay_and_mermaid_agree_on_the_events_and_label_every_other_count() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let diagram_path = dir.path().join("run.mmd");
    let output = run_out(
        "scenarios/support-desk.toml",
        &out,
        &["--mermaid", diagram_path.to_str().unwrap()],
    );
    let report: serde_json::Value = serde_json::from_str(&read_text(&out.join("report.json"))).unwrap();
    let events = report["events"].as_u64().unwrap();
    let records = read_text(&out.join("trace.jsonl")).lines().count() as u64;
    assert_ne!(events, records, "the scenario must tell the two counts apart");

    assert_eq!(
        number_after(&stdout(&output), "  events         "),
        events,
        "terminal summary"
    );

    let html = read_text(&out.join("report.html"));
    assert_eq!(number_after(&html, "virtual · "), events, "HTML header");
    assert!(html.contains(&format!("{events} events")));
    for (at, _) in html.match_indices(" events") {
        let before: String = html[..at].chars().rev().take_while(char::is_ascii_digit).collect();
        if !before.is_empty() {
            let n: u64 = before.chars().rev().collect::<String>().parse().unwrap();
            assert_eq!(n, events, "every \"N events\" in the HTML is report.json's events");
        }
    }

    let replay = agentsim_output(&["replay", out.to_str().unwrap()]);
    assert_eq!(status(&replay), 0, "{}", stderr(&replay));
    let replay = stdout(&replay);
    assert_eq!(number_after(&replay, "replay: OK — "), events, "{replay}");
    assert_eq!(
        number_after(&replay, "events ("),
        records,
        "records are labelled records: {replay}"
    );
    assert!(replay.contains(&format!("{records} trace records")), "{replay}");

    let diagram = read_text(&diagram_path);
    let header = diagram.lines().nth(1).unwrap();
    assert!(
        header.contains(" · steps "),
        "diagram steps are labelled steps: {header}"
    );
    assert!(
        header.contains(&format!("the run delivered {events} events")),
        "and the events are report.json's: {header}"
    );
}

#[test]
fn a_guardrail_has_one_lane_and_one_participant() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let diagram_path = dir.path().join("run.mmd");
    run_out(
        "scenarios/prompt-injection-guarded.toml",
        &out,
        &["--mermaid", diagram_path.to_str().unwrap()],
    );
    assert!(read_text(&out.join("trace.jsonl")).contains("\"kind\":\"guard\""));
    let html = read_text(&out.join("report.html"));
    assert_eq!(
        html.matches("class=\"lane\" data-actor=\"guardrail:injection-filter\"")
            .count(),
        1,
        "one lane for the guardrail"
    );
    assert!(
        !html.contains("data-actor=\"injection-filter\""),
        "the guard records' bare name gets no lane of its own"
    );
    let diagram = read_text(&diagram_path);
    assert!(diagram.contains(" as guardrail:injection-filter\n"), "{diagram}");
    assert!(!diagram.contains(" as injection-filter\n"), "{diagram}");
}

#[test]
fn agentsim_report_rewrites_the_same_bytes_from_the_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/retry-storm.toml", dir.path(), &[]);
    let first = std::fs::read(dir.path().join("report.html")).unwrap();
    std::fs::remove_file(dir.path().join("report.html")).unwrap();
    let output = agentsim_output(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    assert_eq!(std::fs::read(dir.path().join("report.html")).unwrap(), first);
}

#[test]
fn report_of_a_directory_without_a_run_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = agentsim_output(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(status(&output), 2);
    assert!(stderr(&output).contains("trace.jsonl"), "{}", stderr(&output));
    std::fs::write(dir.path().join("trace.jsonl"), "{\"kind\":\"header\"}\n").unwrap();
    std::fs::write(dir.path().join("report.json"), "{\"oops\": ").unwrap();
    let output = agentsim_output(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(status(&output), 2);
    assert!(stderr(&output).contains("report.json:1:"), "{}", stderr(&output));
}

#[test]
fn html_structure_of_the_crash_loop_report() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/crash-loop.toml", dir.path(), &[]);
    snapshot(
        "report_html__crash_loop",
        &outline(&read_text(&dir.path().join("report.html"))),
    );
}

#[test]
fn a_version_2_report_shows_guardrail_verdicts_and_where_each_source_was_stopped() {
    let dir = tempfile::tempdir().unwrap();
    for file in ["trace.jsonl", "report.json"] {
        std::fs::copy(
            repo_root().join("tests/fixtures/cascade-v2").join(file),
            dir.path().join(file),
        )
        .unwrap();
    }
    let output = agentsim_output(&["report", dir.path().to_str().unwrap()]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let html = read_text(&dir.path().join("report.html"));
    assert_self_contained(&html, "cascade-v2");
    assert!(html.contains("guard-marker verdict-block") && html.contains("guard-marker verdict-redact"));
    assert!(
        html.contains("data-actor=\"guardrail:injection-in\""),
        "guardrails get lanes"
    );
    assert!(
        html.contains("<div class=\"source contained\"><h3>⚡ fault:kb-poison"),
        "the stopped fault is contained"
    );
    assert!(
        html.contains("<span class=\"chip good\">injection-in</span>"),
        "names the guardrail that stopped it"
    );
    assert!(
        html.contains("no guardrail stopped it"),
        "the untrusted user input was not stopped"
    );
    assert!(html.contains("<section id=\"guardrails\">"));
    snapshot("report_html__cascade_v2", &outline(&html));
}

#[test]
fn a_90_000_event_run_gives_a_bounded_report() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/bench/w5-swarm.toml", dir.path(), &[]);
    let report: serde_json::Value = serde_json::from_str(&read_text(&dir.path().join("report.json"))).unwrap();
    assert!(
        report["events"].as_u64().unwrap() >= 90_000,
        "the run is long: {}",
        report["events"]
    );
    let html = read_text(&dir.path().join("report.html"));
    assert!(
        html.len() <= agentsim::render::html::RUN_HTML_BYTES_MAX,
        "report.html is {} bytes, more than the bound {}",
        html.len(),
        agentsim::render::html::RUN_HTML_BYTES_MAX
    );
    let lanes = html.matches("<g class=\"lane\"").count();
    assert!(lanes <= agentsim::render::html::run::LANES_MAX, "{lanes} lanes");
    assert!(html.contains("other actors ("), "the less busy actors share a lane");
    let pages = html.matches("<div class=\"page\"").count();
    assert!(pages <= agentsim::render::html::run::PAGES_MAX, "{pages} pages");
    assert!(
        html.contains("the overview shows all of them"),
        "the reader is told the timeline is paged"
    );
}

#[test]
fn mermaid_diagrams_name_every_participant_and_stay_short_on_long_runs() {
    let dir = tempfile::tempdir().unwrap();
    let diagram_path = dir.path().join("crash-loop.mmd");
    let output = agentsim_output(&[
        "run",
        "scenarios/crash-loop.toml",
        "--mermaid",
        diagram_path.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let diagram = read_text(&diagram_path);
    assert!(diagram.starts_with("sequenceDiagram\n"));
    for actor in ["user", "agent:intake", "llm:gpt", "supervisor:intake-sup"] {
        assert!(
            diagram.contains(&format!(" as {actor}\n")),
            "no participant {actor}:\n{diagram}"
        );
    }
    assert!(diagram.contains("⚡ fault poison (actor.crash)") && diagram.contains("gave up"));
    assert!(
        !diagram.contains("%%POISON"),
        "a %% inside a label would start a comment"
    );

    let long = dir.path().join("w5.mmd");
    let output = agentsim_output(&[
        "run",
        "scenarios/bench/w5-swarm.toml",
        "--mermaid",
        long.to_str().unwrap(),
    ]);
    assert!(status(&output) <= 1, "{}", stderr(&output));
    let steps = read_text(&long)
        .lines()
        .filter(|l| l.contains("->>") || l.contains("Note over"))
        .count();
    assert!(
        steps <= agentsim::render::mermaid::MERMAID_STEPS_MAX + 2,
        "{steps} steps"
    );
}

#[test]
fn sweep_out_writes_a_report_linking_the_run_reports_of_failing_seeds() {
    let dir = tempfile::tempdir().unwrap();
    let output = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..30",
        "--out",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        status(&output),
        1,
        "support-desk fails on some seeds: {}",
        stderr(&output)
    );
    let html = read_text(&dir.path().join("report.html"));
    assert_self_contained(&html, "sweep");
    assert_eq!(html.matches("<tr class=\"invariant\">").count(), 3);
    assert_eq!(html.matches("<svg class=\"histogram\"").count(), 4);
    // A fate's bar is coloured by the ending, not by its share: answered green, lost red.
    let fate_row = |fate: &str| {
        html.split("<tr class=\"fate\">")
            .find(|row| row.starts_with(&format!("<td>{fate}</td>")))
            .unwrap_or_else(|| panic!("no fate row for {fate}"))
            .to_owned()
    };
    assert!(
        fate_row("answered").contains("background:#16a34a"),
        "{}",
        fate_row("answered")
    );
    assert!(fate_row("lost").contains("background:#dc2626"), "{}", fate_row("lost"));
    let run_links: Vec<String> = links(&html)
        .into_iter()
        .filter(|l| l.starts_with("runs/seed-"))
        .collect();
    assert!(!run_links.is_empty(), "failing seeds link to their run reports");
    for link in &run_links {
        let run_report = dir.path().join(link);
        assert!(run_report.exists(), "{link} does not exist");
        let run_dir = run_report.parent().unwrap();
        let replay = agentsim_output(&["replay", run_dir.to_str().unwrap()]);
        assert_eq!(status(&replay), 0, "the failing run replays: {}", stdout(&replay));
    }
}

#[test]
fn a_sweep_with_impact_shows_what_each_fault_changed_as_its_summary_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sweep.html");
    let output = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..8",
        "--impact",
        "--json",
        "--html",
        path.to_str().unwrap(),
    ]);
    assert_eq!(
        status(&output),
        1,
        "support-desk fails on some seeds: {}",
        stderr(&output)
    );
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let impact = &summary["impact"][0];
    assert_eq!(impact["fault"], "actor.crash@agent:billing");
    let html = read_text(&path);
    assert_self_contained(&html, "sweep");
    let section = &html[html.find("<section id=\"impact\">").expect("an impact section")..];
    let section = &section[..section.find("</section>").unwrap()];
    let row = impact_row(section, "actor.crash@agent:billing");
    let (fired, changed) = (
        impact["runs_fired"].as_u64().unwrap(),
        impact["runs_changed"].as_u64().unwrap(),
    );
    assert!(fired > 0 && changed > 0, "{impact}");
    assert!(row.contains(&format!(">{changed}/{fired}<")), "{row}");
    let conversations = impact["deltas"]["conversations_changed"].as_u64().unwrap();
    let knock_on = impact["deltas"]["knock_on"].as_u64().unwrap();
    assert!(
        row.contains(&format!(" {conversations} <span class=\"muted\">({knock_on} knock-on)")),
        "{row}"
    );
    let moved = impact["deltas"]["effects"]["money_moved"].as_i64().unwrap();
    assert!(row.contains(&format!("money_moved {moved:+}")), "{row}");

    // Without --impact there is nothing to show, and no empty section.
    let plain = agentsim_output(&[
        "sweep",
        "scenarios/support-desk.toml",
        "--seeds",
        "0..2",
        "--html",
        path.to_str().unwrap(),
    ]);
    assert_eq!(status(&plain), 1, "{}", stderr(&plain));
    assert!(!read_text(&path).contains("<section id=\"impact\">"));
}

#[test]
fn labels_of_invariants_broken_at_one_instant_take_rows_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_out("tests/fixtures/crowded-violations.toml", dir.path(), &[]);
    assert_eq!(status(&output), 1, "{}", stderr(&output));
    let html = read_text(&dir.path().join("report.html"));
    // (x, y, name) of each violation label, as the timeline prints it.
    let labels: Vec<(f64, String, String)> = html
        .split("<g class=\"violation-marker\"")
        .skip(1)
        .filter_map(|marker| {
            // The legend's marker has no label.
            let text = &marker[marker.find("<text x=\"")? + 9..];
            let x: f64 = text[..text.find('"').unwrap()].parse().unwrap();
            let y = text[text.find("y=\"").unwrap() + 3..]
                .split('"')
                .next()
                .unwrap()
                .to_owned();
            let name = text[text.find("✗ ").unwrap() + "✗ ".len()..]
                .split('<')
                .next()
                .unwrap()
                .to_owned();
            Some((x, y, name))
        })
        .collect();
    assert_eq!(labels.len(), 3, "{labels:?}");
    assert!(
        labels.iter().all(|l| l.0 == labels[0].0),
        "all at one instant: {labels:?}"
    );
    let rows: std::collections::BTreeSet<&str> = labels.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(rows.len(), 3, "one row each: {labels:?}");
}

#[test]
fn compare_html_shows_both_designs_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("compare.html");
    let output = agentsim_output(&[
        "compare",
        "scenarios/retry-storm.toml",
        "scenarios/retry-storm-jitter.toml",
        "--seeds",
        "0..6",
        "--html",
        path.to_str().unwrap(),
    ]);
    assert_eq!(status(&output), 0, "{}", stderr(&output));
    let html = read_text(&path);
    assert_self_contained(&html, "compare");
    assert!(html.contains("A retry-storm vs B retry-storm-jitter"));
    assert_eq!(
        html.matches("<svg class=\"histogram\"").count(),
        8,
        "four histograms per design"
    );
    assert!(html.contains("significant"));
}

/// The `<tr>` of the impact table that names `fault`.
fn impact_row<'h>(html: &'h str, fault: &str) -> &'h str {
    let table = &html[html.find("<table class=\"impact\"").expect("an impact table")..];
    let table = &table[..table.find("</table>").expect("the table ends")];
    table
        .split("<tr")
        .find(|row| row.contains(&format!("<b>{fault}</b>")))
        .unwrap_or_else(|| panic!("no row for {fault} in {table}"))
}

#[test]
fn with_impact_the_cascade_leads_with_what_each_fault_changed_and_the_harmed_table() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/support-desk.toml", dir.path(), &["--impact"]);
    let html = read_text(&dir.path().join("report.html"));
    let report: serde_json::Value = serde_json::from_str(&read_text(&dir.path().join("report.json"))).unwrap();
    let lost = report["fates"]["lost"].as_u64().unwrap();
    assert!(lost > 0);
    // The first screen says how many were harmed and by which fault.
    let summary = &html[html.find("id=\"summary\"").unwrap()..html.find("id=\"invariants\"").unwrap_or(html.len())];
    assert!(
        summary.contains(&format!(
            "Without each fault they would have ended otherwise: <b>actor.crash@agent:billing</b> ({lost})"
        )),
        "{summary}"
    );
    let row = impact_row(&html, "actor.crash@agent:billing");
    assert!(row.contains(&format!("{lost} answered → lost")), "{row}");
    assert!(
        row.contains("knock-on"),
        "the crash lost conversations it never hit: {row}"
    );
    // The harmed table names the fault on each lost conversation and links to its moment.
    let cascade = &html[html.find("id=\"cascade\"").unwrap()..];
    let harmed = &cascade[cascade.find("<table class=\"harmed\">").expect("a harmed table")..];
    let harmed = &harmed[..harmed.find("</table>").unwrap()];
    assert_eq!(
        harmed.matches("⚡ actor.crash@agent:billing").count() as u64,
        lost,
        "{harmed}"
    );
    assert!(harmed.contains("href=\"#ev-"), "{harmed}");
    // The reach lists come after, folded.
    let impact_at = cascade.find("<table class=\"impact\">").unwrap();
    let reach_at = cascade.find("<details class=\"reach\">").expect("the reach is folded");
    assert!(impact_at < reach_at);
    assert!(
        cascade[reach_at..].contains("class=\"source"),
        "the blast-radius cards are inside the fold"
    );
    assert!(!cascade[..reach_at].contains("class=\"source"));
}

#[test]
fn a_fault_a_guardrail_stopped_reached_actors_but_changed_nothing() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/prompt-injection-guarded.toml", dir.path(), &["--impact"]);
    let html = read_text(&dir.path().join("report.html"));
    let row = impact_row(&html, "poisoned-email");
    assert!(row.contains("changed nothing"), "{row}");
    let report: serde_json::Value = serde_json::from_str(&read_text(&dir.path().join("report.json"))).unwrap();
    let reached = report["blast_radius"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["source"] == "fault:poisoned-email")
        .expect("its reach");
    assert!(
        reached["actors"].as_array().unwrap().len() > 1,
        "it reached actors: {reached}"
    );
    assert_eq!(report["impact"]["faults"][0]["changed_total"], 0);
}

#[test]
fn without_impact_the_cascade_gives_a_command_that_runs_with_it() {
    let dir = tempfile::tempdir().unwrap();
    run_out("scenarios/support-desk.toml", dir.path(), &[]);
    let html = read_text(&dir.path().join("report.html"));
    let report: serde_json::Value = serde_json::from_str(&read_text(&dir.path().join("report.json"))).unwrap();
    let run_dir = report["replay"]
        .as_str()
        .unwrap()
        .strip_prefix("agentsim replay ")
        .expect("a run directory")
        .to_owned();
    let command = format!(
        "agentsim run {run_dir}/scenario.toml --seed {} --impact",
        report["seed"]
    );
    assert!(
        html.contains(&format!("<span class=\"cmd\">{command}</span>")),
        "{command}"
    );
    let parts: Vec<&str> = command.split(' ').skip(1).collect();
    let output = agentsim_output(&parts);
    assert!(status(&output) <= 1, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("  impact         actor.crash@agent:billing"),
        "{}",
        stdout(&output)
    );
    assert!(
        html.contains("Lost to <b>actor.crash@agent:billing</b>"),
        "the first screen names the fault"
    );
}

#[test]
fn the_recovery_section_shows_each_reviewers_requests_as_report_json_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    run_out("scenarios/travel-desk-approvals.toml", &out, &["--seed", "3"]);
    let html = read_text(&out.join("report.html"));
    let report: serde_json::Value = serde_json::from_str(&read_text(&out.join("report.json"))).unwrap();
    let reviewer = &report["approvals"][0];
    let section = &html[html.find("<section id=\"recovery\">").expect("a recovery section")..];
    let row = format!(
        "<tr><td>payments-reviewer</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
        reviewer["requests"], reviewer["approved"], reviewer["rejected"], reviewer["timed_out"]
    );
    assert!(section.contains(&row), "expected {row} in the recovery section");
    // The trace agrees: one review request per request counted.
    let reviews = records(&std::fs::read(out.join("trace.jsonl")).unwrap())
        .iter()
        .filter(|r| r["to"] == "human:payments-reviewer" && field(r, "msg").starts_with("review "))
        .count() as u64;
    assert_eq!(Some(reviews), reviewer["requests"].as_u64());
    assert!(
        html.contains(">payments-reviewer<"),
        "the reviewer has a lane on the timeline"
    );
}
