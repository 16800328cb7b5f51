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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

use super::{clip, esc, num, page, PALETTE};
use crate::render::actor_kind_rank;
use crate::scenario::units::format_duration_us;
use crate::scenario::units::format_usd;
use crate::trace::records;
use crate::trace::Record;

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
    view.cascade(&mut body);
    view.timeline(&mut body);
    view.charts(&mut body);
    view.guardrails(&mut body);
    view.footer(&mut body);
    body.push_str("</main>\n");
    let title = format!("agentsim · {} · seed {}", view.text("scenario"), view.uint("seed"));
    page(&title, &body)
}

struct View<'a> {
    report: &'a Value,
    /// Records on the timeline (all but the header and the end record).
    events: Vec<&'a Record>,
    end_t_us: u64,
    lanes: Lanes,
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
            events,
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
        let effects: Vec<String> = field(self.report, "effects")
            .as_object()
            .map(|m| m.iter().map(|(k, v)| format!("{k} ×{v}")).collect())
            .unwrap_or_default();
        let cost = self
            .report
            .get("cost_pusd")
            .and_then(Value::as_u64)
            .map_or_else(|| self.text("cost_usd"), format_usd);
        let cards = [
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
        for (k, v) in cards {
            let _ = write!(
                out,
                "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
                esc(k),
                esc(&v)
            );
        }
        let _ = writeln!(
            out,
            "</div><p>Replay this exact run:<br><span class=\"cmd\" id=\"replay\">{}</span></p></section>",
            esc(&self.text("replay"))
        );
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

    fn cascade(&self, out: &mut String) {
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
                    "<p class=\"note\">{} more sources in report.json.</p>",
                    blast.len() - CASCADE_SOURCES_MAX
                );
            }
        }
        let faults: Vec<usize> = (0..self.events.len())
            .filter(|i| self.events[*i].kind() == "fault")
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
        if faults.len() > CASCADE_SOURCES_MAX {
            let _ = write!(
                out,
                "<p class=\"note\">{} more faults fired (see report.json and the timeline).</p>",
                faults.len() - CASCADE_SOURCES_MAX
            );
        }
        out.push_str("</section>\n");
    }

    fn fault_card(&self, index: usize, out: &mut String) {
        let fault = self.events[index];
        let seq = fault.seq().unwrap_or(0);
        let t = fault.t_us();
        let mut flow: Vec<String> = Vec::new();
        let mut lost = false;
        for r in self.events.iter().skip(index + 1).take(16) {
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

    fn timeline(&self, out: &mut String) {
        let pages = self.pages();
        let total_pages = self.events.len().div_ceil(PAGE_RECORDS_MAX).max(1);
        let height = AXIS_HEIGHT + self.lanes.len() as f64 * LANE_HEIGHT + 6.0;
        out.push_str("<section id=\"timeline\"><h2>Timeline</h2>");
        let _ = write!(
            out,
            "<p class=\"note\">One lane per actor; time runs left to right in virtual time. Arrows are messages \
             (sender → receiver), bars are model calls (on the model's lane, as long as their latency) and tool \
             calls. Hover anything for details. {}</p>",
            if pages.len() < total_pages {
                format!(
                    "This run has {} events: the overview shows all of them, the pages below keep {} of {} pages of \
                     {PAGE_RECORDS_MAX} (the first, those with violations, faults and failures, then a sample spread over the run).",
                    self.events.len(),
                    pages.len(),
                    total_pages
                )
            } else {
                String::new()
            }
        );
        legend(out);
        self.overview(out, &pages);
        out.push_str("<div class=\"toolbar\">");
        if pages.len() > 1 {
            out.push_str("<span class=\"muted\">page:</span>");
            for &p in &pages {
                let (t0, t1) = self.page_span(p);
                let first = p * PAGE_RECORDS_MAX;
                let last = ((p + 1) * PAGE_RECORDS_MAX).min(self.events.len());
                let _ = write!(
                    out,
                    "<button data-show-page=\"{p}\" title=\"records {}–{}\">{} – {}</button>",
                    first + 1,
                    last,
                    esc(&dur(t0)),
                    esc(&dur(t1))
                );
            }
        }
        out.push_str(
            "<span class=\"muted\">zoom:</span><button data-zoom=\"out\">−</button><button data-zoom=\"reset\">fit</button>\
             <button data-zoom=\"in\">+</button><span id=\"zoom-level\" class=\"muted\">1×</span><span id=\"notice\"></span></div>",
        );
        let _ = write!(
            out,
            "<svg width=\"0\" height=\"0\" style=\"position:absolute\"><defs><marker id=\"arrowhead\" viewBox=\"0 0 8 8\" \
             refX=\"7\" refY=\"4\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\">\
             <path d=\"M0,0L8,4L0,8Z\" fill=\"#64748b\"/></marker></defs></svg>\
             <div class=\"timeline\"><div class=\"lanes-col\"><svg width=\"{LABEL_WIDTH}\" height=\"{}\" class=\"lanes\">",
            num(height)
        );
        for (i, name) in self.lanes.names.iter().enumerate() {
            let y = AXIS_HEIGHT + i as f64 * LANE_HEIGHT;
            let _ = write!(
                out,
                "<g class=\"lane\" data-actor=\"{}\"><rect class=\"lane-bg{}\" x=\"0\" y=\"{}\" width=\"{LABEL_WIDTH}\" height=\"{LANE_HEIGHT}\"/>\
                 <text class=\"lane-kind\" x=\"8\" y=\"{}\">{}</text><text class=\"lane-label\" x=\"72\" y=\"{}\">{}</text></g>",
                esc(name),
                if i % 2 == 1 { " alt" } else { "" },
                num(y),
                num(y + 16.0),
                esc(lane_kind(name)),
                num(y + 16.0),
                esc(&clip(lane_short(name), 18)),
            );
        }
        out.push_str("</svg></div><div class=\"plot-col\">");
        let mut used_ids = BTreeSet::new();
        for &p in &pages {
            self.page_svg(p, height, &mut used_ids, out);
        }
        out.push_str("</div></div></section>\n");
    }

    /// The pages kept: the first, then those holding violations, faults, failures, in that order,
    /// then pages spread evenly over the run.
    fn pages(&self) -> Vec<usize> {
        let total = self.events.len().div_ceil(PAGE_RECORDS_MAX).max(1);
        if total <= PAGES_MAX {
            return (0..total).collect();
        }
        let mut wanted = vec![0];
        for inv in array(self.report, "invariants") {
            let v = field(inv, "first_violation");
            if let (Some(seq), Some(t)) = (
                v.get("seq").and_then(Value::as_u64),
                v.get("t_us").and_then(Value::as_u64),
            ) {
                wanted.push(self.position_of(seq, t) / PAGE_RECORDS_MAX);
            }
        }
        for kind in ["fault", "fail", "escalate", "guard"] {
            for (i, r) in self.events.iter().enumerate() {
                let allowed = matches!(r, Record::Guard { verdict, .. } if verdict == "allow");
                if r.kind() == kind && !allowed {
                    wanted.push(i / PAGE_RECORDS_MAX);
                }
            }
        }
        // Spare pages sample the rest of the run evenly, the last page included.
        wanted.extend((1..PAGES_MAX).map(|k| k * (total - 1) / (PAGES_MAX - 1)));
        let mut kept = Vec::new();
        for p in wanted {
            if kept.len() == PAGES_MAX {
                break;
            }
            if !kept.contains(&p) {
                kept.push(p);
            }
        }
        kept.sort_unstable();
        kept
    }

    /// The timeline index of the event with `seq`, else the first at or after `t_us`.
    fn position_of(&self, seq: u64, t_us: u64) -> usize {
        self.events
            .iter()
            .position(|r| r.kind() == "deliver" && r.seq() == Some(seq))
            .or_else(|| self.events.iter().position(|r| r.seq() == Some(seq)))
            .or_else(|| self.events.iter().position(|r| r.t_us() >= t_us))
            .unwrap_or(self.events.len().saturating_sub(1))
    }

    fn page_span(&self, p: usize) -> (u64, u64) {
        let records = self.page_records(p);
        let t0 = records.first().map_or(0, |r| r.t_us());
        let t1 = records.iter().map(|r| r.t_us()).max().unwrap_or(t0);
        (t0, t1)
    }

    fn page_records(&self, p: usize) -> &[&'a Record] {
        let start = (p * PAGE_RECORDS_MAX).min(self.events.len());
        let end = ((p + 1) * PAGE_RECORDS_MAX).min(self.events.len());
        &self.events[start..end]
    }

    fn page_svg(&self, p: usize, height: f64, used_ids: &mut BTreeSet<u64>, out: &mut String) {
        let (t0, t1) = self.page_span(p);
        let span = (t1 - t0).max(1) as f64;
        let x = |t: u64| PLOT_PAD + (t.clamp(t0, t1.max(t0 + 1)) - t0) as f64 / span * PLOT_WIDTH;
        let y = |lane: usize| AXIS_HEIGHT + lane as f64 * LANE_HEIGHT + LANE_HEIGHT / 2.0;
        let width = PLOT_WIDTH + 2.0 * PLOT_PAD;
        let _ = write!(
            out,
            "<div class=\"page\" data-page=\"{p}\"><svg class=\"plot\" data-width=\"{}\" width=\"{}\" height=\"{}\">",
            num(width),
            num(width),
            num(height)
        );
        for lane in 0..self.lanes.len() {
            let _ = write!(
                out,
                "<rect class=\"lane-bg{}\" x=\"0\" y=\"{}\" width=\"{}\" height=\"{LANE_HEIGHT}\" data-x=\"width\"/>",
                if lane % 2 == 1 { " alt" } else { "" },
                num(AXIS_HEIGHT + lane as f64 * LANE_HEIGHT),
                num(width)
            );
        }
        for tick in 0..=8 {
            let t = t0 + ((t1 - t0) as u128 * tick / 8) as u64;
            let tx = x(t);
            let anchor = match tick {
                0 => "start",
                8 => "end",
                _ => "middle",
            };
            let _ = write!(
                out,
                "<line class=\"grid\" x1=\"{0}\" x2=\"{0}\" y1=\"{AXIS_HEIGHT}\" y2=\"{1}\" data-x=\"x1 x2\"/>\
                 <text class=\"axis\" x=\"{0}\" y=\"15\" text-anchor=\"{anchor}\" data-x=\"x\">{2}</text>",
                num(tx),
                num(height),
                esc(&dur(t))
            );
        }
        let (mut bars, mut arrows, mut marks) = (String::new(), String::new(), String::new());
        let mut open_tool_calls: BTreeMap<(usize, String, String), u64> = BTreeMap::new();
        let mut id_for = |seq: Option<u64>| match seq {
            Some(seq) if used_ids.insert(seq) => format!(" id=\"ev-{seq}\""),
            _ => String::new(),
        };
        for r in self.page_records(p) {
            let t = r.t_us();
            let title = esc(&clip(&describe(r), TITLE_CHARS_MAX));
            match r {
                Record::Deliver { from, to, msg, .. } => {
                    let (from, to) = (self.lanes.of(from), self.lanes.of(to));
                    let verb = msg.split(' ').next().unwrap_or("");
                    if verb == "llm_reply" {
                        let latency = r
                            .msg_field("latency_us")
                            .and_then(|l| l.parse::<u64>().ok())
                            .unwrap_or(0);
                        let class = if r.msg_field("error").is_some() {
                            "call error"
                        } else {
                            "call"
                        };
                        let x0 = x(t.saturating_sub(latency));
                        let _ = write!(
                            bars,
                            "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>model call · {}</title></rect>",
                            num(x0),
                            num(y(from) - 6.0),
                            num((x(t) - x0).max(1.0)),
                            title
                        );
                    }
                    if verb == "invoke" {
                        let key = (
                            to,
                            r.msg_field("conv").unwrap_or("").to_owned(),
                            r.msg_field("call").unwrap_or("").to_owned(),
                        );
                        open_tool_calls.insert(key, t);
                    }
                    if verb == "tool_result" {
                        let key = (
                            from,
                            r.msg_field("conv").unwrap_or("").to_owned(),
                            r.msg_field("call").unwrap_or("").to_owned(),
                        );
                        if let Some(start) = open_tool_calls.remove(&key) {
                            let _ = write!(
                                bars,
                                "<rect class=\"call tool\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>tool call · {}</title></rect>",
                                num(x(start)),
                                num(y(from) - 6.0),
                                num((x(t) - x(start)).max(1.0)),
                                title
                            );
                        }
                    }
                    let id = id_for(r.seq());
                    if from == to {
                        let _ = write!(
                            arrows,
                            "<circle class=\"tick\"{id} cx=\"{}\" cy=\"{}\" r=\"2.2\" data-x=\"cx\"><title>{title}</title></circle>",
                            num(x(t)),
                            num(y(to))
                        );
                    } else {
                        let class = match verb {
                            "answer" if r.msg_field("status") == Some("answered") => "msg answer",
                            "answer" => "msg answer failed",
                            "handoff" | "delegate" | "delegate_result" => "msg handoff",
                            "child_failed" => "msg failure",
                            _ => "msg",
                        };
                        let (y1, y2) = (y(from), y(to));
                        let y2 = if y2 > y1 { y2 - 5.0 } else { y2 + 5.0 };
                        let _ = write!(
                            arrows,
                            "<line class=\"{class}\"{id} x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" marker-end=\"url(#arrowhead)\" data-x=\"x1 x2\"><title>{title}</title></line>",
                            num(x(t)),
                            num(y1),
                            num(y2)
                        );
                    }
                }
                Record::Fault { .. } => marker(
                    &mut marks,
                    "fault-marker",
                    &id_for(r.seq()),
                    x(t),
                    y(self.lanes.of(r.actor())),
                    "<path d=\"M0,-8L6,0L0,8L-6,0Z\"/>",
                    &title,
                ),
                Record::Fail { .. } => marker(
                    &mut marks,
                    "crash-marker",
                    &id_for(r.seq()),
                    x(t),
                    y(self.lanes.of(r.actor())),
                    "<path d=\"M-5,-5L5,5M5,-5L-5,5\"/>",
                    &title,
                ),
                Record::Restart { .. } => marker(
                    &mut marks,
                    "restart-marker",
                    "",
                    x(t),
                    y(self.lanes.of(r.actor())),
                    "<circle r=\"5\"/>",
                    &title,
                ),
                Record::Escalate { .. } => marker(
                    &mut marks,
                    "escalate-marker",
                    "",
                    x(t),
                    y(self.lanes.of(r.actor())),
                    "<path d=\"M0,-8L7,6L-7,6Z\"/>",
                    &title,
                ),
                Record::Guard { verdict, guardrail, .. } => {
                    let class = format!("guard-marker verdict-{}", css_word(verdict));
                    marker(
                        &mut marks,
                        &class,
                        &id_for(r.seq()),
                        x(t),
                        y(self.lanes.of(guardrail)),
                        "<rect x=\"-4.5\" y=\"-4.5\" width=\"9\" height=\"9\"/>",
                        &title,
                    )
                }
                _ => {
                    let _ = write!(
                        arrows,
                        "<circle class=\"tick\" cx=\"{}\" cy=\"{}\" r=\"2.2\" data-x=\"cx\"><title>{title}</title></circle>",
                        num(x(t)),
                        num(y(self.lanes.of(r.actor())))
                    );
                }
            }
        }
        for ((lane, _, _), start) in &open_tool_calls {
            let _ = write!(
                bars,
                "<rect class=\"call tool open\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>tool call still open at the end of this page</title></rect>",
                num(x(*start)),
                num(y(*lane) - 6.0),
                num((x(t1) - x(*start)).max(1.0)),
            );
        }
        // Invariant violations on the page that holds them.
        let range = p * PAGE_RECORDS_MAX..((p + 1) * PAGE_RECORDS_MAX).min(self.events.len());
        for (i, inv) in array(self.report, "invariants").iter().enumerate() {
            let v = field(inv, "first_violation");
            let (Some(seq), Some(t)) = (
                v.get("seq").and_then(Value::as_u64),
                v.get("t_us").and_then(Value::as_u64),
            ) else {
                continue;
            };
            if !range.contains(&self.position_of(seq, t)) {
                continue;
            }
            let vx = x(t);
            // Labels near the right edge run leftwards, so they stay inside the plot.
            let (label_x, anchor) = if vx > PLOT_WIDTH * 0.6 {
                (vx - 4.0, "end")
            } else {
                (vx + 4.0, "start")
            };
            let _ = write!(
                marks,
                "<g class=\"violation-marker\" id=\"inv-{i}\"><line x1=\"{0}\" x2=\"{0}\" y1=\"{AXIS_HEIGHT}\" y2=\"{1}\" data-x=\"x1 x2\"/>\
                 <text x=\"{2}\" y=\"{3}\" text-anchor=\"{anchor}\" data-x=\"x\">✗ {4}</text><title>invariant broken: {4} — {5}</title></g>",
                num(vx),
                num(height),
                num(label_x),
                num(AXIS_HEIGHT + 10.0 + (i % 3) as f64 * 11.0),
                esc(&text_of(inv, "name")),
                esc(&text_of(v, "message")),
            );
        }
        out.push_str(&bars);
        out.push_str(&arrows);
        out.push_str(&marks);
        out.push_str("</svg></div>");
    }

    /// The whole run at a glance: per lane, how busy each slice of time was; faults in red; the
    /// time span of each kept page framed (click to open it).
    fn overview(&self, out: &mut String, pages: &[usize]) {
        let row = 11.0;
        let width = PLOT_WIDTH + LABEL_WIDTH;
        let height = self.lanes.len() as f64 * row + 4.0;
        let end = self.end_t_us.max(1);
        let bucket_of = |t: u64| ((t as u128 * OVERVIEW_BUCKETS as u128) / (end as u128 + 1)) as usize;
        let mut counts = vec![vec![0u32; OVERVIEW_BUCKETS]; self.lanes.len()];
        for r in &self.events {
            counts[self.lanes.of(r.actor())][bucket_of(r.t_us())] += 1;
        }
        let bucket_w = PLOT_WIDTH / OVERVIEW_BUCKETS as f64;
        let _ = write!(
            out,
            "<div class=\"overview-wrap\"><span class=\"note\">Whole run, {} → {} (darker = busier; red = faults{}):</span><br>\
             <svg class=\"overview\" width=\"{}\" height=\"{}\">",
            esc(&dur(0)),
            esc(&dur(self.end_t_us)),
            if pages.len() > 1 { "; framed = the pages below, click one to open it" } else { "" },
            num(width),
            num(height)
        );
        for (lane, row_counts) in counts.iter().enumerate() {
            let peak = *row_counts.iter().max().unwrap_or(&0);
            let ry = lane as f64 * row + 2.0;
            let _ = write!(
                out,
                "<text class=\"axis\" x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"9\">{}</text>",
                num(LABEL_WIDTH - 6.0),
                num(ry + 8.5),
                esc(&clip(&self.lanes.names[lane], 28))
            );
            for (b, count) in row_counts.iter().enumerate() {
                if *count == 0 {
                    continue;
                }
                let opacity = 0.15 + 0.85 * (*count as f64 / peak as f64);
                let _ = write!(
                    out,
                    "<rect class=\"heat\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill-opacity=\"{:.2}\"/>",
                    num(LABEL_WIDTH + b as f64 * bucket_w),
                    num(ry),
                    num(bucket_w.max(1.0)),
                    num(row - 1.5),
                    opacity
                );
            }
        }
        let xo = |t: u64| LABEL_WIDTH + t as f64 / end as f64 * PLOT_WIDTH;
        for r in self.events.iter().filter(|r| r.kind() == "fault").take(2_000) {
            let _ = write!(
                out,
                "<rect x=\"{}\" y=\"{}\" width=\"2\" height=\"{}\" fill=\"#dc2626\"/>",
                num(xo(r.t_us()) - 1.0),
                num(self.lanes.of(r.actor()) as f64 * row + 1.0),
                num(row)
            );
        }
        if pages.len() > 1 {
            for &p in pages {
                let (t0, t1) = self.page_span(p);
                let _ = write!(
                    out,
                    "<rect class=\"window\" data-show-page=\"{p}\" x=\"{}\" y=\"0\" width=\"{}\" height=\"{}\"><title>page {}: {} – {}</title></rect>",
                    num(xo(t0)),
                    num((xo(t1) - xo(t0)).max(3.0)),
                    num(height),
                    p + 1,
                    esc(&dur(t0)),
                    esc(&dur(t1))
                );
            }
        }
        out.push_str("</svg></div>");
    }

    fn charts(&self, out: &mut String) {
        // Per agent, from each model reply: (time, cost, tokens).
        let mut per_agent: BTreeMap<String, Vec<Spend>> = BTreeMap::new();
        for r in &self.events {
            let Record::Deliver { msg, to, .. } = r else {
                continue;
            };
            if !msg.starts_with("llm_reply ") {
                continue;
            }
            let n = |k: &str| r.msg_field(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            per_agent
                .entry(to.clone())
                .or_default()
                .push((r.t_us(), n("cost_pusd"), n("tokens_in") + n("tokens_out")));
        }
        out.push_str("<section id=\"cost\"><h2>Cost and tokens over time, per agent</h2>");
        if per_agent.is_empty() {
            out.push_str("<p class=\"muted\">No model call in this run.</p></section>\n");
            return;
        }
        let mut totals: Vec<(String, u64)> = per_agent
            .iter()
            .map(|(a, v)| (a.clone(), v.iter().map(|e| e.1 + e.2).sum::<u64>()))
            .collect();
        totals.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let shown: Vec<String> = totals.iter().take(SERIES_MAX).map(|(a, _)| a.clone()).collect();
        let mut series: Vec<Series> = shown
            .iter()
            .map(|a| (a.clone(), per_agent.get(a).cloned().unwrap_or_default()))
            .collect();
        if totals.len() > SERIES_MAX {
            let mut rest: Vec<Spend> = per_agent
                .iter()
                .filter(|(a, _)| !shown.contains(a))
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            rest.sort_by_key(|e| e.0);
            series.push((format!("{} other agents", totals.len() - SERIES_MAX), rest));
        }
        out.push_str("<div class=\"legend\">");
        for (i, (name, _)) in series.iter().enumerate() {
            let _ = write!(
                out,
                "<span><svg width=\"14\" height=\"4\"><rect width=\"14\" height=\"4\" fill=\"{}\"/></svg> {}</span>",
                PALETTE[i % PALETTE.len()],
                esc(name)
            );
        }
        out.push_str("</div><div class=\"charts\">");
        self.chart(out, "cumulative cost (USD)", &series, |e| e.1, &|v| format_usd(v));
        self.chart(out, "cumulative tokens (in + out)", &series, |e| e.2, &|v| {
            v.to_string()
        });
        out.push_str("</div></section>\n");
    }

    fn chart(
        &self,
        out: &mut String,
        title: &str,
        series: &[Series],
        pick: fn(&Spend) -> u64,
        label: &dyn Fn(u64) -> String,
    ) {
        let (w, h, left, bottom) = (600.0, 220.0, 70.0, 22.0);
        let end = self.end_t_us.max(1);
        let peak = series
            .iter()
            .map(|(_, v)| v.iter().map(pick).sum::<u64>())
            .max()
            .unwrap_or(0)
            .max(1);
        let px = |t: u64| left + t as f64 / end as f64 * (w - left - 10.0);
        let py = |v: u64| 8.0 + (h - bottom - 8.0) * (1.0 - v as f64 / peak as f64);
        let _ = write!(
            out,
            "<div class=\"chart\"><h3>{6}</h3><svg width=\"{w}\" height=\"{h}\">\
             <line class=\"axis-line\" x1=\"{left}\" x2=\"{left}\" y1=\"8\" y2=\"{0}\"/><line class=\"axis-line\" x1=\"{left}\" x2=\"{1}\" y1=\"{0}\" y2=\"{0}\"/>\
             <text class=\"axis\" x=\"{2}\" y=\"14\" text-anchor=\"end\">{3}</text><text class=\"axis\" x=\"{2}\" y=\"{0}\" text-anchor=\"end\">0</text>\
             <text class=\"axis\" x=\"{left}\" y=\"{4}\">0s</text><text class=\"axis\" x=\"{1}\" y=\"{4}\" text-anchor=\"end\">{5}</text>",
            num(h - bottom),
            num(w - 10.0),
            num(left - 4.0),
            esc(&label(peak)),
            num(h - 6.0),
            esc(&dur(end)),
            esc(title),
        );
        for (i, (name, events)) in series.iter().enumerate() {
            let mut points = vec![(px(0), py(0))];
            let mut total = 0u64;
            let bucket = |t: u64| (t as u128 * CHART_POINTS_MAX as u128 / (end as u128 + 1)) as usize;
            let mut iter = events.iter().peekable();
            while let Some(e) = iter.next() {
                total += pick(e);
                // One step per bucket: skip to the last event of this bucket.
                if iter.peek().is_some_and(|next| bucket(next.0) == bucket(e.0)) {
                    continue;
                }
                let last_y = points.last().map_or(py(0), |p| p.1);
                points.push((px(e.0), last_y));
                points.push((px(e.0), py(total)));
            }
            points.push((px(end), py(total)));
            let text: Vec<String> = points.iter().map(|(x, y)| format!("{},{}", num(*x), num(*y))).collect();
            let _ = write!(
                out,
                "<polyline points=\"{}\" stroke=\"{}\"><title>{}: {}</title></polyline>",
                text.join(" "),
                PALETTE[i % PALETTE.len()],
                esc(name),
                esc(&label(total))
            );
        }
        out.push_str("</svg></div>");
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

fn more(count: usize) -> String {
    if count > LIST_ITEMS_MAX {
        format!(" <span class=\"muted\">and {} more</span>", count - LIST_ITEMS_MAX)
    } else {
        String::new()
    }
}

fn marker(out: &mut String, class: &str, id: &str, x: f64, y: f64, shape: &str, title: &str) {
    let _ = write!(
        out,
        "<g class=\"{class}\"{id} transform=\"translate({},{})\" data-x=\"transform\">{shape}<title>{title}</title></g>",
        num(x),
        num(y)
    );
}

/// A word safe in a class name.
fn css_word(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// The tooltip of one record.
fn describe(r: &Record) -> String {
    let at = format!(
        "seq {} · t = {}",
        r.seq().map_or("–".to_owned(), |s| s.to_string()),
        dur(r.t_us())
    );
    match r {
        Record::Deliver { from, to, msg, .. } => format!("{at} · {from} → {to}: {msg}"),
        Record::Fault {
            name,
            fault,
            actor,
            params,
            ..
        } => format!("{at} · FAULT {name} ({fault}) on {actor} {params}"),
        Record::Fail {
            actor,
            incarnation,
            error,
            ..
        } => format!("{at} · {actor} CRASHED (incarnation {incarnation}): {error}"),
        Record::Restart {
            actor,
            incarnation,
            supervisor,
            ..
        } => format!("{at} · {supervisor} restarted {actor} as incarnation {incarnation}"),
        Record::Escalate { actor, reason, .. } => format!("{at} · {actor} gave up: {reason}"),
        Record::Guard {
            guardrail,
            stage,
            actor,
            verdict,
            ..
        } => format!("{at} · guardrail {guardrail} ({stage}) on {actor}: {verdict}"),
        other => format!("{at} · {} {}", other.kind(), other.actor()),
    }
}

/// The timeline's lanes: the busiest actors, ordered by kind, and one lane for the rest.
struct Lanes {
    names: Vec<String>,
    index: BTreeMap<String, usize>,
    other: Option<usize>,
}

fn lane_kind(actor: &str) -> &str {
    match actor.split_once(':') {
        Some((kind, _)) => kind,
        None if actor.starts_with("other ") => "",
        None => actor,
    }
}

fn lane_short(actor: &str) -> &str {
    match actor.split_once(':') {
        Some((_, name)) => name,
        None if actor == "user" => "(traffic)",
        None => actor,
    }
}

impl Lanes {
    fn new(events: &[&Record], must: &BTreeSet<String>) -> Lanes {
        // (activity, first appearance) per actor.
        let mut order = 0;
        let mut touch = |actor: &'_ str, seen: &mut BTreeMap<String, (u64, usize)>| {
            if actor.is_empty() {
                return;
            }
            let entry = seen.entry(actor.to_owned()).or_insert_with(|| {
                order += 1;
                (0, order)
            });
            entry.0 += 1;
        };
        let mut owned: BTreeMap<String, (u64, usize)> = BTreeMap::new();
        for r in events {
            match r {
                Record::Deliver { from, to, .. } => {
                    touch(from, &mut owned);
                    touch(to, &mut owned);
                }
                Record::Guard { guardrail, .. } => touch(guardrail, &mut owned),
                other => touch(other.actor(), &mut owned),
            }
        }
        let mut ranked: Vec<(&String, &(u64, usize))> = owned.iter().collect();
        ranked.sort_by(|a, b| {
            must.contains(b.0)
                .cmp(&must.contains(a.0))
                .then(b.1 .0.cmp(&a.1 .0))
                .then(a.0.cmp(b.0))
        });
        let keep = if ranked.len() > LANES_MAX {
            LANES_MAX - 1
        } else {
            ranked.len()
        };
        let mut kept: Vec<(&String, &(u64, usize))> = ranked[..keep].to_vec();
        kept.sort_by(|a, b| {
            actor_kind_rank(a.0)
                .cmp(&actor_kind_rank(b.0))
                .then(a.1 .1.cmp(&b.1 .1))
        });
        let mut names: Vec<String> = kept.iter().map(|(n, _)| (*n).clone()).collect();
        let index = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let other = (ranked.len() > keep).then(|| {
            names.push(format!("other actors ({})", ranked.len() - keep));
            names.len() - 1
        });
        if names.is_empty() {
            names.push("user".to_owned());
        }
        Lanes { names, index, other }
    }

    fn len(&self) -> usize {
        self.names.len()
    }

    fn of(&self, actor: &str) -> usize {
        self.index
            .get(actor)
            .copied()
            .or(self.other)
            .unwrap_or(self.names.len() - 1)
    }
}

fn legend(out: &mut String) {
    let item = |svg: &str, text: &str| {
        format!("<span><svg width=\"18\" height=\"16\" viewBox=\"-9 -8 18 16\">{svg}</svg> {text}</span>")
    };
    out.push_str("<div class=\"legend\">");
    for (svg, text) in [
        (
            "<line class=\"msg\" x1=\"0\" x2=\"0\" y1=\"-7\" y2=\"5\" marker-end=\"url(#arrowhead)\"/>",
            "message",
        ),
        (
            "<line class=\"msg answer\" x1=\"0\" x2=\"0\" y1=\"-7\" y2=\"5\" marker-end=\"url(#arrowhead)\"/>",
            "answer to the user",
        ),
        (
            "<rect class=\"call\" x=\"-8\" y=\"-5\" width=\"16\" height=\"10\"/>",
            "model call",
        ),
        (
            "<rect class=\"call error\" x=\"-8\" y=\"-5\" width=\"16\" height=\"10\"/>",
            "model call answered with an error",
        ),
        (
            "<rect class=\"call tool\" x=\"-8\" y=\"-5\" width=\"16\" height=\"10\"/>",
            "tool call",
        ),
        ("<circle class=\"tick\" r=\"2.5\"/>", "timer / self-message"),
        (
            "<g class=\"fault-marker\"><path d=\"M0,-7L5,0L0,7L-5,0Z\"/></g>",
            "fault injected",
        ),
        (
            "<g class=\"crash-marker\"><path d=\"M-5,-5L5,5M5,-5L-5,5\"/></g>",
            "crash",
        ),
        ("<g class=\"restart-marker\"><circle r=\"5\"/></g>", "restart"),
        (
            "<g class=\"escalate-marker\"><path d=\"M0,-7L7,6L-7,6Z\"/></g>",
            "supervisor gave up",
        ),
        (
            "<g class=\"guard-marker verdict-block\"><rect x=\"-4.5\" y=\"-4.5\" width=\"9\" height=\"9\"/></g>",
            "guardrail verdict",
        ),
        (
            "<g class=\"violation-marker\"><line x1=\"0\" x2=\"0\" y1=\"-8\" y2=\"8\"/></g>",
            "invariant broken",
        ),
    ] {
        out.push_str(&item(svg, text));
    }
    out.push_str("</div>");
}
