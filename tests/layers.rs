//! The layering of the crate, as ARCHITECTURE.md states it, holds in the code: every
//! `crate::MODULE` path in `src/` names a module of a lower layer (or one listed earlier in the
//! same layer), and no two top-level modules depend on each other in a loop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A top-level module's place: its layer (from the bottom) and its position within the layer.
type Rank = (usize, usize);

/// Reads the `## Layers` table of ARCHITECTURE.md: one row per layer, bottom first, the modules
/// of a layer in backticks in the second column, in their allowed order.
fn layer_table() -> BTreeMap<String, (Rank, String)> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable");
    let section = text
        .split("\n## Layers")
        .nth(1)
        .expect("ARCHITECTURE.md has a `## Layers` section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let mut table = BTreeMap::new();
    let rows = section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("|---") && !l.starts_with("| layer"));
    for (layer, row) in rows.enumerate() {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let (name, modules) = (cells[1], cells[2]);
        for (position, module) in modules.split('`').skip(1).step_by(2).enumerate() {
            let previous = table.insert(module.to_owned(), ((layer, position), name.to_owned()));
            assert!(previous.is_none(), "`{module}` is listed twice in the Layers table");
        }
    }
    assert!(table.len() > 5, "the Layers table lists too few modules: {table:?}");
    table
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/engine/scheduler/mod.rs` → `engine`).
fn top_module(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root().join("src")).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// Every `crate::MODULE` a file's code names, with its line number (comments skipped).
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let before = rest[..at].chars().last();
            let after = &rest[at + "crate::".len()..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') && !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// `(from, to) → first place it happens`, over every file of `src/`.
fn module_edges() -> BTreeMap<(String, String), String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut edges = BTreeMap::new();
    for file in files {
        let Some(from) = top_module(&file) else { continue };
        let text = std::fs::read_to_string(&file).unwrap();
        for (line, to) in crate_paths(&text) {
            if to != from {
                let place = format!("{}:{line}", file.strip_prefix(root()).unwrap().display());
                edges.entry((from.clone(), to)).or_insert(place);
            }
        }
    }
    edges
}

#[test]
fn every_import_points_down_the_layer_table() {
    let table = layer_table();
    let mut problems = Vec::new();
    for ((from, to), place) in module_edges() {
        let (Some((from_rank, from_layer)), Some((to_rank, to_layer))) = (table.get(&from), table.get(&to)) else {
            problems.push(format!(
                "{place}: `{from}` or `{to}` is missing from ARCHITECTURE.md's Layers table"
            ));
            continue;
        };
        if to_rank >= from_rank {
            problems.push(format!(
                "{place}: `{from}` ({from_layer}) imports `crate::{to}` ({to_layer}), which is not below it"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "imports against the layering:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_layer_table_names_every_top_level_module_and_only_those() {
    let table = layer_table();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(f)).collect();
    let listed: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(
        modules, listed,
        "top-level modules in src/ vs modules in the Layers table"
    );
}

#[test]
fn the_kernel_and_the_catalogues_import_nothing_from_the_crate() {
    for ((from, to), place) in module_edges() {
        assert!(
            !matches!(from.as_str(), "kernel" | "catalogue"),
            "{place}: `{from}` imports `crate::{to}`; it must stand alone"
        );
    }
}

#[test]
fn no_top_level_modules_depend_on_each_other_in_a_loop() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in module_edges().into_keys() {
        graph.entry(from).or_default().insert(to);
    }
    // A module is in a loop when it can reach itself.
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(String, Vec<String>)> = vec![(start.clone(), vec![start.clone()])];
        while let Some((at, path)) = stack.pop() {
            for next in graph.get(&at).into_iter().flatten() {
                assert!(next != start, "modules in a loop: {} → {start}", path.join(" → "));
                if seen.insert(next.clone()) {
                    let mut longer = path.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
}

#[test]
fn the_checker_sees_paths_in_use_lines_and_in_code_but_not_in_comments() {
    let text = "use crate::kernel::ActorIdx;\nlet x = crate::scenario::parse(a);\n// crate::cli is only mentioned\nmacro_rules! m { () => { $crate::x } }";
    let names: Vec<String> = crate_paths(text).into_iter().map(|(_, n)| n).collect();
    assert_eq!(names, ["kernel", "scenario"]);
}
