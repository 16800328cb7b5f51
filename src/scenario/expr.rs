//! The small expression language of behaviour rules (`when = "turn == 1 && last_tool == 'search_kb'"`)
//! and the `{{variable}}` templates of answers, tool arguments and tool outputs.
//!
//! Expressions are parsed and type-checked when the scenario is validated, so a run never meets a
//! malformed rule.

use std::fmt::Write as _;
use std::sync::Arc;

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
    /// A decimal number (amounts, prices), exact to a millionth.
    Dec,
    Str,
    Bool,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Int => "a number",
            Type::Dec => "a decimal number",
            Type::Str => "a string",
            Type::Bool => "true/false",
        }
    }

    /// Whole and decimal numbers compare and add with each other.
    pub fn is_number(self) -> bool {
        matches!(self, Type::Int | Type::Dec)
    }

    /// Whether a value of type `other` can stand where this type is expected.
    pub fn accepts(self, other: Type) -> bool {
        self == other || (self == Type::Dec && other == Type::Int)
    }
}

/// Millionths in one: decimal numbers are fixed-point, so that sums of amounts are exact
/// (0.1 + 0.2 == 0.3) and the same on every machine.
pub const DEC_ONE: i64 = 1_000_000;

/// What a decimal number must be, for errors: millionths in 64 bits.
pub const DEC_EXPECTED: &str =
    "a number with at most six decimals, between -9223372036854.775807 and 9223372036854.775807";

/// A value an expression evaluates to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    /// A decimal number in millionths ([`DEC_ONE`]).
    Dec(i64),
    Str(&'a str),
    Bool(bool),
}

/// A decimal number in millionths, written the shortest exact way (`2600`, `12.5`, `-0.25`).
pub fn format_dec(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let abs = micros.unsigned_abs();
    let (whole, frac) = (abs / DEC_ONE as u64, abs % DEC_ONE as u64);
    if frac == 0 {
        return format!("{sign}{whole}");
    }
    let digits = format!("{frac:06}");
    format!("{sign}{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a decimal number (`12`, `-3.75`) into millionths; `None` when it is not one or has
/// more than six decimals.
pub fn parse_dec(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || frac.len() > 6 {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let whole: i64 = whole.parse().ok()?;
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    let value = whole.checked_mul(DEC_ONE)?.checked_add(frac)?;
    Some(if negative { -value } else { value })
}

/// A dotted name a scope resolved (`args.room`, `room.free`): which group of values it reads
/// (`slot`) and which one (`field`). What slots mean is the scope's and its context's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Path {
    pub slot: u32,
    pub field: u32,
}

/// What an expression or template can read.
pub trait Context {
    /// The value of `var` now.
    fn var(&self, var: Var) -> Value<'_>;
    /// The value of a resolved path; only contexts whose scope resolves paths are asked.
    fn path(&self, _path: Path) -> Value<'_> {
        Value::Str("")
    }
}

/// The names an expression may use besides the conversation's variables: the arguments of a
/// tool call, the records it looked up, the fields of a record.
pub trait Scope {
    /// A dotted name (`args.room`, `room.free`), or a bare one the scope claims (a record's field
    /// in a world check): its path and type; `Ok(None)` when the scope does not know the name.
    fn resolve(&self, name: &str) -> Result<Option<(Path, Type)>, String>;
    /// Whether the conversation's variables (`turn`, `user`, …) can be read.
    fn variables(&self) -> bool {
        true
    }
}

/// The scope of agent and user rules: the conversation's variables, no paths.
pub struct Conversation;

impl Scope for Conversation {
    fn resolve(&self, _name: &str) -> Result<Option<(Path, Type)>, String> {
        Ok(None)
    }
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

/// An arithmetic operator on numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
}

/// A value in an expression: a leaf, or arithmetic over two of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operand {
    Var(Var),
    Path(Path, Type),
    Int(i64),
    /// A decimal literal, in millionths.
    Dec(i64),
    Str(String),
    Bool(bool),
    Arith(ArithOp, Box<Operand>, Box<Operand>),
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
    /// Parses and type-checks `text` over the conversation's variables.
    pub fn parse(text: &str) -> Result<Expr, ExprError> {
        Expr::parse_in(text, &Conversation)
    }

    /// Parses and type-checks `text` with the names of `scope`.
    pub fn parse_in(text: &str, scope: &dyn Scope) -> Result<Expr, ExprError> {
        parse_whole(text, scope, Parser::or, "`&&`, `||` or the end of the condition")
    }

    /// Evaluates the expression against `context`.
    pub fn eval(&self, context: &dyn Context) -> bool {
        match self {
            Expr::Or(a, b) => a.eval(context) || b.eval(context),
            Expr::And(a, b) => a.eval(context) && b.eval(context),
            Expr::Not(a) => !a.eval(context),
            Expr::Truth(operand) => match operand_value(operand, context) {
                Value::Bool(b) => b,
                Value::Int(i) | Value::Dec(i) => i != 0,
                Value::Str(s) => !s.is_empty(),
            },
            Expr::Cmp(op, left, right) => {
                let (l, r) = (operand_value(left, context), operand_value(right, context));
                match (l, r) {
                    (Value::Int(a), Value::Int(b)) => compare(*op, a.cmp(&b)),
                    (a @ (Value::Int(_) | Value::Dec(_)), b @ (Value::Int(_) | Value::Dec(_))) => {
                        compare(*op, as_micros(&a).cmp(&as_micros(&b)))
                    }
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

/// Parses all of `text` with `rule`; what is left over is an error that says what could follow.
fn parse_whole<'s, T>(
    text: &str,
    scope: &'s dyn Scope,
    rule: fn(&mut Parser<'s>) -> Result<T, ExprError>,
    expected: &str,
) -> Result<T, ExprError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        tokens,
        position: 0,
        text_len: text.len(),
        scope,
    };
    let parsed = rule(&mut parser)?;
    if let Some(token) = parser.tokens.get(parser.position) {
        return Err(ExprError {
            offset: token.offset,
            message: format!("expected {expected}, found {}", token.kind.describe()),
        });
    }
    Ok(parsed)
}

/// A number as millionths (a whole number is scaled; saturating, never panicking).
fn as_micros(value: &Value) -> i128 {
    match value {
        Value::Int(i) => *i as i128 * DEC_ONE as i128,
        Value::Dec(d) => *d as i128,
        _ => 0,
    }
}

fn saturate(value: i128) -> i64 {
    value.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// Evaluates an operand against `context`; arithmetic saturates at the bounds of 64 bits.
pub fn operand_value<'a>(operand: &'a Operand, context: &'a dyn Context) -> Value<'a> {
    evaluate(operand, context, false).unwrap_or(Value::Int(0))
}

/// Evaluates an operand against `context`, or `None` where its arithmetic would leave 64 bits.
pub fn operand_value_checked<'a>(operand: &'a Operand, context: &'a dyn Context) -> Option<Value<'a>> {
    evaluate(operand, context, true)
}

/// `checked`: `None` on overflow; otherwise saturating, never `None`.
fn evaluate<'a>(operand: &'a Operand, context: &'a dyn Context, checked: bool) -> Option<Value<'a>> {
    Some(match operand {
        Operand::Var(var) => context.var(*var),
        Operand::Path(path, _) => context.path(*path),
        Operand::Int(i) => Value::Int(*i),
        Operand::Dec(d) => Value::Dec(*d),
        Operand::Str(s) => Value::Str(s),
        Operand::Bool(b) => Value::Bool(*b),
        Operand::Arith(op, left, right) => {
            let (l, r) = (evaluate(left, context, checked)?, evaluate(right, context, checked)?);
            if let (Value::Int(a), Value::Int(b)) = (&l, &r) {
                let (a, b) = (*a, *b);
                return match (op, checked) {
                    (ArithOp::Add, true) => a.checked_add(b).map(Value::Int),
                    (ArithOp::Sub, true) => a.checked_sub(b).map(Value::Int),
                    (ArithOp::Mul, true) => a.checked_mul(b).map(Value::Int),
                    (ArithOp::Add, false) => Some(Value::Int(a.saturating_add(b))),
                    (ArithOp::Sub, false) => Some(Value::Int(a.saturating_sub(b))),
                    (ArithOp::Mul, false) => Some(Value::Int(a.saturating_mul(b))),
                };
            }
            let (a, b) = (as_micros(&l), as_micros(&r));
            let overflow = if (a < 0) == (b < 0) { i128::MAX } else { i128::MIN };
            let exact = match op {
                ArithOp::Add => a.saturating_add(b),
                ArithOp::Sub => a.saturating_sub(b),
                ArithOp::Mul => a.checked_mul(b).map_or(overflow, |p| p / DEC_ONE as i128),
            };
            match i64::try_from(exact) {
                Ok(value) => Value::Dec(value),
                Err(_) if checked => return None,
                Err(_) => Value::Dec(saturate(exact)),
            }
        }
    })
}

/// The type of an operand (type-checked when parsed).
pub fn operand_type(operand: &Operand) -> Type {
    match operand {
        Operand::Var(var) => VARIABLES
            .iter()
            .find(|(_, v, _)| v == var)
            .map_or(Type::Str, |(_, _, t)| *t),
        Operand::Path(_, t) => *t,
        Operand::Int(_) => Type::Int,
        Operand::Dec(_) => Type::Dec,
        Operand::Str(_) => Type::Str,
        Operand::Bool(_) => Type::Bool,
        Operand::Arith(_, a, b) => match (operand_type(a), operand_type(b)) {
            (Type::Int, Type::Int) => Type::Int,
            _ => Type::Dec,
        },
    }
}

impl Operand {
    /// Parses and type-checks a value expression (`room.free - 1`, `args.amount * 1.2`).
    pub fn parse_in(text: &str, scope: &dyn Scope) -> Result<Operand, ExprError> {
        parse_whole(text, scope, Parser::sum, "`+`, `-`, `*` or the end of the value")
    }

    /// Whether the operand reads `var` anywhere.
    pub fn reads(&self, var: Var) -> bool {
        match self {
            Operand::Var(v) => *v == var,
            Operand::Arith(_, a, b) => a.reads(var) || b.reads(var),
            _ => false,
        }
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
    Dec(i64),
    Str(String),
    Op(CmpOp),
    Arith(ArithOp),
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
            TokenKind::Dec(d) => format!("the number {}", format_dec(*d)),
            TokenKind::Str(s) => format!("the string '{s}'"),
            TokenKind::Op(_) => "a comparison".to_owned(),
            TokenKind::Arith(_) => "an arithmetic operator".to_owned(),
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
                            "expected a variable, a number, a 'string', a comparison (== != < <= > >= contains), + - *, && or ||, found `{found}`"
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
        b'+' => TokenKind::Arith(ArithOp::Add),
        b'-' => TokenKind::Arith(ArithOp::Sub),
        b'*' => TokenKind::Arith(ArithOp::Mul),
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

/// The number starting at `start` (whole, or with up to six decimals), and the offset just
/// past it.
fn number_token(text: &str, start: usize) -> Result<(TokenKind, usize), ExprError> {
    let bytes = text.as_bytes();
    let mut i = start;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if i + 1 < bytes.len() && bytes[i] == b'.' && bytes[i + 1].is_ascii_digit() {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let value = parse_dec(&text[start..i]).ok_or(ExprError {
            offset: start,
            message: format!("expected {DEC_EXPECTED}"),
        })?;
        return Ok((TokenKind::Dec(value), i));
    }
    let value = text[start..i].parse().map_err(|_| ExprError {
        offset: start,
        message: "expected a number that fits in 64 bits".to_owned(),
    })?;
    Ok((TokenKind::Int(value), i))
}

/// The keyword or identifier (dotted: `room.free`) starting at `start`, and the offset just
/// past it.
fn word_token(text: &str, start: usize) -> (TokenKind, usize) {
    let bytes = text.as_bytes();
    let mut i = start;
    let name_byte = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    while i < bytes.len()
        && (name_byte(bytes[i]) || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(|&b| name_byte(b))))
    {
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

struct Parser<'s> {
    tokens: Vec<Token>,
    position: usize,
    text_len: usize,
    scope: &'s dyn Scope,
}

impl Parser<'_> {
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
            let start = self.position;
            self.position += 1;
            let inner = self.or();
            let closed = self.peek() == Some(&TokenKind::Close);
            let then_value = matches!(
                self.tokens.get(self.position + 1).map(|t| &t.kind),
                Some(TokenKind::Op(_) | TokenKind::Arith(_))
            );
            if closed && !then_value {
                self.position += 1;
                return inner;
            }
            // `(a + b) > c`: the parenthesis groups a value, not a condition.
            let first_error = match inner {
                Err(e) => e,
                Ok(_) if closed => ExprError {
                    offset: 0,
                    message: String::new(),
                },
                Ok(_) => ExprError {
                    offset: self.offset(),
                    message: "expected `)`".to_owned(),
                },
            };
            self.position = start;
            return self
                .comparison()
                .map_err(|e| if first_error.message.is_empty() { e } else { first_error });
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, ExprError> {
        let left_offset = self.offset();
        let left = self.sum()?;
        let Some(TokenKind::Op(op)) = self.peek().cloned() else {
            return Ok(Expr::Truth(left));
        };
        self.position += 1;
        let right_offset = self.offset();
        let right = self.sum()?;
        let (left_type, right_type) = (operand_type(&left), operand_type(&right));
        let numbers = left_type.is_number() && right_type.is_number();
        if left_type != right_type && !numbers {
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

    /// Additions and subtractions of products, left to right.
    fn sum(&mut self) -> Result<Operand, ExprError> {
        let mut left = self.product()?;
        while let Some(TokenKind::Arith(op @ (ArithOp::Add | ArithOp::Sub))) = self.peek().cloned() {
            self.position += 1;
            let right = self.product()?;
            left = self.arith(op, left, right)?;
        }
        Ok(left)
    }

    fn product(&mut self) -> Result<Operand, ExprError> {
        let mut left = self.operand()?;
        while let Some(TokenKind::Arith(ArithOp::Mul)) = self.peek() {
            self.position += 1;
            let right = self.operand()?;
            left = self.arith(ArithOp::Mul, left, right)?;
        }
        Ok(left)
    }

    /// Arithmetic is on numbers only.
    fn arith(&self, op: ArithOp, left: Operand, right: Operand) -> Result<Operand, ExprError> {
        for side in [&left, &right] {
            let t = operand_type(side);
            if !t.is_number() {
                return Err(ExprError {
                    offset: self.tokens.get(self.position.saturating_sub(1)).map_or(0, |t| t.offset),
                    message: format!("expected numbers on both sides of + - *, found {}", t.name()),
                });
            }
        }
        Ok(Operand::Arith(op, Box::new(left), Box::new(right)))
    }

    fn operand(&mut self) -> Result<Operand, ExprError> {
        let offset = self.offset();
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        match token.map(|t| t.kind) {
            Some(TokenKind::Int(i)) => Ok(Operand::Int(i)),
            Some(TokenKind::Dec(d)) => Ok(Operand::Dec(d)),
            Some(TokenKind::Str(s)) => Ok(Operand::Str(s)),
            Some(TokenKind::Arith(ArithOp::Sub)) => match self.operand()? {
                Operand::Int(i) => Ok(Operand::Int(-i)),
                Operand::Dec(d) => Ok(Operand::Dec(-d)),
                other if operand_type(&other).is_number() => {
                    Ok(Operand::Arith(ArithOp::Sub, Box::new(Operand::Int(0)), Box::new(other)))
                }
                _ => Err(ExprError {
                    offset,
                    message: "expected a number after `-`".to_owned(),
                }),
            },
            Some(TokenKind::Open) => {
                let inner = self.sum()?;
                if self.peek() != Some(&TokenKind::Close) {
                    return Err(ExprError {
                        offset: self.offset(),
                        message: "expected `)`".to_owned(),
                    });
                }
                self.position += 1;
                Ok(inner)
            }
            Some(TokenKind::Ident(name)) if name == "true" => Ok(Operand::Bool(true)),
            Some(TokenKind::Ident(name)) if name == "false" => Ok(Operand::Bool(false)),
            Some(TokenKind::Ident(name)) => match self.scope.resolve(&name) {
                Ok(Some((path, t))) => Ok(Operand::Path(path, t)),
                Err(message) => Err(ExprError { offset, message }),
                Ok(None) if !self.scope.variables() || name.contains('.') => Err(ExprError {
                    offset,
                    message: format!("unknown name `{name}` here"),
                }),
                Ok(None) => lookup_var(&name)
                    .map(Operand::Var)
                    .map_err(|message| ExprError { offset, message }),
            },
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
    Text(Arc<str>),
    Var(Var),
    /// `{{args.NAME}}`: an argument of the tool call (tool outputs only).
    Arg(String),
    /// A name the template's scope resolved (`{{room.hotel}}`).
    Path(Path),
}

/// A string with `{{variable}}` holes, parsed once.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    pub segments: Vec<Segment>,
}

impl Template {
    /// Parses `text`; `allow_args` permits `{{args.NAME}}` (in tool outputs).
    pub fn parse(text: &str, allow_args: bool) -> Result<Template, ExprError> {
        Template::parse_in(text, allow_args, &Conversation)
    }

    /// Parses `text` with the names of `scope` (tried before the conversation's variables).
    pub fn parse_in(text: &str, allow_args: bool, scope: &dyn Scope) -> Result<Template, ExprError> {
        let mut segments = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                segments.push(Segment::Text(Arc::from(&rest[..open])));
            }
            let after_open = &rest[open + 2..];
            let close = after_open.find("}}").ok_or(ExprError {
                offset: consumed + open,
                message: "expected `}}` to close this `{{`".to_owned(),
            })?;
            let offset = consumed + open + 2;
            if after_open[..close].contains("{{") {
                // `{{a ... {{b}}`: the first hole is never closed.
                return Err(ExprError {
                    offset: consumed + open,
                    message: "expected `}}` to close this `{{` before the next `{{`".to_owned(),
                });
            }
            let name = after_open[..close].trim();
            if let Some((path, _)) = scope.resolve(name).map_err(|message| ExprError { offset, message })? {
                segments.push(Segment::Path(path));
            } else if let Some(arg) = name.strip_prefix("args.") {
                if arg.is_empty() || !arg.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                    return Err(ExprError {
                        offset,
                        message: format!(
                            "expected `{{{{args.NAME}}}}` with an argument's name, found `{{{{{name}}}}}`"
                        ),
                    });
                }
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
            segments.push(Segment::Text(Arc::from(rest)));
        }
        Ok(Template { segments })
    }

    /// A template with no holes.
    pub fn literal(text: &str) -> Template {
        Template {
            segments: vec![Segment::Text(Arc::from(text))],
        }
    }

    /// [`Template::render`], shared: a template with no holes hands out its own text without
    /// copying it.
    pub fn render_shared(&self, context: &dyn Context, args: &dyn Fn(&str) -> Option<String>) -> Arc<str> {
        match self.segments.as_slice() {
            [Segment::Text(text)] => text.clone(),
            _ => Arc::from(self.render(context, args)),
        }
    }

    /// Renders with `context`; `args` answers `{{args.NAME}}`.
    pub fn render(&self, context: &dyn Context, args: &dyn Fn(&str) -> Option<String>) -> String {
        let mut out = String::with_capacity(self.len_estimate());
        for segment in &self.segments {
            match segment {
                Segment::Text(text) => out.push_str(text),
                Segment::Var(var) => write_value(&mut out, &context.var(*var)),
                Segment::Path(path) => write_value(&mut out, &context.path(*path)),
                Segment::Arg(name) => out.push_str(&args(name).unwrap_or_default()),
            }
        }
        out
    }
}

impl Template {
    /// The rendered text's length, guessed from its fixed text and a short value per hole, so
    /// that rendering seldom grows its string.
    fn len_estimate(&self) -> usize {
        const HOLE_BYTES: usize = 16;
        self.segments
            .iter()
            .map(|segment| match segment {
                Segment::Text(text) => text.len(),
                _ => HOLE_BYTES,
            })
            .sum()
    }
}

/// Appends a value as a template shows it.
pub fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Dec(d) => out.push_str(&format_dec(*d)),
        Value::Str(s) => out.push_str(s),
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
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
        // A hole left open before the next one is an error, not an argument named `q x {{args.r`.
        let open = Template::parse("paid {{args.q x {{args.r}}", true).unwrap_err();
        assert_eq!(open.offset, 5, "{open:?}");
        assert!(open.message.contains("close this `{{`"), "{open:?}");
        assert!(Template::parse("{{args.}}", true).is_err());
        assert!(Template::parse("{{args.a b}}", true).is_err());
        assert!(Template::parse("{{usr}}", false).is_err());
        assert!(Template::parse("{{user", false).is_err());
    }

    #[test]
    fn a_shared_rendering_equals_the_rendering_and_shares_fixed_text() {
        let no_args = |_: &str| None;
        for text in ["", "plain words", "turn {{turn}} for {{user}}", "{{turn}}"] {
            let template = Template::parse(text, false).unwrap();
            assert_eq!(
                &*template.render_shared(&Fixed, &no_args),
                template.render(&Fixed, &no_args)
            );
        }
        let fixed = Template::parse("plain words", false).unwrap();
        assert!(Arc::ptr_eq(
            &fixed.render_shared(&Fixed, &no_args),
            &fixed.render_shared(&Fixed, &no_args)
        ));
    }

    /// A scope with one record `room` (free: whole, price: decimal, hotel: string).
    struct Room;
    impl Scope for Room {
        fn resolve(&self, name: &str) -> Result<Option<(Path, Type)>, String> {
            let field = |field, t| Ok(Some((Path { slot: 1, field }, t)));
            match name {
                "room.free" => field(0, Type::Int),
                "room.price" => field(1, Type::Dec),
                "room.hotel" => field(2, Type::Str),
                _ if name.contains('.') => Err(format!("no {name}")),
                _ => Ok(None),
            }
        }
    }
    struct RoomValues;
    impl Context for RoomValues {
        fn var(&self, var: Var) -> Value<'_> {
            Fixed.var(var)
        }
        fn path(&self, path: Path) -> Value<'_> {
            match path.field {
                0 => Value::Int(1),
                1 => Value::Dec(240_500_000),
                _ => Value::Str("Grand"),
            }
        }
    }

    #[test]
    fn decimals_are_exact_and_mix_with_whole_numbers() {
        assert_eq!(parse_dec("0.1"), Some(100_000));
        assert_eq!(parse_dec("-3.75"), Some(-3_750_000));
        assert_eq!(parse_dec("1.0000001"), None, "more than six decimals");
        assert_eq!(parse_dec("1e3"), None);
        assert_eq!(format_dec(240_500_000), "240.5");
        assert_eq!(format_dec(-2_200_000_000), "-2200");
        let sum = Operand::parse_in("0.1 + 0.2", &Conversation).unwrap();
        assert_eq!(
            operand_value(&sum, &Fixed),
            Value::Dec(300_000),
            "exact, unlike floating point"
        );
        assert!(Expr::parse_in("0.1 + 0.2 == 0.3", &Conversation).unwrap().eval(&Fixed));
    }

    #[test]
    fn checked_arithmetic_tells_an_overflow_from_a_value_at_the_bound() {
        let at_bound = Operand::parse_in("9223372036854.775806 + 0.000001", &Conversation).unwrap();
        assert_eq!(operand_value(&at_bound, &Fixed), Value::Dec(i64::MAX));
        assert_eq!(operand_value_checked(&at_bound, &Fixed), Some(Value::Dec(i64::MAX)));
        let past = Operand::parse_in("9223372036854.775807 + 1", &Conversation).unwrap();
        assert_eq!(operand_value(&past, &Fixed), Value::Dec(i64::MAX), "saturates");
        assert_eq!(operand_value_checked(&past, &Fixed), None);
        let whole = Operand::parse_in("9223372036854775807 * 2", &Conversation).unwrap();
        assert_eq!(operand_value(&whole, &Fixed), Value::Int(i64::MAX));
        assert_eq!(operand_value_checked(&whole, &Fixed), None);
    }

    #[test]
    fn paths_and_arithmetic_read_records_with_their_types() {
        let cases = [
            ("room.free - 1 >= 0", true),
            ("room.free * 2 == 2", true),
            ("room.price > 240", true),
            ("room.price * 2 == 481", true),
            ("(room.free + 1) * 2 == 4", true),
            ("room.hotel == 'Grand' && !(room.free <= 0)", true),
            ("turn == 2 && room.price < 100", false),
        ];
        for (text, expected) in cases {
            let expr = Expr::parse_in(text, &Room).unwrap_or_else(|e| panic!("{text}: {}", e.message));
            assert_eq!(expr.eval(&RoomValues), expected, "{text}");
        }
        let value = Operand::parse_in("room.price - room.free", &Room).unwrap();
        assert_eq!(operand_type(&value), Type::Dec);
        assert_eq!(operand_value(&value, &RoomValues), Value::Dec(239_500_000));
        let err = Expr::parse_in("room.hotel + 1 > 2", &Room).unwrap_err();
        assert!(
            err.message.contains("expected numbers on both sides"),
            "{}",
            err.message
        );
        let err = Expr::parse_in("room.fee > 1", &Room).unwrap_err();
        assert_eq!((err.offset, err.message.as_str()), (0, "no room.fee"));
        let template = Template::parse_in("{{room.hotel}}: {{room.price}} USD", true, &Room).unwrap();
        assert_eq!(template.render(&RoomValues, &|_| None), "Grand: 240.5 USD");
    }
}
