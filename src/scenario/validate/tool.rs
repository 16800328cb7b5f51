//! Validates `[[tool]]` tables.

use super::Validator;
use crate::scenario::expr::Template;
use crate::scenario::file::*;
use crate::scenario::model::*;

impl Validator<'_> {
    pub(super) fn tool(&mut self, raw: &RawTool) -> Tool {
        let output = match &raw.output {
            Some(text) => self.template(text, true),
            None => Template::literal("ok"),
        };
        if let Some(effect) = &raw.effect {
            if effect.get_ref().is_empty() {
                self.error(
                    effect.span(),
                    "expected the name of a side effect, such as \"money_moved\", found an empty string",
                );
            }
        }
        Tool {
            name: raw.name.get_ref().clone(),
            description: raw.description.clone().unwrap_or_default(),
            latency: self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            output,
            effect: raw.effect.as_ref().map(|e| e.get_ref().clone()),
            idempotent: raw.idempotent.unwrap_or(false),
        }
    }
}
