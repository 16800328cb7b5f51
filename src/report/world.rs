//! The world in `report.json`: each table's records at the start and the end (for small tables),
//! the records that changed, field by field, with the conversations and faults behind each
//! change; and the amounts effects carried, in total and per subject.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::observe::world::WorldWatch;
use crate::protocol::LabelSpace;
use crate::scenario::{Datum, Scenario};

/// Tables with at most this many records list them in full (at the start and at the end).
pub const LISTED_RECORDS_MAX: usize = 200;

/// The world at the end of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorldReport {
    pub tables: Vec<TableReport>,
    /// Records that differ between the start and the end.
    pub records_changed: u64,
    /// Writes the store acknowledged but did not keep (`world.lost_write`).
    pub lost_writes: u64,
}

/// One table: its size, its records (when small) and what changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableReport {
    pub name: String,
    pub records_initial: u64,
    pub records_final: u64,
    /// Every record at the start and at the end, for tables of at most [`LISTED_RECORDS_MAX`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial: Option<Vec<Value>>,
    #[serde(rename = "final", skip_serializing_if = "Option::is_none")]
    pub final_records: Option<Vec<Value>>,
    /// Records written during the run, by key: how they differ, and who wrote them.
    pub changed: Vec<RecordChange>,
}

/// One record that was written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordChange {
    pub key: String,
    /// `inserted`, `updated`, `deleted`, or `unchanged` (written back as it was, or only lost
    /// writes).
    pub change: &'static str,
    pub fields: Vec<FieldChange>,
    /// The conversations that wrote it, in order.
    pub conversations: Vec<u32>,
    /// The faults in the history of the turns that wrote it.
    pub faults: Vec<String>,
    #[serde(skip_serializing_if = "is_zero")]
    pub lost_writes: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A field whose value differs between the start and the end.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub before: Value,
    pub after: Value,
}

/// The amounts one effect carried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AmountReport {
    /// Effects that carried an amount.
    pub count: u64,
    /// Their sum (exact decimal).
    pub total: Value,
    pub by_subject: BTreeMap<String, SubjectAmount>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SubjectAmount {
    pub count: u64,
    pub total: Value,
}

/// Changed records a summary line names before it says "and N more".
const CHANGES_LISTED: usize = 4;

impl WorldReport {
    /// One line: how many records changed, and the first few changes.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        let mut all = self
            .tables
            .iter()
            .flat_map(|t| t.changed.iter().map(move |c| (t, c)))
            .filter(|(_, c)| c.change != "unchanged");
        for (table, change) in all.by_ref().take(CHANGES_LISTED) {
            let what = match change.change {
                "inserted" => format!("+{} {}", table.name, change.key),
                "deleted" => format!("-{} {}", table.name, change.key),
                _ => format!(
                    "{} {} {}",
                    table.name,
                    change.key,
                    change
                        .fields
                        .iter()
                        .map(|f| format!("{} {} → {}", f.field, f.before, f.after))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            parts.push(what);
        }
        let more = all.count();
        if more > 0 {
            parts.push(format!("{more} more"));
        }
        let lost = match self.lost_writes {
            0 => String::new(),
            n => format!("; {n} write(s) lost"),
        };
        let tables = self.tables.len();
        let changed_tables = self
            .tables
            .iter()
            .filter(|t| t.changed.iter().any(|c| c.change != "unchanged"))
            .count();
        match parts.is_empty() {
            true => format!("{tables} table(s), nothing changed{lost}"),
            false => format!(
                "{} record(s) changed in {changed_tables} of {tables} table(s): {}{lost}",
                self.records_changed,
                parts.join("; ")
            ),
        }
    }
}

pub use crate::scenario::world::{dec_json, dec_map};

fn record_json(scenario: &Scenario, table: usize, values: &[Datum]) -> Value {
    let fields = &scenario.tables[table].fields;
    Value::Object(
        fields
            .iter()
            .zip(values)
            .map(|(f, v)| (f.name.clone(), v.to_json()))
            .collect(),
    )
}

/// The world part of the report, or `None` for a scenario without tables.
pub fn world_report(scenario: &Scenario, watch: &WorldWatch, labels: &LabelSpace) -> Option<WorldReport> {
    if scenario.tables.is_empty() {
        return None;
    }
    let mut records_changed = 0;
    let tables = scenario
        .tables
        .iter()
        .enumerate()
        .map(|(t, table)| {
            let initial = &watch.initial.tables[t];
            let last = &watch.state.tables[t];
            let list = |rows: &BTreeMap<Datum, crate::protocol::world::RowState>| {
                (rows.len() <= LISTED_RECORDS_MAX)
                    .then(|| rows.values().map(|r| record_json(scenario, t, &r.values)).collect())
            };
            let changed: Vec<RecordChange> = watch
                .history
                .iter()
                .filter(|((table_index, _), _)| *table_index == t)
                .map(|((_, key), history)| {
                    let before = initial.get(key).map(|r| &r.values);
                    let after = last.get(key).map(|r| &r.values);
                    let change = match (before, after) {
                        (None, Some(_)) => "inserted",
                        (Some(_), None) => "deleted",
                        (Some(b), Some(a)) if b != a => "updated",
                        _ => "unchanged",
                    };
                    let fields = table
                        .fields
                        .iter()
                        .enumerate()
                        .filter_map(|(f, field)| {
                            let b = before.map(|v| v[f].to_json()).unwrap_or(Value::Null);
                            let a = after.map(|v| v[f].to_json()).unwrap_or(Value::Null);
                            (b != a).then(|| FieldChange {
                                field: field.name.clone(),
                                before: b,
                                after: a,
                            })
                        })
                        .collect();
                    let faults = history
                        .labels
                        .iter()
                        .map(|id| labels.name(scenario, id))
                        .filter_map(|name| name.strip_prefix("fault:").map(str::to_owned))
                        .collect();
                    RecordChange {
                        key: key.text(),
                        change,
                        fields,
                        conversations: history.conversations.clone(),
                        faults,
                        lost_writes: history.lost,
                    }
                })
                .collect();
            records_changed += changed.iter().filter(|c| c.change != "unchanged").count() as u64;
            TableReport {
                name: table.name.clone(),
                records_initial: initial.len() as u64,
                records_final: last.len() as u64,
                initial: list(initial),
                final_records: list(last),
                changed,
            }
        })
        .collect();
    Some(WorldReport {
        tables,
        records_changed,
        lost_writes: watch.lost_writes,
    })
}

/// The amounts effects carried, by effect.
pub fn amounts(watch: &WorldWatch) -> BTreeMap<String, AmountReport> {
    watch
        .amounts
        .iter()
        .map(|(effect, total)| {
            let by_subject = total
                .by_subject
                .iter()
                .map(|(subject, (count, sum))| {
                    (
                        subject.clone(),
                        SubjectAmount {
                            count: *count,
                            total: dec_json(*sum),
                        },
                    )
                })
                .collect();
            (
                effect.clone(),
                AmountReport {
                    count: total.count,
                    total: dec_json(total.total),
                    by_subject,
                },
            )
        })
        .collect()
}
