//! The trace's record kinds as one typed enum, with one writer ([`Record::write`], used by the
//! scheduler through [`super::Trace::write`]) and one reader ([`Record::read`], used by
//! everything that reads a run directory back: replay checks, the HTML report, Mermaid, OTLP
//! export). Field order and number formatting are fixed here, so the bytes — and the digest —
//! do not depend on serde.
//!
//! A record is generic over its string type: the scheduler writes `Record<&str>` without
//! allocating; the reader gives `Record<String>`.

use serde_json::{Map, Value};

use super::{escape_json_into, Fields};

/// Version of the trace format, written in the header.
pub const TRACE_FORMAT: u64 = 1;

/// The limits a run ran under, as the header records them (absent in hand-written traces).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeaderLimits {
    pub max_events: u64,
    pub max_virtual_time_us: u64,
    pub max_queue_len: u64,
    pub max_message_bytes: u64,
    pub max_transcript_bytes: u64,
    pub max_restarts_total: u64,
    pub max_tool_wait_us: u64,
}

/// One line of `trace.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<S = String> {
    /// The first line: what ran, under which seed and limits.
    Header {
        agentsim: S,
        trace_format: u64,
        scenario: S,
        scenario_hash: S,
        seed: u64,
        /// `None` when the trace predates a limit (then the scenario's own applies).
        limits: Option<HeaderLimits>,
        profile: Option<S>,
    },
    /// A message delivered to an actor; `msg` is the payload's canonical summary.
    Deliver {
        seq: u64,
        t_us: u64,
        from: S,
        to: S,
        msg: S,
    },
    /// A fault fired on the delivery `seq`.
    Fault {
        seq: u64,
        t_us: u64,
        /// The fault kind (`llm.rate_limit`).
        fault: S,
        /// The fault's name in the scenario.
        name: S,
        actor: S,
        params: S,
    },
    /// A guardrail's verdict on a check.
    Guard {
        seq: u64,
        t_us: u64,
        guardrail: S,
        stage: S,
        actor: S,
        conv: u64,
        verdict: S,
        latency_us: u64,
        mistake: Option<S>,
        detail: Option<S>,
    },
    /// A handler panicked or returned an error.
    Fail {
        seq: u64,
        t_us: u64,
        actor: S,
        incarnation: u64,
        error: S,
    },
    /// A supervisor restarted an actor.
    Restart {
        t_us: u64,
        actor: S,
        incarnation: u64,
        supervisor: S,
    },
    /// A supervisor gave up and passed a failure up.
    Escalate { t_us: u64, actor: S, reason: S },
    /// A tool changed a record of the world during the delivery `seq`: `row` is the record
    /// afterwards (a JSON object; `None` when deleted); `lost` when the store did not keep it.
    World {
        seq: u64,
        t_us: u64,
        actor: S,
        conv: u64,
        op: S,
        table: S,
        key: S,
        row: Option<S>,
        lost: bool,
    },
    /// The last line: how the run ended.
    End {
        t_us: u64,
        events: u64,
        outcome: S,
        detail: Option<S>,
    },
}

impl<S: AsRef<str>> Record<S> {
    /// The record's `kind` as the trace spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Header { .. } => "header",
            Record::Deliver { .. } => "deliver",
            Record::Fault { .. } => "fault",
            Record::Guard { .. } => "guard",
            Record::Fail { .. } => "fail",
            Record::Restart { .. } => "restart",
            Record::Escalate { .. } => "escalate",
            Record::World { .. } => "world",
            Record::End { .. } => "end",
        }
    }

    /// The event's sequence number, when the record has one.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Record::Deliver { seq, .. }
            | Record::Fault { seq, .. }
            | Record::Guard { seq, .. }
            | Record::World { seq, .. }
            | Record::Fail { seq, .. } => Some(*seq),
            _ => None,
        }
    }

    /// The record's virtual time (0 for the header).
    pub fn t_us(&self) -> u64 {
        match self {
            Record::Header { .. } => 0,
            Record::Deliver { t_us, .. }
            | Record::Fault { t_us, .. }
            | Record::Guard { t_us, .. }
            | Record::Fail { t_us, .. }
            | Record::Restart { t_us, .. }
            | Record::Escalate { t_us, .. }
            | Record::World { t_us, .. }
            | Record::End { t_us, .. } => *t_us,
        }
    }

    /// The actor the record is about: the receiver of a delivery, else its `actor` ("" for the
    /// header and the end).
    pub fn actor(&self) -> &str {
        match self {
            Record::Deliver { to, .. } => to.as_ref(),
            Record::Fault { actor, .. }
            | Record::Guard { actor, .. }
            | Record::Fail { actor, .. }
            | Record::Restart { actor, .. }
            | Record::World { actor, .. }
            | Record::Escalate { actor, .. } => actor.as_ref(),
            Record::Header { .. } | Record::End { .. } => "",
        }
    }

    /// A `key=value` token of a delivery's message summary (`conv=3`); `None` for other kinds.
    pub fn msg_field(&self, key: &str) -> Option<&str> {
        match self {
            Record::Deliver { msg, .. } => msg_field(msg.as_ref(), key),
            _ => None,
        }
    }

    /// Appends the record as one canonical JSON line (with its newline) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        if let Record::Deliver {
            seq,
            t_us,
            from,
            to,
            msg,
        } = self
        {
            let (from, to) = (json_string(from.as_ref()), json_string(to.as_ref()));
            write_deliver(out, (*seq, *t_us), from.as_bytes(), to.as_bytes(), |out| {
                crate::trace::escape_json_into(msg.as_ref(), out)
            });
            return;
        }
        let mut r = Fields::new(out);
        match self {
            Record::Header {
                agentsim,
                trace_format,
                scenario,
                scenario_hash,
                seed,
                limits,
                profile,
            } => {
                r.str("kind", "header")
                    .str("agentsim", agentsim.as_ref())
                    .u64("trace_format", *trace_format)
                    .str("scenario", scenario.as_ref())
                    .str("scenario_hash", scenario_hash.as_ref())
                    .u64("seed", *seed);
                if let Some(l) = limits {
                    r.u64("max_events", l.max_events)
                        .u64("max_virtual_time_us", l.max_virtual_time_us)
                        .u64("max_queue_len", l.max_queue_len)
                        .u64("max_message_bytes", l.max_message_bytes)
                        .u64("max_transcript_bytes", l.max_transcript_bytes)
                        .u64("max_restarts_total", l.max_restarts_total)
                        .u64("max_tool_wait_us", l.max_tool_wait_us);
                }
                match profile {
                    Some(p) => r.str("profile", p.as_ref()),
                    None => r.raw("profile", "null"),
                };
                r.raw("cassette", "null");
            }
            Record::Deliver { .. } => unreachable!("a delivery is written by `write_deliver`, above"),
            Record::Fault {
                seq,
                t_us,
                fault,
                name,
                actor,
                params,
            } => {
                r.str("kind", "fault")
                    .u64("seq", *seq)
                    .u64("t_us", *t_us)
                    .str("fault", fault.as_ref())
                    .str("name", name.as_ref())
                    .str("actor", actor.as_ref())
                    .str("params", params.as_ref());
            }
            Record::Guard {
                seq,
                t_us,
                guardrail,
                stage,
                actor,
                conv,
                verdict,
                latency_us,
                mistake,
                detail,
            } => {
                r.str("kind", "guard")
                    .u64("seq", *seq)
                    .u64("t_us", *t_us)
                    .str("guardrail", guardrail.as_ref())
                    .str("stage", stage.as_ref())
                    .str("actor", actor.as_ref())
                    .u64("conv", *conv)
                    .str("verdict", verdict.as_ref())
                    .u64("latency_us", *latency_us);
                if let Some(mistake) = mistake {
                    r.str("mistake", mistake.as_ref());
                }
                if let Some(detail) = detail.as_ref().filter(|d| !d.as_ref().is_empty()) {
                    r.str("detail", detail.as_ref());
                }
            }
            Record::Fail {
                seq,
                t_us,
                actor,
                incarnation,
                error,
            } => {
                r.str("kind", "fail")
                    .u64("seq", *seq)
                    .u64("t_us", *t_us)
                    .str("actor", actor.as_ref())
                    .u64("incarnation", *incarnation)
                    .str("error", error.as_ref());
            }
            Record::Restart {
                t_us,
                actor,
                incarnation,
                supervisor,
            } => {
                r.str("kind", "restart")
                    .u64("t_us", *t_us)
                    .str("actor", actor.as_ref())
                    .u64("incarnation", *incarnation)
                    .str("supervisor", supervisor.as_ref());
            }
            Record::Escalate { t_us, actor, reason } => {
                r.str("kind", "escalate")
                    .u64("t_us", *t_us)
                    .str("actor", actor.as_ref())
                    .str("reason", reason.as_ref());
            }
            Record::World {
                seq,
                t_us,
                actor,
                conv,
                op,
                table,
                key,
                row,
                lost,
            } => {
                r.str("kind", "world")
                    .u64("seq", *seq)
                    .u64("t_us", *t_us)
                    .str("actor", actor.as_ref())
                    .u64("conv", *conv)
                    .str("op", op.as_ref())
                    .str("table", table.as_ref())
                    .str("key", key.as_ref());
                match row {
                    Some(row) => r.raw("row", row.as_ref()),
                    None => r.raw("row", "null"),
                };
                if *lost {
                    r.raw("lost", "true");
                }
            }
            Record::End {
                t_us,
                events,
                outcome,
                detail,
            } => {
                r.str("kind", "end")
                    .u64("t_us", *t_us)
                    .u64("events", *events)
                    .str("outcome", outcome.as_ref());
                if let Some(detail) = detail {
                    r.str("detail", detail.as_ref());
                }
            }
        }
        r.close();
    }
}

impl Record<String> {
    /// Reads one trace line's JSON object. Optional fields may be absent (hand-written and older
    /// traces); a missing required field or an unknown kind is an error naming it.
    pub fn read(fields: &Map<String, Value>) -> Result<Record, String> {
        let text = |key: &str| -> Result<String, String> {
            match fields.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(format!("expected a string `{key}`, found {other}")),
                None => Err(format!("expected a string `{key}`, found none")),
            }
        };
        let number = |key: &str| -> Result<u64, String> {
            match fields.get(key) {
                Some(value) => value
                    .as_u64()
                    .ok_or_else(|| format!("expected an unsigned integer `{key}`, found {value}")),
                None => Err(format!("expected an unsigned integer `{key}`, found none")),
            }
        };
        let optional = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
        let kind = text("kind")?;
        Ok(match kind.as_str() {
            "header" => Record::Header {
                agentsim: optional("agentsim").unwrap_or_default(),
                trace_format: number("trace_format").unwrap_or(TRACE_FORMAT),
                scenario: optional("scenario").unwrap_or_default(),
                scenario_hash: optional("scenario_hash").unwrap_or_default(),
                seed: number("seed")?,
                limits: header_limits(fields),
                profile: optional("profile"),
            },
            "deliver" => Record::Deliver {
                seq: number("seq")?,
                t_us: number("t_us")?,
                from: text("from")?,
                to: text("to")?,
                msg: text("msg")?,
            },
            "fault" => Record::Fault {
                seq: number("seq")?,
                t_us: number("t_us")?,
                fault: text("fault")?,
                name: text("name")?,
                actor: text("actor")?,
                params: optional("params").unwrap_or_default(),
            },
            "guard" => Record::Guard {
                seq: number("seq")?,
                t_us: number("t_us")?,
                guardrail: text("guardrail")?,
                stage: text("stage")?,
                actor: text("actor")?,
                conv: number("conv")?,
                verdict: text("verdict")?,
                latency_us: number("latency_us").unwrap_or(0),
                mistake: optional("mistake"),
                detail: optional("detail"),
            },
            "fail" => Record::Fail {
                seq: number("seq")?,
                t_us: number("t_us")?,
                actor: text("actor")?,
                incarnation: number("incarnation")?,
                error: text("error")?,
            },
            "restart" => Record::Restart {
                t_us: number("t_us")?,
                actor: text("actor")?,
                incarnation: number("incarnation")?,
                supervisor: text("supervisor")?,
            },
            "escalate" => Record::Escalate {
                t_us: number("t_us")?,
                actor: text("actor")?,
                reason: text("reason")?,
            },
            "world" => Record::World {
                seq: number("seq")?,
                t_us: number("t_us")?,
                actor: text("actor")?,
                conv: number("conv")?,
                op: text("op")?,
                table: text("table")?,
                key: text("key")?,
                row: fields.get("row").filter(|v| !v.is_null()).map(Value::to_string),
                lost: fields.get("lost").and_then(Value::as_bool).unwrap_or(false),
            },
            "end" => Record::End {
                t_us: number("t_us")?,
                events: number("events")?,
                outcome: text("outcome")?,
                detail: optional("detail"),
            },
            other => {
                return Err(format!(
                    "expected a record kind (header, deliver, fault, guard, fail, restart, escalate, world, end), found \"{other}\""
                ))
            }
        })
    }
}

/// The header's limits: the first three are in every trace that records limits; the later ones
/// default as they did before traces recorded them.
fn header_limits(fields: &Map<String, Value>) -> Option<HeaderLimits> {
    let n = |key: &str| fields.get(key).and_then(Value::as_u64);
    let defaults = crate::scenario::Limits::DEFAULT;
    Some(HeaderLimits {
        max_events: n("max_events")?,
        max_virtual_time_us: n("max_virtual_time_us")?,
        max_queue_len: n("max_queue_len")?,
        max_message_bytes: n("max_message_bytes").unwrap_or(defaults.max_message_bytes),
        max_transcript_bytes: n("max_transcript_bytes").unwrap_or(defaults.max_transcript_bytes),
        max_restarts_total: n("max_restarts_total").unwrap_or(defaults.max_restarts_total),
        max_tool_wait_us: n("max_tool_wait_us").unwrap_or(defaults.max_tool_wait_us),
    })
}

/// The value of `key=value` in a message summary such as `llm_reply conv=0 call=1 latency_us=5`.
/// Quoted values are not parsed; only the first token matching `key=` counts.
pub fn msg_field<'a>(msg: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = msg;
    loop {
        let at = rest.find(key)?;
        let before_ok = at == 0 || rest.as_bytes()[at - 1] == b' ';
        let after = &rest[at + key.len()..];
        if before_ok {
            if let Some(value) = after.strip_prefix('=') {
                return Some(value.split(' ').next().unwrap_or(""));
            }
        }
        rest = after;
    }
}

/// A string value quoted the trace's way, for callers that build JSON by hand.
pub fn json_string(value: &str) -> String {
    let mut out = Vec::new();
    escape_json_into(value, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// A delivery, the most frequent record, with its keys written as constants: the same bytes
/// [`Fields`] gives (a test holds the two together). `from_json` and `to_json` are JSON string
/// literals, already escaped; `msg` appends the message's.
pub(super) fn write_deliver(
    out: &mut Vec<u8>,
    (seq, t_us): (u64, u64),
    from_json: &[u8],
    to_json: &[u8],
    msg: impl FnOnce(&mut Vec<u8>),
) {
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"{\"seq\":");
    out.extend_from_slice(number.format(seq).as_bytes());
    out.extend_from_slice(b",\"t_us\":");
    out.extend_from_slice(number.format(t_us).as_bytes());
    out.extend_from_slice(b",\"kind\":\"deliver\",\"from\":");
    out.extend_from_slice(from_json);
    out.extend_from_slice(b",\"to\":");
    out.extend_from_slice(to_json);
    out.extend_from_slice(b",\"msg\":");
    msg(out);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivery_is_written_as_the_generic_fields_write_it() {
        for (from, to, msg) in [
            ("user", "agent:desk", "start conv=0 user=\"hi\""),
            ("llm:gpt", "agent:a\"b", "tab\there \\ \u{1} end"),
            ("", "", ""),
        ] {
            let mut fast = Vec::new();
            Record::Deliver {
                seq: 12,
                t_us: 3_400_000,
                from,
                to,
                msg,
            }
            .write(&mut fast);
            let mut generic = Vec::new();
            let mut r = Fields::new(&mut generic);
            r.u64("seq", 12)
                .u64("t_us", 3_400_000)
                .str("kind", "deliver")
                .str("from", from)
                .str("to", to)
                .str("msg", msg);
            r.close();
            assert_eq!(String::from_utf8(fast).unwrap(), String::from_utf8(generic).unwrap());
        }
    }

    fn line(record: &Record<&str>) -> String {
        let mut out = Vec::new();
        record.write(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_kind_reads_back_as_it_was_written() {
        let records: Vec<Record<&str>> = vec![
            Record::Header {
                agentsim: "0.1.0",
                trace_format: TRACE_FORMAT,
                scenario: "s",
                scenario_hash: "ab",
                seed: 7,
                limits: Some(HeaderLimits {
                    max_events: 1,
                    max_virtual_time_us: 2,
                    max_queue_len: 3,
                    max_message_bytes: 4,
                    max_transcript_bytes: 44,
                    max_restarts_total: 5,
                    max_tool_wait_us: 6,
                }),
                profile: Some("calm \"p\""),
            },
            Record::Deliver {
                seq: 1,
                t_us: 2,
                from: "user",
                to: "agent:a",
                msg: "start conv=0 user=\"hi\"",
            },
            Record::Fault {
                seq: 1,
                t_us: 2,
                fault: "actor.crash",
                name: "boom",
                actor: "agent:a",
                params: "",
            },
            Record::Guard {
                seq: 3,
                t_us: 4,
                guardrail: "pii",
                stage: "output",
                actor: "agent:a",
                conv: 0,
                verdict: "redact",
                latency_us: 9,
                mistake: Some("false_positive"),
                detail: Some("email"),
            },
            Record::Fail {
                seq: 1,
                t_us: 2,
                actor: "agent:a",
                incarnation: 0,
                error: "injected crash",
            },
            Record::Restart {
                t_us: 2,
                actor: "agent:a",
                incarnation: 1,
                supervisor: "supervisor:root",
            },
            Record::Escalate {
                t_us: 2,
                actor: "supervisor:root",
                reason: "too many",
            },
            Record::End {
                t_us: 5,
                events: 9,
                outcome: "completed",
                detail: None,
            },
        ];
        for record in records {
            let text = line(&record);
            assert!(text.ends_with('\n'));
            let value: Value = serde_json::from_str(text.trim()).unwrap();
            let read = Record::read(value.as_object().unwrap()).unwrap();
            assert_eq!(read.kind(), record.kind());
            let mut again = Vec::new();
            read.write(&mut again);
            assert_eq!(String::from_utf8(again).unwrap(), text, "{:?}", record.kind());
        }
    }

    #[test]
    fn a_delivery_writes_seq_time_and_kind_first() {
        let text = line(&Record::Deliver {
            seq: 3,
            t_us: 0,
            from: "a",
            to: "b",
            msg: "say \"hi\"\n",
        });
        assert_eq!(
            text,
            "{\"seq\":3,\"t_us\":0,\"kind\":\"deliver\",\"from\":\"a\",\"to\":\"b\",\"msg\":\"say \\\"hi\\\"\\n\"}\n"
        );
    }

    #[test]
    fn a_missing_field_or_an_unknown_kind_is_named() {
        let value: Value = serde_json::from_str(r#"{"kind":"deliver","seq":1,"t_us":0,"from":"a"}"#).unwrap();
        let err = Record::read(value.as_object().unwrap()).unwrap_err();
        assert!(err.contains("`to`"), "{err}");
        let value: Value = serde_json::from_str(r#"{"kind":"teleport"}"#).unwrap();
        assert!(Record::read(value.as_object().unwrap())
            .unwrap_err()
            .contains("teleport"));
    }

    #[test]
    fn message_fields_are_found_by_whole_key() {
        let msg = "llm_reply conv=3 tool_calls=[a#0] call=1 tokens_in=21 latency_us=207258";
        assert_eq!(msg_field(msg, "conv"), Some("3"));
        assert_eq!(msg_field(msg, "latency_us"), Some("207258"));
        assert_eq!(msg_field(msg, "in"), None);
        assert_eq!(msg_field(msg, "call"), Some("1"));
    }
}
