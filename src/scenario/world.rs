//! The world a scenario's tools act on: named tables of records with typed fields and initial
//! contents (inline, or from a JSON or CSV file beside the scenario). Here the declared shape and
//! the initial rows; the live state of a run is `protocol::world`.

use std::sync::Arc;

use super::expr::{format_dec, parse_dec, Type, Value, DEC_EXPECTED, DEC_ONE};

/// Largest data file a table may load, in bytes.
pub const DATA_FILE_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// Most records a table may start with.
pub const TABLE_ROWS_MAX: usize = 100_000;

/// Index of a table in [`super::Scenario::tables`].
pub type TableIdx = usize;

/// A value stored in a record's field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Datum {
    Str(Arc<str>),
    Int(i64),
    /// A decimal number in millionths.
    Dec(i64),
    Bool(bool),
}

impl Datum {
    /// The datum as an expression value.
    pub fn value(&self) -> Value<'_> {
        match self {
            Datum::Str(s) => Value::Str(s),
            Datum::Int(i) => Value::Int(*i),
            Datum::Dec(d) => Value::Dec(*d),
            Datum::Bool(b) => Value::Bool(*b),
        }
    }

    /// An expression value stored in a field of type `ty` (numbers convert; a string field keeps
    /// the value's text).
    pub fn from_value(value: &Value, ty: Type) -> Datum {
        match (ty, value) {
            (Type::Dec, Value::Int(i)) => Datum::Dec(i.saturating_mul(DEC_ONE)),
            (Type::Int, Value::Dec(d)) => Datum::Int(d / DEC_ONE),
            (Type::Str, other) => {
                let mut text = String::new();
                super::expr::write_value(&mut text, other);
                Datum::Str(Arc::from(text))
            }
            (_, Value::Int(i)) => Datum::Int(*i),
            (_, Value::Dec(d)) => Datum::Dec(*d),
            (_, Value::Str(s)) => Datum::Str(Arc::from(*s)),
            (_, Value::Bool(b)) => Datum::Bool(*b),
        }
    }

    /// The zero value of a type: what a field of a record that was not found reads as.
    pub fn zero(ty: Type) -> Datum {
        match ty {
            Type::Str => Datum::Str(Arc::from("")),
            Type::Int => Datum::Int(0),
            Type::Dec => Datum::Dec(0),
            Type::Bool => Datum::Bool(false),
        }
    }

    /// The datum as JSON (decimals as numbers with their exact digits).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Datum::Str(s) => serde_json::Value::String(s.to_string()),
            Datum::Int(i) => serde_json::Value::from(*i),
            Datum::Dec(d) => serde_json::from_str(&format_dec(*d)).unwrap_or(serde_json::Value::Null),
            Datum::Bool(b) => serde_json::Value::Bool(*b),
        }
    }

    /// Reads a JSON value into a field of type `ty`; the error says what was expected.
    pub fn from_json(value: &serde_json::Value, ty: Type) -> Result<Datum, String> {
        match (ty, value) {
            (Type::Str, serde_json::Value::String(s)) => Ok(Datum::Str(Arc::from(s.as_str()))),
            (Type::Int, serde_json::Value::Number(n)) if n.is_i64() => Ok(Datum::Int(n.as_i64().unwrap_or(0))),
            (Type::Dec, serde_json::Value::Number(n)) => parse_dec(&n.to_string())
                .map(Datum::Dec)
                .ok_or_else(|| format!("expected {DEC_EXPECTED}, found {n}")),
            (Type::Bool, serde_json::Value::Bool(b)) => Ok(Datum::Bool(*b)),
            (ty, other) => Err(format!("expected {}, found {other}", ty.name())),
        }
    }

    /// Reads a CSV cell into a field of type `ty`.
    pub fn from_text(text: &str, ty: Type) -> Result<Datum, String> {
        match ty {
            Type::Str => Ok(Datum::Str(Arc::from(text))),
            Type::Int => text
                .trim()
                .parse()
                .map(Datum::Int)
                .map_err(|_| format!("expected a whole number, found \"{text}\"")),
            Type::Dec => parse_dec(text)
                .map(Datum::Dec)
                .ok_or_else(|| format!("expected {DEC_EXPECTED}, found \"{text}\"")),
            Type::Bool => match text.trim() {
                "true" => Ok(Datum::Bool(true)),
                "false" => Ok(Datum::Bool(false)),
                _ => Err(format!("expected true or false, found \"{text}\"")),
            },
        }
    }

    /// The datum as a short text (a record's key, a diff's value).
    pub fn text(&self) -> String {
        let mut out = String::new();
        super::expr::write_value(&mut out, &self.value());
        out
    }
}

/// Maps of amounts (decimals in millionths) as JSON numbers with their exact digits, both ways.
pub mod dec_map {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, i64>, serializer: S) -> Result<S::Ok, S::Error> {
        let json: BTreeMap<&String, serde_json::Value> = map.iter().map(|(k, v)| (k, super::dec_json(*v))).collect();
        json.serialize(serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, i64>, D::Error> {
        let json = BTreeMap::<String, serde_json::Value>::deserialize(deserializer)?;
        json.into_iter()
            .map(|(k, v)| {
                crate::scenario::expr::parse_dec(&v.to_string())
                    .map(|d| (k, d))
                    .ok_or_else(|| serde::de::Error::custom(format!("expected a decimal amount, found {v}")))
            })
            .collect()
    }
}

/// An exact decimal as a JSON number.
pub fn dec_json(micros: i64) -> serde_json::Value {
    serde_json::from_str(&format_dec(micros)).unwrap_or(serde_json::Value::Null)
}

/// A typed field of a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub ty: Type,
}

/// A declared table: its fields, which one is the key, and the records it starts with.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub fields: Vec<Field>,
    /// Index of the key field in `fields`.
    pub key: usize,
    /// Initial records, each a value per field, in `fields` order, sorted by key.
    pub rows: Vec<Vec<Datum>>,
    /// The data file the rows come from (relative to the scenario's folder), loaded after
    /// validation: `(path, span of the setting)`.
    pub data: Option<(String, std::ops::Range<usize>)>,
}

impl Table {
    /// The index of field `name`.
    pub fn field(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    /// The list of field names, for error messages.
    pub fn field_list(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Parses a key given as text (a rendered template) into the key field's type.
    pub fn key_from_text(&self, text: &str) -> Option<Datum> {
        Datum::from_text(text, self.fields[self.key].ty).ok()
    }
}

/// Why a data file could not give a table its rows: where in the file (byte range) and what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataError {
    pub at: std::ops::Range<usize>,
    pub message: String,
}

impl DataError {
    fn at(offset: usize, message: impl Into<String>) -> DataError {
        DataError {
            at: offset..offset + 1,
            message: message.into(),
        }
    }
}

/// Reads a table's records from a data file's text: a JSON array of objects (`.json`), or CSV
/// with a header row of field names (`.csv`).
pub fn read_rows(table: &Table, path: &str, text: &str) -> Result<Vec<Vec<Datum>>, DataError> {
    // A byte-order mark is not part of the first field's name (offsets stay in the file's bytes).
    let bom = if text.starts_with('\u{feff}') {
        '\u{feff}'.len_utf8()
    } else {
        0
    };
    let shift = |mut e: DataError| {
        e.at = e.at.start + bom..e.at.end + bom;
        e
    };
    let text = &text[bom..];
    let rows = if path.ends_with(".json") {
        json_rows(table, text).map_err(shift)?
    } else {
        csv_rows(table, text).map_err(shift)?
    };
    if rows.len() > TABLE_ROWS_MAX {
        return Err(DataError::at(
            0,
            format!("expected at most {TABLE_ROWS_MAX} records, found {}", rows.len()),
        ));
    }
    Ok(rows)
}

fn json_rows(table: &Table, text: &str) -> Result<Vec<Vec<Datum>>, DataError> {
    let line_offset = |line: usize, column: usize| -> usize {
        text.split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum::<usize>()
            + column.saturating_sub(1)
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        let message = e.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message).to_owned();
        DataError::at(line_offset(e.line(), e.column()), format!("expected JSON: {message}"))
    })?;
    let serde_json::Value::Array(items) = value else {
        return Err(DataError::at(0, "expected a JSON array of records (objects)"));
    };
    // Offsets of each top-level object, so an error points at its record.
    let starts = object_starts(text);
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = starts.get(i).copied().unwrap_or(0);
            let serde_json::Value::Object(map) = item else {
                return Err(DataError::at(
                    at,
                    format!("record {}: expected an object, found {item}", i + 1),
                ));
            };
            for key in map.keys() {
                if table.field(key).is_none() {
                    return Err(DataError::at(
                        at,
                        format!(
                            "record {}: unknown field `{key}` (table {} has {})",
                            i + 1,
                            table.name,
                            table.field_list()
                        ),
                    ));
                }
            }
            table
                .fields
                .iter()
                .map(|field| match map.get(&field.name) {
                    Some(v) => Datum::from_json(v, field.ty)
                        .map_err(|m| DataError::at(at, format!("record {}, field `{}`: {m}", i + 1, field.name))),
                    None => Err(DataError::at(
                        at,
                        format!("record {}: expected field `{}`, found none", i + 1, field.name),
                    )),
                })
                .collect()
        })
        .collect()
}

/// Byte offsets of the objects directly inside the top-level JSON array.
fn object_starts(text: &str) -> Vec<usize> {
    let (mut depth, mut in_string, mut escaped) = (0i32, false, false);
    let mut starts = Vec::new();
    for (i, b) in text.bytes().enumerate() {
        if in_string {
            match b {
                b'\\' if !escaped => escaped = true,
                b'"' if !escaped => in_string = false,
                _ => escaped = false,
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                if depth == 1 {
                    starts.push(i);
                }
                depth += 1;
            }
            b']' | b'}' => depth -= 1,
            _ => {}
        }
    }
    starts
}

fn csv_rows(table: &Table, text: &str) -> Result<Vec<Vec<Datum>>, DataError> {
    let lines = csv_records(text)?;
    let Some((header_at, header)) = lines.first() else {
        return Err(DataError::at(
            0,
            "expected a header row of field names, found an empty file",
        ));
    };
    let mut columns = Vec::new();
    for (name, at) in header {
        match table.field(name.trim()) {
            Some(field) => columns.push(field),
            None => {
                return Err(DataError::at(
                    *at,
                    format!(
                        "unknown field `{}` (table {} has {})",
                        name.trim(),
                        table.name,
                        table.field_list()
                    ),
                ))
            }
        }
    }
    for (index, field) in table.fields.iter().enumerate() {
        if !columns.contains(&index) {
            return Err(DataError::at(
                *header_at,
                format!("expected a column `{}` in the header, found none", field.name),
            ));
        }
    }
    lines[1..]
        .iter()
        .filter(|(_, cells)| !(cells.len() == 1 && cells[0].0.is_empty()))
        .map(|(line_at, cells)| {
            if cells.len() != columns.len() {
                return Err(DataError::at(
                    *line_at,
                    format!("expected {} values, found {}", columns.len(), cells.len()),
                ));
            }
            let mut row = vec![Datum::Bool(false); table.fields.len()];
            for ((cell, at), &field) in cells.iter().zip(&columns) {
                row[field] = Datum::from_text(cell, table.fields[field].ty)
                    .map_err(|m| DataError::at(*at, format!("field `{}`: {m}", table.fields[field].name)))?;
            }
            Ok(row)
        })
        .collect()
}

/// A CSV record: its start offset and its cells with their offsets.
type CsvRecord = (usize, Vec<(String, usize)>);

/// Splits CSV text into records of cells (RFC 4180 quoting: `"a ""quoted"", b"`).
fn csv_records(text: &str) -> Result<Vec<CsvRecord>, DataError> {
    let bytes = text.as_bytes();
    let mut records = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let line_start = i;
        let mut cells = Vec::new();
        loop {
            let cell_start = i;
            let mut cell = String::new();
            if bytes.get(i) == Some(&b'"') {
                i += 1;
                loop {
                    match bytes.get(i) {
                        None => return Err(DataError::at(cell_start, "expected a closing quote for this value")),
                        Some(b'"') if bytes.get(i + 1) == Some(&b'"') => {
                            cell.push('"');
                            i += 2;
                        }
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(_) => {
                            let ch = text[i..].chars().next().unwrap_or(' ');
                            cell.push(ch);
                            i += ch.len_utf8();
                        }
                    }
                }
            } else {
                let end = text[i..].find([',', '\n', '\r']).map_or(text.len(), |e| i + e);
                cell.push_str(&text[i..end]);
                i = end;
            }
            cells.push((cell, cell_start));
            match bytes.get(i) {
                Some(b',') => i += 1,
                Some(b'\r') => {
                    i += 1;
                    if bytes.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    break;
                }
                Some(b'\n') => {
                    i += 1;
                    break;
                }
                None => break,
                Some(_) => {
                    return Err(DataError::at(
                        i,
                        "expected `,` or the end of the line after a quoted value",
                    ))
                }
            }
        }
        records.push((line_start, cells));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Table {
        Table {
            name: "rooms".into(),
            fields: vec![
                Field {
                    name: "id".into(),
                    ty: Type::Str,
                },
                Field {
                    name: "free".into(),
                    ty: Type::Int,
                },
                Field {
                    name: "price_usd".into(),
                    ty: Type::Dec,
                },
            ],
            key: 0,
            rows: vec![],
            data: None,
        }
    }

    #[test]
    fn csv_and_json_give_the_same_records() {
        let csv = read_rows(&rooms(), "r.csv", "id,price_usd,free\nr1,240.5,1\n\"r,2\",99,0\n").unwrap();
        let json = read_rows(
            &rooms(),
            "r.json",
            r#"[{"id":"r1","free":1,"price_usd":240.5},{"id":"r,2","free":0,"price_usd":99}]"#,
        )
        .unwrap();
        assert_eq!(csv, json);
        assert_eq!(csv[0][2], Datum::Dec(240_500_000));
    }

    #[test]
    fn a_bad_cell_is_named_with_its_place() {
        let err = read_rows(&rooms(), "r.csv", "id,free,price_usd\nr1,many,3\n").unwrap_err();
        assert_eq!(err.at.start, 21);
        assert!(
            err.message.contains("field `free`: expected a whole number"),
            "{}",
            err.message
        );
        let err = read_rows(&rooms(), "r.json", "[{\"id\":\"r1\",\"free\":1}]").unwrap_err();
        assert!(err.message.contains("expected field `price_usd`"), "{}", err.message);
        let err = read_rows(&rooms(), "r.json", "[{\"id\":\"r1\",").unwrap_err();
        assert!(err.message.starts_with("expected JSON"), "{}", err.message);
    }
}
