//! A Mermaid sequence diagram of a run, for pasting into docs and issues. Long runs are trimmed
//! to a window of at most [`MERMAID_STEPS_MAX`] steps around the first fault or failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::trace::records::TraceRecord;

/// Messages and notes in one diagram.
pub const MERMAID_STEPS_MAX: usize = 200;
/// Characters of a message summary kept on an arrow.
const LABEL_CHARS_MAX: usize = 80;

/// The diagram of a run. `report` (the run's `report.json`), when given, adds a note where each
/// invariant first broke.
pub fn sequence_diagram(records: &[TraceRecord], report: Option<&Value>) -> String {
    let steps: Vec<&TraceRecord> = records
        .iter()
        .filter(|r| match r.kind() {
            "deliver" => r.str("from") != r.str("to"),
            "fault" | "fail" | "restart" | "escalate" | "guard" => true,
            _ => false,
        })
        .collect();
    let (start, end) = window(&steps);
    let shown = &steps[start..end];
    let header = records.first();
    let mut out = String::from("sequenceDiagram\n");
    if let Some(h) = header {
        let _ = writeln!(
            out,
            "    %% agentsim {} · {} · seed {} · steps {}..{} of {}",
            h.str("agentsim"),
            label(h.str("scenario")),
            h.u64("seed").unwrap_or(0),
            start,
            end,
            steps.len()
        );
    }
    // Participants in order of kind, then of first appearance.
    let mut actors: Vec<(u8, usize, String)> = Vec::new();
    let mut add = |actor: &str| {
        if !actor.is_empty() && !actors.iter().any(|a| a.2 == actor) {
            let n = actors.len();
            actors.push((rank(actor), n, actor.to_owned()));
        }
    };
    for r in shown {
        match r.kind() {
            "deliver" => {
                add(r.str("from"));
                add(r.str("to"));
            }
            "guard" => add(r.str("guardrail")),
            _ => add(r.actor()),
        }
    }
    actors.sort();
    let alias: BTreeMap<&str, String> = actors
        .iter()
        .enumerate()
        .map(|(i, a)| (a.2.as_str(), format!("P{i}")))
        .collect();
    for (i, a) in actors.iter().enumerate() {
        let _ = writeln!(out, "    participant P{i} as {}", label(&a.2));
    }
    if start > 0 {
        let _ = writeln!(
            out,
            "    Note over {}: … {start} earlier steps not shown",
            alias.values().next().map_or("P0", String::as_str)
        );
    }
    let violations: Vec<(u64, String, String)> = report
        .and_then(|r| r.get("invariants"))
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|inv| {
                    let v = inv.get("first_violation")?;
                    Some((
                        v.get("seq")?.as_u64()?,
                        v.get("actor")?.as_str()?.to_owned(),
                        inv.get("name")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let p = |actor: &str| alias.get(actor).cloned().unwrap_or_else(|| "P0".to_owned());
    for r in shown {
        match r.kind() {
            "deliver" => {
                let msg = r.str("msg");
                let verb = msg.split(' ').next().unwrap_or("");
                let arrow = match verb {
                    "llm_reply" | "tool_result" | "answer" | "delegate_result" => "-->>",
                    _ => "->>",
                };
                let _ = writeln!(
                    out,
                    "    {}{arrow}{}: {}",
                    p(r.str("from")),
                    p(r.str("to")),
                    label(&clip(msg))
                );
                for (_, actor, name) in violations.iter().filter(|v| Some(v.0) == r.seq()) {
                    if alias.contains_key(actor.as_str()) {
                        let _ = writeln!(out, "    Note over {}: ✗ invariant broken: {}", p(actor), label(name));
                    }
                }
            }
            "fault" => {
                let _ = writeln!(
                    out,
                    "    Note over {}: ⚡ fault {} ({})",
                    p(r.actor()),
                    label(r.str("name")),
                    label(r.str("fault"))
                );
            }
            "fail" => {
                let _ = writeln!(
                    out,
                    "    Note over {}: 💥 crashed (incarnation {})",
                    p(r.actor()),
                    r.u64("incarnation").unwrap_or(0)
                );
            }
            "restart" => {
                let _ = writeln!(
                    out,
                    "    Note over {}: ↻ restarted by {} (incarnation {})",
                    p(r.actor()),
                    label(r.str("supervisor")),
                    r.u64("incarnation").unwrap_or(0)
                );
            }
            "escalate" => {
                let _ = writeln!(
                    out,
                    "    Note over {}: ▲ gave up: {}",
                    p(r.actor()),
                    label(r.str("reason"))
                );
            }
            "guard" => {
                let _ = writeln!(
                    out,
                    "    Note over {}: 🛡 {} on {}",
                    p(r.str("guardrail")),
                    label(r.str("verdict")),
                    label(r.str("actor"))
                );
            }
            _ => {}
        }
    }
    if end < steps.len() {
        let _ = writeln!(
            out,
            "    Note over {}: … {} later steps not shown",
            alias.values().next().map_or("P0", String::as_str),
            steps.len() - end
        );
    }
    out
}

/// The window shown: everything when it fits, else [`MERMAID_STEPS_MAX`] steps starting a
/// quarter window before the first fault or failure.
fn window(steps: &[&TraceRecord]) -> (usize, usize) {
    if steps.len() <= MERMAID_STEPS_MAX {
        return (0, steps.len());
    }
    let focus = steps
        .iter()
        .position(|r| matches!(r.kind(), "fault" | "fail" | "escalate"))
        .or_else(|| {
            steps
                .iter()
                .position(|r| r.kind() == "guard" && r.str("verdict") != "allow")
        })
        .unwrap_or(0);
    let start = focus
        .saturating_sub(MERMAID_STEPS_MAX / 4)
        .min(steps.len() - MERMAID_STEPS_MAX);
    (start, start + MERMAID_STEPS_MAX)
}

fn rank(actor: &str) -> u8 {
    match actor.split(':').next().unwrap_or("") {
        "user" => 0,
        "agent" => 1,
        "guardrail" => 2,
        "tool" => 3,
        "llm" => 4,
        "supervisor" => 5,
        _ => 6,
    }
}

fn clip(text: &str) -> String {
    if text.chars().count() <= LABEL_CHARS_MAX {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(LABEL_CHARS_MAX - 1).collect();
    out.push('…');
    out
}

/// Text safe on a Mermaid line: `;`, `#` and `%` as entity codes, no line breaks.
fn label(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            ';' => out.push_str("#59;"),
            '#' => out.push_str("#35;"),
            '%' => out.push_str("#37;"),
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::records::parse;

    #[test]
    fn labels_escape_what_mermaid_would_read_as_syntax() {
        assert_eq!(label("a;b#c\nd%%"), "a#59;b#35;c d#37;#37;");
    }

    #[test]
    fn a_long_trace_is_trimmed_to_a_window_around_the_first_fault() {
        let mut text = String::from("{\"kind\":\"header\",\"scenario\":\"s\",\"seed\":1}\n");
        for seq in 0..1_000 {
            if seq == 600 {
                text.push_str("{\"kind\":\"fault\",\"seq\":600,\"t_us\":600,\"fault\":\"actor.crash\",\"name\":\"boom\",\"actor\":\"agent:a\"}\n");
            }
            text.push_str(&format!(
                "{{\"seq\":{seq},\"t_us\":{seq},\"kind\":\"deliver\",\"from\":\"user\",\"to\":\"agent:a\",\"msg\":\"start conv={seq}\"}}\n"
            ));
        }
        let records = parse("t", text.as_bytes()).unwrap();
        let diagram = sequence_diagram(&records, None);
        let arrows = diagram.lines().filter(|l| l.contains("->>")).count();
        assert_eq!(arrows, MERMAID_STEPS_MAX - 1, "{diagram}");
        assert!(diagram.contains("⚡ fault boom"));
        assert!(diagram.contains("earlier steps not shown") && diagram.contains("later steps not shown"));
    }
}
