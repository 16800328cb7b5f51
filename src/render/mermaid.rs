//! A Mermaid sequence diagram of a run, for pasting into docs and issues. Long runs are trimmed
//! to a window of at most [`MERMAID_STEPS_MAX`] steps around the first fault or failure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

use super::{actor_kind_rank, guardrail_actor};
use crate::trace::Record;

/// Messages and notes in one diagram.
pub const MERMAID_STEPS_MAX: usize = 200;
/// Characters of a message summary kept on an arrow.
const LABEL_CHARS_MAX: usize = 80;

/// The diagram of a run. `report` (the run's `report.json`), when given, adds a note where each
/// invariant first broke.
pub fn sequence_diagram(records: &[Record], report: Option<&Value>) -> String {
    let steps: Vec<&Record> = records
        .iter()
        .filter(|r| match r {
            Record::Deliver { from, to, .. } => from != to,
            Record::Header { .. } | Record::End { .. } => false,
            _ => true,
        })
        .collect();
    let (start, end) = window(&steps);
    let shown = &steps[start..end];
    let mut out = String::from("sequenceDiagram\n");
    if let Some(Record::Header {
        agentsim,
        scenario,
        seed,
        ..
    }) = records.first()
    {
        // Steps are not events: a step is a message between two actors or a note (fault, crash,
        // restart, guardrail check); report.json's `events` counts every delivery, timers included.
        let events = report
            .and_then(|r| r.get("events"))
            .and_then(Value::as_u64)
            .map_or(String::new(), |n| format!("; the run delivered {n} events"));
        let _ = writeln!(
            out,
            "    %% agentsim {agentsim} · {} · seed {seed} · steps {start}..{end} of {} \
             (a step is a message between two actors or a note{events})",
            label(scenario),
            steps.len()
        );
    }
    let alias = participants(shown, &mut out);
    if start > 0 {
        let _ = writeln!(
            out,
            "    Note over {}: … {start} earlier steps not shown",
            alias.values().next().map_or("P0", String::as_str)
        );
    }
    let violations = first_violations(report);
    let p = |actor: &str| alias.get(actor).cloned().unwrap_or_else(|| "P0".to_owned());
    for r in shown {
        step(&mut out, r, &p);
        for (_, actor, name) in violations
            .iter()
            .filter(|v| matches!(r, Record::Deliver { .. }) && Some(v.0) == r.seq())
        {
            if alias.contains_key(actor.as_str()) {
                let _ = writeln!(out, "    Note over {}: ✗ invariant broken: {}", p(actor), label(name));
            }
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

/// Declares the participants of `shown` (in order of kind, then of first appearance) and
/// returns each one's alias.
fn participants(shown: &[&Record], out: &mut String) -> BTreeMap<String, String> {
    let mut actors: Vec<(u8, usize, String)> = Vec::new();
    let mut add = |actor: &str| {
        if !actor.is_empty() && !actors.iter().any(|a| a.2 == actor) {
            let n = actors.len();
            actors.push((actor_kind_rank(actor), n, actor.to_owned()));
        }
    };
    for r in shown {
        match r {
            Record::Deliver { from, to, .. } => {
                add(from);
                add(to);
            }
            Record::Guard { guardrail, .. } => add(&guardrail_actor(guardrail)),
            other => add(other.actor()),
        }
    }
    actors.sort();
    for (i, a) in actors.iter().enumerate() {
        let _ = writeln!(out, "    participant P{i} as {}", label(&a.2));
    }
    actors
        .into_iter()
        .enumerate()
        .map(|(i, a)| (a.2, format!("P{i}")))
        .collect()
}

/// Each invariant's first violation: (seq, actor, invariant name).
fn first_violations(report: Option<&Value>) -> Vec<(u64, String, String)> {
    report
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
        .unwrap_or_default()
}

/// One arrow or note.
fn step(out: &mut String, r: &Record, p: &dyn Fn(&str) -> String) {
    let _ = match r {
        Record::Deliver { from, to, msg, .. } => {
            let arrow = match msg.split(' ').next().unwrap_or("") {
                "llm_reply" | "tool_result" | "answer" | "delegate_result" => "-->>",
                _ => "->>",
            };
            writeln!(out, "    {}{arrow}{}: {}", p(from), p(to), label(&clip(msg)))
        }
        Record::Fault { name, fault, actor, .. } => {
            writeln!(
                out,
                "    Note over {}: ⚡ fault {} ({})",
                p(actor),
                label(name),
                label(fault)
            )
        }
        Record::Fail { actor, incarnation, .. } => {
            writeln!(
                out,
                "    Note over {}: 💥 crashed (incarnation {incarnation})",
                p(actor)
            )
        }
        Record::Restart {
            actor,
            incarnation,
            supervisor,
            ..
        } => writeln!(
            out,
            "    Note over {}: ↻ restarted by {} (incarnation {incarnation})",
            p(actor),
            label(supervisor)
        ),
        Record::Escalate { actor, reason, .. } => {
            writeln!(out, "    Note over {}: ▲ gave up: {}", p(actor), label(reason))
        }
        Record::World {
            actor,
            op,
            table,
            key,
            lost,
            ..
        } => {
            let lost = if *lost { " (lost)" } else { "" };
            writeln!(
                out,
                "    Note over {}: ✎ {op} {} {}{lost}",
                p(actor),
                label(table),
                label(key)
            )
        }
        Record::Guard {
            guardrail,
            verdict,
            actor,
            ..
        } => writeln!(
            out,
            "    Note over {}: 🛡 {} on {}",
            p(&guardrail_actor(guardrail)),
            label(verdict),
            label(actor)
        ),
        Record::Header { .. } | Record::End { .. } => Ok(()),
    };
}

/// The window shown: everything when it fits, else [`MERMAID_STEPS_MAX`] steps starting a
/// quarter window before the first fault or failure.
fn window(steps: &[&Record]) -> (usize, usize) {
    if steps.len() <= MERMAID_STEPS_MAX {
        return (0, steps.len());
    }
    let focus = steps
        .iter()
        .position(|r| matches!(r, Record::Fault { .. } | Record::Fail { .. } | Record::Escalate { .. }))
        .or_else(|| {
            steps
                .iter()
                .position(|r| matches!(r, Record::Guard { verdict, .. } if verdict != "allow"))
        })
        .unwrap_or(0);
    let start = focus
        .saturating_sub(MERMAID_STEPS_MAX / 4)
        .min(steps.len() - MERMAID_STEPS_MAX);
    (start, start + MERMAID_STEPS_MAX)
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
                text.push_str("{\"kind\":\"fault\",\"seq\":600,\"t_us\":600,\"fault\":\"actor.crash\",\"name\":\"boom\",\"actor\":\"agent:a\",\"params\":\"\"}\n");
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
