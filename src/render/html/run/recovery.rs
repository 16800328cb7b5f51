//! The recovery section: what the design did to recover — compensations run and what they
//! undid, calls cancelled and the effects they would have had, each reviewer's approvals with
//! its queue and waits, and the answers agents dropped as stale. Nothing for a run without any.

use std::fmt::Write as _;

use serde_json::Value;

use super::{array, dur, esc, field, tally, text_of, View};

/// `{"charged": 2}` as `charged ×2`, or a dash for none.
fn counts(value: &Value) -> String {
    let items = tally(value);
    match items.is_empty() {
        true => "—".to_owned(),
        false => esc(&items.join(", ")),
    }
}

fn n(value: &Value, key: &str) -> u64 {
    field(value, key).as_u64().unwrap_or(0)
}

impl View<'_> {
    pub(super) fn recovery(&self, out: &mut String) {
        let compensations = field(self.report, "compensations");
        let cancellations = field(self.report, "cancellations");
        let approvals = array(self.report, "approvals");
        let stale = field(self.report, "stale_answers");
        let has_stale = stale.as_object().is_some_and(|m| !m.is_empty());
        if compensations.is_null() && cancellations.is_null() && approvals.is_empty() && !has_stale {
            return;
        }
        out.push_str("<section id=\"recovery\"><h2>Recovery: compensations, cancellations, approvals</h2>");
        if !compensations.is_null() {
            let _ = write!(
                out,
                "<p id=\"compensations\">Compensations: <b>{}</b> run in {} conversation(s), {} succeeded, <b>{}</b> failed; undid {}.</p>",
                n(compensations, "run"),
                n(compensations, "conversations"),
                n(compensations, "succeeded"),
                n(compensations, "failed"),
                counts(field(compensations, "undone")),
            );
        }
        if !cancellations.is_null() {
            let _ = write!(
                out,
                "<p id=\"cancellations\">Cancelled: {} conversation(s), {} tool call(s) in flight; the cancelled calls would have had {}.</p>",
                n(cancellations, "conversations"),
                n(cancellations, "calls"),
                counts(field(cancellations, "effects")),
            );
        }
        if !approvals.is_empty() {
            out.push_str(
                "<table id=\"approvals\"><tr><th>reviewer</th><th class=\"n\">requests</th><th class=\"n\">approved</th>\
                 <th class=\"n\">rejected</th><th class=\"n\">timed out</th><th class=\"n\">late decisions</th>\
                 <th class=\"n\">queue at most</th><th class=\"n\">wait p50</th><th class=\"n\">wait p95</th>\
                 <th class=\"n\">wait max</th><th class=\"n\">longest queue wait</th></tr>",
            );
            for a in approvals {
                let wait = field(a, "wait_us");
                let _ = write!(
                    out,
                    "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                    esc(&text_of(a, "human")),
                    n(a, "requests"),
                    n(a, "approved"),
                    n(a, "rejected"),
                    n(a, "timed_out"),
                    n(a, "late_decisions"),
                    n(a, "queue_max"),
                    esc(&dur(n(wait, "p50"))),
                    esc(&dur(n(wait, "p95"))),
                    esc(&dur(n(wait, "max"))),
                    esc(&dur(n(field(a, "queue_wait_us"), "max"))),
                );
            }
            out.push_str("</table>");
        }
        if has_stale {
            let _ = write!(
                out,
                "<p id=\"stale\">Answers dropped as stale (nobody waited for them any more): {}.</p>",
                counts(stale)
            );
        }
        out.push_str("</section>\n");
    }
}
