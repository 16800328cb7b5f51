//! Validates the run limits of the `[scenario]` table.

use super::Validator;
use crate::scenario::error::Diagnostic;
use crate::scenario::file::RawMeta;
use crate::scenario::model::Limits;

impl Validator<'_> {
    /// The run's limits: the defaults, overridden by the `[scenario]` table.
    pub(super) fn limits(&mut self, meta: &RawMeta) -> Limits {
        let mut limits = Limits::DEFAULT;
        if let Some(t) = &meta.max_virtual_time {
            limits.max_virtual_time_us = self.duration(t);
        }
        if let Some(t) = &meta.max_tool_wait {
            limits.max_tool_wait_us = self.duration(t);
        }
        for (value, slot) in [
            (&meta.max_events, &mut limits.max_events),
            (&meta.max_queue_len, &mut limits.max_queue_len),
            (&meta.max_message_bytes, &mut limits.max_message_bytes),
            (&meta.max_transcript_bytes, &mut limits.max_transcript_bytes),
        ] {
            if let Some(value) = value {
                if *value.get_ref() == 0 {
                    self.diagnostics
                        .push(Diagnostic::at(value.span(), "expected a limit of at least 1, found 0"));
                }
                *slot = *value.get_ref();
            }
        }
        // Zero restarts is a real choice: any restart ends the run.
        if let Some(value) = &meta.max_restarts_total {
            limits.max_restarts_total = *value.get_ref();
        }
        limits
    }
}
