//! The message vocabulary of a run: every message each actor kind handles, the envelope's
//! [`Payload`], the [`Effect`]s a handler asks for, model requests and answers, guardrail
//! verdict records, fault injections as a delivery carries them, and what taint labels and
//! actor addresses stand for. A newcomer finds every message here.
//!
//! Knows nothing of how behaviours decide, how the scheduler loops, or how reports are built.

pub mod agent;
pub mod directory;
pub mod effect;
pub mod guardrail;
pub mod human;
pub mod labels;
pub mod llm;
pub mod supervisor;
pub mod tool;
pub mod transcript;
pub mod user;
pub mod world;

pub use agent::{AgentMsg, Checkpoint, Origin, ReplyTo};
pub use directory::Directory;
pub use effect::{Effect, Injection};
pub use guardrail::{Checked, GuardContext, GuardrailIdx, GuardrailMsg, Mistake, RoutedReply, Verdict, VerdictRecord};
pub use human::HumanMsg;
pub use labels::{LabelSource, LabelSpace};
pub use llm::{
    Caller, Delegation, FinishReason, LlmMsg, LlmRequest, ModelAnswer, ModelReply, ProviderError, ToolArgs, ToolCall,
    ToolRef, Usage,
};
pub use supervisor::SupervisorMsg;
pub use tool::{CallKey, Queued, ToolCaller, ToolMsg};
pub use transcript::{ChatCall, ChatMessage, Role, Transcript};
pub use user::{AnswerStatus, UserEnding, UserMsg};
pub use world::{ChangeOp, SharedWorld, WorldChange, WorldState};

use crate::scenario::Scenario;

/// An envelope carrying any of agentsim's messages.
pub type Envelope = crate::kernel::Envelope<Payload>;
/// A delivery to an actor whose messages are `M`.
pub type Turn<M> = crate::kernel::Turn<M, Injection, Effect>;
/// What a handler may read besides its message.
pub type TurnContext = crate::kernel::TurnContext<Injection>;
/// How a turn ended: its effects, or a failure.
pub type Completion = crate::kernel::Completion<Effect>;
/// Fixed facts about an actor incarnation.
pub type Identity = crate::kernel::Identity<Effect>;

/// A conversation's number, from 0: each traffic source has a block of numbers, in the order the
/// sources are listed, and numbers its conversations in the order it opens them.
pub type ConvId = u32;

/// Any message, tagged with the kind of actor it is for.
#[derive(Debug, Clone)]
pub enum Payload {
    Agent(AgentMsg),
    Llm(LlmMsg),
    Tool(ToolMsg),
    User(UserMsg),
    Supervisor(SupervisorMsg),
    Guardrail(GuardrailMsg),
    Human(HumanMsg),
}

impl Payload {
    /// The free text a message carries (a user message, a task, a tool output, an answer).
    pub fn text(&self) -> Option<&str> {
        match self {
            Payload::Agent(AgentMsg::Start { text, .. })
            | Payload::Agent(AgentMsg::DelegateResult { text, .. })
            | Payload::User(UserMsg::Answer { text, .. }) => Some(text),
            Payload::Agent(AgentMsg::ToolResult { output, .. }) => Some(output),
            Payload::Llm(LlmMsg::Complete(request)) => request.transcript.last().map(|m| &*m.content),
            Payload::Guardrail(GuardrailMsg::Check(checked)) => checked.subject.text(),
            _ => None,
        }
    }

    /// The model's answer a message carries back to its caller, directly or through a
    /// guardrail.
    pub fn model_reply(&self) -> Option<&ModelReply> {
        match self {
            Payload::Agent(AgentMsg::LlmReply { reply, .. }) | Payload::User(UserMsg::LlmReply { reply, .. }) => {
                Some(reply)
            }
            Payload::Guardrail(GuardrailMsg::Reply(routed)) => Some(&routed.reply),
            _ => None,
        }
    }

    /// The conversation a message belongs to, if it belongs to one.
    pub fn conv(&self) -> Option<ConvId> {
        match self {
            Payload::Agent(m) => Some(m.conv()),
            Payload::Llm(LlmMsg::Complete(request)) => Some(request.conv),
            Payload::Tool(ToolMsg::Invoke { conv, .. }) | Payload::Tool(ToolMsg::Compensate { conv, .. }) => {
                Some(*conv)
            }
            Payload::Tool(ToolMsg::Run(queued)) | Payload::Tool(ToolMsg::Commit(queued)) => Some(queued.conv),
            Payload::Tool(ToolMsg::Cancel(key))
            | Payload::Tool(ToolMsg::Reviewed { key, .. })
            | Payload::Tool(ToolMsg::ApprovalTimeout(key))
            | Payload::Human(HumanMsg::Review { key, .. })
            | Payload::Human(HumanMsg::Take { key, .. })
            | Payload::Human(HumanMsg::Decided { key, .. })
            | Payload::Human(HumanMsg::Withdraw { key, .. }) => Some(key.conv),
            Payload::User(UserMsg::Answer { conv, .. })
            | Payload::User(UserMsg::LlmReply { conv, .. })
            | Payload::User(UserMsg::End { conv, .. })
            | Payload::User(UserMsg::Compensable { conv, .. })
            | Payload::User(UserMsg::CompensationDue { conv })
            | Payload::User(UserMsg::Compensated { conv, .. }) => Some(*conv),
            Payload::Guardrail(GuardrailMsg::Check(checked)) => Some(checked.conv),
            Payload::Guardrail(GuardrailMsg::Reply(routed)) => Some(routed.conv),
            _ => None,
        }
    }

    /// A short, canonical description for the trace: same message, same bytes.
    pub(crate) fn summarize<W: Summary + std::fmt::Write>(&self, scenario: &Scenario, out: &mut W) {
        match self {
            Payload::Agent(msg) => summarize_agent(msg, scenario, out),
            other => summarize_other(other, scenario, out),
        }
    }
}

/// The summary of a message to an agent.
fn summarize_agent<W: Summary + std::fmt::Write>(msg: &AgentMsg, scenario: &Scenario, out: &mut W) {
    let tool_name = |t: usize| scenario.tools.get(t).map_or("?", |t| t.name.as_str());
    let agent_name = |a: usize| scenario.agents.get(a).map_or("?", |a| a.name.as_str());
    let _ = match msg {
        AgentMsg::Start {
            conv,
            text,
            origin,
            history,
            ..
        } => match origin {
            Origin::User if history.is_empty() => {
                out.lit("start conv=").num(*conv).lit(" user=").quoted(text);
                Ok(())
            }
            // A follow-up: the user's next turn, with the conversation so far.
            Origin::User => {
                out.lit("start conv=").num(*conv).lit(" user=").quoted(text);
                out.lit(" messages=").num(history.len());
                Ok(())
            }
            Origin::Handoff(a) => {
                out.lit("handoff conv=").num(*conv).lit(" from=").put(agent_name(*a));
                out.lit(" messages=").num(history.len());
                Ok(())
            }
            Origin::Delegation(a) => {
                out.lit("delegate conv=").num(*conv).lit(" from=").put(agent_name(*a));
                out.lit(" task=").quoted(text);
                Ok(())
            }
        },
        AgentMsg::DelegateResult { conv, from_agent, text } => {
            out.lit("delegate_result conv=")
                .num(*conv)
                .lit(" from=")
                .put(agent_name(*from_agent));
            out.lit(" text=").quoted(text);
            Ok(())
        }
        AgentMsg::LlmReply { conv, reply } => {
            out.lit("llm_reply conv=").num(*conv).lit(" ");
            reply.summarize(scenario, out);
            Ok(())
        }
        AgentMsg::ToolResult {
            conv,
            call_id,
            tool,
            output,
        } => {
            out.lit("tool_result conv=").num(*conv).lit(" call=").num(*call_id);
            out.lit(" tool=").put(tool_name(*tool)).lit(" output=").quoted(output);
            Ok(())
        }
        AgentMsg::CallTimeout { conv, call_seq } => {
            out.lit("call_timeout conv=").num(*conv).lit(" call=").num(*call_seq);
            Ok(())
        }
        AgentMsg::RetryDue { conv } => {
            out.lit("retry_due conv=").num(*conv);
            Ok(())
        }
        AgentMsg::DeadlineDue { conv, .. } => {
            out.lit("deadline conv=").num(*conv);
            Ok(())
        }
        AgentMsg::CallRejected {
            conv,
            call_seq,
            retry_after_us,
        } => {
            write!(
                out,
                "call_rejected conv={conv} call={call_seq} reason=circuit_open retry_after_us={retry_after_us}"
            )
        }
        AgentMsg::ToolTimeout { conv, call_id } => {
            out.lit("tool_timeout conv=").num(*conv).lit(" call=").num(*call_id);
            Ok(())
        }
        AgentMsg::DelegationTimeout {
            conv,
            delegate,
            attempt,
        } => write!(
            out,
            "delegation_timeout conv={conv} delegate={} attempt={attempt}",
            scenario.agents[*delegate].name
        ),
        AgentMsg::GuardStop { conv, status, text, .. } => {
            out.lit("guard_stop conv=")
                .num(*conv)
                .lit(" status=")
                .lit(status.name());
            out.lit(" text=").quoted(text);
            Ok(())
        }
        AgentMsg::Halt { conv } => write!(out, "halt conv={conv}"),
        AgentMsg::Resume { conv } => write!(out, "resume conv={conv}"),
        AgentMsg::Cancel { conv } => write!(out, "cancel conv={conv}"),
        AgentMsg::HandoffTimeout { conv, to, attempt } => write!(
            out,
            "handoff_timeout conv={conv} to={} attempt={attempt}",
            agent_name(*to)
        ),
        AgentMsg::HandoffDone { conv, from_agent } => {
            out.lit("handoff_done conv=")
                .num(*conv)
                .lit(" from=")
                .put(agent_name(*from_agent));
            Ok(())
        }
        AgentMsg::Revise { conv, feedback, .. } => {
            write!(out, "revise conv={conv} feedback={}", Quoted(clip(feedback)))
        }
    };
}

/// A call as the trace names it: `conv=0 call=1 agent=desk`.
struct CallShown<'a>(&'a CallKey, &'a Scenario);

impl std::fmt::Display for CallShown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let CallShown(key, scenario) = self;
        let agent = scenario.agents.get(key.agent).map_or("?", |a| a.name.as_str());
        write!(f, "conv={} call={} agent={agent}", key.conv, key.call_id)
    }
}

/// The summary of a message to a model, tool, user, supervisor or guardrail.
fn summarize_other<W: Summary + std::fmt::Write>(payload: &Payload, scenario: &Scenario, out: &mut W) {
    let tool_name = |t: usize| scenario.tools.get(t).map_or("?", |t| t.name.as_str());
    let agent_name = |a: usize| scenario.agents.get(a).map_or("?", |a| a.name.as_str());
    let _ = match payload {
        Payload::Llm(LlmMsg::Complete(request)) => {
            out.lit("complete conv=")
                .num(request.conv)
                .lit(" ")
                .lit(request.caller.kind());
            out.lit("=")
                .put(request.caller.name(scenario))
                .lit(" turn=")
                .num(request.turn);
            out.lit(" tokens_in=").num(request.input_tokens);
            out.lit(" messages=").num(request.transcript.len());
            out.lit(" transcript=").hex16(request.transcript.digest_u64());
            if request.attempt > 1 {
                out.lit(" attempt=").num(request.attempt);
            }
            Ok(())
        }
        Payload::Tool(ToolMsg::Run(queued)) => {
            out.lit("run conv=").num(queued.conv).lit(" call=").num(queued.call.id);
            out.lit(" (its turn after waiting)");
            Ok(())
        }
        Payload::Tool(ToolMsg::Invoke { conv, call, .. }) => {
            let tool = match &call.tool {
                ToolRef::Known(t) => tool_name(*t),
                ToolRef::Unknown(name) => name,
            };
            out.lit("invoke conv=")
                .num(*conv)
                .lit(" call=")
                .num(call.id)
                .lit(" tool=")
                .put(tool);
            out.lit(" args=").put(&call.args_text());
            Ok(())
        }
        Payload::Tool(ToolMsg::Commit(queued)) => {
            out.lit("commit conv=")
                .num(queued.conv)
                .lit(" call=")
                .num(queued.call.id);
            Ok(())
        }
        Payload::Tool(ToolMsg::Cancel(key)) => write!(out, "cancel {}", CallShown(key, scenario)),
        Payload::Tool(ToolMsg::Reviewed { key, approved }) => write!(
            out,
            "reviewed {} decision={}",
            CallShown(key, scenario),
            if *approved { "approved" } else { "rejected" }
        ),
        Payload::Tool(ToolMsg::ApprovalTimeout(key)) => write!(out, "approval_timeout {}", CallShown(key, scenario)),
        Payload::Human(HumanMsg::Review { key, tool, args }) => write!(
            out,
            "review {} tool={} args={}",
            CallShown(key, scenario),
            tool_name(*tool),
            Quoted(clip(args))
        ),
        Payload::Human(HumanMsg::Take { key, waited_us, .. }) => {
            write!(out, "take {} waited_us={waited_us}", CallShown(key, scenario))
        }
        Payload::Human(HumanMsg::Decided { key, approved, .. }) => write!(
            out,
            "decided {} decision={}",
            CallShown(key, scenario),
            if *approved { "approved" } else { "rejected" }
        ),
        Payload::Human(HumanMsg::Withdraw { key, .. }) => write!(out, "withdraw {}", CallShown(key, scenario)),
        Payload::Tool(ToolMsg::Compensate { conv, of, call, step }) => write!(
            out,
            "compensate conv={conv} call={} of={} args={} step={step}",
            call.id,
            tool_name(*of),
            call.args_text()
        ),
        Payload::User(UserMsg::Compensable { conv, tool, call }) => {
            write!(
                out,
                "compensable conv={conv} call={} tool={}",
                call.id,
                tool_name(*tool)
            )
        }
        Payload::User(UserMsg::CompensationDue { conv }) => write!(out, "compensation_due conv={conv}"),
        Payload::User(UserMsg::Compensated {
            conv,
            tool,
            of,
            call_id,
            output,
        }) => write!(
            out,
            "compensated conv={conv} call={call_id} tool={} of={} output={}",
            tool_name(*tool),
            tool_name(*of),
            Quoted(clip(output))
        ),
        Payload::User(UserMsg::Begin) => write!(out, "begin"),
        Payload::User(UserMsg::Arrive { traffic, index }) => {
            out.lit("arrive traffic=").num(*traffic).lit(" index=").num(*index);
            Ok(())
        }
        Payload::User(UserMsg::Answer { conv, text, status, .. }) => {
            out.lit("answer conv=").num(*conv).lit(" status=").lit(status.name());
            out.lit(" text=").quoted(text);
            Ok(())
        }
        Payload::User(UserMsg::LlmReply { conv, reply }) => {
            out.lit("llm_reply conv=").num(*conv).lit(" ");
            reply.summarize(scenario, out);
            Ok(())
        }
        Payload::User(UserMsg::End { conv, ending, turns }) => {
            out.lit("end conv=").num(*conv).lit(" ending=").lit(ending.name());
            out.lit(" user_turns=").num(*turns);
            Ok(())
        }
        Payload::Supervisor(SupervisorMsg::ChildFailed { child_id, error, .. }) => {
            write!(out, "child_failed child={child_id} error={}", Quoted(clip(error)))
        }
        Payload::Guardrail(GuardrailMsg::Check(checked)) => {
            out.lit("check stage=")
                .lit(checked.stage.name())
                .lit(" conv=")
                .num(checked.conv);
            out.lit(" agent=").put(agent_name(checked.agent));
            out.lit(if checked.parallel { " parallel" } else { "" }).lit(" (");
            checked.subject.summarize(scenario, out);
            out.lit(")");
            Ok(())
        }
        Payload::Guardrail(GuardrailMsg::Reply(routed)) => {
            out.lit("llm_reply_via conv=").num(routed.conv).lit(" ");
            routed.reply.summarize(scenario, out);
            Ok(())
        }

        Payload::Agent(msg) => {
            summarize_agent(msg, scenario, out);
            Ok(())
        }
    };
}

/// Free text for a summary: clipped and quoted.
pub(crate) fn quoted_clip(text: &str) -> String {
    Quoted(clip(text)).to_string()
}

/// Free text in a summary: in double quotes, with `"` and `\` escaped. Our own rule rather than
/// `{:?}`, whose escaping of unusual characters can change between Rust versions.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        quote_into(f, self.0)
    }
}

/// Writes `text` in double quotes with `"` and `\` escaped. Runs without either are written
/// whole: most text has none.
fn quote_into(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    out.write_str("\"")?;
    let mut rest = text;
    while let Some(at) = rest.find(['"', '\\']) {
        out.write_str(&rest[..at])?;
        out.write_str("\\")?;
        // The quote or backslash itself, one byte.
        out.write_str(&rest[at..at + 1])?;
        rest = &rest[at + 1..];
    }
    out.write_str(rest)?;
    out.write_str("\"")
}

/// Appends to a trace summary without the formatting machinery: every delivery writes one, so
/// the most frequent messages are summarized with these. The bytes are those `write!` gives.
pub(crate) trait Summary {
    /// A constant of the summary's own wording, with nothing a JSON string escapes.
    fn lit(&mut self, text: &'static str) -> &mut Self;
    /// A name or a status.
    fn put(&mut self, text: &str) -> &mut Self;
    /// A decimal integer.
    fn num<I: itoa::Integer>(&mut self, n: I) -> &mut Self;
    /// Free text, clipped and quoted as [`Quoted`] does.
    fn quoted(&mut self, text: &str) -> &mut Self;
    /// Sixteen lowercase hex digits (`{:016x}`).
    fn hex16(&mut self, n: u64) -> &mut Self;
}

impl Summary for String {
    fn lit(&mut self, text: &'static str) -> &mut Self {
        self.push_str(text);
        self
    }

    fn put(&mut self, text: &str) -> &mut Self {
        self.push_str(text);
        self
    }

    fn num<I: itoa::Integer>(&mut self, n: I) -> &mut Self {
        self.push_str(itoa::Buffer::new().format(n));
        self
    }

    fn quoted(&mut self, text: &str) -> &mut Self {
        let _ = quote_into(self, clip(text));
        self
    }

    fn hex16(&mut self, n: u64) -> &mut Self {
        self.extend(hex16_digits(n).map(char::from));
        self
    }
}

/// `n` as sixteen lowercase hex digits (`{:016x}`).
pub(crate) fn hex16_digits(n: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (place, digit) in out.iter_mut().enumerate() {
        *digit = DIGITS[((n >> ((15 - place) * 4)) & 0xf) as usize];
    }
    out
}

/// Trace summaries keep at most this many characters of free text.
const SUMMARY_TEXT_CHARS_MAX: usize = 80;

/// `text` cut to its first [`SUMMARY_TEXT_CHARS_MAX`] characters.
pub(crate) fn clip(text: &str) -> &str {
    // A character is at least one byte: a text this short has no more characters to cut.
    if text.len() <= SUMMARY_TEXT_CHARS_MAX {
        return text;
    }
    // Where every character so far is one byte, the cut is at that many bytes.
    if text.as_bytes()[..SUMMARY_TEXT_CHARS_MAX].is_ascii() {
        return &text[..SUMMARY_TEXT_CHARS_MAX];
    }
    match text.char_indices().nth(SUMMARY_TEXT_CHARS_MAX) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    /// Every event in the queue is moved several times; a variant that grows every message
    /// (an inline model reply on a new path, say) shows up in the kernel's cost per event.
    #[test]
    fn clipping_keeps_the_first_characters_whatever_their_width() {
        let slow = |text: &str| -> String { text.chars().take(super::SUMMARY_TEXT_CHARS_MAX).collect() };
        for text in [
            String::new(),
            "short".to_owned(),
            "a".repeat(80),
            "a".repeat(81),
            "a".repeat(200),
            "é".repeat(80),
            "é".repeat(41),
            format!("{}é{}", "a".repeat(79), "b".repeat(10)),
            format!("{}é{}", "a".repeat(80), "b".repeat(10)),
            format!("€{}", "a".repeat(100)),
        ] {
            assert_eq!(super::clip(&text), slow(&text), "{text:?}");
        }
    }

    #[test]
    fn messages_stay_small_enough_to_move_cheaply() {
        assert!(
            std::mem::size_of::<super::Payload>() <= 88,
            "{}",
            std::mem::size_of::<super::Payload>()
        );
        assert!(std::mem::size_of::<super::Envelope>() <= 128);
    }
}
