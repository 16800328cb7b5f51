//! The HTML report of one run: summary, invariants, the cascade from each fault or untrusted
//! source, a swim-lane timeline over virtual time (one lane per actor), and cost and tokens
//! over time per agent.
//!
//! Bounded at any run length: the timeline shows at most [`PAGES_MAX`] pages of
//! [`PAGE_RECORDS_MAX`] trace records each (the first page, those holding the first
//! violations, faults and failures, then pages spread evenly over the run), at most [`LANES_MAX`] lanes (the busiest actors; the rest
//! share one lane), and an overview of the whole run aggregated into [`OVERVIEW_BUCKETS`]
//! time buckets per lane. Lists and chart series are capped too, so a report stays under
//! [`RUN_HTML_BYTES_MAX`] bytes.

mod cascade;
mod charts;
mod recovery;
mod timeline;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::{clip, esc, num, page, PALETTE};
use crate::scenario::units::format_duration_us;
use crate::scenario::units::format_usd;
use crate::trace::records;
use crate::trace::Record;
use timeline::Lanes;

/// Trace records per timeline page.
pub const PAGE_RECORDS_MAX: usize = 1_000;
/// Timeline pages kept in one report.
pub const PAGES_MAX: usize = 8;
/// Lanes drawn; less busy actors share a last "other actors" lane.
pub const LANES_MAX: usize = 32;
/// Time buckets of the whole-run overview.
pub const OVERVIEW_BUCKETS: usize = 200;
/// Points per chart series.
const CHART_POINTS_MAX: usize = 240;
/// Series per chart; the rest are summed into "others".
const SERIES_MAX: usize = 8;
/// Cascade cards shown.
const CASCADE_SOURCES_MAX: usize = 40;
/// Items per list inside a cascade card.
const LIST_ITEMS_MAX: usize = 25;
/// Characters of a message summary kept in a tooltip.
const TITLE_CHARS_MAX: usize = 200;
/// One model reply: (virtual time, cost in pico-USD, tokens in + out).
type Spend = (u64, u64, u64);
/// An agent (or a group) and its model replies in time order.
type Series = (String, Vec<Spend>);

/// The size a run report never exceeds, whatever the length of the run.
pub const RUN_HTML_BYTES_MAX: usize = 4 * 1024 * 1024;

const PLOT_WIDTH: f64 = 1060.0;
const PLOT_PAD: f64 = 12.0;
const LANE_HEIGHT: f64 = 24.0;
const AXIS_HEIGHT: f64 = 24.0;
const LABEL_WIDTH: f64 = 200.0;

/// Reads `DIR/trace.jsonl` and `DIR/report.json` and renders the report.
pub fn render_run_dir(dir: &Path) -> Result<String, String> {
    let trace_path = dir.join("trace.jsonl");
    let report_path = dir.join("report.json");
    let trace =
        std::fs::read(&trace_path).map_err(|e| format!("{}: cannot read the trace: {e}", trace_path.display()))?;
    let report_bytes =
        std::fs::read(&report_path).map_err(|e| format!("{}: cannot read the report: {e}", report_path.display()))?;
    let report: Value = serde_json::from_slice(&report_bytes).map_err(|e| {
        format!(
            "{}:{}:{}: expected the JSON report written by `agentsim run --out`: {e}",
            report_path.display(),
            e.line(),
            e.column()
        )
    })?;
    if !report.is_object() {
        return Err(format!("{}:1:1: expected a JSON object", report_path.display()));
    }
    let records = records::parse(&trace_path.display().to_string(), &trace)?;
    Ok(render_run(&records, &report))
}

/// Renders the report of one run from its trace records and its `report.json`. Keys added by
/// later report versions (`guardrails`, `blast_radius`) are shown when present.
pub fn render_run(records: &[Record], report: &Value) -> String {
    let view = View::new(records, report);
    let mut body = String::new();
    view.header(&mut body);
    body.push_str("<main>\n");
    view.summary(&mut body);
    view.invariants(&mut body);
    view.world(&mut body);
    view.recovery(&mut body);
    view.cascade(&mut body);
    view.timeline(&mut body);
    view.charts(&mut body);
    view.guardrails(&mut body);
    view.tools(&mut body);
    view.footer(&mut body);
    body.push_str("</main>\n");
    let title = format!("agentsim · {} · seed {}", view.text("scenario"), view.uint("seed"));
    page(&title, &body)
}

struct View<'a> {
    report: &'a Value,
    /// Records on the timeline (all but the header and the end record): more than the run's
    /// `events` (deliveries), since faults, failures, restarts and guardrail checks are records too.
    records: Vec<&'a Record>,
    end_t_us: u64,
    lanes: Lanes,
}

/// A JSON object of counts as `name ×N` items: `{"charged": 2}` → `["charged ×2"]`.
fn tally(counts: &Value) -> Vec<String> {
    counts
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k} ×{v}")).collect())
        .unwrap_or_default()
}

fn field<'v>(value: &'v Value, key: &str) -> &'v Value {
    value.get(key).unwrap_or(&Value::Null)
}

fn text_of(value: &Value, key: &str) -> String {
    match field(value, key) {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn array<'v>(value: &'v Value, key: &str) -> &'v [Value] {
    field(value, key).as_array().map_or(&[], Vec::as_slice)
}

fn dur(t_us: u64) -> String {
    format_duration_us(t_us)
}

impl<'a> View<'a> {
    fn new(records: &'a [Record], report: &'a Value) -> View<'a> {
        let events: Vec<&Record> = records
            .iter()
            .filter(|r| r.kind() != "header" && r.kind() != "end")
            .collect();
        let end_t_us = records
            .iter()
            .map(Record::t_us)
            .max()
            .unwrap_or(0)
            .max(report.get("virtual_time_us").and_then(Value::as_u64).unwrap_or(0));
        let mut must: BTreeSet<String> = BTreeSet::new();
        for r in &events {
            if matches!(r.kind(), "fault" | "fail" | "restart" | "escalate" | "guard") {
                must.insert(r.actor().to_owned());
            }
        }
        for inv in array(report, "invariants") {
            let actor = text_of(field(inv, "first_violation"), "actor");
            if !actor.is_empty() {
                must.insert(actor);
            }
        }
        let lanes = Lanes::new(&events, &must);
        View {
            report,
            records: events,
            end_t_us,
            lanes,
        }
    }

    fn text(&self, key: &str) -> String {
        text_of(self.report, key)
    }

    fn uint(&self, key: &str) -> u64 {
        self.report.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    fn sub_uint(&self, key: &str, sub: &str) -> u64 {
        field(self.report, key).get(sub).and_then(Value::as_u64).unwrap_or(0)
    }

    fn outcome_badge(&self) -> String {
        let outcome = self.text("outcome");
        let invariants_held = array(self.report, "invariants")
            .iter()
            .all(|i| i.get("passed").and_then(Value::as_bool).unwrap_or(true));
        let class = match (outcome.as_str(), invariants_held) {
            ("completed", true) => "good",
            ("completed", false) => "warn",
            _ => "bad",
        };
        format!("<span class=\"badge {class}\" id=\"outcome\">{}</span>", esc(&outcome))
    }

    fn header(&self, out: &mut String) {
        let profile = match self.report.get("profile").and_then(Value::as_str) {
            Some(p) => format!(" · fault profile {}", esc(p)),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "<header class=\"top\"><h1>{} · seed {} {}</h1><div class=\"sub\">agentsim run report · \
             {} virtual · {} events{profile}</div></header>",
            esc(&self.text("scenario")),
            self.uint("seed"),
            self.outcome_badge(),
            esc(&dur(self.uint("virtual_time_us"))),
            self.uint("events"),
        );
    }

    /// One paragraph a newcomer can read: how the run ended, and why.
    fn story(&self) -> String {
        let started = self.sub_uint("conversations", "started");
        let answered = self.sub_uint("conversations", "answered");
        let unanswered = self.sub_uint("conversations", "unanswered");
        let failed = self.sub_uint("conversations", "failed");
        let detail = self.text("outcome_detail");
        let mut story = match self.text("outcome").as_str() {
            "completed" => "The run <b>completed</b>: every conversation ended.".to_owned(),
            "stalled" => format!(
                "The run <b>stalled</b>: nothing was left to do, but {unanswered} of {started} conversations never got an answer."
            ),
            "limit_exceeded" => format!("A limit stopped the run: <b>{}</b>.", esc(&detail)),
            "escalated" => format!(
                "The run ended <b>escalated</b>: a failure went past the root supervisor ({}).",
                esc(&clip(&detail, 240))
            ),
            other => format!("The run ended <b>{}</b>.", esc(other)),
        };
        let _ = write!(
            story,
            " {started} conversations started: {answered} answered, {failed} failed, {unanswered} unanswered."
        );
        story.push_str(&self.harm_sentence());
        let faults = array(self.report, "faults");
        if faults.is_empty() {
            story.push_str(" No fault fired.");
        } else {
            let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
            for f in faults {
                *kinds.entry(text_of(f, "kind")).or_default() += 1;
            }
            let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{} ×{n}", esc(k))).collect();
            let _ = write!(story, " {} fault(s) fired ({}).", faults.len(), kinds.join(", "));
        }
        let (llm_calls, llm_errors) = (self.uint("llm_calls"), self.uint("llm_errors"));
        if llm_errors > 0 {
            let _ = write!(
                story,
                " {llm_errors} of {llm_calls} model calls came back as provider errors (red bars on the timeline)."
            );
        }
        let (failures, restarts) = (
            array(self.report, "failures").len(),
            array(self.report, "restarts").len(),
        );
        if failures + restarts > 0 {
            let _ = write!(
                story,
                " {failures} handler failure(s), {restarts} restart(s) by supervisors."
            );
        }
        let invariants = array(self.report, "invariants");
        if !invariants.is_empty() {
            let held = invariants
                .iter()
                .filter(|i| i.get("passed").and_then(Value::as_bool).unwrap_or(false))
                .count();
            let _ = write!(story, " <b>{held} of {} invariants held.</b>", invariants.len());
        }
        story
    }

    fn summary(&self, out: &mut String) {
        let _ = write!(
            out,
            "<section id=\"summary\"><h2>What happened</h2><p class=\"story\">{}</p><div class=\"cards\">",
            self.story()
        );
        let effects = tally(field(self.report, "effects"));
        let cost = self
            .report
            .get("cost_pusd")
            .and_then(Value::as_u64)
            .map_or_else(|| self.text("cost_usd"), format_usd);
        let mut cards = vec![
            ("outcome", self.text("outcome")),
            ("makespan (virtual)", dur(self.uint("virtual_time_us"))),
            ("events", self.uint("events").to_string()),
            (
                "conversations",
                format!(
                    "{} / {} answered",
                    self.sub_uint("conversations", "answered"),
                    self.sub_uint("conversations", "started")
                ),
            ),
            (
                "llm calls",
                format!("{} ({} errors)", self.uint("llm_calls"), self.uint("llm_errors")),
            ),
            ("tool calls", self.uint("tool_calls").to_string()),
            ("tokens", self.sub_uint("tokens", "total").to_string()),
            ("cost", cost),
            ("faults fired", array(self.report, "faults").len().to_string()),
            (
                "failures / restarts",
                format!(
                    "{} / {}",
                    array(self.report, "failures").len(),
                    array(self.report, "restarts").len()
                ),
            ),
            (
                "side effects",
                if effects.is_empty() {
                    "none".to_owned()
                } else {
                    effects.join(", ")
                },
            ),
        ];
        if self.sub_uint("user_turns", "dialogues") > 0 {
            let mean = field(self.report, "user_turns")
                .get("mean")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let value = format!(
                "{} resolved, {} abandoned · {mean:.1} user turns on average (max {})",
                self.sub_uint("fates", "resolved"),
                self.sub_uint("fates", "abandoned"),
                self.sub_uint("user_turns", "max")
            );
            cards.insert(1, ("dialogues", value));
        }
        if let Some(sim) = self.report.get("user_simulator").filter(|s| s.is_object()) {
            let calls = sim.get("llm_calls").and_then(Value::as_u64).unwrap_or(0);
            let cost = sim.get("cost_pusd").and_then(Value::as_u64).unwrap_or(0);
            let value = format!("{calls} calls, {} (not in the design's cost)", format_usd(cost));
            cards.insert(3, ("user simulator", value));
        }
        for (k, v) in cards {
            let _ = write!(
                out,
                "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
                esc(k),
                esc(&v)
            );
        }
        out.push_str("</div>");
        let _ = writeln!(
            out,
            "<p>Replay this exact run:<br><span class=\"cmd\" id=\"replay\">{}</span></p></section>",
            esc(&self.text("replay"))
        );
    }

    /// " 19 conversations were harmed: 12 lost, 7 orphaned; 19 with side effects and no answer."
    /// (empty when none was, or the report predates fates).
    fn harm_sentence(&self) -> String {
        let total = self.uint("harmed_total");
        if total == 0 {
            return String::new();
        }
        let fates: Vec<String> = ["lost", "orphaned", "cut", "failed", "out_of_turns"]
            .iter()
            .filter_map(|f| {
                let n = self.sub_uint("fates", f);
                (n > 0).then(|| format!("{n} {}", f.replace('_', " ")))
            })
            .collect();
        let silent = array(self.report, "harmed")
            .iter()
            .filter(|h| field(h, "effects").as_object().is_some_and(|e| !e.is_empty()))
            .count();
        let mut sentence = format!(
            " <b class=\"bad\">{total} conversation(s) harmed</b>: {}; <b>{silent} with side effects and no answer</b>.",
            esc(&fates.join(", "))
        );
        // With --impact: which faults changed them (counted over the listed ones).
        let mut by_fault: BTreeMap<&str, u64> = BTreeMap::new();
        for h in array(self.report, "harmed") {
            for name in array(h, "changed_by").iter().filter_map(Value::as_str) {
                *by_fault.entry(name).or_default() += 1;
            }
        }
        if by_fault.is_empty() {
            // Without --impact: the faults that ended them directly.
            let mut direct: BTreeMap<&str, u64> = BTreeMap::new();
            for h in array(self.report, "harmed") {
                if let Some(name) = h.get("fault").and_then(Value::as_str) {
                    *direct.entry(name).or_default() += 1;
                }
            }
            if !direct.is_empty() {
                let named: Vec<String> = direct
                    .iter()
                    .map(|(name, n)| format!("<b>{}</b> ({n})", esc(name)))
                    .collect();
                let _ = write!(sentence, " Lost to {}.", named.join(", "));
            }
        }
        if !by_fault.is_empty() {
            let mut ranked: Vec<(&str, u64)> = by_fault.into_iter().collect();
            ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let named: Vec<String> = ranked
                .iter()
                .map(|(name, n)| format!("<b>{}</b> ({n})", esc(name)))
                .collect();
            let _ = write!(
                sentence,
                " Without each fault they would have ended otherwise: {}.",
                named.join(", ")
            );
        }
        sentence
    }

    fn invariants(&self, out: &mut String) {
        let invariants = array(self.report, "invariants");
        out.push_str("<section id=\"invariants\"><h2>Invariants</h2>");
        if invariants.is_empty() {
            out.push_str("<p class=\"muted\">The scenario declares no invariant.</p></section>\n");
            return;
        }
        out.push_str("<ul class=\"invariants\" id=\"invariant-list\">");
        for (i, inv) in invariants.iter().enumerate() {
            let name = esc(&text_of(inv, "name"));
            let violation = field(inv, "first_violation");
            if inv.get("passed").and_then(Value::as_bool).unwrap_or(false) || violation.is_null() {
                let _ = write!(
                    out,
                    "<li class=\"invariant passed\"><span class=\"pass\">✓ held</span> {name}</li>"
                );
            } else {
                let seq = violation.get("seq").and_then(Value::as_u64).unwrap_or(0);
                let t_us = violation.get("t_us").and_then(Value::as_u64).unwrap_or(0);
                let _ = write!(
                    out,
                    "<li class=\"invariant failed\"><span class=\"fail\">✗ broken</span> <b>{name}</b> — {} \
                     <span class=\"muted\">(first at seq {seq}, t = {}, on {})</span> \
                     <a href=\"#inv-{i}\" class=\"goto\">show on the timeline</a></li>",
                    esc(&text_of(violation, "message")),
                    esc(&dur(t_us)),
                    esc(&text_of(violation, "actor")),
                );
            }
        }
        out.push_str("</ul></section>\n");
    }

    fn guardrails(&self, out: &mut String) {
        let guardrails = array(self.report, "guardrails");
        if guardrails.is_empty() {
            return;
        }
        out.push_str(
            "<section id=\"guardrails\"><h2>Guardrails</h2><table><tr><th>guardrail</th><th>kind</th><th>stage</th><th>action</th>\
             <th class=\"n\">checks</th><th class=\"n\">trips</th><th class=\"n\">false +</th><th class=\"n\">false −</th>\
             <th class=\"n\">failures</th><th class=\"n\">latency total</th></tr>",
        );
        for g in guardrails {
            let n = |k: &str| g.get(k).and_then(Value::as_u64).unwrap_or(0);
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&text_of(g, "name")),
                esc(&text_of(g, "kind")),
                esc(&text_of(g, "stage")),
                esc(&text_of(g, "action")),
                n("checks"),
                n("trips"),
                n("false_positives"),
                n("false_negatives"),
                n("failures"),
                esc(&dur(n("latency_us_total"))),
            );
        }
        out.push_str("</table></section>\n");
    }

    /// The APIs behind the tools, where some call failed or waited.
    fn tools(&self, out: &mut String) {
        let busy: Vec<&Value> = array(self.report, "tools")
            .iter()
            .filter(|t| field(t, "errors").as_u64().unwrap_or(0) > 0 || field(t, "queued").as_u64().unwrap_or(0) > 0)
            .collect();
        if busy.is_empty() {
            return;
        }
        out.push_str(
            "<section id=\"tools\"><h2>Tools: the APIs behind them</h2><table><tr><th>tool</th><th class=\"n\">calls</th>\
             <th class=\"n\">errors</th><th>by status</th><th class=\"n\">waited</th><th class=\"n\">waits in all</th></tr>",
        );
        for t in busy {
            let n = |k: &str| t.get(k).and_then(Value::as_u64).unwrap_or(0);
            let by: Vec<String> = field(t, "errors_by_status")
                .as_object()
                .map(|m| m.iter().map(|(s, c)| format!("{c}× {}", esc(s))).collect())
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&text_of(t, "name")),
                n("calls"),
                n("errors"),
                by.join(", "),
                n("queued"),
                esc(&dur(n("queue_wait_us_total"))),
            );
        }
        out.push_str("</table></section>\n");
    }

    fn footer(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "<p class=\"note\" id=\"footer\">agentsim {} · report.json schema {} · scenario hash {} · trace digest (BLAKE3) <code>{}</code> · \
             generated from trace.jsonl and report.json; the same run directory always gives the same file.</p>",
            esc(&self.text("agentsim_version")),
            self.uint("schema_version"),
            esc(&clip(&self.text("scenario_hash"), 16)),
            esc(&self.text("digest")),
        );
    }
}
