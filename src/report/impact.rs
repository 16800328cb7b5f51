//! Causal impact: what each fault firing really changed. For every firing of a run, the run is
//! made again with only that firing left out (every draw the same: conversation-keyed streams
//! keep the other conversations' draws where they were), and each conversation's outcome — its
//! fate and its side effects — is compared. A firing that reached a conversation but changed
//! nothing in it is told apart from one that changed its fate or its effects. A change in a
//! conversation the fault never hit is a knock-on: it went through something the conversations
//! share (a rate limit, a bulkhead, a breaker, a queue, a replica's turn), a real cascade.

use std::collections::BTreeMap;

use serde::Serialize;

use super::fate::ConversationOutcome;

/// Changed conversations listed per firing, at most.
pub const CHANGES_LISTED_MAX: usize = 20;
/// Firings analysed per run, at most (each costs a run).
pub const FIRINGS_MAX: usize = 50;
/// Faults analysed per seed of a sweep, at most (each costs a run without that fault).
pub const FAULTS_PER_SEED_MAX: usize = 20;

/// The impact of each fault of a run (all its firings left out at once) and of every analysed
/// firing (that one left out).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Impact {
    /// Per fault that fired, most conversations changed first.
    pub faults: Vec<FaultChanges>,
    pub firings: Vec<FiringImpact>,
    /// Firings in the run; those past `FIRINGS_MAX` are not analysed.
    pub firings_total: u64,
}

impl Impact {
    /// The faults without which `conversation` would have ended otherwise, in the order of
    /// [`Impact::faults`].
    pub fn changed_by(&self, conversation: u32) -> Vec<String> {
        self.faults
            .iter()
            .filter(|f| f.changed_conversations.binary_search(&conversation).is_ok())
            .map(|f| f.impact.fault.clone())
            .collect()
    }
}

/// What leaving out every firing of one fault changed in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultChanges {
    #[serde(flatten)]
    pub impact: FaultImpact,
    /// Conversations whose fate or side effects differ without the fault.
    pub changed_total: u64,
    /// The first `CHANGES_LISTED_MAX` of them.
    pub changed: Vec<Change>,
    /// The run's outcome without the fault.
    pub outcome_without: String,
    /// Every changed conversation, in order (the list above is cut).
    #[serde(skip)]
    pub changed_conversations: Vec<u32>,
    /// Harmed conversations that would not have been harmed without the fault.
    #[serde(skip)]
    pub harm_caused: u64,
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
    /// The conversation of the message it hit, if that message belongs to one.
    pub conversation: Option<u32>,
    /// Conversations whose fate or side effects differ without this firing.
    pub changed_total: u64,
    /// The first `CHANGES_LISTED_MAX` of them.
    pub changed: Vec<Change>,
    /// What the firing did to cost and latency, over every conversation (changed or not).
    pub deltas: Deltas,
    /// The run's outcome without this firing.
    pub outcome_without: String,
}

/// What a fault did to a run, summed over its conversations: with the fault minus without it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Deltas {
    /// Conversations whose fate or side effects differ.
    pub conversations_changed: u64,
    /// How their fates moved, `"answered → lost"` → count (fates that stayed are not listed).
    pub transitions: BTreeMap<String, u64>,
    /// Side effects with minus without, per effect (`money_moved` → +3); zeros left out.
    pub effects: BTreeMap<String, i64>,
    /// The effects' amounts with minus without, per effect (`charged` → +2600); zeros left out.
    #[serde(
        default,
        skip_serializing_if = "BTreeMap::is_empty",
        with = "crate::scenario::world::dec_map"
    )]
    pub amounts: BTreeMap<String, i64>,
    /// Cost of the conversations with minus without, in pico-USD.
    pub cost_pusd: i64,
    /// Over the conversations answered in both runs: their latency with minus without, summed,
    /// and how many there were.
    pub latency_us: i64,
    pub latency_conversations: u64,
    /// Of the conversations changed, those the fault never hit: changed through what they
    /// share (an actor holding several, rate limits, bulkheads, breakers, queues) or through
    /// timing — knock-on effects, real cascades.
    #[serde(default)]
    pub knock_on: u64,
}

impl Deltas {
    /// The deltas between a run and its counterfactual; `hit` are the conversations the left-out
    /// firings hit (a change elsewhere is a knock-on).
    pub fn between(
        with: &BTreeMap<u32, ConversationOutcome>,
        without: &BTreeMap<u32, ConversationOutcome>,
        hit: &std::collections::BTreeSet<u32>,
    ) -> Deltas {
        let mut deltas = Deltas::default();
        let empty_amounts = BTreeMap::new();
        let convs: std::collections::BTreeSet<u32> = with.keys().chain(without.keys()).copied().collect();
        for conv in convs {
            let (a, b) = (with.get(&conv), without.get(&conv));
            deltas.cost_pusd += a.map_or(0, |o| o.cost_pusd as i64) - b.map_or(0, |o| o.cost_pusd as i64);
            if let (Some(la), Some(lb)) = (a.and_then(|o| o.latency_us), b.and_then(|o| o.latency_us)) {
                deltas.latency_us += la as i64 - lb as i64;
                deltas.latency_conversations += 1;
            }
            if a.zip(b).is_some_and(|(a, b)| a.same_ending(b)) {
                continue;
            }
            deltas.conversations_changed += 1;
            deltas.knock_on += u64::from(!hit.contains(&conv));
            let fate = |o: Option<&ConversationOutcome>| o.map_or("not started", |o| o.fate.name());
            if fate(a) != fate(b) {
                *deltas
                    .transitions
                    .entry(format!("{} → {}", fate(b), fate(a)))
                    .or_default() += 1;
            }
            let empty = BTreeMap::new();
            let (ea, eb) = (a.map_or(&empty, |o| &o.effects), b.map_or(&empty, |o| &o.effects));
            let names: std::collections::BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
            for name in names {
                let d = ea.get(name).copied().unwrap_or(0) as i64 - eb.get(name).copied().unwrap_or(0) as i64;
                *deltas.effects.entry(name.clone()).or_default() += d;
            }
            let (aa, ab) = (
                a.map_or(&empty_amounts, |o| &o.amounts),
                b.map_or(&empty_amounts, |o| &o.amounts),
            );
            let names: std::collections::BTreeSet<&String> = aa.keys().chain(ab.keys()).collect();
            for name in names {
                let d = aa
                    .get(name)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(ab.get(name).copied().unwrap_or(0));
                let total = deltas.amounts.entry(name.clone()).or_default();
                *total = total.saturating_add(d);
            }
        }
        deltas.effects.retain(|_, d| *d != 0);
        deltas.amounts.retain(|_, d| *d != 0);
        deltas
    }

    /// Adds another run's deltas (a sweep's total).
    pub fn add(&mut self, other: &Deltas) {
        self.conversations_changed += other.conversations_changed;
        for (k, v) in &other.transitions {
            *self.transitions.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.effects {
            *self.effects.entry(k.clone()).or_default() += v;
        }
        self.effects.retain(|_, d| *d != 0);
        for (k, v) in &other.amounts {
            let total = self.amounts.entry(k.clone()).or_default();
            *total = total.saturating_add(*v);
        }
        self.amounts.retain(|_, d| *d != 0);
        self.cost_pusd += other.cost_pusd;
        self.latency_us += other.latency_us;
        self.latency_conversations += other.latency_conversations;
        self.knock_on += other.knock_on;
    }

    /// `3 conversations changed (2 answered → lost, 1 answered → failed); money_moved +2;
    /// cost +$0.000120; latency +1.2s per answered conversation` — or `changed nothing`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.conversations_changed == 0 {
            parts.push("changed no conversation's ending".to_owned());
        } else {
            let moves: Vec<String> = self.transitions.iter().map(|(t, n)| format!("{n} {t}")).collect();
            let moves = if moves.is_empty() {
                String::new()
            } else {
                format!(" ({})", moves.join(", "))
            };
            parts.push(format!("changed {} conversation(s){moves}", self.conversations_changed));
            if self.knock_on > 0 {
                parts.push(format!(
                    "{} of them beyond the conversations it hit (through an actor, limit or queue they share)",
                    self.knock_on
                ));
            }
        }
        for (name, d) in &self.effects {
            match self.amounts.get(name) {
                Some(amount) => parts.push(format!(
                    "{name} {d:+} (amount {}{})",
                    if *amount > 0 { "+" } else { "" },
                    crate::scenario::expr::format_dec(*amount)
                )),
                None => parts.push(format!("{name} {d:+}")),
            }
        }
        for (name, amount) in self.amounts.iter().filter(|(n, _)| !self.effects.contains_key(*n)) {
            parts.push(format!(
                "{name} amounts {}{}",
                if *amount > 0 { "+" } else { "" },
                crate::scenario::expr::format_dec(*amount)
            ));
        }
        if self.cost_pusd != 0 {
            let sign = if self.cost_pusd > 0 { "+" } else { "-" };
            parts.push(format!(
                "cost {sign}{}",
                crate::scenario::units::format_usd(self.cost_pusd.unsigned_abs())
            ));
        }
        if self.latency_conversations > 0 && self.latency_us != 0 {
            let mean = self.latency_us / self.latency_conversations as i64;
            let sign = if mean > 0 { "+" } else { "-" };
            parts.push(format!(
                "latency {sign}{} per answered conversation",
                crate::scenario::units::format_duration_us(mean.unsigned_abs())
            ));
        }
        parts.join("; ")
    }
}

/// What leaving out every firing of one fault changed in one run.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FaultImpact {
    pub fault: String,
    pub kind: String,
    /// Its firings in the run.
    pub firings: u64,
    pub deltas: Deltas,
}

/// One conversation's outcome with and without the firing (`None`: not started in that run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub conversation: u32,
    pub with: Option<ConversationOutcome>,
    pub without: Option<ConversationOutcome>,
}

/// The conversations whose ending (fate or side effects) differs between the two runs, in
/// conversation order.
pub fn changes(with: &BTreeMap<u32, ConversationOutcome>, without: &BTreeMap<u32, ConversationOutcome>) -> Vec<Change> {
    let convs: std::collections::BTreeSet<u32> = with.keys().chain(without.keys()).copied().collect();
    convs
        .into_iter()
        .filter(|c| !with.get(c).zip(without.get(c)).is_some_and(|(a, b)| a.same_ending(b)))
        .map(|conversation| Change {
            conversation,
            with: with.get(&conversation).cloned(),
            without: without.get(&conversation).cloned(),
        })
        .collect()
}

impl Change {
    /// What the firing did to one conversation, without it → with it: `7: answered → lost,
    /// money_moved 1 → 2`.
    pub fn describe(&self) -> String {
        let fate = |o: &Option<ConversationOutcome>| o.as_ref().map_or("not started", |o| o.fate.name());
        let mut text = format!("{}: ", self.conversation);
        let (a, b) = (fate(&self.with), fate(&self.without));
        if a == b {
            text.push_str(a);
        } else {
            text.push_str(&format!("{b} → {a}"));
        }
        let effects = |o: &Option<ConversationOutcome>| o.as_ref().map(|o| o.effects.clone()).unwrap_or_default();
        let (ea, eb) = (effects(&self.with), effects(&self.without));
        let names: std::collections::BTreeSet<&String> = ea.keys().chain(eb.keys()).collect();
        for name in names {
            let (x, y) = (ea.get(name).copied().unwrap_or(0), eb.get(name).copied().unwrap_or(0));
            if x != y {
                text.push_str(&format!(", {name} {y} → {x}"));
            }
        }
        let amounts = |o: &Option<ConversationOutcome>| o.as_ref().map(|o| o.amounts.clone()).unwrap_or_default();
        let (aa, ab) = (amounts(&self.with), amounts(&self.without));
        let names: std::collections::BTreeSet<&String> = aa.keys().chain(ab.keys()).collect();
        for name in names {
            let (x, y) = (aa.get(name).copied().unwrap_or(0), ab.get(name).copied().unwrap_or(0));
            if x != y {
                let dec = crate::scenario::expr::format_dec;
                text.push_str(&format!(", {name} amount {} → {}", dec(y), dec(x)));
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
        ConversationOutcome {
            fate,
            amounts: BTreeMap::new(),
            compensated: BTreeMap::new(),
            effects,
            cost_pusd: 0,
            latency_us: None,
        }
    }

    #[test]
    fn amounts_deltas_say_how_much_money_a_fault_moved() {
        let paid = |times: u32| {
            let mut o = outcome(Fate::Answered, times);
            o.amounts.insert("money_moved".to_owned(), times as i64 * 2_600_000_000);
            o
        };
        let with: BTreeMap<u32, ConversationOutcome> = [(0, paid(2))].into();
        let without: BTreeMap<u32, ConversationOutcome> = [(0, paid(1))].into();
        let deltas = Deltas::between(&with, &without, &[0].into());
        assert_eq!(deltas.amounts, [("money_moved".to_owned(), 2_600_000_000)].into());
        assert!(
            deltas.describe().contains("money_moved +1 (amount +2600)"),
            "{}",
            deltas.describe()
        );
        let change = &changes(&with, &without)[0];
        assert_eq!(
            change.describe(),
            "0: answered, money_moved 1 → 2, money_moved amount 2600 → 5200"
        );
        let json = serde_json::to_value(&deltas).unwrap();
        assert_eq!(json["amounts"]["money_moved"], 2600);
        let back: Deltas = serde_json::from_value(json).unwrap();
        assert_eq!(back, deltas);
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
        assert_eq!(described, ["0: answered, money_moved 1 → 2", "1: answered → lost"]);
        let deltas = Deltas::between(&with, &without, &[0].into());
        assert_eq!(deltas.conversations_changed, 2);
        assert_eq!(deltas.knock_on, 1, "conversation 1 changed without being hit");
        assert_eq!(deltas.transitions, [("answered → lost".to_owned(), 1)].into());
        assert_eq!(deltas.effects, [("money_moved".to_owned(), 1)].into());
    }

    #[test]
    fn effects_deltas_add_up_over_conversations() {
        let with: BTreeMap<u32, ConversationOutcome> =
            [(0, outcome(Fate::Answered, 2)), (1, outcome(Fate::Answered, 3))].into();
        let without: BTreeMap<u32, ConversationOutcome> =
            [(0, outcome(Fate::Answered, 1)), (1, outcome(Fate::Lost, 0))].into();
        let deltas = Deltas::between(&with, &without, &[0].into());
        assert_eq!(deltas.effects, [("money_moved".to_owned(), 4)].into());
        assert_eq!(deltas.transitions, [("lost → answered".to_owned(), 1)].into());
    }

    #[test]
    fn cost_and_latency_are_deltas_not_changes() {
        let mut slow = outcome(Fate::Answered, 0);
        slow.cost_pusd = 30_000_000;
        slow.latency_us = Some(5_000_000);
        let mut fast = outcome(Fate::Answered, 0);
        fast.cost_pusd = 10_000_000;
        fast.latency_us = Some(1_000_000);
        let (with, without) = ([(0, slow)].into(), [(0, fast)].into());
        assert!(changes(&with, &without).is_empty());
        let deltas = Deltas::between(&with, &without, &[0].into());
        assert_eq!(
            (deltas.cost_pusd, deltas.latency_us, deltas.conversations_changed),
            (20_000_000, 4_000_000, 0)
        );
        assert_eq!(
            deltas.describe(),
            "changed no conversation's ending; cost +$0.000020; latency +4s per answered conversation"
        );
    }
}
