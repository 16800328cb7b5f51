//! Reading OTLP/JSON documents into spans, with the place of anything that does not fit.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::span::{Event, Span};
use super::SPANS_MAX;

/// Where a problem is (a path into the document) and what it is.
pub(super) type Place = (String, String);

pub(super) fn read_document(document: &Value, spans: &mut Vec<Span>) -> Result<(), Place> {
    let expected =
        |path: &str, what: &str, found: &Value| (path.to_owned(), format!("expected {what}, found {}", kind_of(found)));
    let object = document
        .as_object()
        .ok_or_else(|| expected("(document)", "an object with `resourceSpans`", document))?;
    let resource_spans = match object.get("resourceSpans") {
        Some(Value::Array(items)) => items,
        Some(other) => return Err(expected("resourceSpans", "an array", other)),
        None => {
            return Err((
                "resourceSpans".into(),
                "expected a `resourceSpans` array, found none".into(),
            ))
        }
    };
    for (r, resource) in resource_spans.iter().enumerate() {
        let path = format!("resourceSpans[{r}]");
        let scopes = match resource
            .get("scopeSpans")
            .or_else(|| resource.get("instrumentationLibrarySpans"))
        {
            Some(Value::Array(items)) => items.as_slice(),
            Some(other) => return Err(expected(&format!("{path}.scopeSpans"), "an array", other)),
            None => &[],
        };
        for (s, scope) in scopes.iter().enumerate() {
            let path = format!("{path}.scopeSpans[{s}]");
            let items = match scope.get("spans") {
                Some(Value::Array(items)) => items.as_slice(),
                Some(other) => return Err(expected(&format!("{path}.spans"), "an array", other)),
                None => &[],
            };
            for (i, raw) in items.iter().enumerate() {
                if spans.len() >= SPANS_MAX {
                    return Err((path, format!("expected at most {SPANS_MAX} spans")));
                }
                spans.push(read_span(raw, &format!("{path}.spans[{i}]"))?);
            }
        }
    }
    Ok(())
}

fn kind_of(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {:?}", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

fn read_span(raw: &Value, path: &str) -> Result<Span, Place> {
    let object = raw.as_object().ok_or_else(|| {
        (
            path.to_owned(),
            format!("expected a span object, found {}", kind_of(raw)),
        )
    })?;
    let trace_id = read_id(object, path, "traceId", 32, true)?.unwrap_or_default();
    let span_id = read_id(object, path, "spanId", 16, true)?.unwrap_or_default();
    let parent = read_id(object, path, "parentSpanId", 16, false)?;
    let name = match object.get("name") {
        Some(Value::String(s)) => s.clone(),
        None => String::new(),
        Some(other) => {
            return Err((
                format!("{path}.name"),
                format!("expected a string, found {}", kind_of(other)),
            ))
        }
    };
    let start_ns = read_time(object, path, "startTimeUnixNano")?;
    let end_ns = read_time(object, path, "endTimeUnixNano")?.max(start_ns);
    let attrs = read_attributes(object.get("attributes"), path)?;
    let events = read_events(object.get("events"), path)?;
    let error = read_error(object.get("status"), path)?;
    Ok(Span {
        trace_id,
        span_id,
        parent,
        name,
        start_ns,
        end_ns,
        attrs,
        error,
        events,
    })
}

/// A trace or span id: `hex_len` hex digits, lower-cased; an optional one may be absent or empty.
fn read_id(
    object: &Map<String, Value>,
    path: &str,
    key: &str,
    hex_len: usize,
    required: bool,
) -> Result<Option<String>, Place> {
    match object.get(key) {
        None | Some(Value::Null) if !required => Ok(None),
        Some(Value::String(s)) if s.is_empty() && !required => Ok(None),
        Some(Value::String(s)) if s.len() == hex_len && s.chars().all(|c| c.is_ascii_hexdigit()) => {
            Ok(Some(s.to_ascii_lowercase()))
        }
        Some(other) => Err((
            format!("{path}.{key}"),
            format!("expected {hex_len} hex digits, found {}", kind_of(other)),
        )),
        None => Err((
            format!("{path}.{key}"),
            format!("expected {hex_len} hex digits, found nothing"),
        )),
    }
}

/// A span time in nanoseconds, as a decimal string or a number.
fn read_time(object: &Map<String, Value>, path: &str, key: &str) -> Result<u64, Place> {
    match object.get(key) {
        Some(Value::String(s)) => s.parse::<u64>().map_err(|_| {
            (
                format!("{path}.{key}"),
                format!("expected nanoseconds as a decimal string, found {s:?}"),
            )
        }),
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
            (
                format!("{path}.{key}"),
                format!("expected non-negative nanoseconds, found {n}"),
            )
        }),
        Some(other) => Err((
            format!("{path}.{key}"),
            format!("expected nanoseconds as a decimal string, found {}", kind_of(other)),
        )),
        None => Err((format!("{path}.{key}"), "expected nanoseconds, found nothing".into())),
    }
}

/// A span's events: name, time and attributes of each.
fn read_events(list: Option<&Value>, path: &str) -> Result<Vec<Event>, Place> {
    let mut events = Vec::new();
    if let Some(list) = list {
        let list = list.as_array().ok_or_else(|| {
            (
                format!("{path}.events"),
                format!("expected an array of events, found {}", kind_of(list)),
            )
        })?;
        for (e, event) in list.iter().enumerate() {
            let at = format!("{path}.events[{e}]");
            let name = event.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
            let time_ns = match event.get("timeUnixNano") {
                Some(Value::String(s)) => s.parse::<u64>().ok(),
                Some(Value::Number(n)) => n.as_u64(),
                _ => None,
            }
            .ok_or_else(|| {
                (
                    format!("{at}.timeUnixNano"),
                    "expected nanoseconds as a decimal string".to_owned(),
                )
            })?;
            events.push((name, time_ns, read_attributes(event.get("attributes"), &at)?));
        }
    }
    Ok(events)
}

/// The status message of a span whose status code is ERROR (2).
fn read_error(status: Option<&Value>, path: &str) -> Result<Option<String>, Place> {
    let code = match status.and_then(|s| s.get("code")) {
        None | Some(Value::Null) => 0,
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0),
        Some(Value::String(s)) if s == "STATUS_CODE_ERROR" => 2,
        Some(Value::String(s)) => s.parse().unwrap_or(0),
        Some(other) => {
            return Err((
                format!("{path}.status.code"),
                format!("expected 0, 1 or 2, found {}", kind_of(other)),
            ))
        }
    };
    let error = (code == 2).then(|| {
        status
            .and_then(|s| s.get("message"))
            .and_then(Value::as_str)
            .unwrap_or("error")
            .to_owned()
    });
    Ok(error)
}

/// An OTLP attribute list as a map of plain JSON values.
fn read_attributes(list: Option<&Value>, path: &str) -> Result<BTreeMap<String, Value>, Place> {
    let mut attrs = BTreeMap::new();
    let Some(list) = list else {
        return Ok(attrs);
    };
    let list = list.as_array().ok_or_else(|| {
        (
            format!("{path}.attributes"),
            format!("expected an array of key-value pairs, found {}", kind_of(list)),
        )
    })?;
    for (a, pair) in list.iter().enumerate() {
        let at = format!("{path}.attributes[{a}]");
        let key = pair
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| (format!("{at}.key"), "expected a string key".to_owned()))?;
        let value = match pair.get("value") {
            Some(v) => plain(v, &format!("{at}.value"), 0)?,
            None => Value::Null,
        };
        attrs.insert(key.to_owned(), value);
    }
    Ok(attrs)
}

/// An OTLP `AnyValue` as plain JSON.
fn plain(value: &Value, path: &str, depth: u32) -> Result<Value, Place> {
    const DEPTH_MAX: u32 = 32;
    if depth > DEPTH_MAX {
        return Err((
            path.to_owned(),
            format!("expected values nested at most {DEPTH_MAX} deep"),
        ));
    }
    let object = value.as_object().ok_or_else(|| {
        (
            path.to_owned(),
            format!("expected an AnyValue object, found {}", kind_of(value)),
        )
    })?;
    let Some((kind, inner)) = object.iter().next() else {
        return Ok(Value::Null);
    };
    Ok(match (kind.as_str(), inner) {
        ("stringValue" | "bytesValue", Value::String(s)) => Value::String(s.clone()),
        ("boolValue", Value::Bool(b)) => Value::Bool(*b),
        ("intValue", Value::String(s)) => s.parse::<i64>().map(Value::from).map_err(|_| {
            (
                format!("{path}.intValue"),
                format!("expected a decimal integer, found {s:?}"),
            )
        })?,
        ("intValue" | "doubleValue", Value::Number(n)) => Value::Number(n.clone()),
        ("doubleValue", Value::String(s)) => s.parse::<f64>().ok().map(Value::from).unwrap_or(Value::Null),
        ("arrayValue", inner) => {
            let values = inner
                .get("values")
                .and_then(Value::as_array)
                .map_or(&[][..], |v| v.as_slice());
            let mut out = Vec::with_capacity(values.len());
            for (i, v) in values.iter().enumerate() {
                out.push(plain(v, &format!("{path}.arrayValue.values[{i}]"), depth + 1)?);
            }
            Value::Array(out)
        }
        ("kvlistValue", inner) => {
            let values = inner
                .get("values")
                .and_then(Value::as_array)
                .map_or(&[][..], |v| v.as_slice());
            let mut out = Map::new();
            for (i, pair) in values.iter().enumerate() {
                let at = format!("{path}.kvlistValue.values[{i}]");
                let key = pair
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or_else(|| (format!("{at}.key"), "expected a string key".to_owned()))?;
                let v = match pair.get("value") {
                    Some(v) => plain(v, &format!("{at}.value"), depth + 1)?,
                    None => Value::Null,
                };
                out.insert(key.to_owned(), v);
            }
            Value::Object(out)
        }
        (other, found) => {
            return Err((
                format!("{path}.{other}"),
                format!(
                    "expected one of stringValue, intValue, doubleValue, boolValue, arrayValue, kvlistValue, \
                     bytesValue with a matching value, found {}",
                    kind_of(found)
                ),
            ))
        }
    })
}
