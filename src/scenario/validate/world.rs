//! Validates the world: `[[table]]` declarations and their initial records, what tools do to
//! them (`read`, `rules`, `amount`, `subject`, load limits), and the invariants and goals over
//! them. Every name a rule uses is checked against the tool's `parameters` and the tables'
//! fields, with its type.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::ops::Range;

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::expr::{parse_dec, Expr, Operand, Path, Scope, Template, Type, DEC_EXPECTED, DEC_ONE};
use crate::scenario::file::*;
use crate::scenario::model::*;
use crate::scenario::world::TABLE_ROWS_MAX;

/// Most calls a tool's API may have in progress at once.
const MAX_CONCURRENT_MAX: u32 = 10_000;
/// Fastest rate limit a tool's API may have, in calls a minute (a thousand a second).
const RATE_PER_MINUTE_MAX: u64 = 60_000;

/// The type a field declaration names.
fn field_type(name: &str) -> Option<Type> {
    match name {
        "string" => Some(Type::Str),
        "int" => Some(Type::Int),
        "number" => Some(Type::Dec),
        "bool" => Some(Type::Bool),
        _ => None,
    }
}

/// A TOML value as a field of type `ty`.
fn datum_from_toml(value: &toml::Value, ty: Type) -> Result<Datum, String> {
    match (ty, value) {
        (Type::Str, toml::Value::String(s)) => Ok(Datum::Str(s.as_str().into())),
        (Type::Int, toml::Value::Integer(i)) => Ok(Datum::Int(*i)),
        (Type::Dec, toml::Value::Integer(i)) => i
            .checked_mul(DEC_ONE)
            .map(Datum::Dec)
            .ok_or_else(|| format!("expected {DEC_EXPECTED}, found {i}")),
        (Type::Dec, toml::Value::Float(f)) => parse_dec(&f.to_string())
            .map(Datum::Dec)
            .ok_or_else(|| format!("expected {DEC_EXPECTED}, found {f}")),
        (Type::Bool, toml::Value::Boolean(b)) => Ok(Datum::Bool(*b)),
        (ty, other) => Err(format!("expected {}, found {}", ty.name(), toml_shape(other))),
    }
}

fn toml_shape(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => format!("the string \"{s}\""),
        toml::Value::Integer(i) => format!("the number {i}"),
        toml::Value::Float(f) => format!("the number {f}"),
        toml::Value::Boolean(b) => format!("{b}"),
        other => format!("a {}", other.type_str()),
    }
}

/// Names in a tool's rules: `args.NAME` (typed by the tool's `parameters`) and `RECORD.FIELD`
/// of the records it reads (`RECORD.exists` too).
struct ToolScope<'a> {
    tables: &'a [Table],
    lookups: &'a [(String, TableIdx)],
    parameters: Option<&'a serde_json::Value>,
    /// The arguments read so far: the path field of each.
    args: RefCell<Vec<(String, Type)>>,
}

impl ToolScope<'_> {
    fn arg_type(&self, name: &str) -> Result<Type, String> {
        let Some(schema) = self.parameters else {
            // Without a schema an argument is its text.
            return Ok(Type::Str);
        };
        let properties = schema.get("properties").and_then(|p| p.as_object());
        let Some(property) = properties.and_then(|p| p.get(name)) else {
            let known: Vec<&str> = properties
                .map(|p| p.keys().map(String::as_str).collect())
                .unwrap_or_default();
            let hint = crate::scenario::error::did_you_mean(name, known.iter().copied())
                .map(|s| format!("did you mean `args.{s}`? "))
                .unwrap_or_default();
            return Err(format!(
                "unknown argument `{name}`: {hint}the tool's `parameters` declare {}",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        Ok(match property.get("type").and_then(|t| t.as_str()) {
            Some("integer") => Type::Int,
            Some("number") => Type::Dec,
            Some("boolean") => Type::Bool,
            _ => Type::Str,
        })
    }
}

impl Scope for ToolScope<'_> {
    fn resolve(&self, name: &str) -> Result<Option<(Path, Type)>, String> {
        let Some((head, field)) = name.split_once('.') else {
            return conversation_only(name);
        };
        if head == "args" {
            let ty = self.arg_type(field)?;
            let mut args = self.args.borrow_mut();
            let index = match args.iter().position(|(n, _)| n == field) {
                Some(i) => i,
                None => {
                    args.push((field.to_owned(), ty));
                    args.len() - 1
                }
            };
            let path = Path {
                slot: ARGS_SLOT,
                field: index as u32,
            };
            return Ok(Some((path, ty)));
        }
        let Some(lookup) = self.lookups.iter().position(|(n, _)| n == head) else {
            let known: Vec<&str> = self.lookups.iter().map(|(n, _)| n.as_str()).collect();
            return Err(format!(
                "unknown name `{name}`: expected `args.NAME` or a field of a record the tool reads ({})",
                if known.is_empty() {
                    "it reads none; add `read = { NAME = { table = \"...\", key = \"...\" } }`".to_owned()
                } else {
                    known.join(", ")
                }
            ));
        };
        let slot = lookup as u32 + 1;
        if field == "exists" {
            return Ok(Some((
                Path {
                    slot,
                    field: EXISTS_FIELD,
                },
                Type::Bool,
            )));
        }
        let table = &self.tables[self.lookups[lookup].1];
        match table.field(field) {
            Some(f) => Ok(Some((Path { slot, field: f as u32 }, table.fields[f].ty))),
            None => Err(format!(
                "table {} has no field `{field}`{} (it has {}, and `{head}.exists`)",
                table.name,
                field_hint(table, field),
                table.field_list()
            )),
        }
    }
}

/// `; did you mean `free`?` when a field name is a typo of one the table has.
fn field_hint(table: &Table, name: &str) -> String {
    crate::scenario::error::did_you_mean(name, table.fields.iter().map(|f| f.name.as_str()))
        .map(|s| format!("; did you mean `{s}`?"))
        .unwrap_or_default()
}

/// Of the conversation's variables, a tool sees only `conversation`: the rest are the model's.
fn conversation_only(name: &str) -> Result<Option<(Path, Type)>, String> {
    match name {
        "conversation" | "true" | "false" => Ok(None),
        _ if crate::scenario::expr::lookup_var(name).is_ok() => Err(format!(
            "`{name}` is the model's view of the conversation; a tool's rules and templates see `args.NAME`, the records it reads and `conversation`"
        )),
        _ => Ok(None),
    }
}

/// The scope of a goal's key template: the conversation's number only.
pub(super) struct ConversationNumber;

impl Scope for ConversationNumber {
    fn resolve(&self, name: &str) -> Result<Option<(Path, Type)>, String> {
        conversation_only(name)
    }
}

/// Names in a world check: the fields of one record, by their bare names.
pub(super) struct RecordScope<'a>(pub &'a Table);

impl Scope for RecordScope<'_> {
    fn resolve(&self, name: &str) -> Result<Option<(Path, Type)>, String> {
        match self.0.field(name) {
            Some(f) => Ok(Some((
                Path {
                    slot: 0,
                    field: f as u32,
                },
                self.0.fields[f].ty,
            ))),
            None => Err(format!(
                "table {} has no field `{name}`{} (it has {})",
                self.0.name,
                field_hint(self.0, name),
                self.0.field_list()
            )),
        }
    }

    fn variables(&self) -> bool {
        false
    }
}

/// What a tool does to the world, validated.
pub(super) struct ToolWorld {
    pub lookups: Vec<Lookup>,
    pub lookup_order: Vec<usize>,
    pub rules: Vec<ToolRule>,
    pub amount: Option<Operand>,
    pub subject: Option<Template>,
    pub args: Vec<(String, Type)>,
    pub load: ToolLoad,
    pub output: Option<Template>,
    /// `approval`'s `when`, over the call's arguments and records.
    pub approval_when: Option<crate::scenario::expr::Expr>,
}

impl Validator<'_> {
    /// `[[table]]` declarations, with their inline records (data files load later).
    pub(super) fn tables(&mut self, raw: &[Spanned<RawTable>]) -> (Vec<Table>, Names) {
        let names = self.names("table", raw.iter().map(|t| &t.get_ref().name));
        let tables = raw.iter().map(|t| self.table(t)).collect();
        (tables, names)
    }

    fn table(&mut self, raw: &Spanned<RawTable>) -> Table {
        let t = raw.get_ref();
        let mut fields = Vec::new();
        for (name, ty) in t.fields.get_ref() {
            let valid_name = name.get_ref().bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && name
                    .get_ref()
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
            if !valid_name || name.get_ref() == "exists" {
                self.error(
                    name.span(),
                    format!(
                        "expected a field name of letters, digits and `_` (not `exists`), found \"{}\"",
                        name.get_ref()
                    ),
                );
            }
            let Some(ty) = field_type(ty.get_ref()) else {
                let hint = match ty.get_ref().as_str() {
                    "integer" | "i64" => "; did you mean \"int\"?",
                    "float" | "decimal" | "f64" => "; did you mean \"number\"?",
                    "boolean" => "; did you mean \"bool\"?",
                    "str" | "text" => "; did you mean \"string\"?",
                    _ => "",
                };
                self.error(
                    ty.span(),
                    format!(
                        "expected a field type: \"string\", \"int\", \"number\" or \"bool\", found \"{}\"{hint}",
                        ty.get_ref()
                    ),
                );
                continue;
            };
            fields.push(Field {
                name: name.get_ref().clone(),
                ty,
            });
        }
        let mut table = Table {
            name: t.name.get_ref().clone(),
            fields,
            key: 0,
            rows: Vec::new(),
            data: None,
        };
        match table.field(t.key.get_ref()) {
            Some(key) if matches!(table.fields[key].ty, Type::Str | Type::Int) => table.key = key,
            Some(_) => self.error(t.key.span(), "expected a key field of type \"string\" or \"int\""),
            None => {
                // A key naming a field whose type was already reported needs no second error.
                let declared = t.fields.get_ref().keys().any(|n| n.get_ref() == t.key.get_ref());
                if !declared {
                    self.error(
                        t.key.span(),
                        format!(
                            "expected `key` to name a field of the table ({}), found \"{}\"",
                            table.field_list(),
                            t.key.get_ref()
                        ),
                    );
                }
                // The scenario will not run; a stand-in key keeps the checks below in bounds.
                table.fields.push(Field {
                    name: t.key.get_ref().clone(),
                    ty: Type::Str,
                });
                table.key = table.fields.len() - 1;
            }
        }
        if let (Some(_), Some(data)) = (&t.rows, &t.data) {
            self.error(data.span(), "expected either `rows` or `data`, found both");
        }
        if let Some(rows) = &t.rows {
            if rows.get_ref().len() > TABLE_ROWS_MAX {
                self.error(
                    rows.span(),
                    format!(
                        "expected at most {TABLE_ROWS_MAX} records, found {}",
                        rows.get_ref().len()
                    ),
                );
            }
            // A field whose type was already reported is no unknown field in each record.
            let mistyped: Vec<&str> = t
                .fields
                .get_ref()
                .iter()
                .filter(|(_, ty)| field_type(ty.get_ref()).is_none())
                .map(|(name, _)| name.get_ref().as_str())
                .collect();
            for row in rows.get_ref() {
                if let Some(values) = self.row(&table, row, &mistyped) {
                    table.rows.push(values);
                }
            }
            self.sort_rows(&mut table, rows.span());
        }
        if let Some(data) = &t.data {
            let path = data.get_ref();
            let plain = !path.is_empty()
                && !std::path::Path::new(path).is_absolute()
                && !path
                    .split(['/', '\\'])
                    .any(|part| part == ".." || part.starts_with('.'));
            // A run directory holds a copy of the data file beside its own files.
            let reserved = [
                "report.json",
                "scenario.toml",
                "trace.jsonl",
                "report.html",
                "cassette.jsonl",
            ];
            let plain = plain && !reserved.contains(&path.as_str());
            if !plain || !(path.ends_with(".json") || path.ends_with(".csv")) {
                self.error(
                    data.span(),
                    format!("expected a .json or .csv file beside the scenario (a relative path without `..`), found \"{path}\""),
                );
            } else {
                table.data = Some((path.clone(), data.span()));
            }
        }
        table
    }

    /// One inline record: every field, each of its type.
    fn row(&mut self, table: &Table, row: &Spanned<toml::Table>, mistyped: &[&str]) -> Option<Vec<Datum>> {
        let mut ok = true;
        for key in row.get_ref().keys() {
            if mistyped.contains(&key.as_str()) {
                ok = false;
            } else if table.field(key).is_none() {
                self.error(
                    row.span(),
                    format!(
                        "unknown field `{key}` (table {} has {})",
                        table.name,
                        table.field_list()
                    ),
                );
                ok = false;
            }
        }
        let mut values = Vec::new();
        for field in &table.fields {
            match row.get_ref().get(&field.name) {
                Some(value) => match datum_from_toml(value, field.ty) {
                    Ok(datum) => values.push(datum),
                    Err(message) => {
                        self.error(row.span(), format!("field `{}`: {message}", field.name));
                        ok = false;
                    }
                },
                None => {
                    self.error(row.span(), format!("expected field `{}`, found none", field.name));
                    ok = false;
                }
            }
        }
        ok.then_some(values)
    }

    /// Sorts a table's records by key; two with the same key are an error.
    pub(super) fn sort_rows(&mut self, table: &mut Table, span: Range<usize>) {
        let key = table.key;
        table.rows.sort_by(|a, b| a[key].cmp(&b[key]));
        if let Some(pair) = table.rows.windows(2).find(|w| w[0][key] == w[1][key]) {
            self.error(
                span,
                format!(
                    "expected each record's key to be unique, found \"{}\" twice",
                    pair[0][key].text()
                ),
            );
        }
    }

    /// What a tool does to the world.
    pub(super) fn tool_world(&mut self, raw: &RawTool, tables: &[Table], table_names: &Names) -> ToolWorld {
        let mut lookups = Vec::new();
        let mut lookup_keys = Vec::new();
        for (name, lookup) in raw.read.iter().flatten() {
            let Some(table) = self.resolve(table_names, &lookup.get_ref().table, "the lookup") else {
                continue;
            };
            lookups.push((name.get_ref().clone(), table));
            lookup_keys.push(lookup.get_ref().key.clone());
        }
        let parameters = raw
            .parameters
            .as_ref()
            .and_then(|p| serde_json::to_value(p.get_ref()).ok());
        let scope = ToolScope {
            tables,
            lookups: &lookups,
            parameters: parameters.as_ref(),
            args: RefCell::new(Vec::new()),
        };
        let lookups_out: Vec<Lookup> = lookups
            .iter()
            .zip(&lookup_keys)
            .map(|((name, table), key)| Lookup {
                name: name.clone(),
                table: *table,
                key: self.template_in(key, &scope),
            })
            .collect();
        let lookup_order = self.lookup_order(&lookups_out, &lookup_keys);
        let rules = raw.rules.iter().map(|r| self.tool_rule(r, &scope, tables)).collect();
        let amount = raw.amount.as_ref().and_then(|a| self.value_expr(a, &scope, Type::Dec));
        if let (Some(amount), None) = (&raw.amount, &raw.effect) {
            self.error(amount.span(), "`amount` goes with `effect`: it is the effect's amount");
        }
        if let (Some(subject), None) = (&raw.subject, &raw.effect) {
            self.error(subject.span(), "`subject` goes with `effect`: it is whose effect it is");
        }
        let subject = raw.subject.as_ref().map(|s| self.template_in(s, &scope));
        let output = raw.output.as_ref().map(|o| self.template_in(o, &scope));
        let load = self.tool_load(raw);
        let approval_when = raw
            .approval
            .as_ref()
            .and_then(|a| a.get_ref().when.as_ref())
            .and_then(|w| self.condition_in(w, &scope));
        ToolWorld {
            approval_when,
            lookups: lookups_out,
            lookup_order,
            rules,
            amount,
            subject,
            args: scope.args.into_inner(),
            load,
            output,
        }
    }

    /// The order to look records up in: each after the records its key reads; a key that reads
    /// its own record, or a circle of them, is an error.
    fn lookup_order(&mut self, lookups: &[Lookup], keys: &[Spanned<String>]) -> Vec<usize> {
        let reads: Vec<Vec<usize>> = lookups
            .iter()
            .map(|l| {
                l.key
                    .segments
                    .iter()
                    .filter_map(|s| match s {
                        crate::scenario::expr::Segment::Path(p) if p.slot != ARGS_SLOT => Some(p.slot as usize - 1),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let mut order = Vec::new();
        while order.len() < lookups.len() {
            let next = (0..lookups.len()).find(|i| !order.contains(i) && reads[*i].iter().all(|r| order.contains(r)));
            match next {
                Some(i) => order.push(i),
                None => {
                    let stuck = (0..lookups.len()).find(|i| !order.contains(i)).unwrap_or(0);
                    self.error(
                        keys[stuck].span(),
                        format!(
                            "the key of `{}` reads a record that needs it first (a lookup's key may read only records looked up before it)",
                            lookups[stuck].name
                        ),
                    );
                    return (0..lookups.len()).collect();
                }
            }
        }
        order
    }

    fn tool_load(&mut self, raw: &RawTool) -> ToolLoad {
        let max_concurrent = raw.max_concurrent.as_ref().map(|m| {
            let n = *m.get_ref();
            if !(1..=MAX_CONCURRENT_MAX).contains(&n) {
                self.error(
                    m.span(),
                    format!("expected max_concurrent from 1 to {MAX_CONCURRENT_MAX}, found {n}"),
                );
            }
            n.clamp(1, MAX_CONCURRENT_MAX)
        });
        let per_minute = raw.rate_limit.as_ref().and_then(|r| {
            let whole = |m: u64| m % 60_000 == 0 && m / 60_000 <= RATE_PER_MINUTE_MAX;
            match crate::scenario::units::parse_rate_milli_per_hour(r.get_ref()) {
                Ok(milli_per_hour) if whole(milli_per_hour) => Some((milli_per_hour / 60_000).max(1) as u32),
                Ok(_) => {
                    self.error(
                        r.span(),
                        format!(
                            "expected a whole number of calls a minute, at most {RATE_PER_MINUTE_MAX} (like \"5/s\", \"30/m\", \"120/h\"), found \"{}\"",
                            r.get_ref()
                        ),
                    );
                    None
                }
                Err(message) => {
                    self.error(r.span(), message);
                    None
                }
            }
        });
        let queue = match raw.when_busy.as_ref().map(|w| (w.get_ref().as_str(), w.span())) {
            None | Some(("reject", _)) => false,
            Some(("queue", _)) => true,
            Some((other, span)) => {
                self.error(
                    span,
                    format!("expected when_busy = \"reject\" or \"queue\", found \"{other}\""),
                );
                false
            }
        };
        if let (Some(w), None, None) = (&raw.when_busy, &max_concurrent, &per_minute) {
            self.error(
                w.span(),
                "`when_busy` goes with `max_concurrent` or `rate_limit`: without a limit the tool is never busy",
            );
        }
        ToolLoad {
            max_concurrent,
            per_minute,
            queue,
        }
    }

    fn tool_rule(&mut self, raw: &Spanned<RawToolRule>, scope: &ToolScope, tables: &[Table]) -> ToolRule {
        let r = raw.get_ref();
        let when = r.when.as_ref().and_then(|w| self.condition_in(w, scope));
        let p = r.p.as_ref().map(|p| self.probability(p));
        let fail = r.fail.as_ref().map(|f| self.template_in(f, scope));
        let writes = r.update.is_some() || r.insert.is_some() || !r.delete.is_empty();
        if fail.is_some() && writes {
            self.error(
                raw.span(),
                "expected either `fail` or changes (`update`, `insert`, `delete`): a failing call changes nothing",
            );
        }
        let lookup_of = |name: &str| scope.lookups.iter().position(|(n, _)| n == name);
        let mut updates = Vec::new();
        for (record, values) in r.update.iter().flatten() {
            let Some(lookup) = lookup_of(record.get_ref()) else {
                self.unknown_record(record, scope);
                continue;
            };
            let table = &tables[scope.lookups[lookup].1];
            for (field, value) in values {
                let Some(f) = self.field_of(table, field) else {
                    continue;
                };
                if f == table.key {
                    self.error(
                        field.span(),
                        "a record's key cannot change: delete it and insert another",
                    );
                    continue;
                }
                if let Some(value) = self.world_value(value, table.fields[f].ty, scope) {
                    updates.push(FieldWrite {
                        lookup,
                        field: f,
                        value,
                    });
                }
            }
        }
        let mut inserts = Vec::new();
        for (table_name, values) in r.insert.iter().flatten() {
            let Some(t) = tables.iter().position(|t| &t.name == table_name.get_ref()) else {
                let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
                self.error(
                    table_name.span(),
                    format!(
                        "insert names table \"{}\", which does not exist ({})",
                        table_name.get_ref(),
                        known.join(", ")
                    ),
                );
                continue;
            };
            let table = &tables[t];
            let mut fields = Vec::new();
            for (field, value) in values {
                let Some(f) = self.field_of(table, field) else {
                    continue;
                };
                if let Some(value) = self.world_value(value, table.fields[f].ty, scope) {
                    fields.push((f, value));
                }
            }
            if !values.keys().any(|k| k.get_ref() == &table.fields[table.key].name) {
                self.error(
                    table_name.span(),
                    format!(
                        "expected the new record's key `{}` among its fields",
                        table.fields[table.key].name
                    ),
                );
            }
            inserts.push(Insert {
                table: t,
                values: fields,
            });
        }
        let mut deletes = Vec::new();
        for record in &r.delete {
            match lookup_of(record.get_ref()) {
                Some(lookup) => deletes.push(lookup),
                None => self.unknown_record(record, scope),
            }
        }
        ToolRule {
            when,
            p,
            fail,
            updates,
            inserts,
            deletes,
            output: r.output.as_ref().map(|o| self.template_in(o, scope)),
        }
    }

    /// The index of `field` in `table`, or an error at it (with a did-you-mean).
    fn field_of(&mut self, table: &Table, field: &Spanned<String>) -> Option<usize> {
        let found = table.field(field.get_ref());
        if found.is_none() {
            self.error(
                field.span(),
                format!(
                    "table {} has no field `{}`{} (it has {})",
                    table.name,
                    field.get_ref(),
                    field_hint(table, field.get_ref()),
                    table.field_list()
                ),
            );
        }
        found
    }

    fn unknown_record(&mut self, record: &Spanned<String>, scope: &ToolScope) {
        let known: Vec<&str> = scope.lookups.iter().map(|(n, _)| n.as_str()).collect();
        self.error(
            record.span(),
            format!(
                "\"{}\" is not a record the tool reads ({})",
                record.get_ref(),
                if known.is_empty() {
                    "it reads none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    }

    /// A field's new value: a template for a string field; an expression or a constant otherwise.
    fn world_value(&mut self, value: &Spanned<toml::Value>, ty: Type, scope: &dyn Scope) -> Option<WorldValue> {
        match value.get_ref() {
            toml::Value::String(text) if ty == Type::Str => match Template::parse_in(text, true, scope) {
                Ok(t) => Some(WorldValue::Text(t)),
                Err(e) => {
                    self.expr_error(&value.span(), e);
                    None
                }
            },
            toml::Value::String(_) => {
                let text = Spanned::new(value.span(), value.get_ref().as_str().unwrap_or("").to_owned());
                self.value_expr(&text, scope, ty).map(WorldValue::Expr)
            }
            other => match datum_from_toml(other, ty) {
                Ok(d) => Some(WorldValue::Const(d)),
                Err(message) => {
                    self.error(value.span(), message);
                    None
                }
            },
        }
    }

    /// A value expression of a type the field accepts.
    fn value_expr(&mut self, text: &Spanned<String>, scope: &dyn Scope, ty: Type) -> Option<Operand> {
        match Operand::parse_in(text.get_ref(), scope) {
            Ok(operand) => {
                let found = crate::scenario::expr::operand_type(&operand);
                if !ty.accepts(found) {
                    self.error(text.span(), format!("expected {}, found {}", ty.name(), found.name()));
                    return None;
                }
                Some(operand)
            }
            Err(e) => {
                self.expr_error(&text.span(), e);
                None
            }
        }
    }

    pub(super) fn template_in(&mut self, value: &Spanned<String>, scope: &dyn Scope) -> Template {
        match Template::parse_in(value.get_ref(), true, scope) {
            Ok(t) => t,
            Err(e) => {
                self.expr_error(&value.span(), e);
                Template::default()
            }
        }
    }

    /// A condition over a tool call (`when`), or `None` after reporting why it does not parse.
    fn condition_in(&mut self, value: &Spanned<String>, scope: &dyn Scope) -> Option<Expr> {
        match Expr::parse_in(value.get_ref(), scope) {
            Ok(e) => Some(e),
            Err(e) => {
                self.expr_error(&value.span(), e);
                None
            }
        }
    }

    /// A condition over one record of `table`.
    fn record_condition(&mut self, text: &Spanned<String>, table: &Table) -> Option<Expr> {
        match Expr::parse_in(text.get_ref(), &RecordScope(table)) {
            Ok(e) => Some(e),
            Err(e) => {
                self.expr_error(&text.span(), e);
                None
            }
        }
    }

    /// A table an invariant names.
    fn invariant_table(&mut self, name: &Spanned<String>, tables: &[Table]) -> Option<TableIdx> {
        let found = tables.iter().position(|t| &t.name == name.get_ref());
        if found.is_none() {
            let known: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            self.error(
                name.span(),
                format!(
                    "names table \"{}\", which does not exist ({})",
                    name.get_ref(),
                    if known.is_empty() {
                        "the scenario declares no [[table]]".to_owned()
                    } else {
                        known.join(", ")
                    }
                ),
            );
        }
        found
    }

    /// `always = { table, check }`.
    pub(super) fn world_always(&mut self, a: &RawAlways, span: Range<usize>, tables: &[Table]) -> Option<Check> {
        let example = "`always = { table = \"accounts\", check = \"balance >= 0\" }`";
        let (table, check, text) =
            self.world_check(a.table.as_ref(), a.check.as_ref(), span, "check", example, tables)?;
        Some(Check::WorldAlways { table, check, text })
    }

    /// `never = { table, when }`.
    pub(super) fn world_never(&mut self, n: &RawNever, span: Range<usize>, tables: &[Table]) -> Option<Check> {
        let example = "`never = { table = \"rooms\", when = \"free < 0\" }`";
        let (table, when, text) = self.world_check(n.table.as_ref(), n.when.as_ref(), span, "when", example, tables)?;
        Some(Check::WorldNever { table, when, text })
    }

    /// A table and a condition over its records, both required.
    fn world_check(
        &mut self,
        table: Option<&Spanned<String>>,
        condition: Option<&Spanned<String>>,
        span: Range<usize>,
        key: &str,
        example: &str,
        tables: &[Table],
    ) -> Option<(TableIdx, Expr, String)> {
        let (Some(table), Some(condition)) = (table, condition) else {
            self.error(span, format!("expected `table` and `{key}` together: {example}"));
            return None;
        };
        let t = self.invariant_table(table, tables)?;
        let expr = self.record_condition(condition, &tables[t])?;
        Some((t, expr, condition.get_ref().clone()))
    }

    /// `never = { effect, amount_more_than }` or `never = { effect, total_more_than, per }`.
    pub(super) fn amount_bound(&mut self, n: &RawNever, effect: &Spanned<String>) -> Option<Check> {
        let number = |v: &Spanned<toml::Value>| datum_from_toml(v.get_ref(), Type::Dec);
        match (&n.amount_more_than, &n.total_more_than) {
            (Some(single), None) => {
                if let Some(per) = &n.per {
                    self.error(
                        per.span(),
                        "`per` goes with `total_more_than`; `amount_more_than` bounds each effect",
                    );
                }
                match number(single) {
                    Ok(Datum::Dec(more_than)) => Some(Check::NeverAmount {
                        effect: effect.get_ref().clone(),
                        more_than,
                    }),
                    Ok(_) | Err(_) => {
                        self.error(single.span(), "expected a number");
                        None
                    }
                }
            }
            (None, Some(total)) => {
                let per = match n.per.as_ref().map(|p| (p.get_ref().as_str(), p.span())) {
                    None | Some(("run", _)) => Per::Run,
                    Some(("conversation", _)) => Per::Conversation,
                    Some(("subject", _)) => Per::Subject,
                    Some((other, span)) => {
                        self.error(
                            span,
                            format!("expected per = \"conversation\", \"subject\" or \"run\", found \"{other}\""),
                        );
                        Per::Run
                    }
                };
                match number(total) {
                    Ok(Datum::Dec(more_than)) => Some(Check::TotalMax {
                        effect: effect.get_ref().clone(),
                        more_than,
                        per,
                    }),
                    Ok(_) | Err(_) => {
                        self.error(total.span(), "expected a number");
                        None
                    }
                }
            }
            _ => None,
        }
    }

    /// `goal = { task, expect = [...] }`.
    pub(super) fn goal(&mut self, raw: &Spanned<RawGoal>, tables: &[Table], tasks: &[String]) -> Option<Check> {
        let g = raw.get_ref();
        if let Some(task) = &g.task {
            if !tasks.contains(task.get_ref()) {
                let hint = crate::scenario::error::did_you_mean(task.get_ref(), tasks.iter().map(String::as_str))
                    .map(|s| format!("; did you mean \"{s}\"?"))
                    .unwrap_or_default();
                self.error(
                    task.span(),
                    format!(
                        "names task \"{}\", which no traffic performs{hint} ({})",
                        task.get_ref(),
                        if tasks.is_empty() {
                            "add `task = \"...\"` to a [[traffic]] or a script item".to_owned()
                        } else {
                            tasks.join(", ")
                        }
                    ),
                );
            }
        }
        if g.expect.is_empty() {
            self.error(raw.span(), "expected at least one expectation in `expect`");
        }
        let mut expect = Vec::new();
        for item in &g.expect {
            let e = item.get_ref();
            let Some(t) = self.invariant_table(&e.table, tables) else {
                continue;
            };
            let table = &tables[t];
            let target = match (&e.key, &e.matching) {
                (Some(key), None) if key.get_ref().as_str().is_some_and(|k| k.contains("{{")) => {
                    let text = Spanned::new(key.span(), key.get_ref().as_str().unwrap_or("").to_owned());
                    ExpectTarget::KeyTemplate(self.template_in(&text, &ConversationNumber))
                }
                (Some(key), None) => match datum_from_toml(key.get_ref(), table.fields[table.key].ty) {
                    Ok(d) => ExpectTarget::Key(d),
                    Err(message) => {
                        self.error(key.span(), format!("the key: {message}"));
                        continue;
                    }
                },
                (None, Some(matching)) => match self.record_condition(matching, table) {
                    Some(expr) => ExpectTarget::Matching(expr, matching.get_ref().clone()),
                    None => continue,
                },
                _ => {
                    self.error(item.span(), "expected exactly one of `key` or `where`");
                    continue;
                }
            };
            let chosen = [e.fields.is_some(), e.unchanged.is_some(), e.absent.is_some()]
                .iter()
                .filter(|x| **x)
                .count();
            let what = match (&e.fields, chosen) {
                (Some(fields), 1) => {
                    let mut values = Vec::new();
                    for (field, value) in fields {
                        let Some(f) = self.field_of(table, field) else {
                            continue;
                        };
                        match datum_from_toml(value.get_ref(), table.fields[f].ty) {
                            Ok(d) => values.push((f, d)),
                            Err(message) => self.error(value.span(), format!("field `{}`: {message}", field.get_ref())),
                        }
                    }
                    ExpectWhat::Fields(values)
                }
                (None, 1) if e.unchanged.as_ref().is_some_and(|u| *u.get_ref()) => ExpectWhat::Unchanged,
                (None, 1) if e.absent.as_ref().is_some_and(|a| *a.get_ref()) => ExpectWhat::Absent,
                _ => {
                    self.error(
                        item.span(),
                        "expected exactly one of `fields = { ... }`, `unchanged = true` or `absent = true`",
                    );
                    continue;
                }
            };
            if matches!(target, ExpectTarget::Matching(..)) && !matches!(what, ExpectWhat::Fields(_)) {
                self.error(
                    item.span(),
                    "`where` goes with `fields`: some record matching it has these values",
                );
                continue;
            }
            expect.push(Expect { table: t, target, what });
        }
        Some(Check::Goal {
            task: g.task.as_ref().map(|t| t.get_ref().clone()),
            expect,
        })
    }
}

impl Validator<'_> {
    /// World settings that do nothing: a world fault on tools that change no record, an amount
    /// bound on an effect no tool gives an amount.
    pub(super) fn world_noops(&mut self, raw: &RawScenario, scenario: &Scenario) {
        use crate::catalogue::faults::FaultKind;
        for (fault, raw_fault) in scenario.faults.iter().zip(&raw.fault) {
            let needs = match fault.kind {
                FaultKind::WorldStaleRead => "reads no record (no `read`)",
                FaultKind::WorldLostWrite | FaultKind::WorldConflict => {
                    "changes no record (no rule with `update`, `insert` or `delete`)"
                }
                _ => continue,
            };
            let acts = scenario
                .tools
                .iter()
                .filter(|t| crate::scenario::glob::glob_match(&fault.target, &format!("tool:{}", t.name)))
                .any(|t| match fault.kind {
                    FaultKind::WorldStaleRead => !t.lookups.is_empty(),
                    _ => t
                        .rules
                        .iter()
                        .any(|r| !r.updates.is_empty() || !r.inserts.is_empty() || !r.deletes.is_empty()),
                });
            if !acts {
                let span = raw_fault.get_ref().kind.span();
                self.warn(
                    span,
                    format!(
                        "fault {} does nothing: every tool it targets ({}) {needs}",
                        fault.name, fault.target
                    ),
                );
            }
        }
        let with_amounts: Vec<&str> = scenario
            .tools
            .iter()
            .filter(|t| t.amount.is_some())
            .filter_map(|t| t.effect.as_deref())
            .collect();
        for item in &raw.invariant {
            let Some(never) = &item.get_ref().never else {
                continue;
            };
            let n = never.get_ref();
            let (Some(effect), true) = (&n.effect, n.amount_more_than.is_some() || n.total_more_than.is_some()) else {
                continue;
            };
            if !with_amounts.contains(&effect.get_ref().as_str()) {
                self.warn(
                    effect.span(),
                    format!(
                        "invariant \"{}\" bounds the amounts of effect \"{}\", but no tool with that effect has an `amount`, so it can never break",
                        item.get_ref().name.get_ref(),
                        effect.get_ref()
                    ),
                );
            }
        }
    }
}

/// The tasks the scenario's traffic performs, in first-seen order.
pub(super) fn task_names(raw: &RawScenario) -> Vec<String> {
    let mut seen = BTreeMap::new();
    for traffic in &raw.traffic {
        let t = traffic.get_ref();
        let names = t
            .task
            .iter()
            .chain(t.script.iter().filter_map(|s| s.get_ref().task.as_ref()));
        for name in names {
            let next = seen.len();
            seen.entry(name.get_ref().clone()).or_insert(next);
        }
    }
    let mut names: Vec<(usize, String)> = seen.into_iter().map(|(n, i)| (i, n)).collect();
    names.sort();
    names.into_iter().map(|(_, n)| n).collect()
}
