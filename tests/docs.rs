//! What the README says about the code matches the code.

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
