//! Validates the run limits of the `[scenario]` table.

use super::Validator;
use crate::scenario::error::Diagnostic;
use crate::scenario::file::RawMeta;
use crate::scenario::model::Limits;

impl Validator<'_> {
    /// The run's limits: the defaults, overridden by the `[scenario]` table.
    pub(super) fn limits(&mut self, meta: &RawMeta) -> Limits {
        let mut limits = Limits::DEFAULT;
        for (text, slot) in [
            (&meta.max_virtual_time, &mut limits.max_virtual_time_us),
            (&meta.max_tool_wait, &mut limits.max_tool_wait_us),
        ] {
            if let Some(t) = text {
                match crate::scenario::units::parse_duration_us(t.get_ref()) {
                    Ok(0) => self.diagnostics.push(Diagnostic::at(
                        t.span(),
                        format!("expected a limit longer than 0, found \"{}\"", t.get_ref()),
                    )),
                    Ok(us) => *slot = us,
                    Err(message) => self.error(t.span(), message),
                }
            }
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
