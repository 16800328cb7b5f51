//! report.html for a proxy run: what the app did, drawn from report.json alone.

use std::fmt::Write as _;

use serde_json::Value;

use crate::render::html::{esc, page};

fn us_text(us: u64) -> String {
    crate::scenario::units::format_duration_us(us)
}

/// Renders a proxy report.
pub fn render(report: &Value) -> String {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    let usd = |v: &Value| crate::scenario::units::format_usd(n(v));
    let mut body = String::new();
    let _ = write!(
        body,
        "<header class=\"top\"><h1>agentsim proxy</h1><div class=\"sub\">{} mode · seed {}{}</div></header><main>",
        esc(&text(&report["mode"])),
        n(&report["seed"]),
        report["faults_file"]
            .as_str()
            .map(|f| format!(" · faults from {}", esc(f)))
            .unwrap_or_default()
    );
    let invariants = report["invariants"].as_array().cloned().unwrap_or_default();
    let failed = invariants.iter().filter(|i| i["holds"] != Value::Bool(true)).count();
    let story = format!(
        "{} calls in {} sessions: {} answered, {} unfinished, {} errors, {} faults injected, {} retries ({} sooner than retry-after), {} streams ({} broken). Spent {}.",
        n(&report["calls"]),
        report["sessions"].as_array().map_or(0, Vec::len),
        n(&report["answered"]),
        n(&report["unfinished"]),
        report["errors"].as_object().map_or(0, |e| e.values().map(|v| v.as_u64().unwrap_or(0)).sum::<u64>()),
        report["faults"].as_object().map_or(0, |f| f.values().map(|v| v.as_u64().unwrap_or(0)).sum::<u64>()),
        n(&report["retries"]["count"]),
        n(&report["retries"]["early"]),
        n(&report["streams"]["count"]),
        n(&report["streams"]["broken"]),
        usd(&report["cost_pusd"]),
    );
    let _ = write!(
        body,
        "<section id=\"summary\"><h2>What the app did</h2><p class=\"story\">{story}</p><div class=\"cards\">"
    );
    let usage = &report["usage"];
    for (k, v) in [
        ("calls", n(&report["calls"]).to_string()),
        ("answered", n(&report["answered"]).to_string()),
        ("input tokens", n(&usage["input_tokens"]).to_string()),
        ("output tokens", n(&usage["output_tokens"]).to_string()),
        ("cost", usd(&report["cost_pusd"])),
        ("p50 latency", us_text(n(&report["latency_us"]["p50"]))),
        ("p95 latency", us_text(n(&report["latency_us"]["p95"]))),
    ] {
        let _ = write!(
            body,
            "<div class=\"card\"><div class=\"k\">{}</div><div class=\"v\">{}</div></div>",
            esc(k),
            esc(&v)
        );
    }
    body.push_str("</div></section>");

    let _ = write!(
        body,
        "<section id=\"invariants\"><h2>Invariants {}</h2><ul class=\"invariants\">",
        if invariants.is_empty() {
            "<span class=\"muted\">(none in the faults file)</span>".to_owned()
        } else if failed == 0 {
            "<span class=\"badge good\">all hold</span>".to_owned()
        } else {
            format!("<span class=\"badge bad\">{failed} broken</span>")
        }
    );
    for inv in &invariants {
        let holds = inv["holds"] == Value::Bool(true);
        let _ = write!(
            body,
            "<li><span class=\"{}\">{}</span> {} <span class=\"muted\">{}</span></li>",
            if holds { "pass" } else { "fail" },
            if holds { "✓" } else { "✗" },
            esc(&text(&inv["name"])),
            esc(&text(&inv["detail"]))
        );
    }
    body.push_str("</ul></section>");

    body.push_str("<section id=\"exchanges\"><h2>Calls</h2><table><tr><th>session</th><th class=\"n\">call</th><th>model</th><th class=\"n\">status</th><th>from</th><th>faults</th><th>retry</th><th class=\"n\">tokens in/out</th><th class=\"n\">cost</th><th class=\"n\">latency</th></tr>");
    for x in report["exchanges"].as_array().into_iter().flatten() {
        let status = n(&x["status"]);
        let broken = x["stream_broken"] == Value::Bool(true);
        let status_text = match (status, broken) {
            _ if x["unfinished"] == Value::Bool(true) => {
                "<span class=\"fail\">unfinished (in flight when the proxy stopped)</span>".to_owned()
            }
            (s, true) => format!(
                "<span class=\"fail\">{s} (stream broken after {} frames)</span>",
                n(&x["frames"])
            ),
            (s, false) if (200..300).contains(&s) => s.to_string(),
            (s, false) => format!("<span class=\"fail\">{s}</span>"),
        };
        let faults: Vec<String> = x["faults"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|f| format!("<span class=\"chip bad\">{}</span>", esc(&text(f))))
            .collect();
        let retry = match &x["retry"] {
            Value::Null => String::new(),
            r => {
                let after = r["retry_after_us"].as_u64();
                let waited = n(&r["waited_us"]);
                let early = after.is_some_and(|a| waited < a);
                format!(
                    "<span class=\"{}\">#{} after {}{}</span>",
                    if early { "fail" } else { "muted" },
                    n(&r["attempt"]),
                    us_text(waited),
                    after
                        .map(|a| format!(" (retry-after {})", us_text(a)))
                        .unwrap_or_default()
                )
            }
        };
        let _ = write!(
            body,
            "<tr><td style=\"white-space:nowrap\"><code>{}</code></td><td class=\"n\">{}</td><td style=\"white-space:nowrap\">{}</td><td class=\"n\">{status_text}</td><td>{}</td><td>{}</td><td>{retry}</td><td class=\"n\">{}/{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            esc(&text(&x["session"])),
            n(&x["call"]),
            esc(&text(&x["model"])),
            esc(&text(&x["source"])),
            faults.join(" "),
            n(&x["usage"]["input_tokens"]),
            n(&x["usage"]["output_tokens"]),
            usd(&x["cost_pusd"]),
            us_text(n(&x["latency_us"])),
        );
    }
    body.push_str("</table></section></main>");
    page("agentsim proxy report", &body)
}
