//! The mock model: picks an answer by the agent's behaviour rules, first match wins, drawing any
//! probabilities from the model's own random stream.

use std::cell::OnceCell;
use std::sync::Arc;

use crate::kernel::RngStream;
use crate::protocol::llm::wire_id;
use crate::protocol::{Caller, Delegation, LlmRequest, ModelAnswer, Origin, ToolCall, ToolRef, Transcript};
use crate::scenario::expr::{Context, Value, Var};
use crate::scenario::{Action, ArgValue, Scenario};

use super::tokens::estimate_tokens;

/// The answer when no rule matches.
pub const DEFAULT_ANSWER: &str = "I have handled your request.";

/// What the rules can read about a request. A user simulator's rules read the dialogue the
/// right way round (its request carries it flipped): `last_user` is the user's own last message,
/// `answer` the agent's.
pub struct RequestContext<'a> {
    pub scenario: &'a Scenario,
    pub request: &'a LlmRequest,
    transcript: std::borrow::Cow<'a, Transcript>,
    /// `history` and `tools_called`, built the first time a rule reads them.
    history: OnceCell<String>,
    tools_called: OnceCell<String>,
}

impl<'a> RequestContext<'a> {
    pub fn new(scenario: &'a Scenario, request: &'a LlmRequest) -> RequestContext<'a> {
        let transcript = match request.caller {
            Caller::Agent(_) => std::borrow::Cow::Borrowed(&request.transcript),
            Caller::User(_) => std::borrow::Cow::Owned(request.transcript.flipped()),
        };
        RequestContext {
            scenario,
            request,
            transcript,
            history: OnceCell::new(),
            tools_called: OnceCell::new(),
        }
    }
}

impl Context for RequestContext<'_> {
    fn var(&self, var: Var) -> Value<'_> {
        let request = self.request;
        let transcript = &*self.transcript;
        match var {
            Var::Turn => Value::Int(request.turn as i64),
            Var::ToolCalls => Value::Int(request.tool_calls as i64),
            Var::LastTool => Value::Str(&request.last_tool),
            Var::LastToolOutput => Value::Str(&request.last_tool_output),
            Var::User => Value::Str(transcript.first_user()),
            Var::UserTurn => Value::Int(transcript.user_turns() as i64),
            Var::LastUser => Value::Str(transcript.last_user()),
            Var::History => Value::Str(self.history.get_or_init(|| transcript.text())),
            Var::ToolsCalled => Value::Str(self.tools_called.get_or_init(|| transcript.tools_called())),
            Var::From => Value::Str(match request.origin {
                Origin::User => "user",
                Origin::Handoff(a) | Origin::Delegation(a) => self.scenario.agents[a].name.as_str(),
            }),
            Var::Agent => Value::Str(request.caller.name(self.scenario)),
            Var::Answer => Value::Str(transcript.last_answer()),
            Var::Conversation => Value::Int(request.conv as i64),
            Var::Delegations => Value::Int(request.delegations as i64),
            Var::Results => Value::Str(&request.results),
            Var::Feedback => Value::Str(&request.feedback),
            Var::Text => Value::Str(""),
        }
    }
}

/// Decides the model's answer and its output tokens. `next_call_id` numbers tool calls.
pub fn decide(
    scenario: &Scenario,
    request: &LlmRequest,
    stream: &mut RngStream,
    next_call_id: &mut u32,
) -> (ModelAnswer, u32) {
    let context = RequestContext::new(scenario, request);
    let rules = request.caller.rules(scenario);
    for rule in rules {
        if let Some(when) = &rule.when {
            if !when.eval(&context) {
                continue;
            }
        }
        if let Some(p) = rule.probability {
            if !p.draw(stream) {
                continue;
            }
        }
        let (answer, estimated_tokens) = act(&rule.action, &context, next_call_id);
        return (answer, rule.output_tokens.unwrap_or(estimated_tokens));
    }
    (
        ModelAnswer::Text(Arc::from(DEFAULT_ANSWER)),
        estimate_tokens(DEFAULT_ANSWER),
    )
}

/// Tokens of a tool call's arguments, as the model would write them (`{"key":"value",…}`).
fn args_tokens(args: &serde_json::Map<String, serde_json::Value>) -> u32 {
    let chars: usize = args
        .iter()
        .map(|(key, value)| {
            let value_chars = match value {
                serde_json::Value::String(s) => s.chars().count() + 2,
                other => other.to_string().chars().count(),
            };
            key.chars().count() + 4 + value_chars
        })
        .sum();
    (chars as u32 + 2).div_ceil(4)
}

fn act(action: &Action, context: &RequestContext, next_call_id: &mut u32) -> (ModelAnswer, u32) {
    let no_args = |_: &str| None;
    match action {
        Action::Answer { text } => {
            let text = text.render_shared(context, &no_args);
            let output_tokens = estimate_tokens(&text);
            (ModelAnswer::Text(text), output_tokens)
        }
        Action::Delegate { to, task } => {
            let task = task.render_shared(context, &no_args);
            let tokens = estimate_tokens(&task) * to.len() as u32 + 8;
            let tasks = to
                .iter()
                .map(|&to| {
                    let id = *next_call_id;
                    *next_call_id += 1;
                    Delegation {
                        to,
                        task: task.clone(),
                        call_id: wire_id(id),
                    }
                })
                .collect();
            (ModelAnswer::Delegate(tasks), tokens)
        }
        Action::Handoff { to } => {
            let name = &context.scenario.agents[*to].name;
            let id = *next_call_id;
            *next_call_id += 1;
            let answer = ModelAnswer::Handoff {
                to: *to,
                call_id: wire_id(id),
            };
            (answer, estimate_tokens(name) + 8)
        }
        Action::ToolCalls(specs) => {
            let mut output_tokens = 0;
            let calls = specs
                .iter()
                .map(|spec| {
                    let mut args = serde_json::Map::new();
                    let schema = context.scenario.tools[spec.tool].parameters.as_ref();
                    for (name, value) in &spec.args {
                        let value = match value {
                            ArgValue::Text(template) => typed_arg(schema, name, template.render(context, &no_args)),
                            ArgValue::Json(json) => json.clone(),
                        };
                        args.insert(name.clone(), value);
                    }
                    let id = *next_call_id;
                    *next_call_id += 1;
                    let tool_name = &context.scenario.tools[spec.tool].name;
                    output_tokens += estimate_tokens(tool_name) + args_tokens(&args) + 8;
                    ToolCall::with_json(id, ToolRef::Known(spec.tool), args)
                })
                .collect();
            (ModelAnswer::ToolCalls(calls), output_tokens)
        }
    }
}

/// A templated argument as a model writes it: a number or true/false where the tool's
/// `parameters` declare one and the text reads as one, a string otherwise.
fn typed_arg(schema: Option<&serde_json::Value>, name: &str, text: String) -> serde_json::Value {
    let declared = schema
        .and_then(|s| s.get("properties"))
        .and_then(|p| p.get(name))
        .and_then(|p| p.get("type"))
        .and_then(|t| t.as_str());
    let typed = match declared {
        Some("integer") => text.trim().parse::<i64>().ok().map(serde_json::Value::from),
        Some("number") => serde_json::from_str::<serde_json::Value>(text.trim())
            .ok()
            .filter(|v| v.is_number()),
        Some("boolean") => match text.trim() {
            "true" => Some(serde_json::Value::Bool(true)),
            "false" => Some(serde_json::Value::Bool(false)),
            _ => None,
        },
        _ => None,
    };
    typed.unwrap_or(serde_json::Value::String(text))
}
