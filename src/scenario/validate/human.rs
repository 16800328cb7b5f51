//! Validates `[[human]]` tables (reviewers) and the tools' `approval`.

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::file::*;
use crate::scenario::model::*;

/// How long a request waits for a decision when the reviewer gives no `timeout` (under the
/// default `max_tool_wait`, so an agent without `tool_timeout` hears the timeout first).
const TIMEOUT_DEFAULT_US: u64 = 1_800_000_000;

impl Validator<'_> {
    pub(super) fn human(&mut self, raw: &Spanned<RawHuman>) -> Human {
        let h = raw.get_ref();
        let on_timeout = match h.on_timeout.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
            None | Some(("reject", _)) => OnTimeout::Reject,
            Some(("approve", _)) => OnTimeout::Approve,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected on_timeout = \"reject\" or \"approve\", found \"{other}\""),
                );
                OnTimeout::Reject
            }
        };
        let capacity = match &h.capacity {
            Some(c) if *c.get_ref() == 0 => {
                self.error(c.span(), "expected a capacity of at least 1 (reviews at once), found 0");
                1
            }
            Some(c) => *c.get_ref(),
            None => 1,
        };
        Human {
            name: h.name.get_ref().clone(),
            latency: self.latency(h.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            approve: h.approve.as_ref().map_or(Probability::ALWAYS, |p| self.probability(p)),
            miss: h
                .miss
                .as_ref()
                .map_or(Probability { threshold_53: 0 }, |p| self.probability(p)),
            timeout_us: h.timeout.as_ref().map_or(TIMEOUT_DEFAULT_US, |t| self.duration(t)),
            on_timeout,
            capacity,
        }
    }

    /// A tool's `approval`: the reviewer it names (the condition is the tool's world scope's).
    pub(super) fn approval_by(&mut self, raw: &RawTool, human_names: &Names) -> Option<HumanIdx> {
        let approval = raw.approval.as_ref()?;
        let context = format!("tool \"{}\"'s approval", raw.name.get_ref());
        self.resolve(human_names, &approval.get_ref().by, &context)
    }
}
