//! What the scheduler writes to the trace: the header, each delivery, fault and guardrail
//! verdict, and the end. (Failures, restarts and escalations are written where supervision
//! handles them.)

use super::Scheduler;
use crate::engine::observe::Observe;
use crate::engine::{FaultRecord, Outcome, RunError};
use crate::kernel::ActorIdx;
use crate::protocol::{Envelope, Injection, VerdictRecord};

impl<O: Observe> Scheduler<O> {
    pub(super) fn write_header(&mut self) -> Result<(), RunError> {
        let scenario = &self.scenario;
        self.trace.record(|r| {
            r.str("kind", "header")
                .str("agentsim", env!("CARGO_PKG_VERSION"))
                .u64("trace_format", 1)
                .str("scenario", &scenario.name)
                .str("scenario_hash", &scenario.source_hash)
                .u64("seed", self.seed)
                .u64("max_events", self.limits.max_events)
                .u64("max_virtual_time_us", self.limits.max_virtual_time_us)
                .u64("max_queue_len", self.limits.max_queue_len)
                .u64("max_message_bytes", self.limits.max_message_bytes)
                .u64("max_restarts_total", self.limits.max_restarts_total)
                .u64("max_tool_wait_us", self.limits.max_tool_wait_us)
                .raw(
                    "profile",
                    &self.profile_name.as_deref().map_or("null".to_owned(), |p| {
                        let mut quoted = Vec::new();
                        crate::trace::escape_json_into(p, &mut quoted);
                        String::from_utf8_lossy(&quoted).into_owned()
                    }),
                )
                .raw("cassette", "null");
        })?;
        Ok(())
    }

    pub(super) fn write_end(&mut self, outcome: Outcome, detail: Option<&str>) -> Result<(), RunError> {
        let (now_us, events) = (self.now_us, self.events);
        self.trace.record(|r| {
            r.str("kind", "end")
                .u64("t_us", now_us)
                .u64("events", events)
                .str("outcome", outcome.name());
            if let Some(detail) = detail {
                r.str("detail", detail);
            }
        })?;
        Ok(())
    }

    pub(super) fn trace_fault(&mut self, seq: u64, to: ActorIdx, fired: Injection) -> Result<(), RunError> {
        let target = self.slots[to.index()].logical_id.clone();
        let fault = &self.scenario.faults[fired.fault];
        let mut params = String::new();
        let p = &fault.params;
        for (name, value) in [("retry_after_us", p.retry_after_us), ("latency_us", p.latency_us)] {
            if let Some(value) = value {
                params.push_str(&format!("{}{name}={value}", if params.is_empty() { "" } else { " " }));
            }
        }
        for (name, value) in [("text", &p.text), ("tool", &p.tool)] {
            if let Some(value) = value {
                params.push_str(&format!("{}{name}={value:?}", if params.is_empty() { "" } else { " " }));
            }
        }
        let now_us = self.now_us;
        self.trace.record(|r| {
            r.str("kind", "fault")
                .u64("seq", seq)
                .u64("t_us", now_us)
                .str("fault", fired.kind.name())
                .str("name", &fault.name)
                .str("actor", &target)
                .str("params", &params);
        })?;
        self.fault_log.push(FaultRecord {
            seq,
            t_us: now_us,
            kind: fired.kind.name().to_owned(),
            name: fault.name.clone(),
            target: target.to_string(),
            fault: fired.fault,
            message: self.slots[to.index()].received,
        });
        Ok(())
    }

    pub(super) fn trace_verdict(&mut self, record: &VerdictRecord) -> Result<(), RunError> {
        let guardrail = &self.scenario.guardrails[record.guardrail].name;
        let agent = &self.slots[self.directory.agent(record.agent).index()].logical_id;
        let (seq, now_us) = (self.current_seq, self.now_us);
        self.trace.record(|r| {
            r.str("kind", "guard")
                .u64("seq", seq)
                .u64("t_us", now_us)
                .str("guardrail", guardrail)
                .str("stage", record.stage.name())
                .str("actor", agent)
                .u64("conv", record.conv as u64)
                .str("verdict", record.verdict.name())
                .u64("latency_us", record.latency_us);
            if let Some(mistake) = record.mistake {
                r.str("mistake", mistake.name());
            }
            if !record.detail.is_empty() {
                r.str("detail", &record.detail);
            }
        })?;
        Ok(())
    }

    pub(super) fn trace_delivery(&mut self, seq: u64, envelope: &Envelope) -> Result<(), RunError> {
        if !self.trace.is_on() {
            return Ok(());
        }
        self.summary.clear();
        envelope.payload.summarize(&self.scenario, &mut self.summary);
        let (from, to) = (
            &self.slots[envelope.from.index()].logical_id,
            &self.slots[envelope.to.index()].logical_id,
        );
        let summary = &self.summary;
        let now_us = self.now_us;
        self.trace.record(|r| {
            r.u64("seq", seq)
                .u64("t_us", now_us)
                .str("kind", "deliver")
                .str("from", from)
                .str("to", to)
                .str("msg", summary);
        })?;
        Ok(())
    }
}
