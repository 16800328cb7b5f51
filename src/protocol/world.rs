//! The live state of the world during a run, and the changes tools make to it.
//!
//! The scheduler owns the state: tools read it during their turn (one turn runs at a time, so a
//! read sees every change made before it and none after) and hand their changes back as an
//! effect, which the scheduler applies, traces and tells the observer of.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::scenario::{Datum, Scenario, TableIdx};

/// A record as stored: its current values and the version before its last write (what a
/// lagging replica still serves: `world.stale_read`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowState {
    pub values: Vec<Datum>,
    pub previous: Option<Vec<Datum>>,
}

/// The records of every table, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorldState {
    pub tables: Vec<BTreeMap<Datum, RowState>>,
}

impl WorldState {
    /// The world as the scenario declares it.
    pub fn new(scenario: &Scenario) -> WorldState {
        WorldState {
            tables: scenario
                .tables
                .iter()
                .map(|table| {
                    table
                        .rows
                        .iter()
                        .map(|row| {
                            let state = RowState {
                                values: row.clone(),
                                previous: None,
                            };
                            (row[table.key].clone(), state)
                        })
                        .collect()
                })
                .collect(),
        }
    }

    /// The record of `table` with `key`.
    pub fn get(&self, table: TableIdx, key: &Datum) -> Option<&RowState> {
        self.tables.get(table)?.get(key)
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &WorldChange) {
        let Some(rows) = self.tables.get_mut(change.table) else {
            return;
        };
        match &change.after {
            Some(values) => {
                let previous = rows.get(&change.key).map(|r| r.values.clone());
                rows.insert(
                    change.key.clone(),
                    RowState {
                        values: values.clone(),
                        previous,
                    },
                );
            }
            None => {
                rows.remove(&change.key);
            }
        }
    }

    /// Whether the world has any table at all.
    pub fn is_empty(&self) -> bool {
        self.tables.is_empty()
    }
}

/// What a change does to its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    Insert,
    Update,
    Delete,
}

impl ChangeOp {
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Update => "update",
            ChangeOp::Delete => "delete",
        }
    }
}

/// One change to one record: its values afterwards (`None`: deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldChange {
    pub table: TableIdx,
    pub key: Datum,
    pub op: ChangeOp,
    pub after: Option<Vec<Datum>>,
}

impl WorldChange {
    /// The record's values afterwards as a JSON object, in field order (for the trace).
    pub fn row_json(&self, scenario: &Scenario) -> Option<String> {
        let values = self.after.as_ref()?;
        let table = &scenario.tables[self.table];
        let mut out = String::from("{");
        for (i, (field, value)) in table.fields.iter().zip(values).enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&serde_json::Value::String(field.name.clone()).to_string());
            out.push(':');
            out.push_str(&value.to_json().to_string());
        }
        out.push('}');
        Some(out)
    }
}

/// The world as tools see it: shared with the scheduler, read in a tool's turn, written by the
/// scheduler between turns.
pub type SharedWorld = Arc<RwLock<WorldState>>;
