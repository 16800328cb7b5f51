//! Comparing two designs under the same seeds and the same chaos: side-by-side pass rates with
//! intervals, whether each difference is significant, and the spread of cost and latency.

use serde::Serialize;

use super::SweepSummary;
use crate::report::stats::two_proportion_p_value;

/// Differences this unlikely under "no difference" are called significant.
pub const SIGNIFICANCE_LEVEL: f64 = 0.05;

/// One invariant in both designs.
#[derive(Debug, Clone, Serialize)]
pub struct InvariantDifference {
    pub name: String,
    pub a_pass_rate: f64,
    pub b_pass_rate: f64,
    /// `b - a`, in percentage points.
    pub difference_points: f64,
    /// The test behind `p_value`: always `"two-proportion z-test"` (two-sided).
    pub test: &'static str,
    /// The counts the test compares: runs that kept the invariant, of runs, in each design.
    pub a_passed: u64,
    pub a_runs: u64,
    pub b_passed: u64,
    pub b_runs: u64,
    /// Two-proportion z-test.
    pub p_value: f64,
    /// `p_value < SIGNIFICANCE_LEVEL`, in either direction.
    pub significant: bool,
    /// B keeps the invariant in fewer runs than A, and the difference is significant.
    pub b_significantly_worse: bool,
}

/// The comparison `agentsim compare --json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub a: SweepSummary,
    pub b: SweepSummary,
    /// Invariants present in both designs, by name.
    pub invariants: Vec<InvariantDifference>,
    /// The significance level the tests use (p below it is significant).
    pub significance_level: f64,
    /// B is significantly worse than A on at least one invariant: `compare` exits 1.
    pub b_significantly_worse: bool,
}

impl Comparison {
    pub fn new(a: SweepSummary, b: SweepSummary) -> Comparison {
        let invariants = a
            .invariants
            .iter()
            .filter_map(|ia| {
                let ib = b.invariants.iter().find(|ib| ib.name == ia.name)?;
                let p_value = two_proportion_p_value(ia.passed, ia.runs, ib.passed, ib.runs);
                let significant = p_value < SIGNIFICANCE_LEVEL;
                Some(InvariantDifference {
                    name: ia.name.clone(),
                    a_pass_rate: ia.pass_rate,
                    b_pass_rate: ib.pass_rate,
                    difference_points: (ib.pass_rate - ia.pass_rate) * 100.0,
                    test: "two-proportion z-test",
                    a_passed: ia.passed,
                    a_runs: ia.runs,
                    b_passed: ib.passed,
                    b_runs: ib.runs,
                    p_value,
                    significant,
                    b_significantly_worse: significant && ib.pass_rate < ia.pass_rate,
                })
            })
            .collect::<Vec<InvariantDifference>>();
        let b_significantly_worse = invariants.iter().any(|d| d.b_significantly_worse);
        Comparison {
            a,
            b,
            invariants,
            significance_level: SIGNIFICANCE_LEVEL,
            b_significantly_worse,
        }
    }

    /// The side-by-side table.
    pub fn text(&self) -> String {
        use crate::scenario::units::format_duration_us;
        use crate::scenario::units::format_usd;
        let (a, b) = (&self.a, &self.b);
        let mut out = format!(
            "agentsim compare · A {} vs B {} · seeds {} · {} runs each\n",
            a.scenario, b.scenario, a.seeds, a.runs
        );
        out.push_str(&format!("  {:<44} {:>24} {:>24}  difference\n", "", "A", "B"));
        for d in &self.invariants {
            let interval = |s: &SweepSummary| {
                let i = s.invariants.iter().find(|i| i.name == d.name).expect("in both");
                format!(
                    "{:.1}% [{:.1}, {:.1}]",
                    i.pass_rate * 100.0,
                    i.ci_low * 100.0,
                    i.ci_high * 100.0
                )
            };
            let verdict = if d.significant {
                format!("significant (p = {:.3})", d.p_value)
            } else {
                format!("not significant (p = {:.2})", d.p_value)
            };
            out.push_str(&format!(
                "  {:<44} {:>24} {:>24}  {:+.1} pts, {verdict}\n",
                d.name,
                interval(a),
                interval(b),
                d.difference_points
            ));
        }
        let row = |name: &str, fa: String, fb: String| format!("  {name:<44} {fa:>24} {fb:>24}\n");
        out.push_str(&row(
            "runs passed",
            format!("{}/{}", a.passed_runs, a.runs),
            format!("{}/{}", b.passed_runs, b.runs),
        ));
        out.push_str(&row(
            "makespan p50 / p95",
            format!(
                "{} / {}",
                format_duration_us(a.makespan_us.p50),
                format_duration_us(a.makespan_us.p95)
            ),
            format!(
                "{} / {}",
                format_duration_us(b.makespan_us.p50),
                format_duration_us(b.makespan_us.p95)
            ),
        ));
        out.push_str(&row(
            "llm calls p50 / p95",
            format!("{} / {}", a.llm_calls.p50, a.llm_calls.p95),
            format!("{} / {}", b.llm_calls.p50, b.llm_calls.p95),
        ));
        out.push_str(&row(
            "cost p50 / p95",
            format!("{} / {}", format_usd(a.cost_pusd.p50), format_usd(a.cost_pusd.p95)),
            format!("{} / {}", format_usd(b.cost_pusd.p50), format_usd(b.cost_pusd.p95)),
        ));
        let worse: Vec<&str> = self
            .invariants
            .iter()
            .filter(|d| d.b_significantly_worse)
            .map(|d| d.name.as_str())
            .collect();
        if !worse.is_empty() {
            out.push_str(&format!(
                "  B is significantly worse than A (p < {SIGNIFICANCE_LEVEL}) on: {}\n",
                worse.join(", ")
            ));
        }
        out
    }
}
