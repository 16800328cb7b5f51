//! The HTML report of a sweep (pass rate per invariant with its interval, histograms of
//! makespan and cost, fault coverage, failing seeds with replay commands and links to their run
//! reports) and of a comparison of two designs side by side.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{esc, histogram_svg, page, range_of, PALETTE};
use crate::scenario::units::format_duration_us;
use crate::scenario::units::format_usd;
use crate::sweep::compare::Comparison;
use crate::sweep::{SeedResult, SweepSummary};

/// A histogram to draw: title, values, their percentiles, a shared axis range, the value label.
type Chart<'a> = (
    &'a str,
    Vec<u64>,
    &'a crate::sweep::Spread,
    Option<(u64, u64)>,
    &'a dyn Fn(u64) -> String,
);

/// Bins of each histogram.
const BINS: usize = 24;

/// Renders a sweep. `run_reports` maps failing seeds to the relative path of their run report.
pub fn render_sweep(summary: &SweepSummary, results: &[SeedResult], run_reports: &BTreeMap<u64, String>) -> String {
    let mut body = String::new();
    let failing = summary.runs - summary.passed_runs;
    let _ = writeln!(
        body,
        "<header class=\"top\"><h1>{} · sweep of seeds {} <span class=\"badge {}\" id=\"outcome\">{} of {} runs passed</span></h1>\
         <div class=\"sub\">agentsim sweep report · {} runs · a run passes when it completes and every invariant holds</div></header>\n<main>",
        esc(&summary.scenario),
        esc(&summary.seeds),
        if failing == 0 { "good" } else { "bad" },
        summary.passed_runs,
        summary.runs,
        summary.runs,
    );
    let outcomes: Vec<String> = summary
        .outcomes
        .iter()
        .map(|(k, v)| {
            format!(
                "<span class=\"chip{}\">{} {v}</span>",
                if k == "completed" { " good" } else { " bad" },
                esc(k)
            )
        })
        .collect();
    let _ = write!(
        body,
        "<section id=\"summary\"><h2>Summary</h2><p class=\"story\">{} of {} seeds passed; {failing} failed. Outcomes: {}</p>",
        summary.passed_runs,
        summary.runs,
        outcomes.join(" ")
    );
    if summary.digests_checked > 0 {
        let _ = write!(
            body,
            "<p>Determinism: {} seeds rerun in fresh processes gave the same digests.</p>",
            summary.digests_checked
        );
    }
    body.push_str("</section>\n");
    invariants_section(&mut body, summary);
    fates_section(&mut body, summary);
    impact_section(&mut body, summary);
    body.push_str("<section id=\"distributions\"><h2>Distributions over the seeds</h2><div class=\"charts\">");
    distributions(&mut body, summary, results, None, PALETTE[0]);
    body.push_str("</div></section>\n");
    pass_hat_k(&mut body, summary);
    goals(&mut body, summary);
    coverage(&mut body, summary);
    failing_seeds(&mut body, summary, run_reports);
    let title = format!("agentsim sweep · {} · seeds {}", summary.scenario, summary.seeds);
    body.push_str("</main>\n");
    page(&title, &body)
}

/// Renders a comparison of two designs run under the same seeds.
pub fn render_comparison(comparison: &Comparison, a_results: &[SeedResult], b_results: &[SeedResult]) -> String {
    let (a, b) = (&comparison.a, &comparison.b);
    let mut body = String::new();
    let _ = writeln!(
        body,
        "<header class=\"top\"><h1>A {} vs B {}</h1><div class=\"sub\">agentsim comparison · seeds {} · {} runs each · \
         the same seeds and the same chaos for both designs</div></header>\n<main>",
        esc(&a.scenario),
        esc(&b.scenario),
        esc(&a.seeds),
        a.runs
    );
    body.push_str(
        "<section id=\"invariants\"><h2>Invariants, side by side</h2><table><tr><th>invariant</th><th>A</th><th>B</th>\
         <th class=\"n\">B − A</th><th>verdict</th></tr>",
    );
    for d in &comparison.invariants {
        let cell = |s: &SweepSummary| {
            s.invariants
                .iter()
                .find(|i| i.name == d.name)
                .map(|i| rate_bar(i.pass_rate, i.ci_low, i.ci_high))
                .unwrap_or_default()
        };
        let _ = write!(
            body,
            "<tr class=\"invariant\"><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{:+.1} pts</td><td>{}</td></tr>",
            esc(&d.name),
            cell(a),
            cell(b),
            d.difference_points,
            if d.significant {
                format!("<b>significant</b> (p = {:.3})", d.p_value)
            } else {
                format!("not significant (p = {:.2})", d.p_value)
            }
        );
    }
    let _ = writeln!(
        body,
        "<tr><td>runs passed</td><td>{}/{}</td><td>{}/{}</td><td></td><td></td></tr></table>\
         <p class=\"note\">Pass rates with their Wilson 95% intervals (the black bracket); a difference is called \
         significant when a two-proportion z-test gives p &lt; 0.05.</p></section>",
        a.passed_runs, a.runs, b.passed_runs, b.runs
    );
    let both: Vec<&SeedResult> = a_results.iter().chain(b_results).collect();
    let ranges = Ranges {
        makespan: range_of(both.iter().map(|r| &r.virtual_time_us)),
        cost: range_of(both.iter().map(|r| &r.cost_pusd)),
        llm_calls: range_of(both.iter().map(|r| &r.llm_calls)),
        tokens: range_of(both.iter().map(|r| &r.tokens)),
    };
    body.push_str("<section id=\"distributions\"><h2>Distributions (same axes for A and B)</h2><div class=\"side\">");
    for (name, summary, results, color) in [("A", a, a_results, PALETTE[0]), ("B", b, b_results, PALETTE[1])] {
        let _ = write!(
            body,
            "<div><h3>{name}: {}</h3><div class=\"charts\">",
            esc(&summary.scenario)
        );
        distributions(&mut body, summary, results, Some(&ranges), color);
        body.push_str("</div></div>");
    }
    body.push_str("</div></section>\n<div class=\"side\">");
    for (name, summary) in [("A", a), ("B", b)] {
        let _ = write!(body, "<div><h2>{name}: {}</h2>", esc(&summary.scenario));
        coverage(&mut body, summary);
        failing_seeds(&mut body, summary, &BTreeMap::new());
        body.push_str("</div>");
    }
    body.push_str("</div>\n</main>\n");
    page(
        &format!(
            "agentsim compare · {} vs {} · seeds {}",
            a.scenario, b.scenario, a.seeds
        ),
        &body,
    )
}

struct Ranges {
    makespan: (u64, u64),
    cost: (u64, u64),
    llm_calls: (u64, u64),
    tokens: (u64, u64),
}

/// A pass rate's bar: green when it always held, amber above 90 %, red below.
fn rate_bar(rate: f64, low: f64, high: f64) -> String {
    let color = if rate >= 1.0 {
        "#16a34a"
    } else if rate >= 0.9 {
        "#d97706"
    } else {
        "#dc2626"
    };
    share_bar(rate, low, high, color)
}

/// Green for a conversation that ended well, red for harm (no answer, and no guardrail chose
/// to stop it), amber for the rest (stopped on purpose, or left by its user).
fn fate_color(fate: &str) -> &'static str {
    match fate {
        "answered" | "resolved" => "#16a34a",
        "failed" | "out_of_turns" | "lost" | "orphaned" | "cut" => "#dc2626",
        _ => "#d97706",
    }
}

/// A share's bar with its Wilson interval, in `color`.
fn share_bar(rate: f64, low: f64, high: f64, color: &str) -> String {
    format!(
        "<span class=\"rate\" title=\"95% Wilson interval {:.2}% – {:.2}%\"><span class=\"fill\" style=\"width:{:.1}%;background:{color}\"></span>\
         <span class=\"ci\" style=\"left:{:.1}%;width:{:.1}%\"></span></span> <b>{:.2}%</b> <span class=\"muted\">[{:.2}%, {:.2}%]</span>",
        low * 100.0,
        high * 100.0,
        rate * 100.0,
        low * 100.0,
        ((high - low) * 100.0).max(0.4),
        rate * 100.0,
        low * 100.0,
        high * 100.0
    )
}

fn invariants_section(body: &mut String, summary: &SweepSummary) {
    body.push_str("<section id=\"invariants\"><h2>Invariants: pass rate over the seeds</h2>");
    if summary.invariants.is_empty() {
        body.push_str("<p class=\"muted\">The scenario declares no invariant.</p></section>\n");
        return;
    }
    body.push_str(
        "<table id=\"invariant-list\"><tr><th>invariant</th><th>pass rate (95% Wilson interval)</th><th class=\"n\">runs</th><th>seeds that broke it</th></tr>",
    );
    for i in &summary.invariants {
        let mut seeds: Vec<String> = i.failing_seeds.iter().map(|s| format!("<code>{s}</code>")).collect();
        let left_out = i.failing_seeds_total.saturating_sub(i.failing_seeds.len() as u64);
        if left_out > 0 {
            seeds.push(format!("<span class=\"muted\">… {left_out} more</span>"));
        }
        let _ = write!(
            body,
            "<tr class=\"invariant\"><td>{}</td><td>{}</td><td class=\"n\">{}/{}</td><td>{}</td></tr>",
            esc(&i.name),
            rate_bar(i.pass_rate, i.ci_low, i.ci_high),
            i.passed,
            i.runs,
            if seeds.is_empty() {
                "–".to_owned()
            } else {
                seeds.join(" ")
            }
        );
    }
    body.push_str("</table></section>\n");
}

/// How the sweep's conversations ended: each fate's share of all of them, with its interval.
fn fates_section(body: &mut String, summary: &SweepSummary) {
    if summary.fates.is_empty() {
        return;
    }
    let _ = write!(
        body,
        "<section id=\"fates\"><h2>Fates of the {} conversations</h2><table id=\"fate-list\">\
         <tr><th>fate</th><th>share of conversations (95% Wilson interval)</th><th class=\"n\">conversations</th></tr>",
        summary.conversations
    );
    for f in &summary.fates {
        let _ = write!(
            body,
            "<tr class=\"fate\"><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
            esc(&f.fate.replace('_', " ")),
            // A fate's share is no pass rate: the ending itself is good or bad, whatever its size.
            share_bar(f.share, f.ci_low, f.ci_high, fate_color(&f.fate)),
            f.conversations
        );
    }
    body.push_str("</table></section>\n");
}

/// With `--impact`: per fault name, in how many runs it fired and in how many leaving it out
/// changed an ending, and the sum of what it changed there (the knock-on part of a bar lighter).
fn impact_section(body: &mut String, summary: &SweepSummary) {
    if summary.impact.is_empty() {
        return;
    }
    let widest = summary
        .impact
        .iter()
        .map(|f| f.deltas.conversations_changed)
        .max()
        .unwrap_or(0)
        .max(1);
    body.push_str(
        "<section id=\"impact\"><h2>What each fault changed</h2><p class=\"note\">From a rerun of each seed \
         without each fault that fired in it (every other draw the same), summed over the seeds where it fired: \
         the conversations whose ending — fate or side effects — it changed; the lighter part of a bar changed \
         without being hit, through an agent, limit or queue they share.</p><table class=\"impact\" id=\"impact-list\">\
         <tr><th>fault</th><th class=\"n\">runs changed / fired</th><th>conversations changed</th><th>how</th>\
         <th>side effects</th><th class=\"n\">cost</th></tr>",
    );
    for f in &summary.impact {
        let d = &f.deltas;
        let changed = d.conversations_changed;
        let moves: Vec<String> = d.transitions.iter().map(|(t, n)| format!("{n} {t}")).collect();
        let effects: Vec<String> = d
            .effects
            .iter()
            .map(|(name, n)| match d.amounts.get(name) {
                Some(amount) => format!(
                    "{name} {n:+} ({}{})",
                    if *amount > 0 { "+" } else { "" },
                    crate::scenario::expr::format_dec(*amount)
                ),
                None => format!("{name} {n:+}"),
            })
            .collect();
        let _ = write!(
            body,
            "<tr class=\"fault-impact\"><td>⚡ <b>{}</b> <span class=\"muted\">({}, {} firing(s))</span></td>\
             <td class=\"n\">{}/{}</td>{}</tr>",
            esc(&f.fault),
            esc(&f.kind),
            f.firings,
            f.runs_changed,
            f.runs_fired,
            super::impact_cells((changed, d.knock_on, widest), (&moves, ""), &effects, d.cost_pusd),
        );
    }
    body.push_str("</table></section>\n");
}

fn distributions(
    body: &mut String,
    summary: &SweepSummary,
    results: &[SeedResult],
    ranges: Option<&Ranges>,
    color: &str,
) {
    let pick = |f: fn(&SeedResult) -> u64| results.iter().map(f).collect::<Vec<u64>>();
    let charts: [Chart; 4] = [
        (
            "makespan (virtual)",
            pick(|r| r.virtual_time_us),
            &summary.makespan_us,
            ranges.map(|r| r.makespan),
            &format_duration_us,
        ),
        (
            "cost per run",
            pick(|r| r.cost_pusd),
            &summary.cost_pusd,
            ranges.map(|r| r.cost),
            &format_usd,
        ),
        (
            "model calls per run",
            pick(|r| r.llm_calls),
            &summary.llm_calls,
            ranges.map(|r| r.llm_calls),
            &|v: u64| v.to_string(),
        ),
        (
            "tokens per run",
            pick(|r| r.tokens),
            &summary.tokens,
            ranges.map(|r| r.tokens),
            &|v: u64| v.to_string(),
        ),
    ];
    for (title, values, spread, range, label) in charts {
        let range = range.unwrap_or_else(|| range_of(&values));
        let _ = write!(
            body,
            "<div class=\"chart histogram-chart\"><h3>{}</h3>{}<div class=\"note\">p50 {} · p95 {} · p99 {} · max {}</div></div>",
            esc(title),
            histogram_svg(&values, range, BINS, label, color),
            esc(&label(spread.p50)),
            esc(&label(spread.p95)),
            esc(&label(spread.p99)),
            esc(&label(spread.max)),
        );
    }
}

fn pass_hat_k(body: &mut String, summary: &SweepSummary) {
    if let Some(note) = &summary.pass_hat_k_note {
        let _ = writeln!(
            body,
            "<section id=\"pass-hat-k\"><h2>pass^k</h2><p class=\"note\">{}</p></section>",
            esc(note)
        );
        return;
    }
    if summary.pass_hat_k.is_empty() {
        return;
    }
    body.push_str(
        "<section id=\"pass-hat-k\"><h2>pass^k</h2><p class=\"note\">Each conversation is a task and each seed a trial: \
         the share of tasks answered in all k of k trials (as τ-bench reports it). A design that answers reliably keeps \
         this flat as k grows.</p><table><tr><th>k</th>",
    );
    for p in &summary.pass_hat_k {
        let _ = write!(body, "<th class=\"n\">{}</th>", p.k);
    }
    body.push_str("</tr><tr><td>pass^k</td>");
    for p in &summary.pass_hat_k {
        let _ = write!(body, "<td class=\"n\">{:.3}</td>", p.value);
    }
    body.push_str("</tr></table></section>\n");
}

/// Each goal's task: its trials over the sweep, how many ended in the expected state, pass^k.
fn goals(body: &mut String, summary: &SweepSummary) {
    if summary.goals.is_empty() {
        return;
    }
    body.push_str(
        "<section id=\"goals\"><h2>Goals: did each task end in the state the customer wanted?</h2>\
         <p class=\"note\">Every conversation a goal checked is a trial of its task, in every seed; pass^k is the chance that \
         k trials drawn from them all ended in the expected state.</p>\
         <table><tr><th>goal</th><th>task</th><th class=\"n\">trials</th><th class=\"n\">expected end state</th><th>pass^k</th></tr>",
    );
    for goal in &summary.goals {
        let points: Vec<String> = goal
            .pass_hat_k
            .iter()
            .map(|p| format!("k={} {:.3}", p.k, p.value))
            .collect();
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&goal.name),
            esc(goal.task.as_deref().unwrap_or("every conversation")),
            goal.trials,
            goal.successes,
            esc(&points.join(" · "))
        );
    }
    body.push_str("</table></section>\n");
}

fn coverage(body: &mut String, summary: &SweepSummary) {
    body.push_str("<section id=\"coverage\"><h2>Fault coverage</h2>");
    if summary.fault_coverage.is_empty() && summary.faults_never_fired.is_empty() {
        body.push_str("<p class=\"muted\">The scenario declares no fault.</p></section>\n");
        return;
    }
    body.push_str("<table><tr><th>fault kind</th><th>runs in which it fired</th></tr>");
    for c in &summary.fault_coverage {
        let share = if summary.runs == 0 {
            0.0
        } else {
            c.runs as f64 / summary.runs as f64
        };
        let _ = write!(
            body,
            "<tr class=\"fault-kind\"><td><code>{}</code></td><td><span class=\"rate\"><span class=\"fill\" style=\"width:{:.1}%;background:#dc2626\"></span></span> {} of {}</td></tr>",
            esc(&c.kind),
            share * 100.0,
            c.runs,
            summary.runs
        );
    }
    for kind in &summary.faults_never_fired {
        let _ = write!(
            body,
            "<tr class=\"fault-kind never\"><td><code>{}</code></td><td><span class=\"chip bad\">never fired</span> — enabled but never triggered: check its trigger</td></tr>",
            esc(kind)
        );
    }
    body.push_str("</table></section>\n");
}

fn failing_seeds(body: &mut String, summary: &SweepSummary, run_reports: &BTreeMap<u64, String>) {
    body.push_str("<section id=\"failing-seeds\"><h2>Failing seeds</h2>");
    if summary.failing_seeds.is_empty() {
        body.push_str("<p class=\"muted\">Every run passed.</p></section>\n");
        return;
    }
    let failing = summary.runs - summary.passed_runs;
    let _ = write!(
        body,
        "<p class=\"note\">{failing} failing; the first {} below. Each replay command reruns that seed exactly.</p>\
         <table><tr><th class=\"n\">seed</th><th>outcome</th><th>broken invariants</th><th>replay</th><th>run report</th></tr>",
        summary.failing_seeds.len()
    );
    for f in &summary.failing_seeds {
        let link = match run_reports.get(&f.seed) {
            Some(path) => format!("<a class=\"run-link\" href=\"{}\">report</a>", esc(path)),
            None => "<span class=\"muted\">–</span>".to_owned(),
        };
        let _ = write!(
            body,
            "<tr class=\"failing-seed\"><td class=\"n\">{}</td><td>{}</td><td>{}</td><td><span class=\"cmd\">{}</span></td><td>{link}</td></tr>",
            f.seed,
            esc(f.outcome.name()),
            esc(&f.broken.join(", ")),
            esc(&f.replay)
        );
    }
    body.push_str("</table>");
    let left_out = failing.saturating_sub(summary.failing_seeds.len() as u64);
    if left_out > 0 {
        let _ = write!(
            body,
            "<p class=\"note\">… {left_out} more failing seeds not listed (`failing_seeds_total` in summary.json counts them all).</p>"
        );
    }
    body.push_str("</section>\n");
}
