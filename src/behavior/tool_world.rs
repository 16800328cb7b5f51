//! What a tool call does to the world: its lookups, the first of its rules that matches, the
//! changes that rule makes, the output and the effect's amount. Pure over the call, the world
//! as read and the tool's random stream; the tool actor acts out faults around it.

use std::sync::Arc;

use crate::kernel::RngStream;
use crate::protocol::{ChangeOp, ConvId, WorldChange, WorldState};
use crate::scenario::expr::{operand_value, operand_value_checked, Context, Path, Value, Var};
use crate::scenario::{Datum, Scenario, Tool, WorldValue, ARGS_SLOT, EXISTS_FIELD};

/// What a tool call reads: its arguments (as the rules name them) and the records it looked up.
pub struct CallView<'a> {
    pub conv: ConvId,
    /// Per entry of [`Tool::args`].
    pub args: Vec<Datum>,
    /// Per lookup: its key (if it parsed) and the record's values (if it exists).
    pub records: Vec<(Option<Datum>, Option<Vec<Datum>>)>,
    pub tool: &'a Tool,
    pub scenario: &'a Scenario,
}

impl Context for CallView<'_> {
    fn var(&self, var: Var) -> Value<'_> {
        match var {
            Var::Conversation => Value::Int(self.conv as i64),
            Var::Turn | Var::ToolCalls | Var::Delegations | Var::UserTurn => Value::Int(0),
            _ => Value::Str(""),
        }
    }

    fn path(&self, path: Path) -> Value<'_> {
        if path.slot == ARGS_SLOT {
            return self.args.get(path.field as usize).map_or(Value::Str(""), Datum::value);
        }
        let lookup = path.slot as usize - 1;
        let Some((_, record)) = self.records.get(lookup) else {
            return Value::Str("");
        };
        if path.field == EXISTS_FIELD {
            return Value::Bool(record.is_some());
        }
        match record {
            Some(values) => values.get(path.field as usize).map_or(Value::Str(""), Datum::value),
            None => {
                // A record that was not found reads as zeros of its fields' types.
                let table = &self.scenario.tables[self.tool.lookups[lookup].table];
                zero_value(table.fields[path.field as usize].ty)
            }
        }
    }
}

fn zero_value(ty: crate::scenario::expr::Type) -> Value<'static> {
    use crate::scenario::expr::Type;
    match ty {
        Type::Str => Value::Str(""),
        Type::Int => Value::Int(0),
        Type::Dec => Value::Dec(0),
        Type::Bool => Value::Bool(false),
    }
}

/// The arguments the tool's rules read, from the call's JSON arguments, by their types.
pub fn call_args(tool: &Tool, args: &serde_json::Map<String, serde_json::Value>) -> Vec<Datum> {
    tool.args
        .iter()
        .map(|(name, ty)| match args.get(name) {
            Some(serde_json::Value::String(s)) if *ty == crate::scenario::expr::Type::Str => {
                Datum::Str(Arc::from(s.as_str()))
            }
            Some(value) if *ty == crate::scenario::expr::Type::Str => Datum::Str(Arc::from(value.to_string())),
            Some(value) => arg_datum(value, *ty),
            None => Datum::zero(*ty),
        })
        .collect()
}

/// A number argument as a field of type `ty`: a whole number from an integral float, a decimal
/// rounded to the nearest millionth (saturating); anything else the schema let through reads as
/// zero.
fn arg_datum(value: &serde_json::Value, ty: crate::scenario::expr::Type) -> Datum {
    use crate::scenario::expr::{Type, DEC_ONE};
    if let Ok(datum) = Datum::from_json(value, ty) {
        return datum;
    }
    match (ty, value.as_f64()) {
        (Type::Int, Some(f)) if f.fract() == 0.0 => Datum::Int(f as i64),
        (Type::Dec, Some(f)) => Datum::Dec((f * DEC_ONE as f64).round() as i64),
        _ => Datum::zero(ty),
    }
}

/// Looks the tool's records up (`stale`: as they were before their last write).
pub fn look_up(view: &mut CallView, world: &WorldState, stale: bool) {
    let tool = view.tool;
    view.records = vec![(None, None); tool.lookups.len()];
    for &index in &tool.lookup_order {
        let lookup = &tool.lookups[index];
        let table = &view.scenario.tables[lookup.table];
        let key_text = lookup.key.render(&*view, &|_| None);
        let key = table.key_from_text(&key_text);
        let record = key
            .as_ref()
            .and_then(|k| world.get(lookup.table, k))
            .map(|row| match (&row.previous, stale) {
                (Some(previous), true) => previous.clone(),
                _ => row.values.clone(),
            });
        view.records[index] = (key, record);
    }
}

/// What the matching rule decided.
pub enum Decision {
    /// No rule matched (or the tool has none): the plain output and effect.
    Plain,
    /// The call fails with this error text.
    Fail(String),
    /// The call succeeds with these changes; `output` is the rule's own, if it has one.
    Change { rule: usize, changes: Vec<WorldChange> },
}

/// The first rule whose `when` holds and whose `p` is drawn, and what it does.
pub fn decide(view: &CallView, stream: &mut RngStream) -> Decision {
    for (index, rule) in view.tool.rules.iter().enumerate() {
        if rule.when.as_ref().is_some_and(|w| !w.eval(view)) {
            continue;
        }
        if rule.p.is_some_and(|p| !p.draw(stream)) {
            continue;
        }
        if let Some(fail) = &rule.fail {
            return Decision::Fail(fail.render(view, &|_| None));
        }
        return match changes(view, index) {
            Ok(changes) => Decision::Change { rule: index, changes },
            Err(error) => Decision::Fail(error),
        };
    }
    Decision::Plain
}

/// A field's new value, computed over the records as read; `None` for a number that left the 64
/// bits a field holds (its arithmetic saturated), which the store refuses.
fn compute(value: &WorldValue, ty: crate::scenario::expr::Type, view: &CallView) -> Option<Datum> {
    let datum = match value {
        WorldValue::Const(d) => d.clone(),
        WorldValue::Text(t) => Datum::Str(t.render_shared(view, &|_| None)),
        WorldValue::Expr(e) => Datum::from_value(&operand_value(e, view), ty),
    };
    match (value, &datum) {
        // Only a value at a bound can have saturated: evaluated again, checked, to tell.
        (WorldValue::Expr(e), Datum::Int(n) | Datum::Dec(n)) if *n == i64::MAX || *n == i64::MIN => {
            operand_value_checked(e, view).map(|_| datum)
        }
        _ => Some(datum),
    }
}

/// The changes rule `index` makes, or the error a real store answers (a missing record, a
/// duplicate key).
pub fn changes(view: &CallView, index: usize) -> Result<Vec<WorldChange>, String> {
    let rule = &view.tool.rules[index];
    let scenario = view.scenario;
    let mut out: Vec<WorldChange> = Vec::new();
    for write in &rule.updates {
        let lookup = &view.tool.lookups[write.lookup];
        let table = &scenario.tables[lookup.table];
        let (key, record) = &view.records[write.lookup];
        let (Some(key), Some(record)) = (key, record) else {
            return Err(format!(
                "404 not found: {} {}",
                table.name,
                shown_key(key, view, write.lookup)
            ));
        };
        let field = &table.fields[write.field];
        let value =
            compute(&write.value, field.ty, view).ok_or_else(|| out_of_range(&table.name, &key.text(), &field.name))?;
        match out.iter_mut().find(|c| c.table == lookup.table && &c.key == key) {
            Some(change) => {
                if let Some(after) = &mut change.after {
                    after[write.field] = value;
                }
            }
            None => {
                let mut after = record.clone();
                after[write.field] = value;
                out.push(WorldChange {
                    table: lookup.table,
                    key: key.clone(),
                    op: ChangeOp::Update,
                    after: Some(after),
                });
            }
        }
    }
    for insert in &rule.inserts {
        let table = &scenario.tables[insert.table];
        let mut row: Vec<Datum> = table.fields.iter().map(|f| Datum::zero(f.ty)).collect();
        for (field, value) in &insert.values {
            let spec = &table.fields[*field];
            row[*field] =
                compute(value, spec.ty, view).ok_or_else(|| out_of_range(&table.name, "(new record)", &spec.name))?;
        }
        out.push(WorldChange {
            table: insert.table,
            key: row[table.key].clone(),
            op: ChangeOp::Insert,
            after: Some(row),
        });
    }
    for &lookup_index in &rule.deletes {
        let lookup = &view.tool.lookups[lookup_index];
        let table = &scenario.tables[lookup.table];
        let (key, record) = &view.records[lookup_index];
        let (Some(key), Some(_)) = (key, record) else {
            return Err(format!(
                "404 not found: {} {}",
                table.name,
                shown_key(key, view, lookup_index)
            ));
        };
        out.push(WorldChange {
            table: lookup.table,
            key: key.clone(),
            op: ChangeOp::Delete,
            after: None,
        });
    }
    Ok(out)
}

/// The error a store answers for a number out of its field's range, as a database's
/// "numeric value out of range" is.
fn out_of_range(table: &str, key: &str, field: &str) -> String {
    format!("422 numeric value out of range: {table} {key} {field}")
}

fn shown_key(key: &Option<Datum>, view: &CallView, lookup: usize) -> String {
    match key {
        Some(k) => k.text(),
        None => view.tool.lookups[lookup].key.render(view, &|_| None),
    }
}

/// An insert whose key is taken fails as a real store's unique constraint does.
pub fn duplicate_insert(changes: &[WorldChange], world: &WorldState, scenario: &Scenario) -> Option<String> {
    changes
        .iter()
        .filter(|c| c.op == ChangeOp::Insert)
        .find(|c| world.get(c.table, &c.key).is_some())
        .map(|c| {
            format!(
                "409 conflict: {} {} already exists",
                scenario.tables[c.table].name,
                c.key.text()
            )
        })
}

/// The looked-up records as they are after `changes` (for the output's template).
pub fn after_changes(view: &mut CallView, changes: &[WorldChange]) {
    let tool = view.tool;
    for (i, lookup) in tool.lookups.iter().enumerate() {
        let Some(key) = view.records[i].0.clone() else {
            continue;
        };
        if let Some(change) = changes.iter().rev().find(|c| c.table == lookup.table && c.key == key) {
            view.records[i].1 = change.after.clone();
        }
    }
}
