//! The observer's view of the world: a mirror of its state (initial and current), which
//! conversations changed which record, the amounts effects carried, and the world invariants and
//! goals checked against them.

use std::collections::{BTreeMap, BTreeSet};

use crate::kernel::Labels;
use crate::protocol::{ConvId, WorldChange, WorldState};
use crate::scenario::expr::{format_dec, Context, Expr, Operand, Path, Value, Var};
use crate::scenario::{Check, Datum, Expect, ExpectTarget, ExpectWhat, Scenario, Table, TableIdx};

/// Amounts an effect carried: how many effects had one, and their sum (decimal, millionths).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmountTotal {
    pub count: u64,
    pub total: i64,
    /// The same, per subject.
    pub by_subject: BTreeMap<String, (u64, i64)>,
}

/// What happened to one record over the run.
#[derive(Debug, Clone, Default)]
pub struct RecordHistory {
    /// Conversations that changed it, in the order of their first change.
    pub conversations: Vec<ConvId>,
    /// The taint of the turns that changed it.
    pub labels: Labels,
    /// Changes the store acknowledged but did not keep.
    pub lost: u64,
}

/// The world as the observer sees it.
#[derive(Debug, Default)]
pub struct WorldWatch {
    pub initial: WorldState,
    pub state: WorldState,
    pub history: BTreeMap<(TableIdx, Datum), RecordHistory>,
    /// Writes the store acknowledged but did not keep.
    pub lost_writes: u64,
    /// Per effect with amounts.
    pub amounts: BTreeMap<String, AmountTotal>,
    /// Running sums of `total_more_than` invariants: (invariant, scope) → total.
    totals: BTreeMap<(usize, String), i64>,
    /// Per goal invariant, the conversations checked, and which ones already were.
    pub goal_checked: BTreeMap<usize, u64>,
    goals_done: BTreeSet<ConvId>,
}

/// A goal's key template sees the conversation's number.
struct ConversationNumber(ConvId);

impl Context for ConversationNumber {
    fn var(&self, var: Var) -> Value<'_> {
        match var {
            Var::Conversation => Value::Int(self.0 as i64),
            _ => Value::Str(""),
        }
    }
}

/// A record's fields, for world checks.
struct RecordView<'a>(&'a [Datum]);

impl Context for RecordView<'_> {
    fn var(&self, _var: Var) -> Value<'_> {
        Value::Str("")
    }

    fn path(&self, path: Path) -> Value<'_> {
        self.0.get(path.field as usize).map_or(Value::Str(""), Datum::value)
    }
}

/// The fields an expression reads, with their values in `row`: `balance = -40`.
fn fields_read(expr: &Expr, table: &Table, row: &[Datum]) -> String {
    let mut fields = BTreeSet::new();
    fn walk_operand(o: &Operand, out: &mut BTreeSet<u32>) {
        match o {
            Operand::Path(p, _) => {
                out.insert(p.field);
            }
            Operand::Arith(_, a, b) => {
                walk_operand(a, out);
                walk_operand(b, out);
            }
            _ => {}
        }
    }
    fn walk(e: &Expr, out: &mut BTreeSet<u32>) {
        match e {
            Expr::Or(a, b) | Expr::And(a, b) => {
                walk(a, out);
                walk(b, out);
            }
            Expr::Not(a) => walk(a, out),
            Expr::Cmp(_, a, b) => {
                walk_operand(a, out);
                walk_operand(b, out);
            }
            Expr::Truth(a) => walk_operand(a, out),
        }
    }
    walk(expr, &mut fields);
    fields
        .into_iter()
        .filter_map(|f| {
            let field = table.fields.get(f as usize)?;
            Some(format!("{} = {}", field.name, shown(&row[f as usize])))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A datum as a finding shows it: strings quoted.
pub fn shown(datum: &Datum) -> String {
    match datum {
        Datum::Str(s) => format!("\"{s}\""),
        other => other.text(),
    }
}

impl WorldWatch {
    pub fn new(scenario: &Scenario) -> WorldWatch {
        let initial = WorldState::new(scenario);
        WorldWatch {
            state: initial.clone(),
            initial,
            ..WorldWatch::default()
        }
    }

    /// The world invariants over one record's values: every broken one, with its message.
    pub fn check_record(scenario: &Scenario, table: TableIdx, row: &[Datum]) -> Vec<(usize, String)> {
        let t = &scenario.tables[table];
        let key = row[t.key].text();
        let mut broken = Vec::new();
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            match &invariant.check {
                Check::WorldAlways {
                    table: watched,
                    check,
                    text,
                } if *watched == table && !check.eval(&RecordView(row)) => broken.push((
                    index,
                    format!("{} {key} breaks `{text}` ({})", t.name, fields_read(check, t, row)),
                )),
                Check::WorldNever {
                    table: watched,
                    when,
                    text,
                } if *watched == table && when.eval(&RecordView(row)) => broken.push((
                    index,
                    format!(
                        "{} {key} is in a forbidden state `{text}` ({})",
                        t.name,
                        fields_read(when, t, row)
                    ),
                )),
                _ => {}
            }
        }
        broken
    }

    /// Applies a change (unless lost) and notes who made it; returns the invariants the changed
    /// record now breaks.
    pub fn on_change(
        &mut self,
        scenario: &Scenario,
        conv: ConvId,
        change: &WorldChange,
        lost: bool,
        labels: &Labels,
    ) -> Vec<(usize, String)> {
        let history = self.history.entry((change.table, change.key.clone())).or_default();
        if !history.conversations.contains(&conv) {
            history.conversations.push(conv);
        }
        history.labels.union_with(labels);
        if lost {
            history.lost += 1;
            self.lost_writes += 1;
            return Vec::new();
        }
        self.state.apply(change);
        match &change.after {
            Some(row) => WorldWatch::check_record(scenario, change.table, row),
            None => Vec::new(),
        }
    }

    /// Counts an effect's amount; returns the amount invariants it breaks.
    pub fn on_amount(
        &mut self,
        scenario: &Scenario,
        conv: ConvId,
        effect: &str,
        times: u32,
        amount: i64,
        subject: Option<&str>,
    ) -> Vec<(usize, String)> {
        let entry = self.amounts.entry(effect.to_owned()).or_default();
        let added = amount.saturating_mul(times as i64);
        entry.count += times as u64;
        entry.total = entry.total.saturating_add(added);
        if let Some(subject) = subject {
            let by = entry.by_subject.entry(subject.to_owned()).or_default();
            by.0 += times as u64;
            by.1 = by.1.saturating_add(added);
        }
        let whose = subject.map(|s| format!(" for {s}")).unwrap_or_default();
        let mut broken = Vec::new();
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            match &invariant.check {
                Check::NeverAmount {
                    effect: watched,
                    more_than,
                } if watched == effect && amount > *more_than => broken.push((
                    index,
                    format!(
                        "conversation {conv}: effect {effect} of {}{whose}, more than {}",
                        format_dec(amount),
                        format_dec(*more_than)
                    ),
                )),
                Check::TotalMax {
                    effect: watched,
                    more_than,
                    per,
                } if watched == effect => {
                    let scope = match per {
                        crate::scenario::Per::Run => String::new(),
                        crate::scenario::Per::Conversation => format!("conversation {conv}"),
                        crate::scenario::Per::Subject => subject.unwrap_or("").to_owned(),
                    };
                    let total = self.totals.entry((index, scope.clone())).or_default();
                    *total = total.saturating_add(added);
                    if *total > *more_than {
                        let of = match per {
                            crate::scenario::Per::Run => "in the run".to_owned(),
                            crate::scenario::Per::Conversation => format!("in {scope}"),
                            crate::scenario::Per::Subject => format!("for {scope}"),
                        };
                        broken.push((
                            index,
                            format!(
                                "conversation {conv}: effect {effect} totals {} {of}, more than {}",
                                format_dec(*total),
                                format_dec(*more_than)
                            ),
                        ));
                    }
                }
                _ => {}
            }
        }
        broken
    }

    /// The goals of conversation `conv`'s task, checked now (once per conversation): each goal
    /// invariant that fails, with what differs.
    pub fn check_goals(&mut self, scenario: &Scenario, conv: ConvId) -> Vec<(usize, String)> {
        if !self.goals_done.insert(conv) {
            return Vec::new();
        }
        let task = scenario.task_of(conv);
        let mut failed = Vec::new();
        for (index, invariant) in scenario.invariants.iter().enumerate() {
            let Check::Goal {
                task: goal_task,
                expect,
            } = &invariant.check
            else {
                continue;
            };
            if goal_task.is_some() && goal_task.as_deref() != task {
                continue;
            }
            *self.goal_checked.entry(index).or_default() += 1;
            let problems: Vec<String> = expect.iter().filter_map(|e| self.unmet(scenario, e, conv)).collect();
            if !problems.is_empty() {
                let task = task.map(|t| format!(" (task {t})")).unwrap_or_default();
                failed.push((index, format!("conversation {conv}{task}: {}", problems.join("; "))));
            }
        }
        failed
    }

    /// What is wrong with one expectation, if anything.
    fn unmet(&self, scenario: &Scenario, expect: &Expect, conv: ConvId) -> Option<String> {
        let table = &scenario.tables[expect.table];
        let rows = self.state.tables.get(expect.table)?;
        let rendered;
        let target = match &expect.target {
            ExpectTarget::KeyTemplate(template) => {
                let text = template.render(&ConversationNumber(conv), &|_| None);
                match table.key_from_text(&text) {
                    Some(key) => {
                        rendered = ExpectTarget::Key(key);
                        &rendered
                    }
                    None => return Some(format!("{} has no record with key \"{text}\"", table.name)),
                }
            }
            other => other,
        };
        match target {
            ExpectTarget::KeyTemplate(_) => None,
            ExpectTarget::Key(key) => {
                let now = rows.get(key).map(|r| &r.values);
                let was = self.initial.get(expect.table, key).map(|r| &r.values);
                let name = format!("{} {}", table.name, key.text());
                match (&expect.what, now) {
                    (ExpectWhat::Absent, None) => None,
                    (ExpectWhat::Absent, Some(_)) => Some(format!("{name} exists, expected none")),
                    (ExpectWhat::Unchanged, now) if now == was => None,
                    (ExpectWhat::Unchanged, now) => Some(match (was, now) {
                        (Some(was), Some(now)) => {
                            format!("{name} changed, expected unchanged ({})", differences(table, was, now))
                        }
                        (None, Some(_)) => format!("{name} was created, expected none"),
                        _ => format!("{name} was deleted, expected unchanged"),
                    }),
                    (ExpectWhat::Fields(_), None) => Some(format!("{name} does not exist")),
                    (ExpectWhat::Fields(fields), Some(row)) => {
                        let wrong: Vec<String> = fields
                            .iter()
                            .filter(|(f, v)| &row[*f] != v)
                            .map(|(f, v)| {
                                format!(
                                    "{name} {} is {}, expected {}",
                                    table.fields[*f].name,
                                    shown(&row[*f]),
                                    shown(v)
                                )
                            })
                            .collect();
                        (!wrong.is_empty()).then(|| wrong.join("; "))
                    }
                }
            }
            ExpectTarget::Matching(condition, text) => {
                let ExpectWhat::Fields(fields) = &expect.what else {
                    return None;
                };
                let matching: Vec<&Vec<Datum>> = rows
                    .values()
                    .map(|r| &r.values)
                    .filter(|row| condition.eval(&RecordView(row)))
                    .collect();
                if matching.iter().any(|row| fields.iter().all(|(f, v)| &row[*f] == v)) {
                    return None;
                }
                let wanted: Vec<String> = fields
                    .iter()
                    .map(|(f, v)| format!("{} = {}", table.fields[*f].name, shown(v)))
                    .collect();
                Some(match matching.first() {
                    None => format!("no record of {} matches `{text}`", table.name),
                    Some(row) => format!(
                        "{} {} matches `{text}` but has {}, expected {}",
                        table.name,
                        row[table.key].text(),
                        fields
                            .iter()
                            .filter(|(f, v)| &row[*f] != v)
                            .map(|(f, _)| format!("{} = {}", table.fields[*f].name, shown(&row[*f])))
                            .collect::<Vec<_>>()
                            .join(", "),
                        wanted.join(", ")
                    ),
                })
            }
        }
    }
}

/// The fields that differ between two versions of a record: `flight "UA100" → "UA200"`.
pub fn differences(table: &Table, before: &[Datum], after: &[Datum]) -> String {
    table
        .fields
        .iter()
        .zip(before.iter().zip(after))
        .filter(|(_, (b, a))| b != a)
        .map(|(field, (b, a))| format!("{} {} → {}", field.name, shown(b), shown(a)))
        .collect::<Vec<_>>()
        .join(", ")
}
