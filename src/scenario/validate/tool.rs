//! Validates `[[tool]]` tables.

use std::collections::BTreeMap;
use std::sync::Arc;

use toml::Spanned;

use super::Validator;
use crate::scenario::expr::Template;
use crate::scenario::file::*;
use crate::scenario::model::*;

impl Validator<'_> {
    pub(super) fn tool(
        &mut self,
        raw: &RawTool,
        tables: &[Table],
        (table_names, tool_names, human_names): (&super::Names, &super::Names, &super::Names),
    ) -> Tool {
        let world = self.tool_world(raw, tables, table_names);
        let output = world.output.clone().unwrap_or_else(|| Template::literal("ok"));
        if let Some(effect) = &raw.effect {
            if effect.get_ref().is_empty() {
                self.error(
                    effect.span(),
                    "expected the name of a side effect, such as \"money_moved\", found an empty string",
                );
            }
        }
        let parameters = raw.parameters.as_ref().and_then(|p| self.parameters(p));
        let compensation = self.compensation(raw, tool_names);
        let approval = self.approval_by(raw, human_names).map(|human| Approval {
            human,
            when: world.approval_when.clone(),
            when_text: raw
                .approval
                .as_ref()
                .and_then(|a| a.get_ref().when.as_ref())
                .map(|w| w.get_ref().clone()),
        });
        Tool {
            name: raw.name.get_ref().clone(),
            description: raw.description.clone().unwrap_or_default(),
            parameters,
            latency: self.latency(raw.latency.as_ref(), Latency::Fixed { latency_us: 0 }),
            output,
            effect: raw.effect.as_ref().map(|e| e.get_ref().clone()),
            idempotent: raw.idempotent.unwrap_or(false),
            amount: world.amount,
            subject: world.subject,
            lookups: world.lookups,
            lookup_order: world.lookup_order,
            rules: world.rules,
            args: world.args,
            load: world.load,
            compensation,
            approval,
            mcp: raw.mcp.as_ref().map(|m| self.mcp_tool(raw, m)),
            recorded: self.recorded_calls(raw),
        }
    }

    /// `recorded = [{ conv, latency, output }, …]`: by conversation, in the order given.
    fn recorded_calls(&mut self, raw: &RawTool) -> BTreeMap<u32, Vec<RecordedCall>> {
        let mut by_conv: BTreeMap<u32, Vec<RecordedCall>> = BTreeMap::new();
        if let (Some(_), Some(first)) = (&raw.mcp, raw.recorded.first()) {
            self.error(
                first.span(),
                "an MCP tool answers as its cassette recorded: expected no `recorded` beside `mcp`",
            );
            return by_conv;
        }
        for call in &raw.recorded {
            let call = call.get_ref();
            let latency_us = self.duration(&call.latency);
            by_conv.entry(*call.conv.get_ref()).or_default().push(RecordedCall {
                latency_us,
                output: call.output.as_deref().map(Arc::from),
            });
        }
        by_conv
    }

    /// `mcp = { cassette, tool }`: its results come from the cassette, so no `output` or `rules`.
    fn mcp_tool(&mut self, raw: &RawTool, mcp: &Spanned<RawMcpTool>) -> McpTool {
        let given = mcp.get_ref();
        if let Some(output) = &raw.output {
            self.error(
                output.span(),
                "an MCP tool answers as its cassette recorded: expected no `output` beside `mcp`",
            );
        }
        if let Some(rule) = raw.rules.first() {
            self.error(
                rule.span(),
                "an MCP tool answers as its cassette recorded: expected no `[[tool.rules]]` beside `mcp`",
            );
        }
        if given.cassette.get_ref().trim().is_empty() {
            self.error(
                given.cassette.span(),
                "expected the directory `agentsim proxy --mcp --record DIR` wrote, found an empty string",
            );
        }
        McpTool {
            cassette: given.cassette.get_ref().clone(),
            span: given.cassette.span(),
            tool: given
                .tool
                .as_ref()
                .map_or_else(|| raw.name.get_ref().clone(), |t| t.get_ref().clone()),
            recorded: Vec::new(),
        }
    }

    /// `compensate = "refund"` (and `compensate_after`): the tool that undoes this one's calls.
    fn compensation(&mut self, raw: &RawTool, tool_names: &super::Names) -> Option<Compensation> {
        let Some(name) = &raw.compensate else {
            if let Some(after) = &raw.compensate_after {
                self.error(
                    after.span(),
                    "`compensate_after` goes with `compensate`: it says when an unfinished conversation's call is undone",
                );
            }
            return None;
        };
        let tool = self.resolve(
            tool_names,
            name,
            &format!("tool \"{}\"'s compensate", raw.name.get_ref()),
        )?;
        if name.get_ref() == raw.name.get_ref() {
            self.error(
                name.span(),
                "expected another tool to undo this one's calls (a refund for a payment), found the tool itself",
            );
            return None;
        }
        Some(Compensation {
            tool,
            after_us: raw.compensate_after.as_ref().map(|after| self.duration(after)),
        })
    }

    /// A tool's `parameters`: a JSON Schema object of the subset agentsim checks.
    fn parameters(&mut self, raw: &Spanned<toml::Value>) -> Option<serde_json::Value> {
        let json = serde_json::to_value(raw.get_ref()).unwrap_or(serde_json::Value::Null);
        if let Err(problem) = crate::scenario::schema::check_schema(&json) {
            self.error(
                raw.span(),
                format!("expected `parameters` to be a JSON Schema: {problem}"),
            );
            return None;
        }
        if json.get("type").and_then(|t| t.as_str()) != Some("object") {
            self.error(
                raw.span(),
                "expected `parameters` to be a schema with type = \"object\" (tool arguments are an object)",
            );
            return None;
        }
        Some(json)
    }
}
