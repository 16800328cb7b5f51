//! Cost and tokens over time, per agent, from the model replies in the trace.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{dur, esc, num, Series, Spend, View, CHART_POINTS_MAX, PALETTE, SERIES_MAX};
use crate::scenario::units::format_usd;
use crate::trace::Record;

impl<'a> View<'a> {
    pub(super) fn charts(&self, out: &mut String) {
        // Per agent, from each model reply: (time, cost, tokens).
        let mut per_agent: BTreeMap<String, Vec<Spend>> = BTreeMap::new();
        for r in &self.records {
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

    pub(super) fn chart(
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
}
