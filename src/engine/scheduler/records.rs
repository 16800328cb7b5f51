//! What the scheduler writes to the trace: the header, each delivery, fault and guardrail
//! verdict, and the end. (Failures, restarts and escalations are written where supervision
//! handles them.)

use super::Scheduler;
use crate::engine::observe::Observe;
use crate::engine::{FaultRecord, Outcome, RunError};
use crate::kernel::ActorIdx;
use crate::protocol::{Envelope, Injection, VerdictRecord};
use crate::trace::{HeaderLimits, Record, TRACE_FORMAT};

impl<O: Observe> Scheduler<O> {
    pub(super) fn write_header(&mut self) -> Result<(), RunError> {
        let l = &self.limits;
        self.trace.write(&Record::Header {
            agentsim: env!("CARGO_PKG_VERSION"),
            trace_format: TRACE_FORMAT,
            scenario: &self.scenario.name,
            scenario_hash: &self.scenario.source_hash,
            seed: self.seed,
            limits: Some(HeaderLimits {
                max_events: l.max_events,
                max_virtual_time_us: l.max_virtual_time_us,
                max_queue_len: l.max_queue_len,
                max_message_bytes: l.max_message_bytes,
                max_transcript_bytes: l.max_transcript_bytes,
                max_restarts_total: l.max_restarts_total,
                max_tool_wait_us: l.max_tool_wait_us,
            }),
            profile: self.profile_name.as_deref(),
        })?;
        Ok(())
    }

    pub(super) fn write_end(&mut self, outcome: Outcome, detail: Option<&str>) -> Result<(), RunError> {
        self.trace.write(&Record::End {
            t_us: self.now_us,
            events: self.events,
            outcome: outcome.name(),
            detail,
        })?;
        Ok(())
    }

    pub(super) fn trace_fault(
        &mut self,
        seq: u64,
        to: ActorIdx,
        fired: Injection,
        conversation: Option<crate::protocol::ConvId>,
    ) -> Result<(), RunError> {
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
        self.trace.write(&Record::Fault {
            seq,
            t_us: now_us,
            fault: fired.kind.name(),
            name: &fault.name,
            actor: &target,
            params: &params,
        })?;
        self.fault_log.push(FaultRecord {
            seq,
            t_us: now_us,
            kind: fired.kind.name().to_owned(),
            name: fault.name.clone(),
            target: target.to_string(),
            fault: fired.fault,
            message: self.slots[to.index()].received,
            conversation,
        });
        Ok(())
    }

    pub(super) fn trace_verdict(&mut self, record: &VerdictRecord) -> Result<(), RunError> {
        let guardrail = &self.scenario.guardrails[record.guardrail].name;
        let agent = &self.slots[self.directory.agent(record.agent).index()].logical_id;
        let (seq, now_us) = (self.current_seq, self.now_us);
        self.trace.write(&Record::Guard {
            seq,
            t_us: now_us,
            guardrail,
            stage: record.stage.name(),
            actor: agent,
            conv: u64::from(record.conv),
            verdict: record.verdict.name(),
            latency_us: record.latency_us,
            mistake: record.mistake.map(|m| m.name()),
            detail: Some(record.detail.as_str()),
        })?;
        Ok(())
    }

    pub(super) fn trace_delivery(&mut self, seq: u64, envelope: &Envelope) -> Result<(), RunError> {
        if !self.trace.is_on() {
            return Ok(());
        }
        let (from, to) = (
            &self.slots[envelope.from.index()].logical_id_json,
            &self.slots[envelope.to.index()].logical_id_json,
        );
        let scenario = &self.scenario;
        self.trace.write_delivery((seq, self.now_us), from, to, |msg| {
            envelope.payload.summarize(scenario, msg)
        })?;
        Ok(())
    }
}
