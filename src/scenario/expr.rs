//! The small expression language of behaviour rules (`when = "turn == 1 && last_tool == 'search_kb'"`)
//! and the `{{variable}}` templates of answers, tool arguments and tool outputs.
//!
//! Expressions are parsed and type-checked when the scenario is validated, so a run never meets a
//! malformed rule.

use std::fmt::Write as _;

/// A variable a rule or template can read about the conversation at hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    /// This agent's turn in the conversation, from 1.
    Turn,
    /// Tool calls this agent has made in the conversation.
    ToolCalls,
    /// Name of the tool whose result came back last, or `''`.
    LastTool,
    /// Output of that tool, or `''`.
    LastToolOutput,
    /// The user's message that opened the conversation.
    User,
    /// `'user'`, or the agent that handed the conversation over.
    From,
    /// This agent's name.
    Agent,
    /// The conversation's number, from 0.
    Conversation,
    /// Answers received from delegated agents in this conversation.
    Delegations,
    /// The answers of the last round of delegation, one per line.
    Results,
    /// In a guardrail's `script` check: the text being checked.
    Text,
    /// A guardrail's feedback when it asked the model to try again (`retry`), or `''`.
    Feedback,
    /// User messages in the transcript so far (1 for a conversation's opening message).
    UserTurn,
    /// The latest user message in the transcript, or `''`.
    LastUser,
    /// The text of every message in the transcript (user, model, tool results), one per line.
    History,
    /// The names of the tools called in the transcript, one per line, in order.
    ToolsCalled,
    /// The agent's latest answer in the transcript (its last assistant text), or `''`.
    Answer,
}

/// Every variable, with its name and type, for parsing and for error messages.
pub const VARIABLES: [(&str, Var, Type); 17] = [
    ("turn", Var::Turn, Type::Int),
    ("tool_calls", Var::ToolCalls, Type::Int),
    ("last_tool", Var::LastTool, Type::Str),
    ("last_tool_output", Var::LastToolOutput, Type::Str),
    ("user", Var::User, Type::Str),
    ("from", Var::From, Type::Str),
    ("agent", Var::Agent, Type::Str),
    ("conversation", Var::Conversation, Type::Int),
    ("delegations", Var::Delegations, Type::Int),
    ("results", Var::Results, Type::Str),
    ("text", Var::Text, Type::Str),
    ("feedback", Var::Feedback, Type::Str),
    ("user_turn", Var::UserTurn, Type::Int),
    ("last_user", Var::LastUser, Type::Str),
    ("history", Var::History, Type::Str),
    ("tools_called", Var::ToolsCalled, Type::Str),
    ("answer", Var::Answer, Type::Str),
];

/// The type of a value in an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Int,
    Str,
    Bool,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Int => "a number",
            Type::Str => "a string",
            Type::Bool => "true/false",
        }
    }
}

/// A value an expression evaluates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

/// What an expression or template can read.
pub trait Context {
    /// The value of `var` now.
    fn var(&self, var: Var) -> Value<'_>;
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

/// A leaf of an expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Var(Var),
    Int(i64),
    Str(String),
    Bool(bool),
}

/// A parsed, type-checked boolean expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Cmp(CmpOp, Operand, Operand),
    Truth(Operand),
}

/// A parse error: byte offset within the expression text, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    pub offset: usize,
    pub message: String,
}

impl Expr {
    /// Parses and type-checks `text`.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            position: 0,
            text_len: text.len(),
        };
        let expr = parser.or()?;
        if let Some(token) = parser.tokens.get(parser.position) {
            return Err(ExprError {
                offset: token.offset,
                message: format!(
                    "expected `&&`, `||` or the end of the condition, found {}",
                    token.kind.describe()
                ),
            });
        }
        Ok(expr)
    }

    /// Evaluates the expression against `context`.
    pub fn eval(&self, context: &dyn Context) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(context) || b.eval(context),
            Expr::And(a, b) => a.eval(context) && b.eval(context),
            Expr::Not(a) => !a.eval(context),
            Expr::Truth(operand) => match operand_value(operand, context) {
                Value::Bool(b) => b,
                Value::Int(i) => i != 0,
                Value::Str(s) => !s.is_empty(),
            },
            Expr::Cmp(op, left, right) => {
                let (l, r) = (operand_value(left, context), operand_value(right, context));
                match (l, r) {
                    (Value::Int(a), Value::Int(b)) => compare(*op, a.cmp(&b)),
                    (Value::Str(a), Value::Str(b)) if *op == CmpOp::Contains => a.contains(b),
                    (Value::Str(a), Value::Str(b)) => compare(*op, a.cmp(b)),
                    (Value::Bool(a), Value::Bool(b)) => compare(*op, a.cmp(&b)),
                    // Type-checked at parse time.
                    _ => false,
                }
            }
        }
    }
}

fn compare(op: CmpOp, ordering: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => ordering == Equal,
        CmpOp::Ne => ordering != Equal,
        CmpOp::Lt => ordering == Less,
        CmpOp::Le => ordering != Greater,
        CmpOp::Gt => ordering == Greater,
        CmpOp::Ge => ordering != Less,
        CmpOp::Contains => false,
    }
}

fn operand_value<'a>(operand: &'a Operand, context: &'a dyn Context) -> Value<'a> {
    match operand {
        Operand::Var(var) => context.var(*var),
        Operand::Int(i) => Value::Int(*i),
        Operand::Str(s) => Value::Str(s),
        Operand::Bool(b) => Value::Bool(*b),
    }
}

fn operand_type(operand: &Operand) -> Type {
    match operand {
        Operand::Var(var) => VARIABLES
            .iter()
            .find(|(_, v, _)| v == var)
            .map_or(Type::Str, |(_, _, t)| *t),
        Operand::Int(_) => Type::Int,
        Operand::Str(_) => Type::Str,
        Operand::Bool(_) => Type::Bool,
    }
}

/// Looks a variable up by name, with a suggestion when the name is a typo.
pub fn lookup_var(name: &str) -> Result<Var, String> {
    if let Some((_, var, _)) = VARIABLES.iter().find(|(n, _, _)| *n == name) {
        return Ok(*var);
    }
    let names = VARIABLES.iter().map(|(n, _, _)| *n);
    let hint = super::error::did_you_mean(name, names)
        .map(|s| format!("did you mean `{s}`? "))
        .unwrap_or_default();
    let list = VARIABLES.iter().map(|(n, _, _)| *n).collect::<Vec<_>>().join(", ");
    Err(format!("unknown variable `{name}`; {hint}expected one of {list}"))
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Ident(String),
    Int(i64),
    Str(String),
    Op(CmpOp),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            TokenKind::Ident(name) => format!("`{name}`"),
            TokenKind::Int(i) => format!("the number {i}"),
            TokenKind::Str(s) => format!("the string '{s}'"),
            TokenKind::Op(_) => "a comparison".to_owned(),
            TokenKind::And => "`&&`".to_owned(),
            TokenKind::Or => "`||`".to_owned(),
            TokenKind::Not => "`!`".to_owned(),
            TokenKind::Open => "`(`".to_owned(),
            TokenKind::Close => "`)`".to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    offset: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, ExprError> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            i += 1;
            continue;
        }
        let (kind, end) = match symbol(c, text.get(i..i + 2).unwrap_or("")) {
            Some((kind, len)) => (kind, i + len),
            None => match c {
                b'\'' | b'"' => string_token(text, start)?,
                b'0'..=b'9' => number_token(text, start)?,
                _ if c.is_ascii_alphabetic() || c == b'_' => word_token(text, start),
                _ => {
                    let found = text[i..].chars().next().unwrap_or(' ');
                    return Err(ExprError {
                        offset: start,
                        message: format!(
                            "expected a variable, a number, a 'string', a comparison (== != < <= > >= contains), && or ||, found `{found}`"
                        ),
                    });
                }
            },
        };
        i = end;
        tokens.push(Token { kind, offset: start });
    }
    Ok(tokens)
}

/// A parenthesis or operator starting with byte `c` (`two`: the two bytes from there), and its
/// length in bytes.
fn symbol(c: u8, two: &str) -> Option<(TokenKind, usize)> {
    let pair = match two {
        "&&" => Some(TokenKind::And),
        "||" => Some(TokenKind::Or),
        "==" => Some(TokenKind::Op(CmpOp::Eq)),
        "!=" => Some(TokenKind::Op(CmpOp::Ne)),
        "<=" => Some(TokenKind::Op(CmpOp::Le)),
        ">=" => Some(TokenKind::Op(CmpOp::Ge)),
        _ => None,
    };
    if let Some(kind) = pair {
        return Some((kind, 2));
    }
    let single = match c {
        b'(' => TokenKind::Open,
        b')' => TokenKind::Close,
        b'<' => TokenKind::Op(CmpOp::Lt),
        b'>' => TokenKind::Op(CmpOp::Gt),
        b'!' => TokenKind::Not,
        _ => return None,
    };
    Some((single, 1))
}

/// The quoted string starting at `start`, and the offset just past its closing quote.
fn string_token(text: &str, start: usize) -> Result<(TokenKind, usize), ExprError> {
    let quote = text.as_bytes()[start] as char;
    let end = text[start + 1..].find(quote).ok_or(ExprError {
        offset: start,
        message: "expected a closing quote for this string".to_owned(),
    })?;
    let value = text[start + 1..start + 1 + end].to_owned();
    Ok((TokenKind::Str(value), start + end + 2))
}

/// The integer starting at `start`, and the offset just past it.
fn number_token(text: &str, start: usize) -> Result<(TokenKind, usize), ExprError> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let value = text[start..i].parse().map_err(|_| ExprError {
        offset: start,
        message: "expected a number that fits in 64 bits".to_owned(),
    })?;
    Ok((TokenKind::Int(value), i))
}

/// The keyword or identifier starting at `start`, and the offset just past it.
fn word_token(text: &str, start: usize) -> (TokenKind, usize) {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
        i += 1;
    }
    let word = &text[start..i];
    let kind = match word {
        "contains" => TokenKind::Op(CmpOp::Contains),
        "and" => TokenKind::And,
        "or" => TokenKind::Or,
        "not" => TokenKind::Not,
        _ => TokenKind::Ident(word.to_owned()),
    };
    (kind, i)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    text_len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&TokenKind> {
        self.tokens.get(self.position).map(|t| &t.kind)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.position).map_or(self.text_len, |t| t.offset)
    }

    fn or(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.and()?;
        while self.peek() == Some(&TokenKind::Or) {
            self.position += 1;
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ExprError> {
        let mut left = self.not()?;
        while self.peek() == Some(&TokenKind::And) {
            self.position += 1;
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ExprError> {
        if self.peek() == Some(&TokenKind::Not) {
            self.position += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if self.peek() == Some(&TokenKind::Open) {
            self.position += 1;
            let inner = self.or()?;
            if self.peek() != Some(&TokenKind::Close) {
                return Err(ExprError {
                    offset: self.offset(),
                    message: "expected `)`".to_owned(),
                });
            }
            self.position += 1;
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let left_offset = self.offset();
        let left = self.operand()?;
        let Some(TokenKind::Op(op)) = self.peek().cloned() else {
            return Ok(Expr::Truth(left));
        };
        self.position += 1;
        let right_offset = self.offset();
        let right = self.operand()?;
        let (left_type, right_type) = (operand_type(&left), operand_type(&right));
        if left_type != right_type {
            return Err(ExprError {
                offset: right_offset,
                message: format!(
                    "expected {} to compare with the left side, found {}",
                    left_type.name(),
                    right_type.name()
                ),
            });
        }
        if op == CmpOp::Contains && left_type != Type::Str {
            return Err(ExprError {
                offset: left_offset,
                message: format!("expected a string before `contains`, found {}", left_type.name()),
            });
        }
        Ok(Expr::Cmp(op, left, right))
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let offset = self.offset();
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        match token.map(|t| t.kind) {
            Some(TokenKind::Int(i)) => Ok(Operand::Int(i)),
            Some(TokenKind::Str(s)) => Ok(Operand::Str(s)),
            Some(TokenKind::Ident(name)) if name == "true" => Ok(Operand::Bool(true)),
            Some(TokenKind::Ident(name)) if name == "false" => Ok(Operand::Bool(false)),
            Some(TokenKind::Ident(name)) => lookup_var(&name)
                .map(Operand::Var)
                .map_err(|message| ExprError { offset, message }),
            Some(other) => Err(ExprError {
                offset,
                message: format!(
                    "expected a variable, a number or a 'string', found {}",
                    other.describe()
                ),
            }),
            None => Err(ExprError {
                offset,
                message: "expected a variable, a number or a 'string', found the end of the condition".to_owned(),
            }),
        }
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    Var(Var),
    /// `{{args.NAME}}`: an argument of the tool call (tool outputs only).
    Arg(String),
}

/// A string with `{{variable}}` holes, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; `allow_args` permits `{{args.NAME}}` (in tool outputs).
    pub fn parse(text: &str, allow_args: bool) -> Result<Template, ExprError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Text(rest[..open].to_owned()));
            }
            let after_open = &rest[open + 2..];
            let close = after_open.find("}}").ok_or(ExprError {
                offset: consumed + open,
                message: "expected `}}` to close this `{{`".to_owned(),
            })?;
            let name = after_open[..close].trim();
            let offset = consumed + open + 2;
            if let Some(arg) = name.strip_prefix("args.") {
                if !allow_args {
                    return Err(ExprError {
                        offset,
                        message: "`{{args.NAME}}` is only available in a tool's output".to_owned(),
                    });
                }
                segments.push(Segment::Arg(arg.to_owned()));
            } else {
                let var = lookup_var(name).map_err(|message| ExprError { offset, message })?;
                segments.push(Segment::Var(var));
            }
            let advance = open + 2 + close + 2;
            consumed += advance;
            rest = &rest[advance..];
        }
        if !rest.is_empty() {
            segments.push(Segment::Text(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// A template with no holes.
    pub fn literal(text: &str) -> Template {
        Template {
            segments: vec![Segment::Text(text.to_owned())],
        }
    }

    /// Renders with `context`; `args` answers `{{args.NAME}}`.
    pub fn render(&self, context: &dyn Context, args: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Var(var) => match context.var(*var) {
                    Value::Int(i) => {
                        let _ = write!(out, "{i}");
                    }
                    Value::Str(s) => out.push_str(s),
                    Value::Bool(b) => {
                        let _ = write!(out, "{b}");
                    }
                },
                Segment::Arg(name) => out.push_str(&args(name).unwrap_or_default()),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Context for Fixed {
        fn var(&self, var: Var) -> Value<'_> {
            match var {
                Var::Turn => Value::Int(2),
                Var::LastTool => Value::Str("search_kb"),
                Var::User => Value::Str("I was charged twice"),
                _ => Value::Str(""),
            }
        }
    }

    #[test]
    fn conditions_evaluate_against_the_conversation() {
        let cases = [
            ("turn == 1", false),
            ("turn == 2 && last_tool == 'search_kb'", true),
            ("turn > 5 || user contains 'charged'", true),
            ("!(turn >= 2)", false),
            ("last_tool", true),
            ("last_tool_output", false),
        ];
        for (text, expected) in cases {
            assert_eq!(Expr::parse(text).unwrap().eval(&Fixed), expected, "{text}");
        }
    }

    #[test]
    fn conditions_are_type_checked_with_the_place_of_the_error() {
        let err = Expr::parse("turn == 'one'").unwrap_err();
        assert_eq!(err.offset, 8);
        assert!(err.message.contains("expected a number"), "{}", err.message);
        let err = Expr::parse("trun == 1").unwrap_err();
        assert!(err.message.contains("did you mean `turn`"), "{}", err.message);
        assert!(Expr::parse("turn ==").is_err());
        assert!(Expr::parse("turn == 1 1").is_err());
    }

    #[test]
    fn templates_fill_variables_and_arguments() {
        let template = Template::parse("Found for '{{user}}' via {{ last_tool }}: {{args.q}}", true).unwrap();
        let text = template.render(&Fixed, &|name| (name == "q").then(|| "refunds".to_owned()));
        assert_eq!(text, "Found for 'I was charged twice' via search_kb: refunds");
        assert!(Template::parse("{{args.q}}", false).is_err());
        assert!(Template::parse("{{usr}}", false).is_err());
        assert!(Template::parse("{{user", false).is_err());
    }
}
