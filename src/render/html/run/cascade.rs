//! The cascade section: what each fault changed (from `--impact`), the harmed conversations,
//! and folded behind them the reach — a blast-radius card per fault or untrusted source, and each
//! firing's immediate consequences as the trace shows them.

use std::fmt::Write as _;

use serde_json::Value;

use std::collections::{BTreeMap, BTreeSet};

use super::{array, clip, dur, esc, field, text_of, View, CASCADE_SOURCES_MAX, LIST_ITEMS_MAX};
use crate::render::html::impact_cells;
use crate::trace::Record;

impl<'a> View<'a> {
    /// What each fault changed (with `--impact`), the harmed conversations, then — folded —
    /// where each fault's data flowed and what each firing did at once.
    pub(super) fn cascade(&self, out: &mut String) {
        out.push_str("<section id=\"cascade\"><h2>Cascade: what each fault changed</h2>");
        self.impact_bars(out);
        self.harmed_table(out);
        let blast = array(self.report, "blast_radius");
        let faults: Vec<usize> = (0..self.records.len())
            .filter(|i| self.records[*i].kind() == "fault")
            .collect();
        if faults.is_empty() && blast.is_empty() {
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
        let _ = write!(
            out,
            "<details class=\"reach\"><summary>Reach: where each fault's data flowed ({} source(s)) and what each of \
             the {} firing(s) did at once</summary>",
            blast.len(),
            faults.len()
        );
        if !blast.is_empty() {
            out.push_str(
                "<p class=\"note\">Taint, not harm: from each fault or untrusted source, the actors its data reached, \
                 the side effects and user-visible outputs it touched, and the guardrail that stopped it. Reaching a \
                 conversation is not changing it.</p><div class=\"cascade\">",
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
        if !faults.is_empty() {
            out.push_str(
                "<h3>What each firing did at once</h3><p class=\"note\">The message each firing hit, and what \
                 followed at once in the trace (crashes, restarts, escalations).</p><div class=\"cascade\">",
            );
            for index in faults.iter().take(CASCADE_SOURCES_MAX) {
                self.fault_card(*index, out);
            }
            out.push_str("</div>");
            more_faults(faults.len(), out);
        }
        out.push_str("</details></section>\n");
    }

    /// Per fault, from the reruns without it: a bar of the conversations it changed (the
    /// knock-on part lighter), how their fates moved, the side effects and money at stake.
    fn impact_bars(&self, out: &mut String) {
        let Some(impact) = self.report.get("impact").filter(|i| i.is_object()) else {
            if !array(self.report, "faults").is_empty() {
                let _ = write!(
                    out,
                    "<p class=\"note\">What each fault <i>changed</i> is a counterfactual: rerun with \
                     <code>--impact</code> (<span class=\"cmd\">{}</span>) to see, per fault, the \
                     conversations whose ending it changed.</p>",
                    esc(&self.impact_command())
                );
            }
            return;
        };
        let faults = array(impact, "faults");
        if faults.is_empty() {
            return;
        }
        let widest = faults
            .iter()
            .filter_map(|f| f.get("changed_total").and_then(Value::as_u64))
            .max()
            .unwrap_or(0)
            .max(1);
        out.push_str(
            "<p class=\"note\">From a rerun of this seed without each fault (every other draw the same): the \
             conversations whose ending — fate or side effects — it changed; the lighter part of a bar changed \
             without being hit, through an agent, limit or queue they share.</p><table class=\"impact\">\
             <tr><th>fault</th><th>conversations changed</th><th>how</th><th>side effects</th><th class=\"n\">cost</th></tr>",
        );
        for f in faults {
            let deltas = field(f, "deltas");
            let changed = f.get("changed_total").and_then(Value::as_u64).unwrap_or(0);
            let knock_on = deltas.get("knock_on").and_then(Value::as_u64).unwrap_or(0).min(changed);
            let transitions: Vec<String> = field(deltas, "transitions")
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{v} {k}")).collect())
                .unwrap_or_default();
            let amounts = field(deltas, "amounts");
            let effects: Vec<String> = field(deltas, "effects")
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| {
                            let count = format!("{k} {:+}", v.as_i64().unwrap_or(0));
                            match amounts.get(k).and_then(Value::as_f64) {
                                Some(a) if a > 0.0 => format!("{count} (+{})", amounts[k]),
                                Some(_) => format!("{count} ({})", amounts[k]),
                                None => count,
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            let cost = deltas.get("cost_pusd").and_then(Value::as_i64).unwrap_or(0);
            // The actors on its path: where its data flowed (the reach, from the taint).
            let source = format!("fault:{}", text_of(f, "fault"));
            let path: Vec<String> = array(self.report, "blast_radius")
                .iter()
                .find(|b| text_of(b, "source") == source)
                .map(|b| {
                    array(b, "actors")
                        .iter()
                        .filter_map(Value::as_str)
                        .take(PATH_ACTORS_SHOWN)
                        .map(esc)
                        .collect()
                })
                .unwrap_or_default();
            let path = if path.is_empty() {
                String::new()
            } else {
                format!("<br><span class=\"muted\">path: {}</span>", path.join(" → "))
            };
            let _ = write!(
                out,
                "<tr><td>⚡ <b>{}</b> <span class=\"muted\">({}, {} firing(s))</span></td>{}</tr>",
                esc(&text_of(f, "fault")),
                esc(&text_of(f, "kind")),
                f.get("firings").and_then(Value::as_u64).unwrap_or(0),
                impact_cells((changed, knock_on, widest), (&transitions, &path), &effects, cost),
            );
        }
        out.push_str("</table>");
    }

    /// The command that reruns this run with `--impact`: the report's own `agentsim run …`, or,
    /// for a run directory (replayed with `agentsim replay DIR`), a run of the scenario it keeps.
    fn impact_command(&self) -> String {
        let replay = self.text("replay");
        match replay.strip_prefix("agentsim replay ") {
            Some(dir) => format!(
                "agentsim run {}/scenario.toml --seed {} --impact",
                dir.trim_end_matches('/'),
                self.uint("seed")
            ),
            None => format!("{replay} --impact"),
        }
    }

    /// The harmed conversations as a table: fate, the faults that changed each (with
    /// `--impact`), side effects, what ended it, and a link to that moment on the timeline.
    fn harmed_table(&self, out: &mut String) {
        let harmed = array(self.report, "harmed");
        if harmed.is_empty() {
            return;
        }
        let impact = self.report.get("impact").is_some_and(Value::is_object);
        // The last delivery of each harmed conversation: where it went quiet.
        let wanted: BTreeSet<u64> = harmed
            .iter()
            .filter_map(|h| field(h, "conversation").as_u64())
            .collect();
        let mut last_seq: BTreeMap<u64, u64> = BTreeMap::new();
        for r in &self.records {
            if let (Some(seq), Some(conv)) = (r.seq(), r.msg_field("conv").and_then(|c| c.parse::<u64>().ok())) {
                if wanted.contains(&conv) {
                    last_seq.insert(conv, seq);
                }
            }
        }
        let _ = write!(
            out,
            "<h3 id=\"harmed\">Harmed conversations</h3><table class=\"harmed\"><tr><th class=\"n\">conversation</th>\
             <th>fate</th>{}<th>side effects</th><th>what ended it</th><th>moment</th></tr>",
            if impact { "<th>changed by</th>" } else { "" }
        );
        for h in harmed.iter().take(LIST_ITEMS_MAX) {
            let conv = field(h, "conversation").as_u64().unwrap_or(0);
            let effects = super::tally(field(h, "effects"));
            let cause = text_of(h, "cause");
            let moment = cause_seq(&cause).or_else(|| last_seq.get(&conv).copied());
            let changed_by = if impact {
                let names: Vec<String> = array(h, "changed_by")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(|n| format!("<span class=\"chip bad\">⚡ {}</span>", esc(n)))
                    .collect();
                let cell = if names.is_empty() {
                    "<span class=\"muted\">no single fault changed it</span>".to_owned()
                } else {
                    names.join(" ")
                };
                format!("<td>{cell}</td>")
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<tr><td class=\"n\">{conv}</td><td><span class=\"chip bad\">{}</span></td>{changed_by}<td>{}</td>\
                 <td>{}</td><td>{}</td></tr>",
                esc(&text_of(h, "fate").replace('_', " ")),
                if effects.is_empty() {
                    "—".to_owned()
                } else {
                    format!("<b>{}</b>", esc(&effects.join(", ")))
                },
                if cause.is_empty() {
                    "<span class=\"muted\">—</span>".to_owned()
                } else {
                    esc(&clip(&cause, 200))
                },
                match moment {
                    Some(seq) => format!("<a href=\"#ev-{seq}\">seq {seq}</a>"),
                    None => format!(
                        "started at {}",
                        esc(&dur(field(h, "started_at_us").as_u64().unwrap_or(0)))
                    ),
                },
            );
        }
        out.push_str("</table>");
        let listed = harmed.len().min(LIST_ITEMS_MAX) as u64;
        let total = self.uint("harmed_total").max(listed);
        if total > listed {
            let _ = write!(
                out,
                "<p class=\"note more\">… {} more in report.json.</p>",
                total - listed
            );
        }
    }

    pub(super) fn fault_card(&self, index: usize, out: &mut String) {
        let fault = self.records[index];
        let seq = fault.seq().unwrap_or(0);
        let t = fault.t_us();
        let mut flow: Vec<String> = Vec::new();
        // Red when it did harm (a crash, an escalation, or --impact says it changed an ending),
        // green when --impact says it changed nothing, grey when nothing says.
        let mut harm: Option<bool> = None;
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
                        // Its fate says where it ended, not what this firing did to it: only
                        // the counterfactual (`--impact`) says that.
                        let fate = array(self.report, "fate_by_conversation")
                            .get(conv)
                            .and_then(Value::as_str)
                            .map(|f| f.replace('_', " "));
                        if let Some(fate) = fate {
                            flow.push(format!(
                                "its conversation {conv} ended <span class=\"chip\">{}</span>",
                                esc(&fate)
                            ));
                        }
                    }
                }
                Record::Fail { actor, incarnation, .. } => {
                    harm.get_or_insert(true);
                    flow.push(format!(
                        "<span class=\"chip bad\">{} crashed</span> (incarnation {incarnation})",
                        esc(actor)
                    ))
                }
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
                    harm = Some(true);
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
        let firing = self
            .report
            .get("impact")
            .map(|i| array(i, "firings"))
            .unwrap_or_default()
            .iter()
            .find(|f| f.get("seq").and_then(Value::as_u64) == Some(seq));
        if let Some(firing) = firing {
            let changed = firing.get("changed_total").and_then(Value::as_u64).unwrap_or(0);
            harm = Some(changed > 0);
            flow.push(if changed == 0 {
                "<span class=\"chip good\">this firing alone changed nothing</span>".to_owned()
            } else {
                let convs: Vec<String> = array(firing, "changed")
                    .iter()
                    .filter_map(|c| c.get("conversation").and_then(Value::as_u64))
                    .map(|c| c.to_string())
                    .collect();
                format!(
                    "<span class=\"chip bad\">this firing alone changed {changed} conversation(s)</span>: {}",
                    esc(&convs.join(", "))
                )
            });
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
            match harm {
                Some(true) => "",
                Some(false) => " contained",
                None => " unknown",
            },
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
        let amounts: Vec<String> = field(source, "amounts")
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{} {v}", esc(k))).collect())
            .unwrap_or_default();
        let money = match amounts.is_empty() {
            true => String::new(),
            false => format!(" — amounts: <b>{}</b>", amounts.join(", ")),
        };
        let _ = write!(
            out,
            "<li>side effects: {}{}{money}</li>",
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

/// Actors of a fault's path shown in its impact row.
const PATH_ACTORS_SHOWN: usize = 6;

/// The `seq` a cause names (`agent:billing failed at seq 245 …`), the moment it ended.
fn cause_seq(cause: &str) -> Option<u64> {
    let rest = &cause[cause.find("at seq ")? + "at seq ".len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
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
