//! What a guardrail reads in a message (the message's own text, or the whole transcript), the
//! variables a `script` check sees, and a message with its text replaced.

use std::sync::Arc;

use crate::protocol::{AgentMsg, Checked, LlmMsg, Origin, Payload, ToolMsg, UserMsg};
use crate::scenario::expr::{Context, Value, Var};
use crate::scenario::guardrail::GuardScope;
use crate::scenario::Scenario;

/// What a `script` check reads.
pub(super) struct ScriptContext<'a> {
    pub(super) scenario: &'a Scenario,
    pub(super) checked: &'a Checked,
    pub(super) text: &'a str,
}

impl Context for ScriptContext<'_> {
    fn var(&self, var: Var) -> Value<'_> {
        let c = self.checked;
        let context = c.context.as_deref();
        match var {
            Var::Text => Value::Str(self.text),
            Var::Agent => Value::Str(&self.scenario.agents[c.agent].name),
            Var::Conversation => Value::Int(c.conv as i64),
            Var::LastTool => Value::Str(c.tool.map_or("", |t| self.scenario.tools[t].name.as_str())),
            Var::LastToolOutput => Value::Str(match &c.subject {
                Payload::Agent(AgentMsg::ToolResult { output, .. }) => output,
                _ => "",
            }),
            Var::User => Value::Str(match (&c.subject, context) {
                (Payload::Agent(AgentMsg::Start { text, history, .. }), _) if text.is_empty() => history.first_user(),
                (Payload::Agent(AgentMsg::Start { text, .. }), _) => text,
                (Payload::Llm(LlmMsg::Complete(request)), _) => request.transcript.first_user(),
                (_, Some(context)) => context.transcript.first_user(),
                _ => "",
            }),
            Var::Turn => Value::Int(match (&c.subject, context) {
                (Payload::Llm(LlmMsg::Complete(request)), _) => request.turn as i64,
                (_, Some(context)) => context.turn as i64,
                _ => 0,
            }),
            Var::ToolCalls => Value::Int(match (&c.subject, context) {
                (Payload::Llm(LlmMsg::Complete(request)), _) => request.tool_calls as i64,
                (_, Some(context)) => context.tool_calls as i64,
                _ => 0,
            }),
            Var::From => Value::Str(match &c.subject {
                Payload::Agent(AgentMsg::Start {
                    origin: Origin::Handoff(a) | Origin::Delegation(a),
                    ..
                }) => &self.scenario.agents[*a].name,
                _ => "user",
            }),
            Var::Delegations => Value::Int(0),
            Var::Results | Var::Feedback | Var::History | Var::ToolsCalled | Var::LastUser | Var::Answer => {
                Value::Str("")
            }
            Var::UserTurn => Value::Int(0),
        }
    }
}

/// The text a guardrail checks: the message's own (a tool call's arguments, the newest message
/// sent to the model, the transcript a handoff carries), or with `scope = "transcript"` the whole
/// conversation so far.
pub(super) fn subject_text(checked: &Checked, scope: GuardScope) -> String {
    let subject = &checked.subject;
    match (subject, scope) {
        (Payload::Tool(ToolMsg::Invoke { call, .. }), _) => call.args_text().to_string(),
        (Payload::Agent(AgentMsg::Start { text, history, .. }), GuardScope::Message) if text.is_empty() => {
            history.text()
        }
        (Payload::Llm(LlmMsg::Complete(request)), GuardScope::Transcript) => request.transcript.text(),
        (Payload::Agent(AgentMsg::Start { text, history, .. }), GuardScope::Transcript) => {
            let mut all = history.text();
            if !text.is_empty() {
                if !all.is_empty() {
                    all.push('\n');
                }
                all.push_str(text);
            }
            all
        }
        (_, GuardScope::Transcript) if checked.context.is_some() => checked
            .context
            .as_deref()
            .map(|c| c.transcript.text())
            .unwrap_or_default(),
        (other, _) => other.text().unwrap_or("").to_owned(),
    }
}

/// `subject` with its text replaced (a redaction, or a block message in its place).
pub(super) fn with_text(subject: Payload, text: Arc<str>) -> Payload {
    match subject {
        Payload::Agent(AgentMsg::Start {
            conv,
            origin,
            reply_to,
            history,
            handoffs,
            ..
        }) => Payload::Agent(AgentMsg::Start {
            conv,
            text,
            origin,
            reply_to,
            history,
            handoffs,
        }),
        Payload::Llm(LlmMsg::Complete(mut request)) => {
            // The newest message is what the check read.
            if let Some(last) = request.transcript.len().checked_sub(1) {
                request.transcript.set_content(last, text);
            }
            Payload::Llm(LlmMsg::Complete(request))
        }
        Payload::Agent(AgentMsg::ToolResult {
            conv, call_id, tool, ..
        }) => Payload::Agent(AgentMsg::ToolResult {
            conv,
            call_id,
            tool,
            output: text,
        }),
        Payload::Agent(AgentMsg::DelegateResult { conv, from_agent, .. }) => {
            Payload::Agent(AgentMsg::DelegateResult { conv, from_agent, text })
        }
        Payload::User(UserMsg::Answer {
            conv,
            status,
            from,
            history,
            ..
        }) => Payload::User(UserMsg::Answer {
            conv,
            text,
            status,
            from,
            history,
        }),
        other => other,
    }
}
