//! The cascade section: a blast-radius card per fault or untrusted source, and each fault's
//! immediate consequences as the trace shows them.

use std::fmt::Write as _;

use serde_json::Value;

use super::{array, clip, dur, esc, text_of, View, CASCADE_SOURCES_MAX, LIST_ITEMS_MAX};
use crate::trace::Record;

impl<'a> View<'a> {
    pub(super) fn cascade(&self, out: &mut String) {
        out.push_str("<section id=\"cascade\"><h2>Cascade: where each fault went</h2>");
        let blast = array(self.report, "blast_radius");
        if !blast.is_empty() {
            out.push_str(
                "<p class=\"note\">From each fault or untrusted source: the actors its taint reached, the side effects \
                 and user-visible outputs it touched, and the guardrail that stopped it.</p><div class=\"cascade\">",
            );
            for source in blast.iter().take(CASCADE_SOURCES_MAX) {
                blast_card(source, out);
            }
            out.push_str("</div>");
            if blast.len() > CASCADE_SOURCES_MAX {
                let _ = write!(
                    out,
                    "<p class=\"note more\">… {} more sources in report.json.</p>",
                    blast.len() - CASCADE_SOURCES_MAX
                );
            }
        }
        let faults: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].kind() == "fault")
            .collect();
        if !blast.is_empty() {
            // Taint follows messages; crashes, restarts and escalations are read from the trace.
            if !faults.is_empty() {
                out.push_str(
                    "<h3>What each fault did at once</h3><p class=\"note\">The message each fault hit, and what \
                     followed at once (crashes, restarts, escalations) and in the end (did that conversation get an \
                     answer).</p><div class=\"cascade\">",
                );
                for index in faults.iter().take(CASCADE_SOURCES_MAX) {
                    self.fault_card(*index, out);
                }
                out.push_str("</div>");
                more_faults(faults.len(), out);
            }
            out.push_str("</section>\n");
            return;
        }
        if faults.is_empty() {
            let errors = if self.uint("llm_errors") > 0 {
                " The model errors in this run come from the provider's own limits, not from an injected fault."
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "<p class=\"muted\">No fault fired in this run.{errors}</p></section>"
            );
            return;
        }
        out.push_str(
            "<p class=\"note\">Each fault, the message it hit, and what followed at once (crashes, restarts, \
             escalations) and in the end (did that conversation get an answer). This run's report has no \
             taint data (blast radius), so the chain is read from the trace.</p><div class=\"cascade\">",
        );
        for index in faults.iter().take(CASCADE_SOURCES_MAX) {
            self.fault_card(*index, out);
        }
        out.push_str("</div>");
        more_faults(faults.len(), out);
        out.push_str("</section>\n");
    }

    pub(super) fn fault_card(&self, index: usize, out: &mut String) {
        let fault = self.records[index];
        let seq = fault.seq().unwrap_or(0);
        let t = fault.t_us();
        let mut flow: Vec<String> = Vec::new();
        let mut lost = false;
        for r in self.records.iter().skip(index + 1).take(16) {
            if r.t_us() != t {
                break;
            }
            match r {
                Record::Deliver { from, to, msg, .. } if r.seq() == Some(seq) => {
                    flow.push(format!(
                        "hit the message {} → {}: <code>{}</code>",
                        esc(from),
                        esc(to),
                        esc(&clip(msg, 120))
                    ));
                    if let Some(conv) = r.msg_field("conv").and_then(|c| c.parse::<usize>().ok()) {
                        let answered = array(self.report, "answered").get(conv).and_then(Value::as_bool);
                        let (class, text) = match answered {
                            Some(true) => ("good", "was answered in the end"),
                            Some(false) => ("bad", "never got an answer"),
                            None => ("", "outcome unknown"),
                        };
                        lost |= answered == Some(false);
                        flow.push(format!(
                            "conversation {conv} <span class=\"chip {class}\">{text}</span>"
                        ));
                    }
                }
                Record::Fail { actor, incarnation, .. } => flow.push(format!(
                    "<span class=\"chip bad\">{} crashed</span> (incarnation {incarnation})",
                    esc(actor)
                )),
                Record::Restart {
                    actor,
                    incarnation,
                    supervisor,
                    ..
                } => flow.push(format!(
                    "{} restarted {} (incarnation {incarnation}, fresh state)",
                    esc(supervisor),
                    esc(actor)
                )),
                Record::Escalate { actor, reason, .. } => {
                    lost = true;
                    flow.push(format!(
                        "<span class=\"chip bad\">{} gave up</span>: {}",
                        esc(actor),
                        esc(reason)
                    ))
                }
                _ => {}
            }
        }
        if flow.is_empty() {
            flow.push("no immediate consequence in the trace".to_owned());
        }
        let Record::Fault {
            params,
            name,
            fault: kind,
            ..
        } = fault
        else {
            return;
        };
        let _ = write!(
            out,
            "<div class=\"source{}\"><h3>⚡ {} <span class=\"muted\">({})</span></h3>\
             <div>on <b>{}</b> at t = {} · <a href=\"#ev-{seq}\">seq {seq}</a>{}</div><ul class=\"flow\">",
            if lost { "" } else { " contained" },
            esc(name),
            esc(kind),
            esc(fault.actor()),
            esc(&dur(t)),
            if params.is_empty() {
                String::new()
            } else {
                format!(" · <code>{}</code>", esc(params))
            },
        );
        for step in flow {
            let _ = write!(out, "<li>{step}</li>");
        }
        out.push_str("</ul></div>");
    }
}

fn blast_card(source: &Value, out: &mut String) {
    let stopped = array(source, "stopped_by");
    let outputs = array(source, "outputs");
    let effects = array(source, "side_effects");
    let contained = !stopped.is_empty() && outputs.is_empty() && effects.is_empty();
    let _ = write!(
        out,
        "<div class=\"source{}\"><h3>{} {} <span class=\"muted\">({})</span></h3><div>first at t = {} · spread over {}</div><ul class=\"flow\">",
        if contained { " contained" } else { "" },
        if text_of(source, "kind") == "fault" { "⚡" } else { "☣" },
        esc(&text_of(source, "source")),
        esc(&text_of(source, "kind")),
        esc(&dur(source.get("first_t_us").and_then(Value::as_u64).unwrap_or(0))),
        esc(&dur(source.get("spread_us").and_then(Value::as_u64).unwrap_or(0))),
    );
    let actors: Vec<String> = array(source, "actors")
        .iter()
        .take(LIST_ITEMS_MAX)
        .map(|a| format!("<span class=\"chip\">{}</span>", esc(a.as_str().unwrap_or(""))))
        .collect();
    let _ = write!(
        out,
        "<li>reached {} actor(s): {}{}</li>",
        array(source, "actors").len(),
        actors.join(""),
        more(array(source, "actors").len())
    );
    let seq_link = |v: &Value| {
        let seq = v.get("seq").and_then(Value::as_u64).unwrap_or(0);
        let t = v.get("t_us").and_then(Value::as_u64).unwrap_or(0);
        format!("<a href=\"#ev-{seq}\">seq {seq}</a>, t = {}", esc(&dur(t)))
    };
    if effects.is_empty() {
        out.push_str("<li>touched no side effect</li>");
    } else {
        let items: Vec<String> = effects
            .iter()
            .take(LIST_ITEMS_MAX)
            .map(|e| {
                format!(
                    "<span class=\"chip bad\">{}</span> by {} ({})",
                    esc(&text_of(e, "effect")),
                    esc(&text_of(e, "actor")),
                    seq_link(e)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<li>side effects: {}{}</li>",
            items.join("; "),
            more(effects.len())
        );
    }
    if outputs.is_empty() {
        out.push_str("<li>reached no user-visible output</li>");
    } else {
        let items: Vec<String> = outputs
            .iter()
            .take(LIST_ITEMS_MAX)
            .map(|o| format!("conversation {} ({})", text_of(o, "conversation"), seq_link(o)))
            .collect();
        let _ = write!(
            out,
            "<li><span class=\"chip bad\">reached {} output(s)</span>: {}{}</li>",
            outputs.len(),
            items.join("; "),
            more(outputs.len())
        );
    }
    if stopped.is_empty() {
        out.push_str("<li><span class=\"chip bad\">no guardrail stopped it</span></li>");
    } else {
        let items: Vec<String> = stopped
            .iter()
            .take(LIST_ITEMS_MAX)
            .map(|s| {
                format!(
                    "<span class=\"chip good\">{}</span> ({})",
                    esc(&text_of(s, "guardrail")),
                    seq_link(s)
                )
            })
            .collect();
        let _ = write!(out, "<li>stopped by {}{}</li>", items.join("; "), more(stopped.len()));
    }
    out.push_str("</ul></div>");
}

/// The note under a list of fault cards cut at [`CASCADE_SOURCES_MAX`]: how many were left out.
fn more_faults(count: usize, out: &mut String) {
    if count > CASCADE_SOURCES_MAX {
        let _ = write!(
            out,
            "<p class=\"note more\">… {} more faults fired (see report.json and the timeline).</p>",
            count - CASCADE_SOURCES_MAX
        );
    }
}

fn more(count: usize) -> String {
    if count > LIST_ITEMS_MAX {
        format!(" <span class=\"muted\">… {} more</span>", count - LIST_ITEMS_MAX)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::super::render_run;
    use super::CASCADE_SOURCES_MAX;
    use crate::trace::records::parse;

    /// A trace with `faults` faults, each on its own delivery.
    fn trace_with_faults(faults: usize) -> Vec<crate::trace::Record> {
        let mut text = String::from("{\"kind\":\"header\",\"scenario\":\"s\",\"seed\":1}\n");
        for seq in 0..faults {
            text.push_str(&format!(
                "{{\"kind\":\"fault\",\"seq\":{seq},\"t_us\":{seq},\"fault\":\"tool.error\",\"name\":\"f{seq}\",\"actor\":\"tool:t\",\"params\":\"\"}}\n\
                 {{\"seq\":{seq},\"t_us\":{seq},\"kind\":\"deliver\",\"from\":\"agent:a\",\"to\":\"tool:t\",\"msg\":\"invoke conv={seq}\"}}\n"
            ));
        }
        parse("t", text.as_bytes()).unwrap()
    }

    #[test]
    fn the_fault_cards_say_how_many_were_left_out_with_and_without_taint_data() {
        let faults = CASCADE_SOURCES_MAX + 7;
        let records = trace_with_faults(faults);
        let blast = serde_json::json!({"blast_radius": [{"source": "fault:f0", "kind": "fault"}]});
        for report in [serde_json::json!({}), blast] {
            let html = render_run(&records, &report);
            assert!(html.contains("… 7 more faults fired"), "{report}");
        }
        let html = render_run(&trace_with_faults(CASCADE_SOURCES_MAX), &serde_json::json!({}));
        assert!(!html.contains("more faults fired"));
    }
}
