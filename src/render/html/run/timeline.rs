//! The swim-lane timeline: paged SVG plots of the run's records (arrows, call bars, markers),
//! the whole-run overview, and the lanes they are drawn on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::{
    array, clip, dur, esc, field, num, text_of, View, AXIS_HEIGHT, LABEL_WIDTH, LANES_MAX, LANE_HEIGHT,
    OVERVIEW_BUCKETS, PAGES_MAX, PAGE_RECORDS_MAX, PLOT_PAD, PLOT_WIDTH, TITLE_CHARS_MAX,
};
use crate::render::{actor_kind_rank, guardrail_actor};
use crate::trace::Record;

impl<'a> View<'a> {
    pub(super) fn timeline(&self, out: &mut String) {
        let pages = self.pages();
        let total_pages = self.records.len().div_ceil(PAGE_RECORDS_MAX).max(1);
        let height = AXIS_HEIGHT + self.lanes.len() as f64 * LANE_HEIGHT + 6.0;
        out.push_str("<section id=\"timeline\"><h2>Timeline</h2>");
        let _ = write!(
            out,
            "<p class=\"note\">One lane per actor; time runs left to right in virtual time. Arrows are messages \
             (sender → receiver), bars are model calls (on the model's lane, as long as their latency) and tool \
             calls. Hover anything for details. {}</p>",
            if pages.len() < total_pages {
                format!(
                    "This run's trace has {} records (its {} events, the deliveries, and the faults, failures, restarts \
                     and guardrail checks): the overview shows all of them, the pages below keep {} of {} pages of \
                     {PAGE_RECORDS_MAX} records (the first, those with violations, faults and failures, then a sample spread over the run).",
                    self.records.len(),
                    self.uint("events"),
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
                let last = ((p + 1) * PAGE_RECORDS_MAX).min(self.records.len());
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
    pub(super) fn pages(&self) -> Vec<usize> {
        let total = self.records.len().div_ceil(PAGE_RECORDS_MAX).max(1);
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
            for (i, r) in self.records.iter().enumerate() {
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
    pub(super) fn position_of(&self, seq: u64, t_us: u64) -> usize {
        self.records
            .iter()
            .position(|r| r.kind() == "deliver" && r.seq() == Some(seq))
            .or_else(|| self.records.iter().position(|r| r.seq() == Some(seq)))
            .or_else(|| self.records.iter().position(|r| r.t_us() >= t_us))
            .unwrap_or(self.records.len().saturating_sub(1))
    }

    pub(super) fn page_span(&self, p: usize) -> (u64, u64) {
        let records = self.page_records(p);
        let t0 = records.first().map_or(0, |r| r.t_us());
        let t1 = records.iter().map(|r| r.t_us()).max().unwrap_or(t0);
        (t0, t1)
    }

    pub(super) fn page_records(&self, p: usize) -> &[&'a Record] {
        let start = (p * PAGE_RECORDS_MAX).min(self.records.len());
        let end = ((p + 1) * PAGE_RECORDS_MAX).min(self.records.len());
        &self.records[start..end]
    }

    pub(super) fn page_svg(&self, p: usize, height: f64, used_ids: &mut BTreeSet<u64>, out: &mut String) {
        let (t0, t1) = self.page_span(p);
        let plot = Plot { t0, t1, height };
        self.page_frame(p, &plot, out);
        let mut layers = Layers::default();
        for r in self.page_records(p) {
            self.draw_record(r, &plot, &mut layers, used_ids);
        }
        for ((lane, _, _), start) in &layers.open_tool_calls {
            let _ = write!(
                layers.bars,
                "<rect class=\"call tool open\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>tool call still open at the end of this page</title></rect>",
                num(plot.x(*start)),
                num(plot.y(*lane) - 6.0),
                num((plot.x(t1) - plot.x(*start)).max(1.0)),
            );
        }
        self.page_violations(p, &plot, &mut layers.marks);
        out.push_str(&layers.bars);
        out.push_str(&layers.arrows);
        out.push_str(&layers.marks);
        out.push_str("</svg></div>");
    }

    /// The page's `<svg>` opening, its lane backgrounds and its time axis.
    fn page_frame(&self, p: usize, plot: &Plot, out: &mut String) {
        let (t0, t1, height) = (plot.t0, plot.t1, plot.height);
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
            let tx = plot.x(t);
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
    }

    /// One record on the page: an arrow or tick for a delivery (and a call bar when it ends a
    /// model or tool call), a marker for a fault, crash, restart, escalation or verdict.
    fn draw_record(&self, r: &Record, plot: &Plot, layers: &mut Layers, used_ids: &mut BTreeSet<u64>) {
        let t = r.t_us();
        let title = esc(&clip(&describe(r), TITLE_CHARS_MAX));
        let mut id_for = |seq: Option<u64>| match seq {
            Some(seq) if used_ids.insert(seq) => format!(" id=\"ev-{seq}\""),
            _ => String::new(),
        };
        let (x, y) = (plot.x(t), plot.y(self.lanes.of(r.actor())));
        let marks = &mut layers.marks;
        match r {
            Record::Deliver { from, to, msg, .. } => {
                let id = id_for(r.seq());
                self.draw_delivery(r, (from, to, msg), plot, layers, &id, &title);
            }
            Record::Fault { .. } => marker(
                marks,
                "fault-marker",
                &id_for(r.seq()),
                x,
                y,
                "<path d=\"M0,-8L6,0L0,8L-6,0Z\"/>",
                &title,
            ),
            Record::Fail { .. } => marker(
                marks,
                "crash-marker",
                &id_for(r.seq()),
                x,
                y,
                "<path d=\"M-5,-5L5,5M5,-5L-5,5\"/>",
                &title,
            ),
            Record::Restart { .. } => marker(marks, "restart-marker", "", x, y, "<circle r=\"5\"/>", &title),
            Record::World { lost, .. } => marker(
                marks,
                if *lost { "world-marker lost" } else { "world-marker" },
                "",
                x,
                y,
                "<path d=\"M-5,-5H5V5H-5Z\"/>",
                &title,
            ),
            Record::Escalate { .. } => marker(
                marks,
                "escalate-marker",
                "",
                x,
                y,
                "<path d=\"M0,-8L7,6L-7,6Z\"/>",
                &title,
            ),
            Record::Guard { verdict, guardrail, .. } => {
                let class = format!("guard-marker verdict-{}", css_word(verdict));
                marker(
                    marks,
                    &class,
                    &id_for(r.seq()),
                    x,
                    plot.y(self.lanes.of(&guardrail_actor(guardrail))),
                    "<rect x=\"-4.5\" y=\"-4.5\" width=\"9\" height=\"9\"/>",
                    &title,
                )
            }
            Record::Header { .. } | Record::End { .. } => {
                let _ = write!(
                    layers.arrows,
                    "<circle class=\"tick\" cx=\"{}\" cy=\"{}\" r=\"2.2\" data-x=\"cx\"><title>{title}</title></circle>",
                    num(x),
                    num(y)
                );
            }
        }
    }

    /// A delivery: the call bar it closes (a model reply, a tool result), and its arrow — or a
    /// tick for a message to itself (a timer).
    fn draw_delivery(
        &self,
        r: &Record,
        (from, to, msg): (&str, &str, &str),
        plot: &Plot,
        layers: &mut Layers,
        id: &str,
        title: &str,
    ) {
        let t = r.t_us();
        let (from, to) = (self.lanes.of(from), self.lanes.of(to));
        let verb = msg.split(' ').next().unwrap_or("");
        let call_key = |lane: usize| {
            (
                lane,
                r.msg_field("conv").unwrap_or("").to_owned(),
                r.msg_field("call").unwrap_or("").to_owned(),
            )
        };
        match verb {
            "llm_reply" => {
                let latency = r
                    .msg_field("latency_us")
                    .and_then(|l| l.parse::<u64>().ok())
                    .unwrap_or(0);
                let class = if r.msg_field("error").is_some() {
                    "call error"
                } else {
                    "call"
                };
                let x0 = plot.x(t.saturating_sub(latency));
                let _ = write!(
                    layers.bars,
                    "<rect class=\"{class}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>model call · {}</title></rect>",
                    num(x0),
                    num(plot.y(from) - 6.0),
                    num((plot.x(t) - x0).max(1.0)),
                    title
                );
            }
            "invoke" => {
                layers.open_tool_calls.insert(call_key(to), t);
            }
            "tool_result" => {
                if let Some(start) = layers.open_tool_calls.remove(&call_key(from)) {
                    let _ = write!(
                        layers.bars,
                        "<rect class=\"call tool\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"12\" data-x=\"x width\"><title>tool call · {}</title></rect>",
                        num(plot.x(start)),
                        num(plot.y(from) - 6.0),
                        num((plot.x(t) - plot.x(start)).max(1.0)),
                        title
                    );
                }
            }
            _ => {}
        }
        if from == to {
            let _ = write!(
                layers.arrows,
                "<circle class=\"tick\"{id} cx=\"{}\" cy=\"{}\" r=\"2.2\" data-x=\"cx\"><title>{title}</title></circle>",
                num(plot.x(t)),
                num(plot.y(to))
            );
            return;
        }
        let class = match verb {
            "answer" if r.msg_field("status") == Some("answered") => "msg answer",
            "answer" => "msg answer failed",
            "handoff" | "delegate" | "delegate_result" => "msg handoff",
            "child_failed" => "msg failure",
            _ => "msg",
        };
        let (y1, y2) = (plot.y(from), plot.y(to));
        let y2 = if y2 > y1 { y2 - 5.0 } else { y2 + 5.0 };
        let _ = write!(
            layers.arrows,
            "<line class=\"{class}\"{id} x1=\"{0}\" x2=\"{0}\" y1=\"{1}\" y2=\"{2}\" marker-end=\"url(#arrowhead)\" data-x=\"x1 x2\"><title>{title}</title></line>",
            num(plot.x(t)),
            num(y1),
            num(y2)
        );
    }

    /// Invariant violations, marked on the page that holds them. Each label takes the first row
    /// where it clears the labels already placed, left to right, so that violations close in
    /// time do not print over each other.
    fn page_violations(&self, p: usize, plot: &Plot, marks: &mut String) {
        let range = p * PAGE_RECORDS_MAX..((p + 1) * PAGE_RECORDS_MAX).min(self.records.len());
        let mut shown: Vec<(f64, usize, &Value, &Value)> = Vec::new();
        for (i, inv) in array(self.report, "invariants").iter().enumerate() {
            let v = field(inv, "first_violation");
            let (Some(seq), Some(t)) = (
                v.get("seq").and_then(Value::as_u64),
                v.get("t_us").and_then(Value::as_u64),
            ) else {
                continue;
            };
            if range.contains(&self.position_of(seq, t)) {
                shown.push((plot.x(t), i, inv, v));
            }
        }
        shown.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        // Per row, the rightmost x its labels reach.
        let mut row_ends: Vec<f64> = Vec::new();
        for (vx, i, inv, v) in shown {
            let name = text_of(inv, "name");
            let width = (name.chars().count() + 2) as f64 * VIOLATION_LABEL_CHAR_WIDTH;
            // Labels near the right edge run leftwards, so they stay inside the plot.
            let (label_x, anchor, left, right) = if vx > PLOT_WIDTH * 0.6 {
                (vx - 4.0, "end", vx - 4.0 - width, vx)
            } else {
                (vx + 4.0, "start", vx, vx + 4.0 + width)
            };
            let row = row_ends.iter().position(|end| *end < left).unwrap_or_else(|| {
                if row_ends.len() < VIOLATION_LABEL_ROWS {
                    row_ends.push(f64::NEG_INFINITY);
                    row_ends.len() - 1
                } else {
                    // Every row is taken here: the one whose labels end first.
                    (0..row_ends.len())
                        .min_by(|a, b| row_ends[*a].total_cmp(&row_ends[*b]))
                        .unwrap_or(0)
                }
            });
            row_ends[row] = row_ends[row].max(right);
            let _ = write!(
                marks,
                "<g class=\"violation-marker\" id=\"inv-{i}\"><line x1=\"{0}\" x2=\"{0}\" y1=\"{AXIS_HEIGHT}\" y2=\"{1}\" data-x=\"x1 x2\"/>\
                 <text x=\"{2}\" y=\"{3}\" text-anchor=\"{anchor}\" data-x=\"x\">✗ {4}</text><title>invariant broken: {4} — {5}</title></g>",
                num(vx),
                num(plot.height),
                num(label_x),
                num(AXIS_HEIGHT + 10.0 + row as f64 * 11.0),
                esc(&name),
                esc(&text_of(v, "message")),
            );
        }
    }

    /// The whole run at a glance: per lane, how busy each slice of time was; faults in red; the
    /// time span of each kept page framed (click to open it).
    pub(super) fn overview(&self, out: &mut String, pages: &[usize]) {
        let row = 11.0;
        let width = PLOT_WIDTH + LABEL_WIDTH;
        let height = self.lanes.len() as f64 * row + 4.0;
        let end = self.end_t_us.max(1);
        let bucket_of = |t: u64| ((t as u128 * OVERVIEW_BUCKETS as u128) / (end as u128 + 1)) as usize;
        let mut counts = vec![vec![0u32; OVERVIEW_BUCKETS]; self.lanes.len()];
        for r in &self.records {
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
        let faults = self.records.iter().filter(|r| r.kind() == "fault").count();
        for r in self
            .records
            .iter()
            .filter(|r| r.kind() == "fault")
            .take(OVERVIEW_FAULTS_MAX)
        {
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
        out.push_str("</svg>");
        if faults > OVERVIEW_FAULTS_MAX {
            let _ = write!(
                out,
                "<span class=\"note more\">… {} more faults not marked on the overview (the first {OVERVIEW_FAULTS_MAX} are).</span>",
                faults - OVERVIEW_FAULTS_MAX
            );
        }
        out.push_str("</div>");
    }
}

/// Fault marks drawn on the overview, at most.
const OVERVIEW_FAULTS_MAX: usize = 2_000;
/// Rows a page's violation labels may take below the axis before they share one.
const VIOLATION_LABEL_ROWS: usize = 4;
/// The width of one character of a violation label (11 px, bold), a little generous.
const VIOLATION_LABEL_CHAR_WIDTH: f64 = 7.0;

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
pub(super) fn describe(r: &Record) -> String {
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
        Record::World {
            actor,
            conv,
            op,
            table,
            key,
            row,
            lost,
            ..
        } => format!(
            "{at} · {actor} {op} {table} {key} (conversation {conv}){}{}",
            row.as_ref().map(|r| format!(": {r}")).unwrap_or_default(),
            if *lost {
                " — LOST: the store did not keep it"
            } else {
                ""
            }
        ),
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
pub(super) struct Lanes {
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
    pub(super) fn new(events: &[&Record], must: &BTreeSet<String>) -> Lanes {
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
                Record::Guard { guardrail, .. } => touch(&guardrail_actor(guardrail), &mut owned),
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

    pub(super) fn len(&self) -> usize {
        self.names.len()
    }

    pub(super) fn of(&self, actor: &str) -> usize {
        self.index
            .get(actor)
            .copied()
            .or(self.other)
            .unwrap_or(self.names.len() - 1)
    }
}

pub(super) fn legend(out: &mut String) {
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

/// A page's plot: its time span and height; where a time and a lane are drawn.
struct Plot {
    t0: u64,
    t1: u64,
    height: f64,
}

impl Plot {
    fn x(&self, t: u64) -> f64 {
        let span = (self.t1 - self.t0).max(1) as f64;
        PLOT_PAD + (t.clamp(self.t0, self.t1.max(self.t0 + 1)) - self.t0) as f64 / span * PLOT_WIDTH
    }

    fn y(&self, lane: usize) -> f64 {
        AXIS_HEIGHT + lane as f64 * LANE_HEIGHT + LANE_HEIGHT / 2.0
    }
}

/// What a page draws, in drawing order: call bars under arrows under markers; and the tool calls
/// still open (lane, conversation, call → start time).
#[derive(Default)]
struct Layers {
    bars: String,
    arrows: String,
    marks: String,
    open_tool_calls: BTreeMap<(usize, String, String), u64>,
}
