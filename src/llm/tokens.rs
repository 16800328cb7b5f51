//! Token estimates: about four characters a token, the same on every run and machine.
//!
//! A request's input tokens are counted from what it sends: the system message (the agent's
//! instructions), the tool definitions as JSON, and every message of the transcript, each message
//! with [`MESSAGE_OVERHEAD_TOKENS`] for its role and framing, plus [`REPLY_PRIMING_TOKENS`] once.

/// Estimated tokens of `text`: ⌈chars / 4⌉, and at least 1 for non-empty text.
pub use crate::protocol::transcript::text_tokens as estimate_tokens;
pub use crate::protocol::transcript::{text_tokens, MESSAGE_OVERHEAD_TOKENS, REPLY_PRIMING_TOKENS};
use crate::protocol::Caller;
use crate::scenario::Scenario;

/// Tokens of what every call of this caller sends besides the transcript: the system message and
/// the tool definitions (its tools, one per handoff and delegate) as the request carries them.
/// Counted once per scenario, for all callers, and kept in it.
pub fn instruction_tokens(scenario: &Scenario, caller: Caller) -> u32 {
    let (agents, users) = scenario.derived.instruction_tokens.get_or_init(|| {
        let agents = (0..scenario.agents.len()).map(|a| count_instruction_tokens(scenario, Caller::Agent(a)));
        let users = (0..scenario.users.len()).map(|u| count_instruction_tokens(scenario, Caller::User(u)));
        (agents.collect(), users.collect())
    });
    match caller {
        Caller::Agent(a) => agents[a],
        Caller::User(u) => users[u],
    }
}

fn count_instruction_tokens(scenario: &Scenario, caller: Caller) -> u32 {
    let instructions = caller.instructions(scenario);
    let system = if instructions.is_empty() {
        0
    } else {
        MESSAGE_OVERHEAD_TOKENS + text_tokens(instructions)
    };
    let tools: u32 = super::live::tool_definitions(scenario, caller)
        .iter()
        .map(|tool| text_tokens(&tool.to_string()))
        .sum();
    system + tools
}

#[cfg(test)]
mod tests {
    use super::estimate_tokens;

    #[test]
    fn four_characters_make_a_token() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("a"), 1);
        assert_eq!(estimate_tokens("abcd"), 1);
        assert_eq!(estimate_tokens("abcde"), 2);
    }
}
