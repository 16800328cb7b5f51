//! Taint: the provenance labels a message carries — which faults and which untrusted sources (the
//! user's input, each tool's output) it descends from. The scheduler stamps labels where they
//! arise and propagates them: a handler's effects inherit the labels of what it consumed.
//!
//! Label ids are dense: `0` is the user, `1 + t` is tool `t`'s output, `1 + tools + f` is fault
//! `f`. Ids below 64 live inline in one word (no allocation per message, 16 bytes in every
//! envelope); larger scenarios spill into a sorted vector.

use crate::scenario::Scenario;

/// A set of label ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    low: u64,
    /// Ids of 64 and above, sorted and unique.
    high: Option<Box<[u32]>>,
}

impl Labels {
    /// The empty set.
    pub const EMPTY: Labels = Labels { low: 0, high: None };

    pub fn is_empty(&self) -> bool {
        self.low == 0 && self.high.is_none()
    }

    fn high(&self) -> &[u32] {
        self.high.as_deref().unwrap_or(&[])
    }

    pub fn insert(&mut self, id: u32) {
        if id < 64 {
            self.low |= 1u64 << id;
            return;
        }
        // Rare (scenarios with 64 or more sources): rebuild the sorted slice.
        if let Err(at) = self.high().binary_search(&id) {
            let mut high = self.high().to_vec();
            high.insert(at, id);
            self.high = Some(high.into_boxed_slice());
        }
    }

    pub fn contains(&self, id: u32) -> bool {
        if id < 64 {
            self.low & (1u64 << id) != 0
        } else {
            self.high().binary_search(&id).is_ok()
        }
    }

    /// Whether the two sets share a label.
    pub fn intersects(&self, other: &Labels) -> bool {
        self.low & other.low != 0 || self.high().iter().any(|id| other.high().binary_search(id).is_ok())
    }

    /// Adds every label of `other`.
    pub fn union_with(&mut self, other: &Labels) {
        self.low |= other.low;
        for id in other.high() {
            self.insert(*id);
        }
    }

    /// The ids in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let mut low = self.low;
        std::iter::from_fn(move || {
            (low != 0).then(|| {
                let id = low.trailing_zeros();
                low &= low - 1;
                id
            })
        })
        .chain(self.high().iter().copied())
    }
}

/// Names labels for reports: `user`, `tool:NAME`, `fault:NAME`.
#[derive(Debug, Clone, Copy)]
pub struct LabelSpace {
    tools: u32,
    faults: u32,
}

/// What a label stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSource {
    User,
    Tool(usize),
    Fault(usize),
}

impl LabelSpace {
    pub fn new(scenario: &Scenario) -> LabelSpace {
        LabelSpace {
            tools: scenario.tools.len() as u32,
            faults: scenario.faults.len() as u32,
        }
    }

    /// How many labels the scenario can produce.
    pub fn len(&self) -> u32 {
        1 + self.tools + self.faults
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    pub const USER: u32 = 0;

    pub fn tool(&self, tool: usize) -> u32 {
        1 + tool as u32
    }

    pub fn fault(&self, fault: usize) -> u32 {
        1 + self.tools + fault as u32
    }

    pub fn source(&self, id: u32) -> LabelSource {
        if id == Self::USER {
            LabelSource::User
        } else if id <= self.tools {
            LabelSource::Tool((id - 1) as usize)
        } else {
            LabelSource::Fault((id - 1 - self.tools) as usize)
        }
    }

    /// The label's name in reports.
    pub fn name(&self, scenario: &Scenario, id: u32) -> String {
        match self.source(id) {
            LabelSource::User => "user".to_owned(),
            LabelSource::Tool(t) => format!("tool:{}", scenario.tools[t].name),
            LabelSource::Fault(f) => format!("fault:{}", scenario.faults[f].name),
        }
    }

    /// The id of a label name (`user`, `tool:NAME`, `fault:NAME`), if the scenario has it.
    pub fn lookup(&self, scenario: &Scenario, name: &str) -> Option<u32> {
        if name == "user" {
            return Some(Self::USER);
        }
        if let Some(tool) = name.strip_prefix("tool:") {
            return scenario.tools.iter().position(|t| t.name == tool).map(|t| self.tool(t));
        }
        let fault = name.strip_prefix("fault:")?;
        scenario
            .faults
            .iter()
            .position(|f| f.name == fault)
            .map(|f| self.fault(f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_low_and_high_ids_in_order() {
        let mut labels = Labels::default();
        assert!(labels.is_empty());
        for id in [300, 3, 127, 128, 3, 0] {
            labels.insert(id);
        }
        assert_eq!(labels.iter().collect::<Vec<_>>(), [0, 3, 127, 128, 300]);
        assert!(labels.contains(300) && labels.contains(0) && !labels.contains(4) && !labels.contains(129));
        let mut other = Labels::default();
        other.insert(5);
        other.insert(200);
        labels.union_with(&other);
        assert_eq!(labels.iter().collect::<Vec<_>>(), [0, 3, 5, 127, 128, 200, 300]);
    }
}
