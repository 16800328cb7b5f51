//! Self-contained HTML reports: one file with inline CSS, SVG and a little JavaScript, no
//! network. `run` renders a run directory (`trace.jsonl` + `report.json`); `sweep` renders a
//! sweep summary or a comparison of two designs. Output is a pure function of the inputs: the
//! same run directory always gives the same bytes.

pub mod run;
pub mod sweep;

use std::fmt::Write as _;

pub use run::{render_run, render_run_dir, RUN_HTML_BYTES_MAX};
pub use sweep::{render_comparison, render_sweep};

/// Escapes text for HTML content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `chars_max` characters of `text`, with an ellipsis when cut.
pub fn clip(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The cells an impact row ends with: a bar of the conversations a fault changed (the knock-on
/// part lighter, scaled to `widest`) with their count, how their fates moved (`moves`, such as
/// "3 answered → lost", then `how_more`, HTML), the side effects it moved, and its cost.
pub(crate) fn impact_cells(
    (changed, knock_on, widest): (u64, u64, u64),
    (moves, how_more): (&[String], &str),
    effects: &[String],
    cost_pusd: i64,
) -> String {
    let width = |n: u64| n as f64 / widest.max(1) as f64 * 100.0;
    let knock_on = knock_on.min(changed);
    let how = if changed == 0 {
        "<span class=\"chip good\">changed nothing</span>".to_owned()
    } else if moves.is_empty() {
        "same fates, other side effects".to_owned()
    } else {
        esc(&moves.join(", "))
    };
    format!(
        "<td><span class=\"rate\" title=\"{changed} changed, {knock_on} of them knock-on\">\
         <span class=\"fill\" style=\"width:{0}%;background:var(--bad)\"></span>\
         <span class=\"fill\" style=\"left:{0}%;width:{1}%;background:#fca5a5\"></span></span> {changed}{2}</td>\
         <td>{how}{how_more}</td><td>{3}</td><td class=\"n\">{4}{5}</td>",
        num(width(changed - knock_on)),
        num(width(knock_on)),
        if knock_on > 0 {
            format!(" <span class=\"muted\">({knock_on} knock-on)</span>")
        } else {
            String::new()
        },
        if effects.is_empty() {
            "—".to_owned()
        } else {
            format!("<b>{}</b>", esc(&effects.join(", ")))
        },
        if cost_pusd < 0 { "−" } else { "+" },
        esc(&crate::scenario::units::format_usd(cost_pusd.unsigned_abs())),
    )
}

/// A number with a fixed number of decimals (SVG coordinates), trailing zeros kept short.
pub(crate) fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded == rounded.trunc() {
        format!("{}", rounded as i64)
    } else {
        format!("{rounded:.1}")
    }
}

/// Series colours, in order.
pub(crate) const PALETTE: [&str; 9] = [
    "#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9f1239", "#475569",
];

/// The smallest and largest of `values`, `(0, 0)` when empty.
pub(crate) fn range_of<'a>(values: impl IntoIterator<Item = &'a u64>) -> (u64, u64) {
    values
        .into_iter()
        .fold(None, |acc: Option<(u64, u64)>, v| {
            Some(acc.map_or((*v, *v), |(lo, hi)| (lo.min(*v), hi.max(*v))))
        })
        .unwrap_or((0, 0))
}

/// Wraps a body in the page shell: doctype, title, inline style and script.
pub(crate) fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + SCRIPT.len() + 512);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"agentsim {}\">\n<title>{}</title>\n<style>{STYLE}</style>\n</head>\n\
         <body>\n<pre id=\"script-errors\" class=\"script-errors\"></pre>\n{body}\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION"),
        esc(title)
    );
    out
}

/// A histogram of `values` in `bins_max` equal bins, as an inline SVG bar chart.
/// `range` is `(low, high)` of the axis; it must hold every value (two charts that share a range
/// can be compared bar by bar).
pub(crate) fn histogram_svg(
    values: &[u64],
    range: (u64, u64),
    bins_max: usize,
    label: &dyn Fn(u64) -> String,
    color: &str,
) -> String {
    let (width, height, pad_left, pad_bottom) = (460.0, 150.0, 40.0, 34.0);
    let mut out = String::new();
    if values.is_empty() {
        return "<p class=\"muted\">no runs</p>".to_owned();
    }
    let (low, high) = range;
    debug_assert!(values.iter().all(|v| (low..=high).contains(v)));
    let bins = if low == high { 1 } else { bins_max.max(1) };
    let span = (high - low).max(1);
    let mut counts = vec![0u64; bins];
    for v in values {
        let bin = (((v.clamp(&low, &high) - low) as u128 * bins as u128) / (span as u128 + 1)) as usize;
        counts[bin.min(bins - 1)] += 1;
    }
    let count_max = *counts.iter().max().unwrap_or(&1) as f64;
    let plot_w = width - pad_left - 10.0;
    let plot_h = height - pad_bottom - 10.0;
    let bar_w = plot_w / bins as f64;
    let _ = write!(
        out,
        "<svg class=\"histogram\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\" role=\"img\">"
    );
    let _ = write!(
        out,
        "<text x=\"4\" y=\"14\" class=\"axis\">{}</text><text x=\"4\" y=\"{}\" class=\"axis\">0</text>",
        count_max as u64,
        num(10.0 + plot_h)
    );
    for (i, count) in counts.iter().enumerate() {
        let h = *count as f64 / count_max * plot_h;
        let width_all = span as u128 + 1;
        let bin_low = low + (width_all * i as u128).div_ceil(bins as u128) as u64;
        let bin_high = low + ((width_all * (i as u128 + 1)).div_ceil(bins as u128) as u64).saturating_sub(1);
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{color}\"><title>{} – {}: {count} runs</title></rect>",
            num(pad_left + i as f64 * bar_w + 1.0),
            num(10.0 + plot_h - h),
            num((bar_w - 2.0).max(1.0)),
            num(h),
            esc(&label(bin_low)),
            esc(&label(bin_high)),
        );
    }
    let _ = write!(
        out,
        "<line x1=\"{pad_left}\" y1=\"{y}\" x2=\"{x2}\" y2=\"{y}\" class=\"axis-line\"/>\
         <text x=\"{pad_left}\" y=\"{ty}\" class=\"axis\">{}</text>\
         <text x=\"{x2}\" y=\"{ty}\" class=\"axis\" text-anchor=\"end\">{}</text></svg>",
        esc(&label(low)),
        esc(&label(high)),
        y = num(10.0 + plot_h),
        x2 = num(pad_left + plot_w),
        ty = num(10.0 + plot_h + 16.0),
    );
    out
}

const STYLE: &str = r#"
:root{--fg:#1f2937;--muted:#6b7280;--line:#e5e7eb;--bg:#f8fafc;--card:#fff;--bad:#dc2626;--good:#16a34a;--warn:#d97706;--info:#2563eb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
header.top{background:#0f172a;color:#f8fafc;padding:14px 24px}
header.top h1{margin:0;font-size:20px;font-weight:600}
header.top .sub{color:#cbd5e1;font-size:13px;margin-top:2px}
main{padding:12px 24px 40px;max-width:1500px}
section{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;margin:14px 0}
section h2{font-size:16px;margin:0 0 8px}
.muted{color:var(--muted)}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;vertical-align:middle}
.badge.good{background:#dcfce7;color:#166534}.badge.bad{background:#fee2e2;color:#991b1b}.badge.warn{background:#fef3c7;color:#92400e}
.story{font-size:15px;margin:4px 0 10px}
.cards{display:flex;flex-wrap:wrap;gap:8px}
.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:120px;background:#fcfcfd}
.card .k{font-size:11px;color:var(--muted);text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:17px;font-weight:600}
code,.cmd{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.cmd{background:#0f172a;color:#e2e8f0;padding:6px 10px;border-radius:6px;display:inline-block;margin:4px 0;user-select:all}
ul.invariants{list-style:none;padding:0;margin:0}
ul.invariants li{padding:4px 0;border-bottom:1px solid var(--line)}
ul.invariants li:last-child{border-bottom:0}
.pass{color:var(--good);font-weight:700}.fail{color:var(--bad);font-weight:700}
a{color:var(--info)}
table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
th{font-weight:600;color:#374151;background:#f9fafb}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.cascade{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:10px}
.source{border:1px solid var(--line);border-left:4px solid var(--bad);border-radius:6px;padding:8px 10px}
.source.contained{border-left-color:var(--good)}.source.unknown{border-left-color:#94a3b8}
.source h3{font-size:14px;margin:0 0 4px}
.source .flow{margin:2px 0 0 0;padding-left:18px}
.chip{display:inline-block;background:#eef2ff;border-radius:4px;padding:0 6px;margin:1px 2px;font-size:12px}
.chip.bad{background:#fee2e2}.chip.good{background:#dcfce7}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:#374151;margin:4px 0 8px}
.legend svg{vertical-align:middle}
.toolbar{display:flex;flex-wrap:wrap;gap:6px;align-items:center;margin:6px 0}
.toolbar button{font:inherit;font-size:12px;padding:2px 9px;border:1px solid #cbd5e1;background:#fff;border-radius:5px;cursor:pointer}
.toolbar button.on{background:#1e293b;color:#fff;border-color:#1e293b}
.timeline{display:flex;border:1px solid var(--line);border-radius:6px;overflow:hidden}
.lanes-col{flex:none;background:#f9fafb;border-right:1px solid var(--line)}
.plot-col{flex:1;overflow-x:auto}
.page[hidden]{display:none}
.lane-label{font-size:12px;fill:#111827}
.lane-kind{font-size:9.5px;fill:var(--muted);text-transform:uppercase}
.lane-bg{fill:#fff}.lane-bg.alt{fill:#f8fafc}
.axis{font-size:10.5px;fill:var(--muted)}
.axis-line{stroke:#cbd5e1}
.grid{stroke:#eef2f7}
.msg{stroke:#94a3b8;stroke-width:1}
.msg.answer{stroke:var(--good)}.msg.answer.failed{stroke:var(--bad)}
.msg.handoff{stroke:#7c3aed}.msg.failure{stroke:var(--warn)}
.tick{fill:#94a3b8}
.call{fill:#60a5fa;fill-opacity:.35;stroke:#2563eb;stroke-width:.5}
.call.error{fill:#f87171;fill-opacity:.7;stroke:var(--bad)}
.call.tool{fill:#fbbf24;fill-opacity:.5;stroke:#b45309}
.call.open{fill:none;stroke:#b45309;stroke-dasharray:3 2}
.fault-marker path{fill:var(--bad);stroke:#7f1d1d;stroke-width:.8}
.world-marker path{fill:#0e7490;stroke:#164e63;stroke-width:.8}
.world-marker.lost path{fill:none;stroke:#0e7490;stroke-width:1.6}
.crash-marker path{stroke:#7f1d1d;stroke-width:2.2;fill:none}
.restart-marker circle{fill:#fff;stroke:var(--good);stroke-width:2}
.escalate-marker path{fill:var(--warn);stroke:#78350f;stroke-width:.8}
.guard-marker rect{stroke:#111827;stroke-width:.6}
.verdict-allow rect{fill:#86efac}.verdict-block rect,.verdict-halt rect{fill:#ef4444}.verdict-redact rect{fill:#fbbf24}
.verdict-retry rect,.verdict-escalate rect{fill:#f97316}.verdict-error rect{fill:#111827}
.violation-marker line{stroke:var(--bad);stroke-width:1.5;stroke-dasharray:5 3}
.violation-marker text{fill:var(--bad);font-size:11px;font-weight:600}
.flash{animation:flash 1.2s ease-out 2}
@keyframes flash{0%{opacity:1}50%{opacity:.15}100%{opacity:1}}
.overview rect.heat{fill:#1e293b}
.overview rect.window{fill:#2563eb;fill-opacity:.08;stroke:#2563eb;stroke-width:1;cursor:pointer}
.overview rect.window.on{fill-opacity:.22}
.charts{display:flex;flex-wrap:wrap;gap:18px}
.chart h3{font-size:13px;margin:0 0 2px}
.chart polyline{fill:none;stroke-width:1.8}
.histogram .bar{opacity:.85}
.rate{display:inline-block;width:220px;height:12px;background:#f1f5f9;border-radius:3px;position:relative;vertical-align:middle}
.rate .fill{position:absolute;left:0;top:0;bottom:0;border-radius:3px}
.rate .ci{position:absolute;top:-3px;bottom:-3px;border-left:2px solid #111827;border-right:2px solid #111827;border-top:1px solid #111827}
.side{display:grid;grid-template-columns:1fr 1fr;gap:14px}
table.impact,table.harmed{margin:6px 0 10px}
table.impact .rate{width:180px}
table.harmed .chip{white-space:nowrap}
details.reach{margin-top:10px;border:1px solid var(--line);border-radius:6px;padding:6px 10px}
details.reach>summary{cursor:pointer;font-weight:600;color:#374151}
.note{font-size:12px;color:var(--muted)}
.script-errors{display:none;color:var(--bad)}
.script-errors:not(:empty){display:block;margin:0;padding:8px 24px;background:#fee2e2}
#notice{color:var(--warn);font-size:12px;min-height:1em}
"#;

const SCRIPT: &str = r##"
(function(){
  var errors = document.getElementById('script-errors');
  window.addEventListener('error', function(e){ errors.textContent += 'script error: ' + e.message + '\n'; });
  var zoom = 1, originals = new WeakMap();
  function scale(svg, z){
    var base = +svg.getAttribute('data-width');
    svg.setAttribute('width', Math.round(base * z));
    svg.querySelectorAll('[data-x]').forEach(function(el){
      var o = originals.get(el);
      if (!o){ o = {}; el.getAttribute('data-x').split(' ').forEach(function(a){ o[a] = el.getAttribute(a); }); originals.set(el, o); }
      Object.keys(o).forEach(function(a){
        if (a === 'transform'){
          var m = /translate\(([-\d.]+),([-\d.]+)\)/.exec(o[a]);
          if (m) el.setAttribute(a, 'translate(' + (+m[1] * z) + ',' + m[2] + ')');
        } else if (a === 'width'){
          el.setAttribute(a, Math.max(+o[a] * z, +o[a] ? 1 : 0));
        } else { el.setAttribute(a, +o[a] * z); }
      });
    });
  }
  function showPage(index){
    document.querySelectorAll('.page').forEach(function(p){ p.hidden = (p.getAttribute('data-page') !== String(index)); });
    document.querySelectorAll('[data-show-page]').forEach(function(b){ b.classList.toggle('on', b.getAttribute('data-show-page') === String(index)); });
  }
  function setZoom(z){
    zoom = Math.min(64, Math.max(1, z));
    document.querySelectorAll('svg.plot').forEach(function(svg){ scale(svg, zoom); });
    var label = document.getElementById('zoom-level'); if (label) label.textContent = zoom + '×';
  }
  document.addEventListener('click', function(e){
    var t = e.target.closest('[data-show-page],[data-zoom],a[href^="#ev-"],a[href^="#inv-"]');
    if (!t) return;
    if (t.hasAttribute('data-show-page')){ showPage(t.getAttribute('data-show-page')); return; }
    if (t.hasAttribute('data-zoom')){ var d = t.getAttribute('data-zoom'); setZoom(d === 'in' ? zoom * 2 : d === 'out' ? zoom / 2 : 1); return; }
    var id = t.getAttribute('href').slice(1), el = document.getElementById(id), notice = document.getElementById('notice');
    e.preventDefault();
    if (!el){ if (notice) notice.textContent = 'That event is outside the timeline pages kept in this report; trace.jsonl has it.'; return; }
    if (notice) notice.textContent = '';
    var page = el.closest('.page'); if (page) showPage(page.getAttribute('data-page'));
    var col = el.closest('.plot-col');
    el.scrollIntoView({block: 'center', inline: 'center'});
    if (col && el.getBoundingClientRect){ var r = el.getBoundingClientRect(), c = col.getBoundingClientRect(); col.scrollLeft += (r.left - c.left) - c.width / 2; }
    el.classList.remove('flash'); void el.getBoundingClientRect(); el.classList.add('flash');
  });
  var first = document.querySelector('[data-show-page]');
  if (first) showPage(first.getAttribute('data-show-page'));
  document.body.setAttribute('data-ready', '1');
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_for_content_and_attributes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn clipping_counts_characters_not_bytes() {
        assert_eq!(clip("ünïcødé", 4), "ünï…");
        assert_eq!(clip("short", 10), "short");
    }

    #[test]
    fn a_histogram_puts_every_value_in_a_bin() {
        let svg = histogram_svg(&[1, 2, 3, 10, 10], (1, 10), 3, &|v| v.to_string(), "#000");
        let total: u64 = svg
            .split(": ")
            .skip(1)
            .filter_map(|s| s.split(' ').next()?.parse::<u64>().ok())
            .sum();
        assert_eq!(total, 5, "{svg}");
    }
}
