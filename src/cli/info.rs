//! `agentsim validate`, `list` and `bench`.

use std::path::PathBuf;

use super::{exit, load, pretty_json, BenchArgs, Failure};
use crate::scenario::{self, error::locate, error::Located, error::Severity};

/// `agentsim validate`: OK or errors per file, and warnings; status 2 on any error (or, with
/// `deny_warnings`, any warning). With `json`, one array of every diagnostic on stdout.
pub(super) fn validate(files: &[PathBuf], deny_warnings: bool, json: bool) -> Result<u8, Failure> {
    let mut status = exit::OK;
    let mut all: Vec<Located> = Vec::new();
    for file in files {
        if let Some(text) = proxy_faults_text(file) {
            match crate::proxy::faults::FaultsFile::parse(&file.display().to_string(), &text) {
                Ok(_) if json => {}
                Ok(_) => println!("{}: OK (a faults file for agentsim proxy)", file.display()),
                Err(e) => status = refused(&e, json, &mut all),
            }
            continue;
        }
        match scenario::load_with_warnings(file) {
            Ok((_, warnings)) => {
                if deny_warnings && !warnings.is_empty() {
                    status = exit::BAD_INPUT;
                }
                if json {
                    all.extend(locate(
                        &warnings.file,
                        &warnings.source_text,
                        &warnings.diagnostics,
                        Severity::Warning,
                    ));
                    continue;
                }
                if !warnings.is_empty() {
                    eprintln!("{warnings}");
                }
                println!("{}: OK", file.display());
            }
            Err(e) => status = refused(&e, json, &mut all),
        }
    }
    if json {
        println!("{}", pretty_json(&all)?);
    }
    Ok(status)
}

/// A file with errors: they go into `all` (`--json`) or to stderr; the status to return.
fn refused(e: &scenario::error::ScenarioError, json: bool, all: &mut Vec<Located>) -> u8 {
    if json {
        all.extend(locate(&e.file, &e.source_text, &e.diagnostics, Severity::Error));
    } else {
        eprintln!("{e}");
    }
    exit::BAD_INPUT
}

/// The text of a faults file for `agentsim proxy` (TOML with `[[fault]]` or `[[invariant]]`
/// tables and no `[scenario]`), or `None` for anything else, which is checked as a scenario.
fn proxy_faults_text(file: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let faults_file =
        !table.contains_key("scenario") && (table.contains_key("fault") || table.contains_key("invariant"));
    faults_file.then_some(text)
}

pub(super) fn list_faults(json: bool) -> Result<u8, Failure> {
    use crate::catalogue::faults::{CATALOGUE, TRIGGER_PARAMS};
    if json {
        let text = pretty_json(CATALOGUE)?;
        println!("{text}");
        return Ok(exit::OK);
    }
    let mut out = String::new();
    for entry in CATALOGUE {
        let layer = serde_json::to_value(entry.layer)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        out.push_str(&format!("{:<28} {:<9} {}\n", entry.kind, layer, entry.models));
        if let Some((_, target)) = entry.layer.scenario_targets() {
            out.push_str(&format!("{:<28} {:<9}   target = {target}\n", "", ""));
        }
        for p in entry.params {
            out.push_str(&format!(
                "{:<28} {:<9}   {} = {} — {}\n",
                "", "", p.name, p.default, p.meaning
            ));
        }
    }
    out.push_str("\nEvery fault also takes these trigger settings:\n");
    for p in TRIGGER_PARAMS {
        out.push_str(&format!("  {:<12} {:<10} {}\n", p.name, p.default, p.meaning));
    }
    print!("{out}");
    Ok(exit::OK)
}

pub(super) fn list_prices(json: bool) -> Result<u8, Failure> {
    use crate::catalogue::prices::{format_usd_per_mtok, price_list, PRICES_SOURCE, PRICES_TAKEN_ON, PRICE_TABLE};
    if json {
        let text = pretty_json(&price_list())?;
        println!("{text}");
        return Ok(exit::OK);
    }
    let mut out = format!(
        "Prices taken on {PRICES_TAKEN_ON}, USD per million tokens.\nSource: {PRICES_SOURCE}.\n\n{:<24} {:<10} {:>9} {:>14} {:>9}  {}\n",
        "model", "provider", "input", "cached input", "output", "also"
    )
    .trim_end()
    .to_owned();
    out.push('\n');
    for row in PRICE_TABLE {
        let line = format!(
            "{:<24} {:<10} {:>9} {:>14} {:>9}  {}",
            row.model,
            row.provider,
            format_usd_per_mtok(row.input_pusd_per_token),
            format_usd_per_mtok(row.cached_input_pusd_per_token),
            format_usd_per_mtok(row.output_pusd_per_token),
            row.aliases.join(", ")
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out.push_str(
        "\nDated snapshots (gpt-4o-2024-08-06, claude-sonnet-4-5-20250929) and -latest names are priced as their \
         model.\nA scenario's `price = { input_per_mtok, cached_input_per_mtok, output_per_mtok }` overrides the table.\n",
    );
    print!("{out}");
    Ok(exit::OK)
}

pub(super) fn list_guardrails(json: bool) -> Result<u8, Failure> {
    use crate::scenario::guardrail::{GuardAction, GuardCheck, Stage};
    use crate::scenario::Detector;
    let kinds: Vec<serde_json::Value> = GuardCheck::KINDS
        .iter()
        .map(|(kind, fields, meaning)| {
            serde_json::json!({
                "kind": kind,
                "fields": fields.split(", ").collect::<Vec<_>>(),
                "stages": GuardCheck::stages(kind).iter().map(|s| s.name()).collect::<Vec<_>>(),
                "redact": GuardCheck::can_redact(kind),
                "checks": meaning,
            })
        })
        .collect();
    let stages: Vec<&str> = Stage::ALL.iter().map(|s| s.name()).collect();
    let actions: Vec<&str> = GuardAction::ALL.iter().map(|a| a.name()).collect();
    let detectors: Vec<&str> = Detector::ALL.iter().map(|d| d.name()).collect();
    if json {
        let value = serde_json::json!({
            "kinds": kinds,
            "stages": stages,
            "actions": actions,
            "detectors": detectors,
        });
        println!("{}", pretty_json(&value)?);
        return Ok(exit::OK);
    }
    let mut out = String::from("Guardrail checks (`check = { kind = ... }`):\n");
    for (kind, fields, meaning) in GuardCheck::KINDS {
        let stages: Vec<&str> = GuardCheck::stages(kind).iter().map(|s| s.name()).collect();
        out.push_str(&format!("  {kind:<15} {meaning}\n"));
        out.push_str(&format!(
            "  {:<15}   takes: {fields}; stages: {}\n",
            "",
            stages.join(", ")
        ));
    }
    out.push_str(&format!("\nStages: {}\n", stages.join(", ")));
    out.push_str(&format!(
        "Actions: {} (redact: regex, deny_list and pii only; retry: output and tool_call)\n",
        actions.join(", ")
    ));
    out.push_str("Settings: mode = blocking | parallel (input), on_error = closed | open, latency, timeout,\n");
    out.push_str("          error_rate, false_positive, false_negative, max_retries, escalate_to, agents, tools\n");
    out.push_str(&format!(
        "\nFailure-mode detectors (`[[invariant]] detect = ...`): {}\n",
        detectors.join(", ")
    ));
    print!("{out}");
    Ok(exit::OK)
}

pub(super) fn bench(args: &BenchArgs) -> Result<u8, Failure> {
    let scenario = load(&args.file)?;
    let options = crate::bench::BenchOptions {
        iters: args.iters,
        warmup: args.warmup,
        trace: args.trace,
        flavor: args.runtime.flavor(),
        seed: args.seed.unwrap_or(scenario.seed),
    };
    let report = crate::bench::bench(scenario, &options)?;
    let text = if args.json {
        let mut text = pretty_json(&report)?;
        text.push('\n');
        text
    } else {
        report.summary()
    };
    print!("{text}");
    Ok(exit::OK)
}
