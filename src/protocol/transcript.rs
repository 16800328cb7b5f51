//! A conversation's transcript: the chat messages in the OpenAI shape — user, assistant (text
//! and/or tool calls with their ids and arguments exactly as the model wrote them), tool results —
//! as the agent holding the conversation keeps them and sends them to its model.
//!
//! The system message is not stored: it is the instructions of whichever agent asks the model,
//! as in the OpenAI Agents SDK, where a handoff keeps the history and swaps the instructions.
//! A handoff appears as the SDK writes it: an assistant call of `transfer_to_<agent>` and its tool
//! message `{"assistant": "<agent>"}`. A delegation appears as agents-as-tools do: an assistant
//! call of `ask_<agent>` with `{"input": task}` per delegate, and each answer as its tool message.
//!
//! Cloning is cheap (the messages are shared); appending copies only when another holder (a
//! request in flight, a handed-off copy) still shares them.

use std::sync::Arc;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
    Tool,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// One tool call in an assistant message, as it goes over the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatCall {
    /// The call's id (`call_…`): the model's own for a live model.
    pub id: Arc<str>,
    pub name: Arc<str>,
    /// The arguments exactly as the model wrote them.
    pub arguments: Arc<str>,
}

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: Role,
    /// Text; `""` for an assistant message with only tool calls.
    pub content: Arc<str>,
    /// An assistant message's tool calls.
    pub tool_calls: Vec<ChatCall>,
    /// A tool message's call id.
    pub tool_call_id: Option<Arc<str>>,
}

impl ChatMessage {
    pub fn user(text: Arc<str>) -> ChatMessage {
        ChatMessage {
            role: Role::User,
            content: text,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn assistant(text: Arc<str>) -> ChatMessage {
        ChatMessage {
            role: Role::Assistant,
            content: text,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }

    pub fn calls(calls: Vec<ChatCall>) -> ChatMessage {
        ChatMessage {
            role: Role::Assistant,
            content: Arc::from(""),
            tool_calls: calls,
            tool_call_id: None,
        }
    }

    pub fn tool(call_id: Arc<str>, output: Arc<str>) -> ChatMessage {
        ChatMessage {
            role: Role::Tool,
            content: output,
            tool_calls: Vec::new(),
            tool_call_id: Some(call_id),
        }
    }

    /// Bytes of text the message carries: content, call names, ids and arguments.
    pub fn bytes(&self) -> u64 {
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.id.len() + c.name.len() + c.arguments.len())
            .sum();
        (self.content.len() + calls + self.tool_call_id.as_deref().map_or(0, str::len)) as u64
    }
}

/// Tokens every message costs besides its text (role and framing), as OpenAI's guide to counting
/// chat tokens counts them; a request adds [`REPLY_PRIMING_TOKENS`] once.
pub const MESSAGE_OVERHEAD_TOKENS: u32 = 3;
/// Tokens every request costs once, for priming the reply.
pub const REPLY_PRIMING_TOKENS: u32 = 3;

/// Estimated tokens of `text`: ⌈chars / 4⌉.
pub fn text_tokens(text: &str) -> u32 {
    (text.chars().count() as u32).div_ceil(4)
}

/// One message with what is known of the transcript up to and including it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    message: ChatMessage,
    /// A hash of every message up to here: equal values mean equal prefixes.
    prefix_hash: u64,
    prefix_tokens: u32,
    prefix_bytes: u64,
}

/// The ordered messages of one conversation, as one agent holds them. Keeps running hashes,
/// tokens and bytes, so that a request's size, its digest and the prefix it shares with the
/// previous request cost nothing per call, however long the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    entries: Arc<Vec<Entry>>,
}

impl Default for Transcript {
    /// An empty transcript, sharing one allocation with every other empty one.
    fn default() -> Transcript {
        static EMPTY: std::sync::OnceLock<Arc<Vec<Entry>>> = std::sync::OnceLock::new();
        Transcript {
            entries: EMPTY.get_or_init(|| Arc::new(Vec::new())).clone(),
        }
    }
}

/// What the prompt cache keeps of a request: the prefix hashes and tokens of its messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixMarks {
    marks: Vec<(u64, u32)>,
}

impl Transcript {
    pub fn new() -> Transcript {
        Transcript::default()
    }

    /// The messages, oldest first.
    pub fn messages(&self) -> impl DoubleEndedIterator<Item = &ChatMessage> + ExactSizeIterator {
        self.entries.iter().map(|e| &e.message)
    }

    pub fn get(&self, index: usize) -> Option<&ChatMessage> {
        self.entries.get(index).map(|e| &e.message)
    }

    pub fn last(&self) -> Option<&ChatMessage> {
        self.entries.last().map(|e| &e.message)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn push(&mut self, message: ChatMessage) {
        let entries = Arc::make_mut(&mut self.entries);
        let entry = entry_after(entries.last(), message);
        entries.push(entry);
    }

    /// Rebuilds the running values from `from` on, after messages changed or went.
    fn restamp(entries: &mut [Entry], from: usize) {
        for i in from..entries.len() {
            let (before, rest) = entries.split_at_mut(i);
            let (prefix_hash, prefix_tokens, prefix_bytes) = stamp(before.last(), &rest[0].message);
            let entry = &mut rest[0];
            (entry.prefix_hash, entry.prefix_tokens, entry.prefix_bytes) = (prefix_hash, prefix_tokens, prefix_bytes);
        }
    }

    /// Keeps only the last `n` messages, starting at a user or assistant message so that no
    /// tool result is left without its call.
    pub fn keep_last(&mut self, n: usize) {
        self.keep_last_before(n, 0);
    }

    /// Keeps the last `n` of the messages before the last `tail` ones, and those `tail` (a
    /// handoff's `handoff_history = N`: N messages of the conversation, then the transfer call and
    /// its result), never starting at a tool result whose call was cut.
    pub fn keep_last_before(&mut self, n: usize, tail: usize) {
        let body = self.entries.len().saturating_sub(tail);
        let mut start = body.saturating_sub(n);
        while start < body && self.get(start).is_some_and(|m| m.role == Role::Tool) {
            start += 1;
        }
        if start > 0 {
            let entries = Arc::make_mut(&mut self.entries);
            entries.drain(..start);
            Transcript::restamp(entries, 0);
        }
    }

    /// Keeps the first `n` messages (a reset memory: back to how the conversation opened).
    pub fn keep_first(&mut self, n: usize) {
        if self.entries.len() > n {
            Arc::make_mut(&mut self.entries).truncate(n);
        }
    }

    /// Replaces the text of the message at `index`.
    pub fn set_content(&mut self, index: usize, content: Arc<str>) {
        if index >= self.entries.len() {
            return;
        }
        let entries = Arc::make_mut(&mut self.entries);
        entries[index].message.content = content;
        Transcript::restamp(entries, index);
    }

    /// Bytes of text in every message.
    pub fn bytes(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.prefix_bytes)
    }

    /// Estimated tokens of the messages: their text, their calls, and the per-message overhead.
    pub fn tokens(&self) -> u32 {
        self.entries.last().map_or(0, |e| e.prefix_tokens)
    }

    /// What the prompt cache keeps of this transcript.
    pub fn marks(&self) -> PrefixMarks {
        PrefixMarks {
            marks: self.entries.iter().map(|e| (e.prefix_hash, e.prefix_tokens)).collect(),
        }
    }

    /// Tokens of the longest common prefix with an earlier transcript, in whole messages.
    pub fn common_prefix_tokens(&self, earlier: &PrefixMarks) -> u32 {
        // Prefix hashes agree up to the first differing message and not after it: the last
        // agreeing index is found by bisection.
        let agree = |i: usize| earlier.marks.get(i).map(|m| m.0) == self.entries.get(i).map(|e| e.prefix_hash);
        let (mut low, mut high) = (0, earlier.marks.len().min(self.entries.len()));
        while low < high {
            let mid = (low + high) / 2;
            if agree(mid) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        match low {
            0 => 0,
            n => earlier.marks[n - 1].1,
        }
    }

    /// User messages so far.
    pub fn user_turns(&self) -> u32 {
        self.messages().filter(|m| m.role == Role::User).count() as u32
    }

    /// The first user message (the one that opened the conversation), or `""`.
    pub fn first_user(&self) -> &str {
        self.messages()
            .find(|m| m.role == Role::User)
            .map_or("", |m| &m.content)
    }

    /// The latest user message, or `""`.
    pub fn last_user(&self) -> &str {
        self.messages()
            .rev()
            .find(|m| m.role == Role::User)
            .map_or("", |m| &m.content)
    }

    /// The names of the tools called so far, one per line, in order.
    pub fn tools_called(&self) -> String {
        let names: Vec<&str> = self
            .messages()
            .filter(|m| m.role == Role::Assistant)
            .flat_map(|m| m.tool_calls.iter().map(|c| &*c.name))
            .collect();
        names.join("\n")
    }

    /// The agent's latest answer: the last assistant message with text, or `""`.
    pub fn last_answer(&self) -> &str {
        self.messages()
            .rev()
            .find(|m| m.role == Role::Assistant && !m.content.is_empty())
            .map_or("", |m| &m.content)
    }

    /// The conversation as the other side sees it: user and assistant swap roles, and what only
    /// the agent saw (tool calls, tool results) is left out. A user simulator is sent this: to
    /// it, the agent's answers are the input. Flipping twice gives the dialogue back.
    pub fn flipped(&self) -> Transcript {
        let mut out = Transcript::new();
        for message in self.messages() {
            let role = match message.role {
                Role::User => Role::Assistant,
                Role::Assistant if !message.content.is_empty() => Role::User,
                _ => continue,
            };
            out.push(ChatMessage {
                role,
                content: message.content.clone(),
                tool_calls: Vec::new(),
                tool_call_id: None,
            });
        }
        out
    }

    /// The index of the latest message with this role.
    pub fn last_index_of(&self, role: Role) -> Option<usize> {
        self.entries.iter().rposition(|e| e.message.role == role)
    }

    /// Tool calls made so far (every call of every assistant message).
    pub fn calls_made(&self) -> u32 {
        self.messages().map(|m| m.tool_calls.len() as u32).sum()
    }

    /// Every message's text, one per line, for text checks over the whole history.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for message in self.messages() {
            let parts = std::iter::once(&*message.content).chain(message.tool_calls.iter().map(|c| &*c.arguments));
            for part in parts.filter(|p| !p.is_empty()) {
                if !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(part);
            }
        }
        text
    }

    /// A digest of the messages (16 hex digits): two runs that sent different histories show
    /// different digests in the trace.
    pub fn digest(&self) -> String {
        format!("{:016x}", self.digest_u64())
    }

    /// The fingerprint [`Transcript::digest`] shows.
    pub fn digest_u64(&self) -> u64 {
        self.entries.last().map_or(0, |e| e.prefix_hash)
    }
}

/// The entry for `message` after `previous`: its prefix hash is FNV-1a (64 bits) over the previous
/// one and the message's fields, each with its length — a fingerprint that is the same on every
/// machine and cheap enough to take for every message; it tells histories apart, it is not a
/// cryptographic digest.
fn entry_after(previous: Option<&Entry>, message: ChatMessage) -> Entry {
    let (prefix_hash, prefix_tokens, prefix_bytes) = stamp(previous, &message);
    Entry {
        prefix_hash,
        prefix_tokens,
        prefix_bytes,
        message,
    }
}

/// The running hash, tokens and bytes of a transcript up to and including `message`.
fn stamp(previous: Option<&Entry>, message: &ChatMessage) -> (u64, u32, u64) {
    let (hash, tokens, bytes) =
        previous.map_or((FNV_OFFSET, 0, 0), |e| (e.prefix_hash, e.prefix_tokens, e.prefix_bytes));
    let mut h = Fnv(hash);
    h.field(message.role.name());
    h.field(&message.content);
    h.field(message.tool_call_id.as_deref().unwrap_or(""));
    h.number(message.tool_calls.len() as u64);
    for call in &message.tool_calls {
        h.field(&call.id);
        h.field(&call.name);
        h.field(&call.arguments);
    }
    (
        h.0,
        tokens.saturating_add(message_tokens(message)),
        bytes + message.bytes(),
    )
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// `FNV_PRIME_POWERS[k]` is `FNV_PRIME` to the `k`th power (wrapping): FNV-1a over `k` zero
/// bytes multiplies by it, since xor with a zero byte changes nothing.
const FNV_PRIME_POWERS: [u64; 9] = {
    let mut powers = [1u64; 9];
    let mut k = 1;
    while k < powers.len() {
        powers[k] = powers[k - 1].wrapping_mul(FNV_PRIME);
        k += 1;
    }
    powers
};

/// FNV-1a, 64 bits.
struct Fnv(u64);

impl Fnv {
    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(FNV_PRIME);
        }
    }

    /// `n`'s eight little-endian bytes. Its high zero bytes (all but one or two, for a length)
    /// are one multiplication together instead of one each: the same hash.
    fn number(&mut self, n: u64) {
        let significant = 8 - (n.leading_zeros() / 8) as usize;
        self.bytes(&n.to_le_bytes()[..significant]);
        self.0 = self.0.wrapping_mul(FNV_PRIME_POWERS[8 - significant]);
    }

    fn field(&mut self, text: &str) {
        self.number(text.len() as u64);
        self.bytes(text.as_bytes());
    }
}

/// One message's estimated tokens.
pub fn message_tokens(message: &ChatMessage) -> u32 {
    let calls: u32 = message
        .tool_calls
        .iter()
        .map(|c| text_tokens(&c.name) + text_tokens(&c.arguments) + MESSAGE_OVERHEAD_TOKENS)
        .sum();
    MESSAGE_OVERHEAD_TOKENS + text_tokens(&message.content) + calls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_hashes_as_its_eight_bytes_do() {
        for n in [0u64, 1, 9, 255, 256, 4_096, 65_535, 1 << 40, u64::MAX - 1, u64::MAX] {
            let mut fast = Fnv(FNV_OFFSET);
            fast.number(n);
            let mut bytewise = Fnv(FNV_OFFSET);
            bytewise.bytes(&n.to_le_bytes());
            assert_eq!(fast.0, bytewise.0, "{n}");
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> ChatCall {
        ChatCall {
            id: Arc::from(id),
            name: Arc::from(name),
            arguments: Arc::from(arguments),
        }
    }

    fn sample() -> Transcript {
        let mut t = Transcript::new();
        t.push(ChatMessage::user(Arc::from("where is A1?")));
        t.push(ChatMessage::calls(vec![call("call_0", "lookup", "{\"id\":\"A1\"}")]));
        t.push(ChatMessage::tool(Arc::from("call_0"), Arc::from("shipped")));
        t.push(ChatMessage::assistant(Arc::from("It shipped.")));
        t
    }

    #[test]
    fn tokens_count_text_calls_and_the_overhead_of_every_message() {
        let t = sample();
        // user: 3 + 3; calls: 3 + (2 + 3 + 3); tool: 3 + 2; assistant: 3 + 3
        assert_eq!(t.tokens(), 6 + 11 + 5 + 6);
        assert_eq!(t.common_prefix_tokens(&t.marks()), t.tokens());
        assert_eq!(t.bytes(), 12 + (6 + 6 + 11) + (7 + 6) + 11);
    }

    #[test]
    fn the_common_prefix_stops_at_the_first_changed_message() {
        let a = sample();
        let mut b = a.clone();
        b.set_content(2, Arc::from("lost"));
        assert_eq!(b.common_prefix_tokens(&a.marks()), 6 + 11);
        assert_ne!(a.digest(), b.digest());
        assert_eq!(a.digest(), sample().digest());
        // A longer transcript that extends an earlier one shares all of it.
        let mut c = a.clone();
        c.push(ChatMessage::user(Arc::from("and B2?")));
        assert_eq!(c.common_prefix_tokens(&a.marks()), a.tokens());
        assert_eq!(a.common_prefix_tokens(&c.marks()), a.tokens());
        // Changed and changed back: the running values are rebuilt.
        b.set_content(2, Arc::from("shipped"));
        assert_eq!(b, a);
    }

    #[test]
    fn keeping_the_last_messages_never_starts_with_an_orphaned_tool_result() {
        let mut t = sample();
        t.keep_last(2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.get(0).unwrap().role, Role::Assistant);
        assert_eq!(t.tokens(), 6);
    }

    #[test]
    fn keeping_the_last_messages_before_a_tail_keeps_the_tail_whole() {
        let mut t = sample();
        let len = t.len();
        let tail: Vec<ChatMessage> = t.messages().skip(len - 2).cloned().collect();
        t.keep_last_before(1, 2);
        assert_eq!(t.len(), 3, "one message of the body, then the tail");
        assert_eq!(t.messages().skip(1).cloned().collect::<Vec<_>>(), tail);
        let mut all = sample();
        all.keep_last_before(100, 2);
        assert_eq!(all, sample());
    }

    #[test]
    fn clones_share_until_one_of_them_changes() {
        let a = sample();
        let mut b = a.clone();
        b.push(ChatMessage::user(Arc::from("thanks")));
        assert_eq!(a.len(), 4);
        assert_eq!(b.len(), 5);
        assert_eq!(b.user_turns(), 2);
        assert_eq!(b.last_user(), "thanks");
        assert_eq!(b.first_user(), "where is A1?");
        assert_eq!(b.calls_made(), 1);
    }
}
