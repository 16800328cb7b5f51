//! Validates `[[supervisor]]` tables into a supervision tree under one root.

use std::collections::BTreeMap;

use toml::Spanned;

use super::{Names, Validator};
use crate::scenario::file::*;
use crate::scenario::model::*;

const DEFAULT_MAX_RESTARTS: u32 = 3;
const DEFAULT_WITHIN_US: u64 = 60_000_000;
const ROOT_SUPERVISOR: &str = "root";

impl Validator<'_> {
    pub(super) fn supervisors(
        &mut self,
        raw: &RawScenario,
        names: &Names,
        agents: &Names,
        tools: &Names,
        llms: &Names,
    ) -> Vec<Supervisor> {
        // Index 0 is the root: the user's "root" if declared, otherwise an implicit one.
        let declared_root = names.get(ROOT_SUPERVISOR);
        let mut order: Vec<Option<usize>> = vec![declared_root];
        order.extend(
            (0..raw.supervisor.len())
                .filter(|i| Some(*i) != declared_root)
                .map(Some),
        );
        let mut supervisors: Vec<Supervisor> = order
            .iter()
            .map(|raw_index| match raw_index {
                None => Supervisor {
                    name: ROOT_SUPERVISOR.to_owned(),
                    strategy: Strategy::OneForOne,
                    max_restarts: DEFAULT_MAX_RESTARTS,
                    within_us: DEFAULT_WITHIN_US,
                    restart_backoff_us: 0,
                    children: Vec::new(),
                    parent: None,
                },
                Some(i) => self.supervisor(raw.supervisor[*i].get_ref()),
            })
            .collect();
        let lookups = ChildNames {
            supervisors: names,
            agents,
            tools,
            llms,
        };
        let supervised = self.attach_children(raw, &order, &mut supervisors, &lookups);
        self.check_supervision_cycles(raw, &order, &supervisors);
        adopt_orphans(raw, &supervised, &mut supervisors);
        supervisors
    }

    /// One declared supervisor, without its children yet.
    fn supervisor(&mut self, s: &RawSupervisor) -> Supervisor {
        let strategy = match s.strategy.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
            None | Some(("one_for_one", _)) => Strategy::OneForOne,
            Some(("one_for_all", _)) => Strategy::OneForAll,
            Some(("rest_for_one", _)) => Strategy::RestForOne,
            Some((other, span)) => {
                self.error(
                    span,
                    format!(
                        "expected strategy \"one_for_one\", \"one_for_all\" or \"rest_for_one\", found \"{other}\""
                    ),
                );
                Strategy::OneForOne
            }
        };
        Supervisor {
            name: s.name.get_ref().clone(),
            strategy,
            max_restarts: s.max_restarts.as_ref().map_or(DEFAULT_MAX_RESTARTS, |m| *m.get_ref()),
            within_us: s.within.as_ref().map_or(DEFAULT_WITHIN_US, |w| self.duration(w)),
            restart_backoff_us: s.restart_backoff.as_ref().map_or(0, |b| self.duration(b)),
            children: Vec::new(),
            parent: None,
        }
    }

    /// Resolves every declared supervisor's `children` and links them in; returns who
    /// supervises each actor (an actor may have only one supervisor).
    fn attach_children(
        &mut self,
        raw: &RawScenario,
        order: &[Option<usize>],
        supervisors: &mut [Supervisor],
        lookups: &ChildNames,
    ) -> BTreeMap<(ActorKind, usize), String> {
        let mut supervised: BTreeMap<(ActorKind, usize), String> = BTreeMap::new();
        for (raw_index, s) in raw.supervisor.iter().enumerate() {
            let s = s.get_ref();
            let me = position_of(order, raw_index);
            for child in &s.children {
                let resolved = self.child(child, lookups.supervisors, lookups.agents, lookups.tools, lookups.llms);
                let Some(resolved) = resolved else { continue };
                let key = match resolved {
                    Child::Actor { kind, index } => (kind, index),
                    Child::Supervisor(i) => (ActorKind::Supervisor, i),
                };
                if let Some(previous) = supervised.insert(key, s.name.get_ref().clone()) {
                    self.error(
                        child.span(),
                        format!(
                            "\"{}\" is already supervised by \"{previous}\"; expected each actor under one supervisor",
                            child.get_ref()
                        ),
                    );
                    continue;
                }
                let resolved = match resolved {
                    Child::Supervisor(i) => {
                        let position = position_of(order, i);
                        if position == 0 {
                            self.error(
                                child.span(),
                                "the root supervisor cannot be the child of another supervisor",
                            );
                            continue;
                        }
                        supervisors[position].parent = Some(me);
                        Child::Supervisor(position)
                    }
                    actor => actor,
                };
                supervisors[me].children.push(resolved);
            }
        }
        supervised
    }

    /// Cycles: walking up from any supervisor must reach the root.
    fn check_supervision_cycles(&mut self, raw: &RawScenario, order: &[Option<usize>], supervisors: &[Supervisor]) {
        for start in 1..supervisors.len() {
            let mut at = start;
            let mut steps = 0;
            while let Some(parent) = supervisors[at].parent {
                at = parent;
                steps += 1;
                if steps > supervisors.len() {
                    let raw_index = order[start].unwrap_or(0);
                    self.error(
                        raw.supervisor[raw_index].get_ref().name.span(),
                        format!(
                            "supervisor \"{}\" is part of a supervision cycle; expected a tree",
                            supervisors[start].name
                        ),
                    );
                    break;
                }
            }
        }
    }

    fn child(
        &mut self,
        child: &Spanned<String>,
        supervisors: &Names,
        agents: &Names,
        tools: &Names,
        llms: &Names,
    ) -> Option<Child> {
        let text = child.get_ref();
        let (prefix, name) = match text.split_once(':') {
            Some((p, n)) => (Some(p), n),
            None => (None, text.as_str()),
        };
        let mut found = Vec::new();
        for (kind_name, names, make) in [
            (
                "agent",
                agents,
                (|i| Child::Actor {
                    kind: ActorKind::Agent,
                    index: i,
                }) as fn(usize) -> Child,
            ),
            ("tool", tools, |i| Child::Actor {
                kind: ActorKind::Tool,
                index: i,
            }),
            ("llm", llms, |i| Child::Actor {
                kind: ActorKind::Llm,
                index: i,
            }),
            ("supervisor", supervisors, Child::Supervisor),
        ] {
            if prefix.is_some_and(|p| p != kind_name) {
                continue;
            }
            if let Some(index) = names.get(name) {
                found.push((kind_name, make(index)));
            }
        }
        match found.len() {
            1 => Some(found[0].1),
            0 => {
                self.error(
                    child.span(),
                    format!("supervisor child \"{text}\" does not exist; expected the name of an agent, tool, llm or supervisor"),
                );
                None
            }
            _ => {
                let kinds: Vec<String> = found.iter().map(|(k, _)| format!("\"{k}:{name}\"")).collect();
                self.error(
                    child.span(),
                    format!(
                        "supervisor child \"{text}\" is ambiguous; write one of {}",
                        kinds.join(" or ")
                    ),
                );
                None
            }
        }
    }
}

/// The names a supervisor child may refer to.
struct ChildNames<'a> {
    supervisors: &'a Names,
    agents: &'a Names,
    tools: &'a Names,
    llms: &'a Names,
}

/// Where the supervisor declared at `raw_index` sits in the tree's order (the root first).
fn position_of(order: &[Option<usize>], raw_index: usize) -> usize {
    order.iter().position(|o| *o == Some(raw_index)).unwrap_or(0)
}

/// Everything without a supervisor goes under the root, in declaration order.
fn adopt_orphans(raw: &RawScenario, supervised: &BTreeMap<(ActorKind, usize), String>, supervisors: &mut [Supervisor]) {
    let mut orphans = Vec::new();
    for (index, supervisor) in supervisors.iter_mut().enumerate().skip(1) {
        if supervisor.parent.is_none() {
            supervisor.parent = Some(0);
            orphans.push(Child::Supervisor(index));
        }
    }
    for (kind, count) in [
        (ActorKind::Llm, raw.llm.len()),
        (ActorKind::Tool, raw.tool.len()),
        (ActorKind::Agent, raw.agent.len()),
        (ActorKind::Guardrail, raw.guardrail.len()),
        (ActorKind::Human, raw.human.len()),
    ] {
        for index in 0..count {
            if !supervised.contains_key(&(kind, index)) {
                orphans.push(Child::Actor { kind, index });
            }
        }
    }
    supervisors[0].children.extend(orphans);
}
