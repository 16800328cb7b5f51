//! Causal impact: what each fault firing really changed. For every firing of a run, the run is
//! made again with only that firing left out (every draw the same: conversation-keyed streams
//! keep the other conversations' draws where they were), and each conversation's outcome — its
//! fate and its side effects — is compared. A firing that reached a conversation but changed
//! nothing in it is told apart from one that changed its fate or its effects.

use std::collections::BTreeMap;

use serde::Serialize;

use super::fate::ConversationOutcome;

/// Changed conversations listed per firing, at most.
pub const CHANGES_LISTED_MAX: usize = 20;
/// Firings analysed per run, at most (each costs a run).
pub const FIRINGS_MAX: usize = 50;

/// The impact of every analysed firing of a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    pub firings: Vec<FiringImpact>,
    /// Firings in the run; those past `FIRINGS_MAX` are not analysed.
    pub firings_total: u64,
}

/// What one firing changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FiringImpact {
    /// The fault's name.
    pub fault: String,
    pub kind: String,
    /// Which firing of that fault, from 1.
    pub firing: u32,
    /// Where it fired in the run.
    pub seq: u64,
    pub t_us: u64,
    /// Conversations whose fate or side effects differ without this firing.
    pub changed_total: u64,
    /// The first `CHANGES_LISTED_MAX` of them.
    pub changed: Vec<Change>,
    /// The run's outcome without this firing.
    pub outcome_without: String,
}

/// One conversation's outcome with and without the firing (`None`: not started in that run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub conversation: u32,
    pub with: Option<ConversationOutcome>,
    pub without: Option<ConversationOutcome>,
}

/// The conversations whose outcome differs between the two runs, in conversation order.
pub fn changes(with: &BTreeMap<u32, ConversationOutcome>, without: &BTreeMap<u32, ConversationOutcome>) -> Vec<Change> {
    let convs: std::collections::BTreeSet<u32> = with.keys().chain(without.keys()).copied().collect();
    convs
        .into_iter()
        .filter(|c| with.get(c) != without.get(c))
        .map(|conversation| Change {
            conversation,
            with: with.get(&conversation).cloned(),
            without: without.get(&conversation).cloned(),
        })
        .collect()
}

impl Change {
    /// `7: lost → answered, money_moved 2 → 1`.
    pub fn describe(&self) -> String {
        let fate = |o: &Option<ConversationOutcome>| o.as_ref().map_or("not started", |o| o.fate.name());
        let mut text = format!("{}: ", self.conversation);
        let (a, b) = (fate(&self.with), fate(&self.without));
        if a == b {
            text.push_str(a);
        } else {
            text.push_str(&format!("{a} → {b}"));
        }
        let effects = |o: &Option<ConversationOutcome>| o.as_ref().map(|o| o.effects.clone()).unwrap_or_default();
        let (ea, eb) = (effects(&self.with), effects(&self.without));
        let names: std::collections::BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
        for name in names {
            let (x, y) = (ea.get(name).copied().unwrap_or(0), eb.get(name).copied().unwrap_or(0));
            if x != y {
                text.push_str(&format!(", {name} {x} → {y}"));
            }
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fate::Fate;

    fn outcome(fate: Fate, moved: u32) -> ConversationOutcome {
        let mut effects = BTreeMap::new();
        if moved > 0 {
            effects.insert("money_moved".to_owned(), moved);
        }
        ConversationOutcome { fate, effects }
    }

    #[test]
    fn only_conversations_whose_fate_or_effects_differ_are_changes() {
        let with: BTreeMap<u32, ConversationOutcome> = [
            (0, outcome(Fate::Answered, 2)),
            (1, outcome(Fate::Lost, 0)),
            (2, outcome(Fate::Answered, 0)),
        ]
        .into();
        let without: BTreeMap<u32, ConversationOutcome> = [
            (0, outcome(Fate::Answered, 1)),
            (1, outcome(Fate::Answered, 0)),
            (2, outcome(Fate::Answered, 0)),
        ]
        .into();
        let found = changes(&with, &without);
        let described: Vec<String> = found.iter().map(Change::describe).collect();
        assert_eq!(described, ["0: answered, money_moved 2 → 1", "1: lost → answered"]);
    }
}
