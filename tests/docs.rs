//! What the README says about the code matches the code.

mod common;

use std::path::Path;

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap()
}

#[test]
fn the_readme_counts_the_fault_kinds_of_the_catalogue() {
    let text = readme();
    let stated: usize = text
        .split("inject any of ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the README says how many fault kinds there are");
    assert_eq!(stated, agentsim::catalogue::faults::CATALOGUE.len());
}

#[test]
fn the_readme_names_every_report_key() {
    let text = readme();
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/report.schema.json")).unwrap(),
    )
    .unwrap();
    let keys = schema["properties"].as_object().unwrap().keys();
    let missing: Vec<&String> = keys.filter(|k| !text.contains(&format!("`{k}`"))).collect();
    assert!(
        missing.is_empty(),
        "report.json keys the README never names: {missing:?}"
    );
}

/// The README's examples of output: each fenced block that starts with `$ agentsim …` lines,
/// as (command, the lines shown after it; `…` stands for lines left out).
fn shown_outputs(text: &str) -> Vec<(String, Vec<String>)> {
    let mut shown: Vec<(String, Vec<String>)> = Vec::new();
    // The first of them, under "The two commands", shows its command above the block.
    let first = text
        .split("The first prints a summary like this")
        .nth(1)
        .and_then(|rest| rest.split("```\n").nth(1))
        .expect("the README shows what the first command prints");
    shown.push((
        "run scenarios/support-desk.toml".to_owned(),
        first.lines().map(str::to_owned).collect(),
    ));
    let (mut in_block, mut in_example) = (false, false);
    for line in text.lines() {
        if line.starts_with("```") {
            in_block = !in_block;
            in_example = false;
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(command) = line.strip_prefix("$ agentsim ") {
            shown.push((command.to_owned(), Vec::new()));
            in_example = true;
        } else if let (true, Some((_, lines))) = (in_example, shown.last_mut()) {
            lines.push(line.to_owned());
        }
    }
    shown
}

#[test]
fn every_output_the_readme_shows_is_what_the_command_prints() {
    let text = readme();
    let shown = shown_outputs(&text);
    assert!(shown.len() >= 7, "the README's examples of output: {shown:?}");
    for (command, lines) in shown {
        // `--shrink` writes its scenario into the working directory: its own tests cover it.
        if command.contains("--shrink") {
            continue;
        }
        let args: Vec<&str> = command.split_whitespace().collect();
        let output = common::agentsim_output(&args);
        let printed = common::stdout(&output);
        let printed: Vec<&str> = printed.lines().collect();
        // Every line shown, in order (the lines `…` stands for left out between them); a line
        // shown ending in `…` is the start of the line printed.
        let mut from = 0;
        for line in lines.iter().filter(|l| l.trim() != "…") {
            let matches = |p: &&str| match line.strip_suffix('…') {
                Some(start) => p.starts_with(start),
                None => p == line,
            };
            match printed[from..].iter().position(matches) {
                Some(at) => from += at + 1,
                None => panic!(
                    "`agentsim {command}`: the README shows\n{line}\nwhich the command does not print (after line {from}); it prints:\n{}",
                    printed.join("\n")
                ),
            }
        }
    }
}
