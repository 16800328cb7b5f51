//! The world section: the amounts effects carried, and per table the records that changed —
//! field by field, with the conversations that wrote them and the faults behind the writes.

use std::fmt::Write as _;

use serde_json::Value;

use super::{array, esc, field, text_of, View};

/// A JSON value as a cell shows it: strings quoted, null as a dash.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "—".to_owned(),
        Value::String(s) => format!("\"{s}\""),
        other => other.to_string(),
    }
}

impl View<'_> {
    /// Amounts and the world's changed records; nothing for a run without either.
    pub(super) fn world(&self, out: &mut String) {
        let amounts = field(self.report, "amounts");
        let world = field(self.report, "world");
        let has_amounts = amounts.as_object().is_some_and(|a| !a.is_empty());
        if !has_amounts && world.is_null() {
            return;
        }
        out.push_str("<section id=\"world\"><h2>World: amounts and changed records</h2>");
        if let Some(amounts) = amounts.as_object().filter(|a| !a.is_empty()) {
            out.push_str(
                "<table class=\"amounts\"><tr><th>effect</th><th class=\"n\">effects</th><th class=\"n\">total</th><th>by subject</th></tr>",
            );
            for (effect, amount) in amounts {
                let subjects: Vec<String> = amount
                    .get("by_subject")
                    .and_then(Value::as_object)
                    .map(|by| {
                        by.iter()
                            .map(|(subject, s)| format!("{} {}", esc(subject), cell(field(s, "total"))))
                            .collect()
                    })
                    .unwrap_or_default();
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                    esc(effect),
                    cell(field(amount, "count")),
                    cell(field(amount, "total")),
                    subjects.join(", ")
                );
            }
            out.push_str("</table>");
        }
        if world.is_null() {
            out.push_str("</section>\n");
            return;
        }
        let lost = field(world, "lost_writes").as_u64().unwrap_or(0);
        let _ = write!(
            out,
            "<p>{} record(s) changed{}.</p>",
            field(world, "records_changed").as_u64().unwrap_or(0),
            if lost > 0 {
                format!("; <b>{lost} write(s) lost</b>: the store acknowledged them and kept nothing")
            } else {
                String::new()
            }
        );
        for table in array(world, "tables") {
            let changed = array(table, "changed");
            let _ = write!(
                out,
                "<h3>{}</h3><p class=\"muted\">{} record(s) at the start, {} at the end</p>",
                esc(&text_of(table, "name")),
                cell(field(table, "records_initial")),
                cell(field(table, "records_final"))
            );
            if changed.is_empty() {
                out.push_str("<p class=\"muted\">Nothing written.</p>");
                continue;
            }
            out.push_str(
                "<table class=\"world-changes\"><tr><th>record</th><th>change</th><th>fields: start → end</th>\
                 <th>conversations</th><th>faults behind it</th></tr>",
            );
            for change in changed {
                let fields: Vec<String> = array(change, "fields")
                    .iter()
                    .map(|f| {
                        format!(
                            "<b>{}</b> {} → {}",
                            esc(&text_of(f, "field")),
                            esc(&cell(field(f, "before"))),
                            esc(&cell(field(f, "after")))
                        )
                    })
                    .collect();
                let conversations: Vec<String> = array(change, "conversations").iter().map(|c| c.to_string()).collect();
                let faults: Vec<String> = array(change, "faults")
                    .iter()
                    .filter_map(Value::as_str)
                    .map(esc)
                    .collect();
                let lost = field(change, "lost_writes").as_u64().unwrap_or(0);
                let _ =
                    write!(
                    out,
                    "<tr><td>{}</td><td class=\"change-{kind}\">{kind}{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&text_of(change, "key")),
                    if lost > 0 { format!(" ({lost} lost)") } else { String::new() },
                    if fields.is_empty() { "—".to_owned() } else { fields.join("<br>") },
                    conversations.join(", "),
                    if faults.is_empty() { "—".to_owned() } else { faults.join(", ") },
                    kind = esc(&text_of(change, "change")),
                );
            }
            out.push_str("</table>");
        }
        out.push_str("</section>\n");
    }
}
